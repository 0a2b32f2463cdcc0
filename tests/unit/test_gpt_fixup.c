/* test_gpt_fixup.c — moving the backup GPT to the end of a larger disk, on GPTs built here in memory (written to
 * a memfd for the fd variant): new header fields and CRCs, entries copied, old backup cleared, protective MBR
 * resized, idempotence, damaged inputs refused. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "gpt_fixup.h"

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
static uint32_t crc(const uint8_t *p, size_t n) { return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n); }

static bool hdr_crc_ok(const uint8_t *h)
{
    uint8_t t[512];
    memcpy(t, h, 92);
    wr32(t + 16, 0);
    return crc(t, rd32(h + 12)) == rd32(h + 16);
}

/* A GPT disk of n sectors of ss bytes with 128 entries of 128 bytes, two partitions. */
static uint8_t *make_disk(uint32_t ss, uint64_t n)
{
    uint8_t *d = calloc(n, ss);
    uint32_t esec = 128 * 128 / ss;
    /* protective MBR */
    uint8_t *pe = d + 446;
    pe[4] = 0xEE;
    wr32(pe + 8, 1);
    wr32(pe + 12, (uint32_t)(n - 1));
    d[510] = 0x55;
    d[511] = 0xAA;
    /* entries */
    uint8_t *ent = d + 2 * ss;
    for (int i = 0; i < 2; i++) {
        uint8_t *e = ent + 128 * i;
        memset(e, 0x11 + i, 16);      /* type */
        memset(e + 16, 0x21 + i, 16); /* unique */
        wr64(e + 32, 64 + (uint64_t)i * 256);
        wr64(e + 40, 64 + (uint64_t)i * 256 + 255);
        e[56] = 'p';
    }
    uint8_t *h = d + ss;
    memcpy(h, "EFI PART", 8);
    wr32(h + 8, 0x00010000);
    wr32(h + 12, 92);
    wr64(h + 24, 1);
    wr64(h + 32, n - 1);
    wr64(h + 40, 2 + esec);
    wr64(h + 48, n - 2 - esec);
    memset(h + 56, 0x5A, 16);
    wr64(h + 72, 2);
    wr32(h + 80, 128);
    wr32(h + 84, 128);
    wr32(h + 88, crc(ent, 128 * 128));
    wr32(h + 16, crc(h, 92));
    /* backup */
    memcpy(d + (n - 1 - esec) * ss, ent, 128 * 128);
    uint8_t *b = d + (n - 1) * ss;
    memcpy(b, h, 92);
    wr64(b + 24, n - 1);
    wr64(b + 32, 1);
    wr64(b + 72, n - 1 - esec);
    wr32(b + 16, 0);
    wr32(b + 16, crc(b, 92));
    return d;
}

static int memfd_with(const uint8_t *d, size_t len, size_t total)
{
    int fd = memfd_create("gpt", 0);
    if (fd < 0 || ftruncate(fd, (off_t)total) || pwrite(fd, d, len, 0) != (ssize_t)len)
        return -1;
    return fd;
}

static void grow_and_check(uint32_t ss)
{
    uint64_t n = 2048, big = 4096;
    uint32_t esec = 128 * 128 / ss;
    uint8_t *d = make_disk(ss, n);
    int fd = memfd_with(d, n * ss, big * ss);
    CHECK(fd >= 0);
    struct ds_err e;
    CHECK_EQ_INT(gpt_relocate_fd(fd, ss, big * ss, &e), 1);
    uint8_t *g = malloc(big * ss);
    CHECK(pread(fd, g, big * ss, 0) == (ssize_t)(big * ss));
    const uint8_t *h = g + ss, *b = g + (big - 1) * ss;
    CHECK(hdr_crc_ok(h));
    CHECK_EQ_INT(rd64(h + 24), 1);
    CHECK_EQ_INT(rd64(h + 32), big - 1);
    CHECK_EQ_INT(rd64(h + 40), 2 + esec);
    CHECK_EQ_INT(rd64(h + 48), big - 2 - esec);
    CHECK_EQ_INT(rd64(h + 72), 2);
    CHECK(!memcmp(b, "EFI PART", 8));
    CHECK(hdr_crc_ok(b));
    CHECK_EQ_INT(rd64(b + 24), big - 1);
    CHECK_EQ_INT(rd64(b + 32), 1);
    CHECK_EQ_INT(rd64(b + 48), big - 2 - esec);
    CHECK_EQ_INT(rd64(b + 72), big - 1 - esec);
    CHECK(!memcmp(b + 56, h + 56, 16));           /* disk GUID */
    CHECK_EQ_INT(rd32(b + 88), rd32(h + 88));
    CHECK(!memcmp(g + (big - 1 - esec) * ss, g + 2 * ss, 128 * 128));
    CHECK_EQ_INT(crc(g + (big - 1 - esec) * ss, 128 * 128), rd32(b + 88));
    /* the old backup header is gone, the partitions untouched */
    static const uint8_t zero[4096];
    CHECK(!memcmp(g + (n - 1) * ss, zero, ss));
    CHECK(!memcmp(g + 2 * ss, d + 2 * ss, 128 * 128));
    CHECK_EQ_INT(rd32(g + 446 + 12), big - 1);
    CHECK_EQ_INT(g[446 + 4], 0xEE);
    /* a second run has nothing to do and changes nothing */
    CHECK_EQ_INT(gpt_relocate_fd(fd, ss, big * ss, &e), 0);
    uint8_t *g2 = malloc(big * ss);
    CHECK(pread(fd, g2, big * ss, 0) == (ssize_t)(big * ss));
    CHECK(!memcmp(g, g2, big * ss));
    free(g2);
    free(g);
    free(d);
    close(fd);
}

