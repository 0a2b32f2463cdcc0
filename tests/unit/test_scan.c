/* test_scan.c — scan_result merging/sorting/clipping, the raw scanner with zero skipping, the ext scanner on
 * images made here with mkfs.ext4 + debugfs (4 KiB, 1 KiB, bigalloc; no mount needed), scan_any's fallback,
 * and the manifest writer/reader round trip and strictness. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "manifest.h"
#include "scan.h"

static char tmpdir[] = "/tmp/test_scan.XXXXXX";
static bool have_mkfs;

TEST(result_merge_sort_clip)
{
    struct scan_result r = {0};
    r.fs_size = 10000;
    CHECK_EQ_INT(scan_result_add(&r, 100, 100), 0);
    CHECK_EQ_INT(scan_result_add(&r, 200, 50), 0);   /* adjacent: merged on add */
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(scan_result_add(&r, 5000, 10), 0);
    CHECK_EQ_INT(scan_result_add(&r, 0, 10), 0);     /* out of order */
    CHECK_EQ_INT(scan_result_add(&r, 150, 20), 0);   /* inside [100,250) */
    CHECK_EQ_INT(scan_result_add(&r, 4995, 10), 0);  /* overlaps 5000 */
    CHECK_EQ_INT(scan_result_add(&r, 9990, 100), 0); /* crosses fs_size */
    CHECK_EQ_INT(scan_result_add(&r, 20000, 5), 0);  /* beyond fs_size */
    CHECK_EQ_INT(scan_result_add(&r, 7, 0), 0);      /* empty: ignored */
    CHECK_EQ_INT(scan_result_finish(&r, NULL), 0);
    CHECK_EQ_INT(r.n, 4);
    if (r.n == 4) {
        CHECK_EQ_INT(r.ext[0].off, 0);
        CHECK_EQ_INT(r.ext[0].len, 10);
        CHECK_EQ_INT(r.ext[1].off, 100);
        CHECK_EQ_INT(r.ext[1].len, 150);
        CHECK_EQ_INT(r.ext[2].off, 4995);
        CHECK_EQ_INT(r.ext[2].len, 15);
        CHECK_EQ_INT(r.ext[3].off, 9990);
        CHECK_EQ_INT(r.ext[3].len, 10);
    }
    CHECK_EQ_INT(r.used_bytes, 10 + 150 + 15 + 10);
    scan_result_free(&r);
    CHECK_EQ_INT(r.n, 0);
    scan_result_free(&r); /* twice is fine */
}

