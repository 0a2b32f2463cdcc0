/* cmd_import.c — `diskswarm import`: partclone images or a Clonezilla image directory → IMAGE_DIR (torrents in
 * the Ezio layout, manifest.json, and unless --no-store a .dsimg per partition).
 *
 * A partclone image is read once as a stream (gzip/zstd/raw, split parts concatenated): its bitmap gives the
 * used extents (offsets relative to the partition), its data the bytes of the torrent in order. Pieces are
 * hashed and compressed on all cores (image_build_run, fed in order from the stream). A Clonezilla directory is
 * parsed for `disk`, `parts`, `<disk>-pt.sf` (sfdisk dump; copied into IMAGE_DIR and recorded in the manifest so
 * the table can be recreated) or `<disk>-pt.parted`, and `<part>.<fs>-ptcl-img.<comp>[.aa ...]` per partition.
 * An uncompressed, unsplit partclone image imported with --no-store is recorded as "seed_in_place". */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "extent_map.h"
#include "image_file.h"
#include "manifest.h"
#include "metainfo.h"
#include "partclone.h"
#include "sha1.h"

#define IMP_MAX_TRACKERS 64
#define IMP_MAX_SOURCES 4096
#define IMP_VERSION "diskswarm 0.1.0"

struct imp_opts {
    const char *outdir, *name;
    const char **sources;
    size_t n_sources;
    uint64_t piece;
    bool store, no_verify, quiet;
    int zlevel;
    unsigned threads;
    const char *trackers[IMP_MAX_TRACKERS];
    size_t n_trackers;
    uint64_t bytes, image_bytes, ms, zstd_ns;
};

static void imp_usage(FILE *f)
{
    fputs("usage: diskswarm import SOURCE... -o IMAGE_DIR [options]\n"
          "\n"
          "Turn partclone images or a Clonezilla image directory into an IMAGE_DIR: one Clonezilla/Ezio-layout\n"
          "torrent per partition (offsets relative to the partition), manifest.json, and an image file per\n"
          "partition from which `diskswarm seed T --from IMAGE_DIR` serves.\n"
          "SOURCE: a partclone image (format 0001 or 0002; raw, .gz or .zst; split parts: give them all in order,\n"
          "or the first '.aa' one) or a Clonezilla image directory (disk, parts, <disk>-pt.sf, <part>.*-ptcl-img.*).\n"
          "\n"
          "  -o, --output DIR     image directory (created if missing)\n"
          "  --name NAME          torrent name for a single partclone image (default: from the file name)\n"
          "  --piece-size SIZE    piece length, a power of two from 16K to 1G (default: 128K, larger for\n"
          "                       images over 2 GiB so that a torrent has at most 16384 pieces)\n"
          "  --compress zstd[:L]  store the pieces zstd-compressed at level L (default 3)\n"
          "  --store              store the pieces uncompressed (the default)\n"
          "  --no-store           torrents and manifest only; an uncompressed single-file partclone image is\n"
          "                       then recorded to be seeded in place\n"
          "  --tracker URL        announce URL (repeatable)\n"
          "  --threads N          hashing/compression threads (default: one per online CPU)\n"
          "  --no-verify          do not check the partclone data checksums\n"
          "  --quiet              no progress output\n"
          "  -h, --help           show this help\n",
          f);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}


static int copy_file(const char *from, const char *to)
{
    int fd = open(from, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_error("cannot open '%s': %s", from, strerror(errno));
        return -1;
    }
    struct buf b = {0};
    for (;;) {
        if (buf_reserve(&b, 65536)) {
            close(fd);
            buf_free(&b);
            cli_error("out of memory");
            return -1;
        }
        ssize_t r = read(fd, b.data + b.len, 65536);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || b.len > (16u << 20)) {
            if (r < 0)
                cli_error("cannot read '%s': %s", from, strerror(errno));
            close(fd);
            if (r < 0) {
                buf_free(&b);
                return -1;
            }
            break;
        }
        b.len += (size_t)r;
    }
    int rc = cli_write_file(to, b.data, b.len);
    buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * one partclone image → torrent (+ image) */

