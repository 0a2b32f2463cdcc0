/* metainfo.h — BitTorrent v1 metainfo (.torrent) load and build.
 *
 * Load accepts single-file and multi-file v1 torrents (and the v1 part of hybrid ones). The info-hash is SHA-1
 * over the exact bencoded bytes of `info` as they appear in the file. Validation: piece length > 0 (any value;
 * a power of two is not required on load), `pieces` a multiple of 20 and exactly ceil(total/piece_length)
 * hashes, file lengths non-negative and total > 0, path components non-empty and not "." or ".." and without
 * '/' or NUL. BEP 47 pad files (attr contains 'p') are kept with is_pad set. */
#ifndef DS_METAINFO_H
#define DS_METAINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "sha1.h"

struct mi_file {
    char *path;          /* components joined with '/', relative to info.name (single-file: equals name) */
    char *last;          /* last path component (points into path) */
    uint64_t length;
    uint64_t offset;     /* byte offset of the file within the torrent's data */
    bool is_pad;         /* BEP 47 pad file */
};

struct metainfo {
    char *name;
    bool multi_file;
    uint64_t piece_length;
    uint32_t num_pieces;
    uint64_t total_length;
    uint8_t *piece_hashes;      /* 20 * num_pieces bytes */
    struct mi_file *files;
    size_t num_files;
    uint8_t info_hash[SHA1_LEN];
    char **trackers;            /* announce then announce-list tiers flattened, duplicates removed */
    size_t num_trackers;
    bool is_private;
    char *comment;              /* may be NULL */
    char *created_by;           /* may be NULL */
    int64_t creation_date;      /* 0 when absent */
};

int metainfo_parse(const uint8_t *buf, size_t len, struct metainfo **out, struct ds_err *e);
int metainfo_load_file(const char *path, struct metainfo **out, struct ds_err *e);
void metainfo_free(struct metainfo *mi);

/* Length of piece i (the last one may be short). */
uint64_t metainfo_piece_size(const struct metainfo *mi, uint32_t i);

/* Build a multi-file torrent in the Clonezilla/Ezio layout: info.name = name, one file per extent named by its
 * device offset as 32 lowercase hex digits, in the given order. hashes holds ceil(total/piece_length) SHA-1s.
 * trackers may be NULL/0; the first becomes `announce`, all of them `announce-list` (one tier each).
 * created_by may be NULL. Output is appended to out. */
struct extent;
int metainfo_build_ezio(const char *name, const struct extent *ext, size_t n_ext, uint64_t piece_length,
                        const uint8_t *hashes, const char *const *trackers, size_t n_trackers,
                        const char *created_by, bool is_private, struct buf *out, struct ds_err *e);

/* Default piece length for a torrent of total bytes (capture, import): 128 KiB, doubled while that would make
 * more than METAINFO_AUTO_MAX_PIECES pieces (up to 1 GiB). */
#define METAINFO_AUTO_PIECE_MIN ((uint64_t)128 << 10)
#define METAINFO_AUTO_MAX_PIECES 16384u
uint64_t metainfo_auto_piece_length(uint64_t total);

#endif
