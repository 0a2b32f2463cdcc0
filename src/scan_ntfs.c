/* scan_ntfs.c — NTFS scanner: the used clusters according to $Bitmap, plus both boot sectors.
 *
 * Own parser, no libntfs-3g: boot sector → cluster and MFT record size → $MFT's own $DATA runlist (record 0)
 * → MFT record 6 ($Bitmap), with update-sequence fixups applied → its unnamed $DATA attribute, gathered from
 * the extension records named by an $ATTRIBUTE_LIST when there is one → mapping pairs → the bitmap, streamed
 * in chunks and turned into runs of used clusters.
 *
 * Besides what $Bitmap marks, the result always holds the boot sector and the backup boot sector, which
 * mkntfs puts in the sector right after the last one the volume counts (the last sector of the partition) and
 * which no cluster covers; partclone.ntfs leaves it out (it copies clusters 0 .. nr_clusters-1 only).
 *
 * Every on-disk length and offset is checked: attribute walks stay inside the record's bytes in use, run
 * lists inside their attribute, LCNs inside the volume, and the number of runs and attribute-list entries is
 * capped so a hostile volume cannot make the scanner allocate or loop without bound. */
#include "scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NTFS_CHUNK (64u * 1024u)           /* bitmap bytes read at a time */
#define NTFS_MAX_RUNS (1u << 20)           /* runs in one attribute's runlist */
#define NTFS_MAX_ATTRLIST (4u * 1024 * 1024) /* bytes of a non-resident $ATTRIBUTE_LIST */
#define NTFS_MAX_EXT_RECORDS 4096          /* extension records followed for $Bitmap's $DATA */

#define AT_ATTRIBUTE_LIST 0x20u
#define AT_DATA 0x80u
#define AT_END 0xFFFFFFFFu

struct ntfs_vol {
    const struct scan_src *src;
    uint32_t bps;          /* bytes per sector */
    uint32_t csize;        /* cluster size */
    uint32_t rec_size;     /* MFT record size */
    uint64_t total_secs;   /* sectors in the volume (backup boot sector not counted) */
    uint64_t nr_clusters;
    uint64_t mft_lcn;
};

struct run {
    uint64_t vcn, len;
    int64_t lcn;           /* -1: sparse */
};

struct runlist {
    struct run *r;
    size_t n, cap;
};

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static bool pow2(uint64_t v) { return v && !(v & (v - 1)); }

static int rd(const struct scan_src *s, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    return scan_read(s, "NTFS", off, buf, len, e);
}

/* 1 = NTFS boot sector (v filled), 0 = not (reason in e). */
static int parse_boot(const uint8_t *b, struct ntfs_vol *v, struct ds_err *e)
{
    if (memcmp(b + 3, "NTFS    ", 8) != 0)
        return ds_errf(e, "no NTFS OEM id"), 0;
    if (b[510] != 0x55 || b[511] != 0xAA)
        return ds_errf(e, "no boot signature"), 0;
    v->bps = le16(b + 11);
    if (!pow2(v->bps) || v->bps < 256 || v->bps > 4096)
        return ds_errf(e, "bytes per sector %u", v->bps), 0;
    uint32_t spc = b[13];
    if (spc > 0x80) {             /* 2^-n encoding for clusters of 64 KiB and more */
        uint32_t sh = 256 - spc;
        if (sh > 20)
            return ds_errf(e, "sectors per cluster code %#x", b[13]), 0;
        spc = 1u << sh;
    }
    if (!pow2(spc))
        return ds_errf(e, "sectors per cluster %u", spc), 0;
    uint64_t cs = (uint64_t)spc * v->bps;
    if (cs > 2u * 1024 * 1024)
        return ds_errf(e, "cluster size %llu", (unsigned long long)cs), 0;
    v->csize = (uint32_t)cs;
    /* fields that must be zero in an NTFS BPB (reserved sectors, FATs, root entries, sectors16, FAT size) */
    if (le16(b + 14) || b[16] || le16(b + 17) || le16(b + 19) || le16(b + 22))
        return ds_errf(e, "FAT fields set in an NTFS boot sector"), 0;
    v->total_secs = le64(b + 40);
    v->mft_lcn = le64(b + 48);
    int8_t cpr = (int8_t)b[64];
    uint64_t rs;
    if (cpr < 0) {
        if (-cpr < 9 || -cpr > 16)
            return ds_errf(e, "MFT record size code %d", cpr), 0;
        rs = 1u << -cpr;
    } else {
        rs = (uint64_t)(uint8_t)cpr * v->csize;
    }
    if (!pow2(rs) || rs < 512 || rs > 65536)
        return ds_errf(e, "MFT record size %llu", (unsigned long long)rs), 0;
    v->rec_size = (uint32_t)rs;
    if (v->total_secs == 0 || v->total_secs > (UINT64_MAX / 2) / v->bps)
        return ds_errf(e, "total sectors %llu", (unsigned long long)v->total_secs), 0;
    v->nr_clusters = v->total_secs / spc;
    if (v->nr_clusters == 0 || v->mft_lcn >= v->nr_clusters)
        return ds_errf(e, "MFT cluster %llu outside the %llu clusters", (unsigned long long)v->mft_lcn,
                       (unsigned long long)v->nr_clusters), 0;
    return 1;
}

