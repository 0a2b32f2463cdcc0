/* manifest.c — write and strictly read IMAGE_DIR/manifest.json (format in manifest.h).
 *
 * The reader is a small recursive-descent JSON parser into a tree (depth-limited, integers only since the
 * writer never emits fractions), followed by typed extraction of the known keys. */
#include "manifest.h"

#include "file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

#define MF_MAX_SIZE ((size_t)16 << 20)
#define MF_MAX_DEPTH 8

/* ---------------------------------------------------------------------------------------------------------
 * writer */

static int put_str(struct buf *b, const char *s)
{
    if (buf_put_u8(b, '"'))
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int r;
        switch (*p) {
        case '"': r = buf_put(b, "\\\"", 2); break;
        case '\\': r = buf_put(b, "\\\\", 2); break;
        case '\n': r = buf_put(b, "\\n", 2); break;
        case '\t': r = buf_put(b, "\\t", 2); break;
        case '\r': r = buf_put(b, "\\r", 2); break;
        default: r = *p < 0x20 ? buf_printf(b, "\\u%04x", *p) : buf_put_u8(b, *p); break;
        }
        if (r)
            return -1;
    }
    return buf_put_u8(b, '"');
}

static int kv_str(struct buf *b, const char *ind, const char *k, const char *v, bool comma)
{
    return buf_printf(b, "%s\"%s\": ", ind, k) || put_str(b, v) || buf_put(b, comma ? ",\n" : "\n", comma ? 2 : 1);
}

static int kv_u64(struct buf *b, const char *ind, const char *k, uint64_t v, bool comma)
{
    return buf_printf(b, "%s\"%s\": %" PRIu64 "%s\n", ind, k, v, comma ? "," : "");
}

