/* test_store.c — store on a regular file through an Ezio extent map with gaps: growth to dev_end, reads and
 * writes across extent boundaries land at the right device offsets, gaps are never touched, ranges outside the
 * torrent are refused, piece checks, read-only mode, pads, and (as root, when loop devices work) refusal to
 * write to the backing file of a mounted loop device. */
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "extent_map.h"
#include "metainfo.h"
#include "sha1.h"
#include "store.h"

#define GAP_BYTE 0xA5

static uint64_t rng_state = 0x1234567890abcdefULL;
static uint8_t rnd8(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

/* A torrent over explicit extents whose piece hashes match `data` (total bytes, pads as zeros). */
struct fixture {
    struct metainfo *mi;
    struct extent_map map;
    uint8_t *data;
    uint64_t total;
};

static int fixture_make(struct fixture *f, const struct extent *ext, size_t n, uint64_t piece_length)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++)
        f->total += ext[i].len;
    f->data = malloc(f->total);
    if (!f->data)
        return -1;
    uint64_t o = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < ext[i].len; k++, o++)
            f->data[o] = ext[i].pad ? 0 : rnd8();
    uint32_t np = (uint32_t)((f->total + piece_length - 1) / piece_length);
    uint8_t *hashes = malloc((size_t)np * SHA1_LEN);
    if (!hashes)
        return -1;
    for (uint32_t p = 0; p < np; p++) {
        uint64_t b = (uint64_t)p * piece_length;
        uint64_t l = f->total - b < piece_length ? f->total - b : piece_length;
        sha1(f->data + b, (size_t)l, hashes + (size_t)p * SHA1_LEN);
    }
    struct buf tor = {0};
    struct ds_err e;
    int rc = metainfo_build_ezio("sdz1", ext, n, piece_length, hashes, NULL, 0, "test_store", false, &tor, &e);
    free(hashes);
    if (rc == 0)
        rc = metainfo_parse(tor.data, tor.len, &f->mi, &e);
    buf_free(&tor);
    if (rc == 0)
        rc = extent_map_from_metainfo(f->mi, &f->map, &e);
    if (rc)
        fprintf(stderr, "  fixture: %s\n", e.msg);
    return rc;
}

static void fixture_free(struct fixture *f)
{
    extent_map_free(&f->map);
    metainfo_free(f->mi);
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* mkstemp a file under /tmp holding `size` bytes of `fill`; path written to out (≥ 64 bytes). */
static int temp_file(char *out, uint64_t size, int fill)
{
    strcpy(out, "/tmp/ds-test-store-XXXXXX");
    int fd = mkstemp(out);
    if (fd < 0)
        return -1;
    uint8_t blk[4096];
    memset(blk, fill, sizeof blk);
    for (uint64_t o = 0; o < size;) {
        size_t n = size - o < sizeof blk ? (size_t)(size - o) : sizeof blk;
        if (pwrite(fd, blk, n, (off_t)o) != (ssize_t)n) {
            close(fd);
            return -1;
        }
        o += n;
    }
    close(fd);
    return 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* The file's bytes [off, off+len) all equal v. */
static bool range_is(const char *path, uint64_t off, uint64_t len, int v)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t blk[4096];
    bool ok = true;
    while (len > 0 && ok) {
        size_t n = len < sizeof blk ? (size_t)len : sizeof blk;
        if (pread(fd, blk, n, (off_t)off) != (ssize_t)n)
            ok = false;
        for (size_t i = 0; ok && i < n; i++)
            if (blk[i] != (uint8_t)v)
                ok = false;
        off += n;
        len -= n;
    }
    close(fd);
    return ok;
}

static bool range_equals(const char *path, uint64_t off, const uint8_t *want, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t *got = malloc(len ? len : 1);
    bool ok = got && pread(fd, got, len, (off_t)off) == (ssize_t)len && memcmp(got, want, len) == 0;
    free(got);
    close(fd);
    return ok;
}

/* Every device byte outside the non-pad extents, in [0, end), equals v. */
static bool gaps_are(const char *path, const struct extent_map *m, uint64_t end, int v)
{
    uint64_t pos = 0;
    /* extents are in torrent order; these fixtures list them in ascending device order too */
    for (size_t i = 0; i < m->n; i++) {
        if (m->ext[i].pad)
            continue;
        if (m->ext[i].dev_off > pos && !range_is(path, pos, m->ext[i].dev_off - pos, v))
            return false;
        pos = m->ext[i].dev_off + m->ext[i].len;
    }
    return end <= pos || range_is(path, pos, end - pos, v);
}

/* Three extents with gaps between them (and before the first), piece length 4096: 18000 bytes, 5 pieces,
 * the last one 1616 bytes; pieces 1, 2 and 4 span extent boundaries. */
static const struct extent GAPPY[] = {
    {.dev_off = 4096, .len = 5000},
    {.dev_off = 20000, .len = 3000},
    {.dev_off = 30000, .len = 10000},
};
#define GAPPY_END 40000u

TEST(open_write_grows_file_to_dev_end)
{
    struct fixture f;
    CHECK(fixture_make(&f, GAPPY, 3, 4096) == 0);
    CHECK_EQ_INT(f.mi->num_pieces, 5);
    CHECK_EQ_INT(f.map.dev_end, GAPPY_END);
    char path[64];
    CHECK(temp_file(path, 25000, GAP_BYTE) == 0);
    struct store s;
    struct ds_err e;
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);
    CHECK(s.writable && !s.is_blockdev);
    CHECK_EQ_INT(s.dev_size, GAPPY_END);
    CHECK_EQ_INT(file_size(path), GAPPY_END);
    /* growing kept what was there and added zeros */
    CHECK(range_is(path, 0, 25000, GAP_BYTE));
    CHECK(range_is(path, 25000, GAPPY_END - 25000, 0));
    store_close(&s);
    CHECK_EQ_INT(s.fd, -1);

    /* a file that is already bigger is left at its size */
    CHECK(truncate(path, 50000) == 0);
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);
    CHECK_EQ_INT(s.dev_size, 50000);
    CHECK_EQ_INT(file_size(path), 50000);
    store_close(&s);

    /* STORE_WRITE creates a missing file */
    unlink(path);
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);
    CHECK_EQ_INT(file_size(path), GAPPY_END);
    store_close(&s);
    unlink(path);
    fixture_free(&f);
}

