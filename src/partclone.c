/* partclone.c — partclone image reader (formats 0001/0002; raw, gzip, zstd; split parts) and the in-place
 * seeding backend for uncompressed images. Layouts are described in partclone.h. */
#include "partclone.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "extent_map.h"

#define PC_V1_HEADER 4160u
#define PC_V2_HEADER 110u
#define PC_V2_FEATURES 18u
#define PC_BITMAGIC "BiTmAgIc"
#define PC_IBUF ((size_t)1 << 17)
#define PC_MAX_BLOCKS ((uint64_t)1 << 40)
#define PC_MAX_PARTS 4096

static uint16_t g16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t g32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t g64(const uint8_t *p) { return (uint64_t)g32(p) | (uint64_t)g32(p + 4) << 32; }

static uint32_t zcrc(uint32_t c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = (uint32_t)crc32(c, p, k);
        p += k;
        n -= k;
    }
    return c;
}

/* ---------------------------------------------------------------------------------------------------------
 * input: concatenated parts, then decompression */

struct pc_in {
    char **parts;
    size_t n_parts, cur;
    int fd;
    enum pc_comp comp;
    z_stream zs;
    bool z_init, z_end;
    ZSTD_DStream *zd;
    uint8_t *ibuf;
    size_t ilen, ipos;
    bool raw_eof;
    uint64_t pos;
};

/* Raw bytes of the concatenated parts: up to n, 0 at the end of the last part. */
static ssize_t raw_read(struct pc_in *in, uint8_t *buf, size_t n, struct ds_err *e)
{
    while (in->cur < in->n_parts) {
        if (in->fd < 0) {
            in->fd = open(in->parts[in->cur], O_RDONLY | O_CLOEXEC);
            if (in->fd < 0)
                return ds_errno(e, "cannot open '%s'", in->parts[in->cur]);
            posix_fadvise(in->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        }
        ssize_t r = read(in->fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ds_errno(e, "cannot read '%s'", in->parts[in->cur]);
        if (r > 0)
            return r;
        close(in->fd);
        in->fd = -1;
        in->cur++;
    }
    return 0;
}

static int fill_ibuf(struct pc_in *in, struct ds_err *e)
{
    if (in->ipos < in->ilen || in->raw_eof)
        return 0;
    ssize_t r = raw_read(in, in->ibuf, PC_IBUF, e);
    if (r < 0)
        return -1;
    in->ilen = (size_t)r;
    in->ipos = 0;
    if (r == 0)
        in->raw_eof = true;
    return 0;
}

/* Up to n decompressed bytes; 0 at the end of the data. */
static ssize_t in_some(struct pc_in *in, uint8_t *buf, size_t n, struct ds_err *e)
{
    if (in->comp == PC_RAW)
        return raw_read(in, buf, n, e);
    for (;;) {
        if (fill_ibuf(in, e))
            return -1;
        if (in->comp == PC_GZIP) {
            if (in->z_end) {
                if (in->ipos >= in->ilen)
                    return 0;
                /* another gzip member follows */
                if (inflateReset(&in->zs) != Z_OK)
                    return ds_errf(e, "%s: gzip: cannot restart", in->parts[0]);
                in->z_end = false;
            }
            if (in->ipos >= in->ilen)   /* fill_ibuf found the end of the parts */
                return ds_errf(e, "%s: gzip data ends unexpectedly (truncated or a part missing)", in->parts[0]);
            in->zs.next_in = in->ibuf + in->ipos;
            in->zs.avail_in = (uInt)(in->ilen - in->ipos);
            in->zs.next_out = buf;
            in->zs.avail_out = (uInt)(n > (1u << 30) ? (1u << 30) : n);
            uInt before = in->zs.avail_out, before_in = in->zs.avail_in;
            int zr = inflate(&in->zs, Z_NO_FLUSH);
            in->ipos = in->ilen - in->zs.avail_in;
            size_t got = before - in->zs.avail_out;
            if (zr == Z_STREAM_END)
                in->z_end = true;
            else if ((zr != Z_OK && zr != Z_BUF_ERROR) || (got == 0 && in->zs.avail_in == before_in))
                return ds_errf(e, "%s: gzip data is corrupt (%s)", in->parts[0], in->zs.msg ? in->zs.msg : "error");
            if (got)
                return (ssize_t)got;
        } else {
            if (in->raw_eof && in->ipos >= in->ilen)
                return in->z_end ? 0 : ds_errf(e, "%s: zstd data ends unexpectedly (truncated or a part missing)",
                                               in->parts[0]);
            ZSTD_inBuffer ib = {in->ibuf, in->ilen, in->ipos};
            ZSTD_outBuffer ob = {buf, n, 0};
            size_t zr = ZSTD_decompressStream(in->zd, &ob, &ib);
            in->ipos = ib.pos;
            if (ZSTD_isError(zr))
                return ds_errf(e, "%s: zstd data is corrupt (%s)", in->parts[0], ZSTD_getErrorName(zr));
            in->z_end = zr == 0;
            if (ob.pos)
                return (ssize_t)ob.pos;
        }
    }
}

static int in_read(struct pc_in *in, void *buf, size_t n, const char *what, struct ds_err *e)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = in_some(in, p, n, e);
        if (r < 0)
            return -1;
        if (r == 0)
            return ds_errf(e, "%s: image ends in the %s (at byte %" PRIu64 "): truncated or a part missing",
                           in->parts[0], what, in->pos);
        p += r;
        n -= (size_t)r;
        in->pos += (uint64_t)r;
    }
    return 0;
}