TEST(result_no_clip_when_size_unknown)
{
    struct scan_result r = {0};
    CHECK_EQ_INT(scan_result_add(&r, UINT64_MAX - 10, 100), 0); /* clipped to the address space */
    CHECK_EQ_INT(scan_result_finish(&r, NULL), 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK(r.ext[0].len == 10);
    scan_result_free(&r);
}

static int make_file(const char *name, uint64_t size, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", tmpdir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

TEST(raw_zero_skipping)
{
    char path[256];
    int fd = make_file("raw.img", 1 << 20, path, sizeof path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    uint8_t one = 1;
    CHECK_EQ_INT(pwrite(fd, &one, 1, 70000), 1);          /* block 1 (64 KiB blocks) */
    CHECK_EQ_INT(pwrite(fd, &one, 1, (1 << 20) - 1), 1);  /* last block */
    CHECK_EQ_INT(pwrite(fd, &one, 1, 3 * 65536), 1);      /* block 3 */
    struct scan_src src = {.fd = fd, .path = path, .base = 0, .size = 1 << 20};
    struct scan_result r;
    struct ds_err e;
    CHECK_EQ_INT(scan_raw(&src, true, 0, &r, &e), 0);
    CHECK_STR(r.fstype, "raw");
    CHECK_EQ_INT(r.n, 3);
    if (r.n == 3) {
        CHECK_EQ_INT(r.ext[0].off, 65536);
        CHECK_EQ_INT(r.ext[0].len, 65536);
        CHECK_EQ_INT(r.ext[1].off, 3 * 65536);
        CHECK_EQ_INT(r.ext[2].off, 15 * 65536);
        CHECK_EQ_INT(r.ext[2].len, 65536);
    }
    scan_result_free(&r);
    /* a base offset and odd size: blocks are relative to base, the last one is short */
    src.base = 65536;
    src.size = 3 * 65536 + 100;
    CHECK_EQ_INT(scan_raw(&src, true, 4096, &r, &e), 0);
    CHECK_EQ_INT(r.n, 2);
    if (r.n == 2) {
        CHECK_EQ_INT(r.ext[0].off, 4096);                  /* 70000 - 65536 = 4464 → block 1 */
        CHECK_EQ_INT(r.ext[0].len, 4096);
        CHECK_EQ_INT(r.ext[1].off, 2 * 65536);
    }
    scan_result_free(&r);
    /* without skipping: one extent of everything */
    CHECK_EQ_INT(scan_raw(&src, false, 0, &r, &e), 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(r.used_bytes, 3 * 65536 + 100);
    scan_result_free(&r);
    /* read past the end of the file is an error, not a silent short scan */
    src.size = 4 << 20;
    CHECK_EQ_INT(scan_raw(&src, true, 0, &r, &e), -1);
    CHECK(strstr(e.msg, "ended") != NULL);
    close(fd);
}

/* A fresh ext4 made by mkfs.ext4 with opts, plus a 700 KiB file written with debugfs. */
static int make_ext4(const char *name, const char *opts, int mb, char *path, size_t n)
{
    char cmd[1024], src[256];
    int fd = make_file(name, (uint64_t)mb << 20, path, n);
    if (fd < 0)
        return -1;
    close(fd);
    snprintf(src, sizeof src, "%s/payload", tmpdir);
    FILE *f = fopen(src, "w");
    if (!f)
        return -1;
    for (int i = 0; i < 700 * 1024; i++)
        fputc((i * 7 + i / 4096) & 0xff, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "mkfs.ext4 -q -F %s '%s' >/dev/null 2>&1 && debugfs -w -R 'write %s payload' '%s' "
                              ">/dev/null 2>&1", opts, path, src, path);
    return system(cmd) == 0 ? 0 : -1;
}

/* Blocks of /payload (debugfs blocks), as byte offsets, all inside r? */
static bool payload_covered(const char *img, const struct scan_result *r, uint32_t bs, int *nblocks)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "debugfs -R 'blocks payload' '%s' 2>/dev/null", img);
    FILE *p = popen(cmd, "r");
    if (!p)
        return false;
    unsigned long long b;
    bool ok = true;
    *nblocks = 0;
    while (fscanf(p, "%llu", &b) == 1) {
        (*nblocks)++;
        uint64_t off = b * bs;
        bool in = false;
        for (size_t i = 0; i < r->n && !in; i++)
            in = off >= r->ext[i].off && off + bs <= r->ext[i].off + r->ext[i].len;
        if (!in)
            ok = false;
    }
    pclose(p);
    return ok;
}

static void check_ext(const char *name, const char *opts, uint32_t bs, uint32_t unit)
{
    if (!have_mkfs) {
        printf("  (mkfs.ext4/debugfs missing: %s not checked)\n", name);
        return;
    }
    char path[256];
    CHECK_EQ_INT(make_ext4(name, opts, 16, path, sizeof path), 0);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    struct scan_src src = {.fd = fd, .path = path, .base = 0, .size = 16 << 20};
    struct ds_err e = {{0}};
    CHECK_EQ_INT(scanner_ext.probe(&src, &e), 1);
    CHECK_EQ_INT(scanner_xfs.probe(&src, &e), 0);
    struct scan_result r;
    bool fb = true;
    int rc = scan_any(&src, false, &r, &fb, &e);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s: %s\n", name, e.msg);
        close(fd);
        return;
    }
    CHECK(!fb);
    CHECK_STR(r.fstype, "ext4");
    CHECK_EQ_INT(r.block_size, unit);
    CHECK_EQ_INT(r.fs_size, 16 << 20);
    CHECK(r.n >= 1);
    /* the first 2 KiB (boot block + primary superblock) always */
    CHECK(r.n >= 1 && r.ext[0].off == 0 && r.ext[0].len >= 2048);
    /* sorted, disjoint, non-adjacent, unit-aligned after the head, used_bytes = sum */
    uint64_t sum = 0;
    for (size_t i = 0; i < r.n; i++) {
        sum += r.ext[i].len;
        if (i > 0)
            CHECK(r.ext[i].off > r.ext[i - 1].off + r.ext[i - 1].len);
        if (i > 0)
            CHECK(r.ext[i].off % unit == 0 && r.ext[i].len % bs == 0);
    }
    CHECK_EQ_INT(sum, r.used_bytes);
    CHECK(r.used_bytes < (16u << 20));
    int nb = 0;
    CHECK(payload_covered(path, &r, bs, &nb));
    CHECK_EQ_INT(nb, 700 * 1024 / bs);
    /* used bytes = (blocks - free blocks) * block size, from dumpe2fs */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "dumpe2fs -h '%s' 2>/dev/null | awk '/^Block count:/{c=$3} /^Free blocks:/{f=$3} "
                              "/^Block size:/{b=$3} END{printf \"%%d\", (c-f)*b}'", path);
    FILE *p = popen(cmd, "r");
    long long used = -1;
    if (p) {
        if (fscanf(p, "%lld", &used) != 1)
            used = -1;
        pclose(p);
    }
    /* 1 KiB blocks: block 0 lies outside the bitmap but counts in blocks - free, like the head we add */
    CHECK_EQ_INT(r.used_bytes, used);
    scan_result_free(&r);

    /* the same filesystem at an offset inside a bigger file (a partition of a disk image) */
    char dpath[256];
    int dfd = make_file("disk-with-fs.img", (17u << 20), dpath, sizeof dpath);
    CHECK(dfd >= 0);
    if (dfd >= 0) {
        snprintf(cmd, sizeof cmd, "dd if='%s' of='%s' bs=1M seek=1 conv=notrunc status=none", path, dpath);
        CHECK_EQ_INT(system(cmd), 0);
        struct scan_src s2 = {.fd = dfd, .path = dpath, .base = 1 << 20, .size = 16 << 20};
        struct scan_result r2;
        CHECK_EQ_INT(scanner_ext.scan(&s2, &r2, &e), 0);
        CHECK_EQ_INT(r2.used_bytes, used);
        scan_result_free(&r2);
        /* too small a partition for the filesystem: refused */
        s2.size = 8 << 20;
        CHECK_EQ_INT(scanner_ext.scan(&s2, &r2, &e), -1);
        CHECK(strstr(e.msg, "claims") != NULL);
        close(dfd);
        unlink(dpath);
    }
    close(fd);
    unlink(path);
}

