/* gpt_fixup.h — after a GPT disk was copied onto a larger disk: move the backup GPT (entries + header) to the
 * real end of the disk, as `sgdisk -e` does. The primary header gets alternate_lba = last LBA and
 * last_usable_lba just before the new backup entries; the protective MBR's size field covers the disk again.
 *
 * gpt_relocate_plan is sans-I/O (sectors in, sectors out); gpt_relocate_fd reads and writes a device or image
 * file, backup first (synced) and the primary header last, so an interruption leaves a valid primary. */
#ifndef DS_GPT_FIXUP_H
#define DS_GPT_FIXUP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GPT_MAX_SECTOR 4096u

struct gpt_plan {
    uint64_t old_alt_lba;           /* where the backup header was */
    uint64_t backup_hdr_lba;        /* new: the disk's last LBA */
    uint64_t backup_entries_lba;    /* new */
    uint64_t entries_lba;           /* primary entries (to copy) */
    size_t entries_len;             /* bytes of partition entries */
    uint64_t new_last_usable;
};

/* lba0, lba1: the first two sectors (ss bytes each), entries: the primary partition entries (entries_len bytes,
 * at least num_entries * entry_size). On success fills new_lba0, new_lba1 (the updated protective MBR and
 * primary header sectors) and backup_hdr (the new backup header sector), and plan. disk_sectors: the target's
 * size in sectors. Returns 1 when a relocation is needed, 0 when the backup is already at the end (outputs
 * unspecified), -1 on a damaged or unsupported GPT (e says why). */
int gpt_relocate_plan(const uint8_t *lba0, const uint8_t *lba1, uint32_t ss, const uint8_t *entries,
                      size_t entries_len, uint64_t disk_sectors, uint8_t *new_lba0, uint8_t *new_lba1,
                      uint8_t *backup_hdr, struct gpt_plan *plan, struct ds_err *e);

/* Read the GPT at fd (sector size ss, disk size bytes), relocate its backup to the end when the disk is larger
 * than the GPT says. 1 = relocated, 0 = nothing to do, -1 = error. */
int gpt_relocate_fd(int fd, uint32_t ss, uint64_t size, struct ds_err *e);

#endif
