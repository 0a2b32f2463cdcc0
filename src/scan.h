/* scan.h — filesystem scanners: find the byte ranges a filesystem actually uses.
 *
 * One module per filesystem (scan_ext.c, scan_fat.c, scan_ntfs.c, scan_xfs.c, scan_raw.c), each exposing a
 * `const struct scanner` with a cheap probe and a scan. Offsets in the result are relative to the start of the
 * filesystem (the caller adds the partition's offset). Extents come out sorted, non-overlapping, adjacent runs
 * merged, and always include what the filesystem needs to mount (superblocks, group descriptors, bitmaps,
 * inode tables, journals, FATs, $MFT, AG headers ...). Scanners read through pread on fd at base + offset, so
 * a partition inside a whole-disk image is scanned in place. */
#ifndef DS_SCAN_H
#define DS_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct scan_src {
    int fd;              /* open read-only */
    const char *path;    /* for messages, and for libraries that open by name (libext2fs) */
    uint64_t base;       /* byte offset of the filesystem within fd */
    uint64_t size;       /* bytes available from base (partition size) */
};

struct scan_extent {
    uint64_t off;        /* relative to base */
    uint64_t len;
};

struct scan_result {
    char fstype[16];     /* "ext4", "vfat", "ntfs", "xfs", "raw" */
    uint32_t block_size; /* allocation unit the bitmap speaks in */
    uint64_t fs_size;    /* bytes the filesystem spans (≤ src size) */
    uint64_t used_bytes; /* sum of extent lengths */
    struct scan_extent *ext;
    size_t n;
    size_t cap;
};

struct scanner {
    const char *name;
    /* 1 if the filesystem is recognised, 0 if not, -1 on an I/O error. Must not allocate much. */
    int (*probe)(const struct scan_src *src, struct ds_err *e);
    int (*scan)(const struct scan_src *src, struct scan_result *out, struct ds_err *e);
};

extern const struct scanner scanner_ext;
extern const struct scanner scanner_fat;
extern const struct scanner scanner_ntfs;
extern const struct scanner scanner_xfs;
extern const struct scanner scanner_raw;   /* every block; with skip_zero, all-zero blocks are left out */

/* Append [off, off+len) to r, merging with the previous extent when adjacent/overlapping (callers add in
 * ascending order; scan_result_finish sorts and merges anyway). 0 or -1 on OOM. */
int scan_result_add(struct scan_result *r, uint64_t off, uint64_t len);
/* Sort, merge, clip to fs_size, compute used_bytes. */
int scan_result_finish(struct scan_result *r, struct ds_err *e);
void scan_result_free(struct scan_result *r);

/* Read exactly len bytes at off (relative to the filesystem start) or fail with a message naming fs; the range
 * must lie inside the source. Short reads are continued, EINTR retried. */
int scan_read(const struct scan_src *s, const char *fs, uint64_t off, void *buf, size_t len, struct ds_err *e);

/* Probe the known filesystems in order (ext, xfs, ntfs, fat) and scan with the first that matches; if none
 * does, scan raw and set *fell_back (the caller says so clearly). skip_zero applies to the raw fallback. */
int scan_any(const struct scan_src *src, bool skip_zero, struct scan_result *out, bool *fell_back,
             struct ds_err *e);
/* Raw scan with an explicit zero-skip choice (block_size granularity, default 64 KiB when 0). */
int scan_raw(const struct scan_src *src, bool skip_zero, uint32_t block_size, struct scan_result *out,
             struct ds_err *e);

#endif
