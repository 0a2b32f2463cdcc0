/* test_bencode.c — strict decoder acceptance/rejection, raw spans, lookups, encoder round trip. */
#include <stdlib.h>

#include "bencode.h"
#include "check.h"
#include "sha1.h"

static int dec(const char *s, struct bdoc *doc, struct ds_err *e)
{
    return bdecode((const uint8_t *)s, strlen(s), doc, e);
}

/* Decode s; expect failure. */
static int rejects(const char *s)
{
    struct bdoc doc;
    struct ds_err e = {{0}};
    if (dec(s, &doc, &e) == 0) {
        fprintf(stderr, "  accepted invalid input: %s\n", s);
        bdoc_free(&doc);
        return 0;
    }
    if (!e.msg[0]) {
        fprintf(stderr, "  no error message for: %s\n", s);
        return 0;
    }
    return 1;
}

static int accepts_int(const char *s, int64_t want)
{
    struct bdoc doc;
    struct ds_err e;
    if (dec(s, &doc, &e)) {
        fprintf(stderr, "  rejected %s: %s\n", s, e.msg);
        return 0;
    }
    int ok = doc.root->type == BN_INT && doc.root->u.i == want && doc.root->raw_len == strlen(s);
    bdoc_free(&doc);
    return ok;
}

TEST(integers)
{
    CHECK(accepts_int("i0e", 0));
    CHECK(accepts_int("i42e", 42));
    CHECK(accepts_int("i-42e", -42));
    CHECK(accepts_int("i9223372036854775807e", INT64_MAX));
    CHECK(accepts_int("i-9223372036854775808e", INT64_MIN));
    CHECK(rejects("i9223372036854775808e"));
    CHECK(rejects("i-9223372036854775809e"));
    CHECK(rejects("i99999999999999999999999e"));
    CHECK(rejects("i-0e"));
    CHECK(rejects("i00e"));
    CHECK(rejects("i01e"));
    CHECK(rejects("i-01e"));
    CHECK(rejects("ie"));
    CHECK(rejects("i-e"));
    CHECK(rejects("i--1e"));
    CHECK(rejects("i+1e"));
    CHECK(rejects("i1"));
    CHECK(rejects("i12x"));
    CHECK(rejects("i 1e"));
    CHECK(rejects("i1.5e"));
}

TEST(strings)
{
    struct bdoc doc;
    struct ds_err e;
    CHECK(dec("4:spam", &doc, &e) == 0);
    CHECK(doc.root->type == BN_STR && doc.root->u.s.len == 4 && !memcmp(doc.root->u.s.p, "spam", 4));
    CHECK(bstr_eq(doc.root, "spam"));
    CHECK(!bstr_eq(doc.root, "spa"));
    char *s = bstr_dup(doc.root);
    CHECK_STR(s, "spam");
    free(s);
    bdoc_free(&doc);

    CHECK(dec("0:", &doc, &e) == 0);
    CHECK(doc.root->type == BN_STR && doc.root->u.s.len == 0);
    CHECK(bstr_eq(doc.root, ""));
    s = bstr_dup(doc.root);
    CHECK_STR(s, "");
    free(s);
    bdoc_free(&doc);

    /* embedded NUL: decodes, but bstr_dup refuses it */
    static const uint8_t nul[] = {'3', ':', 'a', 0, 'b'};
    CHECK(bdecode(nul, sizeof nul, &doc, &e) == 0);
    CHECK(doc.root->u.s.len == 3);
    CHECK(bstr_dup(doc.root) == NULL);
    bdoc_free(&doc);

    CHECK(rejects("5:spam"));         /* length past end */
    CHECK(rejects("04:spam"));        /* leading zero in length */
    CHECK(rejects("00:"));
    CHECK(rejects("4spam"));          /* no colon */
    CHECK(rejects("4"));
    CHECK(rejects(":"));
    CHECK(rejects("-1:a"));
    CHECK(rejects("18446744073709551615:x"));   /* SIZE_MAX: past end, must not wrap */
    CHECK(rejects("18446744073709551616:x"));   /* > SIZE_MAX */
    CHECK(rejects("99999999999999999999999999:x"));
}

