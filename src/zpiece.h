/* zpiece.h — compressed pieces on the wire between diskswarm peers (the "ds_zpiece" BEP 10 extension).
 *
 * A peer that sees "ds_zpiece" in the other side's extension handshake may ask for a whole piece in compressed
 * form; the sender answers with one zstd frame of the piece, or tells it to fetch the piece plain (the piece
 * does not compress well enough: no expansion, ever), or refuses for now (choked, piece not there). The
 * receiver checks the declared raw length against the piece length before decompressing into a buffer of
 * exactly that length, then writes and hashes the piece as if its blocks had come plain. Plain peers never see
 * any of this.
 *
 * Extended-message payloads (after the BEP 10 ext id byte), integers big-endian:
 *   REQ    0  u32 piece                       please send piece `piece` compressed
 *   DATA   1  u32 piece  u32 raw_len  frame   one zstd frame whose content is the whole piece
 *   PLAIN  2  u32 piece                       it does not compress: request it block by block
 *   REJECT 3  u32 piece                       not now (choked, not had): try again later
 *   CANCEL 4  u32 piece                       the requester no longer needs it
 *
 * This module holds the codec (sans-I/O), the bounded decompressor, the sender's frame sources (a .dsimg's
 * stored frame, a bounded LRU cache of frames received compressed, compression on the fly at a fast level) and
 * their statistics. It never touches a socket. */
#ifndef DS_ZPIECE_H
#define DS_ZPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bitfield.h"
#include "buf.h"
#include "err.h"
#include "metainfo.h"
#include "store.h"

#define ZP_EXT_NAME "ds_zpiece"
#define ZP_MAX_PIECE (4u << 20)           /* larger pieces go plain: a peer's input buffer holds one whole frame */
#define ZP_DEFAULT_CACHE_MIB 64u
#define ZP_DEFAULT_LEVEL 1                /* compression on the fly: zstd's fastest regular level */

enum zp_type { ZP_REQ = 0, ZP_DATA = 1, ZP_PLAIN = 2, ZP_REJECT = 3, ZP_CANCEL = 4 };

struct zp_msg {
    uint8_t type;
    uint32_t piece;
    uint32_t raw_len;           /* DATA */
    const uint8_t *frame;       /* DATA: points into the input */
    size_t frame_len;
};

/* Parse one payload. 0, or -1 when it is malformed (unknown type, wrong size, empty frame). */
int zp_parse(const uint8_t *d, size_t n, struct zp_msg *m);
/* Append a whole BEP 10 extended message (length prefix, id 20, ext_id, payload). 0 or -1 on OOM. */
int zp_put_simple(struct buf *b, uint8_t ext_id, enum zp_type t, uint32_t piece);
int zp_put_data(struct buf *b, uint8_t ext_id, uint32_t piece, uint32_t raw_len, const uint8_t *frame, size_t len);

/* Is a frame of frame_len bytes worth sending for raw_len bytes (at most 90 % of them)? */
bool zp_worth(size_t frame_len, size_t raw_len);

/* Decompress one frame into dst of exactly want bytes. The frame must be a single zstd frame whose declared
 * content size is want and which decodes to exactly want bytes, with a window no larger than the piece; else
 * -1 and *why says what was wrong. dctx is a ZSTD_DCtx* (NULL: a temporary one). */
int zp_decompress(void *dctx, const uint8_t *frame, size_t len, uint8_t *dst, size_t want, const char **why);

/* Bounded LRU cache of frames by piece. Memory: at most max_bytes of frames plus a pointer per piece. */
struct zc_entry;
struct zcache {
    struct zc_entry **by_piece;
    uint32_t num_pieces;
    struct zc_entry *head, *tail;     /* most / least recently used */
    size_t bytes, max_bytes;
    uint32_t count;
};
int zcache_init(struct zcache *c, uint32_t num_pieces, size_t max_bytes);
void zcache_free(struct zcache *c);
/* Copy frame in (replacing an older one); evicts the least recently used. A frame larger than the whole cache
 * is not kept. 0, or -1 on OOM (the cache stays consistent). */
int zcache_put(struct zcache *c, uint32_t piece, const uint8_t *frame, size_t len);
/* The frame of a piece (valid until the next put/drop/free) and mark it recently used; NULL if absent. */
const uint8_t *zcache_get(struct zcache *c, uint32_t piece, size_t *len);
void zcache_drop(struct zcache *c, uint32_t piece);

struct zpiece_stats {
    uint64_t pieces_down, wire_down, raw_down;      /* received compressed: count, frame bytes, piece bytes */
    uint64_t pieces_up, wire_up, raw_up;            /* sent compressed */
    uint64_t plain_answers;                         /* requests answered "fetch it plain" */
    uint64_t from_image, from_cache, compressed;    /* where sent frames came from */
    uint64_t decomp_ns, comp_ns;                    /* CPU time spent in zstd */
};

/* Per-session state: contexts, scratch of one piece, the cache, what is known not to compress. */
struct zpiece {
    const struct metainfo *mi;
    void *dctx, *cctx;
    int level;                  /* compression on the fly (0: never; only stored/cached frames are sent) */
    uint8_t *raw;               /* piece_length bytes */
    uint8_t *cbuf;              /* compress bound of piece_length */
    size_t cbuf_cap;
    uint8_t *stored;            /* the last frame read from a .dsimg (malloc'd by the reader) */
    struct zcache cache;
    struct bitfield incompressible;
    struct zpiece_stats st;
};

/* cache_bytes: frames received compressed kept for forwarding (0: none). level: as above. */
int zpiece_init(struct zpiece *z, const struct metainfo *mi, size_t cache_bytes, int level, struct ds_err *e);
void zpiece_free(struct zpiece *z);

/* A frame of `piece` to send (we have it, verified): 1 with *frame and *len (valid until the next call), 0 when it
 * should go plain, -1 on a storage error. */
int zpiece_frame_for(struct zpiece *z, struct store *st, uint32_t piece, const uint8_t **frame, size_t *len,
                     struct ds_err *e);

/* A DATA message arrived for a piece we asked for: check and decompress it into z->raw (piece-size bytes).
 * 0 ok, -1 hostile or broken frame (*why). The caller keeps the frame (zcache_put) once every block of the piece
 * came from it, and drops it again if the piece fails its hash. */
int zpiece_receive(struct zpiece *z, const struct zp_msg *m, const char **why);

/* JSON fields (each preceded by a comma) for the run's "done" line: bytes on the wire each way and the
 * compressed-piece counters. z may be NULL (compression off): wire bytes = payload bytes. */
void zpiece_json(const struct zpiece *z, uint64_t payload_down, uint64_t payload_up, char *out, size_t cap);

#endif
