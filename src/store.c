#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha1.h"
#include "target_check.h"

#define STORE_HASH_CHUNK (256u * 1024u)

int store_open(struct store *s, const char *path, enum store_mode mode, const struct metainfo *mi,
               const struct extent_map *map, struct ds_err *e)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->mi = mi;
    s->map = map;
    s->writable = mode == STORE_WRITE;

    struct stat st;
    bool exists = stat(path, &st) == 0;
    if (!exists && (errno != ENOENT || mode == STORE_READ))
        return ds_errno(e, "%s", path);
    if (exists && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return ds_errf(e, "%s is not a block device or regular file", path);

    if (mode == STORE_WRITE && exists && target_check_unused(path, &st, e) != 0)
        return -1;

    int flags = O_CLOEXEC | (mode == STORE_WRITE ? O_RDWR : O_RDONLY);
    if (mode == STORE_WRITE && !exists)
        flags |= O_CREAT;
    /* O_EXCL on a block device asks the kernel to refuse when it is mounted or claimed (Linux semantics). */
    if (mode == STORE_WRITE && exists && S_ISBLK(st.st_mode))
        flags |= O_EXCL;
    s->fd = open(path, flags, 0644);
    if (s->fd < 0) {
        if (errno == EBUSY)
            return ds_errf(e, "%s is busy (mounted or in use by the kernel); refusing to write to it", path);
        return ds_errno(e, "cannot open %s", path);
    }
    if (fstat(s->fd, &st) != 0) {
        ds_errno(e, "%s", path);
        goto fail;
    }
    s->is_blockdev = S_ISBLK(st.st_mode);
    if (target_size(s->fd, &st, &s->dev_size, e) != 0)
        goto fail;

    if (s->dev_size < map->dev_end) {
        if (mode == STORE_WRITE && !s->is_blockdev) {
            if (ftruncate(s->fd, (off_t)map->dev_end) != 0) {
                ds_errno(e, "cannot extend %s to %llu bytes", path, (unsigned long long)map->dev_end);
                goto fail;
            }
            s->dev_size = map->dev_end;
        } else {
            ds_errf(e, "%s is too small: %llu bytes, the image needs %llu bytes", path,
                    (unsigned long long)s->dev_size, (unsigned long long)map->dev_end);
            goto fail;
        }
    }
    s->path = strdup(path);
    if (!s->path) {
        ds_errf(e, "out of memory");
        goto fail;
    }
    return 0;
fail:
    close(s->fd);
    s->fd = -1;
    return -1;
}

int store_open_backend(struct store *s, const struct metainfo *mi, const struct extent_map *map,
                       const struct store_backend *b, struct ds_err *e)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->mi = mi;
    s->map = map;
    s->backend = *b;
    s->path = strdup(b->what ? b->what : "image");
    if (!s->path) {
        if (b->close)
            b->close(b->ctx);
        s->backend.read = NULL;
        return ds_errf(e, "out of memory");
    }
    return 0;
}

int store_open_sibling(struct store *s, const struct store *first, const struct metainfo *mi,
                       const struct extent_map *map, struct ds_err *e)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    if (first->fd < 0 || first->backend.read)
        return ds_errf(e, "internal error: a sibling store needs an open device");
    if (map->dev_end > first->dev_size)
        return ds_errf(e, "%s is too small: %llu bytes, the image needs %llu bytes", first->path,
                       (unsigned long long)first->dev_size, (unsigned long long)map->dev_end);
    s->path = strdup(first->path);
    s->fd = fcntl(first->fd, F_DUPFD_CLOEXEC, 0);
    if (!s->path || s->fd < 0) {
        int err = s->fd < 0 ? errno : ENOMEM;
        store_close(s);
        errno = err;
        return ds_errno(e, "%s", first->path);
    }
    s->mi = mi;
    s->map = map;
    s->writable = first->writable;
    s->is_blockdev = first->is_blockdev;
    s->dev_size = first->dev_size;
    return 0;
}

void store_close(struct store *s)
{
    if (s->backend.close)
        s->backend.close(s->backend.ctx);
    s->backend.read = NULL;
    s->backend.close = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->path);
    s->path = NULL;
}

