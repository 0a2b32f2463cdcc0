/* test_image_file.c — .dsimg writer/reader round trips, compression choices, ranges across pieces, the parallel
 * build pipeline, corrupt images (every truncation, byte flips), concurrent readers and seeding source lookup. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "check.h"
#include "extent_map.h"
#include "image_file.h"
#include "metainfo.h"
#include "sha1.h"
#include "store.h"

static char tmpdir[256];

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* data: piece i alternates compressible text and random bytes */
static uint8_t *make_data(uint64_t total, uint64_t pl)
{
    uint8_t *d = malloc(total);
    for (uint64_t i = 0; i < total; i++) {
        uint64_t p = i / pl;
        d[i] = p % 2 == 0 ? (uint8_t)("hello diskswarm "[i % 16]) : (uint8_t)rnd();
    }
    return d;
}

/* Write data as an image through the writer directly. */
static int write_image(const char *path, const uint8_t *d, uint64_t total, uint64_t pl, int level,
                       const uint8_t *ih)
{
    struct image_writer *w;
    struct ds_err e;
    if (image_writer_open(&w, path, pl, total, level > 0 ? IMAGE_COMP_ZSTD : IMAGE_COMP_NONE, &e))
        return -1;
    uint32_t n = (uint32_t)((total + pl - 1) / pl);
    uint8_t *buf = malloc(image_compress_bound((size_t)pl));
    for (uint32_t i = 0; i < n; i++) {
        size_t len = (size_t)(total - (uint64_t)i * pl < pl ? total - (uint64_t)i * pl : pl);
        bool z = false;
        size_t sl = len;
        const uint8_t *src = d + (uint64_t)i * pl;
        if (level > 0) {
            sl = image_compress_piece(NULL, level, src, len, buf, image_compress_bound((size_t)pl), &z);
            src = buf;
        }
        if (image_writer_append(w, i, src, sl, z, &e)) {
            free(buf);
            image_writer_abort(w);
            return -1;
        }
    }
    free(buf);
    uint8_t zero[SHA1_LEN] = {0};
    return image_writer_finish(w, ih ? ih : zero, NULL, &e);
}

static void check_ranges(struct image_file *f, const uint8_t *d, uint64_t total, int rounds)
{
    uint8_t *b = malloc(total);
    struct ds_err e;
    CHECK(image_file_read(f, 0, b, total, &e) == 0 && memcmp(b, d, total) == 0);
    for (int r = 0; r < rounds; r++) {
        uint64_t off = rnd() % total, len = rnd() % (total - off) + 1;
        if (r % 3 == 0 && len > 5000)
            len = rnd() % 5000 + 1;
        int rc = image_file_read(f, off, b, (size_t)len, &e);
        CHECK(rc == 0);
        if (rc == 0 && memcmp(b, d + off, len)) {
            fprintf(stderr, "  range %llu+%llu differs\n", (unsigned long long)off, (unsigned long long)len);
            CHECK(0);
            break;
        }
    }
    CHECK(image_file_read(f, total, b, 1, &e) < 0);
    CHECK(image_file_read(f, total - 1, b, 2, &e) < 0);
    CHECK(image_file_read(f, total, b, 0, &e) == 0);
    free(b);
}

TEST(roundtrip_raw)
{
    char p[300];
    snprintf(p, sizeof p, "%s/raw.dsimg", tmpdir);
    uint64_t pl = 16384, total = pl * 7 + 1234;
    uint8_t *d = make_data(total, pl);
    CHECK(write_image(p, d, total, pl, 0, NULL) == 0);
    struct image_file *f;
    struct ds_err e;
    CHECK(image_file_open(&f, p, 2, &e) == 0);
    if (f) {
        const struct image_info *in = image_file_info(f);
        CHECK_EQ_INT(in->piece_count, 8);
        CHECK_EQ_INT(in->zstd_pieces, 0);
        CHECK_EQ_INT(in->total_length, total);
        CHECK_EQ_INT(in->file_size, IMAGE_HEADER_SIZE + total + 8 * IMAGE_INDEX_ENTRY);
        check_ranges(f, d, total, 300);
        image_file_close(f);
    }
    struct image_info pi;
    CHECK_EQ_INT(image_file_peek(p, &pi, &e), 1);
    CHECK_EQ_INT(pi.piece_length, pl);
    free(d);
}

