/* disk_layout.c — read a GPT or MBR partition table with libfdisk (read-only) and work out which areas outside
 * the partitions a copy of the disk needs. EBR chains are followed by hand (libfdisk does not say where an EBR
 * lives), with bounds and a loop limit. */
#include "disk_layout.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libfdisk.h>

#define MAX_PARTS 256
#define MAX_EBR 256

void disk_part_devname(const char *base, unsigned n, char *out, size_t outlen)
{
    size_t len = strlen(base);
    bool digit = len > 0 && base[len - 1] >= '0' && base[len - 1] <= '9';
    snprintf(out, outlen, "%s%s%u", base, digit ? "p" : "", n);
}

void disk_layout_free(struct disk_layout *l)
{
    if (!l)
        return;
    free(l->parts);
    free(l->areas);
    l->parts = NULL;
    l->areas = NULL;
    l->n_parts = l->n_areas = 0;
}

static int add_area(struct disk_layout *l, uint64_t off, uint64_t len, const char *what)
{
    if (len == 0)
        return 0;
    struct disk_area *na = realloc(l->areas, (l->n_areas + 1) * sizeof *na);
    if (!na)
        return -1;
    l->areas = na;
    struct disk_area *a = &l->areas[l->n_areas++];
    memset(a, 0, sizeof *a);
    a->off = off;
    a->len = len;
    snprintf(a->what, sizeof a->what, "%s", what);
    return 0;
}

static int cmp_part(const void *a, const void *b)
{
    const struct disk_part *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

static int cmp_area(const void *a, const void *b)
{
    const struct disk_area *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int read_sector(int fd, uint64_t off, uint8_t *buf, size_t n, const char *path, struct ds_err *e)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ds_errno(e, "cannot read '%s' at offset %" PRIu64, path, off + got);
        if (r == 0)
            return ds_errf(e, "'%s' ends at offset %" PRIu64 " inside the partition table", path, off + got);
        got += (size_t)r;
    }
    return 0;
}

static bool is_extended(uint8_t t) { return t == 0x05 || t == 0x0f || t == 0x85; }

/* Add the sector of every EBR in the extended partition's chain. */
static int add_ebrs(struct disk_layout *l, const char *path, struct ds_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_errno(e, "cannot open '%s'", path);
    uint8_t sec[512];
    int rc = -1;
    if (read_sector(fd, 0, sec, sizeof sec, path, e))
        goto out;
    uint64_t ss = l->sector_size, ext_start = 0, ext_size = 0;
    for (int i = 0; i < 4; i++) {
        const uint8_t *pe = sec + 0x1be + 16 * i;
        if (is_extended(pe[4])) {
            ext_start = le32(pe + 8);
            ext_size = le32(pe + 12);
            break;
        }
    }
    if (ext_start == 0) {
        rc = 0;
        goto out;
    }
    uint64_t rel = 0;
    for (int n = 0; n < MAX_EBR; n++) {
        uint64_t lba = ext_start + rel;
        if (rel >= ext_size || (lba + 1) * ss > l->size) {
            ds_errf(e, "'%s': EBR chain points outside the extended partition (LBA %" PRIu64 ")", path, lba);
            goto out;
        }
        if (add_area(l, lba * ss, ss, "ebr")) {
            ds_errf(e, "out of memory");
            goto out;
        }
        if (read_sector(fd, lba * ss, sec, sizeof sec, path, e))
            goto out;
        if (sec[510] != 0x55 || sec[511] != 0xaa) {
            ds_errf(e, "'%s': EBR at LBA %" PRIu64 " has no 0x55AA signature", path, lba);
            goto out;
        }
        const uint8_t *next = sec + 0x1be + 16;
        if (!is_extended(next[4]) || le32(next + 8) == 0) {
            rc = 0;
            goto out;
        }
        uint64_t nrel = le32(next + 8);
        if (nrel <= rel) {
            ds_errf(e, "'%s': EBR chain loops back at LBA %" PRIu64, path, lba);
            goto out;
        }
        rel = nrel;
    }
    ds_errf(e, "'%s': more than %d logical partitions", path, MAX_EBR);
out:
    close(fd);
    return rc;
}

