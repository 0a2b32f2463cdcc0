/* fuzz_bencode.c — libFuzzer target for the strict bencode decoder and the encoder. Built by tests/fuzz/run.sh.
 * Input: any bytes. When bdecode accepts them, the tree is walked (every node's raw span must lie inside the
 * input and equal its re-encoding), re-encoded with benc_*, and the result must equal the input byte for byte:
 * the decoder only accepts canonical bencode, so decode+encode is the identity. Lookups are exercised on every
 * dictionary. When bdecode refuses, it must say why and leave doc->root NULL. */
#include <stdlib.h>
#include <string.h>

#include "bencode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *g_base;
static size_t g_size;

static void encode(const struct bnode *n, struct buf *b, int depth)
{
    if (depth > BENCODE_MAX_DEPTH + 1)
        abort();
    if (n->raw < g_base || n->raw_len == 0 || n->raw + n->raw_len > g_base + g_size)
        abort();
    size_t start = b->len;
    int rc = 0;
    switch (n->type) {
    case BN_INT: rc = benc_int(b, n->u.i); break;
    case BN_STR:
        if (n->u.s.len && (n->u.s.p < g_base || n->u.s.p + n->u.s.len > g_base + g_size))
            abort();
        rc = benc_str(b, n->u.s.p, n->u.s.len);
        break;
    case BN_LIST:
        rc = benc_list_begin(b);
        for (size_t i = 0; i < n->u.l.n && !rc; i++)
            encode(n->u.l.items[i], b, depth + 1);
        rc |= benc_end(b);
        break;
    case BN_DICT:
        rc = benc_dict_begin(b);
        for (size_t i = 0; i < n->u.d.n && !rc; i++) {
            const struct bdict_entry *de = &n->u.d.items[i];
            if (i) { /* strictly ascending keys */
                const struct bdict_entry *pe = &n->u.d.items[i - 1];
                size_t m = pe->key_len < de->key_len ? pe->key_len : de->key_len;
                int c = memcmp(pe->key, de->key, m);
                if (c > 0 || (c == 0 && pe->key_len >= de->key_len))
                    abort();
            }
            rc |= benc_str(b, de->key, de->key_len);
            encode(de->val, b, depth + 1);
            /* lookups by a NUL-free key must find this very value */
            if (de->key_len < 64 && !memchr(de->key, 0, de->key_len)) {
                char k[64];
                memcpy(k, de->key, de->key_len);
                k[de->key_len] = 0;
                if (bdict_get(n, k) != de->val)
                    abort();
                const struct bnode *s = bdict_get_str(n, k);
                if (s && (s != de->val || s->type != BN_STR))
                    abort();
                const struct bnode *in = bdict_get_int(n, k);
                if (in && in != de->val)
                    abort();
                char *dup = bstr_dup(de->val);
                if (dup && (de->val->type != BN_STR || strlen(dup) != de->val->u.s.len))
                    abort();
                free(dup);
            }
        }
        rc |= benc_end(b);
        break;
    default: abort();
    }
    if (rc)
        abort();
    /* this node's span re-encodes to exactly its raw bytes */
    if (b->len - start != n->raw_len || memcmp(b->data + start, n->raw, n->raw_len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size heap copy so ASan sees any read past the end */
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    if (size)
        memcpy(p, data, size);
    struct bdoc doc;
    memset(&doc, 0x5a, sizeof doc); /* garbage: bdecode must initialise it on every path */
    struct ds_err e = {{0}};
    if (bdecode(p, size, &doc, &e) == 0) {
        if (!doc.root)
            abort();
        g_base = p;
        g_size = size;
        struct buf b = {0};
        encode(doc.root, &b, 0);
        if (b.len != size || memcmp(b.data, p, size) != 0)
            abort();
        if (doc.root->raw != p || doc.root->raw_len != size)
            abort();
        buf_free(&b);
        bdoc_free(&doc);
    } else {
        if (doc.root != NULL || !e.msg[0])
            abort();
        bdoc_free(&doc); /* must be harmless on a failed decode */
    }
    free(p);
    return 0;
}