TEST(empty_and_garbage)
{
    struct bdoc doc;
    struct ds_err e;
    CHECK(bdecode((const uint8_t *)"", 0, &doc, &e) == -1);
    CHECK(strstr(e.msg, "empty") != NULL);
    CHECK(rejects("x"));
    CHECK(rejects("i1ei2e"));          /* trailing value */
    CHECK(rejects("4:spamX"));
    CHECK(rejects("dex"));
    CHECK(rejects("le "));
    CHECK(rejects("e"));
    CHECK(dec("i1ee", &doc, &e) == -1);
    CHECK(strstr(e.msg, "trailing") != NULL);
}

TEST(lists)
{
    struct bdoc doc;
    struct ds_err e;
    CHECK(dec("le", &doc, &e) == 0);
    CHECK(doc.root->type == BN_LIST && doc.root->u.l.n == 0);
    bdoc_free(&doc);
    CHECK(dec("l4:spami7eli1eee", &doc, &e) == 0);
    const struct bnode *r = doc.root;
    CHECK(r->type == BN_LIST && r->u.l.n == 3);
    if (r->u.l.n == 3) {
        CHECK(bstr_eq(r->u.l.items[0], "spam"));
        CHECK(r->u.l.items[1]->type == BN_INT && r->u.l.items[1]->u.i == 7);
        CHECK(r->u.l.items[2]->type == BN_LIST && r->u.l.items[2]->u.l.n == 1);
        CHECK(r->u.l.items[2]->raw_len == 5 && !memcmp(r->u.l.items[2]->raw, "li1ee", 5));
    }
    bdoc_free(&doc);
    CHECK(rejects("l"));
    CHECK(rejects("li1e"));
    CHECK(rejects("l4:spam"));
    CHECK(rejects("lle"));
}

TEST(dicts)
{
    struct bdoc doc;
    struct ds_err e;
    CHECK(dec("de", &doc, &e) == 0);
    CHECK(doc.root->type == BN_DICT && doc.root->u.d.n == 0);
    CHECK(bdict_get(doc.root, "a") == NULL);
    bdoc_free(&doc);

    CHECK(dec("d0:i0e1:ai1e1:bli2ee2:bbd1:x1:yee", &doc, &e) == 0);
    const struct bnode *r = doc.root;
    CHECK(r->type == BN_DICT && r->u.d.n == 4);
    CHECK(bdict_get_int(r, "") && bdict_get_int(r, "")->u.i == 0);
    CHECK(bdict_get_int(r, "a") && bdict_get_int(r, "a")->u.i == 1);
    CHECK(bdict_get_list(r, "b") != NULL);
    CHECK(bdict_get_dict(r, "bb") != NULL);
    CHECK(bstr_eq(bdict_get_str(bdict_get_dict(r, "bb"), "x"), "y"));
    /* typed getters return NULL on type mismatch */
    CHECK(bdict_get_str(r, "a") == NULL);
    CHECK(bdict_get_dict(r, "b") == NULL);
    CHECK(bdict_get_int(r, "missing") == NULL);
    CHECK(bdict_get(r, "c") == NULL);
    CHECK(bdict_get(bdict_get(r, "a"), "a") == NULL); /* not a dict */
    const struct bnode *bb = bdict_get(r, "bb");
    CHECK(bb->raw_len == 8 && !memcmp(bb->raw, "d1:x1:ye", 8));
    bdoc_free(&doc);

    /* raw byte order: "B" (0x42) < "a" (0x61); prefix sorts first */
    CHECK(dec("d1:Bi1e1:ai2e2:aai3ee", &doc, &e) == 0);
    CHECK(bdict_get_int(doc.root, "aa") && bdict_get_int(doc.root, "aa")->u.i == 3);
    bdoc_free(&doc);

    CHECK(rejects("d1:bi1e1:ai2ee"));  /* unsorted */
    CHECK(rejects("d1:ai1e1:ai2ee"));  /* duplicate */
    CHECK(dec("d1:ai1e1:ai2ee", &doc, &e) == -1);
    CHECK(strstr(e.msg, "duplicate") != NULL);
    CHECK(dec("d1:bi1e1:ai2ee", &doc, &e) == -1);
    CHECK(strstr(e.msg, "sorted") != NULL);
    CHECK(rejects("d2:aai1e1:ai2ee")); /* "aa" before "a" */
    CHECK(rejects("di1ei2ee"));        /* non-string key */
    CHECK(rejects("dlei1ee"));
    CHECK(rejects("d1:ae"));           /* key without value */
    CHECK(rejects("d1:a"));
    CHECK(rejects("d1:ai1e"));
    CHECK(rejects("d"));
}

