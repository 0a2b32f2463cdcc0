/* test_metainfo.c — .torrent loading/validation and the Ezio builder. */
#include <stdlib.h>
#include <unistd.h>

#include "bencode.h"
#include "check.h"
#include "extent_map.h"
#include "metainfo.h"

/* Assemble "d" outer_pre "4:infod" info_pre "6:pieces" <npieces*20 bytes> info_post "e" outer_post "e".
 * Keys must be passed in sorted order by the caller. */
static void mk(struct buf *b, const char *outer_pre, const char *info_pre, size_t npieces, const char *info_post,
               const char *outer_post)
{
    b->len = b->off = 0;
    buf_printf(b, "d%s4:infod%s6:pieces%zu:", outer_pre, info_pre, npieces * 20);
    for (size_t i = 0; i < npieces * 20; i++)
        buf_put_u8(b, (uint8_t)(i * 7));
    buf_printf(b, "%se%se", info_post, outer_post);
}

static struct metainfo *parse_ok(struct buf *b)
{
    struct metainfo *mi = NULL;
    struct ds_err e = {{0}};
    if (metainfo_parse(b->data, b->len, &mi, &e)) {
        fprintf(stderr, "  unexpected parse error: %s\n", e.msg);
        return NULL;
    }
    return mi;
}

/* Parse must fail with a message containing `want` (if non-NULL). */
static int parse_fails(struct buf *b, const char *want)
{
    struct metainfo *mi = NULL;
    struct ds_err e = {{0}};
    if (metainfo_parse(b->data, b->len, &mi, &e) == 0) {
        fprintf(stderr, "  parse accepted invalid torrent (want error '%s')\n", want ? want : "");
        metainfo_free(mi);
        return 0;
    }
    if (mi)
        return 0;
    if (want && !strstr(e.msg, want)) {
        fprintf(stderr, "  error '%s' does not mention '%s'\n", e.msg, want);
        return 0;
    }
    return e.msg[0] != 0;
}

TEST(single_file)
{
    struct buf b = {0};
    mk(&b, "8:announce13:http://t/annc", "6:lengthi100000e4:name8:disk.img12:piece lengthi32768e", 4, "",
       "");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi != NULL);
    if (mi) {
        CHECK_STR(mi->name, "disk.img");
        CHECK(!mi->multi_file);
        CHECK_EQ_INT(mi->total_length, 100000);
        CHECK_EQ_INT(mi->piece_length, 32768);
        CHECK_EQ_INT(mi->num_pieces, 4);
        CHECK_EQ_INT(mi->num_files, 1);
        CHECK_STR(mi->files[0].path, "disk.img");
        CHECK_STR(mi->files[0].last, "disk.img");
        CHECK_EQ_INT(mi->files[0].length, 100000);
        CHECK_EQ_INT(mi->num_trackers, 1);
        CHECK_STR(mi->trackers[0], "http://t/annc");
        CHECK(!mi->is_private);
        CHECK(mi->created_by == NULL && mi->comment == NULL && mi->creation_date == 0);
        CHECK_EQ_INT(metainfo_piece_size(mi, 0), 32768);
        CHECK_EQ_INT(metainfo_piece_size(mi, 3), 100000 - 3 * 32768);
        CHECK_EQ_INT(metainfo_piece_size(mi, 4), 0);
        CHECK(mi->piece_hashes[21] == (uint8_t)(21 * 7));
    }
    metainfo_free(mi);
    buf_free(&b);
}

TEST(multi_file_paths_and_offsets)
{
    struct buf b = {0};
    mk(&b, "",
       "5:filesld6:lengthi10e4:pathl3:dir3:sub1:aeed6:lengthi0e4:pathl5:emptyeed6:lengthi22e4:pathl1:beee"
       "4:name4:root12:piece lengthi16e",
       2, "7:privatei1e", "");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi != NULL);
    if (mi) {
        CHECK(mi->multi_file);
        CHECK_EQ_INT(mi->num_files, 3);
        CHECK_STR(mi->files[0].path, "dir/sub/a");
        CHECK_STR(mi->files[0].last, "a");
        CHECK_EQ_INT(mi->files[1].offset, 10);
        CHECK_EQ_INT(mi->files[1].length, 0);
        CHECK_STR(mi->files[2].path, "b");
        CHECK_EQ_INT(mi->files[2].offset, 10);
        CHECK_EQ_INT(mi->total_length, 32);
        CHECK(mi->is_private);
        CHECK_EQ_INT(mi->num_trackers, 0);
    }
    metainfo_free(mi);
    buf_free(&b);
}

