/* partition_restore.c — an sfdisk dump → a partition table on the target, through libfdisk's script API
 * (format and checks in partition_restore.h). */
#include "partition_restore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libfdisk.h>

#define PR_MAX_DUMP ((size_t)1 << 20)

/* libfdisk reports errors as negative errno values */
static int fdisk_err(struct ds_err *e, int r, const char *what, const char *target)
{
    errno = r < 0 ? -r : EIO;
    return ds_errno(e, "%s%s%s", what, target ? " " : "", target ? target : "");
}

static struct fdisk_script *read_dump(struct fdisk_context *cxt, const char *dump, size_t len, struct ds_err *e)
{
    if (len == 0 || len > PR_MAX_DUMP) {
        ds_errf(e, "the partition table dump is %s", len ? "too large" : "empty");
        return NULL;
    }
    if (memchr(dump, 0, len)) {
        ds_errf(e, "the partition table dump contains a NUL byte");
        return NULL;
    }
    struct fdisk_script *dp = fdisk_new_script(cxt);
    if (!dp) {
        ds_errf(e, "out of memory");
        return NULL;
    }
    FILE *f = fmemopen((void *)dump, len, "r");
    if (!f) {
        ds_errno(e, "fmemopen");
        fdisk_unref_script(dp);
        return NULL;
    }
    int r = fdisk_script_read_file(dp, f);
    fclose(f);
    if (r) {
        ds_errf(e, "the partition table dump does not parse (line %d): %s", fdisk_script_get_nlines(dp),
                strerror(r < 0 ? -r : EINVAL));
        fdisk_unref_script(dp);
        return NULL;
    }
    const char *label = fdisk_script_get_header(dp, "label");
    if (!label || (strcmp(label, "gpt") && strcmp(label, "dos"))) {
        ds_errf(e, "the partition table dump has label '%s'; only gpt and dos are supported", label ? label : "");
        fdisk_unref_script(dp);
        return NULL;
    }
    return dp;
}

/* The dump's partitions against the manifest's and the target's size (bytes, sector size ss). */
static int check_script(struct fdisk_script *dp, const struct manifest *m, uint64_t ss, uint64_t target_size,
                        struct ds_err *e)
{
    const char *hss = fdisk_script_get_header(dp, "sector-size");
    if (hss && strtoull(hss, NULL, 10) != ss)
        return ds_errf(e, "the partition table dump is for %s-byte sectors, the target has %" PRIu64, hss, ss);
    struct fdisk_table *tb = fdisk_script_get_table(dp);
    size_t n = tb ? fdisk_table_get_nents(tb) : 0;
    if (n == 0)
        return ds_errf(e, "the partition table dump lists no partition");
    for (size_t i = 0; i < n; i++) {
        struct fdisk_partition *pa = fdisk_table_get_partition(tb, i);
        if (!pa || !fdisk_partition_has_start(pa) || !fdisk_partition_has_size(pa))
            return ds_errf(e, "partition %zu of the dump has no explicit start and size", i + 1);
        uint64_t start = (uint64_t)fdisk_partition_get_start(pa), size = (uint64_t)fdisk_partition_get_size(pa);
        if (start > target_size / ss || size > target_size / ss - start)
            return ds_errf(e, "partition %zu of the dump (sectors %" PRIu64 "+%" PRIu64 ") does not fit on the "
                              "target (%" PRIu64 " bytes)", i + 1, start, size, target_size);
    }
    for (size_t k = 0; k < m->n_parts; k++) {
        const struct manifest_part *p = &m->parts[k];
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) {
            struct fdisk_partition *pa = fdisk_table_get_partition(tb, i);
            if (!fdisk_partition_has_partno(pa) || fdisk_partition_get_partno(pa) + 1 != p->number)
                continue;
            found = true;
            if ((uint64_t)fdisk_partition_get_start(pa) * ss != p->start ||
                (uint64_t)fdisk_partition_get_size(pa) * ss != p->size)
                return ds_errf(e, "partition %u in the dump (bytes %" PRIu64 "+%" PRIu64 ") is not where the "
                                  "manifest has %s (bytes %" PRIu64 "+%" PRIu64 ")", p->number,
                               (uint64_t)fdisk_partition_get_start(pa) * ss,
                               (uint64_t)fdisk_partition_get_size(pa) * ss, p->device, p->start, p->size);
        }
        if (!found && p->torrent[0])
            return ds_errf(e, "the partition table dump has no partition %u for %s", p->number, p->device);
    }
    return 0;
}

int partition_restore_check(const char *dump, size_t len, const struct manifest *m, uint64_t target_size,
                            struct ds_err *e)
{
    struct fdisk_context *cxt = fdisk_new_context();
    if (!cxt)
        return ds_errf(e, "out of memory");
    struct fdisk_script *dp = read_dump(cxt, dump, len, e);
    int rc = dp ? check_script(dp, m, m->sector_size ? m->sector_size : 512, target_size, e) : -1;
    fdisk_unref_script(dp);
    fdisk_unref_context(cxt);
    return rc;
}

int partition_restore_apply(const char *target, const char *dump, size_t len, const struct manifest *m,
                            struct ds_err *e)
{
    struct fdisk_context *cxt = fdisk_new_context();
    struct fdisk_script *dp = NULL;
    if (!cxt)
        return ds_errf(e, "out of memory");
    int rc = -1, r;
    bool assigned = false;
    if ((r = fdisk_assign_device(cxt, target, 0))) {
        fdisk_err(e, r, "cannot open", target);
        goto out;
    }
    assigned = true;
    fdisk_disable_dialogs(cxt, 1);
    uint64_t ss = fdisk_get_sector_size(cxt), size = (uint64_t)fdisk_get_nsectors(cxt) * ss;
    if (!(dp = read_dump(cxt, dump, len, e)) || check_script(dp, m, ss, size, e))
        goto out;
    if ((r = fdisk_apply_script(cxt, dp))) {
        fdisk_err(e, r, "cannot create the partition table of the dump on", target);
        goto out;
    }
    if ((r = fdisk_write_disklabel(cxt))) {
        fdisk_err(e, r, "cannot write the partition table to", target);
        goto out;
    }
    struct stat st;
    if (stat(target, &st) == 0 && S_ISBLK(st.st_mode))
        (void)fdisk_reread_partition_table(cxt);   /* best effort: the kernel may hold it busy */
    assigned = false;
    if ((r = fdisk_deassign_device(cxt, 0))) {
        fdisk_err(e, r, "cannot close", target);
        goto out;
    }
    rc = 0;
out:
    if (assigned)
        fdisk_deassign_device(cxt, 1);
    fdisk_unref_script(dp);
    fdisk_unref_context(cxt);
    return rc;
}
