/* extent_hash.c — see extent_hash.h. */
#include "extent_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "readahead.h"
#include "sha1.h"

#define EH_CHUNK ((size_t)1 << 20)

struct eh_job {
    const struct extent_hash *h;
    uint64_t total, n_pieces;
    struct readahead *ra;
    atomic_uint_fast64_t next;
    atomic_uint_fast64_t bytes_done;
    atomic_uint_fast64_t sha_ns;
    atomic_int failed;
    atomic_int running;
    pthread_mutex_t lock;
    pthread_cond_t done;    /* signalled (under lock) when a worker ends */
    struct ds_err err;      /* the first failure, under lock */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void job_fail(struct eh_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_fail(struct eh_job *j, const char *fmt, ...)
{
    pthread_mutex_lock(&j->lock);
    if (!atomic_load(&j->failed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->err.msg, sizeof j->err.msg, fmt, ap);
        va_end(ap);
        atomic_store(&j->failed, 1);
    }
    pthread_mutex_unlock(&j->lock);
}

/* Read exactly len bytes at device offset dev into buf. 0 or -1 (job failed). */
static int read_full(struct eh_job *j, int fd, uint8_t *buf, size_t len, uint64_t dev)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)(dev + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            job_fail(j, "read error on '%s' at offset %" PRIu64 ": %s", j->h->path, dev + got, strerror(errno));
            return -1;
        }
        if (r == 0) {
            job_fail(j, "'%s' ended unexpectedly at offset %" PRIu64, j->h->path, dev + got);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Hash pieces [p0, p1): their bytes are read in chunks of at most EH_CHUNK (never across an extent boundary) and
 * fed, in order, to one SHA-1 context per piece; a chunk may hold the end of one piece and the start of the next
 * (pieces smaller than a chunk cost no extra reads). 0 or -1 (job failed). */
static int hash_pieces(struct eh_job *j, int fd, uint8_t *buf, uint64_t p0, uint64_t p1, uint64_t *sha_ns)
{
    const struct extent_hash *h = j->h;
    uint64_t off = p0 * h->piece, end = p1 * h->piece < j->total ? p1 * h->piece : j->total;
    uint64_t pi = p0, piece_end = off + h->piece < end ? off + h->piece : end;
    size_t xi = extent_find(h->ext, h->n_ext, off);
    struct sha1_ctx c = {0};
    if (sha1_init(&c)) {
        job_fail(j, "SHA-1 initialisation failed");
        return -1;
    }
    while (off < end) {
        if (xi >= h->n_ext) {
            job_fail(j, "internal error: piece beyond the extents");
            goto fail;
        }
        const struct extent *x = &h->ext[xi];
        uint64_t in_x = off - x->tor_off;
        if (in_x >= x->len) {
            xi++;
            continue;
        }
        size_t chunk = EH_CHUNK;
        if (chunk > end - off)
            chunk = (size_t)(end - off);
        if (chunk > x->len - in_x)
            chunk = (size_t)(x->len - in_x);
        if (read_full(j, fd, buf, chunk, h->base + x->dev_off + in_x))
            goto fail;
        uint64_t t0 = now_ns();
        for (size_t used = 0; used < chunk;) {
            size_t n = piece_end - off < chunk - used ? (size_t)(piece_end - off) : chunk - used;
            if (sha1_update(&c, buf + used, n)) {
                job_fail(j, "SHA-1 failed");
                goto fail;
            }
            used += n;
            off += n;
            if (off == piece_end) {
                if (sha1_final(&c, h->hashes + pi * SHA1_LEN) || (off < end && sha1_init(&c))) {
                    job_fail(j, "SHA-1 failed");
                    goto fail;
                }
                pi++;
                piece_end = off + h->piece < end ? off + h->piece : end;
            }
        }
        *sha_ns += now_ns() - t0;
        atomic_fetch_add(&j->bytes_done, chunk);
    }
    return 0;
fail:
    sha1_abort(&c);
    return -1;
}

static void *worker(void *arg)
{
    struct eh_job *j = arg;
    const struct extent_hash *h = j->h;
    uint8_t *buf = malloc(EH_CHUNK);
    int fd = open(h->path, O_RDONLY | O_CLOEXEC);
    uint64_t sha_ns = 0;
    /* pieces taken at a time: small pieces in batches of about one chunk, so reads stay large */
    uint64_t batch = h->piece < EH_CHUNK ? EH_CHUNK / h->piece : 1;
    if (!buf || fd < 0) {
        if (!buf)
            job_fail(j, "out of memory");
        else
            job_fail(j, "cannot open '%s': %s", h->path, strerror(errno));
        goto out;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* larger kernel read-ahead window on this descriptor */
    while (!atomic_load(&j->failed)) {
        uint64_t p0 = atomic_fetch_add(&j->next, batch);
        if (p0 >= j->n_pieces)
            break;
        uint64_t p1 = p0 + batch < j->n_pieces ? p0 + batch : j->n_pieces;
        readahead_advance(j->ra, p0 * h->piece);
        if (hash_pieces(j, fd, buf, p0, p1, &sha_ns))
            break;
    }
out:
    atomic_fetch_add(&j->sha_ns, sha_ns);
    pthread_mutex_lock(&j->lock);
    atomic_fetch_sub(&j->running, 1);
    pthread_cond_signal(&j->done);
    pthread_mutex_unlock(&j->lock);
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

int extent_hash_run(struct extent_hash *h, struct ds_err *e)
{
    h->bytes = h->sha_ns = 0;
    h->threads_used = 0;
    uint64_t total = h->n_ext ? h->ext[h->n_ext - 1].tor_off + h->ext[h->n_ext - 1].len : 0;
    if (h->piece == 0)
        return ds_errf(e, "piece length 0");
    uint64_t n_pieces = total / h->piece + (total % h->piece != 0);
    if (n_pieces == 0)
        return 0;
    struct eh_job j = {.h = h, .total = total, .n_pieces = n_pieces};
    if (pthread_mutex_init(&j.lock, NULL))
        return ds_errf(e, "cannot initialise a lock");
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
        pthread_cond_init(&j.done, &ca)) {
        pthread_mutex_destroy(&j.lock);
        return ds_errf(e, "cannot initialise a condition variable");
    }
    pthread_condattr_destroy(&ca);

    /* Read-ahead is an optimisation: without its descriptor or thread the workers still read everything. */
    int ra_fd = open(h->path, O_RDONLY | O_CLOEXEC);
    if (ra_fd >= 0 && readahead_start(&j.ra, ra_fd, h->base, h->ext, h->n_ext, readahead_window(h->piece), NULL))
        j.ra = NULL;

    unsigned nt = h->threads ? h->threads : 1;
    if (nt > EXTENT_HASH_MAX_THREADS)
        nt = EXTENT_HASH_MAX_THREADS;
    uint64_t batches = h->piece < EH_CHUNK ? (n_pieces + EH_CHUNK / h->piece - 1) / (EH_CHUNK / h->piece) : n_pieces;
    if (nt > batches)
        nt = (unsigned)batches;
    pthread_t th[EXTENT_HASH_MAX_THREADS];
    unsigned started = 0;
    atomic_store(&j.running, (int)nt);
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, worker, &j)) {
            atomic_fetch_sub(&j.running, (int)(nt - started));
            break;
        }
    if (started == 0) {
        ds_errf(&j.err, "cannot start a hashing thread");
        atomic_store(&j.failed, 1);
    }
    pthread_mutex_lock(&j.lock);
    while (atomic_load(&j.running) > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j.done, &j.lock, &ts);
        if (atomic_load(&j.running) > 0 && h->progress) {
            pthread_mutex_unlock(&j.lock);
            h->progress(h->progress_ctx, atomic_load(&j.bytes_done));
            pthread_mutex_lock(&j.lock);
        }
    }
    pthread_mutex_unlock(&j.lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    readahead_stop(j.ra);
    if (ra_fd >= 0)
        close(ra_fd);
    h->bytes = atomic_load(&j.bytes_done);
    h->sha_ns = atomic_load(&j.sha_ns);
    h->threads_used = started;
    pthread_cond_destroy(&j.done);
    pthread_mutex_destroy(&j.lock);
    if (atomic_load(&j.failed)) {
        if (e)
            *e = j.err;
        return -1;
    }
    return 0;
}
