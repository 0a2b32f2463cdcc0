/* test_partclone.c — partclone image reader: real images written by partclone.ext4 (format 0002, several checksum
 * settings) as raw, gzip, zstd and split parts; a synthetic format 0001 image built from the documented layout;
 * bitmap → extents against the source filesystem's bytes; the in-place offset arithmetic against the data stream;
 * damaged headers, bitmaps, data and truncations. Real-image cases are skipped (with a note) without partclone. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "extent_map.h"
#include "partclone.h"

static char tmp[256];
static char fsimg[300];
static bool have_partclone;
static int skipped;

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

static uint8_t *slurp(const char *p, size_t *n)
{
    int fd = open(p, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        *n = 0;
        return NULL;
    }
    uint8_t *b = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *n = got;
    return b;
}

static void spit(const char *p, const uint8_t *b, size_t n)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, b, n) == (ssize_t)n);
    close(fd);
}

/* Read the whole data stream of an image and compare it with the source filesystem's bytes at the extents. */
static bool stream_quiet;   /* cases that expect failures keep the log short */

static int check_stream(const char *const *paths, size_t n, const uint8_t *fs, size_t fs_len, bool verify)
{
    struct pc_reader *r;
    struct ds_err e;
    if (pc_open(&r, paths, n, verify, &e)) {
        if (!stream_quiet)
            fprintf(stderr, "  pc_open: %s\n", e.msg);
        return -1;
    }
    size_t ne;
    const struct pc_extent *x = pc_extents(r, &ne);
    const struct pc_info *in = pc_get_info(r);
    int bad = 0;
    uint64_t sum = 0;
    uint8_t *buf = malloc(1 << 20);
    for (size_t i = 0; i < ne && !bad; i++) {
        sum += x[i].len;
        if (i && x[i].off <= x[i - 1].off + x[i - 1].len)
            bad = 1;   /* merged and sorted */
        for (uint64_t done = 0; done < x[i].len && !bad;) {
            /* odd chunk sizes so reads straddle checksum strips */
            size_t k = x[i].len - done < 777777 ? (size_t)(x[i].len - done) : 777777;
            if (pc_read_data(r, buf, k, &e)) {
                if (!stream_quiet)
                    fprintf(stderr, "  pc_read_data: %s\n", e.msg);
                bad = 1;
            } else if (x[i].off + done + k > fs_len || memcmp(buf, fs + x[i].off + done, k)) {
                if (!stream_quiet)
                    fprintf(stderr, "  data differs in extent %zu\n", i);
                bad = 1;
            }
            done += k;
        }
    }
    if (!bad && sum != in->data_bytes)
        bad = 1;
    if (!bad && pc_read_data(r, buf, 1, &e) == 0)
        bad = 1;   /* nothing past the end */
    free(buf);
    pc_close(r);
    return bad ? -1 : 0;
}

static uint8_t *fs_bytes(size_t *n) { return slurp(fsimg, n); }

static bool need_pc(void)
{
    if (!have_partclone) {
        printf("  note: partclone.ext4 not installed; case skipped\n");
        skipped++;
    }
    return have_partclone;
}

static int make_ptcl(const char *out, const char *opts)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "partclone.ext4 -c %s -s %s -O %s -L %s/pc.log >/dev/null 2>&1", opts, fsimg, out, tmp);
    return system(cmd);
}

TEST(v2_real_raw)
{
    if (!need_pc())
        return;
    char p[300];
    snprintf(p, sizeof p, "%s/a.ptcl", tmp);
    CHECK(make_ptcl(p, "") == 0);
    struct pc_reader *r;
    struct ds_err e;
    const char *paths[1] = {p};
    CHECK(pc_open(&r, paths, 1, true, &e) == 0);
    if (!r)
        return;
    const struct pc_info *in = pc_get_info(r);
    CHECK_EQ_INT(in->version, 2);
    CHECK_STR(in->fs, "EXTFS");
    CHECK_STR(pc_fs_name(in->fs), "ext4");
    CHECK_EQ_INT(in->block_size, 1024);
    CHECK_EQ_INT(in->total_blocks, 32768);
    CHECK_EQ_INT(in->device_size, 32u << 20);
    CHECK_EQ_INT(in->checksum_mode, PC_CSM_CRC32);
    CHECK_EQ_INT(in->bitmap_mode, PC_BM_BIT);
    CHECK_EQ_INT(in->comp, PC_RAW);
    CHECK(in->reseed);
    struct stat st;
    stat(p, &st);
    CHECK_EQ_INT(in->image_bytes, st.st_size);
    CHECK_EQ_INT(in->data_offset, 110 + 32768 / 8 + 4);
    CHECK(pc_block_used(r, 0));
    CHECK(!pc_block_used(r, 32768));
    size_t n;
    pc_extents(r, &n);
    CHECK(n >= 2);
    pc_close(r);
    size_t fl;
    uint8_t *fs = fs_bytes(&fl);
    CHECK(check_stream(paths, 1, fs, fl, true) == 0);
    free(fs);
    CHECK_EQ_INT(pc_probe_file(p, &e), 1);
    CHECK_EQ_INT(pc_probe_file(fsimg, &e), 0);
}

