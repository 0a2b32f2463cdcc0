/* disk_layout.h — partition table of a whole disk (or a file holding one), read with libfdisk.
 *
 * disk_layout_read tells a whole disk (a GPT or MBR label) from anything else, lists the partitions (byte
 * offsets relative to the disk) and the areas outside the partitions that a copy of the disk needs:
 *   GPT: everything before the first partition (protective MBR, primary header and entries, boot gap) and the
 *        backup entries + backup header (from the backup entries' first LBA through the alternate header LBA);
 *   MBR: everything before the first partition (MBR + boot loader gap) and the EBR sector of every logical
 *        partition. Gaps between partitions are not captured. */
#ifndef DS_DISK_LAYOUT_H
#define DS_DISK_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct disk_part {
    unsigned number;        /* 1-based partition number (sda<number>) */
    uint64_t start, size;   /* bytes, relative to the disk */
    char type[40];          /* GPT type GUID or MBR type "0x83" */
    char type_name[64];     /* "EFI System", "Linux filesystem" ... (may be empty) */
    char name[80];          /* GPT partition name (may be empty) */
    char uuid[40];          /* GPT partition UUID (may be empty) */
};

struct disk_area {
    uint64_t off, len;
    char what[24];          /* "head", "ebr", "gpt-backup" */
};

struct disk_layout {
    char label[8];              /* "gpt" or "dos"; "" when the source has no partition table */
    char disk_id[48];           /* GPT disk GUID or MBR id "0x1234abcd" */
    uint32_t sector_size;
    uint64_t size;              /* bytes */
    struct disk_part *parts;    /* ascending start; extended (container) partitions are left out */
    size_t n_parts;
    struct disk_area *areas;    /* ascending offset, disjoint, outside every partition */
    size_t n_areas;
    /* GPT only (has_gpt): where the headers and entries live, in LBAs and bytes */
    bool has_gpt;
    uint64_t gpt_first_usable, gpt_last_usable, gpt_alt_lba, gpt_entries_lba, gpt_n_entries;
    uint64_t gpt_backup_off, gpt_backup_len; /* backup entries + header, bytes */
};

/* 1 = whole disk (layout filled), 0 = no partition table found (layout zeroed), -1 = error. */
int disk_layout_read(const char *path, uint64_t size, struct disk_layout *out, struct ds_err *e);
void disk_layout_free(struct disk_layout *l);

/* Linux's name for partition n of a disk called base: "sda" → "sda1", "nvme0n1"/"loop0" → "nvme0n1p1". */
void disk_part_devname(const char *base, unsigned n, char *out, size_t outlen);

#endif
