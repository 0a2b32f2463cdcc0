/* scan_xfs.c — XFS scanner: everything but the free space.
 *
 * XFS keeps no allocation bitmap; free space is indexed per allocation group by two B+trees. For each AG we
 * read the AGF, walk the by-block-number free-space btree (bnobt) depth first — its leaves list the free
 * extents in ascending block order — and also take the blocks on the AG free list (AGFL: reserved for btree
 * growth, holding nothing), exactly as partclone.xfs / xfs_copy do. Used = the AG minus those, so superblocks,
 * AG headers, inode chunks, btrees, directories, file data and the internal log all count as used.
 *
 * Both on-disk formats: v4 short-form btree block headers (16 bytes, magic ABTB) and v5/CRC ones (56 bytes,
 * magic AB3B; CRCs are not verified). Memory: one block buffer per btree level (at most XFS_MAX_LEVELS) plus
 * the AGFL. A hostile tree cannot make us loop: levels must decrease by one per step, pointers and records
 * must lie inside the AG, and the number of btree blocks visited per AG is capped by the AG's size. Only the
 * data device is scanned: an external log or realtime device is not part of it. */
#include "scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XFS_MAX_LEVELS 9
#define MAGIC_SB 0x58465342u   /* XFSB */
#define MAGIC_AGF 0x58414746u  /* XAGF */
#define MAGIC_AGFL 0x5841464cu /* XAFL */
#define MAGIC_ABTB 0x41425442u /* bnobt v4 */
#define MAGIC_AB3B 0x41423342u /* bnobt v5 */

struct xfs_geom {
    uint32_t bsize, ssize;
    uint64_t dblocks;
    uint32_t agblocks, agcount;
    bool v5;
};

/* per-AG walk state */
struct xfs_ag {
    const struct scan_src *src;
    const struct xfs_geom *g;
    uint32_t agno;
    uint32_t aglen;        /* blocks in this AG */
    uint64_t visited;      /* btree blocks read */
    uint32_t cursor;       /* first block not yet classified */
    uint32_t *agfl;        /* sorted free-list blocks */
    size_t nagfl, iagfl;
    struct scan_result *out;
    uint8_t *lvbuf[XFS_MAX_LEVELS];
};

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static bool pow2(uint64_t v) { return v && !(v & (v - 1)); }

static unsigned log2u(uint64_t v)
{
    unsigned l = 0;
    while (v > 1) {
        v >>= 1;
        l++;
    }
    return l;
}

static int rd(const struct scan_src *s, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    return scan_read(s, "XFS", off, buf, len, e);
}

/* 1 = XFS superblock with sane geometry (g filled), 0 = not (reason in e). */
static int parse_sb(const uint8_t *b, struct xfs_geom *g, struct ds_err *e)
{
    if (be32(b) != MAGIC_SB)
        return ds_errf(e, "no XFS magic"), 0;
    g->bsize = be32(b + 4);
    g->dblocks = be64(b + 8);
    g->agblocks = be32(b + 84);
    g->agcount = be32(b + 88);
    uint16_t ver = be16(b + 100);
    g->ssize = be16(b + 102);
    unsigned blocklog = b[120], sectlog = b[121], agblklog = b[124];
    if ((ver & 0x0F) != 4 && (ver & 0x0F) != 5)
        return ds_errf(e, "version %u", ver & 0x0F), 0;
    g->v5 = (ver & 0x0F) == 5;
    if (!pow2(g->bsize) || g->bsize < 512 || g->bsize > 65536 || blocklog != log2u(g->bsize))
        return ds_errf(e, "block size %u", g->bsize), 0;
    if (!pow2(g->ssize) || g->ssize < 512 || g->ssize > 32768 || g->ssize > g->bsize || sectlog != log2u(g->ssize))
        return ds_errf(e, "sector size %u", g->ssize), 0;
    if (g->agcount == 0 || g->agblocks < 5 || g->dblocks == 0)
        return ds_errf(e, "AG geometry %u x %u, %llu blocks", g->agcount, g->agblocks,
                       (unsigned long long)g->dblocks), 0;
    if (agblklog != log2u(g->agblocks) + !pow2(g->agblocks))
        return ds_errf(e, "agblklog %u for %u blocks per AG", agblklog, g->agblocks), 0;
    uint64_t full = (uint64_t)g->agcount * g->agblocks;
    if (g->dblocks > full || g->dblocks <= full - g->agblocks)
        return ds_errf(e, "%llu blocks do not fit %u AGs of %u", (unsigned long long)g->dblocks, g->agcount,
                       g->agblocks), 0;
    if (g->dblocks > UINT64_MAX / g->bsize)
        return ds_errf(e, "absurd block count"), 0;
    if (b[126])
        return ds_errf(e, "mkfs in progress"), 0;
    return 1;
}

