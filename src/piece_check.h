/* piece_check.h — hash every piece of a store on all cores: `verify`, `seed --verify` and resuming a fetch.
 * Workers pread and hash whole pieces independently (bounded memory: one chunk buffer per worker). */
#ifndef DS_PIECE_CHECK_H
#define DS_PIECE_CHECK_H

#include <stdint.h>

#include "bitfield.h"
#include "err.h"
#include "store.h"

/* Called from worker threads, serialised by a lock: pieces checked so far and the total. */
typedef void (*piece_check_progress)(void *ctx, uint32_t done, uint32_t total);

/* Set ok[i] for every piece whose data matches its hash (ok must be initialised to num_pieces bits).
 * threads == 0: one per online CPU (at most 64). Returns 0, or -1 on an I/O error (e says where). */
int piece_check_all(struct store *s, unsigned threads, struct bitfield *ok, piece_check_progress cb, void *ctx,
                    struct ds_err *e);

#endif
