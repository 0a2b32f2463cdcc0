/* partclone.h — read partclone images (formats 0001 and 0002) as Clonezilla writes them: raw, gzip (zlib) or
 * zstd compressed, whole or split into parts (.aa .ab ...; the parts are concatenated before decompression).
 *
 * Format 0001: 4160-byte header ("partclone-image" magic, fs type, "0001", block size, device size, total and
 * used block counts, 4096 unused bytes), one byte per block (non-zero = used) followed by "BiTmAgIc", then each
 * used block followed by a 4-byte checksum (a defective CRC32 in partclone < 0.3: it is not verified).
 * Format 0002: 110-byte header (magic, partclone version, "0002", endianness 0xC0DE, fs type, device size, total
 * blocks, used blocks by superblock and by bitmap, block size, options: feature size, binary version, cpu bits,
 * checksum mode (0 none, 0x20 CRC32), checksum size, blocks per checksum, reseed flag, bitmap mode (1 bit,
 * 8 byte), CRC32 of the preceding bytes), the bitmap (bit mode: ceil(total/8) bytes LSB first + CRC32; byte
 * mode: total bytes + "BiTmAgIc"), then the used blocks in strips of blocks_per_checksum blocks, each strip
 * followed by its checksum (also after the last, partial strip). CRC32 here is zlib's crc32 without the final
 * inversion (seed 0xffffffff), restarted after every checksum when reseed is set.
 *
 * Memory: the bitmap (total/8 bytes) and small stream buffers; data is streamed. */
#ifndef DS_PARTCLONE_H
#define DS_PARTCLONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define PC_MAGIC "partclone-image"
#define PC_CSM_NONE 0x00u
#define PC_CSM_CRC32 0x20u
#define PC_BM_NONE 0x00u
#define PC_BM_BIT 0x01u
#define PC_BM_BYTE 0x08u

enum pc_comp { PC_RAW, PC_GZIP, PC_ZSTD };

struct pc_info {
    unsigned version;            /* 1 or 2 */
    char fs[17];                 /* "EXTFS", "FAT32", "NTFS", ... */
    char ptc_version[15];        /* v2: partclone version that wrote it */
    uint32_t block_size;
    uint64_t device_size, total_blocks, used_blocks;   /* used_blocks: counted in the bitmap */
    unsigned checksum_mode, checksum_size;
    uint32_t blocks_per_checksum;                      /* 0 when no checksums */
    bool reseed;
    unsigned bitmap_mode;
    uint64_t data_offset;        /* where the block data starts in the (decompressed) image */
    uint64_t data_bytes;         /* used_blocks * block_size */
    uint64_t image_bytes;        /* expected size of the decompressed image */
    enum pc_comp comp;
    size_t n_parts;
};

struct pc_extent {
    uint64_t off, len;           /* bytes, relative to the start of the filesystem */
};

struct pc_reader;

/* Open an image: paths are its parts in order (one path: if it ends in ".aa", ".ab" ... are found next to it).
 * Reads and checks the header and bitmap. verify: check the data checksums while streaming. */
int pc_open(struct pc_reader **out, const char *const *paths, size_t n_paths, bool verify, struct ds_err *e);
const struct pc_info *pc_get_info(const struct pc_reader *r);
/* The used blocks as merged byte extents (owned by r). */
const struct pc_extent *pc_extents(const struct pc_reader *r, size_t *n);
/* Is block b marked used? */
bool pc_block_used(const struct pc_reader *r, uint64_t b);
/* The next len bytes of the used blocks' data, in block order, checksums stripped (and verified). */
int pc_read_data(struct pc_reader *r, void *buf, size_t len, struct ds_err *e);
void pc_close(struct pc_reader *r);

/* 1 if the file starts with the partclone magic, 0 if not, -1 on an I/O error. */
int pc_probe_file(const char *path, struct ds_err *e);
/* Friendly filesystem name for a partclone fs string ("EXTFS" -> "ext4"-ish family "ext", "FAT32" -> "vfat"). */
const char *pc_fs_name(const char *pc_fs);

/* Seed an uncompressed single-file image in place: torrent offset t is the t-th byte of the used blocks' data,
 * found at data_offset + (t / strip) * (strip + checksum_size) + t % strip (strip = blocks_per_checksum *
 * block_size). The torrent's extents must be exactly the image's used extents (map is checked against them).
 * The backend owns its file descriptor. */
int pc_inplace_backend(const char *path, const struct extent_map *map, struct store_backend *b, struct ds_err *e);

/* Arithmetic of the above (exposed for tests): image offset of data byte t. */
uint64_t pc_data_to_image_offset(const struct pc_info *in, uint64_t t);

#endif