TEST(piece_count_checks)
{
    struct buf b = {0};
    const char *info = "6:lengthi100e4:name1:x12:piece lengthi10e";
    mk(&b, "", info, 10, "", "");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi && mi->num_pieces == 10);
    metainfo_free(mi);
    mk(&b, "", info, 9, "", "");
    CHECK(parse_fails(&b, "piece count mismatch"));
    mk(&b, "", info, 11, "", "");
    CHECK(parse_fails(&b, "piece count mismatch"));
    mk(&b, "", info, 0, "", "");
    CHECK(parse_fails(&b, "piece count mismatch"));
    /* pieces not a multiple of 20 */
    b.len = 0;
    buf_printf(&b, "d4:infod6:lengthi100e4:name1:x12:piece lengthi100e6:pieces19:%019de", 0);
    buf_printf(&b, "e");
    CHECK(parse_fails(&b, "multiple of 20"));
    /* piece length: any positive value on load, not zero or negative */
    mk(&b, "", "6:lengthi100e4:name1:x12:piece lengthi1000e", 1, "", "");
    mi = parse_ok(&b);
    CHECK(mi && mi->num_pieces == 1 && metainfo_piece_size(mi, 0) == 100);
    metainfo_free(mi);
    mk(&b, "", "6:lengthi100e4:name1:x12:piece lengthi0e", 1, "", "");
    CHECK(parse_fails(&b, "piece length"));
    mk(&b, "", "6:lengthi100e4:name1:x12:piece lengthi-16e", 1, "", "");
    CHECK(parse_fails(&b, "piece length"));
    mk(&b, "", "6:lengthi100e4:name1:x12:piece length2:16", 1, "", "");
    CHECK(parse_fails(&b, "piece length"));
    buf_free(&b);
}