TEST(roundtrip_zstd_mixed)
{
    char p[300];
    snprintf(p, sizeof p, "%s/z.dsimg", tmpdir);
    uint64_t pl = 32768, total = pl * 9 + 77;
    uint8_t *d = make_data(total, pl);
    CHECK(write_image(p, d, total, pl, 3, NULL) == 0);
    struct image_file *f;
    struct ds_err e;
    CHECK(image_file_open(&f, p, 2, &e) == 0);
    if (f) {
        const struct image_info *in = image_file_info(f);
        CHECK_EQ_INT(in->piece_count, 10);
        /* even pieces compress (5 of them incl. the short last one is piece 9: random -> raw) */
        CHECK_EQ_INT(in->zstd_pieces, 5);
        CHECK(in->file_size < IMAGE_HEADER_SIZE + total);
        CHECK(in->stored_bytes < total);
        check_ranges(f, d, total, 500);
        uint8_t *cb;
        size_t cl;
        bool z;
        CHECK(image_file_read_compressed(f, 0, &cb, &cl, &z, &e) == 0 && z && cl < pl);
        free(cb);
        CHECK(image_file_read_compressed(f, 1, &cb, &cl, &z, &e) == 0 && !z && cl == pl);
        if (cb)
            CHECK(memcmp(cb, d + pl, pl) == 0);
        free(cb);
        CHECK(image_file_read_compressed(f, 10, &cb, &cl, &z, &e) < 0);
        image_file_close(f);
    }
    free(d);
}

TEST(incompressible_never_expands)
{
    uint8_t src[4096], dst[8192];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)rnd();
    bool z = true;
    size_t n = image_compress_piece(NULL, 19, src, sizeof src, dst, sizeof dst, &z);
    CHECK_EQ_INT(n, sizeof src);
    CHECK(!z);
    CHECK(memcmp(src, dst, sizeof src) == 0);
}

TEST(writer_rules)
{
    char p[300];
    snprintf(p, sizeof p, "%s/w.dsimg", tmpdir);
    struct image_writer *w;
    struct ds_err e;
    uint8_t buf[1000] = {0}, ih[SHA1_LEN] = {0};
    CHECK(image_writer_open(&w, p, 1000, 2500, IMAGE_COMP_NONE, &e) == 0);
    CHECK(image_writer_append(w, 1, buf, 1000, false, &e) < 0);     /* out of order */
    CHECK(image_writer_append(w, 0, buf, 999, false, &e) < 0);      /* raw must be the piece size */
    CHECK(image_writer_append(w, 0, buf, 100, true, &e) < 0);       /* zstd in an uncompressed image */
    CHECK(image_writer_append(w, 0, buf, 1000, false, &e) == 0);
    CHECK(image_writer_finish(w, ih, NULL, &e) < 0);                 /* pieces missing */
    CHECK(access(p, F_OK) != 0);
    CHECK(image_writer_open(&w, p, 0, 10, 0, &e) < 0);
    CHECK(image_writer_open(&w, p, 10, 0, 0, &e) < 0);
    CHECK(image_writer_open(&w, p, 10, 10, 7, &e) < 0);
    /* no temp files left behind */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tmpdir);
    CHECK(system(cmd) != 0);
}

