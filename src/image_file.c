/* image_file.c — the .dsimg image format: writer, validating reader with a small LRU of decompressed pieces,
 * the parallel hash+compress pipeline used by capture and import, and the seeding source selection. */
#include "image_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "extent_map.h"
#include "manifest.h"
#include "metainfo.h"
#include "partclone.h"

static const char IMG_MAGIC[8] = {'D', 'S', 'I', 'M', 'A', 'G', 'E', 0};
#define IMG_VERSION 1u

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint32_t crc32_of(const void *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *b = p;
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off, const char *what, struct ds_err *e)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ds_errno(e, "%s: read at offset %" PRIu64, what, off);
        if (n == 0)
            return ds_errf(e, "%s: unexpected end of file at offset %" PRIu64, what, off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off, const char *what, struct ds_err *e)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? ds_errno(e, "%s: write at offset %" PRIu64, what, off)
                         : ds_errf(e, "%s: no bytes written at offset %" PRIu64, what, off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static uint64_t piece_size_of(uint64_t pl, uint64_t total, uint32_t i)
{
    uint64_t off = (uint64_t)i * pl;
    return total - off < pl ? total - off : pl;
}

/* ---------------------------------------------------------------------------------------------------------
 * writer */

struct image_writer {
    int fd;
    char *path, *tmp;
    uint64_t piece_length, total, off, stored;
    uint32_t n_pieces, next;
    unsigned comp;
    uint8_t *index;
};

int image_writer_open(struct image_writer **out, const char *path, uint64_t piece_length, uint64_t total_length,
                      unsigned compression, struct ds_err *e)
{
    *out = NULL;
    if (piece_length == 0 || piece_length > IMAGE_MAX_PIECE || total_length == 0)
        return ds_errf(e, "%s: bad piece length or total length", path);
    uint64_t n = total_length / piece_length + (total_length % piece_length != 0);
    if (n > UINT32_MAX)
        return ds_errf(e, "%s: too many pieces", path);
    if (compression > IMAGE_COMP_ZSTD)
        return ds_errf(e, "%s: unknown compression %u", path, compression);
    struct image_writer *w = calloc(1, sizeof *w);
    size_t pl = strlen(path);
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(pl + 16)) ||
        !(w->index = calloc((size_t)n, IMAGE_INDEX_ENTRY))) {
        image_writer_abort(w);
        return ds_errf(e, "out of memory");
    }
    w->fd = -1;
    snprintf(w->tmp, pl + 16, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        ds_errno(e, "cannot create '%s'", w->tmp);
        free(w->tmp);
        w->tmp = NULL;
        image_writer_abort(w);
        return -1;
    }
    w->piece_length = piece_length;
    w->total = total_length;
    w->n_pieces = (uint32_t)n;
    w->comp = compression;
    w->off = IMAGE_HEADER_SIZE;
    *out = w;
    return 0;
}

int image_writer_append(struct image_writer *w, uint32_t piece, const void *stored, size_t len, bool is_zstd,
                        struct ds_err *e)
{
    if (piece != w->next || piece >= w->n_pieces)
        return ds_errf(e, "image: piece %u appended out of order (expected %u)", piece, w->next);
    uint64_t ps = piece_size_of(w->piece_length, w->total, piece);
    if (len == 0 || (!is_zstd && len != ps) || (is_zstd && (w->comp != IMAGE_COMP_ZSTD || len > ZSTD_compressBound(ps))))
        return ds_errf(e, "image: piece %u: bad stored length %zu", piece, len);
    if (pwrite_all(w->fd, stored, len, w->off, w->tmp, e))
        return -1;
    uint8_t *x = w->index + (size_t)piece * IMAGE_INDEX_ENTRY;
    put64(x, w->off);
    put32(x + 8, (uint32_t)len);
    put32(x + 12, is_zstd ? IMAGE_FLAG_ZSTD : 0);
    w->off += len;
    w->stored += len;
    w->next++;
    return 0;
}

