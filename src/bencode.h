/* bencode.h — strict bencode decoder (BEP 3) into an immutable tree, and an encoder onto a struct buf.
 *
 * The decoder rejects: trailing bytes after the top-level value, integers with leading zeros or "-0" or
 * out of int64 range, empty integers, string lengths with leading zeros or longer than the input, dictionary
 * keys that are not strictly ascending (raw byte order; this also rejects duplicates), and nesting deeper
 * than BENCODE_MAX_DEPTH. Every node remembers the exact input span it came from (raw/raw_len), so the
 * info-hash can be taken over the original bytes of the `info` dictionary. */
#ifndef DS_BENCODE_H
#define DS_BENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define BENCODE_MAX_DEPTH 64

enum bnode_type { BN_INT, BN_STR, BN_LIST, BN_DICT };

struct bnode;

struct bdict_entry {
    const uint8_t *key;
    size_t key_len;
    struct bnode *val;
};

struct bnode {
    enum bnode_type type;
    const uint8_t *raw;   /* span of this value in the input buffer */
    size_t raw_len;
    union {
        int64_t i;                                          /* BN_INT */
        struct { const uint8_t *p; size_t len; } s;         /* BN_STR (points into the input) */
        struct { struct bnode **items; size_t n; } l;       /* BN_LIST */
        struct { struct bdict_entry *items; size_t n; } d;  /* BN_DICT, keys ascending */
    } u;
};

/* A decoded document. The input buffer must outlive it (nodes point into it). */
struct bdoc {
    struct bnode *root;
    void *arena;          /* private */
};

/* Decode `len` bytes. Returns 0 and fills doc, or -1 with a message in e. */
int bdecode(const uint8_t *buf, size_t len, struct bdoc *doc, struct ds_err *e);
void bdoc_free(struct bdoc *doc);

/* Lookups; return NULL when the node is not of the right type or the key is missing / has another type. */
const struct bnode *bdict_get(const struct bnode *dict, const char *key);
const struct bnode *bdict_get_str(const struct bnode *dict, const char *key);
const struct bnode *bdict_get_int(const struct bnode *dict, const char *key);
const struct bnode *bdict_get_list(const struct bnode *dict, const char *key);
const struct bnode *bdict_get_dict(const struct bnode *dict, const char *key);
/* True when the string node equals the C string s. */
bool bstr_eq(const struct bnode *n, const char *s);
/* malloc'd NUL-terminated copy of a string node (NULL if not a string, OOM, or it holds a NUL byte). */
char *bstr_dup(const struct bnode *n);

/* Encoder: append to b; return 0 or -1 on OOM. The caller emits dict keys in ascending order. */
int benc_int(struct buf *b, int64_t v);
int benc_str(struct buf *b, const void *p, size_t len);
int benc_cstr(struct buf *b, const char *s);
int benc_list_begin(struct buf *b);   /* 'l' */
int benc_dict_begin(struct buf *b);   /* 'd' */
int benc_end(struct buf *b);          /* 'e' */

#endif
