/* scan.c — the scanner result container and the probe-in-order dispatcher. */
#include "scan.h"

#include <errno.h>
#include <unistd.h>

#include <stdlib.h>
#include <string.h>

int scan_result_add(struct scan_result *r, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    if (len > UINT64_MAX - off)
        len = UINT64_MAX - off;
    if (r->n > 0) {
        struct scan_extent *p = &r->ext[r->n - 1];
        /* merge with the previous extent when it touches or overlaps (callers add in ascending order) */
        if (off >= p->off && off <= p->off + p->len) {
            uint64_t end = off + len;
            if (end > p->off + p->len)
                p->len = end - p->off;
            return 0;
        }
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 256;
        if (ncap > SIZE_MAX / sizeof *r->ext)
            return -1;
        struct scan_extent *nv = realloc(r->ext, ncap * sizeof *nv);
        if (!nv)
            return -1;
        r->ext = nv;
        r->cap = ncap;
    }
    r->ext[r->n++] = (struct scan_extent){.off = off, .len = len};
    return 0;
}

static int cmp_ext(const void *a, const void *b)
{
    const struct scan_extent *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

int scan_result_finish(struct scan_result *r, struct ds_err *e)
{
    (void)e;
    if (r->n > 1)
        qsort(r->ext, r->n, sizeof *r->ext, cmp_ext);
    size_t w = 0;
    uint64_t used = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct scan_extent x = r->ext[i];
        if (r->fs_size) {
            if (x.off >= r->fs_size)
                continue;
            if (x.len > r->fs_size - x.off)
                x.len = r->fs_size - x.off;
        }
        if (x.len == 0)
            continue;
        if (w > 0 && x.off <= r->ext[w - 1].off + r->ext[w - 1].len) {
            struct scan_extent *p = &r->ext[w - 1];
            if (x.off + x.len > p->off + p->len)
                p->len = x.off + x.len - p->off;
        } else {
            r->ext[w++] = x;
        }
    }
    r->n = w;
    for (size_t i = 0; i < w; i++)
        used += r->ext[i].len;
    r->used_bytes = used;
    return 0;
}

void scan_result_free(struct scan_result *r)
{
    if (!r)
        return;
    free(r->ext);
    r->ext = NULL;
    r->n = r->cap = 0;
    r->used_bytes = 0;
}

int scan_any(const struct scan_src *src, bool skip_zero, struct scan_result *out, bool *fell_back,
             struct ds_err *e)
{
    static const struct scanner *const order[] = {&scanner_ext, &scanner_xfs, &scanner_ntfs, &scanner_fat};
    if (fell_back)
        *fell_back = false;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const struct scanner *s = order[i];
        if (!s->probe || !s->scan)
            continue;
        int p = s->probe(src, e);
        if (p < 0)
            return -1;
        if (p == 0)
            continue;
        return s->scan(src, out, e);
    }
    if (fell_back)
        *fell_back = true;
    return scan_raw(src, skip_zero, 0, out, e);
}

int scan_read(const struct scan_src *s, const char *fs, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    if (off > s->size || len > s->size - off)
        return ds_errf(e, "%s: %s: read of %zu bytes at offset %llu is past the end of the source (%llu bytes)",
                       s->path, fs, len, (unsigned long long)off, (unsigned long long)s->size);
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(s->fd, p, len, (off_t)(s->base + off));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ds_errno(e, "%s: read at offset %llu", s->path, (unsigned long long)(s->base + off));
        }
        if (n == 0)
            return ds_errf(e, "%s: unexpected end of file at offset %llu", s->path,
                           (unsigned long long)(s->base + off));
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}
