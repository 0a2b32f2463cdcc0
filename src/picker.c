#include "picker.h"

#include <stdlib.h>
#include <string.h>

int picker_init(struct picker *p, uint32_t num_pieces, uint64_t piece_length, uint64_t total_length,
                uint32_t block_size, const struct bitfield *have, size_t max_partials, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->num_pieces = num_pieces;
    p->piece_length = piece_length;
    p->total_length = total_length;
    p->block_size = block_size;
    p->have = have;
    p->max_partials = max_partials ? max_partials : 1;
    p->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    p->avail = calloc(num_pieces ? num_pieces : 1, sizeof *p->avail);
    p->partial_of = malloc((num_pieces ? num_pieces : 1) * sizeof *p->partial_of);
    p->partials = calloc(p->max_partials, sizeof *p->partials);
    p->suspect = calloc(num_pieces ? num_pieces : 1, 1);
    if (!p->avail || !p->partial_of || !p->partials || !p->suspect) {
        picker_free(p);
        return -1;
    }
    for (uint32_t i = 0; i < num_pieces; i++)
        p->partial_of[i] = -1;
    return 0;
}

static void partial_free(struct partial *pp)
{
    if (!pp)
        return;
    if (pp->sha_live)
        sha1_abort(&pp->sha);
    free(pp->state);
    free(pp->reqs);
    free(pp->first_slot);
    free(pp->second_slot);
    free(pp->from);
    free(pp);
}

void picker_free(struct picker *p)
{
    if (p->partials)
        for (size_t i = 0; i < p->n_partials; i++)
            partial_free(p->partials[i]);
    free(p->partials);
    free(p->suspect);
    free(p->avail);
    free(p->partial_of);
    memset(p, 0, sizeof *p);
}

