/* scan_ext.c — ext2/3/4 scanner through libext2fs.
 *
 * The used set is what the block bitmaps say (libext2fs also marks the metadata of BLOCK_UNINIT groups:
 * superblock backups, group descriptors, bitmaps, inode tables), walked run by run with the bitmap's
 * find-first-set/zero helpers, so a bigalloc filesystem is walked cluster by cluster. Blocks before
 * s_first_data_block (block 0 of a 1 KiB-block filesystem: boot sector) are outside the bitmaps and always
 * included, as is the first 2 KiB (boot area + primary superblock) whatever the block size. This is the same
 * set partclone.extfs saves (its bitmap is built from the same libext2fs block bitmap, plus block 0).
 *
 * A filesystem whose journal needs recovery is refused: replaying the journal on the target could write blocks
 * the on-disk bitmap does not mark yet, which the capture would not contain. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>

#include "scan.h"

#define EXT_SB_OFFSET 1024
#define EXT_MAGIC_OFF (EXT_SB_OFFSET + 56)
#define EXT_BOOT_AREA 2048

/* libcom_err's error_message() is not linked (only -lext2fs is); name the codes a user is likely to meet. */
static const char *ext_strerror(errcode_t code, char *tmp, size_t n)
{
    if (code > 0 && code < 4096)
        return strerror((int)code);
    switch (code) {
    case EXT2_ET_BAD_MAGIC: return "bad magic number in superblock";
    case EXT2_ET_SHORT_READ: return "short read (device smaller than the filesystem?)";
    case EXT2_ET_CORRUPT_SUPERBLOCK: return "the superblock is corrupt";
    case EXT2_ET_UNSUPP_FEATURE: return "filesystem has unsupported features";
    case EXT2_ET_RO_UNSUPP_FEATURE: return "filesystem has unsupported read-only features";
    case EXT2_ET_SB_CSUM_INVALID: return "superblock checksum does not match";
    case EXT2_ET_BLOCK_BITMAP_CSUM_INVALID: return "block bitmap checksum does not match";
    case EXT2_ET_GDESC_BAD_BLOCK_MAP: return "a group descriptor's block bitmap location is invalid";
    case EXT2_ET_GDESC_BAD_INODE_MAP: return "a group descriptor's inode bitmap location is invalid";
    case EXT2_ET_GDESC_BAD_INODE_TABLE: return "a group descriptor's inode table location is invalid";
    default: snprintf(tmp, n, "libext2fs error %ld", (long)code); return tmp;
    }
}

static int ext_probe(const struct scan_src *src, struct ds_err *e)
{
    if (src->size < EXT_SB_OFFSET + 1024)
        return 0;
    uint8_t m[2];
    ssize_t r;
    do
        r = pread(src->fd, m, sizeof m, (off_t)(src->base + EXT_MAGIC_OFF));
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return ds_errno(e, "cannot read '%s' at offset %" PRIu64, src->path, src->base + EXT_MAGIC_OFF);
    if (r != (ssize_t)sizeof m)
        return 0;
    return m[0] == 0x53 && m[1] == 0xEF;
}

