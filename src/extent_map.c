/* extent_map.c — torrent byte stream <-> device offsets (Ezio/Clonezilla layout). */
#include "extent_map.h"

#include <stdlib.h>
#include <string.h>

#include "metainfo.h"

/* Parse 1..32 hex digits (either case) into a uint64; leading zeros are allowed, the value must fit. */
static int parse_hex_offset(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        if (v >> 60)
            return -1; /* shifting would lose bits: value does not fit in 64 bits */
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

static int cmp_dev(const void *a, const void *b)
{
    const struct extent *x = *(const struct extent *const *)a, *y = *(const struct extent *const *)b;
    return x->dev_off < y->dev_off ? -1 : x->dev_off > y->dev_off ? 1 : 0;
}

/* Fill totals and check device ranges: no dev_off+len overflow, no overlap among non-pad extents. */
static int finish_map(struct extent_map *m, struct ds_err *e)
{
    uint64_t total = 0, dev_end = 0, dev_bytes = 0;
    size_t n_data = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct extent *x = &m->ext[i];
        if (x->tor_off != total)
            return ds_errf(e, "extent %zu: torrent offset is not contiguous", i);
        if (x->len > UINT64_MAX - total)
            return ds_errf(e, "extent %zu: total length overflows", i);
        total += x->len;
        if (x->pad)
            continue;
        if (x->len > UINT64_MAX - x->dev_off)
            return ds_errf(e, "extent %zu: device offset %llu + length %llu overflows", i,
                           (unsigned long long)x->dev_off, (unsigned long long)x->len);
        if (x->dev_off + x->len > dev_end)
            dev_end = x->dev_off + x->len;
        dev_bytes += x->len; /* <= total, cannot overflow */
        n_data++;
    }
    if (n_data > 1) {
        const struct extent **v = malloc(n_data * sizeof *v);
        if (!v)
            return ds_errf(e, "out of memory");
        size_t k = 0;
        for (size_t i = 0; i < m->n; i++)
            if (!m->ext[i].pad)
                v[k++] = &m->ext[i];
        qsort(v, n_data, sizeof *v, cmp_dev);
        for (size_t i = 1; i < n_data; i++) {
            const struct extent *a = v[i - 1], *b = v[i];
            if (a->dev_off + a->len > b->dev_off) {
                int r = ds_errf(e,
                                "extents overlap on the device: [%llu, %llu) and [%llu, %llu) "
                                "(torrent offsets %llu and %llu)",
                                (unsigned long long)a->dev_off, (unsigned long long)(a->dev_off + a->len),
                                (unsigned long long)b->dev_off, (unsigned long long)(b->dev_off + b->len),
                                (unsigned long long)a->tor_off, (unsigned long long)b->tor_off);
                free(v);
                return r;
            }
        }
        free(v);
    }
    m->total = total;
    m->dev_end = dev_end;
    m->dev_bytes = dev_bytes;
    return 0;
}

int extent_map_from_metainfo(const struct metainfo *mi, struct extent_map *out, struct ds_err *e)
{
    memset(out, 0, sizeof *out);
    if (!mi->multi_file) {
        if (mi->total_length == 0)
            return ds_errf(e, "torrent is empty");
        out->ext = calloc(1, sizeof *out->ext);
        if (!out->ext)
            return ds_errf(e, "out of memory");
        out->ext[0] = (struct extent){.dev_off = 0, .len = mi->total_length, .tor_off = 0, .pad = false};
        out->n = 1;
    } else {
        if (mi->num_files == 0)
            return ds_errf(e, "torrent has no files");
        out->ext = calloc(mi->num_files, sizeof *out->ext);
        if (!out->ext)
            return ds_errf(e, "out of memory");
        for (size_t i = 0; i < mi->num_files; i++) {
            const struct mi_file *f = &mi->files[i];
            if (f->length == 0)
                continue;
            struct extent x = {.len = f->length, .tor_off = f->offset, .pad = f->is_pad};
            if (!f->is_pad && parse_hex_offset(f->last, &x.dev_off)) {
                int r = ds_errf(e, "file '%s' is not named by a hex device offset (Ezio layout)", f->path);
                extent_map_free(out);
                return r;
            }
            out->ext[out->n++] = x;
        }
    }
    if (finish_map(out, e)) {
        extent_map_free(out);
        return -1;
    }
    if (out->total != mi->total_length || out->total == 0) {
        extent_map_free(out);
        return ds_errf(e, "files do not add up to the torrent's total length");
    }
    return 0;
}

int extent_map_from_list(const struct extent *list, size_t n, struct extent_map *out, struct ds_err *e)
{
    memset(out, 0, sizeof *out);
    if (n == 0)
        return ds_errf(e, "no extents");
    out->ext = calloc(n, sizeof *out->ext);
    if (!out->ext)
        return ds_errf(e, "out of memory");
    uint64_t tor = 0;
    for (size_t i = 0; i < n; i++) {
        if (list[i].len == 0) {
            extent_map_free(out);
            return ds_errf(e, "extent %zu (device offset %llu) has zero length", i,
                           (unsigned long long)list[i].dev_off);
        }
        if (list[i].len > UINT64_MAX - tor) {
            extent_map_free(out);
            return ds_errf(e, "extent %zu: total length overflows", i);
        }
        out->ext[i] = (struct extent){.dev_off = list[i].pad ? 0 : list[i].dev_off, .len = list[i].len,
                                      .tor_off = tor, .pad = list[i].pad};
        tor += list[i].len;
    }
    out->n = n;
    if (finish_map(out, e)) {
        extent_map_free(out);
        return -1;
    }
    return 0;
}

void extent_map_free(struct extent_map *m)
{
    if (!m)
        return;
    free(m->ext);
    memset(m, 0, sizeof *m);
}

int extent_map_shift(struct extent_map *m, uint64_t delta, struct ds_err *e)
{
    if (m->dev_end > UINT64_MAX - delta)
        return ds_errf(e, "extents shifted by %llu bytes would lie beyond the largest offset",
                       (unsigned long long)delta);
    for (size_t i = 0; i < m->n; i++)
        if (!m->ext[i].pad)
            m->ext[i].dev_off += delta;
    if (m->dev_bytes)
        m->dev_end += delta;
    return 0;
}

size_t extent_map_find(const struct extent_map *m, uint64_t tor_off)
{
    if (!m || m->n == 0 || tor_off >= m->total)
        return m ? m->n : 0;
    return extent_find(m->ext, m->n, tor_off);
}

size_t extent_find(const struct extent *ext, size_t n, uint64_t tor_off)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ext[mid].tor_off <= tor_off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}
