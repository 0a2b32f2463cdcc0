/* store.h — piece storage on a device or file through the extent map.
 *
 * Torrent byte ranges are translated to device ranges with the extent map; every pread/pwrite result is checked
 * and short transfers are continued. Writes are only ever made inside the map's non-pad extents: a write whose
 * torrent range lies outside [0, total) is refused, so nothing outside the torrent's extents can be touched.
 * Pad extents read as zeros and are skipped on write. Memory use is bounded (hashing reads in chunks). */
#ifndef DS_STORE_H
#define DS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "extent_map.h"
#include "metainfo.h"

/* A read-only source other than a device: an image file of ours (pieces back to back, maybe compressed) or
 * a partclone image seeded in place. It answers reads of the torrent's byte stream. */
struct store_backend {
    int (*read)(void *ctx, uint64_t tor_off, void *buf, size_t len, struct ds_err *e);
    void (*close)(void *ctx);
    /* optional: a piece as stored (malloc'd into *bytes), for sending it compressed without recompressing */
    int (*read_zframe)(void *ctx, uint32_t piece, uint8_t **bytes, size_t *len, bool *is_zstd, struct ds_err *e);
    void *ctx;
    const char *what;      /* for messages, e.g. "image.dsimg" */
};

struct store {
    int fd;
    struct store_backend backend;   /* when backend.read is set, reads go there and fd is unused */
    bool writable;
    bool is_blockdev;
    uint64_t dev_size;
    const struct metainfo *mi;
    const struct extent_map *map;
    char *path;
};

enum store_mode {
    STORE_READ,        /* seeding from a trusted source */
    STORE_WRITE,       /* fetch target: checked not mounted; block devices must be big enough; files are grown */
};

int store_open(struct store *s, const char *path, enum store_mode mode, const struct metainfo *mi,
               const struct extent_map *map, struct ds_err *e);
void store_close(struct store *s);
/* A second store on the device of an open store `first` (same checks already passed), for another torrent
 * whose extents lie elsewhere on it (a partition's torrent on a whole disk). The device is not reopened — an
 * exclusive (O_EXCL) block device cannot be — but its descriptor duplicated. The map must fit the device. */
int store_open_sibling(struct store *s, const struct store *first, const struct metainfo *mi,
                       const struct extent_map *map, struct ds_err *e);
/* Serve reads from a backend (seeding only). The store takes ownership of the backend (closes it). */
int store_open_backend(struct store *s, const struct metainfo *mi, const struct extent_map *map,
                       const struct store_backend *b, struct ds_err *e);

/* Read/write len bytes at torrent offset off (may span extents). */
int store_read(struct store *s, uint64_t off, void *buf, size_t len, struct ds_err *e);
int store_write(struct store *s, uint64_t off, const void *buf, size_t len, struct ds_err *e);

/* SHA-1 of piece i as stored, compared with the torrent. 1 = match, 0 = mismatch, -1 = I/O error. */
int store_check_piece(struct store *s, uint32_t piece, struct ds_err *e);

/* Flush written data to stable storage (fdatasync). */
int store_sync(struct store *s, struct ds_err *e);

#endif
