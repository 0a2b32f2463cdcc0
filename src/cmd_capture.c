/* cmd_capture.c — `diskswarm capture`: a partition, a whole disk or a file holding either → torrent(s) over the
 * used blocks, plus IMAGE_DIR/manifest.json.
 *
 * Whole disk (GPT or MBR label): the areas outside the partitions (head incl. boot gap, EBRs, backup GPT) and
 * every partition's used extents (its filesystem's scanner, raw fallback for unknown filesystems) form one torrent
 * with offsets relative to the disk; with --per-partition, each partition gets its own Clonezilla/Ezio torrent
 * (offsets relative to the partition, info.name = partition device name) and a "table" torrent holds the
 * areas. Anything else is scanned as one filesystem.
 *
 * Pieces are hashed on all cores by extent_hash (without --store) or image_build_run (--store, --compress); in
 * both, a read-ahead thread (readahead.h) keeps the extents just ahead of the workers requested from the device. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "disk_layout.h"
#include "extent_hash.h"
#include "extent_map.h"
#include "image_file.h"
#include "manifest.h"
#include "metainfo.h"
#include "readahead.h"
#include "scan.h"
#include "sha1.h"
#include "target_check.h"

#define CAP_MAX_TRACKERS 64
#define CAP_MAX_THREADS EXTENT_HASH_MAX_THREADS
#define CAP_VERSION "diskswarm 0.1.0"

/* "zstd" or "zstd:LEVEL" (1..19) → level; 0 on success. */
static int cli_parse_compress(const char *s, int *level)
{
    uint64_t v = 3;
    if (strncmp(s, "zstd", 4) || (s[4] && (s[4] != ':' || cli_parse_uint(s + 5, 19, &v) || v == 0)))
        return -1;
    *level = (int)v;
    return 0;
}

static void cap_usage(FILE *f)
{
    fputs("usage: diskswarm capture SOURCE -o IMAGE_DIR [options]\n"
          "\n"
          "Describe the used blocks of a partition, a whole disk or an image file holding either as a\n"
          "Clonezilla/Ezio-layout torrent, and write IMAGE_DIR/manifest.json describing the source.\n"
          "A whole disk (GPT or MBR) gives one torrent with the partition table, the boot gap before the first\n"
          "partition, the backup GPT and every partition's used blocks, offsets relative to the disk.\n"
          "\n"
          "  -o, --output DIR     image directory (created if missing)\n"
          "  --per-partition      whole disk: one torrent per partition (offsets relative to the partition,\n"
          "                       named like sda1) plus NAME.torrent for the partition table and boot gap\n"
          "  --name NAME          device label / torrent name (default: basename of SOURCE)\n"
          "  --piece-size SIZE    piece length, a power of two from 16K to 1G (default: 128K, larger for\n"
          "                       images over 2 GiB so that a torrent has at most 16384 pieces)\n"
          "  --tracker URL        announce URL (repeatable; the first is the primary)\n"
          "  --raw                do not read filesystems: capture every block (see --skip-zero)\n"
          "  --skip-zero          with --raw or the raw fallback for unknown filesystems: leave out all-zero\n"
          "                       64 KiB blocks\n"
          "  --store              also write IMAGE_DIR/NAME.dsimg, an image file of the captured pieces from which\n"
          "                       `seed T --from IMAGE_DIR` serves without the source\n"
          "  --compress zstd[:L]  like --store, each piece zstd-compressed at level L (default 3) on all cores;\n"
          "                       pieces that do not compress are stored raw\n"
          "  --no-store           write only the torrent(s) and the manifest (the default)\n"
          "  --threads N          hashing threads (default: one per online CPU)\n"
          "  --force              capture even if a filesystem on SOURCE is mounted read-write\n"
          "  --json               one JSON object per line on stdout (scan, progress, torrent, done)\n"
          "  --quiet              no progress output\n"
          "  -h, --help           show this help\n",
          f);
}

