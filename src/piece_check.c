#include "piece_check.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct check_job {
    struct store *s;
    struct bitfield *ok;
    pthread_mutex_t lock;
    uint32_t next, done, total;
    bool failed;
    struct ds_err err;
    piece_check_progress cb;
    void *ctx;
};

static void *worker(void *arg)
{
    struct check_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        if (j->failed || j->next >= j->total) {
            pthread_mutex_unlock(&j->lock);
            return NULL;
        }
        uint32_t i = j->next++;
        pthread_mutex_unlock(&j->lock);

        struct ds_err e;
        int r = store_check_piece(j->s, i, &e);

        pthread_mutex_lock(&j->lock);
        if (r < 0 && !j->failed) {
            j->failed = true;
            j->err = e;
        } else if (r == 1) {
            bitfield_set(j->ok, i);
        }
        j->done++;
        if (j->cb)
            j->cb(j->ctx, j->done, j->total);
        pthread_mutex_unlock(&j->lock);
    }
}

int piece_check_all(struct store *s, unsigned threads, struct bitfield *ok, piece_check_progress cb, void *ctx,
                    struct ds_err *e)
{
    struct check_job j;
    memset(&j, 0, sizeof j);
    j.s = s;
    j.ok = ok;
    j.total = s->mi->num_pieces;
    j.cb = cb;
    j.ctx = ctx;
    if (pthread_mutex_init(&j.lock, NULL))
        return ds_errf(e, "cannot create a lock");
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if (threads > 64)
        threads = 64;
    if (threads > j.total)
        threads = j.total ? j.total : 1;
    pthread_t tid[64];
    unsigned started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tid[started], NULL, worker, &j))
            break;
    if (started == 0)
        worker(&j); /* no thread could be made: do the work here */
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&j.lock);
    if (j.failed) {
        if (e)
            *e = j.err;
        return -1;
    }
    return 0;
}