TEST(depth_limit)
{
    char buf[2 * (BENCODE_MAX_DEPTH + 2) + 1];
    struct bdoc doc;
    struct ds_err e;
    /* exactly BENCODE_MAX_DEPTH nested lists: ok */
    size_t k = 0;
    for (int i = 0; i < BENCODE_MAX_DEPTH; i++)
        buf[k++] = 'l';
    for (int i = 0; i < BENCODE_MAX_DEPTH; i++)
        buf[k++] = 'e';
    CHECK(bdecode((const uint8_t *)buf, k, &doc, &e) == 0);
    bdoc_free(&doc);
    /* one more: rejected */
    k = 0;
    for (int i = 0; i < BENCODE_MAX_DEPTH + 1; i++)
        buf[k++] = 'l';
    for (int i = 0; i < BENCODE_MAX_DEPTH + 1; i++)
        buf[k++] = 'e';
    CHECK(bdecode((const uint8_t *)buf, k, &doc, &e) == -1);
    CHECK(strstr(e.msg, "deep") != NULL);

    /* a huge bomb of opening brackets must fail fast at the depth limit, not overflow the stack */
    size_t n = 1000000;
    uint8_t *bomb = malloc(n);
    CHECK(bomb != NULL);
    if (bomb) {
        for (size_t i = 0; i < n; i++)
            bomb[i] = 'l';
        CHECK(bdecode(bomb, n, &doc, &e) == -1);
        /* d1:ad1:ad1:a... */
        size_t j = 0;
        while (j + 4 <= n) {
            memcpy(bomb + j, "d1:a", 4);
            j += 4;
        }
        CHECK(bdecode(bomb, j, &doc, &e) == -1);
        CHECK(strstr(e.msg, "deep") != NULL);
        free(bomb);
    }
}

TEST(many_items)
{
    /* a wide list exercises arena growth beyond one block */
    struct buf b = {0};
    CHECK(benc_list_begin(&b) == 0);
    for (int i = 0; i < 20000; i++)
        CHECK(benc_int(&b, i) == 0);
    CHECK(benc_end(&b) == 0);
    struct bdoc doc;
    struct ds_err e;
    CHECK(bdecode(b.data, b.len, &doc, &e) == 0);
    CHECK(doc.root->u.l.n == 20000);
    if (doc.root->u.l.n == 20000)
        CHECK(doc.root->u.l.items[19999]->u.i == 19999);
    bdoc_free(&doc);
    buf_free(&b);
}

TEST(encode_roundtrip)
{
    struct buf b = {0};
    CHECK(benc_dict_begin(&b) == 0);
    CHECK(benc_cstr(&b, "a") == 0);
    CHECK(benc_int(&b, INT64_MIN) == 0);
    CHECK(benc_cstr(&b, "b") == 0);
    CHECK(benc_list_begin(&b) == 0);
    CHECK(benc_int(&b, 0) == 0);
    CHECK(benc_int(&b, -5) == 0);
    CHECK(benc_str(&b, "x\0y", 3) == 0);
    CHECK(benc_cstr(&b, "") == 0);
    CHECK(benc_end(&b) == 0);
    CHECK(benc_cstr(&b, "c") == 0);
    CHECK(benc_dict_begin(&b) == 0);
    CHECK(benc_end(&b) == 0);
    CHECK(benc_end(&b) == 0);
    static const char want[] = "d1:ai-9223372036854775808e1:bli0ei-5e3:x\0y0:e1:cdee";
    CHECK(b.len == sizeof want - 1 && !memcmp(b.data, want, b.len));

    struct bdoc doc;
    struct ds_err e;
    CHECK(bdecode(b.data, b.len, &doc, &e) == 0);
    const struct bnode *r = doc.root;
    CHECK(r->raw == b.data && r->raw_len == b.len);
    CHECK(bdict_get_int(r, "a") && bdict_get_int(r, "a")->u.i == INT64_MIN);
    const struct bnode *l = bdict_get_list(r, "b");
    CHECK(l && l->u.l.n == 4);
    if (l && l->u.l.n == 4) {
        CHECK(l->u.l.items[1]->u.i == -5);
        CHECK(l->u.l.items[2]->u.s.len == 3 && !memcmp(l->u.l.items[2]->u.s.p, "x\0y", 3));
    }
    CHECK(bdict_get_dict(r, "c") && bdict_get_dict(r, "c")->u.d.n == 0);
    bdoc_free(&doc);
    buf_free(&b);
}

