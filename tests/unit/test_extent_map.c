/* test_extent_map.c — Ezio layout mapping, pads, overlap/overflow checks, lookups. */
#include <stdlib.h>

#include "bencode.h"
#include "check.h"
#include "extent_map.h"
#include "metainfo.h"

/* Build a multi-file torrent whose files are (name, length, pad?) and parse it. piece length 16. */
struct fspec {
    const char *name;
    uint64_t len;
    bool pad;
};

static struct metainfo *mk_multi(const struct fspec *f, size_t n, const char *top)
{
    struct buf b = {0};
    uint64_t total = 0;
    buf_printf(&b, "d4:infod5:filesl");
    for (size_t i = 0; i < n; i++) {
        buf_printf(&b, "d");
        if (f[i].pad)
            buf_printf(&b, "4:attr1:p");
        buf_printf(&b, "6:lengthi%llue4:pathl", (unsigned long long)f[i].len);
        if (top)
            benc_cstr(&b, top);
        benc_cstr(&b, f[i].name);
        buf_printf(&b, "ee");
        total += f[i].len;
    }
    uint64_t np = (total + 15) / 16;
    buf_printf(&b, "e4:name4:sda112:piece lengthi16e6:pieces%llu:", (unsigned long long)(np * 20));
    for (uint64_t i = 0; i < np * 20; i++)
        buf_put_u8(&b, 0xab);
    buf_printf(&b, "ee");
    struct metainfo *mi = NULL;
    struct ds_err e;
    if (metainfo_parse(b.data, b.len, &mi, &e))
        fprintf(stderr, "  mk_multi: %s\n", e.msg);
    buf_free(&b);
    return mi;
}

/* Parse and build the map; returns 0/-1 like extent_map_from_metainfo, error in e. */
static int map_of(const struct fspec *f, size_t n, const char *top, struct extent_map *m, struct ds_err *e)
{
    struct metainfo *mi = mk_multi(f, n, top);
    if (!mi) {
        snprintf(e->msg, sizeof e->msg, "metainfo parse failed");
        return -2;
    }
    int r = extent_map_from_metainfo(mi, m, e);
    metainfo_free(mi);
    return r;
}

TEST(clonezilla_layout)
{
    /* what gen-torrent-from-ptcl writes: 32 lowercase hex digit names, ascending device offsets */
    const struct fspec f[] = {
        {"00000000000000000000000000000000", 1048576, false},
        {"00000000000000000000000000200000", 4096, false},
        {"000000000000000000000000fffff000", 8192, false},
    };
    struct extent_map m;
    struct ds_err e;
    CHECK(map_of(f, 3, NULL, &m, &e) == 0);
    CHECK_EQ_INT(m.n, 3);
    if (m.n == 3) {
        CHECK_EQ_INT(m.ext[0].dev_off, 0);
        CHECK_EQ_INT(m.ext[1].dev_off, 0x200000);
        CHECK_EQ_INT(m.ext[1].tor_off, 1048576);
        CHECK_EQ_INT(m.ext[2].dev_off, 0xfffff000ULL);
        CHECK_EQ_INT(m.ext[2].tor_off, 1048576 + 4096);
        CHECK_EQ_INT(m.total, 1048576 + 4096 + 8192);
        CHECK_EQ_INT(m.dev_end, 0xfffff000ULL + 8192);
        CHECK_EQ_INT(m.dev_bytes, m.total);
        CHECK(!m.ext[0].pad && !m.ext[1].pad && !m.ext[2].pad);
    }
    extent_map_free(&m);
    /* the last component is what counts; a directory above it is fine */
    CHECK(map_of(f, 3, "dir", &m, &e) == 0);
    CHECK(m.n == 3 && m.ext[2].dev_off == 0xfffff000ULL);
    extent_map_free(&m);
}

