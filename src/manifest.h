/* manifest.h — IMAGE_DIR/manifest.json: what a capture saw and produced, for humans and for deploy.
 *
 * A small JSON object, written by manifest_write (atomically: temp file + rename) and read back by
 * manifest_read with a strict parser for exactly this format: unknown keys are ignored (forward compatible),
 * missing required keys, wrong types, bad escapes, trailing garbage and numbers that do not fit are errors.
 *
 *   { "format": "diskswarm-manifest", "version": 1, "created": <unix time>, "created_by": "diskswarm 0.1.0",
 *     "source": "/dev/sda", "source_size": N, "kind": "disk"|"partition", "mode": "whole-disk"|
 *     "per-partition"|"single", "label": "gpt"|"dos"|"", "disk_id": "...", "sector_size": 512,
 *     "piece_size": N,
 *     "gpt": { "first_usable_lba", "last_usable_lba", "alt_lba", "entries_lba", "entries",
 *              "backup_offset", "backup_length" }            (only for GPT disks)
 *     "areas": [ { "what": "head"|"ebr"|"gpt-backup", "offset", "length" } ... ],
 *     "partitions": [ { "number", "device", "start", "size", "type", "type_name", "name", "uuid",
 *                       "fstype", "scanner", "raw_fallback", "block_size", "fs_size", "used_bytes",
 *                       "extents", "torrent" } ... ],
 *     "torrents": [ { "file", "name", "role": "disk"|"partition"|"table", "info_hash", "bytes",
 *                     "pieces", "extents",
 *                     optional: "image": "<name>.dsimg", "image_compression": "none"|"zstd:LEVEL",
 *                     "image_bytes": N, "seed_in_place": "<path of an uncompressed partclone image>" } ... ],
 *     optional: "partition_table": { "format": "sfdisk"|"parted", "file": "sda-pt.sf" }  (import of a
 *                     Clonezilla image: the dump, copied into IMAGE_DIR, from which deploy recreates the table) }
 * The optional keys are written only when set and may be absent on read.
 * All offsets are bytes relative to the source; partition extents in per-partition torrents are relative to
 * the partition start. */
#ifndef DS_MANIFEST_H
#define DS_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MANIFEST_FILE "manifest.json"
#define MANIFEST_VERSION 1

struct manifest_area {
    char what[24];
    uint64_t offset, length;
};

struct manifest_part {
    unsigned number;
    char device[64];          /* "sda1" */
    uint64_t start, size;
    char type[40], type_name[64], name[80], uuid[40];
    char fstype[16];          /* what the scanner recognised, "raw" for the fallback */
    char scanner[16];         /* scanner module used: "ext", "fat", ..., "raw" */
    bool raw_fallback;        /* unknown filesystem: every block (or every non-zero block) captured */
    uint32_t block_size;
    uint64_t fs_size, used_bytes, extents;
    char torrent[128];        /* per-partition mode: its torrent file; "" otherwise */
};

struct manifest_torrent {
    char file[128];           /* file name inside IMAGE_DIR */
    char name[64];            /* info.name */
    char role[16];            /* "disk", "partition", "table" */
    char info_hash[41];
    uint64_t bytes, pieces, extents;
    char image[128];          /* "" when no image file was stored */
    char image_compression[16];
    uint64_t image_bytes;
    char seed_in_place[1024]; /* "" unless the torrent is seeded from a partclone image in place */
};

struct manifest {
    int version;
    int64_t created;
    char created_by[64];
    char source[256];
    uint64_t source_size;
    char kind[16];            /* "disk" / "partition" */
    char mode[16];            /* "whole-disk" / "per-partition" / "single" */
    char label[8];
    char disk_id[48];
    uint32_t sector_size;
    uint64_t piece_size;
    bool has_gpt;
    uint64_t gpt_first_usable, gpt_last_usable, gpt_alt_lba, gpt_entries_lba, gpt_n_entries;
    uint64_t gpt_backup_off, gpt_backup_len;
    struct manifest_area *areas;
    size_t n_areas;
    struct manifest_part *parts;
    size_t n_parts;
    struct manifest_torrent *torrents;
    size_t n_torrents;
    char pt_format[16];       /* "" when no partition table dump is recorded */
    char pt_file[128];
};

/* Serialise m as JSON into a malloc'd NUL-terminated string. */
char *manifest_to_json(const struct manifest *m, struct ds_err *e);
/* Write dir/manifest.json atomically. */
int manifest_write(const char *dir, const struct manifest *m, struct ds_err *e);
/* Parse JSON text / read dir/manifest.json (or a path to the file itself) into m (free with manifest_free). */
int manifest_parse(const char *text, size_t len, struct manifest *m, struct ds_err *e);
int manifest_read(const char *path, struct manifest *m, struct ds_err *e);
void manifest_free(struct manifest *m);

#endif
