/* bencode.c — strict bencode decoder (BEP 3) and encoder.
 *
 * Decoded nodes live in an arena (a chain of blocks) owned by the bdoc, so bdoc_free releases everything at
 * once. The decoder is recursive with an explicit depth limit (BENCODE_MAX_DEPTH); children of a list or dict
 * are gathered in a temporary growable array and then copied into the arena. All length arithmetic is checked
 * against the remaining input, so a length field can never make us read past the buffer. */
#include "bencode.h"

#include <inttypes.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* ---------- arena ---------- */

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

struct arena {
    struct arena_block *head;
};

#define ARENA_BLOCK_MIN ((size_t)16384)

static void *arena_alloc(struct arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    if (n > SIZE_MAX - align)
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    struct arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK_MIN ? n : ARENA_BLOCK_MIN;
        if (cap > SIZE_MAX - sizeof *b)
            return NULL;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(struct arena *a)
{
    if (!a)
        return;
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

/* ---------- decoder ---------- */

struct dec {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    struct arena *arena;
    struct ds_err *e;
};

static int dec_err(struct dec *d, size_t at, const char *what)
{
    return ds_errf(d->e, "bencode: %s at offset %zu", what, at);
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Parse an unsigned decimal run starting at d->pos, stopping at `term`. Leading zeros are rejected (a lone
 * "0" is fine). The value must be <= max. On success d->pos is just past the terminator. */
static int dec_uint(struct dec *d, uint8_t term, uint64_t max, uint64_t *out, const char *what)
{
    size_t start = d->pos;
    uint64_t v = 0;
    size_t ndig = 0;
    while (d->pos < d->len && is_digit(d->buf[d->pos])) {
        unsigned dig = (unsigned)(d->buf[d->pos] - '0');
        if (ndig == 1 && d->buf[start] == '0')
            return dec_err(d, start, what[0] == 'i' ? "integer with a leading zero" : "string length with a leading zero");
        if (v > (max - dig) / 10)
            return dec_err(d, start, what[0] == 'i' ? "integer out of range" : "string length too large");
        v = v * 10 + dig;
        ndig++;
        d->pos++;
    }
    if (ndig == 0) {
        if (d->pos >= d->len)
            return dec_err(d, d->pos, "unexpected end of input");
        return dec_err(d, d->pos, what[0] == 'i' ? "integer without digits" : "bad string length");
    }
    if (d->pos >= d->len)
        return dec_err(d, d->pos, "unexpected end of input");
    if (d->buf[d->pos] != term)
        return dec_err(d, d->pos, what[0] == 'i' ? "integer not terminated by 'e'" : "string length not followed by ':'");
    d->pos++;
    *out = v;
    return 0;
}

static struct bnode *new_node(struct dec *d, enum bnode_type t, size_t start)
{
    struct bnode *n = arena_alloc(d->arena, sizeof *n);
    if (!n) {
        ds_errf(d->e, "bencode: out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->type = t;
    n->raw = d->buf + start;
    return n;
}

static int dec_int(struct dec *d, struct bnode **out)
{
    size_t start = d->pos;
    d->pos++; /* 'i' */
    bool neg = false;
    if (d->pos < d->len && d->buf[d->pos] == '-') {
        neg = true;
        d->pos++;
        if (d->pos < d->len && d->buf[d->pos] == '0')
            return dec_err(d, start, "negative zero or leading zero in integer");
    }
    uint64_t mag;
    /* INT64_MIN's magnitude is INT64_MAX + 1. */
    if (dec_uint(d, 'e', neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &mag, "integer"))
        return -1;
    struct bnode *n = new_node(d, BN_INT, start);
    if (!n)
        return -1;
    if (neg)
        n->u.i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else
        n->u.i = (int64_t)mag;
    n->raw_len = d->pos - start;
    *out = n;
    return 0;
}

static int dec_str_span(struct dec *d, const uint8_t **p, size_t *plen)
{
    size_t start = d->pos;
    uint64_t slen;
    if (dec_uint(d, ':', SIZE_MAX, &slen, "string"))
        return -1;
    if (slen > d->len - d->pos)
        return dec_err(d, start, "string length past the end of input");
    *p = d->buf + d->pos;
    *plen = (size_t)slen;
    d->pos += (size_t)slen;
    return 0;
}

static int dec_str(struct dec *d, struct bnode **out)
{
    size_t start = d->pos;
    const uint8_t *p;
    size_t plen;
    if (dec_str_span(d, &p, &plen))
        return -1;
    struct bnode *n = new_node(d, BN_STR, start);
    if (!n)
        return -1;
    n->u.s.p = p;
    n->u.s.len = plen;
    n->raw_len = d->pos - start;
    *out = n;
    return 0;
}

/* Growable temporary vector of fixed-size elements. */
struct tvec {
    unsigned char *p;
    size_t n, cap, elsz;
};

static int tvec_push(struct tvec *v, const void *el)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        if (ncap < v->cap || ncap > SIZE_MAX / v->elsz)
            return -1;
        unsigned char *np = realloc(v->p, ncap * v->elsz);
        if (!np)
            return -1;
        v->p = np;
        v->cap = ncap;
    }
    memcpy(v->p + v->n * v->elsz, el, v->elsz);
    v->n++;
    return 0;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int dec_value(struct dec *d, unsigned depth, struct bnode **out);

static int dec_list(struct dec *d, unsigned depth, struct bnode **out)
{
    size_t start = d->pos;
    d->pos++; /* 'l' */
    struct tvec v = {.elsz = sizeof(struct bnode *)};
    for (;;) {
        if (d->pos >= d->len) {
            free(v.p);
            return dec_err(d, d->pos, "unexpected end of input in list");
        }
        if (d->buf[d->pos] == 'e')
            break;
        struct bnode *child;
        if (dec_value(d, depth + 1, &child)) {
            free(v.p);
            return -1;
        }
        if (tvec_push(&v, &child)) {
            free(v.p);
            return ds_errf(d->e, "bencode: out of memory");
        }
    }
    d->pos++; /* 'e' */
    struct bnode *n = new_node(d, BN_LIST, start);
    if (!n) {
        free(v.p);
        return -1;
    }
    if (v.n) {
        n->u.l.items = arena_alloc(d->arena, v.n * v.elsz); /* v.n * elsz fits: it was allocated */
        if (!n->u.l.items) {
            free(v.p);
            return ds_errf(d->e, "bencode: out of memory");
        }
        memcpy(n->u.l.items, v.p, v.n * v.elsz);
    }
    n->u.l.n = v.n;
    n->raw_len = d->pos - start;
    free(v.p);
    *out = n;
    return 0;
}

static int dec_dict(struct dec *d, unsigned depth, struct bnode **out)
{
    size_t start = d->pos;
    d->pos++; /* 'd' */
    struct tvec v = {.elsz = sizeof(struct bdict_entry)};
    for (;;) {
        if (d->pos >= d->len) {
            free(v.p);
            return dec_err(d, d->pos, "unexpected end of input in dictionary");
        }
        if (d->buf[d->pos] == 'e')
            break;
        size_t kpos = d->pos;
        if (!is_digit(d->buf[d->pos])) {
            free(v.p);
            return dec_err(d, kpos, "dictionary key is not a string");
        }
        struct bdict_entry ent;
        if (dec_str_span(d, &ent.key, &ent.key_len)) {
            free(v.p);
            return -1;
        }
        if (v.n) {
            const struct bdict_entry *prev = (const struct bdict_entry *)(v.p + (v.n - 1) * v.elsz);
            int c = key_cmp(prev->key, prev->key_len, ent.key, ent.key_len);
            if (c >= 0) {
                free(v.p);
                return dec_err(d, kpos, c == 0 ? "duplicate dictionary key" : "dictionary keys not sorted");
            }
        }
        if (d->pos >= d->len) {
            free(v.p);
            return dec_err(d, d->pos, "unexpected end of input: dictionary key without a value");
        }
        if (dec_value(d, depth + 1, &ent.val)) {
            free(v.p);
            return -1;
        }
        if (tvec_push(&v, &ent)) {
            free(v.p);
            return ds_errf(d->e, "bencode: out of memory");
        }
    }
    d->pos++; /* 'e' */
    struct bnode *n = new_node(d, BN_DICT, start);
    if (!n) {
        free(v.p);
        return -1;
    }
    if (v.n) {
        n->u.d.items = arena_alloc(d->arena, v.n * v.elsz);
        if (!n->u.d.items) {
            free(v.p);
            return ds_errf(d->e, "bencode: out of memory");
        }
        memcpy(n->u.d.items, v.p, v.n * v.elsz);
    }
    n->u.d.n = v.n;
    n->raw_len = d->pos - start;
    free(v.p);
    *out = n;
    return 0;
}

static int dec_value(struct dec *d, unsigned depth, struct bnode **out)
{
    if (d->pos >= d->len)
        return dec_err(d, d->pos, "unexpected end of input");
    uint8_t c = d->buf[d->pos];
    if (c == 'i')
        return dec_int(d, out);
    if (is_digit(c))
        return dec_str(d, out);
    if (c == 'l' || c == 'd') {
        if (depth >= BENCODE_MAX_DEPTH)
            return dec_err(d, d->pos, "nesting too deep");
        return c == 'l' ? dec_list(d, depth, out) : dec_dict(d, depth, out);
    }
    return dec_err(d, d->pos, "unexpected byte");
}

int bdecode(const uint8_t *buf, size_t len, struct bdoc *doc, struct ds_err *e)
{
    doc->root = NULL;
    doc->arena = NULL;
    if (!buf || len == 0)
        return ds_errf(e, "bencode: empty input");
    struct arena *a = calloc(1, sizeof *a);
    if (!a)
        return ds_errf(e, "bencode: out of memory");
    struct dec d = {.buf = buf, .len = len, .pos = 0, .arena = a, .e = e};
    struct bnode *root;
    if (dec_value(&d, 0, &root)) {
        arena_free(a);
        return -1;
    }
    if (d.pos != len) {
        arena_free(a);
        return ds_errf(e, "bencode: %zu trailing byte(s) after the value at offset %zu", len - d.pos, d.pos);
    }
    doc->root = root;
    doc->arena = a;
    return 0;
}

void bdoc_free(struct bdoc *doc)
{
    if (!doc)
        return;
    arena_free(doc->arena);
    doc->arena = NULL;
    doc->root = NULL;
}

/* ---------- lookups ---------- */

const struct bnode *bdict_get(const struct bnode *dict, const char *key)
{
    if (!dict || dict->type != BN_DICT || !key)
        return NULL;
    const uint8_t *k = (const uint8_t *)key;
    size_t klen = strlen(key);
    size_t lo = 0, hi = dict->u.d.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct bdict_entry *ent = &dict->u.d.items[mid];
        int c = key_cmp(ent->key, ent->key_len, k, klen);
        if (c == 0)
            return ent->val;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const struct bnode *get_typed(const struct bnode *dict, const char *key, enum bnode_type t)
{
    const struct bnode *n = bdict_get(dict, key);
    return n && n->type == t ? n : NULL;
}

const struct bnode *bdict_get_str(const struct bnode *dict, const char *key) { return get_typed(dict, key, BN_STR); }
const struct bnode *bdict_get_int(const struct bnode *dict, const char *key) { return get_typed(dict, key, BN_INT); }
const struct bnode *bdict_get_list(const struct bnode *dict, const char *key) { return get_typed(dict, key, BN_LIST); }
const struct bnode *bdict_get_dict(const struct bnode *dict, const char *key) { return get_typed(dict, key, BN_DICT); }

bool bstr_eq(const struct bnode *n, const char *s)
{
    if (!n || n->type != BN_STR || !s)
        return false;
    size_t l = strlen(s);
    return n->u.s.len == l && (l == 0 || memcmp(n->u.s.p, s, l) == 0);
}

char *bstr_dup(const struct bnode *n)
{
    if (!n || n->type != BN_STR)
        return NULL;
    size_t l = n->u.s.len;
    if (l && memchr(n->u.s.p, 0, l))
        return NULL;
    if (l == SIZE_MAX)
        return NULL;
    char *s = malloc(l + 1);
    if (!s)
        return NULL;
    if (l)
        memcpy(s, n->u.s.p, l);
    s[l] = '\0';
    return s;
}

/* ---------- encoder ---------- */

int benc_int(struct buf *b, int64_t v) { return buf_printf(b, "i%" PRId64 "e", v); }

int benc_str(struct buf *b, const void *p, size_t len)
{
    if (buf_printf(b, "%zu:", len))
        return -1;
    return buf_put(b, p, len);
}

int benc_cstr(struct buf *b, const char *s) { return benc_str(b, s, strlen(s)); }
int benc_list_begin(struct buf *b) { return buf_put_u8(b, 'l'); }
int benc_dict_begin(struct buf *b) { return buf_put_u8(b, 'd'); }
int benc_end(struct buf *b) { return buf_put_u8(b, 'e'); }