TEST(structure_errors)
{
    struct buf b = {0};
    buf_printf(&b, "le");
    CHECK(parse_fails(&b, "not a dictionary"));
    b.len = 0;
    buf_printf(&b, "d8:announce1:xe");
    CHECK(parse_fails(&b, "no 'info'"));
    b.len = 0;
    buf_printf(&b, "d4:infoi1ee");
    CHECK(parse_fails(&b, "'info' is not"));
    mk(&b, "", "4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "neither"));
    mk(&b, "", "5:filesld6:lengthi1e4:pathl1:aeee6:lengthi1e4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "both"));
    mk(&b, "", "6:lengthi0e4:name1:x12:piece lengthi16e", 0, "", "");
    CHECK(parse_fails(&b, "total length 0"));
    mk(&b, "", "6:lengthi-1e4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "negative"));
    mk(&b, "", "5:filesle4:name1:x12:piece lengthi16e", 0, "", "");
    CHECK(parse_fails(&b, "empty"));
    mk(&b, "", "5:filesld6:lengthi-5e4:pathl1:aeee4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "negative"));
    mk(&b, "", "5:filesld4:pathl1:aeee4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "length"));
    mk(&b, "", "5:filesld6:lengthi5e4:pathleee4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "empty path"));
    mk(&b, "", "5:filesld6:lengthi5e4:path1:aee4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "path"));
    mk(&b, "", "5:filesli1ee4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "not a dictionary"));
    mk(&b, "", "5:filesld6:lengthi5e4:pathli1eeee4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "not a string"));
    mk(&b, "", "6:lengthi5e12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "name"));
    b.len = 0;
    buf_printf(&b, "d4:infod6:lengthi5e4:name1:x12:piece lengthi16e6:piecesi0eee");
    CHECK(parse_fails(&b, "pieces"));
    /* trailing garbage after a valid torrent */
    mk(&b, "", "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "", "");
    buf_put_u8(&b, 'x');
    CHECK(parse_fails(&b, "trailing"));
    /* empty input */
    struct metainfo *mi = (struct metainfo *)&b; /* must be reset to NULL */
    struct ds_err e;
    CHECK(metainfo_parse((const uint8_t *)"", 0, &mi, &e) == -1 && mi == NULL);
    buf_free(&b);
}

TEST(path_components_rejected)
{
    static const char *const bad[] = {"0:", "1:.", "2:..", "3:a/b", "1:/", "4:../x"};
    struct buf b = {0};
    char info[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* as the last component */
        snprintf(info, sizeof info, "5:filesld6:lengthi5e4:pathl3:dir%seee4:name1:x12:piece lengthi16e", bad[i]);
        mk(&b, "", info, 1, "", "");
        CHECK(parse_fails(&b, "file 0"));
        /* as a middle component */
        snprintf(info, sizeof info, "5:filesld6:lengthi5e4:pathl%s1:zeee4:name1:x12:piece lengthi16e", bad[i]);
        mk(&b, "", info, 1, "", "");
        CHECK(parse_fails(&b, "path component"));
        /* as the name */
        snprintf(info, sizeof info, "6:lengthi5e4:name%s12:piece lengthi16e", bad[i]);
        mk(&b, "", info, 1, "", "");
        CHECK(parse_fails(&b, "'info.name'"));
    }
    /* NUL inside a component and inside the name */
    b.len = 0;
    buf_printf(&b, "d4:infod5:filesld6:lengthi5e4:pathl3:a");
    buf_put_u8(&b, 0);
    buf_printf(&b, "beee4:name1:x12:piece lengthi16e6:pieces20:");
    buf_put(&b, "01234567890123456789", 20);
    buf_printf(&b, "ee");
    CHECK(parse_fails(&b, "NUL"));
    b.len = 0;
    buf_printf(&b, "d4:infod6:lengthi5e4:name3:a");
    buf_put_u8(&b, 0);
    buf_printf(&b, "b12:piece lengthi16e6:pieces20:");
    buf_put(&b, "01234567890123456789", 20);
    buf_printf(&b, "ee");
    CHECK(parse_fails(&b, "NUL"));
    /* harmless dots are fine */
    mk(&b, "", "5:filesld6:lengthi5e4:pathl3:...4:.a.beee4:name2:.x12:piece lengthi16e", 1, "", "");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi && !strcmp(mi->files[0].path, ".../.a.b"));
    metainfo_free(mi);
    buf_free(&b);
}

TEST(total_overflow)
{
    struct buf b = {0};
    mk(&b, "",
       "5:filesld6:lengthi9223372036854775807e4:pathl1:aeed6:lengthi9223372036854775807e4:pathl1:beed"
       "6:lengthi9223372036854775807e4:pathl1:ceee4:name1:x12:piece lengthi9223372036854775807e",
       3, "", "");
    CHECK(parse_fails(&b, "overflow"));
    /* huge total with a tiny piece length: piece count mismatch, never a giant allocation */
    mk(&b, "", "6:lengthi9223372036854775807e4:name1:x12:piece lengthi1e", 1, "", "");
    CHECK(parse_fails(&b, "piece count"));
    buf_free(&b);
}

TEST(trackers_and_descriptive_fields)
{
    struct buf b = {0};
    mk(&b,
       "8:announce5:http1"
       "13:announce-listll5:http15:http2el0:el5:http35:http2ee"
       "7:comment5:hello10:created by13:mktorrent 1.113:creation datei1700000000e",
       "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "", "");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi != NULL);
    if (mi) {
        CHECK_EQ_INT(mi->num_trackers, 3);
        if (mi->num_trackers == 3) {
            CHECK_STR(mi->trackers[0], "http1");
            CHECK_STR(mi->trackers[1], "http2");
            CHECK_STR(mi->trackers[2], "http3");
        }
        CHECK_STR(mi->comment, "hello");
        CHECK_STR(mi->created_by, "mktorrent 1.1");
        CHECK_EQ_INT(mi->creation_date, 1700000000);
    }
    metainfo_free(mi);
    /* only announce-list */
    mk(&b, "13:announce-listll1:aee", "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "", "");
    mi = parse_ok(&b);
    CHECK(mi && mi->num_trackers == 1 && !strcmp(mi->trackers[0], "a"));
    metainfo_free(mi);
    /* malformed announce-list */
    mk(&b, "13:announce-listl1:ae", "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "tier"));
    mk(&b, "13:announce-listi1e", "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "announce-list"));
    mk(&b, "8:announcei1e", "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "", "");
    CHECK(parse_fails(&b, "tracker"));
    /* private must be exactly 1 */
    mk(&b, "", "6:lengthi5e4:name1:x12:piece lengthi16e", 1, "7:privatei0e", "");
    mi = parse_ok(&b);
    CHECK(mi && !mi->is_private);
    metainfo_free(mi);
    buf_free(&b);
}

TEST(v2_and_hybrid)
{
    struct buf b = {0};
    /* v2-only: file tree + meta version 2, no pieces */
    b.len = 0;
    buf_printf(&b, "d4:infod9:file treed1:ad0:d6:lengthi5e11:pieces root32:%032deee"
                   "12:meta versioni2e4:name1:x12:piece lengthi16384eee", 0);
    CHECK(parse_fails(&b, "v2-only torrents are not supported"));
    /* hybrid: v1 fields used, v2 parts ignored; piece layers at top level */
    mk(&b, "",
       "9:file treed32:00000000000000000000000000000000d0:d6:lengthi5e11:pieces root32:abcdefghijklmnopqrstuvwxyz012345eee"
       "5:filesld6:lengthi5e4:pathl32:00000000000000000000000000000000eee"
       "12:meta versioni2e4:name4:sda112:piece lengthi16384e",
       1, "", "12:piece layersde");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi != NULL);
    if (mi) {
        CHECK(mi->multi_file && mi->num_files == 1 && mi->total_length == 5);
        CHECK_STR(mi->files[0].last, "00000000000000000000000000000000");
    }
    metainfo_free(mi);
    buf_free(&b);
}

TEST(pad_files)
{
    struct buf b = {0};
    mk(&b, "",
       "5:filesld6:lengthi5e4:pathl1:aeed4:attr1:p6:lengthi11e4:pathl4:.pad2:11eed4:attr1:x6:lengthi3e"
       "4:pathl1:beee4:name1:x12:piece lengthi16e",
       2, "", "");
    struct metainfo *mi = parse_ok(&b);
    CHECK(mi != NULL);
    if (mi) {
        CHECK(!mi->files[0].is_pad);
        CHECK(mi->files[1].is_pad);
        CHECK(!mi->files[2].is_pad);
        CHECK_EQ_INT(mi->files[2].offset, 16);
    }
    metainfo_free(mi);
    buf_free(&b);
}

static const uint8_t *hashes40(void)
{
    static uint8_t h[40];
    for (int i = 0; i < 40; i++)
        h[i] = (uint8_t)i;
    return h;
}

TEST(build_known_infohash)
{
    const struct extent ext[] = {{.dev_off = 0, .len = 1000}, {.dev_off = 0x100000, .len = 24000}};
    const char *const tr[] = {"http://t1/announce", "http://t2/announce"};
    struct buf out = {0};
    struct ds_err e;
    CHECK(metainfo_build_ezio("sda1", ext, 2, 16384, hashes40(), tr, 2, "test", true, &out, &e) == 0);
    CHECK_EQ_INT(out.len, 349); /* computed independently with a Python bencoder */
    struct metainfo *mi = NULL;
    CHECK(metainfo_parse(out.data, out.len, &mi, &e) == 0);
    if (mi) {
        char hex[41];
        hex_encode(mi->info_hash, SHA1_LEN, hex);
        CHECK_STR(hex, "0abfa998c526cf1a5487eabae98b8f30146576a6");
        /* equals SHA-1 over the raw info span */
        struct bdoc doc;
        CHECK(bdecode(out.data, out.len, &doc, &e) == 0);
        const struct bnode *info = bdict_get_dict(doc.root, "info");
        uint8_t h[SHA1_LEN];
        CHECK(info && sha1(info->raw, info->raw_len, h) == 0 && !memcmp(h, mi->info_hash, SHA1_LEN));
        bdoc_free(&doc);
        CHECK_STR(mi->name, "sda1");
        CHECK(mi->multi_file && mi->is_private);
        CHECK_EQ_INT(mi->num_files, 2);
        CHECK_STR(mi->files[0].path, "00000000000000000000000000000000");
        CHECK_STR(mi->files[1].path, "00000000000000000000000000100000");
        CHECK_EQ_INT(mi->files[1].offset, 1000);
        CHECK_EQ_INT(mi->total_length, 25000);
        CHECK_EQ_INT(mi->num_pieces, 2);
        CHECK(!memcmp(mi->piece_hashes, hashes40(), 40));
        CHECK_EQ_INT(mi->num_trackers, 2);
        CHECK_STR(mi->trackers[0], "http://t1/announce");
        CHECK_STR(mi->created_by, "test");
        struct extent_map m;
        CHECK(extent_map_from_metainfo(mi, &m, &e) == 0);
        CHECK(m.n == 2 && m.ext[1].dev_off == 0x100000 && m.ext[1].tor_off == 1000 && m.dev_end == 0x100000 + 24000);
        extent_map_free(&m);
    }
    metainfo_free(mi);

    /* without trackers / created by / private: minimal keys, still parses */
    out.len = 0;
    CHECK(metainfo_build_ezio("sda", ext, 2, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == 0);
    CHECK(metainfo_parse(out.data, out.len, &mi, &e) == 0);
    CHECK(mi && mi->num_trackers == 0 && !mi->is_private && mi->created_by == NULL);
    metainfo_free(mi);
    CHECK(out.len > 8 && !memcmp(out.data, "d4:infod", 8));
    buf_free(&out);
}

TEST(build_pads_and_big_offsets)
{
    const struct extent ext[] = {{.dev_off = 0xfedcba9876543210ULL, .len = 10},
                                 {.len = 6, .pad = true},
                                 {.dev_off = 0x10, .len = 20}};
    static uint8_t h[60]; /* 36 bytes at piece length 16: 3 pieces */
    struct buf out = {0};
    struct ds_err e;
    CHECK(metainfo_build_ezio("sda", ext, 3, 16, h, NULL, 0, NULL, false, &out, &e) == 0);
    struct metainfo *mi = NULL;
    CHECK(metainfo_parse(out.data, out.len, &mi, &e) == 0);
    if (mi) {
        CHECK_EQ_INT(mi->num_files, 3);
        CHECK_STR(mi->files[0].path, "0000000000000000fedcba9876543210");
        CHECK(mi->files[1].is_pad && !mi->files[0].is_pad && !mi->files[2].is_pad);
        CHECK_STR(mi->files[1].path, ".pad/6");
        struct extent_map m;
        CHECK(extent_map_from_metainfo(mi, &m, &e) == 0);
        CHECK(m.n == 3 && m.ext[0].dev_off == 0xfedcba9876543210ULL && m.ext[1].pad && m.ext[2].tor_off == 16);
        CHECK(m.dev_bytes == 30 && m.dev_end == 0xfedcba9876543210ULL + 10);
        extent_map_free(&m);
    }
    metainfo_free(mi);
    buf_free(&out);
}

TEST(build_rejects)
{
    const struct extent ovl[] = {{.dev_off = 0, .len = 1000}, {.dev_off = 999, .len = 10}};
    const struct extent zero[] = {{.dev_off = 0, .len = 0}};
    const struct extent one[] = {{.dev_off = 4096, .len = 100}};
    struct buf out = {0};
    struct ds_err e;
    CHECK(metainfo_build_ezio("sda1", ovl, 2, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    CHECK(strstr(e.msg, "overlap") != NULL);
    CHECK(metainfo_build_ezio("sda1", zero, 1, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    CHECK(metainfo_build_ezio("sda1", one, 0, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    CHECK(metainfo_build_ezio("", one, 1, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    CHECK(metainfo_build_ezio("..", one, 1, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    CHECK(metainfo_build_ezio("a/b", one, 1, 16384, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    CHECK(metainfo_build_ezio("sda1", one, 1, 0, hashes40(), NULL, 0, NULL, false, &out, &e) == -1);
    const char *const empty_tr[] = {""};
    CHECK(metainfo_build_ezio("sda1", one, 1, 16384, hashes40(), empty_tr, 1, NULL, false, &out, &e) == -1);
    CHECK_EQ_INT(out.len, 0);
    buf_free(&out);
}

TEST(truncated_prefixes)
{
    const struct extent ext[] = {{.dev_off = 0, .len = 1000}, {.dev_off = 0x100000, .len = 24000}};
    const char *const tr[] = {"http://t1/announce", "http://t2/announce"};
    struct buf out = {0};
    struct ds_err e;
    CHECK(metainfo_build_ezio("sda1", ext, 2, 16384, hashes40(), tr, 2, "test", true, &out, &e) == 0);
    for (size_t i = 0; i < out.len; i++) {
        uint8_t *p = malloc(i ? i : 1); /* exact size: ASan catches overreads */
        memcpy(p, out.data, i);
        struct metainfo *mi = NULL;
        if (metainfo_parse(p, i, &mi, &e) == 0) {
            fprintf(stderr, "  prefix of %zu bytes accepted\n", i);
            check_cur_failed = 1;
            metainfo_free(mi);
        }
        free(p);
    }
    /* and single-byte corruptions never crash */
    for (size_t i = 0; i < out.len; i++) {
        for (int v = 0; v < 256; v += 51) {
            uint8_t *p = malloc(out.len);
            memcpy(p, out.data, out.len);
            p[i] = (uint8_t)v;
            struct metainfo *mi = NULL;
            if (metainfo_parse(p, out.len, &mi, &e) == 0)
                metainfo_free(mi);
            free(p);
        }
    }
    buf_free(&out);
}

TEST(load_file)
{
    const struct extent ext[] = {{.dev_off = 0, .len = 1000}, {.dev_off = 0x100000, .len = 24000}};
    struct buf out = {0};
    struct ds_err e;
    CHECK(metainfo_build_ezio("sda1", ext, 2, 16384, hashes40(), NULL, 0, NULL, true, &out, &e) == 0);
    char path[] = "/tmp/test_metainfo_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, out.data, out.len) == (ssize_t)out.len);
    struct metainfo *mi = NULL;
    CHECK(metainfo_load_file(path, &mi, &e) == 0);
    CHECK(mi && mi->total_length == 25000);
    metainfo_free(mi);
    /* truncated file: error names the file */
    CHECK(ftruncate(fd, (off_t)out.len - 1) == 0);
    CHECK(metainfo_load_file(path, &mi, &e) == -1 && mi == NULL);
    CHECK(strstr(e.msg, path) != NULL);
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(metainfo_load_file(path, &mi, &e) == -1);
    CHECK(strstr(e.msg, "empty") != NULL);
    close(fd);
    unlink(path);
    CHECK(metainfo_load_file(path, &mi, &e) == -1);
    CHECK(strstr(e.msg, "No such file") != NULL);
    CHECK(metainfo_load_file("/tmp", &mi, &e) == -1);
    buf_free(&out);
}

/* Default piece length: 128 KiB for images up to 2 GiB, then doubled so that there are at most 16384 pieces. */
TEST(auto_piece_length)
{
    CHECK_EQ_INT(metainfo_auto_piece_length(0), 128u << 10);
    CHECK_EQ_INT(metainfo_auto_piece_length(146112512), 128u << 10); /* the cluster bench's 139 MiB */
    CHECK_EQ_INT(metainfo_auto_piece_length((2ull << 30) - 1), 128u << 10);
    CHECK_EQ_INT(metainfo_auto_piece_length(2ull << 30), 256u << 10);
    CHECK_EQ_INT(metainfo_auto_piece_length((4ull << 30) - 1), 256u << 10);
    CHECK_EQ_INT(metainfo_auto_piece_length(4ull << 30), 512u << 10);
    CHECK_EQ_INT(metainfo_auto_piece_length(100ull << 30), 8u << 20);
    for (uint64_t t = 1; t < (1ull << 50); t = t * 3 + 7) {
        uint64_t p = metainfo_auto_piece_length(t);
        CHECK((p & (p - 1)) == 0 && p >= (128u << 10) && p <= (1u << 30));
        CHECK(p == (1u << 30) || (t + p - 1) / p <= METAINFO_AUTO_MAX_PIECES);
        CHECK(p == (128u << 10) || t / (p / 2) >= METAINFO_AUTO_MAX_PIECES); /* the smallest that fits */
    }
}

int main(void)
{
    RUN(single_file);
    RUN(multi_file_paths_and_offsets);
    RUN(piece_count_checks);
    RUN(structure_errors);
    RUN(path_components_rejected);
    RUN(total_overflow);
    RUN(trackers_and_descriptive_fields);
    RUN(v2_and_hybrid);
    RUN(pad_files);
    RUN(build_known_infohash);
    RUN(build_pads_and_big_offsets);
    RUN(build_rejects);
    RUN(truncated_prefixes);
    RUN(load_file);
    RUN(auto_piece_length);
    return check_summary();
}
