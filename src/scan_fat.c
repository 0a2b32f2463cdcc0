/* scan_fat.c — FAT12/16/32 scanner: the used byte ranges of a FAT filesystem.
 *
 * Used = boot sector and the other reserved sectors, every FAT copy, the fixed root directory (FAT12/16),
 * every data cluster whose FAT entry is non-zero and not the bad-cluster mark, and the sectors after the last
 * whole cluster (like partclone.fat, which keeps them; there are fewer than one cluster of them).
 *
 * The FAT type follows Microsoft's rule (cluster count < 4085: FAT12, < 65525: FAT16, else FAT32), never the
 * informational type string. The active FAT is streamed in fixed-size chunks (a multiple of 3 bytes so FAT12
 * entry pairs never straddle a chunk), so memory does not grow with the volume. Every BPB field is checked
 * before use: the regions must fit in the volume, the volume in the source, the FAT must hold an entry per
 * cluster. */
#include "scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAT_CHUNK (3u * 16384u) /* bytes of FAT read at a time; multiple of 3 (FAT12) and of 4 (FAT32) */

struct fat_geom {
    unsigned type;          /* 12, 16 or 32 */
    uint32_t bps;           /* bytes per sector */
    uint32_t spc;           /* sectors per cluster */
    uint32_t rsvd;          /* reserved sectors */
    uint32_t nfats;
    uint32_t root_secs;     /* fixed root directory sectors (0 on FAT32) */
    uint64_t fat_secs;      /* sectors per FAT */
    uint64_t tot_secs;
    uint64_t data_start;    /* first sector of cluster 2 */
    uint64_t clusters;      /* data clusters (numbered 2 .. clusters+1) */
    uint32_t active_fat;    /* FAT copy to read */
};

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static bool pow2(uint64_t v) { return v && !(v & (v - 1)); }

/* Read exactly len bytes at off (relative to the fs) or fail; the range must lie inside the source. */
static int rd(const struct scan_src *s, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    return scan_read(s, "FAT", off, buf, len, e);
}

/* Parse and check the boot sector. 1 = a FAT filesystem (g filled), 0 = not FAT (why in e). */
static int parse_bpb(const uint8_t *b, struct fat_geom *g, struct ds_err *e)
{
    if (b[510] != 0x55 || b[511] != 0xAA)
        return ds_errf(e, "no boot signature"), 0;
    if (!memcmp(b + 3, "NTFS    ", 8) || !memcmp(b + 3, "EXFAT   ", 8))
        return ds_errf(e, "NTFS/exFAT boot sector"), 0;
    if (b[0] != 0xEB && b[0] != 0xE9 && b[0] != 0xE8)
        return ds_errf(e, "no jump instruction"), 0;
    g->bps = le16(b + 11);
    g->spc = b[13];
    g->rsvd = le16(b + 14);
    g->nfats = b[16];
    uint32_t root_ents = le16(b + 17);
    uint32_t tot16 = le16(b + 19), tot32 = le32(b + 32);
    uint32_t fat16 = le16(b + 22), fat32 = le32(b + 36);
    if (!pow2(g->bps) || g->bps < 512 || g->bps > 4096)
        return ds_errf(e, "bytes per sector %u", g->bps), 0;
    if (!pow2(g->spc) || (uint64_t)g->spc * g->bps > 256u * 1024)
        return ds_errf(e, "sectors per cluster %u", g->spc), 0;
    if (g->rsvd < 1)
        return ds_errf(e, "no reserved sectors"), 0;
    if (g->nfats < 1 || g->nfats > 16)
        return ds_errf(e, "FAT count %u", g->nfats), 0;
    g->tot_secs = tot16 ? tot16 : tot32;
    g->fat_secs = fat16 ? fat16 : fat32;
    if (!g->tot_secs || !g->fat_secs)
        return ds_errf(e, "zero total sectors or FAT size"), 0;
    g->root_secs = (root_ents * 32 + g->bps - 1) / g->bps;
    uint64_t meta = (uint64_t)g->rsvd + (uint64_t)g->nfats * g->fat_secs + g->root_secs;
    if (meta >= g->tot_secs)
        return ds_errf(e, "reserved+FAT+root sectors (%llu) leave no data area in %llu sectors",
                       (unsigned long long)meta, (unsigned long long)g->tot_secs), 0;
    g->data_start = meta;
    g->clusters = (g->tot_secs - meta) / g->spc;
    if (g->clusters < 1)
        return ds_errf(e, "no data clusters"), 0;
    g->type = g->clusters < 4085 ? 12 : g->clusters < 65525 ? 16 : 32;
    if (g->type == 32) {
        if (fat16 != 0 || root_ents != 0)
            return ds_errf(e, "FAT32 cluster count with a FAT12/16 BPB"), 0;
        if (g->clusters > 0x0FFFFFF5u)
            return ds_errf(e, "absurd cluster count %llu", (unsigned long long)g->clusters), 0;
    } else if (root_ents == 0) {
        return ds_errf(e, "FAT%u without root directory entries", g->type), 0;
    }
    /* the FAT must have an entry for every cluster (and the two reserved entries) */
    uint64_t need = g->type == 12 ? ((g->clusters + 2) * 3 + 1) / 2 : (g->clusters + 2) * (g->type / 8);
    if (need > g->fat_secs * g->bps)
        return ds_errf(e, "FAT of %llu sectors too small for %llu clusters", (unsigned long long)g->fat_secs,
                       (unsigned long long)g->clusters), 0;
    g->active_fat = 0;
    if (g->type == 32) {
        uint16_t ext_flags = le16(b + 40);
        if ((ext_flags & 0x80) && (ext_flags & 0x0F) < g->nfats) /* mirroring off: only one FAT is live */
            g->active_fat = ext_flags & 0x0F;
    }
    return 1;
}