TEST(raw_span_hash)
{
    /* the raw span of a nested dict is exactly its input bytes (what the info-hash is taken over) */
    const char *s = "d4:infod4:name3:abc6:lengthi5eee";
    /* keys unsorted in the inner dict: must be rejected */
    CHECK(rejects(s));
    s = "d4:infod6:lengthi5e4:name3:abcee";
    struct bdoc doc;
    struct ds_err e;
    CHECK(dec(s, &doc, &e) == 0);
    const struct bnode *info = bdict_get_dict(doc.root, "info");
    CHECK(info && info->raw == (const uint8_t *)s + 7 && info->raw_len == strlen(s) - 8);
    uint8_t h1[SHA1_LEN], h2[SHA1_LEN];
    CHECK(sha1(info->raw, info->raw_len, h1) == 0);
    CHECK(sha1("d6:lengthi5e4:name3:abce", 24, h2) == 0);
    CHECK(!memcmp(h1, h2, SHA1_LEN));
    bdoc_free(&doc);
}

TEST(sha1_known)
{
    uint8_t h[SHA1_LEN];
    char hex[2 * SHA1_LEN + 1];
    CHECK(sha1("abc", 3, h) == 0);
    hex_encode(h, SHA1_LEN, hex);
    CHECK_STR(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK(sha1("", 0, h) == 0);
    hex_encode(h, SHA1_LEN, hex);
    CHECK_STR(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    struct sha1_ctx c;
    CHECK(sha1_init(&c) == 0);
    CHECK(sha1_update(&c, "a", 1) == 0);
    CHECK(sha1_update(&c, "", 0) == 0);
    CHECK(sha1_update(&c, "bc", 2) == 0);
    CHECK(sha1_final(&c, h) == 0);
    hex_encode(h, SHA1_LEN, hex);
    CHECK_STR(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK(sha1_init(&c) == 0);
    CHECK(sha1_update(&c, "x", 1) == 0);
    sha1_abort(&c);
    sha1_abort(&c); /* idempotent */
}

TEST(truncation_of_valid_doc)
{
    const char *s = "d3:agei-3e4:listl1:xi0eld1:kdeeee4:name4:sda14:zzzzi12345ee";
    struct bdoc doc;
    struct ds_err e;
    CHECK(dec(s, &doc, &e) == 0);
    bdoc_free(&doc);
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        /* copy to an exact-size heap buffer so ASan catches any read past the end */
        uint8_t *p = malloc(i ? i : 1);
        memcpy(p, s, i);
        if (bdecode(p, i, &doc, &e) == 0) {
            fprintf(stderr, "  prefix %zu accepted\n", i);
            check_cur_failed = 1;
            bdoc_free(&doc);
        }
        free(p);
    }
}

TEST(fuzz_mutations)
{
    /* deterministic byte flips over a valid document: never crash, and anything accepted re-encodes sanely */
    const char *s = "d3:agei-3e4:listl1:xi0eld1:kdeeee4:name4:sda14:zzzzi12345ee";
    size_t n = strlen(s);
    uint8_t *p = malloc(n);
    static const uint8_t subst[] = {'0', '1', '9', ':', 'e', 'i', 'l', 'd', '-', 'x', 0, 0xff};
    int accepted = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(p, s, n);
            p[i] = subst[k];
            struct bdoc doc;
            struct ds_err e;
            if (bdecode(p, n, &doc, &e) == 0) {
                accepted++;
                CHECK(doc.root->raw == p && doc.root->raw_len == n);
                bdoc_free(&doc);
            }
        }
    }
    CHECK(accepted > 0);
    free(p);
}

int main(void)
{
    RUN(integers);
    RUN(strings);
    RUN(empty_and_garbage);
    RUN(lists);
    RUN(dicts);
    RUN(depth_limit);
    RUN(many_items);
    RUN(encode_roundtrip);
    RUN(raw_span_hash);
    RUN(sha1_known);
    RUN(truncation_of_valid_doc);
    RUN(fuzz_mutations);
    return check_summary();
}