static int xfs_probe(const struct scan_src *src, struct ds_err *e)
{
    uint8_t b[512];
    struct xfs_geom g;
    struct ds_err why;
    if (src->size < sizeof b)
        return 0;
    if (rd(src, 0, b, sizeof b, e) < 0)
        return -1;
    return parse_sb(b, &g, &why);
}

static uint64_t ag_byte(const struct xfs_ag *ag, uint64_t agbno)
{
    return ((uint64_t)ag->agno * ag->g->agblocks + agbno) * ag->g->bsize;
}

/* Mark [cursor, b) used and skip the free blocks [b, b+len). Free extents arrive in ascending order; overlap
 * (a corrupt tree) only shrinks the free part, never the used part. */
static int take_free(struct xfs_ag *ag, uint32_t b, uint32_t len)
{
    uint64_t end = (uint64_t)b + len;
    if (b > ag->cursor && scan_result_add(ag->out, ag_byte(ag, ag->cursor), (uint64_t)(b - ag->cursor) * ag->g->bsize) < 0)
        return -1;
    if (end > ag->cursor)
        ag->cursor = (uint32_t)end;
    return 0;
}

/* A free extent from the bnobt: first the AGFL blocks before it. */
static int free_extent(struct xfs_ag *ag, uint32_t b, uint32_t len)
{
    while (ag->iagfl < ag->nagfl && ag->agfl[ag->iagfl] < b) {
        if (take_free(ag, ag->agfl[ag->iagfl], 1) < 0)
            return -1;
        ag->iagfl++;
    }
    return take_free(ag, b, len);
}