static int ntfs_probe(const struct scan_src *src, struct ds_err *e)
{
    uint8_t b[512];
    struct ntfs_vol v;
    struct ds_err why;
    if (src->size < sizeof b)
        return 0;
    if (rd(src, 0, b, sizeof b, e) < 0)
        return -1;
    return parse_boot(b, &v, &why);
}

/* Apply the update sequence array to a record of v->rec_size bytes; checks the FILE magic. */
static int fixup(const struct ntfs_vol *v, uint8_t *rec, uint64_t recno, struct ds_err *e)
{
    if (memcmp(rec, "FILE", 4) != 0)
        return ds_errf(e, "%s: MFT record %llu: bad magic", v->src->path, (unsigned long long)recno);
    uint32_t usa_ofs = le16(rec + 4), usa_cnt = le16(rec + 6);
    uint32_t nsect = v->rec_size / 512;
    if (usa_cnt != nsect + 1 || usa_ofs & 1 || usa_ofs + 2u * usa_cnt > 512u - 2)
        return ds_errf(e, "%s: MFT record %llu: bad update sequence array (offset %u, count %u)", v->src->path,
                       (unsigned long long)recno, usa_ofs, usa_cnt);
    const uint8_t *usa = rec + usa_ofs;
    for (uint32_t i = 1; i <= nsect; i++) {
        uint8_t *end = rec + i * 512 - 2;
        if (end[0] != usa[0] || end[1] != usa[1])
            return ds_errf(e, "%s: MFT record %llu: update sequence mismatch in sector %u (torn write?)",
                           v->src->path, (unsigned long long)recno, i);
        end[0] = usa[2 * i];
        end[1] = usa[2 * i + 1];
    }
    uint32_t in_use = le32(rec + 24), attrs = le16(rec + 20);
    if (in_use > v->rec_size || attrs < 42 || attrs >= in_use)
        return ds_errf(e, "%s: MFT record %llu: bytes in use %u / first attribute %u out of range", v->src->path,
                       (unsigned long long)recno, in_use, attrs);
    return 0;
}

/* Map the byte range [off, off+len) of a non-resident attribute through its runlist; reads into buf, sparse
 * and unmapped-but-within-initialized parts read as zeros. */
static int rl_read(const struct ntfs_vol *v, const struct runlist *rl, uint64_t off, uint8_t *buf, size_t len,
                   struct ds_err *e)
{
    /* find the first run containing off (runs are sorted by vcn) */
    size_t lo = 0, hi = rl->n;
    uint64_t vcn = off / v->csize;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rl->r[mid].vcn + rl->r[mid].len <= vcn)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t i = lo;
    while (len) {
        vcn = off / v->csize;
        if (i >= rl->n || rl->r[i].vcn > vcn)
            return ds_errf(e, "%s: NTFS: attribute byte %llu is not mapped by its runlist", v->src->path,
                           (unsigned long long)off);
        const struct run *r = &rl->r[i];
        uint64_t run_end = (r->vcn + r->len) * v->csize;
        size_t n = run_end - off < len ? (size_t)(run_end - off) : len;
        if (r->lcn < 0) {
            memset(buf, 0, n);
        } else {
            uint64_t dev = (uint64_t)r->lcn * v->csize + (off - r->vcn * v->csize);
            if (rd(v->src, dev, buf, n, e) < 0)
                return -1;
        }
        buf += n;
        off += n;
        len -= n;
        i++;
    }
    return 0;
}

