/* hasher.h — piece verification on a second thread, so receiving (recv + pwrite) and hashing (pread + SHA-1)
 * run on different cores. The session queues, in order, "hash these torrent bytes into this piece's SHA-1
 * context" and "finish this piece"; the thread reads the bytes back from the store (they were just written,
 * so they come from the page cache) and posts one result per finished piece, signalled through an eventfd.
 * The queue holds only (offset, length) jobs, so its memory is small and bounded. */
#ifndef DS_HASHER_H
#define DS_HASHER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "sha1.h"
#include "store.h"

struct hasher;

int hasher_start(struct hasher **out, struct store *st, struct ds_err *e);
int hasher_fd(const struct hasher *h);
/* Queue work; these block only while the queue is full (backpressure). 0 or -1 (stopped / OOM). */
int hasher_update(struct hasher *h, struct sha1_ctx *ctx, uint32_t piece, uint64_t tor_off, uint32_t len);
int hasher_final(struct hasher *h, struct sha1_ctx *ctx, uint32_t piece, const uint8_t expected[SHA1_LEN]);
/* Non-blocking: 1 with a finished piece (ok = hash matched; io_error set when the read-back failed), else 0. */
int hasher_take(struct hasher *h, uint32_t *piece, bool *ok, bool *io_error, struct ds_err *e);
/* Join the thread; queued work is dropped (contexts are left for their owners to release). */
void hasher_stop(struct hasher *h);

#endif
