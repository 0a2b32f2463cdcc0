/* image_file.h — IMAGE_DIR/<name>.dsimg: a torrent's byte stream stored piece by piece, so `seed` can serve
 * without the source device and any piece can be read alone.
 *
 * Layout (all integers little-endian):
 *   [0, 4096)      header: magic "DSIMAGE\0", u32 version (1), u32 compression (0 none, 1 zstd),
 *                  u64 piece_length, u32 piece_count, u32 reserved (0), u64 total_length, u8 info_hash[20],
 *                  u32 reserved (0), u64 index_offset, u32 index_crc32, u32 header_crc32 (over bytes [0, 76));
 *                  the rest of the 4096 bytes is zero
 *   [4096, index)  the pieces back to back, in piece order
 *   [index, EOF)   piece index: per piece u64 offset, u32 stored_length, u32 flags (bit 0: zstd frame;
 *                  else the piece's bytes raw); the index ends the file exactly
 * A zstd piece is one frame whose content size is recorded and equals the piece's length. A piece that does not
 * compress is stored raw, so an image is never larger than its data plus header and index.
 *
 * Everything is validated on open (magic, CRCs, counts, index inside the file, pieces inside the data area and
 * in order without overlap, lengths sane); a corrupt image is an error, never a crash. */
#ifndef DS_IMAGE_FILE_H
#define DS_IMAGE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "sha1.h"
#include "store.h"

#define IMAGE_EXT ".dsimg"
#define IMAGE_HEADER_SIZE 4096u
#define IMAGE_INDEX_ENTRY 16u
#define IMAGE_MAX_PIECE ((uint64_t)1 << 30)
#define IMAGE_COMP_NONE 0u
#define IMAGE_COMP_ZSTD 1u
#define IMAGE_FLAG_ZSTD 1u
#define IMAGE_DEFAULT_CACHE 4u

/* ---- writer: append pieces in order, then finish (index, header, fsync, atomic rename) ---- */
struct image_writer;

/* Create path.tmp.XXXXXX next to path; the image appears at path only on finish. */
int image_writer_open(struct image_writer **out, const char *path, uint64_t piece_length, uint64_t total_length,
                      unsigned compression, struct ds_err *e);
/* Append piece `piece` (must be the next one) as stored bytes: raw (len == piece size) or a zstd frame. */
int image_writer_append(struct image_writer *w, uint32_t piece, const void *stored, size_t len, bool is_zstd,
                        struct ds_err *e);
/* Write the index and header, fsync, rename into place, free w. *bytes (if non-NULL) gets the file size. */
int image_writer_finish(struct image_writer *w, const uint8_t info_hash[SHA1_LEN], uint64_t *bytes,
                        struct ds_err *e);
/* Remove the temp file and free w (w may be NULL). */
void image_writer_abort(struct image_writer *w);

/* Compress src into dst (cap >= image_compress_bound(len)) at level; if the frame would not be smaller than the
 * input, copy src raw. Returns the stored length and sets *is_zstd; 0 on a compressor error. cctx is a
 * ZSTD_CCtx* (one per thread; NULL makes a temporary one). */
size_t image_compress_bound(size_t len);
size_t image_compress_piece(void *cctx, int level, const void *src, size_t len, void *dst, size_t cap,
                            bool *is_zstd);

/* ---- reader ---- */
struct image_file;

struct image_info {
    unsigned version, compression;
    uint64_t piece_length, total_length, file_size;
    uint32_t piece_count, zstd_pieces;
    uint64_t stored_bytes;    /* sum of stored lengths */
    uint8_t info_hash[SHA1_LEN];
};

/* Open and validate. cache_pieces: decompressed pieces kept (0 = IMAGE_DEFAULT_CACHE). */
int image_file_open(struct image_file **out, const char *path, unsigned cache_pieces, struct ds_err *e);
/* Only the header (for finding the image whose info-hash matches): 1 = a .dsimg header read, 0 = not an image
 * (wrong magic or too short), -1 = I/O error or a damaged header. */
int image_file_peek(const char *path, struct image_info *info, struct ds_err *e);
const struct image_info *image_file_info(const struct image_file *f);
/* Copy len bytes at torrent offset off (may span pieces). Thread-safe. */
int image_file_read(struct image_file *f, uint64_t off, void *buf, size_t len, struct ds_err *e);
/* The stored bytes of a piece (malloc'd, caller frees) as they are in the file, for wire compression. */
int image_file_read_compressed(struct image_file *f, uint32_t piece, uint8_t **bytes, size_t *len, bool *is_zstd,
                               struct ds_err *e);
void image_file_close(struct image_file *f);
/* A store backend reading from f; the backend owns f (closes it). */
void image_file_backend(struct image_file *f, struct store_backend *b);

/* ---- parallel build: hash every piece (SHA-1) and, with a writer, store it (zstd at level > 0) ----
 * Workers claim pieces in order; fill() produces a piece's bytes (called concurrently unless fill_in_order, in
 * which case calls are serialised and in piece order — for sequential streams); each worker hashes and
 * compresses its piece; completed pieces are appended in order with a bounded reorder window. Memory: one piece
 * per worker plus the window's compressed buffers. */
struct image_build {
    uint64_t piece_length, total_length;
    uint32_t n_pieces;
    unsigned threads;                  /* 0 = one per online CPU */
    int (*fill)(void *ctx, uint32_t piece, uint64_t off, uint8_t *buf, size_t len, struct ds_err *e);
    void *fill_ctx;
    bool fill_in_order;
    struct image_writer *w;            /* NULL: hash only */
    int zstd_level;                    /* 0: store raw */
    uint8_t *hashes;                   /* 20 * n_pieces, filled in */
    void (*progress)(void *ctx, uint64_t bytes_done, bool final);   /* from the calling thread, ~4 times/s */
    void *progress_ctx;
    /* results */
    uint64_t stored_bytes;             /* bytes appended to the image */
    uint64_t sha_ns, zstd_ns;          /* CPU time in SHA-1 / compression over all workers */
    unsigned threads_used;
};
int image_build_run(struct image_build *b, struct ds_err *e);

/* ---- seeding: open the right read-only source for `seed T --from PATH` ----
 * PATH may be a .dsimg, a partclone image (seeded in place when uncompressed), or an IMAGE_DIR (the .dsimg whose
 * info-hash is the torrent's, or the manifest's "seed_in_place" for it). Returns 1 and an open store when PATH
 * is one of those, 0 when PATH is something else (a device or a raw image file: use store_open), -1 on error. */
struct metainfo;
struct extent_map;
int image_source_open(struct store *s, const char *path, const struct metainfo *mi, const struct extent_map *map,
                      struct ds_err *e);

#endif
