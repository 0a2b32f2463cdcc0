/* test_scan_fs.c — the FAT, NTFS and XFS scanners on real filesystems made here with mkfs, and on corrupted
 * copies of them.
 *
 * Images are populated without mounting (mtools for FAT, ntfscp for NTFS, mkfs.xfs -p protofile for XFS);
 * only the fragmented-XFS case needs a loop mount and is skipped (printed, not counted as passed) unless
 * running as root. For each filesystem the result must be well formed (sorted, merged, inside fs_size, sum =
 * used_bytes), hold the boot sector / superblock, be a superset of partclone's torrent.info on the same image
 * (when partclone is installed), and be enough to rebuild the filesystem: copying only our extents into a
 * blank file must give a volume that fsck passes and whose files read back unchanged.
 *
 * Corruption: truncated images, garbage BPB / boot sector / superblock fields, broken MFT records, run lists,
 * AGFs and btree blocks must give an error, never a crash; a seeded random byte-flipper over each image's
 * metadata (DS_SCAN_FUZZ_ITERS iterations, default 150) checks the same under ASan. */
#include "check.h"
#include "scan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];
static bool is_root;
static int skipped;
static int cur_skipped;

#define SKIP(...)                          \
    do {                                   \
        printf("  skip: " __VA_ARGS__);    \
        printf("\n");                      \
        cur_skipped = 1;                   \
        return;                            \
    } while (0)

/* like RUN, but a skipped test is counted as skipped, not passed */
#define RUN_FS(name)                                                 \
    do {                                                             \
        check_cur_failed = 0;                                        \
        cur_skipped = 0;                                             \
        test_##name();                                               \
        if (check_cur_failed) {                                      \
            check_failed++;                                          \
            printf("FAIL %s\n", #name);                              \
        } else if (cur_skipped) {                                    \
            skipped++;                                               \
            printf("SKIP %s\n", #name);                              \
        } else {                                                     \
            check_passed++;                                          \
            printf("ok   %s\n", #name);                              \
        }                                                            \
        fflush(stdout);                                              \
    } while (0)

/* ---------------------------------------------------------------------------------------------------------- */
/* helpers */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool have(const char *tool) { return sh("command -v %s >/dev/null 2>&1", tool) == 0; }

/* tmp/name in a ring of buffers: valid for the next 63 calls (enough for any one sh() line) */
static const char *path(const char *name)
{
    static char buf[64][512];
    static int k;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

/* tmp/name in storage that stays valid for the whole run (image paths handed out by the builders) */
static const char *stable_path(char *slot, size_t size, const char *name)
{
    snprintf(slot, size, "%s/%s", tmp, name);
    return slot;
}

static uint64_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int probe_file(const struct scanner *s, const char *p)
{
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return -2;
    struct scan_src src = {.fd = fd, .path = p, .base = 0, .size = file_size(p)};
    struct ds_err e = {{0}};
    int r = s->probe(&src, &e);
    close(fd);
    return r;
}

static int scan_file(const struct scanner *s, const char *p, struct scan_result *r, struct ds_err *e)
{
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return ds_errno(e, "open %s", p);
    struct scan_src src = {.fd = fd, .path = p, .base = 0, .size = file_size(p)};
    int rc = s->scan(&src, r, e);
    close(fd);
    return rc;
}

static bool well_formed(const struct scan_result *r)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct scan_extent *x = &r->ext[i];
        if (x->len == 0 || x->off + x->len > r->fs_size)
            return false;
        if (i && r->ext[i - 1].off + r->ext[i - 1].len >= x->off) /* sorted, disjoint, merged */
            return false;
        sum += x->len;
    }
    return sum == r->used_bytes && r->n > 0;
}

static bool covers(const struct scan_result *r, uint64_t off, uint64_t len)
{
    for (size_t i = 0; i < r->n && len; i++) {
        const struct scan_extent *x = &r->ext[i];
        if (x->off + x->len <= off)
            continue;
        if (x->off > off)
            return false;
        uint64_t n = x->off + x->len - off;
        if (n >= len)
            return true;
        off += n;
        len -= n;
    }
    return len == 0;
}

/* bytes of [off, off+len) not covered by r */
static uint64_t uncovered(const struct scan_result *r, uint64_t off, uint64_t len)
{
    uint64_t miss = 0, end = off + len;
    for (size_t i = 0; i < r->n && off < end; i++) {
        const struct scan_extent *x = &r->ext[i];
        if (x->off + x->len <= off)
            continue;
        if (x->off >= end)
            break;
        if (x->off > off)
            miss += x->off - off;
        off = x->off + x->len;
    }
    if (off < end)
        miss += end - off;
    return miss;
}

/* partclone's torrent.info → extents (offset/length hex line pairs), merged into a scan_result */
static int read_torrent_info(const char *p, struct scan_result *pc)
{
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    memset(pc, 0, sizeof *pc);
    pc->fs_size = UINT64_MAX;
    char line[256];
    uint64_t off = 0;
    bool have_off = false;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "offset:", 7)) {
            off = strtoull(line + 7, NULL, 16);
            have_off = true;
        } else if (!strncmp(line, "length:", 7) && have_off) {
            uint64_t len = strtoull(line + 7, NULL, 16);
            if (scan_result_add(pc, off, len) < 0) {
                fclose(f);
                return -1;
            }
            have_off = false;
        }
    }
    fclose(f);
    struct ds_err e;
    return scan_result_finish(pc, &e);
}