struct cap_opts {
    const char *source, *outdir, *name;
    bool per_partition, raw, skip_zero, force, json, quiet;
    bool store;             /* write NAME.dsimg */
    int zlevel;             /* > 0: zstd level for the stored pieces */
    uint64_t piece;
    unsigned threads;
    const char *trackers[CAP_MAX_TRACKERS];
    size_t n_trackers;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* JSON-escape s into out (for the few strings we print in --json lines). */
static void json_str(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    if (outlen < 3) {
        if (outlen)
            out[0] = 0;
        return;
    }
    out[o++] = '"';
    for (; *s && o + 8 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = 0;
}

/* ---------------------------------------------------------------------------------------------------------
 * mounted read-write check */

static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return (int)n;
}

static bool parse_devno(const char *s, dev_t *d)
{
    unsigned ma, mi;
    if (sscanf(s, "%u:%u", &ma, &mi) != 2)
        return false;
    *d = makedev(ma, mi);
    return true;
}

/* The whole-disk device of partition d, or d itself. */
static dev_t parent_dev(dev_t d)
{
    char p[128], buf[64];
    snprintf(p, sizeof p, "/sys/dev/block/%u:%u/partition", major(d), minor(d));
    if (access(p, F_OK))
        return d;
    snprintf(p, sizeof p, "/sys/dev/block/%u:%u/../dev", major(d), minor(d));
    dev_t pd;
    if (read_small(p, buf, sizeof buf) > 0 && parse_devno(buf, &pd))
        return pd;
    return d;
}

/* Devices through which SOURCE's data can be mounted: the block device itself, or the loop devices backed by a
 * regular file. */
static size_t source_devs(const struct stat *st, dev_t *out, size_t max)
{
    size_t n = 0;
    if (S_ISBLK(st->st_mode)) {
        out[n++] = st->st_rdev;
        return n;
    }
    for (unsigned i = 0; i < 1024 && n < max; i++) {
        char p[128], bf[4096], dv[64];
        snprintf(p, sizeof p, "/sys/block/loop%u/loop/backing_file", i);
        if (read_small(p, bf, sizeof bf) <= 0)
            continue;
        char *del = strstr(bf, " (deleted)");
        if (del)
            *del = 0;
        struct stat bst;
        if (stat(bf, &bst) || bst.st_dev != st->st_dev || bst.st_ino != st->st_ino)
            continue;
        snprintf(p, sizeof p, "/sys/block/loop%u/dev", i);
        dev_t d;
        if (read_small(p, dv, sizeof dv) > 0 && parse_devno(dv, &d))
            out[n++] = d;
    }
    return n;
}

/* 0 if nothing of SOURCE is mounted read-write; -1 with a message naming the mount point otherwise. */
static int check_not_mounted_rw(const char *path, const struct stat *st, char *msg, size_t msglen)
{
    dev_t devs[64];
    size_t nd = source_devs(st, devs, 64);
    if (nd == 0)
        return 0;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, f) != -1) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *save = NULL, *fld[6] = {0};
        char *copy = line;
        int i;
        for (i = 0; i < 5; i++)
            if (!(fld[i] = strtok_r(i ? NULL : copy, " ", &save)))
                break;
        if (i < 5)
            continue;
        char *sep = strstr(save ? save : "", " - ");
        if (!sep)
            continue;
        char *fstype = strtok_r(sep + 3, " ", &save), *src = fstype ? strtok_r(NULL, " ", &save) : NULL,
             *sopts = src ? strtok_r(NULL, " \n", &save) : NULL;
        dev_t d;
        if (!sopts || !parse_devno(fld[2], &d))
            continue;
        dev_t pd = parent_dev(d);
        bool hit = false;
        for (size_t k = 0; k < nd; k++)
            if (devs[k] == d || devs[k] == pd)
                hit = true;
        if (!hit)
            continue;
        if (!strncmp(sopts, "rw", 2) && (sopts[2] == ',' || sopts[2] == 0)) {
            snprintf(msg, msglen,
                     "'%s' (or a partition of it) is mounted read-write on %s (%s); a capture of a changing "
                     "filesystem is inconsistent: unmount it or remount it read-only (--force to capture anyway)",
                     path, fld[4], fstype);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * parallel piece hashing */

struct cap_stats {
    uint64_t bytes, ms, sha_ns;
    unsigned threads;
    uint64_t image_bytes, zstd_ns;   /* --store: bytes of the .dsimg files, compression CPU time */
};

static void show_progress(const struct cap_opts *o, const char *label, uint64_t done, uint64_t total,
                          uint64_t t0, bool final, bool *drawn, uint64_t *last_line)
{
    uint64_t now = now_ms();
    double secs = (double)(now - t0) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    /* seconds left at the average rate so far (-1: not known yet); reading and hashing go at a steady pace */
    double eta = done >= total ? 0.0 : rate > 1.0 && done > 0 ? (double)(total - done) / rate : -1.0;
    if (o->json) {
        if (final || now - *last_line >= 1000) {
            char nm[160];
            json_str(nm, sizeof nm, label);
            printf("{\"type\":\"progress\",\"torrent\":%s,\"bytes\":%" PRIu64 ",\"total\":%" PRIu64
                   ",\"percent\":%.2f,\"bps\":%.0f,\"t\":%.1f,\"eta\":%.0f}\n",
                   nm, done, total, pct, rate, secs, eta);
            fflush(stdout);
            *last_line = now;
        }
        return;
    }
    if (o->quiet)
        return;
    char hd[32], ht[32], hr[32];
    cli_format_bytes(done, hd, sizeof hd);
    cli_format_bytes(total, ht, sizeof ht);
    cli_format_bytes((uint64_t)rate, hr, sizeof hr);
    char etas[32];
    if (eta < 0)
        snprintf(etas, sizeof etas, "--");
    else
        snprintf(etas, sizeof etas, "%d:%02d", (int)eta / 60, (int)eta % 60);
    if (isatty(STDERR_FILENO)) {
        char bar[31];
        int fill = (int)(pct * 30.0 / 100.0);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r\033[Khash %s [%s] %5.1f%% %s/%s  %s/s  ETA %s", label, bar, pct, hd, ht, hr, etas);
        if (final)
            fputc('\n', stderr);
        fflush(stderr);
        *drawn = !final;
    } else if (final || now - *last_line >= 5000) {
        fprintf(stderr, "hash %s: %5.1f%% %s/%s %s/s ETA %s\n", label, pct, hd, ht, hr, etas);
        *last_line = now;
    }
}

struct cap_progress {
    const struct cap_opts *o;
    const char *label;
    uint64_t total, t0, last_line;
    bool drawn;
};

static void cap_progress_cb(void *ctx, uint64_t done, bool final)
{
    struct cap_progress *p = ctx;
    show_progress(p->o, p->label, done, p->total, p->t0, final, &p->drawn, &p->last_line);
}

static void cap_hash_progress(void *ctx, uint64_t done)
{
    cap_progress_cb(ctx, done, false);
}

static int hash_pieces(const struct cap_opts *o, const char *label, const char *path, uint64_t base,
                       const struct extent *ext, size_t n_ext, uint64_t total, uint8_t *hashes,
                       struct cap_stats *st)
{
    struct cap_progress pg = {.o = o, .label = label, .total = total, .t0 = now_ms(), .last_line = now_ms()};
    struct extent_hash h = {.path = path, .base = base, .ext = ext, .n_ext = n_ext, .piece = o->piece,
                            .threads = o->threads, .hashes = hashes, .progress = cap_hash_progress,
                            .progress_ctx = &pg};
    struct ds_err e;
    int rc = extent_hash_run(&h, &e);
    if (pg.drawn && !o->json && !o->quiet)
        fputs("\r\033[K", stderr);
    if (rc == 0)
        cap_progress_cb(&pg, h.bytes, true);
    st->bytes += h.bytes;
    st->ms += now_ms() - pg.t0;
    st->sha_ns += h.sha_ns;
    st->threads = h.threads_used;
    if (rc) {
        cli_error("%s: %s", label, e.msg);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------
 * torrent writing */


struct cap_state {
    struct cap_opts *o;
    struct manifest m;
    struct cap_stats st;
};

/* --store / --compress: hash and store every piece through image_build_run (each worker reads, hashes and
 * compresses its piece; the pieces are appended in order). The writer is left open for the info-hash. */
struct cap_fill {
    int fd;
    const char *path;
    uint64_t base;
    const struct extent *ext;
    size_t n_ext;
    struct readahead *ra;
};

static int cap_fill_piece(void *ctx, uint32_t piece, uint64_t off, uint8_t *buf, size_t len, struct ds_err *e)
{
    const struct cap_fill *f = ctx;
    (void)piece;
    readahead_advance(f->ra, off);
    size_t xi = extent_find(f->ext, f->n_ext, off), done = 0;
    while (done < len) {
        if (xi >= f->n_ext)
            return ds_errf(e, "internal error: piece beyond the extents");
        const struct extent *x = &f->ext[xi];
        uint64_t in_x = off + done - x->tor_off;
        if (in_x >= x->len) {
            xi++;
            continue;
        }
        size_t n = x->len - in_x < len - done ? (size_t)(x->len - in_x) : len - done;
        uint64_t dev = f->base + x->dev_off + in_x;
        size_t got = 0;
        while (got < n) {
            ssize_t r = pread(f->fd, buf + done + got, n - got, (off_t)(dev + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return ds_errno(e, "read error on '%s' at offset %" PRIu64, f->path, dev + got);
            if (r == 0)
                return ds_errf(e, "'%s' ended unexpectedly at offset %" PRIu64, f->path, dev + got);
            got += (size_t)r;
        }
        done += n;
    }
    return 0;
}

static int store_pieces(const struct cap_opts *o, const char *label, uint64_t base, const struct extent *ext,
                        size_t n_ext, uint64_t total, uint8_t *hashes, uint32_t n_pieces, const char *img_file,
                        struct image_writer **iw, struct cap_stats *st)
{
    char path[4300];
    struct ds_err e;
    snprintf(path, sizeof path, "%s/%s", o->outdir, img_file);
    struct cap_fill f = {.fd = open(o->source, O_RDONLY | O_CLOEXEC), .path = o->source, .base = base, .ext = ext,
                         .n_ext = n_ext};
    if (f.fd < 0) {
        cli_error("cannot open '%s': %s", o->source, strerror(errno));
        return -1;
    }
    posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (readahead_start(&f.ra, f.fd, base, ext, n_ext, readahead_window(o->piece), NULL))
        f.ra = NULL; /* only an optimisation */
    if (image_writer_open(iw, path, o->piece, total, o->zlevel > 0 ? IMAGE_COMP_ZSTD : IMAGE_COMP_NONE, &e)) {
        cli_error("%s", e.msg);
        readahead_stop(f.ra);
        close(f.fd);
        return -1;
    }
    struct cap_progress pg = {.o = o, .label = label, .total = total, .t0 = now_ms(), .last_line = now_ms()};
    struct image_build b = {.piece_length = o->piece, .total_length = total, .n_pieces = n_pieces,
                            .threads = o->threads, .fill = cap_fill_piece, .fill_ctx = &f, .w = *iw,
                            .zstd_level = o->zlevel, .hashes = hashes, .progress = cap_progress_cb,
                            .progress_ctx = &pg};
    int rc = image_build_run(&b, &e);
    readahead_stop(f.ra);
    close(f.fd);
    if (pg.drawn && !o->json && !o->quiet)
        fputs("\r\033[K", stderr);
    st->bytes += rc ? 0 : total;
    st->ms += now_ms() - pg.t0;
    st->sha_ns += b.sha_ns;
    st->zstd_ns += b.zstd_ns;
    st->threads = b.threads_used;
    if (rc) {
        cli_error("%s: %s", label, e.msg);
        image_writer_abort(*iw);
        *iw = NULL;
        return -1;
    }
    return 0;
}

/* Hash the extents of r (offsets relative to base) and write IMAGE_DIR/<file>.torrent named name. */
static int make_torrent(struct cap_state *cs, const char *name, const char *role, uint64_t base,
                        const struct scan_result *r)
{
    struct cap_opts *o = cs->o;
    if (r->n == 0 || r->used_bytes == 0) {
        if (!o->quiet && !o->json)
            fprintf(stderr, "%s: nothing to capture (no used blocks); no torrent written\n", name);
        return 0;
    }
    int rc = -1;
    struct extent *ext = calloc(r->n, sizeof *ext);
    uint8_t *hashes = NULL;
    struct buf tor = {0};
    struct metainfo *mi = NULL;
    if (!ext) {
        cli_error("out of memory");
        return -1;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < r->n; i++) {
        ext[i] = (struct extent){.dev_off = r->ext[i].off, .len = r->ext[i].len, .tor_off = total};
        total += r->ext[i].len;
    }
    /* no --piece-size: chosen for this torrent's size (each torrent of a per-partition capture its own) */
    bool auto_piece = o->piece == 0;
    if (auto_piece)
        o->piece = metainfo_auto_piece_length(total);
    if (cs->m.piece_size < o->piece)
        cs->m.piece_size = o->piece;
    uint64_t n_pieces = total / o->piece + (total % o->piece != 0);
    if (n_pieces > UINT32_MAX) {
        cli_error("%s: too many pieces (%" PRIu64 "); use a larger --piece-size", name, n_pieces);
        goto out;
    }
    hashes = malloc((size_t)n_pieces * SHA1_LEN);
    if (!hashes) {
        cli_error("out of memory");
        goto out;
    }
    struct image_writer *iw = NULL;
    char img_file[100];
    snprintf(img_file, sizeof img_file, "%s%s", name, IMAGE_EXT);
    if (o->store) {
        if (store_pieces(o, name, base, ext, r->n, total, hashes, (uint32_t)n_pieces, img_file, &iw, &cs->st))
            goto out;
    } else if (hash_pieces(o, name, o->source, base, ext, r->n, total, hashes, &cs->st)) {
        goto out;
    }
    struct ds_err e;
    if (metainfo_build_ezio(name, ext, r->n, o->piece, hashes, o->trackers, o->n_trackers, CAP_VERSION, false,
                            &tor, &e)) {
        cli_error("%s: %s", name, e.msg);
        goto out;
    }
    if (metainfo_parse(tor.data, tor.len, &mi, &e)) {
        cli_error("internal error: generated torrent does not parse: %s", e.msg);
        goto out;
    }
    char file[100], path[4300];
    snprintf(file, sizeof file, "%s.torrent", name);
    snprintf(path, sizeof path, "%s/%s", o->outdir, file);
    uint64_t img_bytes = 0;
    if (iw) {
        struct image_writer *w = iw;
        iw = NULL;
        if (image_writer_finish(w, mi->info_hash, &img_bytes, &e)) {
            cli_error("%s: %s", name, e.msg);
            goto out;
        }
        cs->st.image_bytes += img_bytes;
    }
    if (cli_write_file(path, tor.data, tor.len))
        goto out;
    struct manifest_torrent *nt = realloc(cs->m.torrents, (cs->m.n_torrents + 1) * sizeof *nt);
    if (!nt) {
        cli_error("out of memory");
        goto out;
    }
    cs->m.torrents = nt;
    struct manifest_torrent *t = &nt[cs->m.n_torrents++];
    memset(t, 0, sizeof *t);
    snprintf(t->file, sizeof t->file, "%s", file);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->role, sizeof t->role, "%s", role);
    hex_encode(mi->info_hash, SHA1_LEN, t->info_hash);
    t->bytes = total;
    t->pieces = n_pieces;
    t->extents = r->n;
    if (o->store) {
        snprintf(t->image, sizeof t->image, "%s", img_file);
        if (o->zlevel > 0)
            snprintf(t->image_compression, sizeof t->image_compression, "zstd:%d", o->zlevel);
        else
            snprintf(t->image_compression, sizeof t->image_compression, "none");
        t->image_bytes = img_bytes;
        if (!o->json && !o->quiet)
            fprintf(stderr, "%s/%s: %" PRIu64 " bytes for %" PRIu64 " bytes of data (%.1f%%, %s)\n", o->outdir,
                    img_file, img_bytes, total, 100.0 * (double)img_bytes / (double)total, t->image_compression);
    }
    char hs[32], hp[32];
    cli_format_bytes(total, hs, sizeof hs);
    cli_format_bytes(o->piece, hp, sizeof hp);
    if (o->json) {
        char jf[400], jn[160];
        json_str(jf, sizeof jf, path);
        json_str(jn, sizeof jn, name);
        printf("{\"type\":\"torrent\",\"file\":%s,\"name\":%s,\"role\":\"%s\",\"info_hash\":\"%s\",\"bytes\":%" PRIu64
               ",\"pieces\":%" PRIu64 ",\"extents\":%zu}\n",
               jf, jn, role, t->info_hash, total, n_pieces, r->n);
        fflush(stdout);
    } else {
        printf("%s: name %s, %zu extent%s, %" PRIu64 " bytes (%s), %" PRIu64 " pieces of %s, info-hash %s\n", path,
               name, r->n, r->n == 1 ? "" : "s", total, hs, n_pieces, hp, t->info_hash);
    }
    rc = 0;
out:
    if (auto_piece)
        o->piece = 0;
    image_writer_abort(iw);
    metainfo_free(mi);
    buf_free(&tor);
    free(hashes);
    free(ext);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * scanning */

static int scan_one(struct cap_state *cs, const char *label, uint64_t base, uint64_t size,
                    struct manifest_part *mp, struct scan_result *r)
{
    struct cap_opts *o = cs->o;
    struct scan_src src = {.fd = -1, .path = o->source, .base = base, .size = size};
    struct ds_err e = {{0}};
    bool fell_back = false;
    memset(r, 0, sizeof *r);
    src.fd = open(o->source, O_RDONLY | O_CLOEXEC);
    if (src.fd < 0) {
        cli_error("cannot open '%s': %s", o->source, strerror(errno));
        return -1;
    }
    uint64_t t0 = now_ms();
    int rc;
    const char *scanner_name;
    if (o->raw) {
        rc = scan_raw(&src, o->skip_zero, 0, r, &e);
        scanner_name = "raw";
    } else {
        rc = scan_any(&src, o->skip_zero, r, &fell_back, &e);
        scanner_name = fell_back ? "raw" : NULL;
    }
    close(src.fd);
    if (rc) {
        cli_error("%s: %s", label, e.msg);
        scan_result_free(r);
        return -1;
    }
    if (!scanner_name) {
        /* which module matched: by fstype */
        scanner_name = !strncmp(r->fstype, "ext", 3) ? "ext" : r->fstype;
    }
    mp->raw_fallback = fell_back;
    snprintf(mp->fstype, sizeof mp->fstype, "%s", r->fstype);
    snprintf(mp->scanner, sizeof mp->scanner, "%s", scanner_name);
    mp->block_size = r->block_size;
    mp->fs_size = r->fs_size;
    mp->used_bytes = r->used_bytes;
    mp->extents = r->n;
    char hu[32], hsz[32];
    cli_format_bytes(r->used_bytes, hu, sizeof hu);
    cli_format_bytes(size, hsz, sizeof hsz);
    if (o->json) {
        char jl[160];
        json_str(jl, sizeof jl, label);
        printf("{\"type\":\"scan\",\"what\":%s,\"offset\":%" PRIu64 ",\"size\":%" PRIu64 ",\"fstype\":\"%s\","
               "\"scanner\":\"%s\",\"raw_fallback\":%s,\"used_bytes\":%" PRIu64 ",\"extents\":%zu,\"ms\":%" PRIu64
               "}\n",
               jl, base, size, r->fstype, scanner_name, fell_back ? "true" : "false", r->used_bytes, r->n,
               now_ms() - t0);
        fflush(stdout);
    }
    if (fell_back)
        fprintf(stderr,
                "diskswarm: %s: filesystem not recognised (no ext, xfs, ntfs or fat signature); falling back to "
                "a raw capture of %s\n",
                label, o->skip_zero ? "every non-zero 64 KiB block" : "every block (--skip-zero leaves out zeros)");
    if (!o->json && !o->quiet)
        fprintf(stderr, "%s: %s, %s used of %s in %zu extent%s (scanned in %" PRIu64 " ms)\n", label, r->fstype,
                hu, hsz, r->n, r->n == 1 ? "" : "s", now_ms() - t0);
    return 0;
}

/* Add r's extents shifted by delta into dst. */
static int add_shifted(struct scan_result *dst, const struct scan_result *r, uint64_t delta)
{
    for (size_t i = 0; i < r->n; i++)
        if (scan_result_add(dst, r->ext[i].off + delta, r->ext[i].len))
            return -1;
    return 0;
}

static bool valid_name(const char *n)
{
    return *n && strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/') && strlen(n) < 60;
}

/* Is there a filesystem (not a partition table) at offset 0? Guards against FAT boot sectors read as MBRs. */
static int fs_at_zero(const struct cap_opts *o, uint64_t size)
{
    static const struct scanner *const order[] = {&scanner_ext, &scanner_xfs, &scanner_ntfs, &scanner_fat};
    struct scan_src src = {.fd = open(o->source, O_RDONLY | O_CLOEXEC), .path = o->source, .base = 0, .size = size};
    if (src.fd < 0)
        return -1;
    int hit = 0;
    for (size_t i = 0; i < 4 && !hit; i++) {
        struct ds_err e;
        if (order[i]->probe && order[i]->probe(&src, &e) == 1)
            hit = 1;
    }
    close(src.fd);
    return hit;
}

static int capture(struct cap_opts *o)
{
    struct cap_state cs = {.o = o};
    struct disk_layout dl = {0};
    struct scan_result *parts_r = NULL;
    struct scan_result all = {0};
    char *src_copy = NULL;
    int rc = 1, fd = -1;
    struct ds_err e = {{0}};

    fd = open(o->source, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        cli_error("cannot open '%s': %s", o->source, strerror(errno));
        goto out;
    }
    uint64_t size;
    if (target_size(fd, &st, &size, &e)) {
        cli_error("'%s': %s", o->source, e.msg);
        goto out;
    }
    close(fd);
    fd = -1;
    if (size == 0) {
        cli_error("'%s' is empty", o->source);
        goto out;
    }
    if (!o->force) {
        char msg[1024];
        if (check_not_mounted_rw(o->source, &st, msg, sizeof msg)) {
            cli_error("%s", msg);
            goto out;
        }
    }
    if (!o->name) {
        src_copy = strdup(o->source);
        if (!src_copy) {
            cli_error("out of memory");
            goto out;
        }
        o->name = basename(src_copy);
    }
    if (!valid_name(o->name)) {
        cli_error("capture: '%s' cannot be a torrent name; use --name", o->name);
        rc = EXIT_USAGE;
        goto out;
    }
    int is_disk = disk_layout_read(o->source, size, &dl, &e);
    if (is_disk < 0) {
        cli_error("%s", e.msg);
        goto out;
    }
    if (is_disk && !strcmp(dl.label, "dos") && !o->raw && fs_at_zero(o, size) == 1) {
        if (!o->quiet && !o->json)
            fprintf(stderr, "%s: a filesystem starts at offset 0; its boot sector is not read as a partition table\n",
                    o->source);
        disk_layout_free(&dl);
        is_disk = 0;
    }
    if (!is_disk && o->per_partition) {
        cli_error("capture: --per-partition needs a whole disk, and '%s' has no partition table", o->source);
        rc = EXIT_USAGE;
        goto out;
    }
    if (mkdir(o->outdir, 0755) && errno != EEXIST) {
        cli_error("cannot create '%s': %s", o->outdir, strerror(errno));
        goto out;
    }
    struct stat dst;
    if (stat(o->outdir, &dst) || !S_ISDIR(dst.st_mode)) {
        cli_error("'%s' is not a directory", o->outdir);
        goto out;
    }

    struct manifest *m = &cs.m;
    m->version = MANIFEST_VERSION;
    m->created = (int64_t)time(NULL);
    snprintf(m->created_by, sizeof m->created_by, "%s", CAP_VERSION);
    snprintf(m->source, sizeof m->source, "%s", o->source);
    m->source_size = size;
    m->piece_size = o->piece ? o->piece : METAINFO_AUTO_PIECE_MIN; /* auto: raised to the largest torrent's */
    snprintf(m->kind, sizeof m->kind, "%s", is_disk ? "disk" : "partition");
    snprintf(m->mode, sizeof m->mode, "%s", !is_disk ? "single" : o->per_partition ? "per-partition" : "whole-disk");

    if (!is_disk) {
        m->sector_size = 512;
        m->parts = calloc(1, sizeof *m->parts);
        parts_r = calloc(1, sizeof *parts_r);
        if (!m->parts || !parts_r) {
            cli_error("out of memory");
            goto out;
        }
        m->n_parts = 1;
        struct manifest_part *mp = &m->parts[0];
        snprintf(mp->device, sizeof mp->device, "%s", o->name);
        mp->size = size;
        if (scan_one(&cs, o->name, 0, size, mp, &parts_r[0]))
            goto out;
        snprintf(mp->torrent, sizeof mp->torrent, "%s.torrent", o->name);
        if (make_torrent(&cs, o->name, "partition", 0, &parts_r[0]))
            goto out;
    } else {
        snprintf(m->label, sizeof m->label, "%s", dl.label);
        snprintf(m->disk_id, sizeof m->disk_id, "%s", dl.disk_id);
        m->sector_size = dl.sector_size;
        if (dl.has_gpt) {
            m->has_gpt = true;
            m->gpt_first_usable = dl.gpt_first_usable;
            m->gpt_last_usable = dl.gpt_last_usable;
            m->gpt_alt_lba = dl.gpt_alt_lba;
            m->gpt_entries_lba = dl.gpt_entries_lba;
            m->gpt_n_entries = dl.gpt_n_entries;
            m->gpt_backup_off = dl.gpt_backup_off;
            m->gpt_backup_len = dl.gpt_backup_len;
        }
        m->areas = calloc(dl.n_areas ? dl.n_areas : 1, sizeof *m->areas);
        m->parts = calloc(dl.n_parts ? dl.n_parts : 1, sizeof *m->parts);
        parts_r = calloc(dl.n_parts ? dl.n_parts : 1, sizeof *parts_r);
        if (!m->areas || !m->parts || !parts_r) {
            cli_error("out of memory");
            goto out;
        }
        all.fs_size = size;
        for (size_t i = 0; i < dl.n_areas; i++) {
            struct manifest_area *a = &m->areas[m->n_areas++];
            snprintf(a->what, sizeof a->what, "%s", dl.areas[i].what);
            a->offset = dl.areas[i].off;
            a->length = dl.areas[i].len;
            if (scan_result_add(&all, a->offset, a->length)) {
                cli_error("out of memory");
                goto out;
            }
        }
        if (!o->quiet && !o->json)
            fprintf(stderr, "%s: %s disk, %zu partition%s, %zu area%s outside partitions\n", o->source,
                    !strcmp(dl.label, "gpt") ? "GPT" : "MBR", dl.n_parts, dl.n_parts == 1 ? "" : "s", dl.n_areas,
                    dl.n_areas == 1 ? "" : "s");
        if (o->per_partition && scan_result_finish(&all, &e) == 0 &&
            make_torrent(&cs, o->name, "table", 0, &all))
            goto out;
        for (size_t i = 0; i < dl.n_parts; i++) {
            const struct disk_part *p = &dl.parts[i];
            struct manifest_part *mp = &m->parts[m->n_parts++];
            mp->number = p->number;
            disk_part_devname(o->name, p->number, mp->device, sizeof mp->device);
            mp->start = p->start;
            mp->size = p->size;
            snprintf(mp->type, sizeof mp->type, "%s", p->type);
            snprintf(mp->type_name, sizeof mp->type_name, "%s", p->type_name);
            snprintf(mp->name, sizeof mp->name, "%s", p->name);
            snprintf(mp->uuid, sizeof mp->uuid, "%s", p->uuid);
            if (scan_one(&cs, mp->device, p->start, p->size, mp, &parts_r[i]))
                goto out;
            if (o->per_partition) {
                if (parts_r[i].n)
                    snprintf(mp->torrent, sizeof mp->torrent, "%s.torrent", mp->device);
                if (make_torrent(&cs, mp->device, "partition", p->start, &parts_r[i]))
                    goto out;
            } else if (add_shifted(&all, &parts_r[i], p->start)) {
                cli_error("out of memory");
                goto out;
            }
        }
        if (!o->per_partition) {
            if (scan_result_finish(&all, &e))
                goto out;
            if (make_torrent(&cs, o->name, "disk", 0, &all))
                goto out;
        }
    }
    if (manifest_write(o->outdir, m, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    double secs = (double)cs.st.ms / 1000.0, sha_s = (double)cs.st.sha_ns / 1e9;
    double mbps = secs > 0 ? (double)cs.st.bytes / 1e6 / secs : 0;
    double core = sha_s > 0 ? (double)cs.st.bytes / 1e6 / sha_s : 0;
    if (o->json) {
        printf("{\"type\":\"done\",\"manifest\":\"%s\",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"mbps\":%.1f,"
               "\"sha1_mbps_per_core\":%.1f,\"threads\":%u,\"image_bytes\":%" PRIu64 "}\n",
               MANIFEST_FILE, cs.st.bytes, secs, mbps, core, cs.st.threads, cs.st.image_bytes);
    } else if (!o->quiet) {
        fprintf(stderr, "hashed %" PRIu64 " bytes in %.2f s: %.1f MB/s with %u thread%s; SHA-1 %.1f MB/s per core\n",
                cs.st.bytes, secs, mbps, cs.st.threads, cs.st.threads == 1 ? "" : "s", core);
        if (o->store) {
            double zs = (double)cs.st.zstd_ns / 1e9;
            fprintf(stderr, "stored %" PRIu64 " bytes of image for %" PRIu64 " bytes (ratio %.3f)", cs.st.image_bytes,
                    cs.st.bytes, cs.st.bytes ? (double)cs.st.image_bytes / (double)cs.st.bytes : 0.0);
            if (o->zlevel > 0 && zs > 0)
                fprintf(stderr, "; zstd level %d %.1f MB/s per core", o->zlevel, (double)cs.st.bytes / 1e6 / zs);
            fputc('\n', stderr);
        }
        printf("%s/%s written\n", o->outdir, MANIFEST_FILE);
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (parts_r)
        for (size_t i = 0; i < (cs.m.n_parts ? cs.m.n_parts : 1); i++)
            scan_result_free(&parts_r[i]);
    free(parts_r);
    scan_result_free(&all);
    manifest_free(&cs.m);
    disk_layout_free(&dl);
    free(src_copy);
    return rc;
}

int cmd_capture(int argc, char **argv)
{
    enum { OPT_PERPART = 256, OPT_NAME, OPT_PIECE, OPT_TRACKER, OPT_RAW, OPT_SKIPZERO, OPT_THREADS, OPT_FORCE,
           OPT_JSON, OPT_QUIET, OPT_STORE, OPT_NOSTORE, OPT_COMPRESS };
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"per-partition", no_argument, NULL, OPT_PERPART},
        {"name", required_argument, NULL, OPT_NAME},
        {"piece-size", required_argument, NULL, OPT_PIECE},
        {"tracker", required_argument, NULL, OPT_TRACKER},
        {"raw", no_argument, NULL, OPT_RAW},
        {"skip-zero", no_argument, NULL, OPT_SKIPZERO},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"force", no_argument, NULL, OPT_FORCE},
        {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"store", no_argument, NULL, OPT_STORE},
        {"no-store", no_argument, NULL, OPT_NOSTORE},
        {"compress", required_argument, NULL, OPT_COMPRESS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cap_opts o = {.piece = 0}; /* 0: metainfo_auto_piece_length() per torrent */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = ncpu < 1 ? 1 : ncpu > CAP_MAX_THREADS ? CAP_MAX_THREADS : (unsigned)ncpu;
    optind = 1;
    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o.outdir = optarg; break;
        case OPT_PERPART: o.per_partition = true; break;
        case OPT_NAME: o.name = optarg; break;
        case OPT_PIECE:
            if (cli_parse_piece_size(optarg, &o.piece)) {
                cli_error("capture: --piece-size must be a power of two from 16K to 1G, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_TRACKER:
            if (!*optarg) {
                cli_error("capture: empty --tracker URL");
                return EXIT_USAGE;
            }
            if (o.n_trackers == CAP_MAX_TRACKERS) {
                cli_error("capture: too many --tracker options (max %d)", CAP_MAX_TRACKERS);
                return EXIT_USAGE;
            }
            o.trackers[o.n_trackers++] = optarg;
            break;
        case OPT_RAW: o.raw = true; break;
        case OPT_SKIPZERO: o.skip_zero = true; break;
        case OPT_THREADS:
            if (cli_parse_uint(optarg, CAP_MAX_THREADS, &v) || v == 0) {
                cli_error("capture: --threads must be from 1 to %d, not '%s'", CAP_MAX_THREADS, optarg);
                return EXIT_USAGE;
            }
            o.threads = (unsigned)v;
            break;
        case OPT_FORCE: o.force = true; break;
        case OPT_JSON: o.json = true; break;
        case OPT_QUIET: o.quiet = true; break;
        case OPT_STORE: o.store = true; break;
        case OPT_NOSTORE: o.store = false; o.zlevel = 0; break;
        case OPT_COMPRESS:
            if (cli_parse_compress(optarg, &o.zlevel)) {
                cli_error("capture: --compress wants zstd or zstd:LEVEL (1-19), not '%s'", optarg);
                return EXIT_USAGE;
            }
            o.store = true;
            break;
        case 'h': cap_usage(stdout); return 0;
        case ':':
            cli_error("capture: option '%s' needs an argument", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            cli_error("capture: unknown option '%s'", argv[optind - 1]);
            cap_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        cli_error(argc - optind == 0 ? "capture: missing SOURCE" : "capture: too many arguments");
        cap_usage(stderr);
        return EXIT_USAGE;
    }
    o.source = argv[optind];
    if (!o.outdir) {
        cli_error("capture: -o IMAGE_DIR is required");
        return EXIT_USAGE;
    }
    return capture(&o);
}
