/* zpiece.c — see zpiece.h. */
#include "zpiece.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

/* ---------- codec ---------- */

int zp_parse(const uint8_t *d, size_t n, struct zp_msg *m)
{
    memset(m, 0, sizeof *m);
    if (n < 5)
        return -1;
    m->type = d[0];
    m->piece = get_be32(d + 1);
    switch (m->type) {
    case ZP_REQ:
    case ZP_PLAIN:
    case ZP_REJECT:
    case ZP_CANCEL:
        return n == 5 ? 0 : -1;
    case ZP_DATA:
        if (n < 9 + 1)
            return -1;
        m->raw_len = get_be32(d + 5);
        m->frame = d + 9;
        m->frame_len = n - 9;
        return 0;
    default:
        return -1;
    }
}

static int put_head(struct buf *b, uint8_t ext_id, size_t payload)
{
    if (payload > UINT32_MAX - 2)
        return -1;
    return buf_put_be32(b, (uint32_t)(2 + payload)) || buf_put_u8(b, 20) || buf_put_u8(b, ext_id) ? -1 : 0;
}

int zp_put_simple(struct buf *b, uint8_t ext_id, enum zp_type t, uint32_t piece)
{
    return put_head(b, ext_id, 5) || buf_put_u8(b, (uint8_t)t) || buf_put_be32(b, piece) ? -1 : 0;
}

int zp_put_data(struct buf *b, uint8_t ext_id, uint32_t piece, uint32_t raw_len, const uint8_t *frame, size_t len)
{
    if (buf_reserve(b, 6 + 9 + len))
        return -1;
    return put_head(b, ext_id, 9 + len) || buf_put_u8(b, ZP_DATA) || buf_put_be32(b, piece) ||
                   buf_put_be32(b, raw_len) || buf_put(b, frame, len)
               ? -1
               : 0;
}

bool zp_worth(size_t frame_len, size_t raw_len)
{
    return frame_len > 0 && (uint64_t)frame_len * 10 <= (uint64_t)raw_len * 9;
}

static unsigned window_log_for(size_t want)
{
    unsigned wl = 10; /* ZSTD_WINDOWLOG_ABSOLUTEMIN */
    while (wl < 31 && ((size_t)1 << wl) < want)
        wl++;
    return wl;
}

int zp_decompress(void *dctx, const uint8_t *frame, size_t len, uint8_t *dst, size_t want, const char **why)
{
    *why = NULL;
    if (len == 0 || want == 0) {
        *why = "empty compressed piece";
        return -1;
    }
    /* never trust the frame: its declared size, its extent and the decoded size must all be exact */
    unsigned long long cs = ZSTD_getFrameContentSize(frame, len);
    if (cs == ZSTD_CONTENTSIZE_ERROR) {
        *why = "not a zstd frame";
        return -1;
    }
    if (cs == ZSTD_CONTENTSIZE_UNKNOWN || cs != want) {
        *why = "compressed piece declares the wrong size";
        return -1;
    }
    size_t fs = ZSTD_findFrameCompressedSize(frame, len);
    if (ZSTD_isError(fs) || fs != len) {
        *why = "compressed piece is truncated or has trailing bytes";
        return -1;
    }
    ZSTD_DCtx *d = dctx ? dctx : ZSTD_createDCtx();
    if (!d) {
        *why = "out of memory";
        return -1;
    }
    /* the window may not exceed the piece: a frame may not make us reserve more than we asked for */
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, (int)window_log_for(want));
    size_t r = ZSTD_decompressDCtx(d, dst, want, frame, len);
    if (!dctx)
        ZSTD_freeDCtx(d);
    if (ZSTD_isError(r)) {
        *why = "corrupt compressed piece";
        return -1;
    }
    if (r != want) {
        *why = "compressed piece decodes to the wrong size";
        return -1;
    }
    return 0;
}

/* ---------- LRU cache ---------- */

struct zc_entry {
    struct zc_entry *prev, *next;
    uint32_t piece;
    size_t len;
    uint8_t data[];
};

