/* picker.h — which blocks to request next: rarest-first over whole pieces, finishing pieces already begun
 * before starting new ones, random tie-breaking, and endgame (a block outstanding at one peer may be requested
 * from a second one once nothing unrequested is left). It tracks piece availability in the swarm and the block
 * state of partly downloaded pieces; it does no I/O. */
#ifndef DS_PICKER_H
#define DS_PICKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bitfield.h"
#include "sha1.h"

#define PICKER_NO_SLOT 0xFFFFu
#define PICKER_GONE_SLOT 0xFFFEu     /* delivered by a peer that has left (its slot may now be someone else's) */

enum block_state { BLK_MISSING = 0, BLK_REQUESTED = 1, BLK_RECEIVED = 2 };

struct partial {
    uint32_t piece;
    uint32_t nblocks;
    uint32_t n_unrequested;      /* blocks in BLK_MISSING */
    uint32_t n_received;
    uint8_t *state;              /* enum block_state per block */
    uint8_t *reqs;               /* outstanding requests per block (endgame may make it 2) */
    uint16_t *first_slot;        /* peer slot of the first outstanding request per block */
    uint16_t *second_slot;       /* peer slot of the endgame duplicate, if any */
    uint16_t *from;              /* peer slot that delivered each received block */
    bool exclusive;              /* suspect piece: every block from one peer, so a failure names the culprit */
    uint16_t owner;              /* for exclusive pieces: the slot downloading it (PICKER_NO_SLOT = free) */
    /* incremental hashing: blocks [0, hashed) have been fed to sha in order */
    struct sha1_ctx sha;
    bool sha_live;
    uint32_t hashed;
    bool final_queued;           /* all blocks handed to the hashing thread; its verdict is pending */
};

struct block_req {
    uint32_t piece;
    uint32_t begin;
    uint32_t length;
};

struct picker {
    uint32_t num_pieces;
    uint64_t piece_length;
    uint64_t total_length;
    uint32_t block_size;
    const struct bitfield *have;     /* owned by the caller: pieces verified locally */
    uint32_t *avail;                 /* peers known to have each piece */
    int32_t *partial_of;             /* index into partials, or -1 */
    struct partial **partials;       /* in creation order */
    uint8_t *suspect;                /* per piece: failed with several contributors; fetch it from one peer */
    size_t n_partials, max_partials;
    uint64_t rng;
};

int picker_init(struct picker *p, uint32_t num_pieces, uint64_t piece_length, uint64_t total_length,
                uint32_t block_size, const struct bitfield *have, size_t max_partials, uint64_t seed);
void picker_free(struct picker *p);

uint32_t picker_piece_blocks(const struct picker *p, uint32_t piece);
uint32_t picker_block_len(const struct picker *p, uint32_t piece, uint32_t block);

void picker_inc(struct picker *p, uint32_t piece);
void picker_dec(struct picker *p, uint32_t piece);
void picker_add_bitfield(struct picker *p, const struct bitfield *b);
void picker_remove_bitfield(struct picker *p, const struct bitfield *b);

/* Choose up to max blocks for the peer in slot `slot` that has `peer_have`, mark them requested, return how
 * many. Endgame duplicates are chosen only when no unrequested block is left that the peer could serve. */
size_t picker_pick(struct picker *p, const struct bitfield *peer_have, uint16_t slot, struct block_req *out,
                   size_t max);

/* A request was cancelled, rejected or lost with its peer: the block becomes requestable again (unless it
 * was received meanwhile or another request is still out). */
void picker_release(struct picker *p, uint32_t piece, uint32_t begin, uint16_t slot);

/* Look up the partial for a piece (NULL if none). */
struct partial *picker_partial(struct picker *p, uint32_t piece);

/* Block data arrived and was written. Returns 1 if accepted (first copy), 0 if it was a duplicate / unknown
 * (the caller ignores the data), -1 on a bad offset. */
int picker_received(struct picker *p, uint32_t piece, uint32_t begin, uint32_t length, uint16_t slot);

/* Drop a partial: after the piece verified (done) or failed its hash (all its blocks become missing again). */
void picker_finish(struct picker *p, uint32_t piece);

/* A piece failed its hash with blocks from several peers: from now on it is downloaded from a single peer. */
void picker_mark_suspect(struct picker *p, uint32_t piece);
/* The peer in slot left: exclusive pieces it owned may be taken over by another peer, and blocks it delivered
 * are attributed to PICKER_GONE_SLOT, so a newcomer reusing the slot is never blamed for them. */
void picker_forget_slot(struct picker *p, uint16_t slot);

/* Count of missing pieces that have no partial and are available from some peer (for endgame decisions). */
bool picker_endgame(const struct picker *p);

#endif