TEST(ext4_4k) { check_ext("e4k.img", "-b 4096", 4096, 4096); }
TEST(ext4_1k) { check_ext("e1k.img", "-b 1024", 1024, 1024); }
TEST(ext4_bigalloc) { check_ext("ebig.img", "-b 4096 -O bigalloc -C 16384", 4096, 16384); }

TEST(ext_needs_recovery_refused)
{
    if (!have_mkfs)
        return;
    char path[256], cmd[600];
    CHECK_EQ_INT(make_ext4("rec.img", "-b 4096", 16, path, sizeof path), 0);
    snprintf(cmd, sizeof cmd, "debugfs -w -R 'feature needs_recovery' '%s' >/dev/null 2>&1", path);
    CHECK_EQ_INT(system(cmd), 0);
    int fd = open(path, O_RDONLY);
    struct scan_src src = {.fd = fd, .path = path, .base = 0, .size = 16 << 20};
    struct scan_result r;
    struct ds_err e = {{0}};
    CHECK_EQ_INT(scanner_ext.scan(&src, &r, &e), -1);
    CHECK(strstr(e.msg, "recovery") != NULL);
    close(fd);
    unlink(path);
}

TEST(scan_any_falls_back_to_raw)
{
    char path[256];
    int fd = make_file("nofs.img", 256 << 10, path, sizeof path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    uint8_t junk[512];
    memset(junk, 0x5a, sizeof junk);
    CHECK_EQ_INT(pwrite(fd, junk, sizeof junk, 0), (long)sizeof junk);
    struct scan_src src = {.fd = fd, .path = path, .base = 0, .size = 256 << 10};
    struct scan_result r;
    struct ds_err e;
    bool fb = false;
    CHECK_EQ_INT(scan_any(&src, true, &r, &fb, &e), 0);
    CHECK(fb);
    CHECK_STR(r.fstype, "raw");
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(r.used_bytes, 65536);
    scan_result_free(&r);
    CHECK_EQ_INT(scan_any(&src, false, &r, &fb, &e), 0);
    CHECK_EQ_INT(r.used_bytes, 256 << 10);
    scan_result_free(&r);
    close(fd);
    unlink(path);
}

static void fill_manifest(struct manifest *m, struct manifest_area *a, struct manifest_part *p,
                          struct manifest_torrent *t)
{
    memset(m, 0, sizeof *m);
    m->version = 1;
    m->created = 1700000000;
    strcpy(m->created_by, "diskswarm 0.1.0");
    strcpy(m->source, "/dev/weird \"name\"\\\n\x01");
    m->source_size = 1ull << 40;
    strcpy(m->kind, "disk");
    strcpy(m->mode, "whole-disk");
    strcpy(m->label, "gpt");
    strcpy(m->disk_id, "39816EEF-DB88-444F-8C23-3FDAE87DAEE7");
    m->sector_size = 512;
    m->piece_size = 4 << 20;
    m->has_gpt = true;
    m->gpt_first_usable = 34;
    m->gpt_last_usable = (1ull << 31) - 34;
    m->gpt_alt_lba = (1ull << 31) - 1;
    m->gpt_entries_lba = 2;
    m->gpt_n_entries = 128;
    m->gpt_backup_off = (1ull << 40) - 33 * 512;
    m->gpt_backup_len = 33 * 512;
    memset(a, 0, 2 * sizeof *a);
    strcpy(a[0].what, "head");
    a[0].length = 1 << 20;
    strcpy(a[1].what, "gpt-backup");
    a[1].offset = m->gpt_backup_off;
    a[1].length = m->gpt_backup_len;
    m->areas = a;
    m->n_areas = 2;
    memset(p, 0, sizeof *p);
    p->number = 2;
    strcpy(p->device, "sda2");
    p->start = 1 << 20;
    p->size = UINT64_MAX - (1 << 20);
    strcpy(p->type, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    strcpy(p->type_name, "Linux filesystem");
    strcpy(p->name, "root \xc3\xa9t\xc3\xa9");
    strcpy(p->fstype, "raw");
    strcpy(p->scanner, "raw");
    p->raw_fallback = true;
    p->block_size = 65536;
    p->used_bytes = 12345;
    p->extents = 7;
    m->parts = p;
    m->n_parts = 1;
    memset(t, 0, sizeof *t);
    strcpy(t->file, "sda.torrent");
    strcpy(t->name, "sda");
    strcpy(t->role, "disk");
    strcpy(t->info_hash, "0123456789abcdef0123456789abcdef01234567");
    t->bytes = 99;
    t->pieces = 1;
    t->extents = 3;
    m->torrents = t;
    m->n_torrents = 1;
}

TEST(manifest_round_trip)
{
    struct manifest m, r;
    struct manifest_area a[2];
    struct manifest_part p;
    struct manifest_torrent t;
    fill_manifest(&m, a, &p, &t);
    struct ds_err e = {{0}};
    CHECK_EQ_INT(manifest_write(tmpdir, &m, &e), 0);
    CHECK_EQ_INT(manifest_read(tmpdir, &r, &e), 0);
    if (e.msg[0])
        fprintf(stderr, "  %s\n", e.msg);
    CHECK_STR(r.source, m.source);
    CHECK(r.source_size == m.source_size);
    CHECK_EQ_INT(r.created, 1700000000);
    CHECK_STR(r.mode, "whole-disk");
    CHECK(r.has_gpt && r.gpt_alt_lba == m.gpt_alt_lba && r.gpt_backup_off == m.gpt_backup_off);
    CHECK_EQ_INT(r.n_areas, 2);
    CHECK_EQ_INT(r.n_parts, 1);
    CHECK_EQ_INT(r.n_torrents, 1);
    if (r.n_parts == 1) {
        CHECK_STR(r.parts[0].name, p.name);
        CHECK(r.parts[0].size == p.size);
        CHECK(r.parts[0].raw_fallback);
        CHECK_EQ_INT(r.parts[0].number, 2);
    }
    if (r.n_areas == 2)
        CHECK_STR(r.areas[1].what, "gpt-backup");
    if (r.n_torrents == 1)
        CHECK_STR(r.torrents[0].info_hash, t.info_hash);
    manifest_free(&r);
}

TEST(manifest_strict)
{
    struct manifest m, r;
    struct manifest_area a[2];
    struct manifest_part p;
    struct manifest_torrent t;
    fill_manifest(&m, a, &p, &t);
    struct ds_err e;
    char *json = manifest_to_json(&m, &e);
    CHECK(json != NULL);
    if (!json)
        return;
    size_t n = strlen(json);
    CHECK_EQ_INT(manifest_parse(json, n, &r, &e), 0);
    manifest_free(&r);
    /* every truncation fails cleanly */
    for (size_t cut = 0; cut + 2 < n; cut += 7)
        CHECK_EQ_INT(manifest_parse(json, cut, &r, &e), -1);
    static const struct { const char *from, *to; } bad[] = {
        {"\"version\": 1", "\"version\": 2"},
        {"\"version\": 1", "\"version\": 1.5"},
        {"\"sector_size\": 512", "\"sector_size\": -512"},
        {"\"sector_size\": 512", "\"sector_size\": \"512\""},
        {"\"kind\": \"disk\"", "\"kind\": \"floppy\""},
        {"\"raw_fallback\": true", "\"raw_fallback\": 1"},
        {"\"file\": \"sda.torrent\"", "\"file\": \"../sda.torrent\""},
        {"\"piece_size\": 4194304", "\"piece_size\": 99999999999999999999999"},
        {"\"label\": \"gpt\"", "\"label\": \"gpt\", \"label\": \"dos\""},
        {"\"areas\": [", "\"areas\": [1, "},
        {"\"disk_id\"", "\"disk_id\\x\""},
        {"\"number\": 2,\n", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *at = strstr(json, bad[i].from);
        CHECK(at != NULL);
        if (!at)
            continue;
        size_t fl = strlen(bad[i].from), tl = strlen(bad[i].to);
        char *mod = malloc(n - fl + tl + 1);
        if (!mod)
            continue;
        memcpy(mod, json, (size_t)(at - json));
        memcpy(mod + (at - json), bad[i].to, tl);
        strcpy(mod + (at - json) + tl, at + fl);
        int rc = manifest_parse(mod, strlen(mod), &r, &e);
        if (rc != -1)
            fprintf(stderr, "  accepted bad manifest #%zu\n", i);
        CHECK_EQ_INT(rc, -1);
        free(mod);
    }
    /* trailing garbage; unknown keys are accepted */
    char *mod = malloc(n + 32);
    CHECK(mod != NULL);
    if (!mod) {
        free(json);
        return;
    }
    snprintf(mod, n + 32, "%sx", json);
    CHECK_EQ_INT(manifest_parse(mod, strlen(mod), &r, &e), -1);
    snprintf(mod, n + 32, "{\"future\": [null, {}],%s", json + 1);
    CHECK_EQ_INT(manifest_parse(mod, strlen(mod), &r, &e), 0);
    manifest_free(&r);
    free(mod);
    free(json);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    have_mkfs = system("command -v mkfs.ext4 >/dev/null 2>&1 && command -v debugfs >/dev/null 2>&1 && "
                       "command -v dumpe2fs >/dev/null 2>&1") == 0;
    if (!have_mkfs)
        printf("note: mkfs.ext4/debugfs/dumpe2fs not found: the ext4 cases only check what needs no image\n");
    RUN(result_merge_sort_clip);
    RUN(result_no_clip_when_size_unknown);
    RUN(raw_zero_skipping);
    RUN(ext4_4k);
    RUN(ext4_1k);
    RUN(ext4_bigalloc);
    RUN(ext_needs_recovery_refused);
    RUN(scan_any_falls_back_to_raw);
    RUN(manifest_round_trip);
    RUN(manifest_strict);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