/* The checksum variants partclone can write: none, small strips, no reseed. */
TEST(v2_checksum_modes)
{
    if (!need_pc())
        return;
    static const char *const opts[] = {"-a0", "-k 7", "-k 1", "-K", "-k 3 -K"};
    size_t fl;
    uint8_t *fs = fs_bytes(&fl);
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        char p[300];
        snprintf(p, sizeof p, "%s/m%zu.ptcl", tmp, i);
        CHECK(make_ptcl(p, opts[i]) == 0);
        const char *paths[1] = {p};
        int rc = check_stream(paths, 1, fs, fl, true);
        if (rc)
            fprintf(stderr, "  options %s\n", opts[i]);
        CHECK(rc == 0);
        struct pc_reader *r;
        struct ds_err e;
        if (pc_open(&r, paths, 1, false, &e) == 0) {
            struct stat st;
            stat(p, &st);
            CHECK_EQ_INT(pc_get_info(r)->image_bytes, st.st_size);
            if (i == 0)
                CHECK_EQ_INT(pc_get_info(r)->checksum_size, 0);
            pc_close(r);
        }
    }
    free(fs);
}

TEST(v2_compressed_and_split)
{
    if (!need_pc())
        return;
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/a.ptcl", tmp);
    size_t fl;
    uint8_t *fs = fs_bytes(&fl);
    /* gzip, zstd, gzip split at 1 MiB (first part only given, then all parts given), raw split, and two gzip
     * members concatenated (pigz-like) */
    snprintf(q, sizeof q, "%s/a.gz", tmp);
    CHECK(sh("gzip -c < %s > %s", p, q) == 0);
    const char *g[1] = {q};
    CHECK(check_stream(g, 1, fs, fl, true) == 0);
    snprintf(q, sizeof q, "%s/a.zst", tmp);
    CHECK(sh("zstd -q -c < %s > %s", p, q) == 0);
    CHECK(check_stream(g, 1, fs, fl, true) == 0);
    snprintf(q, sizeof q, "%s/sp.gz.", tmp);
    CHECK(sh("gzip -c < %s | split -b 1m - %s", p, q) == 0);
    snprintf(q, sizeof q, "%s/sp.gz.aa", tmp);
    CHECK(check_stream(g, 1, fs, fl, true) == 0);
    /* all parts given explicitly, in order */
    char part[26][300];
    const char *all[26];
    size_t np = 0;
    for (; np < 26; np++) {
        snprintf(part[np], sizeof part[np], "%s/sp.gz.a%c", tmp, (char)('a' + np));
        if (access(part[np], F_OK))
            break;
        all[np] = part[np];
    }
    CHECK(np >= 3);
    CHECK(check_stream(all, np, fs, fl, true) == 0);
    /* a missing middle part */
    stream_quiet = true;
    all[1] = all[0];
    CHECK(check_stream(all + 1, np - 1, fs, fl, true) < 0);
    stream_quiet = false;
    snprintf(q, sizeof q, "%s/rsp.", tmp);
    CHECK(sh("split -b 3m %s %s", p, q) == 0);
    snprintf(q, sizeof q, "%s/rsp.aa", tmp);
    CHECK(check_stream(g, 1, fs, fl, true) == 0);
    snprintf(q, sizeof q, "%s/two.gz", tmp);
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "head -c 1000000 %s | gzip -c > %s && tail -c +1000001 %s | gzip -c >> %s", p, q, p, q);
    CHECK(system(cmd) == 0);
    CHECK(check_stream(g, 1, fs, fl, true) == 0);
    /* truncated compressed streams fail cleanly */
    stream_quiet = true;
    size_t n;
    snprintf(q, sizeof q, "%s/a.gz", tmp);
    uint8_t *gz = slurp(q, &n);
    snprintf(q, sizeof q, "%s/t.gz", tmp);
    spit(q, gz, n / 2);
    CHECK(check_stream(g, 1, fs, fl, true) < 0);
    gz[n / 3] ^= 0xff;
    spit(q, gz, n);
    CHECK(check_stream(g, 1, fs, fl, true) < 0);
    free(gz);
    snprintf(q, sizeof q, "%s/a.zst", tmp);
    uint8_t *zs = slurp(q, &n);
    snprintf(q, sizeof q, "%s/t.zst", tmp);
    spit(q, zs, n - 10);
    CHECK(check_stream(g, 1, fs, fl, true) < 0);
    stream_quiet = false;
    free(zs);
    free(fs);
}