static void in_free(struct pc_in *in)
{
    if (in->fd >= 0)
        close(in->fd);
    in->fd = -1;
    if (in->z_init)
        inflateEnd(&in->zs);
    in->z_init = false;
    ZSTD_freeDStream(in->zd);
    in->zd = NULL;
    for (size_t i = 0; i < in->n_parts; i++)
        free(in->parts[i]);
    free(in->parts);
    in->parts = NULL;
    free(in->ibuf);
    in->ibuf = NULL;
}

/* Parts: the given paths, or for one path ending in ".aa" every existing ".ab", ".ac" ... next to it. */
static int collect_parts(struct pc_in *in, const char *const *paths, size_t n, struct ds_err *e)
{
    size_t cap = n == 1 ? 16 : n;
    in->parts = calloc(cap, sizeof *in->parts);
    if (!in->parts)
        return ds_errf(e, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(in->parts[in->n_parts++] = strdup(paths[i])))
            return ds_errf(e, "out of memory");
    size_t l = strlen(paths[0]);
    if (n != 1 || l < 3 || strcmp(paths[0] + l - 3, ".aa"))
        return 0;
    for (unsigned k = 1; k < 26 * 26 && in->n_parts < PC_MAX_PARTS; k++) {
        char *p = strdup(paths[0]);
        if (!p)
            return ds_errf(e, "out of memory");
        p[l - 2] = (char)('a' + k / 26);
        p[l - 1] = (char)('a' + k % 26);
        if (access(p, F_OK)) {
            free(p);
            break;
        }
        if (in->n_parts == cap) {
            char **np = realloc(in->parts, cap * 2 * sizeof *np);
            if (!np) {
                free(p);
                return ds_errf(e, "out of memory");
            }
            in->parts = np;
            cap *= 2;
        }
        in->parts[in->n_parts++] = p;
    }
    return 0;
}