static int fat_probe(const struct scan_src *src, struct ds_err *e)
{
    uint8_t b[512];
    struct fat_geom g;
    struct ds_err why;
    if (src->size < sizeof b)
        return 0;
    if (rd(src, 0, b, sizeof b, e) < 0)
        return -1;
    return parse_bpb(b, &g, &why);
}

/* Append a run of used clusters [first, first+n) (cluster numbers ≥ 2). */
static int add_clusters(struct scan_result *r, const struct fat_geom *g, uint64_t first, uint64_t n)
{
    uint64_t cb = (uint64_t)g->spc * g->bps;
    return scan_result_add(r, g->data_start * g->bps + (first - 2) * cb, n * cb);
}

static int fat_scan(const struct scan_src *src, struct scan_result *out, struct ds_err *e)
{
    uint8_t b[512];
    struct fat_geom g;
    struct ds_err why;
    if (rd(src, 0, b, sizeof b, e) < 0)
        return -1;
    if (parse_bpb(b, &g, &why) != 1)
        return ds_errf(e, "%s: not a FAT filesystem: %s", src->path, why.msg);
    uint64_t fs_size = g.tot_secs * g.bps;
    if (fs_size > src->size)
        return ds_errf(e, "%s: FAT%u volume of %llu bytes is larger than the source (%llu bytes): truncated?",
                       src->path, g.type, (unsigned long long)fs_size, (unsigned long long)src->size);
    snprintf(out->fstype, sizeof out->fstype, "vfat");
    out->block_size = g.spc * g.bps;
    out->fs_size = fs_size;

    /* reserved sectors, all FATs, fixed root directory */
    if (scan_result_add(out, 0, g.data_start * g.bps) < 0)
        return ds_errf(e, "out of memory");

    uint8_t *buf = malloc(FAT_CHUNK);
    if (!buf)
        return ds_errf(e, "out of memory");
    uint64_t fat_off = ((uint64_t)g.rsvd + (uint64_t)g.active_fat * g.fat_secs) * g.bps;
    uint64_t fat_bytes = g.type == 12 ? ((g.clusters + 2) * 3 + 1) / 2 : (g.clusters + 2) * (g.type / 8);
    uint64_t run_start = 0, run_len = 0, bad = 0;
    uint64_t cl = 0; /* entry index of buf[0] */
    int rc = 0;
    for (uint64_t pos = 0; pos < fat_bytes && rc == 0; pos += FAT_CHUNK) {
        size_t len = fat_bytes - pos < FAT_CHUNK ? (size_t)(fat_bytes - pos) : FAT_CHUNK;
        if (rd(src, fat_off + pos, buf, len, e) < 0) {
            rc = -1;
            break;
        }
        uint64_t nent = g.type == 12 ? (uint64_t)len * 2 / 3 : len / (g.type / 8);
        for (uint64_t i = 0; i < nent; i++, cl++) {
            if (cl < 2 || cl > g.clusters + 1)
                continue;
            uint32_t v, badmark;
            if (g.type == 12) {
                const uint8_t *p = buf + (i / 2) * 3;
                v = (i & 1) ? (uint32_t)(p[1] >> 4 | p[2] << 4) : (uint32_t)(p[0] | (p[1] & 0x0F) << 8);
                badmark = 0xFF7;
            } else if (g.type == 16) {
                v = le16(buf + i * 2);
                badmark = 0xFFF7;
            } else {
                v = le32(buf + i * 4) & 0x0FFFFFFFu;
                badmark = 0x0FFFFFF7u;
            }
            bool used = v != 0 && v != badmark;
            bad += v == badmark;
            if (used) {
                if (run_len && run_start + run_len == cl) {
                    run_len++;
                } else {
                    if (run_len && add_clusters(out, &g, run_start, run_len) < 0) {
                        rc = ds_errf(e, "out of memory");
                        break;
                    }
                    run_start = cl;
                    run_len = 1;
                }
            }
        }
    }
    free(buf);
    if (rc < 0)
        return -1;
    if (run_len && add_clusters(out, &g, run_start, run_len) < 0)
        return ds_errf(e, "out of memory");
    (void)bad;
    /* sectors past the last whole cluster: not addressable, but partclone keeps them */
    uint64_t end_cl = (g.data_start + g.clusters * g.spc) * g.bps;
    if (end_cl < fs_size && scan_result_add(out, end_cl, fs_size - end_cl) < 0)
        return ds_errf(e, "out of memory");
    return scan_result_finish(out, e);
}

const struct scanner scanner_fat = {
    .name = "fat",
    .probe = fat_probe,
    .scan = fat_scan,
};