/* Read MFT record recno using the $MFT runlist, apply fixups. */
static int read_record(const struct ntfs_vol *v, const struct runlist *mft, uint64_t recno, uint8_t *rec,
                       struct ds_err *e)
{
    if (recno > UINT64_MAX / v->rec_size)
        return ds_errf(e, "%s: MFT record number %llu out of range", v->src->path, (unsigned long long)recno);
    if (rl_read(v, mft, recno * v->rec_size, rec, v->rec_size, e) < 0)
        return -1;
    return fixup(v, rec, recno, e);
}

/* Walk the attributes of a fixed-up record; returns the offset of the next attribute of type `type` at or
 * after *pos (then advances *pos past it), 0 when there are no more, -1 if the walk leaves the record. */
static int next_attr(const struct ntfs_vol *v, const uint8_t *rec, uint32_t *pos, uint32_t type, uint64_t recno,
                     struct ds_err *e)
{
    uint32_t in_use = le32(rec + 24);
    while (*pos + 8 <= in_use) {
        uint32_t off = *pos, t = le32(rec + off);
        if (t == AT_END)
            return 0;
        uint32_t alen = le32(rec + off + 4);
        if (alen < 24 || alen & 7 || alen > in_use - off)
            return ds_errf(e, "%s: MFT record %llu: attribute at %u has length %u", v->src->path,
                           (unsigned long long)recno, off, alen);
        *pos = off + alen;
        if (t == type)
            return (int)off;
    }
    return ds_errf(e, "%s: MFT record %llu: attributes run past the bytes in use", v->src->path,
                   (unsigned long long)recno);
}

/* Decode the mapping pairs of the non-resident attribute at rec+off into rl (appending, vcns must continue
 * from lowest_vcn); LCNs must fall in the volume. */
static int decode_runs(const struct ntfs_vol *v, const uint8_t *a, uint32_t alen, struct runlist *rl,
                       uint64_t recno, struct ds_err *e)
{
    if (alen < 64)
        return ds_errf(e, "%s: MFT record %llu: non-resident attribute too short", v->src->path,
                       (unsigned long long)recno);
    uint64_t vcn = le64(a + 16), highest = le64(a + 24);
    uint32_t mp = le16(a + 32);
    if (mp < 64 || mp >= alen)
        return ds_errf(e, "%s: MFT record %llu: mapping pairs offset %u", v->src->path, (unsigned long long)recno,
                       mp);
    int64_t lcn = 0;
    const uint8_t *p = a + mp, *end = a + alen;
    while (p < end && *p) {
        unsigned ll = *p & 0x0F, lo = *p >> 4;
        p++;
        if (ll == 0 || ll > 8 || lo > 8 || (size_t)(end - p) < ll + lo)
            return ds_errf(e, "%s: MFT record %llu: bad mapping pair header", v->src->path,
                           (unsigned long long)recno);
        uint64_t len = 0;
        for (unsigned i = 0; i < ll; i++)
            len |= (uint64_t)p[i] << (8 * i);
        if (ll < 8 && (p[ll - 1] & 0x80))
            return ds_errf(e, "%s: MFT record %llu: negative run length", v->src->path, (unsigned long long)recno);
        p += ll;
        int64_t run_lcn = -1;
        if (lo) {
            uint64_t d = 0;
            for (unsigned i = 0; i < lo; i++)
                d |= (uint64_t)p[i] << (8 * i);
            if (lo < 8 && (p[lo - 1] & 0x80))
                d |= ~(uint64_t)0 << (8 * lo);
            p += lo;
            lcn = (int64_t)((uint64_t)lcn + d);
            run_lcn = lcn;
        }
        if (len == 0 || len > v->nr_clusters || vcn > v->nr_clusters)
            return ds_errf(e, "%s: MFT record %llu: run length %llu", v->src->path, (unsigned long long)recno,
                           (unsigned long long)len);
        if (run_lcn >= 0 && ((uint64_t)run_lcn >= v->nr_clusters || len > v->nr_clusters - (uint64_t)run_lcn))
            return ds_errf(e, "%s: MFT record %llu: run at cluster %lld+%llu outside the volume", v->src->path,
                           (unsigned long long)recno, (long long)run_lcn, (unsigned long long)len);
        if (lo && run_lcn < 0)
            return ds_errf(e, "%s: MFT record %llu: negative cluster number", v->src->path,
                           (unsigned long long)recno);
        if (rl->n == rl->cap) {
            if (rl->cap >= NTFS_MAX_RUNS)
                return ds_errf(e, "%s: NTFS: more than %u runs in one attribute", v->src->path, NTFS_MAX_RUNS);
            size_t nc = rl->cap ? rl->cap * 2 : 16;
            struct run *nr = realloc(rl->r, nc * sizeof *nr);
            if (!nr)
                return ds_errf(e, "out of memory");
            rl->r = nr;
            rl->cap = nc;
        }
        rl->r[rl->n++] = (struct run){ .vcn = vcn, .len = len, .lcn = run_lcn };
        vcn += len;
    }
    if (vcn != highest + 1 && !(vcn == 0 && highest == (uint64_t)-1))
        return ds_errf(e, "%s: MFT record %llu: runlist ends at vcn %llu, header says %llu", v->src->path,
                       (unsigned long long)recno, (unsigned long long)vcn, (unsigned long long)highest + 1);
    return 0;
}

