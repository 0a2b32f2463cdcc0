/* scan_raw.c — the fallback scanner: every block of the source, or with skip_zero only the blocks that hold a
 * non-zero byte. Reads through one bounded buffer (1 MiB, or one block if that is larger). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scan.h"

#define RAW_DEFAULT_BLOCK ((uint32_t)64 << 10)
#define RAW_IO_BUF ((size_t)1 << 20)

static bool all_zero(const uint8_t *p, size_t n)
{
    /* word-at-a-time over the aligned middle */
    while (n && ((uintptr_t)p & 7)) {
        if (*p)
            return false;
        p++;
        n--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (; n >= 32; n -= 32, w += 4)
        if (w[0] | w[1] | w[2] | w[3])
            return false;
    p = (const uint8_t *)w;
    while (n--)
        if (*p++)
            return false;
    return true;
}

static int pread_all(int fd, uint8_t *p, size_t len, uint64_t off, const char *path, struct ds_err *e)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, p + got, len - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ds_errno(e, "read error on '%s' at offset %" PRIu64, path, off + got);
        }
        if (r == 0)
            return ds_errf(e, "'%s' ended unexpectedly at offset %" PRIu64, path, off + got);
        got += (size_t)r;
    }
    return 0;
}

int scan_raw(const struct scan_src *src, bool skip_zero, uint32_t block_size, struct scan_result *out,
             struct ds_err *e)
{
    if (block_size == 0)
        block_size = RAW_DEFAULT_BLOCK;
    memset(out, 0, sizeof *out);
    strcpy(out->fstype, "raw");
    out->block_size = block_size;
    out->fs_size = src->size;
    if (src->size == 0)
        return 0;
    if (!skip_zero) {
        if (scan_result_add(out, 0, src->size))
            return ds_errf(e, "out of memory");
        return scan_result_finish(out, e);
    }
    size_t bufsz = RAW_IO_BUF;
    if (bufsz < block_size)
        bufsz = block_size;
    bufsz -= bufsz % block_size;
    uint8_t *buf = malloc(bufsz);
    if (!buf)
        return ds_errf(e, "out of memory");
    int rc = -1;
    uint64_t off = 0;
    while (off < src->size) {
        size_t chunk = src->size - off < bufsz ? (size_t)(src->size - off) : bufsz;
        if (pread_all(src->fd, buf, chunk, src->base + off, src->path, e))
            goto out;
        for (size_t pos = 0; pos < chunk; pos += block_size) {
            size_t n = chunk - pos < block_size ? chunk - pos : block_size;
            if (!all_zero(buf + pos, n) && scan_result_add(out, off + pos, n)) {
                ds_errf(e, "out of memory");
                goto out;
            }
        }
        off += chunk;
    }
    rc = scan_result_finish(out, e);
out:
    free(buf);
    if (rc)
        scan_result_free(out);
    return rc;
}

static int raw_probe(const struct scan_src *src, struct ds_err *e)
{
    (void)src;
    (void)e;
    return 1;
}

static int raw_scan(const struct scan_src *src, struct scan_result *out, struct ds_err *e)
{
    return scan_raw(src, false, 0, out, e);
}

const struct scanner scanner_raw = {.name = "raw", .probe = raw_probe, .scan = raw_scan};
