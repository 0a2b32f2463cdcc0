/* metainfo.c — load and validate v1 .torrent files; build Ezio-layout torrents. */
#include "metainfo.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bencode.h"
#include "extent_map.h"

/* A .torrent larger than this is refused on load (1 TiB at 16 KiB pieces needs ~1.3 GB of hashes, so this
 * allows any realistic piece size for large disks while bounding memory). */
#define METAINFO_MAX_FILE ((size_t)256 << 20)

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void metainfo_free(struct metainfo *mi)
{
    if (!mi)
        return;
    free(mi->name);
    free(mi->piece_hashes);
    for (size_t i = 0; i < mi->num_files; i++)
        free(mi->files[i].path);
    free(mi->files);
    for (size_t i = 0; i < mi->num_trackers; i++)
        free(mi->trackers[i]);
    free(mi->trackers);
    free(mi->comment);
    free(mi->created_by);
    free(mi);
}

/* A path component (or name) that is safe to use as one element of a file path. */
static int check_component(const struct bnode *n, const char *label, struct ds_err *e)
{
    if (!n || n->type != BN_STR)
        return ds_errf(e, "%s: path component is not a string", label);
    const uint8_t *p = n->u.s.p;
    size_t l = n->u.s.len;
    if (l == 0)
        return ds_errf(e, "%s: empty path component", label);
    if ((l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
        return ds_errf(e, "%s: path component '%.*s' is not allowed", label, (int)l, (const char *)p);
    if (memchr(p, '/', l))
        return ds_errf(e, "%s: path component contains '/'", label);
    if (memchr(p, '\0', l))
        return ds_errf(e, "%s: path component contains a NUL byte", label);
    return 0;
}

static int add_tracker(struct metainfo *mi, size_t *cap, const struct bnode *n, struct ds_err *e)
{
    if (!n || n->type != BN_STR)
        return ds_errf(e, "tracker URL is not a string");
    if (n->u.s.len == 0)
        return 0; /* some tools write empty announce strings: ignore */
    for (size_t i = 0; i < mi->num_trackers; i++)
        if (bstr_eq(n, mi->trackers[i]))
            return 0;
    char *s = bstr_dup(n);
    if (!s)
        return ds_errf(e, "tracker URL contains a NUL byte (or out of memory)");
    if (mi->num_trackers == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        char **t = realloc(mi->trackers, ncap * sizeof *t);
        if (!t) {
            free(s);
            return ds_errf(e, "out of memory");
        }
        mi->trackers = t;
        *cap = ncap;
    }
    mi->trackers[mi->num_trackers++] = s;
    return 0;
}

static int parse_trackers(struct metainfo *mi, const struct bnode *root, struct ds_err *e)
{
    size_t cap = 0;
    const struct bnode *ann = bdict_get(root, "announce");
    if (ann && add_tracker(mi, &cap, ann, e))
        return -1;
    const struct bnode *al = bdict_get(root, "announce-list");
    if (!al)
        return 0;
    if (al->type != BN_LIST)
        return ds_errf(e, "'announce-list' is not a list");
    for (size_t t = 0; t < al->u.l.n; t++) {
        const struct bnode *tier = al->u.l.items[t];
        if (tier->type != BN_LIST)
            return ds_errf(e, "'announce-list' tier %zu is not a list", t);
        for (size_t j = 0; j < tier->u.l.n; j++)
            if (add_tracker(mi, &cap, tier->u.l.items[j], e))
                return -1;
    }
    return 0;
}

static int parse_files(struct metainfo *mi, const struct bnode *files, struct ds_err *e)
{
    size_t n = files->u.l.n;
    if (n == 0)
        return ds_errf(e, "'info.files' is empty");
    mi->files = calloc(n, sizeof *mi->files);
    if (!mi->files)
        return ds_errf(e, "out of memory");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const struct bnode *f = files->u.l.items[i];
        if (f->type != BN_DICT)
            return ds_errf(e, "file %zu is not a dictionary", i);
        const struct bnode *len = bdict_get_int(f, "length");
        if (!len)
            return ds_errf(e, "file %zu has no integer 'length'", i);
        if (len->u.i < 0)
            return ds_errf(e, "file %zu has a negative length", i);
        const struct bnode *path = bdict_get_list(f, "path");
        if (!path)
            return ds_errf(e, "file %zu has no 'path' list", i);
        if (path->u.l.n == 0)
            return ds_errf(e, "file %zu has an empty path", i);
        size_t plen = 0;
        char label[48];
        snprintf(label, sizeof label, "file %zu", i);
        for (size_t j = 0; j < path->u.l.n; j++) {
            const struct bnode *c = path->u.l.items[j];
            if (check_component(c, label, e))
                return -1;
            plen += c->u.s.len + 1; /* components are slices of the input: no overflow */
        }
        char *p = malloc(plen);
        if (!p)
            return ds_errf(e, "out of memory");
        size_t k = 0, last = 0;
        for (size_t j = 0; j < path->u.l.n; j++) {
            const struct bnode *c = path->u.l.items[j];
            if (j)
                p[k++] = '/';
            last = k;
            memcpy(p + k, c->u.s.p, c->u.s.len);
            k += c->u.s.len;
        }
        p[k] = '\0';
        struct mi_file *mf = &mi->files[i];
        mf->path = p;
        mf->last = p + last;
        mi->num_files = i + 1;
        mf->length = (uint64_t)len->u.i;
        mf->offset = off;
        if (mf->length > UINT64_MAX - off)
            return ds_errf(e, "total length of the files overflows");
        off += mf->length;
        const struct bnode *attr = bdict_get_str(f, "attr");
        mf->is_pad = attr && attr->u.s.len && memchr(attr->u.s.p, 'p', attr->u.s.len) != NULL;
    }
    mi->total_length = off;
    return 0;
}

static int parse_info(struct metainfo *mi, const struct bnode *info, struct ds_err *e)
{
    const struct bnode *pieces = bdict_get(info, "pieces");
    if (!pieces) {
        const struct bnode *mv = bdict_get_int(info, "meta version");
        if ((mv && mv->u.i == 2) || bdict_get(info, "file tree"))
            return ds_errf(e, "v2-only torrents are not supported");
        return ds_errf(e, "'info' has no 'pieces'");
    }
    if (pieces->type != BN_STR)
        return ds_errf(e, "'info.pieces' is not a string");

    const struct bnode *name = bdict_get(info, "name");
    if (!name)
        return ds_errf(e, "'info' has no 'name'");
    if (name->type != BN_STR)
        return ds_errf(e, "'info.name' is not a string");
    if (check_component(name, "'info.name'", e))
        return -1;
    mi->name = bstr_dup(name);
    if (!mi->name)
        return ds_errf(e, "out of memory");

    const struct bnode *pl = bdict_get(info, "piece length");
    if (!pl || pl->type != BN_INT)
        return ds_errf(e, "'info' has no integer 'piece length'");
    if (pl->u.i <= 0)
        return ds_errf(e, "'info.piece length' must be positive");
    mi->piece_length = (uint64_t)pl->u.i;

    const struct bnode *files = bdict_get(info, "files");
    const struct bnode *length = bdict_get(info, "length");
    if (files && length)
        return ds_errf(e, "'info' has both 'length' and 'files'");
    if (files) {
        if (files->type != BN_LIST)
            return ds_errf(e, "'info.files' is not a list");
        mi->multi_file = true;
        if (parse_files(mi, files, e))
            return -1;
    } else if (length) {
        if (length->type != BN_INT)
            return ds_errf(e, "'info.length' is not an integer");
        if (length->u.i < 0)
            return ds_errf(e, "'info.length' is negative");
        mi->multi_file = false;
        mi->total_length = (uint64_t)length->u.i;
        mi->files = calloc(1, sizeof *mi->files);
        if (!mi->files || !(mi->files[0].path = xstrdup(mi->name)))
            return ds_errf(e, "out of memory");
        mi->num_files = 1;
        mi->files[0].last = mi->files[0].path;
        mi->files[0].length = mi->total_length;
        mi->files[0].offset = 0;
    } else {
        return ds_errf(e, "'info' has neither 'length' nor 'files'");
    }
    if (mi->total_length == 0)
        return ds_errf(e, "torrent has no data (total length 0)");

    if (pieces->u.s.len % SHA1_LEN)
        return ds_errf(e, "'info.pieces' length %zu is not a multiple of 20", pieces->u.s.len);
    uint64_t want = mi->total_length / mi->piece_length + (mi->total_length % mi->piece_length != 0);
    uint64_t have = pieces->u.s.len / SHA1_LEN;
    if (have != want)
        return ds_errf(e, "piece count mismatch: 'pieces' holds %" PRIu64 " hashes, %" PRIu64 " bytes at piece length %" PRIu64 " need %" PRIu64,
                       have, mi->total_length, mi->piece_length, want);
    if (want > UINT32_MAX)
        return ds_errf(e, "too many pieces (%" PRIu64 ")", want);
    mi->num_pieces = (uint32_t)want;
    mi->piece_hashes = malloc(pieces->u.s.len);
    if (!mi->piece_hashes)
        return ds_errf(e, "out of memory");
    memcpy(mi->piece_hashes, pieces->u.s.p, pieces->u.s.len);

    const struct bnode *priv = bdict_get_int(info, "private");
    mi->is_private = priv && priv->u.i == 1;
    return 0;
}

int metainfo_parse(const uint8_t *buf, size_t len, struct metainfo **out, struct ds_err *e)
{
    *out = NULL;
    struct bdoc doc;
    if (bdecode(buf, len, &doc, e))
        return -1;
    struct metainfo *mi = calloc(1, sizeof *mi);
    if (!mi) {
        bdoc_free(&doc);
        return ds_errf(e, "out of memory");
    }
    const struct bnode *root = doc.root;
    int rc = -1;
    if (root->type != BN_DICT) {
        ds_errf(e, "torrent is not a dictionary");
        goto done;
    }
    const struct bnode *info = bdict_get(root, "info");
    if (!info) {
        ds_errf(e, "torrent has no 'info' dictionary");
        goto done;
    }
    if (info->type != BN_DICT) {
        ds_errf(e, "'info' is not a dictionary");
        goto done;
    }
    if (sha1(info->raw, info->raw_len, mi->info_hash)) {
        ds_errf(e, "SHA-1 failed");
        goto done;
    }
    if (parse_info(mi, info, e) || parse_trackers(mi, root, e))
        goto done;
    /* Descriptive fields: used only for display, so a wrong type is ignored rather than fatal. */
    mi->comment = bstr_dup(bdict_get_str(root, "comment"));
    mi->created_by = bstr_dup(bdict_get_str(root, "created by"));
    const struct bnode *cd = bdict_get_int(root, "creation date");
    mi->creation_date = cd ? cd->u.i : 0;
    rc = 0;
done:
    bdoc_free(&doc);
    if (rc) {
        metainfo_free(mi);
        return -1;
    }
    *out = mi;
    return 0;
}

int metainfo_load_file(const char *path, struct metainfo **out, struct ds_err *e)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_errno(e, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st)) {
        int r = ds_errno(e, "cannot stat '%s'", path);
        close(fd);
        return r;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return ds_errf(e, "'%s' is a directory", path);
    }
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < METAINFO_MAX_FILE
                     ? (size_t)st.st_size + 1
                     : 65536;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return ds_errf(e, "out of memory");
    }
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= METAINFO_MAX_FILE) {
                free(buf);
                close(fd);
                return ds_errf(e, "'%s' is too large for a torrent (over %zu MiB)", path, METAINFO_MAX_FILE >> 20);
            }
            size_t ncap = cap * 2 > METAINFO_MAX_FILE ? METAINFO_MAX_FILE : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                close(fd);
                return ds_errf(e, "out of memory");
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int rr = ds_errno(e, "cannot read '%s'", path);
            free(buf);
            close(fd);
            return rr;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len == 0) {
        free(buf);
        return ds_errf(e, "'%s' is empty", path);
    }
    struct ds_err e2;
    int rc = metainfo_parse(buf, len, out, &e2);
    free(buf);
    if (rc)
        return ds_errf(e, "%s: %s", path, e2.msg);
    return 0;
}