static int pread_full(int fd, uint8_t *p, size_t len, uint64_t off, struct ds_err *e)
{
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ds_errno(e, "read at device offset %llu", (unsigned long long)off);
        }
        if (n == 0)
            return ds_errf(e, "unexpected end of device at offset %llu", (unsigned long long)off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, uint64_t off, struct ds_err *e)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ds_errno(e, "write at device offset %llu", (unsigned long long)off);
        }
        if (n == 0)
            return ds_errf(e, "device accepted no bytes at offset %llu", (unsigned long long)off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Walk the extents covering [off, off+len) and call the read or write primitive on each device range. */
static int store_io(struct store *s, uint64_t off, uint8_t *rbuf, const uint8_t *wbuf, size_t len, struct ds_err *e)
{
    const struct extent_map *m = s->map;
    if (len == 0)
        return 0;
    if (off >= m->total || len > m->total - off)
        return ds_errf(e, "range %llu+%zu lies outside the torrent (%llu bytes)", (unsigned long long)off, len,
                       (unsigned long long)m->total);
    size_t i = extent_map_find(m, off);
    size_t done = 0;
    while (done < len) {
        if (i >= m->n)
            return ds_errf(e, "extent map ends before offset %llu", (unsigned long long)(off + done));
        const struct extent *x = &m->ext[i];
        uint64_t in = off + done - x->tor_off;
        uint64_t n = x->len - in;
        if (n > len - done)
            n = len - done;
        if (x->pad) {
            if (rbuf)
                memset(rbuf + done, 0, (size_t)n);
        } else {
            uint64_t dev = x->dev_off + in;
            if (dev + n > s->dev_size)
                return ds_errf(e, "extent at device offset %llu runs past the end of %s",
                               (unsigned long long)x->dev_off, s->path ? s->path : "the device");
            int rc = rbuf ? pread_full(s->fd, rbuf + done, (size_t)n, dev, e)
                          : pwrite_full(s->fd, wbuf + done, (size_t)n, dev, e);
            if (rc)
                return rc;
        }
        done += (size_t)n;
        i++;
    }
    return 0;
}

int store_read(struct store *s, uint64_t off, void *buf, size_t len, struct ds_err *e)
{
    if (s->backend.read) {
        if (off >= s->mi->total_length || len > s->mi->total_length - off)
            return ds_errf(e, "range %llu+%zu lies outside the torrent", (unsigned long long)off, len);
        return s->backend.read(s->backend.ctx, off, buf, len, e);
    }
    return store_io(s, off, buf, NULL, len, e);
}

int store_write(struct store *s, uint64_t off, const void *buf, size_t len, struct ds_err *e)
{
    if (!s->writable)
        return ds_errf(e, "store is read-only");
    return store_io(s, off, NULL, buf, len, e);
}

int store_check_piece(struct store *s, uint32_t piece, struct ds_err *e)
{
    const struct metainfo *mi = s->mi;
    if (piece >= mi->num_pieces)
        return ds_errf(e, "piece %u out of range", piece);
    uint64_t base = (uint64_t)piece * mi->piece_length;
    uint64_t size = metainfo_piece_size(mi, piece);
    uint8_t *chunk = malloc(STORE_HASH_CHUNK);
    if (!chunk)
        return ds_errf(e, "out of memory");
    struct sha1_ctx c;
    if (sha1_init(&c)) {
        free(chunk);
        return ds_errf(e, "SHA-1 init failed");
    }
    int rc = 0;
    for (uint64_t done = 0; done < size && rc == 0;) {
        size_t n = size - done > STORE_HASH_CHUNK ? STORE_HASH_CHUNK : (size_t)(size - done);
        rc = store_read(s, base + done, chunk, n, e);
        if (rc == 0 && sha1_update(&c, chunk, n))
            rc = ds_errf(e, "SHA-1 update failed");
        done += n;
    }
    free(chunk);
    uint8_t h[SHA1_LEN];
    if (rc) {
        sha1_abort(&c);
        return -1;
    }
    if (sha1_final(&c, h))
        return ds_errf(e, "SHA-1 final failed");
    return memcmp(h, mi->piece_hashes + (size_t)piece * SHA1_LEN, SHA1_LEN) == 0 ? 1 : 0;
}

int store_sync(struct store *s, struct ds_err *e)
{
    if (s->writable && fdatasync(s->fd) != 0)
        return ds_errno(e, "cannot flush %s", s->path ? s->path : "target");
    return 0;
}
