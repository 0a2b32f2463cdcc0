/* test_partition_restore.c — an sfdisk dump checked against a manifest and applied to an image file with
 * libfdisk; the result read back with libfdisk (disk_layout). */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "disk_layout.h"
#include "partition_restore.h"

static const char dump[] =
    "label: gpt\n"
    "label-id: 9A3C1F52-6E2B-4D7A-8C11-0F2E3D4C5B6A\n"
    "device: /dev/sda\n"
    "unit: sectors\n"
    "first-lba: 2048\n"
    "last-lba: 262110\n"
    "sector-size: 512\n"
    "\n"
    "/dev/sda1 : start=        2048, size=       81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, "
    "uuid=11111111-2222-4333-8444-555555555555, name=\"EFI\"\n"
    "/dev/sda2 : start=       83968, size=      176128, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, "
    "uuid=66666666-7777-4888-9999-AAAAAAAAAAAA, name=\"root\"\n";

static void manifest_of(struct manifest *m, struct manifest_part *p)
{
    memset(m, 0, sizeof *m);
    memset(p, 0, 2 * sizeof *p);
    m->sector_size = 512;
    m->parts = p;
    m->n_parts = 2;
    p[0] = (struct manifest_part){.number = 1, .device = "sda1", .start = 2048 * 512ull, .size = 81920 * 512ull,
                                  .torrent = "sda1.torrent"};
    p[1] = (struct manifest_part){.number = 2, .device = "sda2", .start = 83968 * 512ull, .size = 176128 * 512ull,
                                  .torrent = "sda2.torrent"};
}

TEST(check_against_manifest)
{
    struct manifest m;
    struct manifest_part p[2];
    struct ds_err e;
    manifest_of(&m, p);
    CHECK(partition_restore_check(dump, strlen(dump), &m, 128ull << 20, &e) == 0);
    /* the target is too small for partition 2 */
    CHECK(partition_restore_check(dump, strlen(dump), &m, 64ull << 20, &e) == -1 && strstr(e.msg, "does not fit"));
    /* the manifest has sda2 elsewhere */
    p[1].start += 1 << 20;
    CHECK(partition_restore_check(dump, strlen(dump), &m, 128ull << 20, &e) == -1 &&
          strstr(e.msg, "is not where the manifest has sda2"));
    /* a partition with a torrent missing from the dump */
    manifest_of(&m, p);
    p[1].number = 3;
    CHECK(partition_restore_check(dump, strlen(dump), &m, 128ull << 20, &e) == -1 &&
          strstr(e.msg, "no partition 3 for sda2"));
    /* not a dump, an unsupported label, empty, NUL bytes */
    manifest_of(&m, p);
    const char junk[] = "hello world\n";
    CHECK(partition_restore_check(junk, strlen(junk), &m, 128ull << 20, &e) == -1);
    const char sun[] = "label: sun\n/dev/sda1 : start=2048, size=100\n";
    CHECK(partition_restore_check(sun, strlen(sun), &m, 128ull << 20, &e) == -1);
    CHECK(partition_restore_check(dump, 0, &m, 128ull << 20, &e) == -1 && strstr(e.msg, "empty"));
    CHECK(partition_restore_check("label: gpt\n\0", 12, &m, 128ull << 20, &e) == -1 && strstr(e.msg, "NUL"));
}

TEST(apply_to_file)
{
    struct manifest m;
    struct manifest_part p[2];
    struct ds_err e;
    manifest_of(&m, p);
    char path[] = "/tmp/ds-test-pr-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(ftruncate(fd, 128 << 20) == 0);
    close(fd);
    CHECK(partition_restore_apply(path, dump, strlen(dump), &m, &e) == 0);
    struct disk_layout l;
    CHECK(disk_layout_read(path, 128ull << 20, &l, &e) == 1);
    CHECK_STR(l.label, "gpt");
    CHECK_STR(l.disk_id, "9A3C1F52-6E2B-4D7A-8C11-0F2E3D4C5B6A");
    CHECK(l.n_parts == 2);
    if (l.n_parts == 2) {
        CHECK(l.parts[0].start == p[0].start && l.parts[0].size == p[0].size);
        CHECK(l.parts[1].start == p[1].start && l.parts[1].size == p[1].size);
        CHECK_STR(l.parts[0].uuid, "11111111-2222-4333-8444-555555555555");
        CHECK_STR(l.parts[1].name, "root");
        CHECK_STR(l.parts[0].type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    }
    CHECK(l.has_gpt && l.gpt_alt_lba == (128ull << 20) / 512 - 1);
    disk_layout_free(&l);
    /* a dump that disagrees with the manifest is refused */
    p[0].size -= 512;
    CHECK(partition_restore_apply(path, dump, strlen(dump), &m, &e) == -1);
    unlink(path);
}

int main(void)
{
    RUN(check_against_manifest);
    RUN(apply_to_file);
    return check_summary();
}
