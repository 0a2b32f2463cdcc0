/* gpt_fixup.c — see gpt_fixup.h. */
#include "gpt_fixup.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t crc(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

static void set_hdr_crc(uint8_t *h, uint32_t hsize)
{
    wr32(h + 16, 0);
    wr32(h + 16, crc(h, hsize));
}

int gpt_relocate_plan(const uint8_t *lba0, const uint8_t *lba1, uint32_t ss, const uint8_t *entries,
                      size_t entries_len, uint64_t disk_sectors, uint8_t *new_lba0, uint8_t *new_lba1,
                      uint8_t *backup_hdr, struct gpt_plan *plan, struct ds_err *e)
{
    if (ss < 512 || ss > GPT_MAX_SECTOR || (ss & (ss - 1)))
        return ds_errf(e, "unsupported sector size %u", ss);
    if (memcmp(lba1, "EFI PART", 8))
        return ds_errf(e, "no GPT header at LBA 1");
    uint32_t hsize = rd32(lba1 + 12);
    if (hsize < 92 || hsize > ss)
        return ds_errf(e, "GPT header size %u is invalid", hsize);
    uint8_t tmp[GPT_MAX_SECTOR];
    memcpy(tmp, lba1, ss);
    wr32(tmp + 16, 0);
    if (crc(tmp, hsize) != rd32(lba1 + 16))
        return ds_errf(e, "the primary GPT header's CRC does not match");
    if (rd64(lba1 + 24) != 1)
        return ds_errf(e, "the primary GPT header does not say it is at LBA 1");
    uint64_t alt = rd64(lba1 + 32), first = rd64(lba1 + 40), last = rd64(lba1 + 48), elba = rd64(lba1 + 72);
    uint32_t nent = rd32(lba1 + 80), esz = rd32(lba1 + 84);
    if (esz < 128 || esz > 4096 || (esz & (esz - 1)) || nent == 0 || nent > 65536)
        return ds_errf(e, "GPT entry geometry %u x %u is unsupported", nent, esz);
    size_t elen = (size_t)nent * esz;
    if (entries_len < elen)
        return ds_errf(e, "GPT entries: %zu bytes given, %zu needed", entries_len, elen);
    if (crc(entries, elen) != rd32(lba1 + 88))
        return ds_errf(e, "the GPT partition entries' CRC does not match");
    uint64_t esec = (elen + ss - 1) / ss;
    if (disk_sectors < 2 + 2 * esec + 2 || alt >= disk_sectors + 0 || first > last || last >= alt)
        return ds_errf(e, "the GPT (backup at LBA %llu) does not fit a disk of %llu sectors",
                       (unsigned long long)alt, (unsigned long long)disk_sectors);
    /* every partition must end before the new backup entries (they do: they ended before the old ones) */
    memset(plan, 0, sizeof *plan);
    plan->old_alt_lba = alt;
    plan->backup_hdr_lba = disk_sectors - 1;
    plan->backup_entries_lba = disk_sectors - 1 - esec;
    plan->entries_lba = elba;
    plan->entries_len = elen;
    plan->new_last_usable = plan->backup_entries_lba - 1;
    if (alt == disk_sectors - 1)
        return 0;

    memcpy(new_lba1, lba1, ss);
    wr64(new_lba1 + 32, plan->backup_hdr_lba);
    wr64(new_lba1 + 48, plan->new_last_usable);
    set_hdr_crc(new_lba1, hsize);

    memcpy(backup_hdr, new_lba1, ss);
    wr64(backup_hdr + 24, plan->backup_hdr_lba);
    wr64(backup_hdr + 32, 1);
    wr64(backup_hdr + 72, plan->backup_entries_lba);
    set_hdr_crc(backup_hdr, hsize);

    /* protective MBR: the 0xEE entry starting at LBA 1 covers the disk (capped at 2^32-1 sectors) */
    memcpy(new_lba0, lba0, ss);
    if (new_lba0[510] == 0x55 && new_lba0[511] == 0xAA) {
        for (int i = 0; i < 4; i++) {
            uint8_t *pe = new_lba0 + 446 + 16 * i;
            if (pe[4] == 0xEE && rd32(pe + 8) == 1) {
                uint64_t n = disk_sectors - 1;
                wr32(pe + 12, n > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)n);
            }
        }
    }
    return 1;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off, struct ds_err *e)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? ds_errno(e, "read at %llu", (unsigned long long)off)
                         : ds_errf(e, "short read at %llu", (unsigned long long)off);
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off, struct ds_err *e)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = pwrite(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return ds_errno(e, "write at %llu", (unsigned long long)off);
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int gpt_relocate_fd(int fd, uint32_t ss, uint64_t size, struct ds_err *e)
{
    if (ss < 512 || ss > GPT_MAX_SECTOR)
        return ds_errf(e, "unsupported sector size %u", ss);
    uint8_t lba0[GPT_MAX_SECTOR], lba1[GPT_MAX_SECTOR], n0[GPT_MAX_SECTOR], n1[GPT_MAX_SECTOR],
        bh[GPT_MAX_SECTOR];
    if (pread_all(fd, lba0, ss, 0, e) || pread_all(fd, lba1, ss, ss, e))
        return -1;
    if (memcmp(lba1, "EFI PART", 8))
        return ds_errf(e, "no GPT header at LBA 1");
    uint32_t nent = rd32(lba1 + 80), esz = rd32(lba1 + 84);
    if (esz < 128 || esz > 4096 || nent == 0 || nent > 65536)
        return ds_errf(e, "GPT entry geometry %u x %u is unsupported", nent, esz);
    size_t elen = (size_t)nent * esz;
    size_t rlen = (elen + ss - 1) / ss * ss;
    uint8_t *ent = calloc(1, rlen);
    if (!ent)
        return ds_errf(e, "out of memory");
    int rc = -1;
    uint64_t elba = rd64(lba1 + 72);
    if (elba < 2 || elba > size / ss || pread_all(fd, ent, rlen, elba * ss, e))
        goto out;
    struct gpt_plan pl;
    int r = gpt_relocate_plan(lba0, lba1, ss, ent, rlen, size / ss, n0, n1, bh, &pl, e);
    if (r <= 0) {
        rc = r;
        goto out;
    }
    /* backup first, durable, then the old backup header cleared and the primary switched over */
    if (pwrite_all(fd, ent, rlen, pl.backup_entries_lba * ss, e) || pwrite_all(fd, bh, ss, pl.backup_hdr_lba * ss, e))
        goto out;
    if (fdatasync(fd)) {
        ds_errno(e, "fdatasync");
        goto out;
    }
    memset(bh, 0, ss);
    if (pl.old_alt_lba < pl.backup_entries_lba && pwrite_all(fd, bh, ss, pl.old_alt_lba * ss, e))
        goto out;
    if (pwrite_all(fd, n1, ss, ss, e) || pwrite_all(fd, n0, ss, 0, e))
        goto out;
    if (fdatasync(fd)) {
        ds_errno(e, "fdatasync");
        goto out;
    }
    rc = 1;
out:
    free(ent);
    return rc;
}