static int cmp_run(const void *a, const void *b)
{
    const struct run *x = a, *y = b;
    return x->vcn < y->vcn ? -1 : x->vcn > y->vcn;
}

/* Unnamed $DATA attribute fragments in rec (only the one starting at want_vcn unless want_vcn is UINT64_MAX):
 * appends their runs; returns 1 if one was found (sizes from the fragment with lowest_vcn 0 go to *data_size /
 * *init_size), 0 if none. */
static int collect_data(const struct ntfs_vol *v, const uint8_t *rec, uint64_t recno, uint64_t want_vcn,
                        struct runlist *rl, uint64_t *data_size, uint64_t *init_size, struct ds_err *e)
{
    uint32_t pos = le16(rec + 20);
    int found = 0, off;
    while ((off = next_attr(v, rec, &pos, AT_DATA, recno, e)) > 0) {
        const uint8_t *a = rec + off;
        uint32_t alen = le32(a + 4);
        if (a[9] != 0) /* named stream */
            continue;
        if (!a[8])
            return ds_errf(e, "%s: MFT record %llu: $DATA is resident where a non-resident one is required",
                           v->src->path, (unsigned long long)recno);
        if (alen < 64)
            return ds_errf(e, "%s: MFT record %llu: short $DATA attribute", v->src->path, (unsigned long long)recno);
        if (want_vcn != UINT64_MAX && le64(a + 16) != want_vcn)
            continue;
        if (le16(a + 12) & 0x8001) /* compressed or encrypted */
            return ds_errf(e, "%s: MFT record %llu: compressed/encrypted system file", v->src->path,
                           (unsigned long long)recno);
        if (le64(a + 16) == 0) {
            *data_size = le64(a + 48);
            *init_size = le64(a + 56);
        }
        if (decode_runs(v, a, alen, rl, recno, e) < 0)
            return -1;
        found = 1;
    }
    return off < 0 ? -1 : found;
}

/* Sort the runs and check they tile [0, n) without gaps or overlaps. */
static int runs_finish(const struct ntfs_vol *v, struct runlist *rl, const char *what, struct ds_err *e)
{
    qsort(rl->r, rl->n, sizeof *rl->r, cmp_run);
    uint64_t vcn = 0;
    for (size_t i = 0; i < rl->n; i++) {
        if (rl->r[i].vcn != vcn)
            return ds_errf(e, "%s: NTFS: %s runlist has a gap or overlap at vcn %llu", v->src->path, what,
                           (unsigned long long)vcn);
        vcn += rl->r[i].len;
    }
    return 0;
}

