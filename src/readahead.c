/* readahead.c — see readahead.h. */
#include "readahead.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define RA_STEP ((uint64_t)2 << 20) /* one fadvise call at most: the thread re-checks for stop between them */

struct readahead {
    int fd;
    uint64_t base, total, window;
    const struct extent *ext;
    size_t n_ext;
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t pos;   /* readers' position (torrent offset), under lock */
    bool stop;      /* under lock */
};

/* Request [from, to) of the torrent's byte stream; xi is the extent holding `from` (advanced in place). */
static void request(struct readahead *ra, uint64_t from, uint64_t to, size_t *xi)
{
    while (from < to && *xi < ra->n_ext) {
        const struct extent *x = &ra->ext[*xi];
        uint64_t x_end = x->tor_off + x->len;
        if (from >= x_end) {
            (*xi)++;
            continue;
        }
        uint64_t n = (to < x_end ? to : x_end) - from;
        if (!x->pad)
            (void)posix_fadvise(ra->fd, (off_t)(ra->base + x->dev_off + (from - x->tor_off)), (off_t)n,
                                POSIX_FADV_WILLNEED); /* a hint: on failure the readers just wait for the device */
        from += n;
    }
}

static void *ra_thread(void *arg)
{
    struct readahead *ra = arg;
    uint64_t issued = 0;
    size_t xi = 0;
    pthread_mutex_lock(&ra->lock);
    for (;;) {
        uint64_t want = ra->pos + ra->window;
        if (want > ra->total)
            want = ra->total;
        if (ra->stop || issued >= ra->total)
            break;
        if (issued >= want) {
            pthread_cond_wait(&ra->cond, &ra->lock);
            continue;
        }
        if (issued < ra->pos) /* the readers overtook us: what lies behind them is of no use */
            issued = ra->pos;
        uint64_t to = want - issued > RA_STEP ? issued + RA_STEP : want;
        pthread_mutex_unlock(&ra->lock);
        request(ra, issued, to, &xi);
        issued = to;
        pthread_mutex_lock(&ra->lock);
    }
    pthread_mutex_unlock(&ra->lock);
    return NULL;
}

int readahead_start(struct readahead **out, int fd, uint64_t base, const struct extent *ext, size_t n_ext,
                    uint64_t window, struct ds_err *e)
{
    *out = NULL;
    struct readahead *ra = calloc(1, sizeof *ra);
    if (!ra)
        return ds_errf(e, "out of memory");
    *ra = (struct readahead){.fd = fd, .base = base, .window = window, .ext = ext, .n_ext = n_ext};
    if (n_ext)
        ra->total = ext[n_ext - 1].tor_off + ext[n_ext - 1].len;
    if (pthread_mutex_init(&ra->lock, NULL)) {
        free(ra);
        return ds_errf(e, "cannot initialise a lock");
    }
    if (pthread_cond_init(&ra->cond, NULL)) {
        pthread_mutex_destroy(&ra->lock);
        free(ra);
        return ds_errf(e, "cannot initialise a condition variable");
    }
    if (pthread_create(&ra->th, NULL, ra_thread, ra)) {
        pthread_cond_destroy(&ra->cond);
        pthread_mutex_destroy(&ra->lock);
        free(ra);
        return ds_errf(e, "cannot start the read-ahead thread");
    }
    *out = ra;
    return 0;
}

void readahead_advance(struct readahead *ra, uint64_t pos)
{
    if (!ra)
        return;
    pthread_mutex_lock(&ra->lock);
    if (pos > ra->pos) {
        ra->pos = pos;
        pthread_cond_signal(&ra->cond);
    }
    pthread_mutex_unlock(&ra->lock);
}

void readahead_stop(struct readahead *ra)
{
    if (!ra)
        return;
    pthread_mutex_lock(&ra->lock);
    ra->stop = true;
    pthread_cond_signal(&ra->cond);
    pthread_mutex_unlock(&ra->lock);
    pthread_join(ra->th, NULL);
    pthread_cond_destroy(&ra->cond);
    pthread_mutex_destroy(&ra->lock);
    free(ra);
}
