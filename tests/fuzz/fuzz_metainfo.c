/* fuzz_metainfo.c — libFuzzer target for the .torrent loader and the extent map built from it. Built by
 * tests/fuzz/run.sh. Input: a .torrent file. When metainfo_parse accepts it, the documented validation must
 * hold (piece count = ceil(total/piece_length), files contiguous and summing to total, path components clean);
 * when extent_map_from_metainfo accepts it, the map must be contiguous in torrent offsets, sum to total, have
 * non-overlapping device ranges that do not wrap, dev_end/dev_bytes consistent, and extent_map_find must agree
 * with a linear search. Also: every piece size is in (0, piece_length] and they sum to total. */
#include <stdlib.h>
#include <string.h>

#include "extent_map.h"
#include "metainfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp_dev(const void *a, const void *b)
{
    const struct extent *x = *(const struct extent *const *)a, *y = *(const struct extent *const *)b;
    return x->dev_off < y->dev_off ? -1 : x->dev_off > y->dev_off;
}

static void check_component(const char *c, size_t n)
{
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
        abort();
}

static void check_mi(const struct metainfo *mi)
{
    if (!mi->name || !mi->piece_length || !mi->total_length || !mi->piece_hashes)
        abort();
    uint64_t np = mi->total_length / mi->piece_length + (mi->total_length % mi->piece_length != 0);
    if (np != mi->num_pieces)
        abort();
    uint64_t sum = 0;
    for (uint32_t i = 0; i < mi->num_pieces; i++) {
        uint64_t ps = metainfo_piece_size(mi, i);
        if (ps == 0 || ps > mi->piece_length)
            abort();
        sum += ps;
    }
    if (sum != mi->total_length)
        abort();
    /* the name is a path component too (it becomes a directory / device label) */
    if (strchr(mi->name, '/'))
        abort();
    uint64_t off = 0;
    for (size_t i = 0; i < mi->num_files; i++) {
        const struct mi_file *f = &mi->files[i];
        if (f->offset != off || !f->path || !f->last)
            abort();
        if (f->last < f->path || f->last > f->path + strlen(f->path))
            abort();
        if (f->path[0] == '/')
            abort();
        const char *c = f->path;
        for (;;) {
            const char *sl = strchr(c, '/');
            size_t n = sl ? (size_t)(sl - c) : strlen(c);
            check_component(c, n);
            if (!sl)
                break;
            c = sl + 1;
        }
        if (off + f->length < off)
            abort();
        off += f->length;
    }
    if (off != mi->total_length)
        abort();
    for (size_t i = 0; i < mi->num_trackers; i++)
        if (!mi->trackers[i])
            abort();
}

static void check_map(const struct extent_map *m)
{
    uint64_t tor = 0, bytes = 0, end = 0;
    const struct extent **byd = malloc((m->n ? m->n : 1) * sizeof *byd);
    if (!byd)
        return;
    size_t nd = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct extent *x = &m->ext[i];
        if (x->tor_off != tor || x->len == 0)
            abort();
        tor += x->len;
        if (!x->pad) {
            if (x->dev_off + x->len < x->dev_off)
                abort(); /* wraps around 2^64 */
            bytes += x->len;
            if (x->dev_off + x->len > end)
                end = x->dev_off + x->len;
            byd[nd++] = x;
        }
    }
    if (tor != m->total || bytes != m->dev_bytes || end != m->dev_end)
        abort();
    qsort(byd, nd, sizeof *byd, cmp_dev);
    for (size_t i = 1; i < nd; i++)
        if (byd[i - 1]->dev_off + byd[i - 1]->len > byd[i]->dev_off)
            abort(); /* overlapping device ranges */
    free(byd);
    /* binary search agrees with the layout at every extent boundary */
    for (size_t i = 0; i < m->n && i < 4096; i++) {
        const struct extent *x = &m->ext[i];
        if (extent_map_find(m, x->tor_off) != i || extent_map_find(m, x->tor_off + x->len - 1) != i)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    if (size)
        memcpy(p, data, size);
    struct metainfo *mi = NULL;
    struct ds_err e = {{0}};
    if (metainfo_parse(p, size, &mi, &e) == 0) {
        if (!mi)
            abort();
        check_mi(mi);
        struct extent_map m = {0};
        struct ds_err e2 = {{0}};
        if (extent_map_from_metainfo(mi, &m, &e2) == 0) {
            if (m.total != mi->total_length)
                abort();
            check_map(&m);
            extent_map_free(&m);
        } else if (!e2.msg[0]) {
            abort();
        }
        metainfo_free(mi);
    } else if (!e.msg[0]) {
        abort();
    }
    free(p);
    return 0;
}
