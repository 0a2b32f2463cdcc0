/* cmd_mktorrent.c — `diskswarm make-torrent`: hash extents of a device or file into an Ezio-layout torrent.
 *
 * SOURCE is read through the extents in device-offset order with one bounded buffer; a piece may span several
 * extents, so SHA-1 contexts are fed incrementally and finished at every piece boundary. The torrent is written
 * to a temporary file next to OUT and renamed into place, so OUT is either the old file or the complete new one. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "extent_map.h"
#include "metainfo.h"

#define MK_IO_BUF ((size_t)1 << 20)
#define MK_MAX_TRACKERS 64

static void mk_usage(FILE *f)
{
    fputs("usage: diskswarm make-torrent SOURCE (--extents FILE | --all) -o OUT.torrent [options]\n"
          "\n"
          "Describe extents of a device or image file as a Clonezilla/Ezio-layout torrent: one file per extent,\n"
          "named by its device offset as 32 hex digits.\n"
          "\n"
          "  --extents FILE      one extent per line: DEV_OFFSET LENGTH (decimal or 0x hex; '#' comments)\n"
          "  --all               one extent covering all of SOURCE instead of --extents\n"
          "  -o, --output FILE   where to write the torrent\n"
          "  --name NAME         torrent name / device label (default: basename of SOURCE)\n"
          "  --piece-size SIZE   piece length, a power of two >= 16K (default: 128K, larger for images\n"
          "                      over 2 GiB so that a torrent has at most 16384 pieces)\n"
          "  --tracker URL       announce URL (repeatable; the first is the primary)\n"
          "  --private           set the private flag (no DHT/PEX)\n"
          "  -h, --help          show this help\n",
          f);
}

struct ext_vec {
    struct extent *v;
    size_t n, cap;
};

static int ext_push(struct ext_vec *ev, uint64_t off, uint64_t len)
{
    if (ev->n == ev->cap) {
        size_t ncap = ev->cap ? ev->cap * 2 : 64;
        if (ncap > SIZE_MAX / sizeof *ev->v)
            return -1;
        struct extent *nv = realloc(ev->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        ev->v = nv;
        ev->cap = ncap;
    }
    ev->v[ev->n++] = (struct extent){.dev_off = off, .len = len};
    return 0;
}

/* Decimal or 0x-hex, whole token, no sign. */
static int parse_num(const char *s, uint64_t *out)
{
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++)
        if (base == 10 ? !(*p >= '0' && *p <= '9')
                       : !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int read_extents(const char *path, struct ext_vec *ev)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("cannot open extents file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    unsigned long lineno = 0;
    int rc = 0;
    errno = 0;
    while ((r = getline(&line, &cap, f)) != -1) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        if ((size_t)r != strlen(line) && !hash) {
            cli_error("%s:%lu: NUL byte in line", path, lineno);
            rc = -1;
            break;
        }
        char *save = NULL;
        char *a = strtok_r(line, " \t\r\n\v\f", &save);
        if (!a)
            continue;
        char *b = strtok_r(NULL, " \t\r\n\v\f", &save);
        char *extra = b ? strtok_r(NULL, " \t\r\n\v\f", &save) : NULL;
        uint64_t off, len;
        if (!b || extra) {
            cli_error("%s:%lu: expected 'DEV_OFFSET LENGTH'", path, lineno);
            rc = -1;
            break;
        }
        if (parse_num(a, &off)) {
            cli_error("%s:%lu: bad offset '%s'", path, lineno, a);
            rc = -1;
            break;
        }
        if (parse_num(b, &len)) {
            cli_error("%s:%lu: bad length '%s'", path, lineno, b);
            rc = -1;
            break;
        }
        if (len == 0) {
            cli_error("%s:%lu: zero-length extent", path, lineno);
            rc = -1;
            break;
        }
        if (len > UINT64_MAX - off) {
            cli_error("%s:%lu: offset + length overflows", path, lineno);
            rc = -1;
            break;
        }
        if (ext_push(ev, off, len)) {
            cli_error("out of memory");
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        cli_error("cannot read extents file '%s': %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc == 0 && ev->n == 0) {
        cli_error("extents file '%s' lists no extents", path);
        rc = -1;
    }
    return rc;
}

static int cmp_off(const void *a, const void *b)
{
    const struct extent *x = a, *y = b;
    return x->dev_off < y->dev_off ? -1 : x->dev_off > y->dev_off ? 1 : 0;
}

static int source_size(int fd, const char *path, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st)) {
        cli_error("cannot stat '%s': %s", path, strerror(errno));
        return -1;
    }
    if (S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        return 0;
    }
    if (S_ISBLK(st.st_mode)) {
        uint64_t sz;
        if (ioctl(fd, BLKGETSIZE64, &sz)) {
            cli_error("cannot get the size of block device '%s': %s", path, strerror(errno));
            return -1;
        }
        *size = sz;
        return 0;
    }
    cli_error("'%s' is neither a regular file nor a block device", path);
    return -1;
}