static uint64_t label_u64(struct fdisk_context *cxt, int id, bool *ok)
{
    struct fdisk_labelitem *it = fdisk_new_labelitem();
    uint64_t v = 0;
    if (!it || fdisk_get_disklabel_item(cxt, id, it) != 0 || fdisk_labelitem_get_data_u64(it, &v) != 0)
        *ok = false;
    fdisk_unref_labelitem(it);
    return v;
}

int disk_layout_read(const char *path, uint64_t size, struct disk_layout *out, struct ds_err *e)
{
    memset(out, 0, sizeof *out);
    struct fdisk_context *cxt = fdisk_new_context();
    struct fdisk_table *tb = NULL;
    if (!cxt)
        return ds_errf(e, "out of memory");
    int rc = -1;
    int r = fdisk_assign_device(cxt, path, 1);
    if (r) {
        errno = -r;
        ds_errno(e, "cannot read the partition table of '%s'", path);
        goto out;
    }
    if (!fdisk_has_label(cxt)) {
        rc = 0;
        goto out;
    }
    struct fdisk_label *lb = fdisk_get_label(cxt, NULL);
    const char *lname = lb ? fdisk_label_get_name(lb) : NULL;
    if (!lname || (strcmp(lname, "gpt") && strcmp(lname, "dos"))) {
        ds_errf(e, "'%s' has a '%s' partition table; only GPT and MBR (dos) are supported", path,
                lname ? lname : "?");
        goto out;
    }
    snprintf(out->label, sizeof out->label, "%s", lname);
    out->sector_size = (uint32_t)fdisk_get_sector_size(cxt);
    out->size = size;
    if (out->sector_size < 512 || (out->sector_size & (out->sector_size - 1))) {
        ds_errf(e, "'%s': odd sector size %" PRIu32, path, out->sector_size);
        goto out;
    }
    char *id = NULL;
    if (fdisk_get_disklabel_id(cxt, &id) == 0 && id)
        snprintf(out->disk_id, sizeof out->disk_id, "%s", id);
    free(id);

    if (fdisk_get_partitions(cxt, &tb) != 0 || !tb) {
        ds_errf(e, "'%s': cannot list the partitions", path);
        goto out;
    }
    size_t nents = fdisk_table_get_nents(tb);
    uint64_t ss = out->sector_size, first_start = UINT64_MAX;
    out->parts = calloc(nents ? nents : 1, sizeof *out->parts);
    if (!out->parts) {
        ds_errf(e, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nents; i++) {
        struct fdisk_partition *pa = fdisk_table_get_partition(tb, i);
        if (!pa || !fdisk_partition_has_start(pa) || !fdisk_partition_has_size(pa) ||
            !fdisk_partition_has_partno(pa))
            continue;
        uint64_t start = (uint64_t)fdisk_partition_get_start(pa), sz = (uint64_t)fdisk_partition_get_size(pa);
        if (start > UINT64_MAX / ss || sz > UINT64_MAX / ss || start * ss > size || sz * ss > size - start * ss) {
            ds_errf(e, "'%s': partition %zu (sectors %" PRIu64 "+%" PRIu64 ") lies outside the disk (%" PRIu64
                       " bytes)",
                    path, fdisk_partition_get_partno(pa) + 1, start, sz, size);
            goto out;
        }
        if (start * ss < first_start)
            first_start = start * ss;
        if (fdisk_partition_is_container(pa))
            continue;
        if (out->n_parts >= MAX_PARTS) {
            ds_errf(e, "'%s': more than %d partitions", path, MAX_PARTS);
            goto out;
        }
        struct disk_part *p = &out->parts[out->n_parts++];
        p->number = (unsigned)fdisk_partition_get_partno(pa) + 1;
        p->start = start * ss;
        p->size = sz * ss;
        struct fdisk_parttype *t = fdisk_partition_get_type(pa);
        if (t) {
            const char *ts = fdisk_parttype_get_string(t);
            if (ts)
                snprintf(p->type, sizeof p->type, "%s", ts);
            else
                snprintf(p->type, sizeof p->type, "0x%02x", fdisk_parttype_get_code(t));
            const char *tn = fdisk_parttype_get_name(t);
            if (tn)
                snprintf(p->type_name, sizeof p->type_name, "%s", tn);
        }
        const char *nm = fdisk_partition_get_name(pa);
        if (nm)
            snprintf(p->name, sizeof p->name, "%s", nm);
        const char *uu = fdisk_partition_get_uuid(pa);
        if (uu)
            snprintf(p->uuid, sizeof p->uuid, "%s", uu);
    }
    qsort(out->parts, out->n_parts, sizeof *out->parts, cmp_part);
    for (size_t i = 1; i < out->n_parts; i++)
        if (out->parts[i - 1].start + out->parts[i - 1].size > out->parts[i].start) {
            ds_errf(e, "'%s': partitions %u and %u overlap", path, out->parts[i - 1].number, out->parts[i].number);
            goto out;
        }

    if (!strcmp(out->label, "gpt")) {
        bool ok = true;
        out->has_gpt = true;
        out->gpt_first_usable = label_u64(cxt, GPT_LABELITEM_FIRSTLBA, &ok);
        out->gpt_last_usable = label_u64(cxt, GPT_LABELITEM_LASTLBA, &ok);
        out->gpt_alt_lba = label_u64(cxt, GPT_LABELITEM_ALTLBA, &ok);
        out->gpt_entries_lba = label_u64(cxt, GPT_LABELITEM_ENTRIESLBA, &ok);
        out->gpt_n_entries = label_u64(cxt, GPT_LABELITEM_ENTRIESALLOC, &ok);
        uint64_t entries_last = label_u64(cxt, GPT_LABELITEM_ENTRIESLASTLBA, &ok);
        if (!ok || entries_last < out->gpt_entries_lba || out->gpt_alt_lba == 0) {
            ds_errf(e, "'%s': cannot read the GPT header fields", path);
            goto out;
        }
        uint64_t ent_sectors = entries_last - out->gpt_entries_lba + 1;
        if (out->gpt_alt_lba < ent_sectors || out->gpt_alt_lba > UINT64_MAX / ss ||
            (out->gpt_alt_lba + 1) * ss > size) {
            ds_errf(e, "'%s': the backup GPT header (LBA %" PRIu64 ") lies outside the disk", path,
                    out->gpt_alt_lba);
            goto out;
        }
        out->gpt_backup_off = (out->gpt_alt_lba - ent_sectors) * ss;
        out->gpt_backup_len = (ent_sectors + 1) * ss;
        uint64_t head = out->gpt_first_usable * ss;
        if (first_start != UINT64_MAX)
            head = first_start; /* the boot gap up to the first partition */
        if (add_area(out, 0, head, "head") ||
            add_area(out, out->gpt_backup_off, out->gpt_backup_len, "gpt-backup")) {
            ds_errf(e, "out of memory");
            goto out;
        }
    } else {
        uint64_t head = first_start != UINT64_MAX ? first_start : ss;
        if (head < ss)
            head = ss;
        if (add_area(out, 0, head, "head")) {
            ds_errf(e, "out of memory");
            goto out;
        }
        if (add_ebrs(out, path, e))
            goto out;
    }
    qsort(out->areas, out->n_areas, sizeof *out->areas, cmp_area);
    /* areas must not overlap each other or any partition */
    for (size_t i = 0; i < out->n_areas; i++) {
        const struct disk_area *a = &out->areas[i];
        if (i > 0 && out->areas[i - 1].off + out->areas[i - 1].len > a->off) {
            ds_errf(e, "'%s': partition table areas overlap at offset %" PRIu64, path, a->off);
            goto out;
        }
        for (size_t j = 0; j < out->n_parts; j++) {
            const struct disk_part *p = &out->parts[j];
            if (a->off < p->start + p->size && p->start < a->off + a->len) {
                ds_errf(e, "'%s': partition %u overlaps the partition table area '%s' at offset %" PRIu64, path,
                        p->number, a->what, a->off);
                goto out;
            }
        }
    }
    rc = 1;
out:
    fdisk_unref_table(tb);
    fdisk_unref_context(cxt);
    if (rc < 0)
        disk_layout_free(out);
    return rc;
}