/* $Bitmap's $DATA runs, following an $ATTRIBUTE_LIST into extension records when present. */
static int bitmap_runs(const struct ntfs_vol *v, const struct runlist *mft, uint8_t *rec, uint8_t *ext,
                       struct runlist *rl, uint64_t *data_size, uint64_t *init_size, struct ds_err *e)
{
    if (read_record(v, mft, 6, rec, e) < 0)
        return -1;
    *data_size = *init_size = UINT64_MAX;
    uint32_t pos = le16(rec + 20);
    int off = next_attr(v, rec, &pos, AT_ATTRIBUTE_LIST, 6, e);
    if (off < 0)
        return -1;
    if (off == 0) {
        int r = collect_data(v, rec, 6, UINT64_MAX, rl, data_size, init_size, e);
        if (r < 0)
            return -1;
        if (r == 0)
            return ds_errf(e, "%s: NTFS: $Bitmap has no $DATA attribute", v->src->path);
    } else {
        /* the attribute list names the records holding each $DATA fragment */
        const uint8_t *a = rec + off;
        uint32_t alen = le32(a + 4);
        uint8_t *list = NULL;
        uint64_t llen;
        if (!a[8]) {
            uint32_t vlen = le32(a + 16), voff = le16(a + 20);
            if (voff > alen || vlen > alen - voff)
                return ds_errf(e, "%s: NTFS: $Bitmap attribute list value out of range", v->src->path);
            llen = vlen;
            list = malloc(llen ? llen : 1);
            if (!list)
                return ds_errf(e, "out of memory");
            memcpy(list, a + voff, llen);
        } else {
            struct runlist arl = { 0 };
            if (alen < 64) {
                return ds_errf(e, "%s: NTFS: short attribute list header", v->src->path);
            }
            llen = le64(a + 48);
            if (llen > NTFS_MAX_ATTRLIST)
                return ds_errf(e, "%s: NTFS: $Bitmap attribute list of %llu bytes", v->src->path,
                               (unsigned long long)llen);
            list = malloc(llen ? llen : 1);
            int r = list ? decode_runs(v, a, alen, &arl, 6, e) : ds_errf(e, "out of memory");
            if (r == 0)
                r = runs_finish(v, &arl, "attribute list", e);
            if (r == 0)
                r = rl_read(v, &arl, 0, list, (size_t)llen, e);
            free(arl.r);
            if (r < 0) {
                free(list);
                return -1;
            }
        }
        uint64_t p = 0;
        unsigned followed = 0;
        int rc = 0;
        while (p + 26 <= llen) {
            const uint8_t *ent = list + p;
            uint32_t type = le32(ent), elen = le16(ent + 4);
            if (elen < 26 || elen > llen - p) {
                rc = ds_errf(e, "%s: NTFS: bad attribute list entry length %u", v->src->path, elen);
                break;
            }
            p += elen;
            if (type != AT_DATA || ent[6] != 0)
                continue;
            uint64_t ref = le64(ent + 16) & 0x0000FFFFFFFFFFFFull;
            if (++followed > NTFS_MAX_EXT_RECORDS) {
                rc = ds_errf(e, "%s: NTFS: $Bitmap spread over too many records", v->src->path);
                break;
            }
            const uint8_t *r = rec;
            if (ref != 6) {
                if (read_record(v, mft, ref, ext, e) < 0) {
                    rc = -1;
                    break;
                }
                if ((le64(ext + 32) & 0x0000FFFFFFFFFFFFull) != 6) {
                    rc = ds_errf(e, "%s: NTFS: record %llu is not an extension of $Bitmap", v->src->path,
                                 (unsigned long long)ref);
                    break;
                }
                r = ext;
            }
            /* take the fragment starting at the listed lowest vcn; a fragment listed twice shows up as an
             * overlap in runs_finish */
            int c = collect_data(v, r, ref, le64(ent + 8), rl, data_size, init_size, e);
            if (c <= 0) {
                rc = c < 0 ? -1 : ds_errf(e, "%s: NTFS: record %llu lacks the listed $Bitmap fragment", v->src->path,
                                          (unsigned long long)ref);
                break;
            }
        }
        free(list);
        if (rc < 0)
            return -1;
    }
    if (*data_size == UINT64_MAX)
        return ds_errf(e, "%s: NTFS: $Bitmap $DATA fragment at vcn 0 missing", v->src->path);
    return runs_finish(v, rl, "$Bitmap", e);
}

