/* test_extent_hash.c — piece hashing over extents (extent_hash) with its read-ahead thread (readahead): the hashes
 * equal SHA-1 of the concatenated extents piece by piece, for pieces smaller than, equal to and larger than the
 * 1 MiB read chunk, pieces spanning several extents, a non-zero base, and the same for 1, 2, 3 and 8 threads;
 * read errors (source shorter than its extents, missing source) are reported, not crashed on. */
#include "check.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "extent_hash.h"
#include "extent_map.h"
#include "readahead.h"
#include "sha1.h"

#define FILE_SIZE ((size_t)11 << 20)

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint8_t rnd8(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static char path[64];
static uint8_t *file_data;

static int make_file(void)
{
    snprintf(path, sizeof path, "/tmp/test_extent_hash.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    file_data = malloc(FILE_SIZE);
    if (!file_data)
        return -1;
    for (size_t i = 0; i < FILE_SIZE; i++)
        file_data[i] = rnd8();
    size_t done = 0;
    while (done < FILE_SIZE) {
        ssize_t w = write(fd, file_data + done, FILE_SIZE - done);
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    close(fd);
    return 0;
}

/* Extents relative to base (not piece aligned, with gaps, one of 1 byte), tor_off filled in; returns the total. */
static const uint64_t ext_src[][2] = {
    {0, 4096}, {8192, 1}, {10000, (3u << 20) + 77}, {(4u << 20) + 3, 1u << 20},
    {(5u << 20) + 512, (2u << 20) + 4095}, {(8u << 20) + 1, 1000}, {(9u << 20), (1u << 20) + 12345},
};
#define N_EXT (sizeof ext_src / sizeof ext_src[0])

static uint64_t make_extents(struct extent *x)
{
    uint64_t t = 0;
    for (size_t i = 0; i < N_EXT; i++) {
        x[i] = (struct extent){.dev_off = ext_src[i][0], .len = ext_src[i][1], .tor_off = t};
        t += ext_src[i][1];
    }
    return t;
}

/* SHA-1 of every piece of the concatenated extents, computed in one thread from memory. */
static uint8_t *reference(uint64_t base, const struct extent *x, uint64_t total, uint64_t piece)
{
    uint8_t *cat = malloc(total);
    uint64_t np = (total + piece - 1) / piece;
    uint8_t *h = malloc(np * SHA1_LEN);
    if (!cat || !h)
        return NULL;
    for (size_t i = 0; i < N_EXT; i++)
        memcpy(cat + x[i].tor_off, file_data + base + x[i].dev_off, x[i].len);
    for (uint64_t p = 0; p < np; p++) {
        uint64_t len = total - p * piece < piece ? total - p * piece : piece;
        if (sha1(cat + p * piece, len, h + p * SHA1_LEN))
            return NULL;
    }
    free(cat);
    return h;
}

static int progress_calls;
static void on_progress(void *ctx, uint64_t done)
{
    (void)ctx;
    (void)done;
    progress_calls++;
}

TEST(same_hashes_for_any_threads_and_piece_size)
{
    struct extent x[N_EXT];
    uint64_t total = make_extents(x);
    static const uint64_t pieces[] = {16384, 262144, 1u << 20, 4u << 20, 16u << 20};
    static const unsigned threads[] = {1, 2, 3, 8};
    static const uint64_t bases[] = {0, 512};
    for (size_t b = 0; b < 2; b++)
        for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
            uint8_t *ref = reference(bases[b], x, total, pieces[p]);
            CHECK(ref != NULL);
            if (!ref)
                return;
            uint64_t np = (total + pieces[p] - 1) / pieces[p];
            for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
                uint8_t *got = calloc(np, SHA1_LEN);
                struct extent_hash h = {.path = path, .base = bases[b], .ext = x, .n_ext = N_EXT,
                                        .piece = pieces[p], .threads = threads[t], .hashes = got,
                                        .progress = on_progress};
                struct ds_err e = {{0}};
                CHECK_EQ_INT(extent_hash_run(&h, &e), 0);
                CHECK(memcmp(got, ref, np * SHA1_LEN) == 0);
                CHECK_EQ_INT(h.bytes, total);
                CHECK(h.threads_used >= 1 && h.threads_used <= threads[t] && h.threads_used <= np);
                free(got);
            }
            free(ref);
        }
}

TEST(short_source_is_an_error)
{
    struct extent x[2] = {{.dev_off = 0, .len = 4096, .tor_off = 0},
                          {.dev_off = FILE_SIZE - 4096, .len = 65536, .tor_off = 4096}};
    uint8_t got[2 * SHA1_LEN];
    struct extent_hash h = {.path = path, .ext = x, .n_ext = 2, .piece = 65536, .threads = 2, .hashes = got};
    struct ds_err e = {{0}};
    CHECK_EQ_INT(extent_hash_run(&h, &e), -1);
    CHECK(strstr(e.msg, "ended unexpectedly") != NULL);
    h.path = "/nonexistent/extent_hash";
    CHECK_EQ_INT(extent_hash_run(&h, &e), -1);
    CHECK(strstr(e.msg, "cannot open") != NULL);
}

TEST(readahead_start_advance_stop)
{
    struct extent x[N_EXT];
    make_extents(x);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    struct readahead *ra = NULL;
    struct ds_err e;
    CHECK_EQ_INT(readahead_start(&ra, fd, 0, x, N_EXT, 1u << 20, &e), 0);
    for (uint64_t pos = 0; pos < (12u << 20); pos += 300000)
        readahead_advance(ra, pos);
    readahead_advance(ra, 1); /* going back is ignored */
    readahead_stop(ra);
    CHECK_EQ_INT(readahead_start(&ra, fd, 0, x, N_EXT, 1u << 20, &e), 0);
    readahead_stop(ra); /* stopped before any advance */
    readahead_stop(NULL);
    readahead_advance(NULL, 5);
    close(fd);
}

int main(void)
{
    if (make_file()) {
        fprintf(stderr, "cannot make the test file\n");
        return 1;
    }
    RUN(same_hashes_for_any_threads_and_piece_size);
    RUN(short_source_is_an_error);
    RUN(readahead_start_advance_stop);
    unlink(path);
    free(file_data);
    return check_summary();
}