static int walk(struct xfs_ag *ag, uint32_t bno, int level, struct ds_err *e)
{
    const struct xfs_geom *g = ag->g;
    const char *path = ag->src->path;
    if (bno >= ag->aglen || bno == 0)
        return ds_errf(e, "%s: XFS AG %u: free-space btree pointer %u outside the AG", path, ag->agno, bno);
    if (++ag->visited > ag->aglen)
        return ds_errf(e, "%s: XFS AG %u: free-space btree has more blocks than the AG (cycle?)", path, ag->agno);
    uint8_t *blk = ag->lvbuf[level];
    if (rd(ag->src, ag_byte(ag, bno), blk, g->bsize, e) < 0)
        return -1;
    uint32_t magic = be32(blk);
    if (magic != (g->v5 ? MAGIC_AB3B : MAGIC_ABTB))
        return ds_errf(e, "%s: XFS AG %u block %u: not a free-space btree block (magic %#x)", path, ag->agno, bno,
                       magic);
    unsigned hdr = g->v5 ? 56 : 16;
    unsigned blvl = be16(blk + 4), nrec = be16(blk + 6);
    if ((int)blvl != level)
        return ds_errf(e, "%s: XFS AG %u block %u: level %u, expected %d", path, ag->agno, bno, blvl, level);
    if (level == 0) {
        if (nrec > (g->bsize - hdr) / 8)
            return ds_errf(e, "%s: XFS AG %u block %u: %u records", path, ag->agno, bno, nrec);
        for (unsigned i = 0; i < nrec; i++) {
            uint32_t s = be32(blk + hdr + 8 * i), n = be32(blk + hdr + 8 * i + 4);
            if (n == 0 || s >= ag->aglen || n > ag->aglen - s)
                return ds_errf(e, "%s: XFS AG %u: free extent %u+%u outside the AG", path, ag->agno, s, n);
            if (free_extent(ag, s, n) < 0)
                return ds_errf(e, "out of memory");
        }
        return 0;
    }
    unsigned maxr = (g->bsize - hdr) / 12;
    if (nrec == 0 || nrec > maxr)
        return ds_errf(e, "%s: XFS AG %u block %u: %u pointers", path, ag->agno, bno, nrec);
    for (unsigned i = 0; i < nrec; i++) {
        /* blk is this level's buffer: children use the buffers below it, so it stays valid */
        uint32_t child = be32(blk + hdr + 8 * maxr + 4 * i);
        if (walk(ag, child, level - 1, e) < 0)
            return -1;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int scan_ag(struct xfs_ag *ag, uint8_t *sect, struct ds_err *e)
{
    const struct xfs_geom *g = ag->g;
    const char *path = ag->src->path;
    uint64_t agstart = (uint64_t)ag->agno * g->agblocks * g->bsize;
    /* AGF: second sector of the AG */
    if (rd(ag->src, agstart + g->ssize, sect, g->ssize, e) < 0)
        return -1;
    if (be32(sect) != MAGIC_AGF || be32(sect + 8) != ag->agno)
        return ds_errf(e, "%s: XFS AG %u: bad AGF (magic %#x, seqno %u)", path, ag->agno, be32(sect),
                       be32(sect + 8));
    uint32_t len = be32(sect + 12), root = be32(sect + 16), levels = be32(sect + 28);
    uint32_t flfirst = be32(sect + 40), fllast = be32(sect + 44), flcount = be32(sect + 48);
    if (len != ag->aglen)
        return ds_errf(e, "%s: XFS AG %u: AGF length %u, superblock says %u", path, ag->agno, len, ag->aglen);
    if (levels < 1 || levels > XFS_MAX_LEVELS)
        return ds_errf(e, "%s: XFS AG %u: free-space btree of %u levels", path, ag->agno, levels);

    /* AGFL: fourth sector; entries from flfirst to fllast, circular */
    uint32_t hdr = g->v5 ? 36 : 0, fl_size = (g->ssize - hdr) / 4;
    if (flcount) {
        if (flfirst >= fl_size || fllast >= fl_size || flcount > fl_size ||
            (fllast + fl_size - flfirst) % fl_size + 1 != flcount)
            return ds_errf(e, "%s: XFS AG %u: free list first %u last %u count %u", path, ag->agno, flfirst, fllast,
                           flcount);
        if (rd(ag->src, agstart + 3u * g->ssize, sect, g->ssize, e) < 0)
            return -1;
        if (g->v5 && be32(sect) != MAGIC_AGFL)
            return ds_errf(e, "%s: XFS AG %u: bad AGFL magic", path, ag->agno);
        ag->agfl = malloc(flcount * sizeof *ag->agfl);
        if (!ag->agfl)
            return ds_errf(e, "out of memory");
        for (uint32_t i = 0, k = flfirst; i < flcount; i++, k = (k + 1) % fl_size) {
            uint32_t b = be32(sect + hdr + 4 * k);
            if (b >= ag->aglen)
                return ds_errf(e, "%s: XFS AG %u: free list block %u outside the AG", path, ag->agno, b);
            ag->agfl[ag->nagfl++] = b;
        }
        qsort(ag->agfl, ag->nagfl, sizeof *ag->agfl, cmp_u32);
    }

    if (walk(ag, root, (int)levels - 1, e) < 0)
        return -1;
    /* AGFL blocks after the last free extent, then the rest of the AG is used */
    if (free_extent(ag, ag->aglen, 0) < 0)
        return ds_errf(e, "out of memory");
    return 0;
}

static int xfs_scan(const struct scan_src *src, struct scan_result *out, struct ds_err *e)
{
    uint8_t b[512];
    struct xfs_geom g;
    struct ds_err why;
    if (rd(src, 0, b, sizeof b, e) < 0)
        return -1;
    if (parse_sb(b, &g, &why) != 1)
        return ds_errf(e, "%s: not an XFS filesystem: %s", src->path, why.msg);
    uint64_t fs_size = g.dblocks * g.bsize;
    if (fs_size > src->size)
        return ds_errf(e, "%s: XFS filesystem of %llu bytes is larger than the source (%llu bytes): truncated?",
                       src->path, (unsigned long long)fs_size, (unsigned long long)src->size);
    snprintf(out->fstype, sizeof out->fstype, "xfs");
    out->block_size = g.bsize;
    out->fs_size = fs_size;

    int rc = 0;
    uint8_t *sect = malloc(g.ssize);
    uint8_t *bufs = malloc((size_t)g.bsize * XFS_MAX_LEVELS);
    if (!sect || !bufs)
        rc = ds_errf(e, "out of memory");
    for (uint32_t agno = 0; rc == 0 && agno < g.agcount; agno++) {
        struct xfs_ag ag = {
            .src = src,
            .g = &g,
            .agno = agno,
            .aglen = agno + 1 < g.agcount ? g.agblocks : (uint32_t)(g.dblocks - (uint64_t)agno * g.agblocks),
            .out = out,
        };
        for (int l = 0; l < XFS_MAX_LEVELS; l++)
            ag.lvbuf[l] = bufs + (size_t)l * g.bsize;
        rc = scan_ag(&ag, sect, e);
        free(ag.agfl);
    }
    free(sect);
    free(bufs);
    if (rc < 0)
        return -1;
    return scan_result_finish(out, e);
}

const struct scanner scanner_xfs = {
    .name = "xfs",
    .probe = xfs_probe,
    .scan = xfs_scan,
};
