#include "hasher.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define JOBS 4096           /* ring capacity: 4096 jobs of up to 128 KiB = 512 MiB of work in flight at most */
#define CHUNK (256u * 1024u)

struct job {
    struct sha1_ctx *ctx;
    uint64_t off;
    uint32_t len;
    bool final;
    uint32_t piece;
    uint8_t expected[SHA1_LEN];
};

struct result {
    uint32_t piece;
    bool ok, io_error;
    struct ds_err err;
};

struct hasher {
    struct store *st;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t more, room;
    struct job jobs[JOBS];
    size_t jh, jn;                 /* head, count */
    /* Results never block the thread (a full result queue while the loop waits for job room would
     * deadlock); they are bounded anyway: one verdict per partial piece, and partials are capped. */
    struct result *res;
    size_t rh, rn, rcap;
    bool stop;
    bool oom;                      /* a verdict could not be recorded: the run must stop */
    int efd;
    uint8_t *buf;
};

static void post(struct hasher *h, const struct result *r)
{
    pthread_mutex_lock(&h->mu);
    if (h->rn == h->rcap) {
        size_t ncap = h->rcap ? h->rcap * 2 : 64;
        struct result *nv = malloc(ncap * sizeof *nv);
        if (!nv) {
            /* the verdict cannot be recorded: hasher_take reports it so the run stops with an error */
            h->oom = true;
            pthread_mutex_unlock(&h->mu);
            uint64_t one = 1;
            ssize_t w = write(h->efd, &one, sizeof one);
            (void)w;
            return;
        }
        for (size_t i = 0; i < h->rn; i++)
            nv[i] = h->res[(h->rh + i) % h->rcap];
        free(h->res);
        h->res = nv;
        h->rh = 0;
        h->rcap = ncap;
    }
    h->res[(h->rh + h->rn) % h->rcap] = *r;
    h->rn++;
    pthread_mutex_unlock(&h->mu);
    uint64_t one = 1;
    ssize_t w = write(h->efd, &one, sizeof one);
    (void)w;
}

static void *run(void *arg)
{
    struct hasher *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (h->jn == 0 && !h->stop)
            pthread_cond_wait(&h->more, &h->mu);
        if (h->stop) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        struct job j = h->jobs[h->jh];
        h->jh = (h->jh + 1) % JOBS;
        h->jn--;
        pthread_cond_broadcast(&h->room);
        pthread_mutex_unlock(&h->mu);

        if (j.final) {
            struct result r = {.piece = j.piece};
            uint8_t got[SHA1_LEN];
            /* a context already failed by an I/O error has been released: sha1_final reports -1 */
            if (sha1_final(j.ctx, got) == 0)
                r.ok = memcmp(got, j.expected, SHA1_LEN) == 0;
            else
                r.io_error = true; /* its context was released by a read error reported just before */
            post(h, &r);
            continue;
        }
        for (uint32_t done = 0; done < j.len;) {
            uint32_t n = j.len - done < CHUNK ? j.len - done : CHUNK;
            struct ds_err e;
            if (store_read(h->st, j.off + done, h->buf, n, &e)) {
                struct result r = {.piece = j.piece, .io_error = true, .err = e};
                sha1_abort(j.ctx);
                post(h, &r);
                break;
            }
            if (sha1_update(j.ctx, h->buf, n))
                break; /* released context (earlier error): the final job reports it */
            done += n;
        }
    }
}

int hasher_start(struct hasher **out, struct store *st, struct ds_err *e)
{
    struct hasher *h = calloc(1, sizeof *h);
    if (!h)
        return ds_errf(e, "out of memory");
    h->st = st;
    h->buf = malloc(CHUNK);
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!h->buf || h->efd < 0) {
        free(h->buf);
        if (h->efd >= 0)
            close(h->efd);
        free(h);
        return ds_errno(e, "cannot set up the hashing thread");
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->more, NULL);
    pthread_cond_init(&h->room, NULL);
    if (pthread_create(&h->thread, NULL, run, h)) {
        close(h->efd);
        free(h->buf);
        free(h);
        return ds_errf(e, "cannot start the hashing thread");
    }
    *out = h;
    return 0;
}

int hasher_fd(const struct hasher *h) { return h->efd; }

static int push(struct hasher *h, const struct job *j)
{
    pthread_mutex_lock(&h->mu);
    while (h->jn == JOBS && !h->stop)
        pthread_cond_wait(&h->room, &h->mu);
    if (h->stop) {
        pthread_mutex_unlock(&h->mu);
        return -1;
    }
    h->jobs[(h->jh + h->jn) % JOBS] = *j;
    h->jn++;
    pthread_cond_signal(&h->more);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

int hasher_update(struct hasher *h, struct sha1_ctx *ctx, uint32_t piece, uint64_t tor_off, uint32_t len)
{
    struct job j = {.ctx = ctx, .off = tor_off, .len = len, .piece = piece};
    return push(h, &j);
}

int hasher_final(struct hasher *h, struct sha1_ctx *ctx, uint32_t piece, const uint8_t expected[SHA1_LEN])
{
    struct job j = {.ctx = ctx, .final = true, .piece = piece};
    memcpy(j.expected, expected, SHA1_LEN);
    return push(h, &j);
}

int hasher_take(struct hasher *h, uint32_t *piece, bool *ok, bool *io_error, struct ds_err *e)
{
    uint64_t cnt;
    ssize_t r = read(h->efd, &cnt, sizeof cnt); /* drain the signal; results are counted below */
    (void)r;
    pthread_mutex_lock(&h->mu);
    if (h->rn == 0) {
        bool oom = h->oom;
        pthread_mutex_unlock(&h->mu);
        if (!oom)
            return 0;
        *piece = 0;
        *ok = false;
        *io_error = true;
        ds_errf(e, "out of memory in the hashing thread");
        return 1;
    }
    struct result res = h->res[h->rh];
    h->rh = (h->rh + 1) % h->rcap;
    h->rn--;
    bool more = h->rn > 0;
    pthread_mutex_unlock(&h->mu);
    if (more) {
        uint64_t one = 1;
        ssize_t w = write(h->efd, &one, sizeof one); /* keep the fd readable for the rest */
        (void)w;
    }
    *piece = res.piece;
    *ok = res.ok;
    *io_error = res.io_error;
    if (res.io_error && e)
        *e = res.err;
    return 1;
}

void hasher_stop(struct hasher *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->more);
    pthread_cond_broadcast(&h->room);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->more);
    pthread_cond_destroy(&h->room);
    close(h->efd);
    free(h->res);
    free(h->buf);
    free(h);
}