/* Compare with partclone.TOOL on img: *missing = bytes partclone copies that we leave out, *extra = bytes we
 * copy that partclone does not. 1 = compared, 0 = partclone not available/failed (note printed). */
static int vs_partclone(const char *tool, const char *img, const struct scan_result *r, uint64_t *missing,
                        uint64_t *extra)
{
    if (!have(tool)) {
        printf("  note: %s not installed, no partclone comparison\n", tool);
        return 0;
    }
    const char *dir = path("pc");
    sh("rm -rf '%s'", dir);
    if (sh("%s -c -d -t -s '%s' -o '%s' -L '%s.log' >/dev/null 2>&1", tool, img, dir, dir) != 0 ||
        access(path("pc/torrent.info"), R_OK) != 0) {
        printf("  note: %s failed on %s\n", tool, img);
        return 0;
    }
    struct scan_result pc;
    if (read_torrent_info(path("pc/torrent.info"), &pc) < 0)
        return 0;
    *missing = 0;
    for (size_t i = 0; i < pc.n; i++)
        *missing += uncovered(r, pc.ext[i].off, pc.ext[i].len);
    *extra = 0;
    for (size_t i = 0; i < r->n; i++)
        *extra += uncovered(&pc, r->ext[i].off, r->ext[i].len);
    printf("  %s: partclone %llu bytes, ours %llu, missing %llu, extra %llu\n", tool,
           (unsigned long long)pc.used_bytes, (unsigned long long)r->used_bytes, (unsigned long long)*missing,
           (unsigned long long)*extra);
    scan_result_free(&pc);
    return 1;
}

/* Copy only r's extents of img into a fresh sparse file of the same size. */
static int restore(const char *img, const struct scan_result *r, const char *out)
{
    int in = open(img, O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = (in < 0 || o < 0 || ftruncate(o, (off_t)file_size(img)) < 0) ? -1 : 0;
    static char buf[1 << 16];
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        uint64_t off = r->ext[i].off, left = r->ext[i].len;
        while (left && rc == 0) {
            size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
            if (pread(in, buf, n, (off_t)off) != (ssize_t)n || pwrite(o, buf, n, (off_t)off) != (ssize_t)n)
                rc = -1;
            off += n;
            left -= n;
        }
    }
    if (in >= 0)
        close(in);
    if (o >= 0)
        close(o);
    return rc;
}

static void pw(const char *p, uint64_t off, const void *data, size_t len)
{
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, data, len, (off_t)off) == (ssize_t)len);
    if (fd >= 0)
        close(fd);
}

static void prd(const char *p, uint64_t off, void *data, size_t len)
{
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, data, len, (off_t)off) == (ssize_t)len);
    if (fd >= 0)
        close(fd);
}

/* copy img to a scratch file (sparse), returns its path */
static const char *scratch(const char *img)
{
    const char *p = path("scratch.img");
    CHECK(sh("cp --sparse=always '%s' '%s'", img, p) == 0);
    return p;
}

/* scan must fail with a message, and leave nothing we could crash on */
static void expect_scan_error(const struct scanner *s, const char *p, const char *what)
{
    struct scan_result r;
    struct ds_err e;
    int rc = scan_file(s, p, &r, &e);
    if (rc != -1)
        fprintf(stderr, "  %s: scan succeeded on a corrupt image (%s)\n", s->name, what);
    CHECK(rc == -1);
    CHECK(e.msg[0] != 0);
    scan_result_free(&r);
}