static uint64_t rng_next(struct picker *p)
{
    /* xorshift64*: deterministic per seed, only used for tie-breaking */
    uint64_t x = p->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    p->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint32_t picker_piece_blocks(const struct picker *p, uint32_t piece)
{
    uint64_t start = (uint64_t)piece * p->piece_length;
    uint64_t size = p->total_length - start < p->piece_length ? p->total_length - start : p->piece_length;
    return (uint32_t)((size + p->block_size - 1) / p->block_size);
}

uint32_t picker_block_len(const struct picker *p, uint32_t piece, uint32_t block)
{
    uint64_t start = (uint64_t)piece * p->piece_length;
    uint64_t size = p->total_length - start < p->piece_length ? p->total_length - start : p->piece_length;
    uint64_t b = (uint64_t)block * p->block_size;
    return (uint32_t)(size - b < p->block_size ? size - b : p->block_size);
}

void picker_inc(struct picker *p, uint32_t piece)
{
    if (piece < p->num_pieces)
        p->avail[piece]++;
}

void picker_dec(struct picker *p, uint32_t piece)
{
    if (piece < p->num_pieces && p->avail[piece] > 0)
        p->avail[piece]--;
}

void picker_add_bitfield(struct picker *p, const struct bitfield *b)
{
    for (uint32_t i = 0; i < p->num_pieces && i < b->nbits; i++)
        if (bitfield_get(b, i))
            p->avail[i]++;
}

void picker_remove_bitfield(struct picker *p, const struct bitfield *b)
{
    for (uint32_t i = 0; i < p->num_pieces && i < b->nbits; i++)
        if (bitfield_get(b, i) && p->avail[i] > 0)
            p->avail[i]--;
}

struct partial *picker_partial(struct picker *p, uint32_t piece)
{
    if (piece >= p->num_pieces || p->partial_of[piece] < 0)
        return NULL;
    return p->partials[p->partial_of[piece]];
}

static struct partial *partial_new(struct picker *p, uint32_t piece, uint16_t slot)
{
    if (p->n_partials >= p->max_partials)
        return NULL;
    struct partial *pp = calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    pp->piece = piece;
    pp->nblocks = picker_piece_blocks(p, piece);
    pp->n_unrequested = pp->nblocks;
    pp->state = calloc(pp->nblocks, 1);
    pp->reqs = calloc(pp->nblocks, 1);
    pp->first_slot = malloc(pp->nblocks * sizeof *pp->first_slot);
    pp->second_slot = malloc(pp->nblocks * sizeof *pp->second_slot);
    pp->from = malloc(pp->nblocks * sizeof *pp->from);
    if (!pp->state || !pp->reqs || !pp->first_slot || !pp->second_slot || !pp->from || sha1_init(&pp->sha)) {
        partial_free(pp);
        return NULL;
    }
    pp->sha_live = true;
    pp->exclusive = p->suspect[piece] != 0;
    pp->owner = pp->exclusive ? slot : PICKER_NO_SLOT;
    for (uint32_t i = 0; i < pp->nblocks; i++)
        pp->first_slot[i] = pp->second_slot[i] = pp->from[i] = PICKER_NO_SLOT;
    p->partial_of[piece] = (int32_t)p->n_partials;
    p->partials[p->n_partials++] = pp;
    return pp;
}

/* Take unrequested blocks of pp in order. */
static size_t take_blocks(struct picker *p, struct partial *pp, uint16_t slot, struct block_req *out, size_t max)
{
    size_t n = 0;
    for (uint32_t b = 0; b < pp->nblocks && n < max && pp->n_unrequested > 0; b++) {
        if (pp->state[b] != BLK_MISSING)
            continue;
        pp->state[b] = BLK_REQUESTED;
        pp->reqs[b] = 1;
        pp->first_slot[b] = slot;
        pp->n_unrequested--;
        out[n].piece = pp->piece;
        out[n].begin = b * p->block_size;
        out[n].length = picker_block_len(p, pp->piece, b);
        n++;
    }
    return n;
}

size_t picker_pick(struct picker *p, const struct bitfield *peer_have, uint16_t slot, struct block_req *out,
                   size_t max)
{
    size_t n = 0;
    /* 1. finish pieces already begun, oldest first (an exclusive piece only by its owner, or by whoever
     *    takes it over when its owner left) */
    for (size_t i = 0; i < p->n_partials && n < max; i++) {
        struct partial *pp = p->partials[i];
        if (pp->n_unrequested == 0 || !bitfield_get(peer_have, pp->piece))
            continue;
        if (pp->exclusive) {
            if (pp->owner != PICKER_NO_SLOT && pp->owner != slot)
                continue;
            pp->owner = slot;
        }
        n += take_blocks(p, pp, slot, out + n, max - n);
    }
    /* 2. start the rarest pieces the peer has, ties broken by a random starting point */
    while (n < max && p->n_partials < p->max_partials) {
        uint32_t best = UINT32_MAX, best_avail = UINT32_MAX;
        uint32_t start = p->num_pieces ? (uint32_t)(rng_next(p) % p->num_pieces) : 0;
        for (uint32_t k = 0; k < p->num_pieces; k++) {
            uint32_t i = start + k;
            if (i >= p->num_pieces)
                i -= p->num_pieces;
            if (bitfield_get(p->have, i) || p->partial_of[i] >= 0 || !bitfield_get(peer_have, i))
                continue;
            if (p->avail[i] < best_avail) {
                best_avail = p->avail[i];
                best = i;
                if (best_avail <= 1)
                    break;
            }
        }
        if (best == UINT32_MAX)
            break;
        struct partial *pp = partial_new(p, best, slot);
        if (!pp)
            break;
        n += take_blocks(p, pp, slot, out + n, max - n);
    }
    if (n > 0)
        return n;
    /* 3. endgame: every missing piece is begun and fully requested; duplicate requests held by other peers */
    if ((uint64_t)p->have->count + p->n_partials < p->num_pieces)
        return 0;
    for (size_t i = 0; i < p->n_partials && n < max; i++) {
        struct partial *pp = p->partials[i];
        if (pp->n_unrequested > 0 || !bitfield_get(peer_have, pp->piece) || pp->exclusive)
            continue;
        for (uint32_t b = 0; b < pp->nblocks && n < max; b++) {
            if (pp->state[b] != BLK_REQUESTED || pp->reqs[b] >= 2 || pp->first_slot[b] == slot ||
                pp->second_slot[b] == slot)
                continue;
            if (pp->first_slot[b] == PICKER_NO_SLOT)
                pp->first_slot[b] = slot;
            else
                pp->second_slot[b] = slot;
            pp->reqs[b]++;
            out[n].piece = pp->piece;
            out[n].begin = b * p->block_size;
            out[n].length = picker_block_len(p, pp->piece, b);
            n++;
        }
    }
    return n;
}

static int block_of(const struct picker *p, const struct partial *pp, uint32_t begin, uint32_t *b)
{
    if (begin % p->block_size)
        return -1;
    *b = begin / p->block_size;
    return *b < pp->nblocks ? 0 : -1;
}

void picker_release(struct picker *p, uint32_t piece, uint32_t begin, uint16_t slot)
{
    struct partial *pp = picker_partial(p, piece);
    uint32_t b;
    if (!pp || block_of(p, pp, begin, &b) || pp->state[b] != BLK_REQUESTED)
        return;
    /* only a peer that holds a request for the block can release one */
    if (pp->first_slot[b] == slot) {
        pp->first_slot[b] = pp->second_slot[b];
        pp->second_slot[b] = PICKER_NO_SLOT;
    } else if (pp->second_slot[b] == slot) {
        pp->second_slot[b] = PICKER_NO_SLOT;
    } else {
        return;
    }
    if (pp->reqs[b] > 0)
        pp->reqs[b]--;
    if (pp->reqs[b] == 0) {
        pp->state[b] = BLK_MISSING;
        pp->first_slot[b] = pp->second_slot[b] = PICKER_NO_SLOT;
        pp->n_unrequested++;
    }
}

int picker_received(struct picker *p, uint32_t piece, uint32_t begin, uint32_t length, uint16_t slot)
{
    struct partial *pp = picker_partial(p, piece);
    uint32_t b;
    if (!pp)
        return 0;
    if (block_of(p, pp, begin, &b) || length != picker_block_len(p, piece, b))
        return -1;
    if (pp->state[b] == BLK_RECEIVED)
        return 0;
    if (pp->state[b] == BLK_MISSING)
        pp->n_unrequested--;
    pp->state[b] = BLK_RECEIVED;
    pp->from[b] = slot;
    pp->n_received++;
    return 1;
}

void picker_finish(struct picker *p, uint32_t piece)
{
    if (piece >= p->num_pieces || p->partial_of[piece] < 0)
        return;
    size_t idx = (size_t)p->partial_of[piece];
    partial_free(p->partials[idx]);
    /* keep creation order: shift the rest down */
    memmove(&p->partials[idx], &p->partials[idx + 1], (p->n_partials - idx - 1) * sizeof *p->partials);
    p->n_partials--;
    p->partial_of[piece] = -1;
    for (size_t i = idx; i < p->n_partials; i++)
        p->partial_of[p->partials[i]->piece] = (int32_t)i;
}

void picker_mark_suspect(struct picker *p, uint32_t piece)
{
    if (piece < p->num_pieces)
        p->suspect[piece] = 1;
}

void picker_forget_slot(struct picker *p, uint16_t slot)
{
    for (size_t i = 0; i < p->n_partials; i++) {
        struct partial *pp = p->partials[i];
        if (pp->exclusive && pp->owner == slot)
            pp->owner = PICKER_NO_SLOT;
        for (uint32_t b = 0; b < pp->nblocks; b++)
            if (pp->from[b] == slot)
                pp->from[b] = PICKER_GONE_SLOT;
    }
}

bool picker_endgame(const struct picker *p)
{
    if ((uint64_t)p->have->count + p->n_partials < p->num_pieces)
        return false;
    for (size_t i = 0; i < p->n_partials; i++)
        if (p->partials[i]->n_unrequested > 0)
            return false;
    return true;
}