char *manifest_to_json(const struct manifest *m, struct ds_err *e)
{
    struct buf b = {0};
    const char *I = "  ", *J = "      ";
    int r = buf_put(&b, "{\n", 2);
    r = r || kv_str(&b, I, "format", "diskswarm-manifest", true);
    r = r || kv_u64(&b, I, "version", (uint64_t)(m->version ? m->version : MANIFEST_VERSION), true);
    r = r || buf_printf(&b, "  \"created\": %" PRId64 ",\n", m->created);
    r = r || kv_str(&b, I, "created_by", m->created_by, true);
    r = r || kv_str(&b, I, "source", m->source, true);
    r = r || kv_u64(&b, I, "source_size", m->source_size, true);
    r = r || kv_str(&b, I, "kind", m->kind, true);
    r = r || kv_str(&b, I, "mode", m->mode, true);
    r = r || kv_str(&b, I, "label", m->label, true);
    r = r || kv_str(&b, I, "disk_id", m->disk_id, true);
    r = r || kv_u64(&b, I, "sector_size", m->sector_size, true);
    r = r || kv_u64(&b, I, "piece_size", m->piece_size, true);
    if (m->has_gpt) {
        const char *G = "    ";
        r = r || buf_put(&b, "  \"gpt\": {\n", 11);
        r = r || kv_u64(&b, G, "first_usable_lba", m->gpt_first_usable, true);
        r = r || kv_u64(&b, G, "last_usable_lba", m->gpt_last_usable, true);
        r = r || kv_u64(&b, G, "alt_lba", m->gpt_alt_lba, true);
        r = r || kv_u64(&b, G, "entries_lba", m->gpt_entries_lba, true);
        r = r || kv_u64(&b, G, "entries", m->gpt_n_entries, true);
        r = r || kv_u64(&b, G, "backup_offset", m->gpt_backup_off, true);
        r = r || kv_u64(&b, G, "backup_length", m->gpt_backup_len, false);
        r = r || buf_put(&b, "  },\n", 5);
    }
    r = r || buf_put(&b, "  \"areas\": [", 12);
    for (size_t i = 0; i < m->n_areas && !r; i++) {
        const struct manifest_area *a = &m->areas[i];
        r = buf_put(&b, i ? ",\n    {\n" : "\n    {\n", i ? 8 : 7);
        r = r || kv_str(&b, J, "what", a->what, true);
        r = r || kv_u64(&b, J, "offset", a->offset, true);
        r = r || kv_u64(&b, J, "length", a->length, false);
        r = r || buf_put(&b, "    }", 5);
    }
    r = r || buf_put(&b, m->n_areas ? "\n  ],\n" : "],\n", m->n_areas ? 6 : 3);
    r = r || buf_put(&b, "  \"partitions\": [", 17);
    for (size_t i = 0; i < m->n_parts && !r; i++) {
        const struct manifest_part *p = &m->parts[i];
        r = buf_put(&b, i ? ",\n    {\n" : "\n    {\n", i ? 8 : 7);
        r = r || kv_u64(&b, J, "number", p->number, true);
        r = r || kv_str(&b, J, "device", p->device, true);
        r = r || kv_u64(&b, J, "start", p->start, true);
        r = r || kv_u64(&b, J, "size", p->size, true);
        r = r || kv_str(&b, J, "type", p->type, true);
        r = r || kv_str(&b, J, "type_name", p->type_name, true);
        r = r || kv_str(&b, J, "name", p->name, true);
        r = r || kv_str(&b, J, "uuid", p->uuid, true);
        r = r || kv_str(&b, J, "fstype", p->fstype, true);
        r = r || kv_str(&b, J, "scanner", p->scanner, true);
        r = r || buf_printf(&b, "%s\"raw_fallback\": %s,\n", J, p->raw_fallback ? "true" : "false");
        r = r || kv_u64(&b, J, "block_size", p->block_size, true);
        r = r || kv_u64(&b, J, "fs_size", p->fs_size, true);
        r = r || kv_u64(&b, J, "used_bytes", p->used_bytes, true);
        r = r || kv_u64(&b, J, "extents", p->extents, true);
        r = r || kv_str(&b, J, "torrent", p->torrent, false);
        r = r || buf_put(&b, "    }", 5);
    }
    r = r || buf_put(&b, m->n_parts ? "\n  ],\n" : "],\n", m->n_parts ? 6 : 3);
    r = r || buf_put(&b, "  \"torrents\": [", 15);
    for (size_t i = 0; i < m->n_torrents && !r; i++) {
        const struct manifest_torrent *t = &m->torrents[i];
        r = buf_put(&b, i ? ",\n    {\n" : "\n    {\n", i ? 8 : 7);
        r = r || kv_str(&b, J, "file", t->file, true);
        r = r || kv_str(&b, J, "name", t->name, true);
        r = r || kv_str(&b, J, "role", t->role, true);
        r = r || kv_str(&b, J, "info_hash", t->info_hash, true);
        r = r || kv_u64(&b, J, "bytes", t->bytes, true);
        r = r || kv_u64(&b, J, "pieces", t->pieces, true);
        r = r || kv_u64(&b, J, "extents", t->extents, t->image[0] || t->seed_in_place[0]);
        if (t->image[0]) {
            r = r || kv_str(&b, J, "image", t->image, true);
            r = r || kv_str(&b, J, "image_compression", t->image_compression, true);
            r = r || kv_u64(&b, J, "image_bytes", t->image_bytes, t->seed_in_place[0]);
        }
        if (t->seed_in_place[0])
            r = r || kv_str(&b, J, "seed_in_place", t->seed_in_place, false);
        r = r || buf_put(&b, "    }", 5);
    }
    r = r || buf_put(&b, m->n_torrents ? "\n  ]" : "]", m->n_torrents ? 4 : 1);
    if (m->pt_file[0]) {
        r = r || buf_printf(&b, ",\n  \"partition_table\": {\n");
        r = r || kv_str(&b, "    ", "format", m->pt_format, true);
        r = r || kv_str(&b, "    ", "file", m->pt_file, false);
        r = r || buf_put(&b, "  }", 3);
    }
    r = r || buf_put(&b, "\n}\n", 3);
    char *s = r ? NULL : buf_steal_str(&b);
    buf_free(&b);
    if (!s)
        ds_errf(e, "out of memory");
    return s;
}

