/* extent_hash.h — the SHA-1 of every piece of a torrent laid over extents of a file or block device, on all
 * cores (what `capture` needs to write a torrent).
 *
 * Each worker takes the next piece (pieces under 1 MiB: the next 1 MiB worth of pieces), preads it in chunks of
 * at most 1 MiB through its own descriptor and hashes it; a read-ahead thread (readahead.h) keeps the extents just
 * ahead of the workers requested from the device, in order, so reading and hashing overlap and the device does not
 * idle at extent boundaries. Which worker hashes which piece does not change any hash: the result is the same for
 * any number of threads.
 * Memory: one chunk buffer per worker, 20 bytes per piece (the caller's), and at most readahead_window(piece)
 * (≤ 96 MiB) of page cache requested ahead. */
#ifndef DS_EXTENT_HASH_H
#define DS_EXTENT_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "extent_map.h"

#define EXTENT_HASH_MAX_THREADS 64

struct extent_hash {
    /* in */
    const char *path;          /* opened read-only by every worker */
    uint64_t base;             /* added to every extent's dev_off */
    const struct extent *ext;  /* ascending tor_off, contiguous from 0, no pads */
    size_t n_ext;
    uint64_t piece;            /* piece length; the last piece may be shorter */
    unsigned threads;          /* 1..EXTENT_HASH_MAX_THREADS (more are clamped; never more than there is work for) */
    uint8_t *hashes;           /* out: 20 bytes per piece, ceil(total / piece) pieces */
    /* Called on the calling thread about 4 times a second while the workers run (not at the end). */
    void (*progress)(void *ctx, uint64_t bytes_hashed);
    void *progress_ctx;
    /* out */
    uint64_t bytes;            /* bytes read and hashed */
    uint64_t sha_ns;           /* time spent in SHA-1, summed over the workers */
    unsigned threads_used;
};

/* 0, or -1 with e saying what failed (the first read error, with its device offset). */
int extent_hash_run(struct extent_hash *h, struct ds_err *e);

#endif