/* Read [off, off+len) of fd fully, handling short reads and EINTR. */
static int pread_full(int fd, uint8_t *p, size_t len, uint64_t off, const char *path)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, p + got, len - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            cli_error("read error on '%s' at offset %" PRIu64 ": %s", path, off + got, strerror(errno));
            return -1;
        }
        if (r == 0) {
            cli_error("'%s' ended unexpectedly at offset %" PRIu64, path, off + got);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Hash the pieces of the stream formed by ext[0..n) (in order). hashes has room for all pieces. */
static int hash_extents(int fd, const char *path, const struct extent *ext, size_t n, uint64_t piece,
                        uint8_t *hashes, uint64_t n_pieces)
{
    uint8_t *buf = malloc(MK_IO_BUF);
    if (!buf) {
        cli_error("out of memory");
        return -1;
    }
    struct sha1_ctx c = {0};
    uint64_t in_piece = 0, pi = 0;
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = ext[i].dev_off, left = ext[i].len;
        while (left > 0) {
            size_t chunk = left < MK_IO_BUF ? (size_t)left : MK_IO_BUF;
            if (pread_full(fd, buf, chunk, off, path))
                goto out;
            size_t pos = 0;
            while (pos < chunk) {
                if (in_piece == 0 && sha1_init(&c)) {
                    cli_error("SHA-1 initialisation failed");
                    goto out;
                }
                uint64_t room = piece - in_piece;
                size_t take = chunk - pos < room ? chunk - pos : (size_t)room;
                if (sha1_update(&c, buf + pos, take)) {
                    cli_error("SHA-1 failed");
                    goto out;
                }
                pos += take;
                in_piece += take;
                if (in_piece == piece) {
                    if (pi >= n_pieces || sha1_final(&c, hashes + pi * SHA1_LEN)) {
                        cli_error("SHA-1 failed");
                        goto out;
                    }
                    pi++;
                    in_piece = 0;
                }
            }
            off += chunk;
            left -= chunk;
        }
    }
    if (in_piece > 0) {
        if (pi >= n_pieces || sha1_final(&c, hashes + pi * SHA1_LEN)) {
            cli_error("SHA-1 failed");
            goto out;
        }
        pi++;
    }
    if (pi != n_pieces) {
        cli_error("internal error: hashed %" PRIu64 " pieces, expected %" PRIu64, pi, n_pieces);
        goto out;
    }
    rc = 0;
out:
    sha1_abort(&c);
    free(buf);
    return rc;
}