int manifest_write(const char *dir, const struct manifest *m, struct ds_err *e)
{
    char *json = manifest_to_json(m, e);
    if (!json)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST_FILE);
    int rc = write_file_atomic(path, json, strlen(json), e);
    free(json);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * reader: JSON → tree */

enum jt { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ };

struct jv {
    enum jt t;
    bool b;
    bool neg;         /* J_INT: value is -u */
    uint64_t u;
    char *s;          /* J_STR */
    struct jv *items; /* J_ARR / J_OBJ values */
    char **keys;      /* J_OBJ */
    size_t n;
};

struct jp {
    const char *p, *end;
    struct ds_err *e;
};

static void jv_free(struct jv *v)
{
    if (!v)
        return;
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

static void skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r'))
        j->p++;
}

static int jerr(struct jp *j, const char *what, const char *start)
{
    return ds_errf(j->e, "manifest: %s at byte %td", what, j->p - start);
}

static const char *g_start;

static int parse_str(struct jp *j, char **out)
{
    if (j->p >= j->end || *j->p != '"')
        return jerr(j, "expected a string", g_start);
    j->p++;
    struct buf b = {0};
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20) {
            buf_free(&b);
            return jerr(j, "control character in string", g_start);
        }
        if (c != '\\') {
            if (buf_put_u8(&b, c))
                goto oom;
            continue;
        }
        if (j->p >= j->end)
            break;
        c = (unsigned char)*j->p++;
        const char *map = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *m = strchr(map, c);
        if (c && m) {
            if (buf_put_u8(&b, (uint8_t)to[m - map]))
                goto oom;
        } else if (c == 'u') {
            if (j->end - j->p < 4) {
                buf_free(&b);
                return jerr(j, "short \\u escape", g_start);
            }
            unsigned v = 0;
            for (int i = 0; i < 4; i++) {
                char h = *j->p++;
                v <<= 4;
                if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
                else {
                    buf_free(&b);
                    return jerr(j, "bad \\u escape", g_start);
                }
            }
            if (v == 0 || (v >= 0xd800 && v <= 0xdfff)) {
                buf_free(&b);
                return jerr(j, "unsupported \\u escape", g_start);
            }
            uint8_t u8[3];
            size_t n;
            if (v < 0x80) { u8[0] = (uint8_t)v; n = 1; }
            else if (v < 0x800) { u8[0] = (uint8_t)(0xc0 | v >> 6); u8[1] = (uint8_t)(0x80 | (v & 0x3f)); n = 2; }
            else { u8[0] = (uint8_t)(0xe0 | v >> 12); u8[1] = (uint8_t)(0x80 | ((v >> 6) & 0x3f));
                   u8[2] = (uint8_t)(0x80 | (v & 0x3f)); n = 3; }
            if (buf_put(&b, u8, n))
                goto oom;
        } else {
            buf_free(&b);
            return jerr(j, "bad escape in string", g_start);
        }
    }
    if (j->p >= j->end) {
        buf_free(&b);
        return jerr(j, "unterminated string", g_start);
    }
    j->p++;
    *out = buf_steal_str(&b);
    buf_free(&b);
    if (!*out)
        return ds_errf(j->e, "out of memory");
    return 0;
oom:
    buf_free(&b);
    return ds_errf(j->e, "out of memory");
}

static int parse_val(struct jp *j, struct jv *v, int depth);

static int push(struct jv *v, char *key)
{
    struct jv *ni = realloc(v->items, (v->n + 1) * sizeof *ni);
    if (!ni)
        return -1;
    v->items = ni;
    memset(&v->items[v->n], 0, sizeof *ni);
    if (v->t == J_OBJ) {
        char **nk = realloc(v->keys, (v->n + 1) * sizeof *nk);
        if (!nk)
            return -1;
        v->keys = nk;
        v->keys[v->n] = key;
    }
    v->n++;
    return 0;
}