TEST(write_read_across_extents_at_device_offsets)
{
    struct fixture f;
    CHECK(fixture_make(&f, GAPPY, 3, 4096) == 0);
    char path[64];
    CHECK(temp_file(path, GAPPY_END, GAP_BYTE) == 0);
    struct store s;
    struct ds_err e;
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);

    /* odd-sized chunks, so many writes straddle the 5000 and 8000 boundaries */
    for (uint64_t o = 0; o < f.total;) {
        size_t n = f.total - o < 777 ? (size_t)(f.total - o) : 777;
        CHECK(store_write(&s, o, f.data + o, n, &e) == 0);
        o += n;
    }
    /* one write covering all three extents at once */
    CHECK(store_write(&s, 4000, f.data + 4000, 6000, &e) == 0);

    /* each extent holds its slice of the torrent at its device offset */
    uint64_t tor = 0;
    for (size_t i = 0; i < 3; i++) {
        CHECK(range_equals(path, GAPPY[i].dev_off, f.data + tor, (size_t)GAPPY[i].len));
        tor += GAPPY[i].len;
    }
    /* a boundary-straddling write: last 10 bytes of extent 0 and first 10 of extent 1 */
    uint8_t x[20];
    memset(x, 0x3C, sizeof x);
    CHECK(store_write(&s, 4990, x, 20, &e) == 0);
    CHECK(range_is(path, 4096 + 4990, 10, 0x3C));
    CHECK(range_is(path, 20000, 10, 0x3C));
    CHECK(range_equals(path, 4096 + 4980, f.data + 4980, 10));
    CHECK(range_equals(path, 20010, f.data + 5010, 10));
    CHECK(store_write(&s, 4990, f.data + 4990, 20, &e) == 0);

    /* the gaps (before, between and after the extents) were never written */
    CHECK(gaps_are(path, &f.map, GAPPY_END, GAP_BYTE));
    CHECK(range_is(path, 0, 4096, GAP_BYTE));
    CHECK(range_is(path, 9096, 20000 - 9096, GAP_BYTE));
    CHECK(range_is(path, 23000, 7000, GAP_BYTE));

    /* reads across boundaries return the torrent bytes */
    uint8_t *back = malloc(f.total);
    CHECK(back && store_read(&s, 0, back, f.total, &e) == 0);
    CHECK(back && !memcmp(back, f.data, f.total));
    uint8_t small[300];
    CHECK(store_read(&s, 4900, small, 300, &e) == 0); /* extent 0 → 1 */
    CHECK(!memcmp(small, f.data + 4900, 300));
    CHECK(store_read(&s, 7900, small, 300, &e) == 0); /* extent 1 → 2 */
    CHECK(!memcmp(small, f.data + 7900, 300));
    CHECK(store_read(&s, f.total - 1, small, 1, &e) == 0);
    CHECK_EQ_INT(small[0], f.data[f.total - 1]);
    /* zero-length I/O is a no-op */
    CHECK(store_read(&s, 0, small, 0, &e) == 0);
    CHECK(store_write(&s, 0, small, 0, &e) == 0);
    free(back);

    CHECK(store_sync(&s, &e) == 0);
    store_close(&s);
    unlink(path);
    fixture_free(&f);
}