int image_writer_finish(struct image_writer *w, const uint8_t info_hash[SHA1_LEN], uint64_t *bytes,
                        struct ds_err *e)
{
    int rc = -1;
    if (w->next != w->n_pieces) {
        ds_errf(e, "image: only %u of %u pieces written", w->next, w->n_pieces);
        goto out;
    }
    size_t ilen = (size_t)w->n_pieces * IMAGE_INDEX_ENTRY;
    if (pwrite_all(w->fd, w->index, ilen, w->off, w->tmp, e))
        goto out;
    uint8_t h[IMAGE_HEADER_SIZE];
    memset(h, 0, sizeof h);
    memcpy(h, IMG_MAGIC, 8);
    put32(h + 8, IMG_VERSION);
    put32(h + 12, w->comp);
    put64(h + 16, w->piece_length);
    put32(h + 24, w->n_pieces);
    put64(h + 32, w->total);
    memcpy(h + 40, info_hash, SHA1_LEN);
    put64(h + 64, w->off);
    put32(h + 72, crc32_of(w->index, ilen));
    /* header CRC covers [0, 76) and is stored at 76 */
    put32(h + 76, crc32_of(h, 76));
    if (pwrite_all(w->fd, h, sizeof h, 0, w->tmp, e))
        goto out;
    if (fchmod(w->fd, 0644) || fsync(w->fd)) {
        ds_errno(e, "cannot finish '%s'", w->tmp);
        goto out;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd)) {
        ds_errno(e, "cannot close '%s'", w->tmp);
        goto out;
    }
    if (rename(w->tmp, w->path)) {
        ds_errno(e, "cannot rename '%s' to '%s'", w->tmp, w->path);
        goto out;
    }
    free(w->tmp);
    w->tmp = NULL;
    if (bytes)
        *bytes = w->off + ilen;
    rc = 0;
out:
    image_writer_abort(w);
    return rc;
}

void image_writer_abort(struct image_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w->index);
    free(w);
}

size_t image_compress_bound(size_t len) { return ZSTD_compressBound(len); }

size_t image_compress_piece(void *cctx, int level, const void *src, size_t len, void *dst, size_t cap,
                            bool *is_zstd)
{
    ZSTD_CCtx *c = cctx ? cctx : ZSTD_createCCtx();
    size_t r = c ? ZSTD_compressCCtx(c, dst, cap, src, len, level) : 0;
    if (!cctx)
        ZSTD_freeCCtx(c);
    if (c && !ZSTD_isError(r) && r < len) {
        *is_zstd = true;
        return r;
    }
    if (cap < len)
        return 0;
    memcpy(dst, src, len);
    *is_zstd = false;
    return len;
}

/* ---------------------------------------------------------------------------------------------------------
 * reader */

struct cache_slot {
    int64_t piece;     /* -1: empty */
    unsigned refs;
    bool loading;
    uint64_t stamp;
    uint8_t *buf;
};

struct image_file {
    int fd;
    char *path;
    struct image_info info;
    uint64_t *off;
    uint32_t *len;
    uint8_t *zstd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct cache_slot *slots;
    unsigned n_slots;
    uint64_t clock;
};

static int parse_header(const uint8_t *h, const char *path, struct image_info *in, uint64_t *index_off,
                        uint32_t *index_crc, struct ds_err *e)
{
    memset(in, 0, sizeof *in);
    if (memcmp(h, IMG_MAGIC, 8))
        return ds_errf(e, "%s: not a diskswarm image (bad magic)", path);
    if (get32(h + 76) != crc32_of(h, 76))
        return ds_errf(e, "%s: image header checksum mismatch (damaged header)", path);
    in->version = get32(h + 8);
    if (in->version != IMG_VERSION)
        return ds_errf(e, "%s: image version %u is not supported", path, in->version);
    in->compression = get32(h + 12);
    if (in->compression > IMAGE_COMP_ZSTD)
        return ds_errf(e, "%s: unknown compression %u", path, in->compression);
    in->piece_length = get64(h + 16);
    in->piece_count = get32(h + 24);
    in->total_length = get64(h + 32);
    if (in->piece_length == 0 || in->piece_length > IMAGE_MAX_PIECE || in->total_length == 0 ||
        get32(h + 28) != 0 || get32(h + 60) != 0)
        return ds_errf(e, "%s: bad piece or total length in the image header", path);
    uint64_t n = in->total_length / in->piece_length + (in->total_length % in->piece_length != 0);
    if (n != in->piece_count)
        return ds_errf(e, "%s: piece count %u does not match %" PRIu64 " bytes in pieces of %" PRIu64, path,
                       in->piece_count, in->total_length, in->piece_length);
    memcpy(in->info_hash, h + 40, SHA1_LEN);
    *index_off = get64(h + 64);
    *index_crc = get32(h + 72);
    for (size_t i = 80; i < IMAGE_HEADER_SIZE; i++)
        if (h[i])
            return ds_errf(e, "%s: non-zero bytes in the reserved header area", path);
    return 0;
}

