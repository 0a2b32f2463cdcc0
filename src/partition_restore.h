/* partition_restore.h — recreate a partition table on a deploy target from an sfdisk dump (the `<disk>-pt.sf`
 * of a Clonezilla image, recorded by `import` as the manifest's "partition_table"), with libfdisk's script API.
 *
 * The dump is parsed by libfdisk (fdisk_script_read_file), applied to the target (fdisk_apply_script: a new
 * label of the dump's type, its label-id, the partitions with their types, UUIDs, names and attributes) and
 * written. Before anything is written, the dump's partitions are checked against the manifest: every partition
 * the manifest lists must be in the dump with the same start and size, and every partition must end inside the
 * target; otherwise nothing is written and the reason is returned. */
#ifndef DS_PARTITION_RESTORE_H
#define DS_PARTITION_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "manifest.h"

/* Parse the dump text (len bytes, need not be NUL-terminated) and check it against m and a target of
 * target_size bytes, without writing. 0 = fine, -1 = e says why. */
int partition_restore_check(const char *dump, size_t len, const struct manifest *m, uint64_t target_size,
                            struct ds_err *e);

/* Check as above, then write the table to target (a block device or regular file, not in use). For a block
 * device the kernel is asked to re-read the table (best effort). 0 = written, -1 = e says why. */
int partition_restore_apply(const char *target, const char *dump, size_t len, const struct manifest *m,
                            struct ds_err *e);

#endif
