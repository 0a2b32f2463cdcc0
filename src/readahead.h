/* readahead.h — keep a device busy while its reader hashes: a thread asks the kernel
 * (posix_fadvise WILLNEED) for the bytes of a list of extents just ahead of the readers, in extent order.
 *
 * Per-descriptor kernel read-ahead stops at every extent boundary (the next extent is a jump it cannot predict)
 * and sees one stream per worker; this one follows the torrent's byte order across extents, so the device gets
 * the next extent's reads queued while the current one is hashed. Readers report how far they have got
 * (readahead_advance, the start of the piece they take); the thread keeps [that, that + window) requested.
 * Memory: at most `window` bytes of page cache ahead of the readers (reclaimable), no buffers of its own. */
#ifndef DS_READAHEAD_H
#define DS_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "extent_map.h"

struct readahead;

/* The window for readers that take pieces of `piece` bytes: the newest piece they took (up to 64 MiB of it;
 * within a larger piece the kernel's own sequential read-ahead does the job) plus 32 MiB. */
static inline uint64_t readahead_window(uint64_t piece)
{
    return (piece < ((uint64_t)64 << 20) ? piece : ((uint64_t)64 << 20)) + ((uint64_t)32 << 20);
}

/* ext: ascending tor_off, contiguous, dev_off + base = offset in fd (pads are skipped). fd stays the caller's and
 * must stay open until readahead_stop. 0, or -1 when the thread cannot start. */
int readahead_start(struct readahead **out, int fd, uint64_t base, const struct extent *ext, size_t n_ext,
                    uint64_t window, struct ds_err *e);
/* The readers have reached torrent offset pos (only increases count). Thread-safe, never blocks for I/O. */
void readahead_advance(struct readahead *ra, uint64_t pos);
/* Stop the thread (it finishes the request it is issuing) and free ra. NULL is fine. */
void readahead_stop(struct readahead *ra);

#endif