int image_file_peek(const char *path, struct image_info *info, struct ds_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_errno(e, "cannot open '%s'", path);
    uint8_t h[IMAGE_HEADER_SIZE];
    size_t got = 0;
    while (got < sizeof h) {
        ssize_t r = pread(fd, h + got, sizeof h - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ds_errno(e, "cannot read '%s'", path);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got < 8 || memcmp(h, IMG_MAGIC, 8))
        return 0;
    if (got < sizeof h)
        return ds_errf(e, "%s: truncated image header", path);
    uint64_t io;
    uint32_t ic;
    return parse_header(h, path, info, &io, &ic, e) ? -1 : 1;
}

void image_file_close(struct image_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (unsigned i = 0; f->slots && i < f->n_slots; i++)
        free(f->slots[i].buf);
    free(f->slots);
    free(f->off);
    free(f->len);
    free(f->zstd);
    free(f->path);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
}

int image_file_open(struct image_file **out, const char *path, unsigned cache_pieces, struct ds_err *e)
{
    *out = NULL;
    struct image_file *f = calloc(1, sizeof *f);
    if (!f)
        return ds_errf(e, "out of memory");
    f->fd = -1;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    uint8_t *raw = NULL;
    if (!(f->path = strdup(path))) {
        ds_errf(e, "out of memory");
        goto fail;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st)) {
        ds_errno(e, "cannot open '%s'", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < IMAGE_HEADER_SIZE) {
        ds_errf(e, "%s: too short for a diskswarm image", path);
        goto fail;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    uint8_t h[IMAGE_HEADER_SIZE];
    uint64_t ioff;
    uint32_t icrc;
    if (pread_all(f->fd, h, sizeof h, 0, path, e) || parse_header(h, path, &f->info, &ioff, &icrc, e))
        goto fail;
    uint32_t n = f->info.piece_count;
    uint64_t ilen = (uint64_t)n * IMAGE_INDEX_ENTRY;
    if (ioff < IMAGE_HEADER_SIZE || ioff > fsize || fsize - ioff != ilen) {
        ds_errf(e, "%s: the piece index (%u entries at offset %" PRIu64 ") does not end the file (%" PRIu64
                " bytes): truncated or damaged",
                path, n, ioff, fsize);
        goto fail;
    }
    f->info.file_size = fsize;
    raw = malloc((size_t)ilen);
    f->off = malloc((size_t)n * sizeof *f->off);
    f->len = malloc((size_t)n * sizeof *f->len);
    f->zstd = malloc(n);
    if (!raw || !f->off || !f->len || !f->zstd) {
        ds_errf(e, "out of memory");
        goto fail;
    }
    if (pread_all(f->fd, raw, (size_t)ilen, ioff, path, e))
        goto fail;
    if (crc32_of(raw, (size_t)ilen) != icrc) {
        ds_errf(e, "%s: piece index checksum mismatch (damaged index)", path);
        goto fail;
    }
    uint64_t prev_end = IMAGE_HEADER_SIZE;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *x = raw + (size_t)i * IMAGE_INDEX_ENTRY;
        uint64_t o = get64(x), ps = piece_size_of(f->info.piece_length, f->info.total_length, i);
        uint32_t l = get32(x + 8), fl = get32(x + 12);
        bool z = fl == IMAGE_FLAG_ZSTD;
        if (fl > IMAGE_FLAG_ZSTD || (z && f->info.compression != IMAGE_COMP_ZSTD) || l == 0 ||
            (!z && l != ps) || (z && l > ZSTD_compressBound(ps)) || o < prev_end || o > ioff || l > ioff - o) {
            ds_errf(e, "%s: piece %u: bad index entry (offset %" PRIu64 ", length %u, flags %u)", path, i, o, l, fl);
            goto fail;
        }
        f->off[i] = o;
        f->len[i] = l;
        f->zstd[i] = z;
        prev_end = o + l;
        f->info.stored_bytes += l;
        f->info.zstd_pieces += z;
    }
    free(raw);
    raw = NULL;
    f->n_slots = cache_pieces ? cache_pieces : IMAGE_DEFAULT_CACHE;
    if (!(f->slots = calloc(f->n_slots, sizeof *f->slots))) {
        ds_errf(e, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < f->n_slots; i++)
        f->slots[i].piece = -1;
    *out = f;
    return 0;
fail:
    free(raw);
    image_file_close(f);
    return -1;
}

const struct image_info *image_file_info(const struct image_file *f) { return &f->info; }

/* Read piece p's stored bytes and decompress them into dst (piece size bytes). */
static int load_piece(struct image_file *f, uint32_t p, uint8_t *dst, struct ds_err *e)
{
    uint64_t ps = piece_size_of(f->info.piece_length, f->info.total_length, p);
    uint8_t *src = malloc(f->len[p]);
    if (!src)
        return ds_errf(e, "out of memory");
    int rc = pread_all(f->fd, src, f->len[p], f->off[p], f->path, e);
    if (rc == 0) {
        unsigned long long cs = ZSTD_getFrameContentSize(src, f->len[p]);
        size_t fs = ZSTD_findFrameCompressedSize(src, f->len[p]);
        if (cs != ps || ZSTD_isError(fs) || fs != f->len[p]) {
            rc = ds_errf(e, "%s: piece %u: not a single zstd frame of %" PRIu64 " bytes", f->path, p, ps);
        } else {
            size_t r = ZSTD_decompress(dst, (size_t)ps, src, f->len[p]);
            if (ZSTD_isError(r) || r != ps)
                rc = ds_errf(e, "%s: piece %u: zstd: %s", f->path, p,
                             ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output");
        }
    }
    free(src);
    return rc;
}

/* Copy n bytes at offset in of zstd piece p through the cache. */
static int read_zstd(struct image_file *f, uint32_t p, uint64_t in, uint8_t *out, size_t n, struct ds_err *e)
{
    pthread_mutex_lock(&f->lock);
    for (;;) {
        struct cache_slot *hit = NULL, *victim = NULL;
        bool busy = false;
        for (unsigned i = 0; i < f->n_slots; i++) {
            struct cache_slot *s = &f->slots[i];
            if (s->piece == (int64_t)p) {
                if (s->loading)
                    busy = true;
                else
                    hit = s;
                break;
            }
        }
        if (busy) {
            pthread_cond_wait(&f->cond, &f->lock);
            continue;
        }
        if (hit) {
            hit->refs++;
            hit->stamp = ++f->clock;
            pthread_mutex_unlock(&f->lock);
            memcpy(out, hit->buf + in, n);
            pthread_mutex_lock(&f->lock);
            hit->refs--;
            pthread_mutex_unlock(&f->lock);
            return 0;
        }
        for (unsigned i = 0; i < f->n_slots; i++) {
            struct cache_slot *s = &f->slots[i];
            if (s->refs == 0 && (!victim || s->stamp < victim->stamp))
                victim = s;
        }
        if (!victim) {
            /* every slot in use by other readers: decompress into a temporary buffer */
            pthread_mutex_unlock(&f->lock);
            uint8_t *tmp = malloc((size_t)piece_size_of(f->info.piece_length, f->info.total_length, p));
            if (!tmp)
                return ds_errf(e, "out of memory");
            int rc = load_piece(f, p, tmp, e);
            if (rc == 0)
                memcpy(out, tmp + in, n);
            free(tmp);
            return rc;
        }
        if (!victim->buf && !(victim->buf = malloc((size_t)f->info.piece_length))) {
            pthread_mutex_unlock(&f->lock);
            return ds_errf(e, "out of memory");
        }
        victim->piece = p;
        victim->loading = true;
        victim->refs = 1;
        victim->stamp = ++f->clock;
        pthread_mutex_unlock(&f->lock);
        int rc = load_piece(f, p, victim->buf, e);
        if (rc == 0)
            memcpy(out, victim->buf + in, n);
        pthread_mutex_lock(&f->lock);
        victim->loading = false;
        victim->refs = 0;
        if (rc)
            victim->piece = -1;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        return rc;
    }
}

int image_file_read(struct image_file *f, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    const struct image_info *in = &f->info;
    if (off > in->total_length || len > in->total_length - off)
        return ds_errf(e, "%s: range %" PRIu64 "+%zu lies outside the image", f->path, off, len);
    uint8_t *out = buf;
    while (len > 0) {
        uint32_t p = (uint32_t)(off / in->piece_length);
        uint64_t pin = off - (uint64_t)p * in->piece_length;
        uint64_t ps = piece_size_of(in->piece_length, in->total_length, p);
        size_t n = ps - pin < len ? (size_t)(ps - pin) : len;
        int rc = f->zstd[p] ? read_zstd(f, p, pin, out, n, e) : pread_all(f->fd, out, n, f->off[p] + pin, f->path, e);
        if (rc)
            return rc;
        out += n;
        off += n;
        len -= n;
    }
    return 0;
}

int image_file_read_compressed(struct image_file *f, uint32_t piece, uint8_t **bytes, size_t *len, bool *is_zstd,
                               struct ds_err *e)
{
    *bytes = NULL;
    if (piece >= f->info.piece_count)
        return ds_errf(e, "%s: piece %u out of range", f->path, piece);
    uint8_t *b = malloc(f->len[piece]);
    if (!b)
        return ds_errf(e, "out of memory");
    if (pread_all(f->fd, b, f->len[piece], f->off[piece], f->path, e)) {
        free(b);
        return -1;
    }
    *bytes = b;
    *len = f->len[piece];
    *is_zstd = f->zstd[piece];
    return 0;
}

static int backend_read(void *ctx, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    return image_file_read(ctx, off, buf, len, e);
}

static void backend_close(void *ctx) { image_file_close(ctx); }

static int backend_read_zframe(void *ctx, uint32_t piece, uint8_t **bytes, size_t *len, bool *is_zstd,
                               struct ds_err *e)
{
    return image_file_read_compressed(ctx, piece, bytes, len, is_zstd, e);
}

void image_file_backend(struct image_file *f, struct store_backend *b)
{
    b->read = backend_read;
    b->close = backend_close;
    b->read_zframe = backend_read_zframe;
    b->ctx = f;
    b->what = f->path;
}

/* ---------------------------------------------------------------------------------------------------------
 * parallel build */

struct bslot {
    uint8_t *buf;
    size_t len;
    bool zstd, ready;
};

struct bjob {
    struct image_build *b;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint32_t next_claim, next_fill, written;
    unsigned W;
    struct bslot *slots;
    bool writing, failed;
    struct ds_err err;
    unsigned running;
    atomic_uint_fast64_t bytes_done, sha_ns, zstd_ns, stored;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* under lock */
static void bjob_fail(struct bjob *j, const struct ds_err *e)
{
    if (!j->failed) {
        j->failed = true;
        j->err = *e;
    }
    pthread_cond_broadcast(&j->cond);
}

/* under lock: append every ready piece in order (one drainer at a time; others leave their piece ready) */
static void bjob_drain(struct bjob *j)
{
    if (j->writing)
        return;
    j->writing = true;
    while (!j->failed && j->written < j->b->n_pieces && j->slots[j->written % j->W].ready) {
        struct bslot *s = &j->slots[j->written % j->W];
        uint32_t p = j->written;
        pthread_mutex_unlock(&j->lock);
        struct ds_err e;
        int rc = image_writer_append(j->b->w, p, s->buf, s->len, s->zstd, &e);
        pthread_mutex_lock(&j->lock);
        if (rc) {
            bjob_fail(j, &e);
            break;
        }
        atomic_fetch_add(&j->stored, s->len);
        s->ready = false;
        j->written++;
        pthread_cond_broadcast(&j->cond);
    }
    j->writing = false;
}

static void *bworker(void *arg)
{
    struct bjob *j = arg;
    struct image_build *b = j->b;
    struct ds_err e;
    uint8_t *buf = malloc((size_t)b->piece_length);
    ZSTD_CCtx *cctx = b->w && b->zstd_level > 0 ? ZSTD_createCCtx() : NULL;
    pthread_mutex_lock(&j->lock);
    if (!buf || (b->w && b->zstd_level > 0 && !cctx)) {
        ds_errf(&e, "out of memory");
        bjob_fail(j, &e);
    }
    for (;;) {
        if (j->failed || j->next_claim >= b->n_pieces)
            break;
        uint32_t pi = j->next_claim++;
        while (!j->failed && b->w && pi >= j->written + j->W)
            pthread_cond_wait(&j->cond, &j->lock);
        while (!j->failed && b->fill_in_order && j->next_fill != pi)
            pthread_cond_wait(&j->cond, &j->lock);
        if (j->failed)
            break;
        pthread_mutex_unlock(&j->lock);
        uint64_t off = (uint64_t)pi * b->piece_length;
        size_t len = (size_t)piece_size_of(b->piece_length, b->total_length, pi);
        int rc = b->fill(b->fill_ctx, pi, off, buf, len, &e);
        if (b->fill_in_order) {
            pthread_mutex_lock(&j->lock);
            j->next_fill++;
            pthread_cond_broadcast(&j->cond);
            pthread_mutex_unlock(&j->lock);
        }
        uint64_t t0 = mono_ns();
        if (rc == 0 && sha1(buf, len, b->hashes + (size_t)pi * SHA1_LEN))
            rc = ds_errf(&e, "SHA-1 failed");
        uint64_t t1 = mono_ns();
        atomic_fetch_add(&j->sha_ns, t1 - t0);
        if (rc == 0 && b->w) {
            struct bslot *s = &j->slots[pi % j->W];   /* ours alone until marked ready */
            size_t cap = image_compress_bound((size_t)b->piece_length);
            if (cctx) {
                s->len = image_compress_piece(cctx, b->zstd_level, buf, len, s->buf, cap, &s->zstd);
                if (s->len == 0)
                    rc = ds_errf(&e, "zstd compression failed on piece %u", pi);
            } else {
                memcpy(s->buf, buf, len);
                s->len = len;
                s->zstd = false;
            }
            atomic_fetch_add(&j->zstd_ns, mono_ns() - t1);
        }
        atomic_fetch_add(&j->bytes_done, len);
        pthread_mutex_lock(&j->lock);
        if (rc) {
            bjob_fail(j, &e);
            break;
        }
        if (b->w) {
            j->slots[pi % j->W].ready = true;
            bjob_drain(j);
        }
    }
    j->running--;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
    ZSTD_freeCCtx(cctx);
    free(buf);
    return NULL;
}

#define BUILD_MAX_THREADS 64

int image_build_run(struct image_build *b, struct ds_err *e)
{
    struct bjob j;
    memset(&j, 0, sizeof j);
    j.b = b;
    unsigned nt = b->threads;
    if (nt == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nt = n > 0 ? (unsigned)n : 1;
    }
    if (nt > BUILD_MAX_THREADS)
        nt = BUILD_MAX_THREADS;
    if (nt > b->n_pieces)
        nt = b->n_pieces ? b->n_pieces : 1;
    if (b->piece_length == 0 || b->piece_length > IMAGE_MAX_PIECE)
        return ds_errf(e, "bad piece length");
    if (b->w) {
        j.W = nt + 4;
        if (!(j.slots = calloc(j.W, sizeof *j.slots)))
            return ds_errf(e, "out of memory");
        for (unsigned i = 0; i < j.W; i++)
            if (!(j.slots[i].buf = malloc(image_compress_bound((size_t)b->piece_length)))) {
                for (unsigned k = 0; k < i; k++)
                    free(j.slots[k].buf);
                free(j.slots);
                return ds_errf(e, "out of memory");
            }
    }
    pthread_mutex_init(&j.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j.cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t th[BUILD_MAX_THREADS];
    unsigned started = 0;
    pthread_mutex_lock(&j.lock);
    for (; started < nt; started++) {
        j.running++;
        if (pthread_create(&th[started], NULL, bworker, &j)) {
            j.running--;
            break;
        }
    }
    int rc = 0;
    if (started == 0) {
        pthread_mutex_unlock(&j.lock);
        rc = ds_errf(e, "cannot start a worker thread");
        goto out;
    }
    while (j.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j.cond, &j.lock, &ts);
        if (j.running > 0 && b->progress) {
            pthread_mutex_unlock(&j.lock);
            b->progress(b->progress_ctx, atomic_load(&j.bytes_done), false);
            pthread_mutex_lock(&j.lock);
        }
    }
    pthread_mutex_unlock(&j.lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (j.failed) {
        *e = j.err;
        rc = -1;
    } else if (b->w && j.written != b->n_pieces) {
        rc = ds_errf(e, "internal error: %u of %u pieces stored", j.written, b->n_pieces);
    } else if (b->progress) {
        b->progress(b->progress_ctx, atomic_load(&j.bytes_done), true);
    }
out:
    b->stored_bytes = atomic_load(&j.stored);
    b->sha_ns = atomic_load(&j.sha_ns);
    b->zstd_ns = atomic_load(&j.zstd_ns);
    b->threads_used = started;
    pthread_mutex_destroy(&j.lock);
    pthread_cond_destroy(&j.cond);
    for (unsigned i = 0; j.slots && i < j.W; i++)
        free(j.slots[i].buf);
    free(j.slots);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * seeding source selection */

static int check_against(const struct image_info *in, const struct metainfo *mi, const char *path, struct ds_err *e)
{
    if (memcmp(in->info_hash, mi->info_hash, SHA1_LEN))
        return ds_errf(e, "%s was made for another torrent (info-hash differs)", path);
    if (in->piece_length != mi->piece_length || in->total_length != mi->total_length)
        return ds_errf(e, "%s: piece length or size differs from the torrent's", path);
    return 0;
}

static int open_dsimg(struct store *s, const char *path, const struct metainfo *mi, const struct extent_map *map,
                      struct ds_err *e)
{
    struct image_file *f;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* one cached piece per hashing thread of seed --verify, at least the default, at most 16 */
    unsigned cache = ncpu < (long)IMAGE_DEFAULT_CACHE ? IMAGE_DEFAULT_CACHE : ncpu > 16 ? 16u : (unsigned)ncpu;
    if (image_file_open(&f, path, cache, e))
        return -1;
    if (check_against(image_file_info(f), mi, path, e)) {
        image_file_close(f);
        return -1;
    }
    struct store_backend b;
    image_file_backend(f, &b);
    return store_open_backend(s, mi, map, &b, e) ? -1 : 1;
}

static int open_partclone(struct store *s, const char *path, const struct metainfo *mi,
                          const struct extent_map *map, struct ds_err *e)
{
    struct store_backend b = {0};
    if (pc_inplace_backend(path, map, &b, e))
        return -1;
    return store_open_backend(s, mi, map, &b, e) ? -1 : 1;
}

int image_source_open(struct store *s, const char *path, const struct metainfo *mi, const struct extent_map *map,
                      struct ds_err *e)
{
    struct stat st;
    if (stat(path, &st))
        return 0;   /* store_open reports it */
    if (S_ISREG(st.st_mode)) {
        struct image_info in;
        int r = image_file_peek(path, &in, e);
        if (r < 0)
            return -1;
        if (r == 1)
            return open_dsimg(s, path, mi, map, e);
        r = pc_probe_file(path, e);
        if (r < 0)
            return -1;
        if (r == 1)
            return open_partclone(s, path, mi, map, e);
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return ds_errno(e, "cannot read directory '%s'", path);
    struct dirent *de;
    char full[4096];
    int found = 0;
    while (!found && (de = readdir(d))) {
        size_t l = strlen(de->d_name), el = strlen(IMAGE_EXT);
        if (l <= el || strcmp(de->d_name + l - el, IMAGE_EXT))
            continue;
        snprintf(full, sizeof full, "%s/%s", path, de->d_name);
        struct image_info in;
        struct ds_err pe;
        if (image_file_peek(full, &in, &pe) == 1 && !memcmp(in.info_hash, mi->info_hash, SHA1_LEN))
            found = 1;
    }
    closedir(d);
    if (found)
        return open_dsimg(s, full, mi, map, e);
    /* an import that left the partclone image in place */
    struct manifest m;
    struct ds_err me;
    char hex[2 * SHA1_LEN + 1];
    hex_encode(mi->info_hash, SHA1_LEN, hex);
    if (manifest_read(path, &m, &me) == 0) {
        for (size_t i = 0; i < m.n_torrents && !found; i++)
            if (!strcmp(m.torrents[i].info_hash, hex) && m.torrents[i].seed_in_place[0]) {
                const char *p = m.torrents[i].seed_in_place;
                if (p[0] == '/')
                    snprintf(full, sizeof full, "%s", p);
                else
                    snprintf(full, sizeof full, "%s/%s", path, p);
                found = 1;
            }
        manifest_free(&m);
    }
    if (found)
        return open_partclone(s, full, mi, map, e);
    return ds_errf(e, "%s: no %s image in this directory belongs to the torrent (info-hash %s)", path, IMAGE_EXT,
                   hex);
}
