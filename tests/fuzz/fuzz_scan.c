/* fuzz_scan.c — libFuzzer target for the FAT, NTFS and XFS scanners. Not built by meson; build by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_scan.c src/scan.c \
 *         src/scan_fat.c src/scan_ntfs.c src/scan_xfs.c src/err.c -o /tmp/fuzz_scan
 *   mkdir -p /tmp/fscorpus && for f in fat12 fat16 fat32 ntfs xfs; do ...; done   (see below)
 *   /tmp/fuzz_scan -max_len=262144 -max_total_time=120 /tmp/fscorpus
 * Seeds: the head of a fresh image prefixed by the 4-byte header, e.g. for an NTFS image
 *   { printf '\x01\x00\x00\x01'; head -c 200000 ntfs.img; } >/tmp/fscorpus/ntfs
 * Input: byte 0 selects the scanner (0 FAT, 1 NTFS, 2 XFS; probe and scan), bytes 1..3 give the source size in
 * 64 KiB units beyond the data (sparse zeros, up to 16 MiB, so volume-size checks and reads past the data are
 * exercised without big inputs), the rest is the image from offset 0. The image lives in a memfd; a successful
 * scan must be sorted, disjoint, inside fs_size and inside the source. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (size < 4)
        return 0;
    if (fd < 0) {
        fd = memfd_create("fuzz_scan", 0);
        if (fd < 0)
            abort();
    }
    const struct scanner *all[] = {&scanner_fat, &scanner_ntfs, &scanner_xfs};
    const struct scanner *s = all[data[0] % 3];
    uint64_t extra = ((uint64_t)data[1] << 16 | (uint64_t)data[2] << 8 | data[3]) % 256 * 65536;
    data += 4;
    size -= 4;
    uint64_t total = size + extra;
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)total) < 0)
        abort();
    if (size && pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();

    struct scan_src src = {.fd = fd, .path = "fuzz", .base = 0, .size = total};
    struct ds_err e = {{0}};
    int p = s->probe(&src, &e);
    if (p < -1 || p > 1)
        abort();
    struct scan_result r = {0};
    int rc = s->scan(&src, &r, &e);
    if (rc == 0) {
        if (r.fs_size > total)
            abort();
        uint64_t sum = 0;
        for (size_t i = 0; i < r.n; i++) {
            if (!r.ext[i].len || r.ext[i].off + r.ext[i].len > r.fs_size)
                abort();
            if (i && r.ext[i - 1].off + r.ext[i - 1].len > r.ext[i].off)
                abort();
            sum += r.ext[i].len;
        }
        if (sum != r.used_bytes)
            abort();
    } else if (rc != -1 || !e.msg[0]) {
        abort();
    }
    scan_result_free(&r);
    return 0;
}