TEST(relocate_512) { grow_and_check(512); }
TEST(relocate_4096) { grow_and_check(4096); }

TEST(same_size_nothing_to_do)
{
    uint8_t *d = make_disk(512, 2048);
    int fd = memfd_with(d, 2048 * 512, 2048 * 512);
    struct ds_err e;
    CHECK_EQ_INT(gpt_relocate_fd(fd, 512, 2048 * 512, &e), 0);
    uint8_t *g = malloc(2048 * 512);
    CHECK(pread(fd, g, 2048 * 512, 0) == 2048 * 512);
    CHECK(!memcmp(g, d, 2048 * 512));
    free(g);
    free(d);
    close(fd);
}

TEST(damaged_refused)
{
    struct ds_err e;
    uint8_t *d = make_disk(512, 2048);
    /* header CRC */
    d[512 + 60] ^= 1;
    int fd = memfd_with(d, 2048 * 512, 4096 * 512);
    CHECK_EQ_INT(gpt_relocate_fd(fd, 512, 4096 * 512, &e), -1);
    CHECK(strstr(e.msg, "CRC") != NULL);
    close(fd);
    d[512 + 60] ^= 1;
    /* entries CRC */
    d[2 * 512 + 56] ^= 1;
    fd = memfd_with(d, 2048 * 512, 4096 * 512);
    CHECK_EQ_INT(gpt_relocate_fd(fd, 512, 4096 * 512, &e), -1);
    CHECK(strstr(e.msg, "entries") != NULL);
    close(fd);
    d[2 * 512 + 56] ^= 1;
    /* no GPT at all */
    memset(d + 512, 0, 512);
    fd = memfd_with(d, 2048 * 512, 4096 * 512);
    CHECK_EQ_INT(gpt_relocate_fd(fd, 512, 4096 * 512, &e), -1);
    close(fd);
    free(d);
    /* a disk smaller than the GPT says */
    d = make_disk(512, 4096);
    fd = memfd_with(d, 2048 * 512, 2048 * 512);
    CHECK_EQ_INT(gpt_relocate_fd(fd, 512, 2048 * 512, &e), -1);
    close(fd);
    free(d);
}

TEST(plan_is_sans_io)
{
    uint8_t *d = make_disk(512, 2048);
    uint8_t n0[512], n1[512], bh[512];
    struct gpt_plan pl;
    struct ds_err e;
    CHECK_EQ_INT(gpt_relocate_plan(d, d + 512, 512, d + 1024, 128 * 128, 1u << 20, n0, n1, bh, &pl, &e), 1);
    CHECK_EQ_INT(pl.backup_hdr_lba, (1u << 20) - 1);
    CHECK_EQ_INT(pl.backup_entries_lba, (1u << 20) - 33);
    CHECK_EQ_INT(pl.old_alt_lba, 2047);
    CHECK(hdr_crc_ok(n1) && hdr_crc_ok(bh));
    /* entries shorter than the header says are refused */
    CHECK_EQ_INT(gpt_relocate_plan(d, d + 512, 512, d + 1024, 512, 1u << 20, n0, n1, bh, &pl, &e), -1);
    /* a huge disk caps the protective MBR at 2^32-1 sectors */
    CHECK_EQ_INT(gpt_relocate_plan(d, d + 512, 512, d + 1024, 128 * 128, (uint64_t)1 << 33, n0, n1, bh, &pl, &e), 1);
    CHECK_EQ_INT(rd32(n0 + 446 + 12), 0xFFFFFFFFu);
    free(d);
}

int main(void)
{
    RUN(relocate_512);
    RUN(relocate_4096);
    RUN(same_size_nothing_to_do);
    RUN(damaged_refused);
    RUN(plan_is_sans_io);
    return check_summary();
}