/* test data files, made once */
static void make_data(void)
{
    static bool done;
    if (done)
        return;
    CHECK(sh("head -c 3000000 /dev/urandom >'%s' && head -c 777 /dev/urandom >'%s' && "
             "head -c 150000 /dev/urandom >'%s' && head -c 40000 /dev/urandom >'%s'",
             path("big.bin"), path("small.bin"), path("mid.bin"), path("gone.bin")) == 0);
    done = true;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* FAT */

/* FAT12/16/32 image with files in a subdirectory and a deleted file (a hole); returns the image path */
static const char *fat_image(int type)
{
    static bool made[33];
    static char slot[33][512];
    char name[32];
    snprintf(name, sizeof name, "fat%d.img", type);
    const char *img = stable_path(slot[type], sizeof slot[type], name);
    if (made[type])
        return img;
    make_data();
    int mb = type == 12 ? 8 : type == 16 ? 32 : 64;
    int rc = sh("rm -f '%s' && truncate -s %dM '%s' && mkfs.vfat -F %d -n DSTEST '%s' >/dev/null && "
                "mcopy -i '%s' '%s' ::/gone.bin && mmd -i '%s' ::/dir ::/dir/deep && "
                "mcopy -i '%s' '%s' ::/dir/deep/big.bin && mcopy -i '%s' '%s' ::/dir/small.bin && "
                "mcopy -i '%s' '%s' ::/mid.bin && mdel -i '%s' ::/gone.bin",
                img, mb, img, type, img, img, path("gone.bin"), img, img, path(type == 12 ? "mid.bin" : "big.bin"),
                img, path("small.bin"), img, path("mid.bin"), img);
    CHECK(rc == 0);
    made[type] = rc == 0;
    return img;
}

static void fat_case(int type)
{
    if (!have("mkfs.vfat") || !have("mcopy"))
        SKIP("mkfs.vfat / mtools not installed");
    const char *img = fat_image(type);
    CHECK_EQ_INT(probe_file(&scanner_fat, img), 1);
    CHECK_EQ_INT(probe_file(&scanner_ntfs, img), 0);
    CHECK_EQ_INT(probe_file(&scanner_xfs, img), 0);
    struct scan_result r;
    struct ds_err e;
    CHECK_EQ_INT(scan_file(&scanner_fat, img, &r, &e), 0);
    if (e.msg[0])
        fprintf(stderr, "  %s\n", e.msg);
    CHECK_STR(r.fstype, "vfat");
    CHECK(well_formed(&r));
    CHECK_EQ_INT(r.fs_size, file_size(img));
    CHECK(covers(&r, 0, 512));
    CHECK(r.used_bytes < r.fs_size / 2);
    CHECK(r.used_bytes > (type == 12 ? 150000u : 3000000u));

    uint64_t missing, extra;
    char tool[32];
    snprintf(tool, sizeof tool, "partclone.fat%d", type);
    if (vs_partclone(tool, img, &r, &missing, &extra)) {
        if (type == 12) /* partclone.fat12 reads the FAT as 16-bit entries, so its set is not meaningful */
            printf("  note: partclone.fat12 decodes FAT12 entries as 16-bit words; set not compared\n");
        else
            CHECK_EQ_INT(missing, 0);
    }

    /* our extents alone rebuild the volume */
    const char *rest = path("restored.img");
    CHECK(restore(img, &r, rest) == 0);
    if (have("fsck.vfat"))
        CHECK(sh("fsck.vfat -n '%s' >/dev/null 2>&1", rest) == 0);
    CHECK(sh("mcopy -n -i '%s' ::/dir/deep/big.bin '%s' && cmp -s '%s' '%s'", rest, path("out.bin"), path("out.bin"),
             path(type == 12 ? "mid.bin" : "big.bin")) == 0);
    CHECK(sh("mcopy -n -i '%s' ::/dir/small.bin '%s' && cmp -s '%s' '%s'", rest, path("out.bin"), path("out.bin"),
             path("small.bin")) == 0);
    scan_result_free(&r);
}

TEST(fat12) { fat_case(12); }
TEST(fat16) { fat_case(16); }
TEST(fat32) { fat_case(32); }

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

TEST(fat_corrupt)
{
    if (!have("mkfs.vfat"))
        SKIP("mkfs.vfat not installed");
    const char *img = fat_image(16);
    uint8_t boot[512];
    prd(img, 0, boot, sizeof boot);
    struct {
        unsigned off, len;
        uint32_t val;
        const char *what;
    } bad[] = {
        {11, 2, 1000, "bytes per sector 1000"},
        {11, 2, 8192, "bytes per sector 8192"},
        {13, 1, 3, "sectors per cluster 3"},
        {13, 1, 0, "sectors per cluster 0"},
        {14, 2, 0, "no reserved sectors"},
        {16, 1, 0, "no FATs"},
        {32, 4, 0, "total sectors 0"},
        {22, 2, 1, "FAT of one sector for thousands of clusters"},
        {22, 2, 0xFFFF, "FATs larger than the volume"},
        {17, 2, 0, "FAT16 without root directory entries"},
        {510, 2, 0, "no boot signature"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = scratch(img);
        uint8_t v[4] = {(uint8_t)bad[i].val, (uint8_t)(bad[i].val >> 8), (uint8_t)(bad[i].val >> 16),
                        (uint8_t)(bad[i].val >> 24)};
        pw(p, bad[i].off, v, bad[i].len);
        if (probe_file(&scanner_fat, p) != 0)
            fprintf(stderr, "  probe accepted: %s\n", bad[i].what);
        CHECK_EQ_INT(probe_file(&scanner_fat, p), 0);
        expect_scan_error(&scanner_fat, p, bad[i].what);
    }
    /* absurd cluster count: 32-bit total sectors of 4 Gi with a FAT32-style BPB */
    {
        const char *p = scratch(fat_image(32));
        uint8_t v[4] = {0xFF, 0xFF, 0xFF, 0xFF};
        pw(p, 32, v, 4);
        CHECK_EQ_INT(probe_file(&scanner_fat, p), 0);
        expect_scan_error(&scanner_fat, p, "4 Gi sectors");
        uint8_t big[4] = {0xFF, 0xFF, 0xFF, 0x00}; /* 16 Mi sectors: FAT still too small */
        pw(p, 32, big, 4);
        expect_scan_error(&scanner_fat, p, "16 Mi sectors");
    }
    /* truncated: the volume is larger than the source */
    for (int t = 12; t <= 32; t += t == 12 ? 4 : 16) {
        const char *p = scratch(fat_image(t));
        CHECK(truncate(p, (off_t)(file_size(p) / 2)) == 0);
        CHECK_EQ_INT(probe_file(&scanner_fat, p), 1);
        expect_scan_error(&scanner_fat, p, "truncated");
        CHECK(truncate(p, 300) == 0);
        CHECK_EQ_INT(probe_file(&scanner_fat, p), 0);
        expect_scan_error(&scanner_fat, p, "300 bytes");
    }
    (void)get16;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* NTFS */

static const char *ntfs_image(void)
{
    static int made;
    static char slot[512];
    const char *img = stable_path(slot, sizeof slot, "ntfs.img");
    if (made)
        return made > 0 ? img : NULL;
    make_data();
    int rc = sh("rm -f '%s' && truncate -s 24M '%s' && mkfs.ntfs -F -f -q -L dstest '%s' >/dev/null 2>&1 && "
                "ntfscp -f '%s' '%s' /gone.bin >/dev/null && ntfscp -f '%s' '%s' /big.bin >/dev/null && "
                "ntfscp -f '%s' '%s' /mid.bin >/dev/null && ntfscp -f '%s' '%s' /small.bin >/dev/null && "
                "ntfsfix -n '%s' >/dev/null 2>&1",
                img, img, img, img, path("gone.bin"), img, path("big.bin"), img, path("mid.bin"), img,
                path("small.bin"), img);
    CHECK(rc == 0);
    made = rc == 0 ? 1 : -1;
    return made > 0 ? img : NULL;
}

TEST(ntfs)
{
    if (!have("mkfs.ntfs") || !have("ntfscp"))
        SKIP("ntfs-3g tools not installed");
    const char *img = ntfs_image();
    if (!img)
        return;
    CHECK_EQ_INT(probe_file(&scanner_ntfs, img), 1);
    CHECK_EQ_INT(probe_file(&scanner_fat, img), 0);
    CHECK_EQ_INT(probe_file(&scanner_xfs, img), 0);
    struct scan_result r;
    struct ds_err e;
    CHECK_EQ_INT(scan_file(&scanner_ntfs, img, &r, &e), 0);
    if (e.msg[0])
        fprintf(stderr, "  %s\n", e.msg);
    CHECK_STR(r.fstype, "ntfs");
    CHECK(well_formed(&r));
    CHECK_EQ_INT(r.fs_size, file_size(img));
    CHECK(covers(&r, 0, 512));
    CHECK(covers(&r, r.fs_size - 512, 512)); /* backup boot sector */
    CHECK(r.used_bytes > 3000000u + 150000u);
    CHECK(r.used_bytes < r.fs_size / 2);
    uint64_t missing, extra;
    if (vs_partclone("partclone.ntfs", img, &r, &missing, &extra)) {
        CHECK_EQ_INT(missing, 0);
        CHECK_EQ_INT(extra, 512); /* the backup boot sector, which partclone leaves out */
    }
    const char *rest = path("restored.img");
    CHECK(restore(img, &r, rest) == 0);
    if (have("ntfsfix"))
        CHECK(sh("ntfsfix -n '%s' >/dev/null 2>&1", rest) == 0);
    if (have("ntfscat")) {
        CHECK(sh("ntfscat '%s' /big.bin | cmp -s - '%s'", rest, path("big.bin")) == 0);
        CHECK(sh("ntfscat '%s' /small.bin | cmp -s - '%s'", rest, path("small.bin")) == 0);
        CHECK(sh("ntfscat '%s' /mid.bin | cmp -s - '%s'", rest, path("mid.bin")) == 0);
    }
    scan_result_free(&r);
}

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

TEST(ntfs_corrupt)
{
    if (!have("mkfs.ntfs") || !have("ntfscp"))
        SKIP("ntfs-3g tools not installed");
    const char *img = ntfs_image();
    if (!img)
        return;
    uint8_t boot[512];
    prd(img, 0, boot, sizeof boot);
    uint64_t cs = (uint64_t)get16(boot + 11) * boot[13];
    uint64_t mft = 0;
    memcpy(&mft, boot + 48, 8); /* little-endian host assumed (x86/arm) */
    uint64_t rec6 = mft * cs + 6 * 1024;
    CHECK((int8_t)boot[64] == -10); /* 1 KiB records, as mkntfs makes them */

    /* boot sector fields */
    struct {
        unsigned off, len;
        uint64_t val;
        const char *what;
    } bad[] = {
        {3, 4, 0x5346414e, "OEM id"},           /* "NAFS" */
        {11, 2, 1000, "bytes per sector"},
        {13, 1, 3, "sectors per cluster"},
        {48, 8, 0x7FFFFFFFFFFFull, "MFT cluster far outside the volume"},
        {64, 1, 0xF0, "MFT record size 64 KiB where records are 1 KiB"},
        {64, 1, 0x01, "MFT record size 1 cluster (wrong fixups)"},
        {64, 1, 0x80, "MFT record size code -128"},
        {40, 8, 0xFFFFFFFFFFFFull, "total sectors far past the source"},
        {16, 1, 2, "FAT count set"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = scratch(img);
        uint8_t v[8];
        for (int k = 0; k < 8; k++)
            v[k] = (uint8_t)(bad[i].val >> (8 * k));
        pw(p, bad[i].off, v, bad[i].len);
        expect_scan_error(&scanner_ntfs, p, bad[i].what);
    }
    /* MFT record 0 and 6: magic, update sequence, attribute lengths, run lists */
    {
        const char *p = scratch(img);
        pw(p, mft * cs, "BAAD", 4);
        expect_scan_error(&scanner_ntfs, p, "record 0 magic");
    }
    {
        const char *p = scratch(img);
        pw(p, rec6 + 510, "\x12\x34", 2); /* sector end no longer matches the update sequence number */
        expect_scan_error(&scanner_ntfs, p, "record 6 torn");
    }
    uint8_t rec[1024];
    prd(img, rec6, rec, sizeof rec);
    /* apply the fixups so we can find the $DATA attribute */
    uint16_t usa = get16(rec + 4);
    rec[510] = rec[usa + 2], rec[511] = rec[usa + 3], rec[1022] = rec[usa + 4], rec[1023] = rec[usa + 5];
    unsigned a = get16(rec + 20), data = 0;
    while (a + 8 <= 1024 && get32(rec + a) != 0xFFFFFFFFu && get32(rec + a + 4) >= 24) {
        if (get32(rec + a) == 0x80)
            data = a;
        a += get32(rec + a + 4);
    }
    CHECK(data != 0);
    if (data) {
        unsigned mp = data + get16(rec + data + 32);
        struct {
            unsigned off;
            const char *bytes;
            size_t len;
            const char *what;
        } runs[] = {
            {mp, "\x48\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F\x01\x00\x00\x00", 13, "absurd run length"},
            {mp, "\x11\x01\x80", 3, "negative LCN"},
            {mp, "\x81\x01\xFF\xFF\xFF\xFF\xFF\xFF\x0F\x00", 10, "LCN past the volume"},
            {mp, "\x9F", 1, "bad mapping pair header"},
            {mp, "\x00", 1, "empty run list for a non-empty bitmap"},
            {data + 4, "\x08\x00\x00\x00", 4, "attribute length 8"},
            {data + 4, "\x00\x10\x00\x00", 4, "attribute length past the record"},
            {data + 48, "\x00\x00\x00\x00\x00\x00\x00\x00", 8, "bitmap data size 0"},
            {data + 32, "\xFF\x00", 2, "mapping pairs offset past the attribute"},
            {20, "\x00\x04", 2, "first attribute at the record end"},
        };
        for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
            const char *p = scratch(img);
            /* keep the update-sequence bytes intact: only patch bytes away from sector ends */
            if ((runs[i].off % 512) + runs[i].len > 510)
                continue;
            pw(p, rec6 + runs[i].off, runs[i].bytes, runs[i].len);
            expect_scan_error(&scanner_ntfs, p, runs[i].what);
        }
    }
    /* truncated */
    {
        const char *p = scratch(img);
        CHECK(truncate(p, (off_t)(file_size(p) / 2)) == 0);
        CHECK_EQ_INT(probe_file(&scanner_ntfs, p), 1);
        expect_scan_error(&scanner_ntfs, p, "truncated");
        CHECK(truncate(p, (off_t)(mft * cs + 2048)) == 0);
        expect_scan_error(&scanner_ntfs, p, "truncated in the MFT");
    }
}

/* ---------------------------------------------------------------------------------------------------------- */
/* XFS */

static const char *xfs_image(int version)
{
    static int made[6];
    static char slot[6][512];
    const char *img = stable_path(slot[version], sizeof slot[version], version == 5 ? "xfs5.img" : "xfs4.img");
    if (made[version])
        return made[version] > 0 ? img : NULL;
    make_data();
    FILE *f = fopen(path("proto"), "w");
    CHECK(f != NULL);
    if (!f)
        return NULL;
    fprintf(f, "/dev/null\n0 0\nd--755 0 0\nbig.bin ---644 0 0 %s\ndir d--755 0 0\n deep d--755 0 0\n"
               "  mid.bin ---644 0 0 %s\n $\n small.bin ---644 0 0 %s\n$\n$\n",
            path("big.bin"), path("mid.bin"), path("small.bin"));
    fclose(f);
    int rc = sh("rm -f '%s' && truncate -s 320M '%s' && mkfs.xfs -q -f %s -p '%s' '%s' >/dev/null 2>&1 && "
                "xfs_repair -n '%s' >/dev/null 2>&1",
                img, img, version == 5 ? "" : "-m crc=0,finobt=0", path("proto"), img, img);
    CHECK(rc == 0);
    made[version] = rc == 0 ? 1 : -1;
    return made[version] > 0 ? img : NULL;
}

/* files of the image read back from a restored copy through a read-only loop mount (root only) */
static void xfs_check_files(const char *rest)
{
    if (!is_root) {
        printf("  note: not root, restored XFS checked with xfs_repair only, files not read back\n");
        return;
    }
    const char *mnt = path("mnt");
    sh("mkdir -p '%s'", mnt);
    if (sh("mount -o loop,ro,norecovery -t xfs '%s' '%s' 2>/dev/null", rest, mnt) != 0) {
        printf("  note: this kernel cannot mount the restored image; files not read back\n");
        return;
    }
    CHECK(sh("cmp -s '%s/big.bin' '%s'", mnt, path("big.bin")) == 0);
    CHECK(sh("cmp -s '%s/dir/deep/mid.bin' '%s'", mnt, path("mid.bin")) == 0);
    CHECK(sh("cmp -s '%s/dir/small.bin' '%s'", mnt, path("small.bin")) == 0);
    CHECK(sh("umount '%s'", mnt) == 0);
}

static void xfs_case(int version)
{
    if (!have("mkfs.xfs"))
        SKIP("xfsprogs not installed");
    const char *img = xfs_image(version);
    if (!img)
        return;
    CHECK_EQ_INT(probe_file(&scanner_xfs, img), 1);
    CHECK_EQ_INT(probe_file(&scanner_fat, img), 0);
    CHECK_EQ_INT(probe_file(&scanner_ntfs, img), 0);
    struct scan_result r;
    struct ds_err e;
    CHECK_EQ_INT(scan_file(&scanner_xfs, img, &r, &e), 0);
    if (e.msg[0])
        fprintf(stderr, "  %s\n", e.msg);
    CHECK_STR(r.fstype, "xfs");
    CHECK(well_formed(&r));
    CHECK_EQ_INT(r.fs_size, file_size(img));
    CHECK_EQ_INT(r.block_size, 4096);
    CHECK(covers(&r, 0, 4096));
    CHECK(r.used_bytes > 3000000u);
    CHECK(r.used_bytes < r.fs_size / 2);
    uint64_t missing, extra;
    if (vs_partclone("partclone.xfs", img, &r, &missing, &extra))
        CHECK_EQ_INT(missing, 0);
    const char *rest = path("restored.img");
    CHECK(restore(img, &r, rest) == 0);
    CHECK(sh("xfs_repair -n '%s' >/dev/null 2>&1", rest) == 0);
    xfs_check_files(rest);
    scan_result_free(&r);
}

TEST(xfs_v5) { xfs_case(5); }
TEST(xfs_v4) { xfs_case(4); }

/* free space fragmented enough for a two-level by-block btree: needs writes and deletes, so a mount */
TEST(xfs_fragmented)
{
    if (!have("mkfs.xfs") || !have("xfs_db"))
        SKIP("xfsprogs not installed");
    if (!is_root)
        SKIP("needs root for a loop mount (fragmenting free space needs real deletes)");
    const char *img = path("xfsfrag.img"), *mnt = path("fragmnt");
    CHECK(sh("rm -f '%s' && truncate -s 320M '%s' && mkfs.xfs -q -f '%s' && mkdir -p '%s'", img, img, img, mnt) == 0);
    if (sh("mount -o loop '%s' '%s'", img, mnt) != 0)
        SKIP("loop mount failed");
    /* One file written and synced (allocated in one run), then every other 4 KiB block punched out: 1200
     * free extents in AG 0's btrees whatever the allocator does with many small files under load (deleting
     * every other one of 2400 small files left too few holes when writeback spread them). */
    int rc = sh("xfs_io -f -c 'pwrite -q -b 1m 0 9600k' -c fsync '%s/frag' && "
                "cmds=''; for i in $(seq 0 1199); do cmds=\"$cmds -c 'fpunch $((i * 8 + 4))k 4k'\"; done && "
                "eval xfs_io $cmds -c fsync '%s/frag' && sync",
                mnt, mnt);
    CHECK(sh("umount '%s'", mnt) == 0);
    CHECK(rc == 0);
    CHECK(sh("xfs_db -r -c 'agf 0' -c 'print levels' '%s' | grep -q 'levels\\[0-2\\] = 0:[2-9]'", img) == 0);
    struct scan_result r;
    struct ds_err e;
    CHECK_EQ_INT(scan_file(&scanner_xfs, img, &r, &e), 0);
    CHECK(well_formed(&r));
    CHECK(r.n > 1000); /* every other 4 KiB block is free */
    uint64_t missing, extra;
    if (vs_partclone("partclone.xfs", img, &r, &missing, &extra)) {
        CHECK_EQ_INT(missing, 0);
        CHECK_EQ_INT(extra, 0);
    }
    scan_result_free(&r);
    unlink(img);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

TEST(xfs_corrupt)
{
    if (!have("mkfs.xfs"))
        SKIP("xfsprogs not installed");
    const char *img = xfs_image(5);
    if (!img)
        return;
    uint8_t sb[512], agf[512];
    prd(img, 0, sb, sizeof sb);
    uint32_t bs = be32(sb + 4), ss = (uint32_t)(sb[102] << 8 | sb[103]);
    prd(img, ss, agf, sizeof agf);
    uint32_t root = be32(agf + 16);
    struct {
        uint64_t off;
        const char *bytes;
        size_t len;
        const char *what;
    } bad[] = {
        {88, "\0\0\0\0", 4, "agcount 0"},
        {88, "\0\0\x10\0", 4, "agcount 4096"},
        {84, "\0\0\0\1", 4, "agblocks 1"},
        {4, "\0\0\x03\0", 4, "block size 768"},
        {8, "\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 8, "dblocks 2^64-1"},
        {100, "\0\x07", 2, "version 7"},
        {ss, "XAGX", 4, "AGF magic"},
        {ss + 8, "\0\0\0\7", 4, "AGF seqno"},
        {ss + 12, "\0\0\0\1", 4, "AGF length"},
        {ss + 16, "\x00\xFF\xFF\xFF", 4, "bnobt root outside the AG"},
        {ss + 16, "\0\0\0\0", 4, "bnobt root at the superblock"},
        {ss + 28, "\0\0\0\x1E", 4, "bnobt 30 levels"},
        {ss + 28, "\0\0\0\x02", 4, "bnobt 2 levels (root is a leaf)"},
        {ss + 28, "\0\0\0\0", 4, "bnobt 0 levels"},
        {ss + 40, "\0\0\x10\0", 4, "AGFL first index past the list"},
        {ss + 48, "\0\0\x10\0", 4, "AGFL count past the list"},
        {(uint64_t)root * bs, "ABTC", 4, "btree magic"},
        {(uint64_t)root * bs + 4, "\0\1", 2, "btree level"},
        {(uint64_t)root * bs + 6, "\xFF\xFF", 2, "btree record count"},
        {(uint64_t)root * bs + 56, "\0\0\0\1\xFF\xFF\xFF\xF0", 8, "free extent past the AG"},
        {(uint64_t)root * bs + 60, "\0\0\0\0", 4, "free extent of 0 blocks"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = scratch(img);
        pw(p, bad[i].off, bad[i].bytes, bad[i].len);
        expect_scan_error(&scanner_xfs, p, bad[i].what);
    }
    /* AGFL entry outside the AG (the list is in sector 3; entries after the 36-byte v5 header) */
    {
        uint32_t first = be32(agf + 40), count = be32(agf + 48);
        if (count) {
            const char *p = scratch(img);
            pw(p, 3u * ss + 36 + 4u * first, "\xFF\xFF\xFF\x00", 4);
            expect_scan_error(&scanner_xfs, p, "AGFL block outside the AG");
        }
    }
    /* truncated */
    {
        const char *p = scratch(img);
        CHECK(truncate(p, (off_t)(file_size(p) / 2)) == 0);
        CHECK_EQ_INT(probe_file(&scanner_xfs, p), 1);
        expect_scan_error(&scanner_xfs, p, "truncated");
        CHECK(truncate(p, 2048) == 0);
        expect_scan_error(&scanner_xfs, p, "2 KiB");
    }
}

/* ---------------------------------------------------------------------------------------------------------- */
/* cross checks and random corruption */

TEST(probe_rejects)
{
    const char *z = path("zero.img"), *t = path("tiny.img");
    CHECK(sh("rm -f '%s' && truncate -s 4M '%s' && head -c 100 /dev/urandom >'%s'", z, z, t) == 0);
    const struct scanner *all[] = {&scanner_fat, &scanner_ntfs, &scanner_xfs};
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT(probe_file(all[i], z), 0);
        CHECK_EQ_INT(probe_file(all[i], t), 0);
        expect_scan_error(all[i], z, "zeros");
        expect_scan_error(all[i], t, "100 bytes");
    }
    /* ext4 is nobody's */
    if (have("mkfs.ext4")) {
        const char *x = path("ext4.img");
        CHECK(sh("rm -f '%s' && truncate -s 16M '%s' && mkfs.ext4 -q -F '%s' >/dev/null 2>&1", x, x, x) == 0);
        for (size_t i = 0; i < 3; i++)
            CHECK_EQ_INT(probe_file(all[i], x), 0);
    }
    /* a filesystem at an offset inside a bigger file: base is honoured */
    if (have("mkfs.vfat") && have("mcopy")) {
        const char *in = fat_image(16), *d = path("disk.img");
        CHECK(sh("rm -f '%s' && truncate -s 1M '%s' && cat '%s' >>'%s'", d, d, in, d) == 0);
        int fd = open(d, O_RDONLY);
        struct scan_src src = {.fd = fd, .path = d, .base = 1 << 20, .size = file_size(in)};
        struct scan_result r = {0}, r0;
        struct ds_err e;
        CHECK_EQ_INT(scanner_fat.probe(&src, &e), 1);
        CHECK_EQ_INT(scanner_fat.scan(&src, &r, &e), 0);
        CHECK_EQ_INT(scan_file(&scanner_fat, in, &r0, &e), 0);
        CHECK_EQ_INT(r.n, r0.n);
        CHECK(r.n == r0.n && memcmp(r.ext, r0.ext, r.n * sizeof *r.ext) == 0);
        scan_result_free(&r);
        scan_result_free(&r0);
        close(fd);
    }
}

/* Flip random bytes in the metadata regions, scan, restore the bytes: no crash, no hang, and a success must
 * still be well formed. */
static void mutate(const struct scanner *s, const char *img, const uint64_t *zone, size_t nzone, unsigned iters)
{
    const char *p = scratch(img);
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    unsigned ok = 0, err = 0;
    for (unsigned it = 0; it < iters; it++) {
        uint64_t off[8];
        uint8_t old[8];
        unsigned n = 1 + (unsigned)(rand() % 8);
        for (unsigned k = 0; k < n; k++) {
            size_t z = (size_t)rand() % nzone;
            off[k] = zone[2 * z] + (uint64_t)rand() % zone[2 * z + 1];
            CHECK(pread(fd, &old[k], 1, (off_t)off[k]) == 1);
            uint8_t v = (uint8_t)(rand() % 4 == 0 ? 0xFF : rand() % 4 == 0 ? 0 : rand());
            CHECK(pwrite(fd, &v, 1, (off_t)off[k]) == 1);
        }
        struct scan_src src = {.fd = fd, .path = p, .base = 0, .size = file_size(p)};
        struct scan_result r = {0};
        struct ds_err e = {{0}};
        if (s->probe(&src, &e) == 1) {
            int rc = s->scan(&src, &r, &e);
            CHECK(rc == 0 || rc == -1);
            if (rc == 0) {
                CHECK(r.n == 0 || well_formed(&r));
                CHECK(r.fs_size <= src.size);
                ok++;
            } else {
                CHECK(e.msg[0]);
                err++;
            }
        }
        scan_result_free(&r);
        for (unsigned k = n; k-- > 0;)
            CHECK(pwrite(fd, &old[k], 1, (off_t)off[k]) == 1);
    }
    close(fd);
    printf("  %s: %u mutations scanned fine, %u rejected\n", s->name, ok, err);
}

static unsigned fuzz_iters(void)
{
    const char *v = getenv("DS_SCAN_FUZZ_ITERS");
    return v ? (unsigned)strtoul(v, NULL, 10) : 150;
}

TEST(mutate_fat)
{
    if (!have("mkfs.vfat") || !have("mcopy"))
        SKIP("mkfs.vfat / mtools not installed");
    srand(12);
    for (int t = 12; t <= 32; t += t == 12 ? 4 : 16) {
        const char *img = fat_image(t);
        uint8_t b[512];
        prd(img, 0, b, sizeof b);
        uint64_t fat = (uint64_t)get16(b + 14) * get16(b + 11);
        uint64_t zone[] = {0, 512, fat, 4096};
        mutate(&scanner_fat, img, zone, 2, fuzz_iters());
    }
}

TEST(mutate_ntfs)
{
    if (!have("mkfs.ntfs") || !have("ntfscp"))
        SKIP("ntfs-3g tools not installed");
    const char *img = ntfs_image();
    if (!img)
        return;
    srand(13);
    uint8_t b[512];
    prd(img, 0, b, sizeof b);
    uint64_t mft = 0;
    memcpy(&mft, b + 48, 8);
    mft *= (uint64_t)get16(b + 11) * b[13];
    uint64_t zone[] = {0, 512, mft, 1024, mft + 6 * 1024, 1024};
    mutate(&scanner_ntfs, img, zone, 3, fuzz_iters() * 2);
}

TEST(mutate_xfs)
{
    if (!have("mkfs.xfs"))
        SKIP("xfsprogs not installed");
    srand(14);
    for (int v = 5; v >= 4; v--) {
        const char *img = xfs_image(v);
        if (!img)
            continue;
        uint8_t sb[512], agf[512];
        prd(img, 0, sb, sizeof sb);
        uint32_t bs = be32(sb + 4), ss = (uint32_t)(sb[102] << 8 | sb[103]);
        prd(img, ss, agf, sizeof agf);
        uint64_t root = (uint64_t)be32(agf + 16) * bs;
        uint64_t zone[] = {0, 256, ss, 64, 3u * ss, 128, root, 256};
        mutate(&scanner_xfs, img, zone, 4, fuzz_iters());
    }
}

int main(void)
{
    is_root = geteuid() == 0;
    snprintf(tmp, sizeof tmp, "%s/ds-scanfs.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_FS(fat12);
    RUN_FS(fat16);
    RUN_FS(fat32);
    RUN_FS(fat_corrupt);
    RUN_FS(ntfs);
    RUN_FS(ntfs_corrupt);
    RUN_FS(xfs_v5);
    RUN_FS(xfs_v4);
    RUN_FS(xfs_fragmented);
    RUN_FS(xfs_corrupt);
    RUN_FS(probe_rejects);
    RUN_FS(mutate_fat);
    RUN_FS(mutate_ntfs);
    RUN_FS(mutate_xfs);
    if (!getenv("DS_KEEP"))
        sh("rm -rf '%s'", tmp);
    else
        printf("kept %s\n", tmp);
    printf("%d passed, %d failed, %d skipped\n", check_passed, check_failed, skipped);
    return check_failed ? 1 : 0;
}