TEST(hex_names)
{
    struct extent_map m;
    struct ds_err e;
    struct fspec f[1] = {{"0", 10, false}};
    CHECK(map_of(f, 1, NULL, &m, &e) == 0 && m.ext[0].dev_off == 0);
    extent_map_free(&m);
    f[0].name = "1F";
    CHECK(map_of(f, 1, NULL, &m, &e) == 0 && m.ext[0].dev_off == 0x1f);
    extent_map_free(&m);
    f[0].name = "abcDEF";
    CHECK(map_of(f, 1, NULL, &m, &e) == 0 && m.ext[0].dev_off == 0xabcdef);
    extent_map_free(&m);
    /* 32 digits with the value in the low 16: fits */
    f[0].name = "0000000000000000fffffffffffffff0";
    CHECK(map_of(f, 1, NULL, &m, &e) == 0 && m.ext[0].dev_off == 0xfffffffffffffff0ULL);
    extent_map_free(&m);
    /* ... but then +length overflows */
    f[0].name = "0000000000000000ffffffffffffffff";
    CHECK(map_of(f, 1, NULL, &m, &e) == -1);
    CHECK(strstr(e.msg, "overflow") != NULL);

    static const char *const bad[] = {
        "00000000000000010000000000000000",  /* 2^64: does not fit */
        "000000000000000000000000000000000", /* 33 digits */
        "0x10", "12g", "-1", " 1", "disk.img", "1.0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f[0].name = bad[i];
        CHECK(map_of(f, 1, "x", &m, &e) == -1);
        char want[128];
        snprintf(want, sizeof want, "file 'x/%s' is not named by a hex device offset (Ezio layout)", bad[i]);
        if (!strstr(e.msg, want)) {
            fprintf(stderr, "  got '%s'\n", e.msg);
            check_cur_failed = 1;
        }
    }
}

TEST(single_file_identity)
{
    struct buf b = {0};
    buf_printf(&b, "d4:infod6:lengthi100e4:name8:disk.img12:piece lengthi64e6:pieces40:");
    for (int i = 0; i < 40; i++)
        buf_put_u8(&b, 1);
    buf_printf(&b, "ee");
    struct metainfo *mi = NULL;
    struct ds_err e;
    CHECK(metainfo_parse(b.data, b.len, &mi, &e) == 0);
    struct extent_map m;
    CHECK(mi && extent_map_from_metainfo(mi, &m, &e) == 0);
    CHECK(m.n == 1 && m.ext[0].dev_off == 0 && m.ext[0].len == 100 && m.ext[0].tor_off == 0);
    CHECK(m.total == 100 && m.dev_end == 100 && m.dev_bytes == 100);
    CHECK_EQ_INT(extent_map_find(&m, 0), 0);
    CHECK_EQ_INT(extent_map_find(&m, 99), 0);
    extent_map_free(&m);
    metainfo_free(mi);
    buf_free(&b);
}

TEST(pad_files)
{
    const struct fspec f[] = {
        {"0", 10, false},
        {"6", 6, true},  /* pad: name is irrelevant, even "6" is not parsed */
        {"1000", 16, false},
        {"anything", 0, false}, /* zero length: skipped, even though the name is not hex */
        {"pad", 16, true},
        {"100", 5, false},
    };
    struct extent_map m;
    struct ds_err e;
    CHECK(map_of(f, 6, NULL, &m, &e) == 0);
    CHECK_EQ_INT(m.n, 5);
    if (m.n == 5) {
        CHECK(m.ext[1].pad && m.ext[1].tor_off == 10 && m.ext[1].len == 6);
        CHECK(m.ext[2].tor_off == 16 && m.ext[2].dev_off == 0x1000);
        CHECK(m.ext[3].pad && m.ext[3].tor_off == 32);
        CHECK(m.ext[4].dev_off == 0x100 && m.ext[4].tor_off == 48);
        CHECK_EQ_INT(m.total, 53);
        CHECK_EQ_INT(m.dev_bytes, 31);
        CHECK_EQ_INT(m.dev_end, 0x1010);
        CHECK_EQ_INT(extent_map_find(&m, 12), 1);
        CHECK_EQ_INT(extent_map_find(&m, 47), 3);
        CHECK_EQ_INT(extent_map_find(&m, 52), 4);
    }
    extent_map_free(&m);
    /* pads do not take device space: two pads do not "overlap" */
    const struct fspec g[] = {{"0", 16, false}, {"p1", 16, true}, {"p2", 16, true}, {"10", 1, false}};
    CHECK(map_of(g, 4, NULL, &m, &e) == 0);
    extent_map_free(&m);
}

TEST(overlap_rejected)
{
    struct extent_map m;
    struct ds_err e;
    /* overlap between non-adjacent files in torrent order */
    const struct fspec f[] = {{"1000", 0x100, false}, {"0", 0x10, false}, {"10ff", 0x10, false}};
    CHECK(map_of(f, 3, NULL, &m, &e) == -1);
    CHECK(strstr(e.msg, "overlap") != NULL);
    /* same offset twice */
    const struct fspec g[] = {{"10", 1, false}, {"00000010", 1, false}};
    CHECK(map_of(g, 2, NULL, &m, &e) == -1);
    CHECK(strstr(e.msg, "overlap") != NULL);
    /* touching is fine, and torrent order need not follow device order */
    const struct fspec h[] = {{"20", 0x10, false}, {"0", 0x10, false}, {"10", 0x10, false}};
    CHECK(map_of(h, 3, NULL, &m, &e) == 0);
    CHECK(m.dev_end == 0x30 && m.ext[0].dev_off == 0x20);
    extent_map_free(&m);
}

