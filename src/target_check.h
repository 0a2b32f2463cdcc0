/* target_check.h — checks made before a device or file is written: is it (or a partition of it, or a loop
 * device backed by it) mounted or used as swap, and how big is it. */
#ifndef DS_TARGET_CHECK_H
#define DS_TARGET_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "err.h"

/* Size in bytes of an open block device or regular file. */
int target_size(int fd, const struct stat *st, uint64_t *size, struct ds_err *e);

/* Returns 0 when the target at path (already stat'ed as st) is not in use; -1 with a message naming the mount
 * point (or swap) otherwise. For a block device: the device itself, its partitions and any device-mapper/md
 * holder are checked against /proc/self/mountinfo and /proc/swaps. For a regular file: any loop device backed
 * by it is checked the same way. */
int target_check_unused(const char *path, const struct stat *st, struct ds_err *e);

/* For a source read while others rely on its hashes (`serve DEVICE`): 0 when nothing can change its content —
 * it (or a partition of it, or a loop device backed by it) may be mounted read-only, but not read-write, and it
 * is not swap or held by device-mapper/md; -1 with a message naming the mount point otherwise. */
int target_check_unchanging(const char *path, const struct stat *st, struct ds_err *e);

#endif