TEST(v2_damage)
{
    if (!need_pc())
        return;
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/a.ptcl", tmp);
    snprintf(q, sizeof q, "%s/d.ptcl", tmp);
    size_t n, fl;
    uint8_t *img = slurp(p, &n), *fs = fs_bytes(&fl);
    const char *g[1] = {q};
    struct pc_reader *r;
    struct ds_err e;
    /* every header byte flipped: refused (CRC or field checks) */
    int accepted = 0;
    for (size_t i = 0; i < 110; i++) {
        img[i] ^= 0x10;
        spit(q, img, n);
        img[i] ^= 0x10;
        if (pc_open(&r, g, 1, true, &e) == 0) {
            accepted++;
            pc_close(r);
        }
    }
    CHECK_EQ_INT(accepted, 0);
    /* bitmap byte flipped: bitmap CRC */
    img[200] ^= 1;
    spit(q, img, n);
    CHECK(pc_open(&r, g, 1, true, &e) < 0);
    CHECK(strstr(e.msg, "bitmap") != NULL);
    img[200] ^= 1;
    stream_quiet = true;
    /* data byte flipped: checksum mismatch while streaming (and only then) */
    img[n - 5000] ^= 1;
    spit(q, img, n);
    CHECK(check_stream(g, 1, fs, fl, true) < 0);
    img[n - 5000] ^= 1;
    /* truncations: header, bitmap, data (the stream must fail, never crash) */
    static const size_t cuts[] = {0, 10, 36, 109, 110, 500, 4200, 100000};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        spit(q, img, cuts[i]);
        CHECK(check_stream(g, 1, fs, fl, true) < 0);
    }
    spit(q, img, n - 1);
    CHECK(check_stream(g, 1, fs, fl, false) < 0);
    stream_quiet = false;
    free(img);
    free(fs);
}

/* In-place arithmetic: reads through the backend equal the data stream, for strips of 1024, 7 and no checksum. */
TEST(inplace_backend)
{
    if (!need_pc())
        return;
    static const char *const names[] = {"a.ptcl", "m0.ptcl", "m1.ptcl", "m3.ptcl"};
    size_t fl;
    uint8_t *fs = fs_bytes(&fl);
    for (size_t k = 0; k < 4; k++) {
        char p[300];
        snprintf(p, sizeof p, "%s/%s", tmp, names[k]);
        struct pc_reader *r;
        struct ds_err e;
        const char *g[1] = {p};
        if (pc_open(&r, g, 1, false, &e)) {
            CHECK(0);
            continue;
        }
        size_t ne;
        const struct pc_extent *x = pc_extents(r, &ne);
        struct extent *list = calloc(ne + 1, sizeof *list);
        /* split the first extent in two so the map is not already merged */
        size_t m = 0;
        for (size_t i = 0; i < ne; i++) {
            if (i == 0 && x[0].len > 4096) {
                list[m++] = (struct extent){.dev_off = x[0].off, .len = 4096};
                list[m++] = (struct extent){.dev_off = x[0].off + 4096, .len = x[0].len - 4096};
            } else {
                list[m++] = (struct extent){.dev_off = x[i].off, .len = x[i].len};
            }
        }
        struct extent_map map;
        CHECK(extent_map_from_list(list, m, &map, &e) == 0);
        uint64_t total = pc_get_info(r)->data_bytes;
        uint8_t *stream = malloc(total);
        CHECK(pc_read_data(r, stream, total, &e) == 0);
        struct store_backend b;
        CHECK(pc_inplace_backend(p, &map, &b, &e) == 0);
        uint8_t *buf = malloc(300000);
        uint64_t s = 12345;
        for (int i = 0; i < 300 && b.read; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t off = (s >> 13) % total, len = (s >> 5) % 300000 + 1;
            if (len > total - off)
                len = total - off;
            if (b.read(b.ctx, off, buf, (size_t)len, &e) || memcmp(buf, stream + off, len)) {
                fprintf(stderr, "  %s: range %llu+%llu differs\n", names[k], (unsigned long long)off,
                        (unsigned long long)len);
                CHECK(0);
                break;
            }
        }
        if (b.read) {
            CHECK(b.read(b.ctx, total, buf, 1, &e) < 0);
            b.close(b.ctx);
        }
        /* the arithmetic itself: strip boundaries */
        struct pc_info in = *pc_get_info(r);
        if (in.blocks_per_checksum) {
            uint64_t strip = (uint64_t)in.blocks_per_checksum * in.block_size;
            CHECK_EQ_INT(pc_data_to_image_offset(&in, strip - 1), in.data_offset + strip - 1);
            CHECK_EQ_INT(pc_data_to_image_offset(&in, strip), in.data_offset + strip + in.checksum_size);
        } else {
            CHECK_EQ_INT(pc_data_to_image_offset(&in, 12345), in.data_offset + 12345);
        }
        /* a map that is not the image's extents is refused */
        struct extent_map bad;
        list[0].len -= 512;
        CHECK(extent_map_from_list(list, m, &bad, &e) == 0);
        CHECK(pc_inplace_backend(p, &bad, &b, &e) < 0);
        extent_map_free(&bad);
        extent_map_free(&map);
        free(list);
        free(buf);
        free(stream);
        pc_close(r);
    }
    /* compressed images are not seeded in place */
    char p[300];
    snprintf(p, sizeof p, "%s/a.gz", tmp);
    struct extent one = {.dev_off = 0, .len = 1024};
    struct extent_map map;
    struct ds_err e;
    struct store_backend b;
    CHECK(extent_map_from_list(&one, 1, &map, &e) == 0);
    CHECK(pc_inplace_backend(p, &map, &b, &e) < 0);
    extent_map_free(&map);
    free(fs);
}