TEST(out_of_range_refused_and_nothing_written)
{
    struct fixture f;
    CHECK(fixture_make(&f, GAPPY, 3, 4096) == 0);
    char path[64];
    CHECK(temp_file(path, GAPPY_END, GAP_BYTE) == 0);
    struct store s;
    struct ds_err e;
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);
    uint8_t blk[64];
    memset(blk, 0x11, sizeof blk);
    e.msg[0] = 0;
    CHECK_EQ_INT(store_write(&s, f.total, blk, 1, &e), -1);
    CHECK(strstr(e.msg, "outside") != NULL);
    CHECK_EQ_INT(store_write(&s, f.total - 1, blk, 2, &e), -1);       /* straddles the end */
    CHECK_EQ_INT(store_write(&s, f.total - 10, blk, 64, &e), -1);
    CHECK_EQ_INT(store_write(&s, UINT64_MAX, blk, 1, &e), -1);
    CHECK_EQ_INT(store_write(&s, UINT64_MAX - 10, blk, 64, &e), -1); /* off + len wraps */
    CHECK_EQ_INT(store_write(&s, 1, blk, SIZE_MAX, &e), -1);
    CHECK_EQ_INT(store_read(&s, f.total, blk, 1, &e), -1);
    CHECK_EQ_INT(store_read(&s, f.total - 1, blk, 2, &e), -1);
    CHECK_EQ_INT(store_read(&s, UINT64_MAX - 10, blk, 64, &e), -1);
    /* a refused write touched nothing: the whole file is still the fill byte */
    CHECK(range_is(path, 0, GAPPY_END, GAP_BYTE));
    CHECK_EQ_INT(file_size(path), GAPPY_END);
    /* the last byte itself is writable and lands at the end of the last extent */
    CHECK(store_write(&s, f.total - 1, blk, 1, &e) == 0);
    CHECK(range_is(path, GAPPY_END - 1, 1, 0x11));
    CHECK(range_is(path, 0, GAPPY_END - 1, GAP_BYTE));
    store_close(&s);
    unlink(path);
    fixture_free(&f);
}

TEST(check_piece)
{
    struct fixture f;
    CHECK(fixture_make(&f, GAPPY, 3, 4096) == 0);
    char path[64];
    CHECK(temp_file(path, GAPPY_END, GAP_BYTE) == 0);
    struct store s;
    struct ds_err e;
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);
    /* nothing written yet: every piece mismatches */
    for (uint32_t p = 0; p < 5; p++)
        CHECK_EQ_INT(store_check_piece(&s, p, &e), 0);
    CHECK(store_write(&s, 0, f.data, f.total, &e) == 0);
    for (uint32_t p = 0; p < 5; p++)
        CHECK_EQ_INT(store_check_piece(&s, p, &e), 1);
    /* flip one device byte in extent 1 (torrent offset 5000 + 3000 - 1 = 7999, piece 1) */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t c = (uint8_t)(f.data[7999] ^ 0xFF);
    CHECK(pwrite(fd, &c, 1, 20000 + 2999) == 1);
    CHECK_EQ_INT(store_check_piece(&s, 0, &e), 1);
    CHECK_EQ_INT(store_check_piece(&s, 1, &e), 0);
    CHECK_EQ_INT(store_check_piece(&s, 2, &e), 1);
    /* a change in a gap does not matter */
    c = 0;
    CHECK(pwrite(fd, &c, 1, 10000) == 1);
    CHECK_EQ_INT(store_check_piece(&s, 2, &e), 1);
    /* the short last piece (1616 bytes) checks exactly its bytes */
    c = (uint8_t)(f.data[f.total - 1] ^ 1);
    CHECK(pwrite(fd, &c, 1, GAPPY_END - 1) == 1);
    CHECK_EQ_INT(store_check_piece(&s, 4, &e), 0);
    close(fd);
    CHECK_EQ_INT(store_check_piece(&s, 5, &e), -1);
    CHECK_EQ_INT(store_check_piece(&s, UINT32_MAX, &e), -1);
    store_close(&s);
    unlink(path);
    fixture_free(&f);
}