TEST(from_list)
{
    const struct extent l[] = {{.dev_off = 4096, .len = 100}, {.dev_off = 0, .len = 50}, {.len = 14, .pad = true},
                               {.dev_off = 1 << 20, .len = 1}};
    struct extent_map m;
    struct ds_err e;
    CHECK(extent_map_from_list(l, 4, &m, &e) == 0);
    CHECK(m.n == 4 && m.total == 165 && m.dev_bytes == 151 && m.dev_end == (1 << 20) + 1);
    CHECK(m.ext[1].tor_off == 100 && m.ext[2].tor_off == 150 && m.ext[3].tor_off == 164);
    extent_map_free(&m);
    CHECK(extent_map_from_list(l, 0, &m, &e) == -1);
    const struct extent ov[] = {{.dev_off = 0, .len = 10}, {.dev_off = 9, .len = 10}};
    CHECK(extent_map_from_list(ov, 2, &m, &e) == -1 && strstr(e.msg, "overlap"));
    CHECK(m.ext == NULL && m.n == 0);
    const struct extent zl[] = {{.dev_off = 0, .len = 10}, {.dev_off = 20, .len = 0}};
    CHECK(extent_map_from_list(zl, 2, &m, &e) == -1 && strstr(e.msg, "zero length"));
    const struct extent of[] = {{.dev_off = UINT64_MAX - 5, .len = 10}};
    CHECK(extent_map_from_list(of, 1, &m, &e) == -1 && strstr(e.msg, "overflow"));
    const struct extent tot[] = {{.dev_off = 0, .len = UINT64_MAX / 2 + 1}, {.len = UINT64_MAX / 2 + 1, .pad = true}};
    CHECK(extent_map_from_list(tot, 2, &m, &e) == -1 && strstr(e.msg, "overflow"));
    extent_map_free(&m); /* safe on an emptied map */
}

TEST(shift)
{
    const struct extent l[] = {{.dev_off = 4096, .len = 100}, {.len = 14, .pad = true}, {.dev_off = 0, .len = 50}};
    struct extent_map m;
    struct ds_err e;
    CHECK(extent_map_from_list(l, 3, &m, &e) == 0);
    CHECK(extent_map_shift(&m, 1 << 20, &e) == 0);
    CHECK(m.ext[0].dev_off == (1 << 20) + 4096 && m.ext[2].dev_off == 1 << 20);
    CHECK(m.ext[1].pad && m.ext[1].tor_off == 100 && m.total == 164 && m.dev_bytes == 150);
    CHECK(m.dev_end == (1 << 20) + 4196);
    CHECK(extent_map_shift(&m, UINT64_MAX - 4000, &e) == -1 && strstr(e.msg, "beyond"));
    CHECK(m.dev_end == (1 << 20) + 4196);
    extent_map_free(&m);
}

TEST(find_binary_search)
{
    enum { N = 1000 };
    struct extent *l = calloc(N, sizeof *l);
    for (size_t i = 0; i < N; i++) {
        l[i].dev_off = (uint64_t)i * 100000;
        l[i].len = 1 + (i * 37) % 500;
    }
    struct extent_map m;
    struct ds_err e;
    CHECK(extent_map_from_list(l, N, &m, &e) == 0);
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        const struct extent *x = &m.ext[i];
        if (extent_map_find(&m, x->tor_off) != i || extent_map_find(&m, x->tor_off + x->len - 1) != i)
            bad++;
        if (x->len > 2 && extent_map_find(&m, x->tor_off + x->len / 2) != i)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(extent_map_find(&m, m.total), N); /* out of range: n */
    CHECK_EQ_INT(extent_map_find(&m, UINT64_MAX), N);
    extent_map_free(&m);
    free(l);
}

TEST(not_ezio_message)
{
    const struct fspec f[] = {{"readme.txt", 10, false}};
    struct extent_map m;
    struct ds_err e;
    CHECK(map_of(f, 1, "docs", &m, &e) == -1);
    CHECK_STR(e.msg, "file 'docs/readme.txt' is not named by a hex device offset (Ezio layout)");
}

int main(void)
{
    RUN(clonezilla_layout);
    RUN(hex_names);
    RUN(single_file_identity);
    RUN(pad_files);
    RUN(overlap_rejected);
    RUN(from_list);
    RUN(shift);
    RUN(find_binary_search);
    RUN(not_ezio_message);
    return check_summary();
}