/* Format 0001 from the documented layout: 4160-byte header, byte map + "BiTmAgIc", each block + 4 bytes. */
static size_t build_v1(uint8_t *out, const uint8_t *map, uint64_t total, uint32_t bs, const uint8_t *fs,
                       uint64_t used)
{
    memset(out, 0, 4160);
    memcpy(out, "partclone-image", 15);
    memcpy(out + 15, "EXTFS", 5);
    memcpy(out + 30, "0001", 4);
    for (int k = 0; k < 4; k++)
        out[36 + k] = (uint8_t)(bs >> (8 * k));
    uint64_t dev = total * bs;
    for (int k = 0; k < 8; k++) {
        out[40 + k] = (uint8_t)(dev >> (8 * k));
        out[48 + k] = (uint8_t)(total >> (8 * k));
        out[56 + k] = (uint8_t)(used >> (8 * k));
    }
    size_t o = 4160;
    memcpy(out + o, map, total);
    o += total;
    memcpy(out + o, "BiTmAgIc", 8);
    o += 8;
    for (uint64_t b = 0; b < total; b++) {
        if (!map[b])
            continue;
        memcpy(out + o, fs + b * bs, bs);
        o += bs;
        memset(out + o, 0xab, 4);   /* the defective CRC of 0001 is not checked */
        o += 4;
    }
    return o;
}