uint64_t metainfo_piece_size(const struct metainfo *mi, uint32_t i)
{
    if (i >= mi->num_pieces)
        return 0;
    uint64_t start = (uint64_t)i * mi->piece_length;
    uint64_t rest = mi->total_length - start;
    return rest < mi->piece_length ? rest : mi->piece_length;
}

/* ---------- build ---------- */

static int build_body(const char *name, const struct extent *ext, size_t n_ext, uint64_t piece_length,
                      const uint8_t *hashes, uint64_t n_pieces, const char *const *trackers, size_t n_trackers,
                      const char *created_by, bool is_private, struct buf *out)
{
    char hex[33];
    char padname[32];
    if (benc_dict_begin(out))
        return -1;
    if (n_trackers > 0) {
        if (benc_cstr(out, "announce") || benc_cstr(out, trackers[0]) || benc_cstr(out, "announce-list") ||
            benc_list_begin(out))
            return -1;
        for (size_t i = 0; i < n_trackers; i++)
            if (benc_list_begin(out) || benc_cstr(out, trackers[i]) || benc_end(out))
                return -1;
        if (benc_end(out))
            return -1;
    }
    if (created_by && (benc_cstr(out, "created by") || benc_cstr(out, created_by)))
        return -1;
    if (benc_cstr(out, "info") || benc_dict_begin(out) || benc_cstr(out, "files") || benc_list_begin(out))
        return -1;
    for (size_t i = 0; i < n_ext; i++) {
        if (benc_dict_begin(out))
            return -1;
        if (ext[i].pad && (benc_cstr(out, "attr") || benc_cstr(out, "p")))
            return -1;
        if (benc_cstr(out, "length") || benc_int(out, (int64_t)ext[i].len) || benc_cstr(out, "path") ||
            benc_list_begin(out))
            return -1;
        if (ext[i].pad) {
            snprintf(padname, sizeof padname, "%" PRIu64, ext[i].len);
            if (benc_cstr(out, ".pad") || benc_cstr(out, padname))
                return -1;
        } else {
            snprintf(hex, sizeof hex, "%016" PRIx64 "%016" PRIx64, (uint64_t)0, ext[i].dev_off);
            if (benc_cstr(out, hex))
                return -1;
        }
        if (benc_end(out) || benc_end(out))
            return -1;
    }
    if (benc_end(out))
        return -1;
    if (benc_cstr(out, "name") || benc_cstr(out, name) || benc_cstr(out, "piece length") ||
        benc_int(out, (int64_t)piece_length) || benc_cstr(out, "pieces") ||
        benc_str(out, hashes, (size_t)n_pieces * SHA1_LEN))
        return -1;
    if (is_private && (benc_cstr(out, "private") || benc_int(out, 1)))
        return -1;
    if (benc_end(out) || benc_end(out))
        return -1;
    return 0;
}