static int parse_val(struct jp *j, struct jv *v, int depth)
{
    memset(v, 0, sizeof *v);
    skip_ws(j);
    if (j->p >= j->end)
        return jerr(j, "unexpected end", g_start);
    if (depth > MF_MAX_DEPTH)
        return jerr(j, "nested too deeply", g_start);
    char c = *j->p;
    if (c == '{' || c == '[') {
        v->t = c == '{' ? J_OBJ : J_ARR;
        char close = c == '{' ? '}' : ']';
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            char *key = NULL;
            skip_ws(j);
            if (v->t == J_OBJ) {
                if (parse_str(j, &key))
                    return -1;
                for (size_t i = 0; i < v->n; i++)
                    if (!strcmp(v->keys[i], key)) {
                        free(key);
                        return jerr(j, "duplicate key", g_start);
                    }
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':') {
                    free(key);
                    return jerr(j, "expected ':'", g_start);
                }
                j->p++;
            }
            if (push(v, key)) {
                free(key);
                return ds_errf(j->e, "out of memory");
            }
            if (parse_val(j, &v->items[v->n - 1], depth + 1))
                return -1;
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return 0;
            }
            return jerr(j, "expected ',' or a closing bracket", g_start);
        }
    }
    if (c == '"') {
        v->t = J_STR;
        return parse_str(j, &v->s);
    }
    static const struct { const char *w; enum jt t; bool b; } words[] = {
        {"true", J_BOOL, true}, {"false", J_BOOL, false}, {"null", J_NULL, false}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].w);
        if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, words[i].w, n)) {
            j->p += n;
            v->t = words[i].t;
            v->b = words[i].b;
            return 0;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        v->t = J_INT;
        if (c == '-') {
            v->neg = true;
            j->p++;
        }
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return jerr(j, "bad number", g_start);
        if (*j->p == '0' && j->end - j->p > 1 && j->p[1] >= '0' && j->p[1] <= '9')
            return jerr(j, "leading zero in number", g_start);
        uint64_t u = 0;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            unsigned d = (unsigned)(*j->p++ - '0');
            if (u > (UINT64_MAX - d) / 10)
                return jerr(j, "number too large", g_start);
            u = u * 10 + d;
        }
        if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
            return jerr(j, "only integers are expected", g_start);
        v->u = u;
        return 0;
    }
    return jerr(j, "unexpected character", g_start);
}

/* ---------------------------------------------------------------------------------------------------------
 * reader: tree → struct manifest */

static const struct jv *get(const struct jv *o, const char *k)
{
    for (size_t i = 0; o && o->t == J_OBJ && i < o->n; i++)
        if (!strcmp(o->keys[i], k))
            return &o->items[i];
    return NULL;
}

static int get_u64(const struct jv *o, const char *ctx, const char *k, uint64_t max, uint64_t *out,
                   struct ds_err *e)
{
    const struct jv *v = get(o, k);
    if (!v)
        return ds_errf(e, "manifest: %s: missing \"%s\"", ctx, k);
    if (v->t != J_INT || v->neg || v->u > max)
        return ds_errf(e, "manifest: %s: \"%s\" must be an integer from 0 to %" PRIu64, ctx, k, max);
    *out = v->u;
    return 0;
}

static int get_str(const struct jv *o, const char *ctx, const char *k, char *out, size_t outlen, struct ds_err *e)
{
    const struct jv *v = get(o, k);
    if (!v)
        return ds_errf(e, "manifest: %s: missing \"%s\"", ctx, k);
    if (v->t != J_STR)
        return ds_errf(e, "manifest: %s: \"%s\" must be a string", ctx, k);
    if (strlen(v->s) >= outlen)
        return ds_errf(e, "manifest: %s: \"%s\" is too long", ctx, k);
    memcpy(out, v->s, strlen(v->s) + 1);
    return 0;
}