static int ext_scan(const struct scan_src *src, struct scan_result *out, struct ds_err *e)
{
    char opts[64], tmp[64];
    ext2_filsys fs = NULL;
    memset(out, 0, sizeof *out);
    snprintf(opts, sizeof opts, "offset=%" PRIu64, src->base);
    errcode_t err = ext2fs_open2(src->path, opts, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
    if (err)
        return ds_errf(e, "'%s' at offset %" PRIu64 ": cannot open the ext filesystem: %s", src->path, src->base,
                       ext_strerror(err, tmp, sizeof tmp));
    int rc = -1;
    struct ext2_super_block *sb = fs->super;
    if (ext2fs_has_feature_journal_needs_recovery(sb)) {
        ds_errf(e, "'%s' at offset %" PRIu64 ": the ext filesystem's journal needs recovery (not cleanly "
                   "unmounted); run e2fsck or mount and unmount it first",
                src->path, src->base);
        goto out;
    }
    if (ext2fs_has_feature_journal_dev(sb)) {
        ds_errf(e, "'%s' at offset %" PRIu64 ": this is an external journal device, not a filesystem", src->path,
                src->base);
        goto out;
    }
    uint64_t bs = fs->blocksize;
    blk64_t nblocks = ext2fs_blocks_count(sb);
    if (nblocks == 0 || nblocks > UINT64_MAX / bs) {
        ds_errf(e, "'%s': implausible ext block count %" PRIu64, src->path, (uint64_t)nblocks);
        goto out;
    }
    uint64_t fs_size = nblocks * bs;
    if (fs_size > src->size) {
        ds_errf(e, "'%s' at offset %" PRIu64 ": the ext filesystem claims %" PRIu64 " bytes but only %" PRIu64
                   " are available (truncated image or partition?)",
                src->path, src->base, fs_size, src->size);
        goto out;
    }
    err = ext2fs_read_block_bitmap(fs);
    if (err) {
        ds_errf(e, "'%s': cannot read the block bitmaps: %s", src->path, ext_strerror(err, tmp, sizeof tmp));
        goto out;
    }
    snprintf(out->fstype, sizeof out->fstype, "%s",
             ext2fs_has_feature_journal(sb) ? (ext2fs_has_feature_extents(sb) || ext2fs_has_feature_64bit(sb) ||
                                                       ext2fs_has_feature_flex_bg(sb) || ext2fs_has_feature_bigalloc(sb)
                                                   ? "ext4"
                                                   : "ext3")
                                            : (ext2fs_has_feature_extents(sb) ? "ext4" : "ext2"));
    out->block_size = (uint32_t)(bs << fs->cluster_ratio_bits);
    out->fs_size = fs_size;

    /* boot area + primary superblock, and anything before the first data block (outside the bitmaps) */
    uint64_t head = (uint64_t)sb->s_first_data_block * bs;
    if (head < EXT_BOOT_AREA)
        head = EXT_BOOT_AREA;
    if (scan_result_add(out, 0, head))
        goto oom;

    /* Walk in block numbers: the search helpers take and return blocks even for a cluster bitmap (whose
     * get_start/get_end speak clusters, so they are not used here). */
    ext2fs_block_bitmap bm = fs->block_map;
    blk64_t last = nblocks - 1;
    blk64_t cur = sb->s_first_data_block;
    while (cur <= last) {
        blk64_t s, z;
        err = ext2fs_find_first_set_block_bitmap2(bm, cur, last, &s);
        if (err == ENOENT)
            break;
        if (err) {
            ds_errf(e, "'%s': block bitmap search failed: %s", src->path, ext_strerror(err, tmp, sizeof tmp));
            goto out;
        }
        err = ext2fs_find_first_zero_block_bitmap2(bm, s, last, &z);
        if (err == ENOENT)
            z = last + 1;
        else if (err) {
            ds_errf(e, "'%s': block bitmap search failed: %s", src->path, ext_strerror(err, tmp, sizeof tmp));
            goto out;
        }
        if (z <= s) { /* cannot happen; never loop forever on a library surprise */
            ds_errf(e, "'%s': block bitmap search went backwards at block %" PRIu64, src->path, (uint64_t)s);
            goto out;
        }
        if (scan_result_add(out, (uint64_t)s * bs, (uint64_t)(z - s) * bs))
            goto oom;
        cur = z;
    }
    if (scan_result_finish(out, e))
        goto out;
    rc = 0;
    goto out;
oom:
    ds_errf(e, "out of memory");
out:
    ext2fs_close_free(&fs);
    if (rc)
        scan_result_free(out);
    return rc;
}

const struct scanner scanner_ext = {.name = "ext", .probe = ext_probe, .scan = ext_scan};