static uint8_t *slurp(const char *p, size_t *n)
{
    int fd = open(p, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    uint8_t *b = malloc((size_t)st.st_size);
    CHECK(read(fd, b, (size_t)st.st_size) == st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return b;
}

static void spit(const char *p, const uint8_t *b, size_t n)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(write(fd, b, n) == (ssize_t)n);
    close(fd);
}

/* Open must fail on every truncation; on byte flips it must fail or, if a piece's payload changed, reads must
 * fail or return data (never crash). */
TEST(corrupt_images)
{
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/c.dsimg", tmpdir);
    snprintf(q, sizeof q, "%s/c2.dsimg", tmpdir);
    uint64_t pl = 2048, total = pl * 4 + 100;
    uint8_t *d = make_data(total, pl);
    CHECK(write_image(p, d, total, pl, 1, NULL) == 0);
    size_t n;
    uint8_t *img = slurp(p, &n);
    struct ds_err e;
    struct image_file *f;
    int opened = 0;
    for (size_t l = 0; l < n; l++) {
        spit(q, img, l);
        if (image_file_open(&f, q, 0, &e) == 0) {
            opened++;
            image_file_close(f);
        }
    }
    CHECK_EQ_INT(opened, 0);
    /* an appended byte: the index no longer ends the file */
    uint8_t *big = malloc(n + 1);
    memcpy(big, img, n);
    big[n] = 0;
    spit(q, big, n + 1);
    CHECK(image_file_open(&f, q, 0, &e) < 0);
    free(big);
    /* flip every header byte and every index byte: each must be refused */
    int accepted = 0;
    for (size_t i = 0; i < n; i++) {
        if (i >= 96 && i < IMAGE_HEADER_SIZE && i % 512)
            continue;   /* sample the zero area */
        bool meta = i < IMAGE_HEADER_SIZE || i >= n - 5 * IMAGE_INDEX_ENTRY;
        img[i] ^= 0x41;
        spit(q, img, n);
        img[i] ^= 0x41;
        if (image_file_open(&f, q, 0, &e) == 0) {
            if (meta)
                accepted++;
            uint8_t *b = malloc(total);
            (void)image_file_read(f, 0, b, total, &e);   /* payload damage: must not crash */
            free(b);
            image_file_close(f);
        }
    }
    CHECK_EQ_INT(accepted, 0);
    /* peek on garbage and on a short file */
    spit(q, (const uint8_t *)"hello", 5);
    struct image_info in;
    CHECK_EQ_INT(image_file_peek(q, &in, &e), 0);
    spit(q, img, 100);
    CHECK(image_file_peek(q, &in, &e) < 0);
    free(img);
    free(d);
}

/* Hand-made index entries that are individually plausible but overlap or point outside. */
TEST(index_semantics)
{
    char p[300];
    snprintf(p, sizeof p, "%s/s.dsimg", tmpdir);
    uint64_t pl = 1024, total = 3000;
    uint8_t *d = make_data(total, pl);
    CHECK(write_image(p, d, total, pl, 0, NULL) == 0);
    size_t n;
    uint8_t *img = slurp(p, &n);
    struct ds_err e;
    struct image_file *f;
    uint8_t *idx = img + n - 3 * IMAGE_INDEX_ENTRY;
    /* piece 1 moved so that it overlaps piece 2; then recompute the index CRC (at 72) and the header CRC (at 76) */
    uint8_t saved[8];
    memcpy(saved, idx + 16, 8);
    idx[16] = (uint8_t)(idx[16] - 1);
    uint32_t ic = (uint32_t)crc32(0, idx, 3 * IMAGE_INDEX_ENTRY);
    for (int k = 0; k < 4; k++)
        img[72 + k] = (uint8_t)(ic >> (8 * k));
    uint32_t hc = (uint32_t)crc32(0, img, 76);
    for (int k = 0; k < 4; k++)
        img[76 + k] = (uint8_t)(hc >> (8 * k));
    spit(p, img, n);
    CHECK(image_file_open(&f, p, 0, &e) < 0);
    CHECK(strstr(e.msg, "bad index entry") != NULL);
    if (!strstr(e.msg, "bad index entry"))
        fprintf(stderr, "  got: %s\n", e.msg);
    free(img);
    free(d);
}

static int fill_from(void *ctx, uint32_t piece, uint64_t off, uint8_t *buf, size_t len, struct ds_err *e)
{
    (void)piece;
    (void)e;
    memcpy(buf, (const uint8_t *)ctx + off, len);
    return 0;
}

static int fill_fail(void *ctx, uint32_t piece, uint64_t off, uint8_t *buf, size_t len, struct ds_err *e)
{
    if (piece == 5)
        return ds_errf(e, "boom at %u", piece);
    return fill_from(ctx, piece, off, buf, len, e);
}

TEST(build_pipeline)
{
    uint64_t pl = 8192, total = pl * 37 + 5;
    uint8_t *d = make_data(total, pl);
    uint32_t np = 38;
    for (int mode = 0; mode < 4; mode++) {
        char p[300];
        snprintf(p, sizeof p, "%s/b%d.dsimg", tmpdir, mode);
        struct image_writer *w = NULL;
        struct ds_err e;
        int level = mode & 1 ? 3 : 0;
        CHECK(image_writer_open(&w, p, pl, total, level ? IMAGE_COMP_ZSTD : 0, &e) == 0);
        uint8_t *h = calloc(np, SHA1_LEN);
        struct image_build b = {.piece_length = pl, .total_length = total, .n_pieces = np, .threads = 3,
                                .fill = fill_from, .fill_ctx = d, .fill_in_order = mode & 2, .w = w,
                                .zstd_level = level, .hashes = h};
        CHECK(image_build_run(&b, &e) == 0);
        for (uint32_t i = 0; i < np; i++) {
            uint8_t x[SHA1_LEN];
            uint64_t len = i + 1 < np ? pl : total - (uint64_t)i * pl;
            sha1(d + (uint64_t)i * pl, len, x);
            CHECK(memcmp(x, h + i * SHA1_LEN, SHA1_LEN) == 0);
        }
        uint8_t ih[SHA1_LEN] = {1, 2, 3};
        CHECK(image_writer_finish(w, ih, NULL, &e) == 0);
        struct image_file *f;
        CHECK(image_file_open(&f, p, 0, &e) == 0);
        if (f) {
            CHECK(memcmp(image_file_info(f)->info_hash, ih, SHA1_LEN) == 0);
            CHECK_EQ_INT(image_file_info(f)->zstd_pieces, level ? 19 : 0);
            check_ranges(f, d, total, 50);
            image_file_close(f);
        }
        free(h);
    }
    /* a fill error stops everything and reports it */
    struct image_writer *w;
    struct ds_err e;
    char p[300];
    snprintf(p, sizeof p, "%s/bf.dsimg", tmpdir);
    CHECK(image_writer_open(&w, p, pl, total, IMAGE_COMP_ZSTD, &e) == 0);
    uint8_t *h = calloc(np, SHA1_LEN);
    struct image_build b = {.piece_length = pl, .total_length = total, .n_pieces = np, .threads = 4,
                            .fill = fill_fail, .fill_ctx = d, .w = w, .zstd_level = 1, .hashes = h};
    CHECK(image_build_run(&b, &e) < 0);
    CHECK(strstr(e.msg, "boom") != NULL);
    image_writer_abort(w);
    /* hash only, in order */
    struct image_build b2 = {.piece_length = pl, .total_length = total, .n_pieces = np, .threads = 2,
                             .fill = fill_from, .fill_ctx = d, .fill_in_order = true, .hashes = h};
    CHECK(image_build_run(&b2, &e) == 0);
    free(h);
    free(d);
}

struct rd_arg {
    struct image_file *f;
    const uint8_t *d;
    uint64_t total;
    int bad;
    uint64_t seed;
};

static void *reader(void *arg)
{
    struct rd_arg *a = arg;
    uint8_t *b = malloc(70000);
    uint64_t s = a->seed;
    for (int i = 0; i < 400; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t off = (s >> 11) % a->total, len = (s >> 3) % 70000 + 1;
        if (len > a->total - off)
            len = a->total - off;
        struct ds_err e;
        if (image_file_read(a->f, off, b, (size_t)len, &e) || memcmp(b, a->d + off, len))
            a->bad++;
    }
    free(b);
    return NULL;
}

TEST(concurrent_readers)
{
    char p[300];
    snprintf(p, sizeof p, "%s/z.dsimg", tmpdir);   /* from roundtrip_zstd_mixed: rebuild to be independent */
    uint64_t pl = 16384, total = pl * 20 + 3;
    uint8_t *d = make_data(total, pl);
    for (uint64_t i = 0; i < total; i++)
        if ((i / pl) % 2)
            d[i] = (uint8_t)(i / 1000);   /* every piece compresses */
    CHECK(write_image(p, d, total, pl, 5, NULL) == 0);
    struct image_file *f;
    struct ds_err e;
    CHECK(image_file_open(&f, p, 2, &e) == 0);
    if (f) {
        CHECK_EQ_INT(image_file_info(f)->zstd_pieces, 20);   /* the 3-byte last piece stays raw */
        pthread_t t[6];
        struct rd_arg a[6];
        for (int i = 0; i < 6; i++) {
            a[i] = (struct rd_arg){f, d, total, 0, (uint64_t)i * 977 + 1};
            pthread_create(&t[i], NULL, reader, &a[i]);
        }
        for (int i = 0; i < 6; i++) {
            pthread_join(t[i], NULL);
            CHECK_EQ_INT(a[i].bad, 0);
        }
        image_file_close(f);
    }
    free(d);
}

/* seed T --from IMAGE_DIR / --from X.dsimg through image_source_open and a store */
TEST(source_open)
{
    uint64_t pl = 16384, total = pl * 5 + 999;
    uint8_t *d = make_data(total, pl);
    uint32_t np = 6;
    uint8_t *h = calloc(np, SHA1_LEN);
    for (uint32_t i = 0; i < np; i++)
        sha1(d + (uint64_t)i * pl, i + 1 < np ? pl : total - 5 * pl, h + i * SHA1_LEN);
    struct extent ext[2] = {{.dev_off = 4096, .len = 50000}, {.dev_off = 200000, .len = total - 50000}};
    struct buf tb = {0};
    struct ds_err e;
    struct metainfo *mi = NULL;
    CHECK(metainfo_build_ezio("sdz1", ext, 2, pl, h, NULL, 0, NULL, false, &tb, &e) == 0);
    CHECK(metainfo_parse(tb.data, tb.len, &mi, &e) == 0);
    struct extent_map map = {0};
    CHECK(extent_map_from_metainfo(mi, &map, &e) == 0);
    char dir[300], p[400], other[400];
    snprintf(dir, sizeof dir, "%s/imgdir", tmpdir);
    mkdir(dir, 0755);
    snprintf(other, sizeof other, "%s/aaa-other.dsimg", dir);
    uint8_t wrong[SHA1_LEN] = {9};
    CHECK(write_image(other, d, total, pl, 0, wrong) == 0);
    snprintf(p, sizeof p, "%s/sdz1.dsimg", dir);
    CHECK(write_image(p, d, total, pl, 3, mi->info_hash) == 0);
    for (int k = 0; k < 2; k++) {
        struct store st = {.fd = -1};
        int r = image_source_open(&st, k ? p : dir, mi, &map, &e);
        CHECK_EQ_INT(r, 1);
        if (r == 1) {
            for (uint32_t i = 0; i < np; i++)
                CHECK_EQ_INT(store_check_piece(&st, i, &e), 1);
            store_close(&st);
        }
    }
    struct store st = {.fd = -1};
    CHECK(image_source_open(&st, other, mi, &map, &e) < 0);          /* another torrent's image */
    CHECK(strstr(e.msg, "info-hash") != NULL);
    unlink(p);
    CHECK(image_source_open(&st, dir, mi, &map, &e) < 0);            /* nothing matches in the dir */
    snprintf(p, sizeof p, "%s/plain.img", tmpdir);
    spit(p, d, 100);
    CHECK_EQ_INT(image_source_open(&st, p, mi, &map, &e), 0);        /* a plain file: store_open's job */
    extent_map_free(&map);
    metainfo_free(mi);
    buf_free(&tb);
    free(h);
    free(d);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/test_image_file.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(roundtrip_raw);
    RUN(roundtrip_zstd_mixed);
    RUN(incompressible_never_expands);
    RUN(writer_rules);
    RUN(corrupt_images);
    RUN(index_semantics);
    RUN(build_pipeline);
    RUN(concurrent_readers);
    RUN(source_open);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
    return check_summary();
}