static int get_bool(const struct jv *o, const char *ctx, const char *k, bool *out, struct ds_err *e)
{
    const struct jv *v = get(o, k);
    if (!v)
        return ds_errf(e, "manifest: %s: missing \"%s\"", ctx, k);
    if (v->t != J_BOOL)
        return ds_errf(e, "manifest: %s: \"%s\" must be true or false", ctx, k);
    *out = v->b;
    return 0;
}

static const struct jv *get_arr(const struct jv *o, const char *k, struct ds_err *e)
{
    const struct jv *v = get(o, k);
    if (!v) {
        ds_errf(e, "manifest: missing \"%s\"", k);
        return NULL;
    }
    if (v->t != J_ARR) {
        ds_errf(e, "manifest: \"%s\" must be an array", k);
        return NULL;
    }
    for (size_t i = 0; i < v->n; i++)
        if (v->items[i].t != J_OBJ) {
            ds_errf(e, "manifest: \"%s\"[%zu] must be an object", k, i);
            return NULL;
        }
    return v;
}

#define U32MAX ((uint64_t)UINT32_MAX)

int manifest_parse(const char *text, size_t len, struct manifest *m, struct ds_err *e)
{
    memset(m, 0, sizeof *m);
    struct jp j = {.p = text, .end = text + len, .e = e};
    struct jv root;
    g_start = text;
    int rc = -1;
    if (parse_val(&j, &root, 0)) {
        jv_free(&root);
        return -1;
    }
    skip_ws(&j);
    if (j.p != j.end) {
        jerr(&j, "trailing data after the object", text);
        goto out;
    }
    if (root.t != J_OBJ) {
        ds_errf(e, "manifest: not a JSON object");
        goto out;
    }
    char fmt[32];
    uint64_t v, created_abs;
    if (get_str(&root, "top", "format", fmt, sizeof fmt, e))
        goto out;
    if (strcmp(fmt, "diskswarm-manifest")) {
        ds_errf(e, "manifest: format is \"%s\", not \"diskswarm-manifest\"", fmt);
        goto out;
    }
    if (get_u64(&root, "top", "version", 1000, &v, e))
        goto out;
    if (v != MANIFEST_VERSION) {
        ds_errf(e, "manifest: version %" PRIu64 " is not supported (this diskswarm reads version %d)", v,
                MANIFEST_VERSION);
        goto out;
    }
    m->version = (int)v;
    const struct jv *cr = get(&root, "created");
    if (!cr || cr->t != J_INT || cr->u > (uint64_t)INT64_MAX) {
        ds_errf(e, "manifest: top: \"created\" must be an integer");
        goto out;
    }
    created_abs = cr->u;
    m->created = cr->neg ? -(int64_t)created_abs : (int64_t)created_abs;
    if (get_str(&root, "top", "created_by", m->created_by, sizeof m->created_by, e) ||
        get_str(&root, "top", "source", m->source, sizeof m->source, e) ||
        get_u64(&root, "top", "source_size", UINT64_MAX, &m->source_size, e) ||
        get_str(&root, "top", "kind", m->kind, sizeof m->kind, e) ||
        get_str(&root, "top", "mode", m->mode, sizeof m->mode, e) ||
        get_str(&root, "top", "label", m->label, sizeof m->label, e) ||
        get_str(&root, "top", "disk_id", m->disk_id, sizeof m->disk_id, e) ||
        get_u64(&root, "top", "sector_size", U32MAX, &v, e))
        goto out;
    m->sector_size = (uint32_t)v;
    if (get_u64(&root, "top", "piece_size", UINT64_MAX, &m->piece_size, e))
        goto out;
    if (strcmp(m->kind, "disk") && strcmp(m->kind, "partition")) {
        ds_errf(e, "manifest: unknown kind \"%s\"", m->kind);
        goto out;
    }
    if (strcmp(m->mode, "whole-disk") && strcmp(m->mode, "per-partition") && strcmp(m->mode, "single")) {
        ds_errf(e, "manifest: unknown mode \"%s\"", m->mode);
        goto out;
    }
    const struct jv *g = get(&root, "gpt");
    if (g) {
        if (g->t != J_OBJ) {
            ds_errf(e, "manifest: \"gpt\" must be an object");
            goto out;
        }
        m->has_gpt = true;
        if (get_u64(g, "gpt", "first_usable_lba", UINT64_MAX, &m->gpt_first_usable, e) ||
            get_u64(g, "gpt", "last_usable_lba", UINT64_MAX, &m->gpt_last_usable, e) ||
            get_u64(g, "gpt", "alt_lba", UINT64_MAX, &m->gpt_alt_lba, e) ||
            get_u64(g, "gpt", "entries_lba", UINT64_MAX, &m->gpt_entries_lba, e) ||
            get_u64(g, "gpt", "entries", UINT64_MAX, &m->gpt_n_entries, e) ||
            get_u64(g, "gpt", "backup_offset", UINT64_MAX, &m->gpt_backup_off, e) ||
            get_u64(g, "gpt", "backup_length", UINT64_MAX, &m->gpt_backup_len, e))
            goto out;
    }
    const struct jv *a = get_arr(&root, "areas", e), *p, *t;
    if (!a)
        goto out;
    if (a->n && !(m->areas = calloc(a->n, sizeof *m->areas))) {
        ds_errf(e, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < a->n; i++, m->n_areas++) {
        struct manifest_area *x = &m->areas[i];
        if (get_str(&a->items[i], "area", "what", x->what, sizeof x->what, e) ||
            get_u64(&a->items[i], "area", "offset", UINT64_MAX, &x->offset, e) ||
            get_u64(&a->items[i], "area", "length", UINT64_MAX - x->offset, &x->length, e))
            goto out;
    }
    if (!(p = get_arr(&root, "partitions", e)))
        goto out;
    if (p->n && !(m->parts = calloc(p->n, sizeof *m->parts))) {
        ds_errf(e, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < p->n; i++, m->n_parts++) {
        struct manifest_part *x = &m->parts[i];
        const struct jv *o = &p->items[i];
        uint64_t num, bs;
        if (get_u64(o, "partition", "number", U32MAX, &num, e) ||
            get_str(o, "partition", "device", x->device, sizeof x->device, e) ||
            get_u64(o, "partition", "start", UINT64_MAX, &x->start, e) ||
            get_u64(o, "partition", "size", UINT64_MAX - x->start, &x->size, e) ||
            get_str(o, "partition", "type", x->type, sizeof x->type, e) ||
            get_str(o, "partition", "type_name", x->type_name, sizeof x->type_name, e) ||
            get_str(o, "partition", "name", x->name, sizeof x->name, e) ||
            get_str(o, "partition", "uuid", x->uuid, sizeof x->uuid, e) ||
            get_str(o, "partition", "fstype", x->fstype, sizeof x->fstype, e) ||
            get_str(o, "partition", "scanner", x->scanner, sizeof x->scanner, e) ||
            get_bool(o, "partition", "raw_fallback", &x->raw_fallback, e) ||
            get_u64(o, "partition", "block_size", U32MAX, &bs, e) ||
            get_u64(o, "partition", "fs_size", UINT64_MAX, &x->fs_size, e) ||
            get_u64(o, "partition", "used_bytes", UINT64_MAX, &x->used_bytes, e) ||
            get_u64(o, "partition", "extents", UINT64_MAX, &x->extents, e) ||
            get_str(o, "partition", "torrent", x->torrent, sizeof x->torrent, e))
            goto out;
        x->number = (unsigned)num;
        x->block_size = (uint32_t)bs;
    }
    if (!(t = get_arr(&root, "torrents", e)))
        goto out;
    if (t->n && !(m->torrents = calloc(t->n, sizeof *m->torrents))) {
        ds_errf(e, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->n; i++, m->n_torrents++) {
        struct manifest_torrent *x = &m->torrents[i];
        const struct jv *o = &t->items[i];
        if (get_str(o, "torrent", "file", x->file, sizeof x->file, e) ||
            get_str(o, "torrent", "name", x->name, sizeof x->name, e) ||
            get_str(o, "torrent", "role", x->role, sizeof x->role, e) ||
            get_str(o, "torrent", "info_hash", x->info_hash, sizeof x->info_hash, e) ||
            get_u64(o, "torrent", "bytes", UINT64_MAX, &x->bytes, e) ||
            get_u64(o, "torrent", "pieces", UINT64_MAX, &x->pieces, e) ||
            get_u64(o, "torrent", "extents", UINT64_MAX, &x->extents, e))
            goto out;
        if (get(o, "image") &&
            (get_str(o, "torrent", "image", x->image, sizeof x->image, e) ||
             get_str(o, "torrent", "image_compression", x->image_compression, sizeof x->image_compression, e) ||
             get_u64(o, "torrent", "image_bytes", UINT64_MAX, &x->image_bytes, e)))
            goto out;
        if (get(o, "seed_in_place") &&
            get_str(o, "torrent", "seed_in_place", x->seed_in_place, sizeof x->seed_in_place, e))
            goto out;
        if (x->image[0] && (strchr(x->image, '/') || !strcmp(x->image, ".") || !strcmp(x->image, ".."))) {
            ds_errf(e, "manifest: image file name \"%s\" is not a plain file name", x->image);
            goto out;
        }
        if (!x->file[0] || strchr(x->file, '/') || !strcmp(x->file, ".") || !strcmp(x->file, "..")) {
            ds_errf(e, "manifest: torrent file name \"%s\" is not a plain file name", x->file);
            goto out;
        }
    }
    const struct jv *pt = get(&root, "partition_table");
    if (pt) {
        if (pt->t != J_OBJ) {
            ds_errf(e, "manifest: \"partition_table\" must be an object");
            goto out;
        }
        if (get_str(pt, "partition_table", "format", m->pt_format, sizeof m->pt_format, e) ||
            get_str(pt, "partition_table", "file", m->pt_file, sizeof m->pt_file, e))
            goto out;
        if (!m->pt_file[0] || strchr(m->pt_file, '/') || !strcmp(m->pt_file, ".") || !strcmp(m->pt_file, "..")) {
            ds_errf(e, "manifest: partition table file name \"%s\" is not a plain file name", m->pt_file);
            goto out;
        }
    }
    rc = 0;
out:
    jv_free(&root);
    if (rc)
        manifest_free(m);
    return rc;
}

int manifest_read(const char *path, struct manifest *m, struct ds_err *e)
{
    char full[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(full, sizeof full, "%s/%s", path, MANIFEST_FILE);
    else
        snprintf(full, sizeof full, "%s", path);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_errno(e, "cannot open '%s'", full);
    struct buf b = {0};
    int rc = -1;
    for (;;) {
        if (b.len > MF_MAX_SIZE) {
            ds_errf(e, "'%s' is larger than %zu bytes", full, MF_MAX_SIZE);
            goto out;
        }
        uint8_t *p = NULL;
        if (buf_reserve(&b, 65536) == 0)
            p = b.data + b.len;
        if (!p) {
            ds_errf(e, "out of memory");
            goto out;
        }
        ssize_t r = read(fd, p, 65536);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ds_errno(e, "cannot read '%s'", full);
            goto out;
        }
        if (r == 0)
            break;
        b.len += (size_t)r;
    }
    if (memchr(b.data, 0, b.len)) {
        ds_errf(e, "'%s' contains a NUL byte", full);
        goto out;
    }
    rc = manifest_parse((const char *)b.data, b.len, m, e);
out:
    close(fd);
    buf_free(&b);
    return rc;
}

void manifest_free(struct manifest *m)
{
    if (!m)
        return;
    free(m->areas);
    free(m->parts);
    free(m->torrents);
    m->areas = NULL;
    m->parts = NULL;
    m->torrents = NULL;
    m->n_areas = m->n_parts = m->n_torrents = 0;
}