static int ntfs_scan(const struct scan_src *src, struct scan_result *out, struct ds_err *e)
{
    uint8_t b[512];
    struct ntfs_vol v = { .src = src };
    struct ds_err why;
    if (rd(src, 0, b, sizeof b, e) < 0)
        return -1;
    if (parse_boot(b, &v, &why) != 1)
        return ds_errf(e, "%s: not an NTFS filesystem: %s", src->path, why.msg);
    uint64_t vol_bytes = v.nr_clusters * v.csize;
    uint64_t backup = v.total_secs * v.bps; /* backup boot sector */
    if (vol_bytes > src->size)
        return ds_errf(e, "%s: NTFS volume of %llu bytes is larger than the source (%llu bytes): truncated?",
                       src->path, (unsigned long long)vol_bytes, (unsigned long long)src->size);
    bool have_backup = backup <= src->size && v.bps <= src->size - backup;
    snprintf(out->fstype, sizeof out->fstype, "ntfs");
    out->block_size = v.csize;
    out->fs_size = have_backup ? backup + v.bps : (backup < src->size ? backup : src->size);

    int rc = -1;
    uint8_t *rec = malloc(v.rec_size), *ext = malloc(v.rec_size), *chunk = malloc(NTFS_CHUNK);
    struct runlist mft = { 0 }, bm = { 0 };
    if (!rec || !ext || !chunk) {
        ds_errf(e, "out of memory");
        goto out;
    }
    /* record 0 = $MFT: its first $DATA fragment maps the start of the MFT, which holds records 0..15 */
    uint64_t rec0 = v.mft_lcn * v.csize;
    if (rd(src, rec0, rec, v.rec_size, e) < 0 || fixup(&v, rec, 0, e) < 0)
        goto out;
    {
        uint64_t ds, is;
        int r = collect_data(&v, rec, 0, UINT64_MAX, &mft, &ds, &is, e);
        if (r < 0)
            goto out;
        if (r == 0) {
            ds_errf(e, "%s: NTFS: $MFT has no $DATA attribute", src->path);
            goto out;
        }
        if (runs_finish(&v, &mft, "$MFT", e) < 0)
            goto out;
        if (mft.n == 0 || mft.r[0].lcn != (int64_t)v.mft_lcn) {
            ds_errf(e, "%s: NTFS: $MFT does not start at the boot sector's MFT cluster", src->path);
            goto out;
        }
    }
    uint64_t data_size, init_size;
    if (bitmap_runs(&v, &mft, rec, ext, &bm, &data_size, &init_size, e) < 0)
        goto out;
    uint64_t need = (v.nr_clusters + 7) / 8;
    uint64_t mapped = bm.n ? (bm.r[bm.n - 1].vcn + bm.r[bm.n - 1].len) * v.csize : 0;
    if (data_size < need || init_size > data_size || mapped < need) {
        ds_errf(e, "%s: NTFS: $Bitmap holds %llu bytes (%llu mapped), %llu clusters need %llu", src->path,
                (unsigned long long)data_size, (unsigned long long)mapped, (unsigned long long)v.nr_clusters,
                (unsigned long long)need);
        goto out;
    }

    if (scan_result_add(out, 0, v.bps) < 0) /* boot sector (cluster 0 is in the bitmap too) */
        goto oom;
    uint64_t run_start = 0, run_len = 0;
    for (uint64_t pos = 0; pos < need; pos += NTFS_CHUNK) {
        size_t len = need - pos < NTFS_CHUNK ? (size_t)(need - pos) : NTFS_CHUNK;
        if (pos >= init_size) {
            memset(chunk, 0, len);
        } else {
            size_t rl = init_size - pos < len ? (size_t)(init_size - pos) : len;
            if (rl_read(&v, &bm, pos, chunk, rl, e) < 0)
                goto out;
            memset(chunk + rl, 0, len - rl);
        }
        for (size_t i = 0; i < len; i++) {
            uint8_t byte = chunk[i];
            if (byte == 0 && !run_len)
                continue;
            for (unsigned bit = 0; bit < 8; bit++) {
                uint64_t cl = (pos + i) * 8 + bit;
                if (cl >= v.nr_clusters)
                    break;
                if (byte >> bit & 1) {
                    if (run_len && run_start + run_len == cl) {
                        run_len++;
                    } else {
                        if (run_len && scan_result_add(out, run_start * v.csize, run_len * v.csize) < 0)
                            goto oom;
                        run_start = cl;
                        run_len = 1;
                    }
                }
            }
        }
    }
    if (run_len && scan_result_add(out, run_start * v.csize, run_len * v.csize) < 0)
        goto oom;
    if (have_backup && scan_result_add(out, backup, v.bps) < 0)
        goto oom;
    rc = scan_result_finish(out, e);
    goto out;
oom:
    ds_errf(e, "out of memory");
out:
    free(rec);
    free(ext);
    free(chunk);
    free(mft.r);
    free(bm.r);
    return rc;
}

const struct scanner scanner_ntfs = {
    .name = "ntfs",
    .probe = ntfs_probe,
    .scan = ntfs_scan,
};