int zcache_init(struct zcache *c, uint32_t num_pieces, size_t max_bytes)
{
    memset(c, 0, sizeof *c);
    c->max_bytes = max_bytes;
    c->num_pieces = num_pieces;
    if (max_bytes == 0)
        return 0;
    c->by_piece = calloc(num_pieces ? num_pieces : 1, sizeof *c->by_piece);
    return c->by_piece ? 0 : -1;
}

static void unlink_entry(struct zcache *c, struct zc_entry *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        c->tail = x->prev;
    x->prev = x->next = NULL;
}

static void push_front(struct zcache *c, struct zc_entry *x)
{
    x->prev = NULL;
    x->next = c->head;
    if (c->head)
        c->head->prev = x;
    c->head = x;
    if (!c->tail)
        c->tail = x;
}

void zcache_drop(struct zcache *c, uint32_t piece)
{
    if (!c->by_piece || piece >= c->num_pieces || !c->by_piece[piece])
        return;
    struct zc_entry *x = c->by_piece[piece];
    unlink_entry(c, x);
    c->by_piece[piece] = NULL;
    c->bytes -= x->len;
    c->count--;
    free(x);
}

void zcache_free(struct zcache *c)
{
    struct zc_entry *x = c->head;
    while (x) {
        struct zc_entry *n = x->next;
        free(x);
        x = n;
    }
    free(c->by_piece);
    memset(c, 0, sizeof *c);
}

int zcache_put(struct zcache *c, uint32_t piece, const uint8_t *frame, size_t len)
{
    if (!c->by_piece || piece >= c->num_pieces || len == 0 || len > c->max_bytes)
        return 0;
    zcache_drop(c, piece);
    while (c->tail && c->bytes + len > c->max_bytes)
        zcache_drop(c, c->tail->piece);
    struct zc_entry *x = malloc(sizeof *x + len);
    if (!x)
        return -1;
    x->piece = piece;
    x->len = len;
    memcpy(x->data, frame, len);
    push_front(c, x);
    c->by_piece[piece] = x;
    c->bytes += len;
    c->count++;
    return 0;
}

const uint8_t *zcache_get(struct zcache *c, uint32_t piece, size_t *len)
{
    if (!c->by_piece || piece >= c->num_pieces || !c->by_piece[piece])
        return NULL;
    struct zc_entry *x = c->by_piece[piece];
    unlink_entry(c, x);
    push_front(c, x);
    *len = x->len;
    return x->data;
}

/* ---------- per-session state ---------- */

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int zpiece_init(struct zpiece *z, const struct metainfo *mi, size_t cache_bytes, int level, struct ds_err *e)
{
    memset(z, 0, sizeof *z);
    z->mi = mi;
    z->level = level;
    if (mi->piece_length > ZP_MAX_PIECE)
        return ds_errf(e, "pieces of %llu bytes are too large for compressed transfer",
                       (unsigned long long)mi->piece_length);
    size_t pl = (size_t)mi->piece_length;
    z->cbuf_cap = ZSTD_compressBound(pl);
    z->dctx = ZSTD_createDCtx();
    z->cctx = level > 0 ? ZSTD_createCCtx() : NULL;
    z->raw = malloc(pl ? pl : 1);
    z->cbuf = level > 0 ? malloc(z->cbuf_cap) : NULL;
    if (!z->dctx || (level > 0 && (!z->cctx || !z->cbuf)) || !z->raw ||
        zcache_init(&z->cache, mi->num_pieces, cache_bytes) || bitfield_init(&z->incompressible, mi->num_pieces)) {
        zpiece_free(z);
        return ds_errf(e, "out of memory");
    }
    return 0;
}

void zpiece_free(struct zpiece *z)
{
    ZSTD_freeDCtx(z->dctx);
    ZSTD_freeCCtx(z->cctx);
    free(z->raw);
    free(z->cbuf);
    free(z->stored);
    zcache_free(&z->cache);
    bitfield_free(&z->incompressible);
    memset(z, 0, sizeof *z);
}