static int fill_stream(void *ctx, uint32_t piece, uint64_t off, uint8_t *buf, size_t len, struct ds_err *e)
{
    (void)piece;
    (void)off;
    return pc_read_data(ctx, buf, len, e);
}

struct imp_progress {
    const struct imp_opts *o;
    const char *name;
    uint64_t total, t0, last;
};

static void imp_progress_cb(void *ctx, uint64_t done, bool final)
{
    struct imp_progress *p = ctx;
    if (p->o->quiet)
        return;
    uint64_t now = now_ms();
    if (!final && now - p->last < (isatty(STDERR_FILENO) ? 250u : 5000u))
        return;
    p->last = now;
    double secs = (double)(now - p->t0) / 1000.0, pct = p->total ? 100.0 * (double)done / (double)p->total : 100;
    char hd[32], ht[32], hr[32];
    cli_format_bytes(done, hd, sizeof hd);
    cli_format_bytes(p->total, ht, sizeof ht);
    cli_format_bytes(secs > 0 ? (uint64_t)((double)done / secs) : 0, hr, sizeof hr);
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\r\033[Kimport %s: %5.1f%% %s/%s %s/s%s", p->name, pct, hd, ht, hr, final ? "\n" : "");
    else
        fprintf(stderr, "import %s: %5.1f%% %s/%s %s/s\n", p->name, pct, hd, ht, hr);
}

static bool valid_name(const char *n)
{
    return *n && strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/') && strlen(n) < 60;
}

static int add_torrent(struct manifest *m, struct manifest_torrent **out)
{
    struct manifest_torrent *nt = realloc(m->torrents, (m->n_torrents + 1) * sizeof *nt);
    if (!nt) {
        cli_error("out of memory");
        return -1;
    }
    m->torrents = nt;
    *out = &nt[m->n_torrents++];
    memset(*out, 0, sizeof **out);
    return 0;
}

static int import_one(struct imp_opts *o, const char *const *paths, size_t n_paths, const char *name,
                      struct manifest *m, struct manifest_part *mp)
{
    struct ds_err e;
    struct pc_reader *r = NULL;
    struct extent *ext = NULL;
    uint8_t *hashes = NULL;
    struct image_writer *iw = NULL;
    bool auto_piece = false; /* no --piece-size: chosen for this torrent's size */
    struct buf tor = {0};
    struct metainfo *mi = NULL;
    int rc = -1;
    if (!valid_name(name)) {
        cli_error("import: '%s' cannot be a torrent name; use --name", name);
        return -1;
    }
    if (pc_open(&r, paths, n_paths, !o->no_verify, &e)) {
        cli_error("%s", e.msg);
        return -1;
    }
    const struct pc_info *pi = pc_get_info(r);
    size_t n_ext;
    const struct pc_extent *px = pc_extents(r, &n_ext);
    snprintf(mp->fstype, sizeof mp->fstype, "%s", pc_fs_name(pi->fs));
    snprintf(mp->scanner, sizeof mp->scanner, "partclone");
    mp->block_size = pi->block_size;
    mp->fs_size = pi->total_blocks * pi->block_size;
    mp->used_bytes = pi->data_bytes;
    mp->extents = n_ext;
    if (!mp->size)
        mp->size = pi->device_size;
    static const char *const cn[] = {"raw", "gzip", "zstd"};
    if (!o->quiet)
        fprintf(stderr, "%s: partclone image v%u (%s%s%s), %s, %u-byte blocks, %" PRIu64 " of %" PRIu64
                " blocks used in %zu extent%s, %s%s\n",
                name, pi->version, cn[pi->comp], pi->n_parts > 1 ? ", split into " : "",
                pi->n_parts > 1 ? "parts" : "", pi->fs, pi->block_size, pi->used_blocks, pi->total_blocks, n_ext,
                n_ext == 1 ? "" : "s",
                pi->checksum_mode == PC_CSM_CRC32 && !o->no_verify ? "CRC32 checked" : "checksums not checked",
                pi->ptc_version[0] ? "" : "");
    if (n_ext == 0 || pi->data_bytes == 0) {
        if (!o->quiet)
            fprintf(stderr, "%s: no used blocks; no torrent written\n", name);
        rc = 0;
        goto out;
    }
    if (!(ext = calloc(n_ext, sizeof *ext))) {
        cli_error("out of memory");
        goto out;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n_ext; i++) {
        ext[i] = (struct extent){.dev_off = px[i].off, .len = px[i].len, .tor_off = total};
        total += px[i].len;
    }
    if (o->piece == 0) {
        auto_piece = true;
        o->piece = metainfo_auto_piece_length(total);
    }
    if (m->piece_size < o->piece)
        m->piece_size = o->piece;
    uint64_t n_pieces = total / o->piece + (total % o->piece != 0);
    if (n_pieces > UINT32_MAX) {
        cli_error("%s: too many pieces; use a larger --piece-size", name);
        goto out;
    }
    if (!(hashes = malloc((size_t)n_pieces * SHA1_LEN))) {
        cli_error("out of memory");
        goto out;
    }
    char img_file[100], img_path[4300], tor_file[100], tor_path[4300];
    snprintf(img_file, sizeof img_file, "%s%s", name, IMAGE_EXT);
    snprintf(img_path, sizeof img_path, "%s/%s", o->outdir, img_file);
    snprintf(tor_file, sizeof tor_file, "%s.torrent", name);
    snprintf(tor_path, sizeof tor_path, "%s/%s", o->outdir, tor_file);
    if (o->store &&
        image_writer_open(&iw, img_path, o->piece, total, o->zlevel > 0 ? IMAGE_COMP_ZSTD : IMAGE_COMP_NONE, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    struct imp_progress pg = {.o = o, .name = name, .total = total, .t0 = now_ms(), .last = now_ms()};
    struct image_build b = {.piece_length = o->piece, .total_length = total, .n_pieces = (uint32_t)n_pieces,
                            .threads = o->threads, .fill = fill_stream, .fill_ctx = r, .fill_in_order = true,
                            .w = iw, .zstd_level = o->zlevel, .hashes = hashes, .progress = imp_progress_cb,
                            .progress_ctx = &pg};
    if (image_build_run(&b, &e)) {
        if (isatty(STDERR_FILENO) && !o->quiet)
            fputs("\r\033[K", stderr);
        cli_error("%s: %s", name, e.msg);
        goto out;
    }
    o->bytes += total;
    o->ms += now_ms() - pg.t0;
    o->zstd_ns += b.zstd_ns;
    if (metainfo_build_ezio(name, ext, n_ext, o->piece, hashes, o->trackers, o->n_trackers, IMP_VERSION, false,
                            &tor, &e) ||
        metainfo_parse(tor.data, tor.len, &mi, &e)) {
        cli_error("%s: %s", name, e.msg);
        goto out;
    }
    uint64_t img_bytes = 0;
    if (iw) {
        struct image_writer *w = iw;
        iw = NULL;
        if (image_writer_finish(w, mi->info_hash, &img_bytes, &e)) {
            cli_error("%s", e.msg);
            goto out;
        }
        o->image_bytes += img_bytes;
    }
    if (cli_write_file(tor_path, tor.data, tor.len))
        goto out;
    struct manifest_torrent *t;
    if (add_torrent(m, &t))
        goto out;
    snprintf(t->file, sizeof t->file, "%s", tor_file);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->role, sizeof t->role, "partition");
    hex_encode(mi->info_hash, SHA1_LEN, t->info_hash);
    t->bytes = total;
    t->pieces = n_pieces;
    t->extents = n_ext;
    snprintf(mp->torrent, sizeof mp->torrent, "%s", tor_file);
    if (o->store) {
        snprintf(t->image, sizeof t->image, "%s", img_file);
        if (o->zlevel > 0)
            snprintf(t->image_compression, sizeof t->image_compression, "zstd:%d", o->zlevel);
        else
            snprintf(t->image_compression, sizeof t->image_compression, "none");
        t->image_bytes = img_bytes;
    } else if (pi->comp == PC_RAW && pi->n_parts == 1) {
        char real[PATH_MAX];
        if (!realpath(paths[0], real) || strlen(real) >= sizeof t->seed_in_place) {
            cli_error("%s: cannot resolve '%s'", name, paths[0]);
            goto out;
        }
        snprintf(t->seed_in_place, sizeof t->seed_in_place, "%s", real);
    }
    char hs[32];
    cli_format_bytes(total, hs, sizeof hs);
    printf("%s: name %s, %zu extent%s, %" PRIu64 " bytes (%s), %" PRIu64 " pieces, info-hash %s\n", tor_path, name,
           n_ext, n_ext == 1 ? "" : "s", total, hs, n_pieces, t->info_hash);
    if (o->store && !o->quiet)
        fprintf(stderr, "%s: %" PRIu64 " bytes for %" PRIu64 " bytes of data (%.1f%%, %s)\n", img_path, img_bytes,
                total, 100.0 * (double)img_bytes / (double)total, t->image_compression);
    else if (t->seed_in_place[0] && !o->quiet)
        fprintf(stderr, "%s: seed in place from %s\n", name, t->seed_in_place);
    rc = 0;
out:
    if (auto_piece)
        o->piece = 0;
    image_writer_abort(iw);
    metainfo_free(mi);
    buf_free(&tor);
    free(hashes);
    free(ext);
    pc_close(r);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * Clonezilla image directory */

static int read_text(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    return 0;
}

/* Copy src into dst (cap bytes), truncating. */
static void scopy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* sfdisk dump: header keys and partition lines into m (label, disk_id, sector size, partitions). */
static int parse_sfdisk(const char *path, struct manifest *m, uint64_t *disk_bytes)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    uint64_t last_lba = 0;
    m->sector_size = 512;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *colon = strstr(line, " : ");
        if (!colon) {
            char k[32], v[128];
            if (sscanf(line, "%31[^:]: %127s", k, v) != 2)
                continue;
            if (!strcmp(k, "label"))
                scopy(m->label, sizeof m->label, v);
            else if (!strcmp(k, "label-id"))
                scopy(m->disk_id, sizeof m->disk_id, v);
            else if (!strcmp(k, "sector-size"))
                m->sector_size = (uint32_t)strtoul(v, NULL, 10);
            else if (!strcmp(k, "last-lba"))
                last_lba = strtoull(v, NULL, 10);
            continue;
        }
        *colon = 0;
        const char *dev = strrchr(line, '/') ? strrchr(line, '/') + 1 : line;
        struct manifest_part *np = realloc(m->parts, (m->n_parts + 1) * sizeof *np);
        if (!np) {
            fclose(f);
            return -1;
        }
        m->parts = np;
        struct manifest_part *p = &np[m->n_parts++];
        memset(p, 0, sizeof *p);
        scopy(p->device, sizeof p->device, dev);
        size_t dl = strlen(dev);
        while (dl > 0 && isdigit((unsigned char)dev[dl - 1]))
            dl--;
        p->number = (unsigned)strtoul(dev + dl, NULL, 10);
        for (char *s = colon + 3; s && *s;) {
            while (*s == ' ' || *s == ',')
                s++;
            char *eq = strchr(s, '=');
            if (!eq)
                break;
            *eq = 0;
            char *v = eq + 1, *end;
            while (*v == ' ')
                v++;
            if (*v == '"') {
                v++;
                end = strchr(v, '"');
                if (end)
                    *end++ = 0;
            } else {
                end = strchr(v, ',');
                if (end)
                    *end++ = 0;
            }
            if (!strcmp(s, "start"))
                p->start = strtoull(v, NULL, 10);
            else if (!strcmp(s, "size"))
                p->size = strtoull(v, NULL, 10);
            else if (!strcmp(s, "type"))
                scopy(p->type, sizeof p->type, v);
            else if (!strcmp(s, "uuid"))
                scopy(p->uuid, sizeof p->uuid, v);
            else if (!strcmp(s, "name"))
                scopy(p->name, sizeof p->name, v);
            s = end;
        }
    }
    fclose(f);
    uint64_t end = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        m->parts[i].start *= m->sector_size;
        m->parts[i].size *= m->sector_size;
        if (m->parts[i].start + m->parts[i].size > end)
            end = m->parts[i].start + m->parts[i].size;
    }
    *disk_bytes = last_lba ? (last_lba + 1) * m->sector_size : end;
    if (!strcmp(m->label, "gpt"))
        *disk_bytes += 33 * (uint64_t)m->sector_size;   /* backup GPT after last-lba */
    return 0;
}