static int in_open(struct pc_in *in, const char *const *paths, size_t n, struct ds_err *e)
{
    memset(in, 0, sizeof *in);
    in->fd = -1;
    if (n == 0)
        return ds_errf(e, "no image given");
    if (collect_parts(in, paths, n, e))
        return -1;
    uint8_t m[4] = {0};
    int fd = open(in->parts[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_errno(e, "cannot open '%s'", in->parts[0]);
    ssize_t r = pread(fd, m, sizeof m, 0);
    close(fd);
    if (r < 0)
        return ds_errno(e, "cannot read '%s'", in->parts[0]);
    if (r >= 2 && m[0] == 0x1f && m[1] == 0x8b)
        in->comp = PC_GZIP;
    else if (r == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
        in->comp = PC_ZSTD;
    else
        in->comp = PC_RAW;
    if (in->comp != PC_RAW && !(in->ibuf = malloc(PC_IBUF)))
        return ds_errf(e, "out of memory");
    if (in->comp == PC_GZIP) {
        if (inflateInit2(&in->zs, 15 + 32) != Z_OK)
            return ds_errf(e, "zlib initialisation failed");
        in->z_init = true;
    } else if (in->comp == PC_ZSTD) {
        if (!(in->zd = ZSTD_createDStream()) || ZSTD_isError(ZSTD_initDStream(in->zd)))
            return ds_errf(e, "zstd initialisation failed");
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------
 * reader */

struct pc_reader {
    struct pc_in in;
    struct pc_info info;
    uint8_t *bitmap;             /* bit per block, LSB first */
    struct pc_extent *ext;
    size_t n_ext;
    bool verify;
    uint64_t strip_bytes, strip_left, data_left;
    uint32_t crc;                /* zlib-convention running CRC of the current strip */
};

const struct pc_info *pc_get_info(const struct pc_reader *r) { return &r->info; }

const struct pc_extent *pc_extents(const struct pc_reader *r, size_t *n)
{
    *n = r->n_ext;
    return r->ext;
}

bool pc_block_used(const struct pc_reader *r, uint64_t b)
{
    return b < r->info.total_blocks && (r->bitmap[b >> 3] >> (b & 7) & 1);
}

void pc_close(struct pc_reader *r)
{
    if (!r)
        return;
    in_free(&r->in);
    free(r->bitmap);
    free(r->ext);
    free(r);
}

static void cstr(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t k = 0;
    for (; k < n && k + 1 < cap && src[k]; k++)
        dst[k] = isprint(src[k]) ? (char)src[k] : '?';
    dst[k] = 0;
}

/* Byte map (one byte per block): bit map with non-zero bytes as used, chosen so the count matches the
 * header's used blocks (some old images hold values other than 0/1 in it). */
static int read_bytemap(struct pc_reader *r, struct ds_err *e)
{
    const uint64_t total = r->info.total_blocks;
    uint8_t *only1 = calloc((size_t)(total / 8 + 1), 1);
    uint8_t *buf = malloc(PC_IBUF);
    uint64_t n1 = 0, nz = 0;
    int rc = -1;
    if (!only1 || !buf) {
        ds_errf(e, "out of memory");
        goto out;
    }
    for (uint64_t b = 0; b < total;) {
        size_t k = total - b < PC_IBUF ? (size_t)(total - b) : PC_IBUF;
        if (in_read(&r->in, buf, k, "bitmap", e))
            goto out;
        for (size_t i = 0; i < k; i++, b++) {
            if (buf[i]) {
                r->bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
                nz++;
            }
            if (buf[i] == 1) {
                only1[b >> 3] |= (uint8_t)(1u << (b & 7));
                n1++;
            }
        }
    }
    uint8_t magic[8];
    if (in_read(&r->in, magic, 8, "bitmap", e))
        goto out;
    if (memcmp(magic, PC_BITMAGIC, 8)) {
        ds_errf(e, "%s: the bitmap is not followed by its signature (damaged image)", r->in.parts[0]);
        goto out;
    }
    if (nz != r->info.used_blocks && n1 == r->info.used_blocks) {
        memcpy(r->bitmap, only1, (size_t)(total / 8 + 1));
        nz = n1;
    }
    if (nz != r->info.used_blocks) {
        ds_errf(e, "%s: the bitmap marks %" PRIu64 " blocks used, the header says %" PRIu64, r->in.parts[0], nz,
                r->info.used_blocks);
        goto out;
    }
    rc = 0;
out:
    free(only1);
    free(buf);
    return rc;
}

static int read_header(struct pc_reader *r, struct ds_err *e)
{
    struct pc_info *pi = &r->info;
    const char *path = r->in.parts[0];
    uint8_t h[PC_V1_HEADER];
    if (in_read(&r->in, h, 36, "header", e))
        return -1;
    if (memcmp(h, PC_MAGIC, 15))
        return ds_errf(e, "%s: not a partclone image (no \"%s\" signature)", path, PC_MAGIC);
    if (!memcmp(h + 30, "0001", 4)) {
        pi->version = 1;
        if (in_read(&r->in, h + 36, PC_V1_HEADER - 36, "header", e))
            return -1;
        cstr(pi->fs, sizeof pi->fs, h + 15, 15);
        int32_t bs = (int32_t)g32(h + 36);
        pi->block_size = bs > 0 ? (uint32_t)bs : 0;
        pi->device_size = g64(h + 40);
        pi->total_blocks = g64(h + 48);
        pi->used_blocks = g64(h + 56);
        pi->checksum_mode = 0xff;   /* the defective CRC of format 0001: not verified */
        pi->checksum_size = 4;
        pi->blocks_per_checksum = 1;
        pi->bitmap_mode = PC_BM_BYTE;
        pi->data_offset = PC_V1_HEADER;
    } else if (!memcmp(h + 30, "0002", 4)) {
        pi->version = 2;
        if (in_read(&r->in, h + 36, PC_V2_HEADER - 36, "header", e))
            return -1;
        if (g16(h + 34) == 0xDEC0)
            return ds_errf(e, "%s: big-endian partclone images are not supported", path);
        if (g16(h + 34) != 0xC0DE)
            return ds_errf(e, "%s: bad endianness marker in the partclone header", path);
        if (~zcrc(0, h, 106) != g32(h + 106))
            return ds_errf(e, "%s: partclone header CRC mismatch (damaged header)", path);
        cstr(pi->ptc_version, sizeof pi->ptc_version, h + 16, 14);
        cstr(pi->fs, sizeof pi->fs, h + 36, 16);
        pi->device_size = g64(h + 52);
        pi->total_blocks = g64(h + 60);
        pi->used_blocks = g64(h + 76);   /* by bitmap */
        pi->block_size = g32(h + 84);
        if (g32(h + 88) != PC_V2_FEATURES || g16(h + 92) != 2)
            return ds_errf(e, "%s: unsupported partclone image options (feature size %u, version %u)", path,
                           g32(h + 88), g16(h + 92));
        pi->checksum_mode = g16(h + 96);
        pi->checksum_size = g16(h + 98);
        pi->blocks_per_checksum = g32(h + 100);
        pi->reseed = h[104] != 0;
        pi->bitmap_mode = h[105];
        if (pi->checksum_mode == PC_CSM_NONE) {
            pi->checksum_size = 0;
            pi->blocks_per_checksum = 0;
        } else if (pi->checksum_mode != PC_CSM_CRC32 || pi->checksum_size != 4 || pi->blocks_per_checksum == 0) {
            return ds_errf(e, "%s: unsupported checksum mode 0x%x (size %u, %u blocks per checksum)", path,
                           pi->checksum_mode, pi->checksum_size, pi->blocks_per_checksum);
        }
        if (pi->bitmap_mode != PC_BM_BIT && pi->bitmap_mode != PC_BM_BYTE)
            return ds_errf(e, "%s: unsupported bitmap mode %u", path, pi->bitmap_mode);
        pi->data_offset = PC_V2_HEADER;
    } else {
        return ds_errf(e, "%s: unknown partclone image version \"%.4s\"", path, (const char *)h + 30);
    }
    if (pi->block_size < 256 || pi->block_size > (1u << 26) || (pi->block_size & (pi->block_size - 1)))
        return ds_errf(e, "%s: bad block size %u", path, pi->block_size);
    if (pi->total_blocks == 0 || pi->total_blocks > PC_MAX_BLOCKS || pi->used_blocks > pi->total_blocks)
        return ds_errf(e, "%s: bad block counts (%" PRIu64 " used of %" PRIu64 ")", path, pi->used_blocks,
                       pi->total_blocks);
    if (pi->blocks_per_checksum > (1u << 24))
        return ds_errf(e, "%s: bad blocks per checksum %u", path, pi->blocks_per_checksum);
    return 0;
}

static int read_bitmap(struct pc_reader *r, struct ds_err *e)
{
    struct pc_info *pi = &r->info;
    size_t bl = (size_t)((pi->total_blocks + 7) / 8);
    if (!(r->bitmap = calloc(bl + 1, 1)))
        return ds_errf(e, "out of memory (bitmap of %zu bytes)", bl);
    if (pi->bitmap_mode == PC_BM_BYTE) {
        if (read_bytemap(r, e))
            return -1;
        pi->data_offset += pi->total_blocks + 8;
        return 0;
    }
    if (in_read(&r->in, r->bitmap, bl, "bitmap", e))
        return -1;
    uint8_t c[4];
    if (in_read(&r->in, c, 4, "bitmap", e))
        return -1;
    if (~zcrc(0, r->bitmap, bl) != g32(c))
        return ds_errf(e, "%s: bitmap CRC mismatch (damaged image)", r->in.parts[0]);
    if (pi->total_blocks % 8)
        r->bitmap[bl - 1] &= (uint8_t)((1u << (pi->total_blocks % 8)) - 1);
    uint64_t n = 0;
    for (size_t i = 0; i < bl; i++)
        n += (uint64_t)__builtin_popcount(r->bitmap[i]);
    if (n != pi->used_blocks)
        return ds_errf(e, "%s: the bitmap marks %" PRIu64 " blocks used, the header says %" PRIu64, r->in.parts[0],
                       n, pi->used_blocks);
    pi->data_offset += bl + 4;
    return 0;
}

static int build_extents(struct pc_reader *r, struct ds_err *e)
{
    const struct pc_info *pi = &r->info;
    size_t cap = 0;
    for (uint64_t b = 0; b < pi->total_blocks;) {
        if (!(r->bitmap[b >> 3] >> (b & 7) & 1)) {
            if (r->bitmap[b >> 3] == 0 && (b & 7) == 0)
                b += 8;
            else
                b++;
            continue;
        }
        uint64_t s = b;
        while (b < pi->total_blocks && (r->bitmap[b >> 3] >> (b & 7) & 1))
            b++;
        if (r->n_ext == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct pc_extent *nx = realloc(r->ext, nc * sizeof *nx);
            if (!nx)
                return ds_errf(e, "out of memory");
            r->ext = nx;
            cap = nc;
        }
        r->ext[r->n_ext++] = (struct pc_extent){s * pi->block_size, (b - s) * pi->block_size};
    }
    return 0;
}

int pc_open(struct pc_reader **out, const char *const *paths, size_t n_paths, bool verify, struct ds_err *e)
{
    *out = NULL;
    struct pc_reader *r = calloc(1, sizeof *r);
    if (!r)
        return ds_errf(e, "out of memory");
    if (in_open(&r->in, paths, n_paths, e) || read_header(r, e) || read_bitmap(r, e) || build_extents(r, e)) {
        pc_close(r);
        return -1;
    }
    struct pc_info *pi = &r->info;
    pi->comp = r->in.comp;
    pi->n_parts = r->in.n_parts;
    pi->data_bytes = pi->used_blocks * pi->block_size;
    uint64_t nck = pi->blocks_per_checksum ? (pi->used_blocks + pi->blocks_per_checksum - 1) / pi->blocks_per_checksum
                                           : 0;
    pi->image_bytes = pi->data_offset + pi->data_bytes + nck * pi->checksum_size;
    r->verify = verify && pi->checksum_mode == PC_CSM_CRC32;
    r->strip_bytes = pi->blocks_per_checksum ? (uint64_t)pi->blocks_per_checksum * pi->block_size : pi->data_bytes;
    r->strip_left = r->strip_bytes;
    r->data_left = pi->data_bytes;
    r->crc = 0;
    *out = r;
    return 0;
}

int pc_read_data(struct pc_reader *r, void *buf, size_t len, struct ds_err *e)
{
    uint8_t *p = buf;
    const struct pc_info *pi = &r->info;
    while (len > 0) {
        if (r->data_left == 0)
            return ds_errf(e, "%s: read past the end of the image's data", r->in.parts[0]);
        uint64_t n = len;
        if (n > r->strip_left)
            n = r->strip_left;
        if (n > r->data_left)
            n = r->data_left;
        if (in_read(&r->in, p, (size_t)n, "block data", e))
            return -1;
        if (r->verify)
            r->crc = zcrc(r->crc, p, (size_t)n);
        p += n;
        len -= (size_t)n;
        r->strip_left -= n;
        r->data_left -= n;
        if (pi->checksum_size && (r->strip_left == 0 || r->data_left == 0)) {
            uint8_t c[8];
            if (in_read(&r->in, c, pi->checksum_size, "block data", e))
                return -1;
            if (r->verify && ~r->crc != g32(c))
                return ds_errf(e, "%s: checksum mismatch in the block data before image byte %" PRIu64
                               " (damaged image)",
                               r->in.parts[0], r->in.pos);
            if (pi->reseed)
                r->crc = 0;
            r->strip_left = r->strip_bytes;
        }
    }
    return 0;
}

int pc_probe_file(const char *path, struct ds_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_errno(e, "cannot open '%s'", path);
    char m[15];
    ssize_t r = pread(fd, m, sizeof m, 0);
    close(fd);
    if (r < 0)
        return ds_errno(e, "cannot read '%s'", path);
    return r == (ssize_t)sizeof m && !memcmp(m, PC_MAGIC, 15);
}

const char *pc_fs_name(const char *f)
{
    if (!strncmp(f, "EXT", 3))
        return !strcmp(f, "EXT2") ? "ext2" : !strcmp(f, "EXT3") ? "ext3" : "ext4";
    if (!strncmp(f, "FAT", 3) || !strcmp(f, "VFAT"))
        return "vfat";
    if (!strcmp(f, "NTFS"))
        return "ntfs";
    if (!strcmp(f, "XFS"))
        return "xfs";
    if (!strcmp(f, "BTRFS"))
        return "btrfs";
    if (!strcmp(f, "EXFAT"))
        return "exfat";
    if (!strcmp(f, "raw"))
        return "raw";
    return "other";
}

/* ---------------------------------------------------------------------------------------------------------
 * in-place seeding */

uint64_t pc_data_to_image_offset(const struct pc_info *in, uint64_t t)
{
    if (!in->blocks_per_checksum || !in->checksum_size)
        return in->data_offset + t;
    uint64_t strip = (uint64_t)in->blocks_per_checksum * in->block_size;
    return in->data_offset + t / strip * (strip + in->checksum_size) + t % strip;
}

struct pc_inplace {
    int fd;
    char *path;
    struct pc_info info;
};

static int inplace_read(void *ctx, uint64_t t, void *buf, size_t len, struct ds_err *e)
{
    struct pc_inplace *p = ctx;
    const struct pc_info *in = &p->info;
    uint64_t strip = in->blocks_per_checksum && in->checksum_size ? (uint64_t)in->blocks_per_checksum * in->block_size
                                                                  : in->data_bytes;
    if (t > in->data_bytes || len > in->data_bytes - t)
        return ds_errf(e, "%s: range outside the image's data", p->path);
    uint8_t *o = buf;
    while (len > 0) {
        uint64_t room = strip - t % strip;
        size_t n = room < len ? (size_t)room : len;
        uint64_t off = pc_data_to_image_offset(in, t);
        size_t done = 0;
        while (done < n) {
            ssize_t r = pread(p->fd, o + done, n - done, (off_t)(off + done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return ds_errno(e, "%s: read at offset %" PRIu64, p->path, off + done);
            if (r == 0)
                return ds_errf(e, "%s: unexpected end of image at offset %" PRIu64, p->path, off + done);
            done += (size_t)r;
        }
        o += n;
        t += n;
        len -= n;
    }
    return 0;
}

static void inplace_close(void *ctx)
{
    struct pc_inplace *p = ctx;
    if (p->fd >= 0)
        close(p->fd);
    free(p->path);
    free(p);
}

int pc_inplace_backend(const char *path, const struct extent_map *map, struct store_backend *b, struct ds_err *e)
{
    struct pc_reader *r;
    const char *paths[1] = {path};
    if (pc_open(&r, paths, 1, false, e))
        return -1;
    const struct pc_info *pi = pc_get_info(r);
    int rc = -1;
    struct pc_inplace *p = NULL;
    if (pi->comp != PC_RAW || pi->n_parts != 1) {
        ds_errf(e, "%s: only an uncompressed, unsplit partclone image can be seeded in place; import it "
                "(diskswarm import) to seed it", path);
        goto out;
    }
    /* the torrent's extents, merged, must be the image's used extents */
    size_t n_pc, k = 0;
    const struct pc_extent *px = pc_extents(r, &n_pc);
    bool same = map->total == pi->data_bytes;
    for (size_t i = 0; same && i < map->n;) {
        const struct extent *x = &map->ext[i];
        if (x->pad) {
            same = false;
            break;
        }
        uint64_t off = x->dev_off, len = x->len;
        for (i++; i < map->n && !map->ext[i].pad && map->ext[i].dev_off == off + len; i++)
            len += map->ext[i].len;
        same = k < n_pc && px[k].off == off && px[k].len == len;
        k++;
    }
    if (!same || k != n_pc) {
        ds_errf(e, "%s: the torrent's extents are not this partclone image's used blocks", path);
        goto out;
    }
    if (!(p = calloc(1, sizeof *p))) {
        ds_errf(e, "out of memory");
        goto out;
    }
    p->fd = -1;
    if (!(p->path = strdup(path))) {
        ds_errf(e, "out of memory");
        goto out;
    }
    p->info = *pi;
    p->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (p->fd < 0 || fstat(p->fd, &st)) {
        ds_errno(e, "cannot open '%s'", path);
        goto out;
    }
    if ((uint64_t)st.st_size < pi->image_bytes) {
        ds_errf(e, "%s: %" PRIu64 " bytes, the image needs %" PRIu64 " (truncated)", path, (uint64_t)st.st_size,
                pi->image_bytes);
        goto out;
    }
    b->read = inplace_read;
    b->close = inplace_close;
    b->read_zframe = NULL;
    b->ctx = p;
    b->what = p->path;
    p = NULL;
    rc = 0;
out:
    if (p)
        inplace_close(p);
    pc_close(r);
    return rc;
}