TEST(read_mode)
{
    struct fixture f;
    CHECK(fixture_make(&f, GAPPY, 3, 4096) == 0);
    struct store s;
    struct ds_err e;
    /* a missing file cannot be read */
    e.msg[0] = 0;
    CHECK_EQ_INT(store_open(&s, "/tmp/ds-test-store-does-not-exist/x", STORE_READ, f.mi, &f.map, &e), -1);
    CHECK(e.msg[0] != 0);
    char path[64];
    CHECK(temp_file(path, 0, 0) == 0);
    unlink(path);
    CHECK_EQ_INT(store_open(&s, path, STORE_READ, f.mi, &f.map, &e), -1);
    CHECK_EQ_INT(file_size(path), UINT64_MAX); /* and it was not created */

    /* a file too small for dev_end is refused for reading and not grown */
    CHECK(temp_file(path, GAPPY_END - 1, GAP_BYTE) == 0);
    CHECK_EQ_INT(store_open(&s, path, STORE_READ, f.mi, &f.map, &e), -1);
    CHECK(strstr(e.msg, "too small") != NULL);
    CHECK_EQ_INT(file_size(path), GAPPY_END - 1);

    /* exact size: readable, never writable */
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    uint64_t tor = 0;
    for (size_t i = 0; i < 3; i++) {
        CHECK(pwrite(fd, f.data + tor, GAPPY[i].len, (off_t)GAPPY[i].dev_off) == (ssize_t)GAPPY[i].len);
        tor += GAPPY[i].len;
    }
    close(fd);
    CHECK(truncate(path, GAPPY_END) == 0);
    CHECK(store_open(&s, path, STORE_READ, f.mi, &f.map, &e) == 0);
    CHECK(!s.writable);
    uint8_t *back = malloc(f.total);
    CHECK(back && store_read(&s, 0, back, f.total, &e) == 0 && !memcmp(back, f.data, f.total));
    free(back);
    for (uint32_t p = 0; p < 5; p++)
        CHECK_EQ_INT(store_check_piece(&s, p, &e), 1);
    uint8_t z[8] = {0};
    CHECK_EQ_INT(store_write(&s, 0, z, sizeof z, &e), -1);
    CHECK(range_equals(path, 4096, f.data, 8));
    CHECK(store_sync(&s, &e) == 0);
    store_close(&s);

    /* a directory is neither a block device nor a regular file */
    CHECK_EQ_INT(store_open(&s, "/tmp", STORE_READ, f.mi, &f.map, &e), -1);
    CHECK_EQ_INT(store_open(&s, "/tmp", STORE_WRITE, f.mi, &f.map, &e), -1);
    unlink(path);
    fixture_free(&f);
}

TEST(pads_read_zero_and_are_not_written)
{
    /* extent, pad, extent: the pad takes torrent bytes [1000, 1048) but no device bytes */
    const struct extent ext[] = {
        {.dev_off = 512, .len = 1000},
        {.len = 48, .pad = true},
        {.dev_off = 3000, .len = 2000},
    };
    struct fixture f;
    CHECK(fixture_make(&f, ext, 3, 1024) == 0);
    CHECK_EQ_INT(f.total, 3048);
    CHECK_EQ_INT(f.map.dev_end, 5000);
    char path[64];
    CHECK(temp_file(path, 5000, GAP_BYTE) == 0);
    struct store s;
    struct ds_err e;
    CHECK(store_open(&s, path, STORE_WRITE, f.mi, &f.map, &e) == 0);
    /* write ones everywhere, including over the pad */
    uint8_t *ones = malloc(f.total);
    memset(ones, 0x01, f.total);
    CHECK(store_write(&s, 0, ones, f.total, &e) == 0);
    CHECK(range_is(path, 512, 1000, 0x01));
    CHECK(range_is(path, 1512, 3000 - 1512, GAP_BYTE)); /* the pad wrote nothing between the extents */
    CHECK(range_is(path, 3000, 2000, 0x01));
    CHECK(range_is(path, 0, 512, GAP_BYTE));
    uint8_t *back = malloc(f.total);
    CHECK(store_read(&s, 0, back, f.total, &e) == 0);
    for (size_t i = 0; i < f.total; i++)
        if (back[i] != (i >= 1000 && i < 1048 ? 0 : 1)) {
            CHECK(!"pad byte not zero or data byte wrong");
            break;
        }
    /* with the real data, piece 0 (1024 bytes incl. 24 pad bytes) and piece 1 verify */
    CHECK(store_write(&s, 0, f.data, f.total, &e) == 0);
    for (uint32_t p = 0; p < f.mi->num_pieces; p++)
        CHECK_EQ_INT(store_check_piece(&s, p, &e), 1);
    free(ones);
    free(back);
    store_close(&s);
    unlink(path);
    fixture_free(&f);
}

