/* extent_map.h — the mapping between the torrent's byte stream and device offsets.
 *
 * Ezio/Clonezilla layout: a multi-file torrent whose files are named (last path component) by their device
 * offset in hex (Clonezilla writes 32 lowercase digits; any 1..32 hex digits are accepted on load). File i covers
 * device bytes [offset, offset+length). A single-file torrent maps identically (device offset = torrent offset).
 * Pad files (BEP 47) take torrent bytes but no device bytes: they read as zeros and are never written.
 * The map is built once at load (sorted by torrent offset); lookups are a binary search. Extents must not
 * overlap on the device and must not be empty-named; violations are load errors. */
#ifndef DS_EXTENT_MAP_H
#define DS_EXTENT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct metainfo;

struct extent {
    uint64_t dev_off;   /* device offset (meaningless for pads) */
    uint64_t len;
    uint64_t tor_off;   /* offset in the torrent's byte stream */
    bool pad;
};

struct extent_map {
    struct extent *ext;   /* ascending tor_off, contiguous: ext[i+1].tor_off == ext[i].tor_off + ext[i].len */
    size_t n;
    uint64_t total;       /* sum of lengths == metainfo total_length */
    uint64_t dev_end;     /* max(dev_off + len) over non-pad extents: the device must be at least this big */
    uint64_t dev_bytes;   /* sum of non-pad lengths */
};

/* Build the map for mi. Zero-length files are skipped. */
int extent_map_from_metainfo(const struct metainfo *mi, struct extent_map *out, struct ds_err *e);
/* Build from an explicit extent list (dev_off, len; tor_off computed in order). Same overlap checks. */
int extent_map_from_list(const struct extent *list, size_t n, struct extent_map *out, struct ds_err *e);
void extent_map_free(struct extent_map *m);
/* Move every (non-pad) extent delta bytes further on the device: a partition's torrent (offsets relative to the
 * partition) placed at the partition's start on a whole disk. -1 if an offset would overflow. */
int extent_map_shift(struct extent_map *m, uint64_t delta, struct ds_err *e);

/* Index of the extent that contains torrent offset off (off < total), by binary search. */
size_t extent_map_find(const struct extent_map *m, uint64_t tor_off);
/* The same search on a bare sorted array (n > 0, ext[0].tor_off == 0): the largest i with
 * ext[i].tor_off <= tor_off. */
size_t extent_find(const struct extent *ext, size_t n, uint64_t tor_off);

#endif