int metainfo_build_ezio(const char *name, const struct extent *ext, size_t n_ext, uint64_t piece_length,
                        const uint8_t *hashes, const char *const *trackers, size_t n_trackers,
                        const char *created_by, bool is_private, struct buf *out, struct ds_err *e)
{
    if (!name || !*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
        return ds_errf(e, "torrent name '%s' is not a safe file name", name ? name : "");
    if (piece_length == 0 || piece_length > INT64_MAX)
        return ds_errf(e, "invalid piece length %" PRIu64, piece_length);
    if (n_trackers && !trackers)
        return ds_errf(e, "tracker list missing");
    for (size_t i = 0; i < n_trackers; i++)
        if (!trackers[i] || !*trackers[i])
            return ds_errf(e, "tracker %zu is empty", i);
    /* Validates lengths, overflow and device overlap the same way a loader will. */
    struct extent_map m;
    if (extent_map_from_list(ext, n_ext, &m, e))
        return -1;
    uint64_t total = m.total;
    extent_map_free(&m);
    for (size_t i = 0; i < n_ext; i++)
        if (ext[i].len > INT64_MAX)
            return ds_errf(e, "extent %zu is too long", i);
    if (total > INT64_MAX)
        return ds_errf(e, "total length too large");
    uint64_t n_pieces = total / piece_length + (total % piece_length != 0);
    if (n_pieces > UINT32_MAX || n_pieces > SIZE_MAX / SHA1_LEN)
        return ds_errf(e, "too many pieces (%" PRIu64 ")", n_pieces);
    if (!hashes)
        return ds_errf(e, "piece hashes missing");
    size_t start = out->len;
    if (build_body(name, ext, n_ext, piece_length, hashes, n_pieces, trackers, n_trackers, created_by, is_private,
                   out)) {
        out->len = start;
        return ds_errf(e, "out of memory");
    }
    return 0;
}

/* Small pieces make a swarm start and finish sooner: a piece can be passed on only once it is whole, so the
 * ramp at the start and the tail at the end each last about N piece-times (bench/cluster.sh, 139 MiB image:
 * 256 KiB beat 1 MiB at every N >= 4; 128 KiB beat 256 KiB at N = 8, 1.066-1.082x the limit against
 * 1.073-1.110x, and at N = 16). Their cost grows with the count (20 bytes of hash each in the torrent,
 * bitfields, HAVE messages and requests: more CPU per byte), so large images get larger pieces, keeping the
 * ramp and the tail a negligible share of the run (N / METAINFO_AUTO_MAX_PIECES of it). */
uint64_t metainfo_auto_piece_length(uint64_t total)
{
    uint64_t p = METAINFO_AUTO_PIECE_MIN;
    while (p < ((uint64_t)1 << 30) && total / p >= METAINFO_AUTO_MAX_PIECES)
        p <<= 1;
    return p;
}