/* ---------- the backing file of a mounted loop device ---------- */

static struct {
    char file[64], dir[64], dev[64];
    bool attached, mounted;
} lp;

static void loop_teardown(void)
{
    char cmd[256];
    if (lp.mounted) {
        snprintf(cmd, sizeof cmd, "umount '%s' 2>/dev/null", lp.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "  note: could not unmount %s\n", lp.dir);
        lp.mounted = false;
    }
    if (lp.attached) {
        snprintf(cmd, sizeof cmd, "losetup -d '%s' 2>/dev/null", lp.dev);
        if (system(cmd) != 0)
            fprintf(stderr, "  note: could not detach %s\n", lp.dev);
        lp.attached = false;
    }
    if (lp.dir[0])
        rmdir(lp.dir);
    if (lp.file[0])
        unlink(lp.file);
    memset(&lp, 0, sizeof lp);
}

/* Returns NULL when the mounted loop device is set up, or the reason it cannot be. */
static const char *loop_setup(void)
{
    memset(&lp, 0, sizeof lp);
    if (geteuid() != 0)
        return "not running as root";
    if (system("command -v losetup >/dev/null 2>&1 && command -v mount >/dev/null 2>&1 && "
               "command -v mkfs.ext2 >/dev/null 2>&1") != 0)
        return "losetup, mount or mkfs.ext2 not found";
    if (temp_file(lp.file, 4u << 20, 0) != 0)
        return "cannot create the image file";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkfs.ext2 -q -F '%s' >/dev/null 2>&1", lp.file);
    if (system(cmd) != 0) {
        loop_teardown();
        return "mkfs.ext2 failed";
    }
    snprintf(cmd, sizeof cmd, "losetup --find --show '%s' 2>/dev/null", lp.file);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(lp.dev, sizeof lp.dev, p)) {
        if (p)
            pclose(p);
        loop_teardown();
        return "losetup could not attach a loop device";
    }
    pclose(p);
    lp.dev[strcspn(lp.dev, "\n")] = 0;
    if (strncmp(lp.dev, "/dev/loop", 9) != 0) {
        lp.dev[0] = 0;
        loop_teardown();
        return "losetup printed no loop device";
    }
    lp.attached = true;
    strcpy(lp.dir, "/tmp/ds-test-mnt-XXXXXX");
    if (!mkdtemp(lp.dir)) {
        lp.dir[0] = 0;
        loop_teardown();
        return "mkdtemp failed";
    }
    snprintf(cmd, sizeof cmd, "mount -t ext2 '%s' '%s' >/dev/null 2>&1", lp.dev, lp.dir);
    if (system(cmd) != 0) {
        loop_teardown();
        return "mounting the loop device failed (no privilege in this container?)";
    }
    lp.mounted = true;
    return NULL;
}

TEST(refuses_backing_file_of_mounted_loop)
{
    const struct extent ext[] = {{.dev_off = 8192, .len = 4096}};
    struct fixture f;
    CHECK(fixture_make(&f, ext, 1, 4096) == 0);
    uint8_t before[4096];
    CHECK(range_is(lp.file, 0, 0, 0)); /* readable */
    int fd = open(lp.file, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, before, sizeof before, 8192) == (ssize_t)sizeof before);
    close(fd);

    struct store s;
    struct ds_err e;
    e.msg[0] = 0;
    CHECK_EQ_INT(store_open(&s, lp.file, STORE_WRITE, f.mi, &f.map, &e), -1);
    CHECK(strstr(e.msg, "mounted") != NULL);
    CHECK(strstr(e.msg, lp.dir) != NULL);
    CHECK(range_equals(lp.file, 8192, before, sizeof before));
    /* reading it (seeding from it) is fine */
    CHECK(store_open(&s, lp.file, STORE_READ, f.mi, &f.map, &e) == 0);
    store_close(&s);
    fixture_free(&f);
}

int main(void)
{
    RUN(open_write_grows_file_to_dev_end);
    RUN(write_read_across_extents_at_device_offsets);
    RUN(out_of_range_refused_and_nothing_written);
    RUN(check_piece);
    RUN(read_mode);
    RUN(pads_read_zero_and_are_not_written);

    const char *why = loop_setup();
    if (why) {
        printf("skip refuses_backing_file_of_mounted_loop: %s (not counted)\n", why);
    } else {
        RUN(refuses_backing_file_of_mounted_loop);
        loop_teardown();
    }
    return check_summary();
}