int cmd_make_torrent(int argc, char **argv)
{
    enum { OPT_EXTENTS = 256, OPT_ALL, OPT_NAME, OPT_PIECE, OPT_TRACKER, OPT_PRIVATE };
    static const struct option opts[] = {
        {"extents", required_argument, NULL, OPT_EXTENTS},
        {"all", no_argument, NULL, OPT_ALL},
        {"output", required_argument, NULL, 'o'},
        {"name", required_argument, NULL, OPT_NAME},
        {"piece-size", required_argument, NULL, OPT_PIECE},
        {"tracker", required_argument, NULL, OPT_TRACKER},
        {"private", no_argument, NULL, OPT_PRIVATE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *extents_path = NULL, *out_path = NULL, *name = NULL;
    const char *trackers[MK_MAX_TRACKERS];
    size_t n_trackers = 0;
    bool all = false, is_private = false;
    uint64_t piece = 0; /* no --piece-size: metainfo_auto_piece_length() of the total */
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (c) {
        case OPT_EXTENTS: extents_path = optarg; break;
        case OPT_ALL: all = true; break;
        case 'o': out_path = optarg; break;
        case OPT_NAME: name = optarg; break;
        case OPT_PIECE:
            if (cli_parse_piece_size(optarg, &piece)) {
                cli_error("make-torrent: --piece-size must be a power of two from 16K to 1G, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_TRACKER:
            if (!*optarg) {
                cli_error("make-torrent: empty --tracker URL");
                return EXIT_USAGE;
            }
            if (n_trackers == MK_MAX_TRACKERS) {
                cli_error("make-torrent: too many --tracker options (max %d)", MK_MAX_TRACKERS);
                return EXIT_USAGE;
            }
            trackers[n_trackers++] = optarg;
            break;
        case OPT_PRIVATE: is_private = true; break;
        case 'h': mk_usage(stdout); return 0;
        case ':':
            cli_error("make-torrent: option '%s' needs an argument", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            cli_error("make-torrent: unknown option '%s'", argv[optind - 1]);
            mk_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        cli_error(argc - optind == 0 ? "make-torrent: missing SOURCE" : "make-torrent: too many arguments");
        mk_usage(stderr);
        return EXIT_USAGE;
    }
    const char *source = argv[optind];
    if (!out_path) {
        cli_error("make-torrent: -o OUT.torrent is required");
        return EXIT_USAGE;
    }
    if (!!extents_path == all) {
        cli_error("make-torrent: give exactly one of --extents FILE and --all");
        return EXIT_USAGE;
    }

    int rc = 1, fd = -1;
    struct ext_vec ev = {0};
    uint8_t *hashes = NULL;
    struct buf tor = {0};
    struct metainfo *mi = NULL;
    char *src_copy = NULL;

    if (!name) {
        src_copy = strdup(source);
        if (!src_copy) {
            cli_error("out of memory");
            goto out;
        }
        name = basename(src_copy);
    }
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "/") || strchr(name, '/')) {
        cli_error("make-torrent: '%s' cannot be a torrent name; use --name", name);
        rc = EXIT_USAGE;
        goto out;
    }

    fd = open(source, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_error("cannot open '%s': %s", source, strerror(errno));
        goto out;
    }
    uint64_t src_size;
    if (source_size(fd, source, &src_size))
        goto out;

    if (all) {
        if (src_size == 0) {
            cli_error("'%s' is empty", source);
            goto out;
        }
        if (ext_push(&ev, 0, src_size)) {
            cli_error("out of memory");
            goto out;
        }
    } else if (read_extents(extents_path, &ev)) {
        goto out;
    }

    qsort(ev.v, ev.n, sizeof *ev.v, cmp_off);
    uint64_t total = 0;
    for (size_t i = 0; i < ev.n; i++) {
        const struct extent *x = &ev.v[i];
        if (i > 0 && ev.v[i - 1].dev_off + ev.v[i - 1].len > x->dev_off) {
            cli_error("extents overlap: [%" PRIu64 ", +%" PRIu64 ") and [%" PRIu64 ", +%" PRIu64 ")",
                      ev.v[i - 1].dev_off, ev.v[i - 1].len, x->dev_off, x->len);
            goto out;
        }
        if (x->dev_off + x->len > src_size) {
            cli_error("extent [%" PRIu64 ", +%" PRIu64 ") goes past the end of '%s' (%" PRIu64 " bytes)", x->dev_off,
                      x->len, source, src_size);
            goto out;
        }
        total += x->len; /* extents are disjoint and inside src_size: no overflow */
    }
    if (piece == 0)
        piece = metainfo_auto_piece_length(total);
    uint64_t n_pieces = total / piece + (total % piece != 0);
    if (n_pieces > UINT32_MAX) {
        cli_error("too many pieces (%" PRIu64 "); use a larger --piece-size", n_pieces);
        goto out;
    }
    hashes = malloc((size_t)n_pieces * SHA1_LEN);
    if (!hashes) {
        cli_error("out of memory");
        goto out;
    }
    if (hash_extents(fd, source, ev.v, ev.n, piece, hashes, n_pieces))
        goto out;

    struct ds_err e;
    if (metainfo_build_ezio(name, ev.v, ev.n, piece, hashes, trackers, n_trackers, "diskswarm 0.1.0", is_private,
                            &tor, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    /* Reparse what we made: validates it and gives the info-hash for the summary. */
    if (metainfo_parse(tor.data, tor.len, &mi, &e)) {
        cli_error("internal error: generated torrent does not parse: %s", e.msg);
        goto out;
    }
    if (cli_write_file(out_path, tor.data, tor.len))
        goto out;

    char hex[2 * SHA1_LEN + 1], hsize[32], hpiece[32];
    hex_encode(mi->info_hash, SHA1_LEN, hex);
    cli_format_bytes(total, hsize, sizeof hsize);
    cli_format_bytes(piece, hpiece, sizeof hpiece);
    printf("%s: name %s, %zu extent%s, %" PRIu64 " bytes (%s), %" PRIu64 " pieces of %s, info-hash %s\n", out_path,
           name, ev.n, ev.n == 1 ? "" : "s", total, hsize, n_pieces, hpiece, hex);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    metainfo_free(mi);
    buf_free(&tor);
    free(hashes);
    free(ev.v);
    free(src_copy);
    return rc;
}