TEST(v1_synthetic)
{
    const uint64_t total = 200;
    const uint32_t bs = 512;
    uint8_t *fs = malloc(total * bs), map[200];
    for (size_t i = 0; i < total * bs; i++)
        fs[i] = (uint8_t)(i * 7 + i / 512);
    uint64_t used = 0;
    for (size_t b = 0; b < total; b++) {
        map[b] = (b < 10 || (b >= 50 && b < 53) || b == 120 || b == 199) ? 1 : 0;
        used += map[b];
    }
    uint8_t *img = malloc(4160 + total + 8 + total * (bs + 4));
    size_t n = build_v1(img, map, total, bs, fs, used);
    char p[300];
    snprintf(p, sizeof p, "%s/v1.img", tmp);
    spit(p, img, n);
    const char *g[1] = {p};
    struct pc_reader *r;
    struct ds_err e;
    CHECK(pc_open(&r, g, 1, true, &e) == 0);
    if (r) {
        const struct pc_info *in = pc_get_info(r);
        CHECK_EQ_INT(in->version, 1);
        CHECK_EQ_INT(in->used_blocks, used);
        CHECK_EQ_INT(in->data_offset, 4160 + total + 8);
        CHECK_EQ_INT(in->image_bytes, n);
        size_t ne;
        const struct pc_extent *x = pc_extents(r, &ne);
        CHECK_EQ_INT(ne, 4);
        if (ne == 4) {
            CHECK_EQ_INT(x[0].off, 0);
            CHECK_EQ_INT(x[0].len, 10 * bs);
            CHECK_EQ_INT(x[1].off, 50 * bs);
            CHECK_EQ_INT(x[1].len, 3 * bs);
            CHECK_EQ_INT(x[3].off, 199 * bs);
        }
        pc_close(r);
    }
    CHECK(check_stream(g, 1, fs, total * bs, true) == 0);
    /* in place */
    struct extent list[4] = {{.dev_off = 0, .len = 10 * bs}, {.dev_off = 50 * bs, .len = 3 * bs},
                             {.dev_off = 120 * bs, .len = bs}, {.dev_off = 199 * bs, .len = bs}};
    struct extent_map m;
    struct store_backend b;
    CHECK(extent_map_from_list(list, 4, &m, &e) == 0);
    CHECK(pc_inplace_backend(p, &m, &b, &e) == 0);
    if (b.read) {
        uint8_t buf[3 * 512];
        CHECK(b.read(b.ctx, 10 * bs - 100, buf, sizeof buf, &e) == 0);
        CHECK(memcmp(buf, fs + 10 * bs - 100, 100) == 0);
        CHECK(memcmp(buf + 100, fs + 50 * bs, sizeof buf - 100) == 0);
        b.close(b.ctx);
    }
    extent_map_free(&m);
    /* values other than 0/1 in the byte map count when the header says so; a wrong count is refused */
    map[30] = 2;
    n = build_v1(img, map, total, bs, fs, used + 1);
    spit(p, img, n);
    CHECK(pc_open(&r, g, 1, true, &e) == 0);
    if (r) {
        CHECK(pc_block_used(r, 30));
        pc_close(r);
    }
    n = build_v1(img, map, total, bs, fs, used + 5);
    spit(p, img, n);
    CHECK(pc_open(&r, g, 1, true, &e) < 0);
    /* missing bitmap signature */
    n = build_v1(img, map, total, bs, fs, used + 1);
    img[4160 + total] = 'X';
    spit(p, img, n);
    CHECK(pc_open(&r, g, 1, true, &e) < 0);
    /* unknown version, not an image */
    n = build_v1(img, map, total, bs, fs, used + 1);
    memcpy(img + 30, "0003", 4);
    spit(p, img, n);
    CHECK(pc_open(&r, g, 1, true, &e) < 0);
    CHECK(pc_open(&r, (const char *[]){fsimg}, 1, true, &e) < 0);
    /* every truncation of a v1 image fails cleanly */
    stream_quiet = true;
    n = build_v1(img, map, total, bs, fs, used + 1);
    int ok = 0;
    for (size_t l = 0; l + 1 < n; l += 97) {
        spit(p, img, l);
        if (check_stream(g, 1, fs, total * bs, true) == 0)
            ok++;
    }
    CHECK_EQ_INT(ok, 0);
    stream_quiet = false;
    free(img);
    free(fs);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s/test_partclone.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(fsimg, sizeof fsimg, "%s/fs.img", tmp);
    have_partclone = system("command -v partclone.ext4 >/dev/null 2>&1") == 0 &&
                     system("command -v mkfs.ext4 >/dev/null 2>&1") == 0;
    if (have_partclone) {
        char cmd[2048];
        /* a 32 MiB ext4 (1 KiB blocks) with ~6 MiB of files, some compressible */
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s/d && for i in 1 2 3 4 5 6; do head -c 700000 /dev/urandom > %s/d/r$i; "
                 "yes diskswarm$i | head -c 300000 > %s/d/t$i; done && truncate -s 32M %s && "
                 "mkfs.ext4 -q -F -b 1024 -d %s/d %s >/dev/null 2>&1",
                 tmp, tmp, tmp, fsimg, tmp, fsimg);
        if (system(cmd)) {
            printf("  note: could not make an ext4 image; partclone cases skipped\n");
            have_partclone = false;
        }
    }
    RUN(v2_real_raw);
    RUN(v2_checksum_modes);
    RUN(v2_compressed_and_split);
    RUN(v2_damage);
    RUN(inplace_backend);
    RUN(v1_synthetic);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
    if (skipped)
        printf("%d case(s) skipped: partclone.ext4 missing\n", skipped);
    return check_summary();
}