/* Find "<part>.<fs>-ptcl-img.<comp>" (whole) or its ".aa" first part in dir. */
static int find_part_image(const char *dir, const char *part, char *out, size_t cap, char *comp, size_t ccap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    size_t pl = strlen(part);
    int found = -1;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        const char *tag = strstr(n, "-ptcl-img.");
        if (strncmp(n, part, pl) || n[pl] != '.' || !tag)
            continue;
        const char *c = tag + 10;
        size_t cl = strcspn(c, ".");
        bool split = c[cl] == '.';
        if (split && strcmp(c + cl, ".aa"))
            continue;
        snprintf(comp, ccap, "%.*s", (int)cl, c);
        snprintf(out, cap, "%s/%s", dir, n);
        found = 0;
        break;
    }
    closedir(d);
    return found;
}

static int import_clonezilla(struct imp_opts *o, const char *dir, struct manifest *m)
{
    char p[4300], text[4096], disk[64] = "";
    snprintf(p, sizeof p, "%s/parts", dir);
    if (read_text(p, text, sizeof text)) {
        cli_error("import: '%s' is not a Clonezilla image directory (no 'parts' file)", dir);
        return EXIT_USAGE;
    }
    char parts_text[4096];
    snprintf(parts_text, sizeof parts_text, "%s", text);
    snprintf(p, sizeof p, "%s/disk", dir);
    if (read_text(p, text, sizeof text) == 0)
        sscanf(text, "%63s", disk);
    uint64_t disk_bytes = 0;
    snprintf(m->kind, sizeof m->kind, "partition");
    snprintf(m->mode, sizeof m->mode, "per-partition");
    if (disk[0]) {
        char sf[4300], dst[4300];
        snprintf(sf, sizeof sf, "%s/%s-pt.sf", dir, disk);
        if (access(sf, R_OK) == 0) {
            if (parse_sfdisk(sf, m, &disk_bytes)) {
                cli_error("cannot read '%s'", sf);
                return 1;
            }
            snprintf(m->pt_format, sizeof m->pt_format, "sfdisk");
            snprintf(m->pt_file, sizeof m->pt_file, "%s-pt.sf", disk);
        } else {
            snprintf(sf, sizeof sf, "%s/%s-pt.parted", dir, disk);
            if (access(sf, R_OK) == 0) {
                snprintf(m->pt_format, sizeof m->pt_format, "parted");
                snprintf(m->pt_file, sizeof m->pt_file, "%s-pt.parted", disk);
            }
        }
        if (m->pt_file[0]) {
            snprintf(dst, sizeof dst, "%s/%s", o->outdir, m->pt_file);
            if (copy_file(sf, dst))
                return 1;
            snprintf(m->kind, sizeof m->kind, "disk");
            if (!o->quiet)
                fprintf(stderr, "%s: partition table (%s dump) recorded as %s\n", disk, m->pt_format, m->pt_file);
        }
    }
    m->source_size = disk_bytes;
    size_t n_named = 0;
    for (char *save = NULL, *tok = strtok_r(parts_text, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        n_named++;
        struct manifest_part *mp = NULL;
        for (size_t i = 0; i < m->n_parts; i++)
            if (!strcmp(m->parts[i].device, tok))
                mp = &m->parts[i];
        if (!mp) {
            struct manifest_part *np = realloc(m->parts, (m->n_parts + 1) * sizeof *np);
            if (!np) {
                cli_error("out of memory");
                return 1;
            }
            m->parts = np;
            mp = &np[m->n_parts++];
            memset(mp, 0, sizeof *mp);
            snprintf(mp->device, sizeof mp->device, "%s", tok);
        }
        char img[4300], comp[32];
        if (find_part_image(dir, tok, img, sizeof img, comp, sizeof comp)) {
            cli_error("import: %s: no partclone image (%s.<fs>-ptcl-img.*) in '%s'", tok, tok, dir);
            return 1;
        }
        if (strcmp(comp, "gz") && strcmp(comp, "zst") && strcmp(comp, "uncomp")) {
            cli_error("import: %s: '%s' compression is not supported (gz, zst and uncomp are); decompress it first",
                      tok, comp);
            return 1;
        }
        const char *paths[1] = {img};
        if (import_one(o, paths, 1, tok, m, mp))
            return 1;
    }
    if (n_named == 0) {
        cli_error("import: '%s/parts' names no partition", dir);
        return 1;
    }
    return 0;
}

/* "sda1.ext4-ptcl-img.gz.aa" → "sda1"; "/x/root.img" → "root" */
static void default_name(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strcspn(b, ".");
    if (n == 0)
        n = strlen(b);
    snprintf(out, cap, "%.*s", (int)n, b);
}

static int run_import(struct imp_opts *o)
{
    struct manifest m;
    memset(&m, 0, sizeof m);
    int rc = 1;
    if (mkdir(o->outdir, 0755) && errno != EEXIST) {
        cli_error("cannot create '%s': %s", o->outdir, strerror(errno));
        return 1;
    }
    struct stat st;
    if (stat(o->outdir, &st) || !S_ISDIR(st.st_mode)) {
        cli_error("'%s' is not a directory", o->outdir);
        return 1;
    }
    m.version = MANIFEST_VERSION;
    m.created = (int64_t)time(NULL);
    snprintf(m.created_by, sizeof m.created_by, "%s", IMP_VERSION);
    snprintf(m.source, sizeof m.source, "%s", o->sources[0]);
    m.piece_size = o->piece ? o->piece : METAINFO_AUTO_PIECE_MIN; /* auto: raised to the largest torrent's */
    m.sector_size = 512;
    if (stat(o->sources[0], &st)) {
        cli_error("cannot open '%s': %s", o->sources[0], strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        if (o->n_sources != 1) {
            cli_error("import: give one Clonezilla image directory");
            return EXIT_USAGE;
        }
        if (o->name)
            fprintf(stderr, "diskswarm: import: --name is ignored for a Clonezilla directory (partition names are "
                            "used)\n");
        int r = import_clonezilla(o, o->sources[0], &m);
        if (r) {
            rc = r;
            goto out;
        }
    } else {
        char name[64];
        if (o->name)
            snprintf(name, sizeof name, "%s", o->name);
        else
            default_name(o->sources[0], name, sizeof name);
        snprintf(m.kind, sizeof m.kind, "partition");
        snprintf(m.mode, sizeof m.mode, "single");
        if (!(m.parts = calloc(1, sizeof *m.parts))) {
            cli_error("out of memory");
            goto out;
        }
        m.n_parts = 1;
        snprintf(m.parts[0].device, sizeof m.parts[0].device, "%s", name);
        if (import_one(o, o->sources, o->n_sources, name, &m, &m.parts[0]))
            goto out;
        m.source_size = m.parts[0].size;
    }
    struct ds_err e;
    if (manifest_write(o->outdir, &m, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    if (!o->quiet) {
        double secs = (double)o->ms / 1000.0, zs = (double)o->zstd_ns / 1e9;
        fprintf(stderr, "imported %" PRIu64 " bytes in %.2f s (%.1f MB/s)", o->bytes, secs,
                secs > 0 ? (double)o->bytes / 1e6 / secs : 0.0);
        if (o->store)
            fprintf(stderr, "; image files %" PRIu64 " bytes (ratio %.3f)", o->image_bytes,
                    o->bytes ? (double)o->image_bytes / (double)o->bytes : 0.0);
        if (o->zlevel > 0 && zs > 0)
            fprintf(stderr, "; zstd %.1f MB/s per core", (double)o->bytes / 1e6 / zs);
        fputc('\n', stderr);
        printf("%s/%s written\n", o->outdir, MANIFEST_FILE);
    }
    rc = 0;
out:
    manifest_free(&m);
    return rc;
}

int cmd_import(int argc, char **argv)
{
    enum { OPT_NAME = 256, OPT_PIECE, OPT_COMPRESS, OPT_STORE, OPT_NOSTORE, OPT_TRACKER, OPT_THREADS, OPT_NOVERIFY,
           OPT_QUIET };
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},       {"name", required_argument, NULL, OPT_NAME},
        {"piece-size", required_argument, NULL, OPT_PIECE}, {"compress", required_argument, NULL, OPT_COMPRESS},
        {"store", no_argument, NULL, OPT_STORE},        {"no-store", no_argument, NULL, OPT_NOSTORE},
        {"tracker", required_argument, NULL, OPT_TRACKER}, {"threads", required_argument, NULL, OPT_THREADS},
        {"no-verify", no_argument, NULL, OPT_NOVERIFY}, {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0},
    };
    struct imp_opts o = {.piece = 0, .store = true}; /* piece 0: metainfo_auto_piece_length() per torrent */
    optind = 1;
    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o.outdir = optarg; break;
        case OPT_NAME: o.name = optarg; break;
        case OPT_PIECE:
            if (cli_parse_piece_size(optarg, &o.piece)) {
                cli_error("import: --piece-size must be a power of two from 16K to 1G, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_COMPRESS:
            v = 3;
            if (strncmp(optarg, "zstd", 4) ||
                (optarg[4] && (optarg[4] != ':' || cli_parse_uint(optarg + 5, 19, &v) || v == 0))) {
                cli_error("import: --compress wants zstd or zstd:LEVEL (1-19), not '%s'", optarg);
                return EXIT_USAGE;
            }
            o.zlevel = (int)v;
            o.store = true;
            break;
        case OPT_STORE: o.store = true; break;
        case OPT_NOSTORE: o.store = false; o.zlevel = 0; break;
        case OPT_TRACKER:
            if (!*optarg || o.n_trackers == IMP_MAX_TRACKERS) {
                cli_error("import: bad or too many --tracker options");
                return EXIT_USAGE;
            }
            o.trackers[o.n_trackers++] = optarg;
            break;
        case OPT_THREADS:
            if (cli_parse_uint(optarg, 64, &v) || v == 0) {
                cli_error("import: --threads must be from 1 to 64, not '%s'", optarg);
                return EXIT_USAGE;
            }
            o.threads = (unsigned)v;
            break;
        case OPT_NOVERIFY: o.no_verify = true; break;
        case OPT_QUIET: o.quiet = true; break;
        case 'h': imp_usage(stdout); return 0;
        case ':':
            cli_error("import: option '%s' needs an argument", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            cli_error("import: unknown option '%s'", argv[optind - 1]);
            imp_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_error("import: missing SOURCE");
        imp_usage(stderr);
        return EXIT_USAGE;
    }
    if (!o.outdir) {
        cli_error("import: -o IMAGE_DIR is required");
        return EXIT_USAGE;
    }
    if ((size_t)(argc - optind) > IMP_MAX_SOURCES) {
        cli_error("import: too many SOURCE arguments");
        return EXIT_USAGE;
    }
    o.sources = (const char **)(argv + optind);
    o.n_sources = (size_t)(argc - optind);
    return run_import(&o);
}