int zpiece_frame_for(struct zpiece *z, struct store *st, uint32_t piece, const uint8_t **frame, size_t *len,
                     struct ds_err *e)
{
    const struct metainfo *mi = z->mi;
    if (piece >= mi->num_pieces || bitfield_get(&z->incompressible, piece))
        return 0;
    size_t ps = (size_t)metainfo_piece_size(mi, piece);
    const uint8_t *f = zcache_get(&z->cache, piece, len);
    if (f) {
        z->st.from_cache++;
        *frame = f;
        return 1;
    }
    if (st->backend.read_zframe) {
        /* a --compress image: its stored frame goes out as it is */
        bool is_zstd = false;
        free(z->stored);
        z->stored = NULL;
        if (st->backend.read_zframe(st->backend.ctx, piece, &z->stored, len, &is_zstd, e))
            return -1;
        if (is_zstd && zp_worth(*len, ps)) {
            z->st.from_image++;
            *frame = z->stored;
            return 1;
        }
        /* stored raw because it did not compress, or stored compressed but not enough: level 1 would not do better */
        bitfield_set(&z->incompressible, piece);
        return 0;
    }
    if (z->level <= 0 || !z->cctx)
        return 0;
    if (store_read(st, (uint64_t)piece * mi->piece_length, z->raw, ps, e))
        return -1;
    uint64_t t0 = cpu_ns();
    size_t r = ZSTD_compressCCtx(z->cctx, z->cbuf, z->cbuf_cap, z->raw, ps, z->level);
    z->st.comp_ns += cpu_ns() - t0;
    if (ZSTD_isError(r) || !zp_worth(r, ps)) {
        bitfield_set(&z->incompressible, piece);
        return 0;
    }
    z->st.compressed++;
    /* keep it: the next peer asking for this piece gets it without compressing again */
    if (zcache_put(&z->cache, piece, z->cbuf, r))
        return ds_errf(e, "out of memory");
    *frame = z->cbuf;
    *len = r;
    return 1;
}

int zpiece_receive(struct zpiece *z, const struct zp_msg *m, const char **why)
{
    const struct metainfo *mi = z->mi;
    if (m->piece >= mi->num_pieces) {
        *why = "compressed piece beyond the torrent";
        return -1;
    }
    size_t ps = (size_t)metainfo_piece_size(mi, m->piece);
    if (m->raw_len != ps) {
        *why = "compressed piece with the wrong raw length";
        return -1;
    }
    if (m->frame_len >= ps) {
        *why = "compressed piece larger than the piece";
        return -1;
    }
    uint64_t t0 = cpu_ns();
    int rc = zp_decompress(z->dctx, m->frame, m->frame_len, z->raw, ps, why);
    z->st.decomp_ns += cpu_ns() - t0;
    if (rc)
        return -1;
    z->st.pieces_down++;
    z->st.wire_down += m->frame_len;
    z->st.raw_down += ps;
    return 0;
}

void zpiece_json(const struct zpiece *z, uint64_t payload_down, uint64_t payload_up, char *out, size_t cap)
{
    if (!cap)
        return;
    if (!z) {
        snprintf(out, cap, ",\"wire_down\":%" PRIu64 ",\"wire_up\":%" PRIu64, payload_down, payload_up);
        return;
    }
    const struct zpiece_stats *st = &z->st;
    /* payload counts pieces at their raw size; on the wire a compressed piece took its frame's bytes */
    uint64_t wd = payload_down - (st->raw_down <= payload_down ? st->raw_down : payload_down) + st->wire_down;
    uint64_t wu = payload_up - (st->raw_up <= payload_up ? st->raw_up : payload_up) + st->wire_up;
    double dmbps = st->decomp_ns ? (double)st->raw_down / 1e6 / ((double)st->decomp_ns / 1e9) : 0;
    snprintf(out, cap,
             ",\"wire_down\":%" PRIu64 ",\"wire_up\":%" PRIu64 ",\"zpieces_down\":%" PRIu64 ",\"zpieces_up\":%" PRIu64
             ",\"zplain_answers\":%" PRIu64 ",\"zfrom_image\":%" PRIu64 ",\"zfrom_cache\":%" PRIu64
             ",\"zcompressed\":%" PRIu64 ",\"zdecomp_cpu_s\":%.3f,\"zcomp_cpu_s\":%.3f,\"zdecomp_mbps\":%.0f",
             wd, wu, st->pieces_down, st->pieces_up, st->plain_answers, st->from_image, st->from_cache,
             st->compressed, (double)st->decomp_ns / 1e9, (double)st->comp_ns / 1e9, dmbps);
}
