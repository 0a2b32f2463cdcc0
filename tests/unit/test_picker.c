/* test_picker.c — rarest first, only pieces the peer has, begun pieces first, release, received results,
 * short last piece / block, endgame rules and the partial-piece cap. Small block sizes keep the numbers readable. */
#include "check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bitfield.h"
#include "picker.h"

struct pk {
    struct picker p;
    struct bitfield have;
};

static int pk_init(struct pk *k, uint32_t num_pieces, uint64_t piece_length, uint64_t total, uint32_t block,
                   size_t max_partials, uint64_t seed)
{
    if (bitfield_init(&k->have, num_pieces))
        return -1;
    return picker_init(&k->p, num_pieces, piece_length, total, block, &k->have, max_partials, seed);
}

static void pk_free(struct pk *k)
{
    picker_free(&k->p);
    bitfield_free(&k->have);
}

/* A peer bitfield with the listed pieces set (list ends with -1). */
static void peer_bits(struct bitfield *b, uint32_t n, const int *pieces)
{
    bitfield_init(b, n);
    for (; *pieces >= 0; pieces++)
        bitfield_set(b, (uint32_t)*pieces);
}

static void peer_all(struct bitfield *b, uint32_t n)
{
    bitfield_init(b, n);
    bitfield_set_all(b);
}

TEST(geometry_short_last_piece_and_block)
{
    struct pk k;
    /* 4 pieces of 64 bytes in 16-byte blocks; the last piece holds 40 bytes: blocks 16, 16, 8 */
    CHECK(pk_init(&k, 4, 64, 3 * 64 + 40, 16, 8, 1) == 0);
    CHECK_EQ_INT(picker_piece_blocks(&k.p, 0), 4);
    CHECK_EQ_INT(picker_piece_blocks(&k.p, 3), 3);
    CHECK_EQ_INT(picker_block_len(&k.p, 0, 3), 16);
    CHECK_EQ_INT(picker_block_len(&k.p, 3, 0), 16);
    CHECK_EQ_INT(picker_block_len(&k.p, 3, 2), 8);
    struct bitfield ph;
    const int only3[] = {3, -1};
    peer_bits(&ph, 4, only3);
    picker_add_bitfield(&k.p, &ph);
    struct block_req r[8];
    size_t n = picker_pick(&k.p, &ph, 0, r, 8);
    CHECK_EQ_INT(n, 3);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(r[i].piece, 3);
        CHECK_EQ_INT(r[i].begin, 16 * i);
    }
    CHECK_EQ_INT(r[0].length, 16);
    CHECK_EQ_INT(r[2].length, 8);
    /* the short block is accepted only with its short length */
    CHECK_EQ_INT(picker_received(&k.p, 3, 32, 16, 0), -1);
    CHECK_EQ_INT(picker_received(&k.p, 3, 32, 8, 0), 1);
    bitfield_free(&ph);
    pk_free(&k);

    /* a piece length that is not a multiple of the block size: every piece ends with a short block */
    CHECK(pk_init(&k, 3, 40, 100, 16, 8, 1) == 0);
    CHECK_EQ_INT(picker_piece_blocks(&k.p, 0), 3);
    CHECK_EQ_INT(picker_block_len(&k.p, 0, 2), 8);
    CHECK_EQ_INT(picker_piece_blocks(&k.p, 2), 2); /* 20 bytes */
    CHECK_EQ_INT(picker_block_len(&k.p, 2, 0), 16);
    CHECK_EQ_INT(picker_block_len(&k.p, 2, 1), 4);
    pk_free(&k);

    /* a one-byte torrent */
    CHECK(pk_init(&k, 1, 16384, 1, 16384, 8, 1) == 0);
    CHECK_EQ_INT(picker_piece_blocks(&k.p, 0), 1);
    CHECK_EQ_INT(picker_block_len(&k.p, 0, 0), 1);
    peer_all(&ph, 1);
    CHECK_EQ_INT(picker_pick(&k.p, &ph, 0, r, 8), 1);
    CHECK(r[0].piece == 0 && r[0].begin == 0 && r[0].length == 1);
    bitfield_free(&ph);
    pk_free(&k);
}

TEST(rarest_first)
{
    /* piece 1 is held by one peer, piece 0 and 2 by three, piece 3 by two; whatever the tie-break seed, the
     * order of new pieces is 1, 3, then 0/2 */
    for (uint64_t seed = 1; seed <= 64; seed++) {
        struct pk k;
        CHECK(pk_init(&k, 4, 32, 128, 16, 16, seed * 0x9E3779B97F4A7C15ull) == 0);
        struct bitfield a, b, c;
        const int pa[] = {0, 1, 2, 3, -1}, pb[] = {0, 2, 3, -1}, pc[] = {0, 2, -1};
        peer_bits(&a, 4, pa);
        peer_bits(&b, 4, pb);
        peer_bits(&c, 4, pc);
        picker_add_bitfield(&k.p, &a);
        picker_add_bitfield(&k.p, &b);
        picker_add_bitfield(&k.p, &c);
        CHECK_EQ_INT(k.p.avail[0], 3);
        CHECK_EQ_INT(k.p.avail[1], 1);
        CHECK_EQ_INT(k.p.avail[3], 2);
        struct block_req r[8];
        /* one block at a time from the peer that has everything */
        CHECK_EQ_INT(picker_pick(&k.p, &a, 0, r, 1), 1);
        CHECK_EQ_INT(r[0].piece, 1);
        CHECK_EQ_INT(picker_pick(&k.p, &a, 0, r, 1), 1);
        CHECK_EQ_INT(r[0].piece, 1); /* piece 1 is finished before anything new starts */
        CHECK_EQ_INT(picker_pick(&k.p, &a, 0, r, 1), 1);
        CHECK_EQ_INT(r[0].piece, 3);
        CHECK_EQ_INT(picker_pick(&k.p, &a, 0, r, 2), 2);
        CHECK(r[0].piece == 3 && r[1].piece != 3 && (r[1].piece == 0 || r[1].piece == 2));
        bitfield_free(&a);
        bitfield_free(&b);
        bitfield_free(&c);
        pk_free(&k);
        if (check_cur_failed)
            break;
    }

    /* availability follows HAVE counting and bitfield removal, and never underflows */
    struct pk k;
    CHECK(pk_init(&k, 3, 32, 96, 16, 16, 7) == 0);
    struct bitfield all;
    peer_all(&all, 3);
    picker_add_bitfield(&k.p, &all);
    picker_add_bitfield(&k.p, &all);
    picker_inc(&k.p, 2); /* piece 2: 3 peers, pieces 0 and 1: 2 */
    picker_dec(&k.p, 0); /* piece 0: 1 → the rarest */
    picker_inc(&k.p, 99);
    picker_dec(&k.p, 99); /* out of range: ignored */
    struct block_req r[2];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 0, r, 1), 1);
    CHECK_EQ_INT(r[0].piece, 0);
    picker_remove_bitfield(&k.p, &all);
    picker_remove_bitfield(&k.p, &all);
    picker_remove_bitfield(&k.p, &all);
    CHECK_EQ_INT(k.p.avail[0], 0);
    CHECK_EQ_INT(k.p.avail[1], 0);
    CHECK_EQ_INT(k.p.avail[2], 0);
    picker_dec(&k.p, 1);
    CHECK_EQ_INT(k.p.avail[1], 0);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(only_pieces_the_peer_has_and_we_lack)
{
    for (uint64_t seed = 1; seed <= 16; seed++) {
        struct pk k;
        CHECK(pk_init(&k, 8, 32, 256, 16, 16, seed) == 0);
        bitfield_set(&k.have, 5); /* verified locally: never requested */
        struct bitfield ph;
        const int pcs[] = {2, 5, 6, -1};
        peer_bits(&ph, 8, pcs);
        picker_add_bitfield(&k.p, &ph);
        struct bitfield rich;
        peer_all(&rich, 8);
        picker_add_bitfield(&k.p, &rich); /* other pieces are available, just not from this peer */
        struct block_req r[32];
        size_t n = picker_pick(&k.p, &ph, 0, r, 32);
        CHECK_EQ_INT(n, 4); /* pieces 2 and 6, two blocks each */
        for (size_t i = 0; i < n; i++)
            CHECK(r[i].piece == 2 || r[i].piece == 6);
        /* nothing else for it; no endgame while other pieces are missing and unbegun */
        CHECK_EQ_INT(picker_pick(&k.p, &ph, 0, r, 32), 0);
        CHECK_EQ_INT(picker_pick(&k.p, &ph, 1, r, 32), 0);
        CHECK(!picker_endgame(&k.p));
        /* a peer with nothing gets nothing */
        struct bitfield none;
        bitfield_init(&none, 8);
        CHECK_EQ_INT(picker_pick(&k.p, &none, 2, r, 32), 0);
        /* the rich peer never gets piece 5 */
        n = picker_pick(&k.p, &rich, 3, r, 32);
        CHECK_EQ_INT(n, 10); /* pieces 0, 1, 3, 4, 7 */
        for (size_t i = 0; i < n; i++)
            CHECK(r[i].piece != 5 && r[i].piece != 2 && r[i].piece != 6);
        bitfield_free(&none);
        bitfield_free(&rich);
        bitfield_free(&ph);
        pk_free(&k);
    }
}

TEST(begun_pieces_finished_first)
{
    struct pk k;
    /* 4 pieces of 4 blocks */
    CHECK(pk_init(&k, 4, 64, 256, 16, 16, 3) == 0);
    struct bitfield all;
    peer_all(&all, 4);
    picker_add_bitfield(&k.p, &all);
    struct block_req r[16];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 0, r, 1), 1);
    uint32_t first = r[0].piece;
    CHECK_EQ_INT(r[0].begin, 0);
    /* another peer asking for 3 gets the rest of that piece, in order */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 3), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(r[i].piece, first);
        CHECK_EQ_INT(r[i].begin, 16 * (i + 1));
    }
    CHECK_EQ_INT(k.p.n_partials, 1);
    /* the next request starts exactly one new piece */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 2), 2);
    CHECK(r[0].piece != first && r[1].piece == r[0].piece);
    uint32_t second = r[0].piece;
    CHECK_EQ_INT(k.p.n_partials, 2);
    /* a released block of the first piece comes before the unrequested rest of the second */
    picker_release(&k.p, first, 32, 1);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 2, r, 3), 3);
    CHECK(r[0].piece == first && r[0].begin == 32);
    CHECK(r[1].piece == second && r[1].begin == 32);
    CHECK(r[2].piece == second && r[2].begin == 48);
    /* a peer that lacks the begun pieces starts a new one instead */
    struct bitfield ph;
    bitfield_init(&ph, 4);
    for (uint32_t i = 0; i < 4; i++)
        if (i != first && i != second)
            bitfield_set(&ph, i);
    picker_release(&k.p, second, 48, 2);
    CHECK_EQ_INT(picker_pick(&k.p, &ph, 3, r, 1), 1);
    CHECK(r[0].piece != first && r[0].piece != second);
    bitfield_free(&ph);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(release_makes_block_requestable_again)
{
    struct pk k;
    CHECK(pk_init(&k, 1, 64, 64, 16, 4, 5) == 0);
    struct bitfield all;
    peer_all(&all, 1);
    picker_add_bitfield(&k.p, &all);
    struct block_req r[8];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 8), 4);
    /* everything is requested by slot 1; slot 1 itself gets nothing more */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 8), 0);
    struct partial *pp = picker_partial(&k.p, 0);
    CHECK(pp && pp->n_unrequested == 0);
    picker_release(&k.p, 0, 32, 1);
    CHECK(pp && pp->n_unrequested == 1 && pp->state[2] == BLK_MISSING && pp->reqs[2] == 0);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 8), 1);
    CHECK(r[0].piece == 0 && r[0].begin == 32 && r[0].length == 16);
    /* releasing an unaligned / out-of-range / unknown block changes nothing */
    picker_release(&k.p, 0, 33, 1);
    picker_release(&k.p, 0, 64, 1);
    picker_release(&k.p, 0, UINT32_MAX - 15, 1);
    picker_release(&k.p, 7, 0, 1);
    CHECK(pp && pp->n_unrequested == 0);
    /* a received block stays received */
    CHECK_EQ_INT(picker_received(&k.p, 0, 0, 16, 1), 1);
    picker_release(&k.p, 0, 0, 1);
    CHECK(pp && pp->state[0] == BLK_RECEIVED && pp->n_unrequested == 0);
    /* a block held twice (endgame) becomes missing only when both requests are gone */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 2, r, 8), 3); /* duplicates of blocks 1..3 */
    picker_release(&k.p, 0, 16, 1);
    CHECK(pp && pp->state[1] == BLK_REQUESTED && pp->reqs[1] == 1 && pp->n_unrequested == 0);
    picker_release(&k.p, 0, 16, 2);
    CHECK(pp && pp->state[1] == BLK_MISSING && pp->n_unrequested == 1);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 8), 1);
    CHECK(r[0].begin == 16);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(received_results)
{
    struct pk k;
    /* 2 pieces: 64 bytes (4 blocks) and 20 bytes (16 + 4) */
    CHECK(pk_init(&k, 2, 64, 84, 16, 4, 9) == 0);
    struct bitfield all;
    peer_all(&all, 2);
    picker_add_bitfield(&k.p, &all);
    /* no partial for the piece: unknown → 0 */
    CHECK_EQ_INT(picker_received(&k.p, 0, 0, 16, 0), 0);
    CHECK_EQ_INT(picker_received(&k.p, 5, 0, 16, 0), 0);
    struct block_req r[8];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 0, r, 8), 6);
    CHECK_EQ_INT(picker_received(&k.p, 0, 16, 16, 0), 1);
    CHECK_EQ_INT(picker_received(&k.p, 0, 16, 16, 1), 0); /* duplicate */
    struct partial *pp = picker_partial(&k.p, 0);
    CHECK(pp && pp->n_received == 1 && pp->from[1] == 0);
    CHECK_EQ_INT(picker_received(&k.p, 0, 8, 16, 0), -1);   /* unaligned */
    CHECK_EQ_INT(picker_received(&k.p, 0, 64, 16, 0), -1);  /* past the piece */
    CHECK_EQ_INT(picker_received(&k.p, 0, 0xFFFFFFF0u, 16, 0), -1);
    CHECK_EQ_INT(picker_received(&k.p, 0, 0, 15, 0), -1);   /* wrong length */
    CHECK_EQ_INT(picker_received(&k.p, 0, 0, 17, 0), -1);
    CHECK_EQ_INT(picker_received(&k.p, 1, 16, 16, 0), -1);  /* the short block is 4 bytes */
    CHECK_EQ_INT(picker_received(&k.p, 1, 16, 4, 0), 1);
    CHECK_EQ_INT(picker_received(&k.p, 1, 32, 4, 0), -1);
    CHECK(pp && pp->n_received == 1);
    for (uint32_t b = 0; b < 4; b++)
        if (b != 1)
            CHECK_EQ_INT(picker_received(&k.p, 0, b * 16, 16, 0), 1);
    CHECK(pp && pp->n_received == 4);
    /* after the piece is finished its blocks are unknown */
    picker_finish(&k.p, 0);
    CHECK(picker_partial(&k.p, 0) == NULL);
    CHECK_EQ_INT(picker_received(&k.p, 0, 0, 16, 0), 0);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(finish_after_hash_failure_makes_piece_pickable)
{
    struct pk k;
    CHECK(pk_init(&k, 2, 32, 64, 16, 4, 11) == 0);
    struct bitfield all;
    peer_all(&all, 2);
    picker_add_bitfield(&k.p, &all);
    struct block_req r[8];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 0, r, 8), 4);
    uint32_t p0 = r[0].piece;
    CHECK_EQ_INT(picker_received(&k.p, p0, 0, 16, 0), 1);
    CHECK_EQ_INT(picker_received(&k.p, p0, 16, 16, 0), 1);
    picker_finish(&k.p, p0); /* hash failed: start over */
    CHECK_EQ_INT(k.p.n_partials, 1);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 8), 2);
    CHECK(r[0].piece == p0 && r[0].begin == 0 && r[1].begin == 16);
    /* verified: marked have and finished, never picked again */
    bitfield_set(&k.have, p0);
    picker_finish(&k.p, p0);
    picker_finish(&k.p, p0); /* twice: harmless */
    picker_finish(&k.p, 99);
    CHECK(picker_partial(&k.p, p0) == NULL);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 2, r, 8), 2); /* endgame duplicates of the other piece only */
    CHECK(r[0].piece != p0 && r[1].piece != p0);
    bitfield_free(&all);
    pk_free(&k);
}

/* A piece that failed with several contributors is fetched from one peer only; when that peer leaves, another
 * may take it over; it never gets endgame duplicates. */
TEST(suspect_piece_is_exclusive)
{
    struct pk k;
    CHECK(pk_init(&k, 1, 64, 64, 16, 4, 5) == 0);
    struct bitfield all;
    peer_all(&all, 1);
    picker_add_bitfield(&k.p, &all);
    picker_add_bitfield(&k.p, &all);
    picker_mark_suspect(&k.p, 0);
    struct block_req r[8];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 2), 2); /* slot 3 owns it now */
    struct partial *pp = picker_partial(&k.p, 0);
    CHECK(pp != NULL && pp->exclusive && pp->owner == 3);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 4, r, 8), 0); /* another peer gets nothing of it */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 8), 2); /* the owner gets the rest */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 4, r, 8), 0); /* fully requested: no endgame duplicates either */
    /* the owner leaves: its requests are released and slot 4 takes over */
    for (uint32_t b = 0; b < 4; b++)
        picker_release(&k.p, 0, b * 16, 3);
    picker_forget_slot(&k.p, 3);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 4, r, 8), 4);
    CHECK(pp->owner == 4);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(endgame)
{
    struct pk k;
    /* 2 pieces of 2 blocks */
    CHECK(pk_init(&k, 2, 32, 64, 16, 8, 13) == 0);
    struct bitfield all;
    peer_all(&all, 2);
    picker_add_bitfield(&k.p, &all);
    picker_add_bitfield(&k.p, &all);
    struct block_req r[8];
    CHECK(!picker_endgame(&k.p));
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 3), 3); /* one block left unrequested */
    CHECK(!picker_endgame(&k.p));
    /* slot 2 gets the unrequested block only, no duplicates while one is left */
    size_t n = picker_pick(&k.p, &all, 2, r, 8);
    CHECK_EQ_INT(n, 1);
    CHECK(picker_endgame(&k.p));
    uint32_t p2 = r[0].piece, b2 = r[0].begin;
    /* now everything is requested: slot 1 duplicates only the block slot 2 holds, never its own */
    n = picker_pick(&k.p, &all, 1, r, 8);
    CHECK_EQ_INT(n, 1);
    CHECK(r[0].piece == p2 && r[0].begin == b2);
    /* slot 2 duplicates the three blocks slot 1 holds */
    n = picker_pick(&k.p, &all, 2, r, 8);
    CHECK_EQ_INT(n, 3);
    for (size_t i = 0; i < n; i++)
        CHECK(!(r[i].piece == p2 && r[i].begin == b2));
    /* at most two outstanding requests per block: no third copy, and no repeat to the same slot */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 8), 0);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 8), 0);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 2, r, 8), 0);
    for (size_t i = 0; i < k.p.n_partials; i++)
        for (uint32_t b = 0; b < k.p.partials[i]->nblocks; b++)
            CHECK_EQ_INT(k.p.partials[i]->reqs[b], 2);
    /* a received block is not duplicated any more; a released copy lets a third slot in */
    CHECK_EQ_INT(picker_received(&k.p, p2, b2, 16, 2), 1);
    picker_release(&k.p, p2, b2, 1); /* the cancelled duplicate: block stays received */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 8), 0);
    uint32_t other = p2 ^ 1;
    picker_release(&k.p, other, 0, 2);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 8), 1);
    CHECK(r[0].piece == other && r[0].begin == 0);
    bitfield_free(&all);
    pk_free(&k);

    /* duplicates are only taken from pieces the peer has */
    CHECK(pk_init(&k, 2, 32, 64, 16, 8, 17) == 0);
    peer_all(&all, 2);
    struct bitfield only0;
    const int z[] = {0, -1};
    peer_bits(&only0, 2, z);
    picker_add_bitfield(&k.p, &all);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 8), 4);
    n = picker_pick(&k.p, &only0, 2, r, 8);
    CHECK_EQ_INT(n, 2);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(r[i].piece, 0);
    bitfield_free(&only0);
    bitfield_free(&all);
    pk_free(&k);

    /* a piece the peer could serve still has an unrequested block: it gets that, not duplicates */
    CHECK(pk_init(&k, 2, 32, 64, 16, 8, 19) == 0);
    peer_all(&all, 2);
    picker_add_bitfield(&k.p, &all);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 3), 3);
    n = picker_pick(&k.p, &all, 2, r, 8);
    CHECK_EQ_INT(n, 1);
    struct partial *pp = picker_partial(&k.p, r[0].piece);
    CHECK(pp && pp->reqs[r[0].begin / 16] == 1);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(endgame_never_duplicates_to_the_holder_after_first_release)
{
    /* slot 1 requests the only block, slot 2 gets the endgame duplicate; slot 1 then leaves (its request is
     * released). Slot 2 still has its copy outstanding, so it must not be handed the same block again. */
    struct pk k;
    CHECK(pk_init(&k, 1, 16, 16, 16, 4, 29) == 0);
    struct bitfield all;
    peer_all(&all, 1);
    picker_add_bitfield(&k.p, &all);
    struct block_req r[4];
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 4), 1);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 2, r, 4), 1);
    picker_release(&k.p, 0, 0, 1);
    struct partial *pp = picker_partial(&k.p, 0);
    CHECK(pp && pp->state[0] == BLK_REQUESTED && pp->reqs[0] == 1);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 2, r, 4), 0);
    /* a third slot may take the second copy */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 3, r, 4), 1);
    bitfield_free(&all);
    pk_free(&k);
}

TEST(max_partials_respected)
{
    struct pk k;
    CHECK(pk_init(&k, 6, 32, 192, 16, 2, 23) == 0);
    struct bitfield all;
    peer_all(&all, 6);
    picker_add_bitfield(&k.p, &all);
    struct block_req r[32];
    size_t n = picker_pick(&k.p, &all, 0, r, 32);
    CHECK_EQ_INT(n, 4); /* two pieces of two blocks */
    CHECK_EQ_INT(k.p.n_partials, 2);
    CHECK(r[0].piece == r[1].piece && r[2].piece == r[3].piece && r[0].piece != r[2].piece);
    /* no new piece and no endgame while the cap is reached */
    CHECK_EQ_INT(picker_pick(&k.p, &all, 1, r, 32), 0);
    CHECK(!picker_endgame(&k.p));
    /* finishing one frees a place */
    uint32_t done = r[0].piece;
    bitfield_set(&k.have, done);
    picker_finish(&k.p, done);
    n = picker_pick(&k.p, &all, 1, r, 32);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(k.p.n_partials, 2);
    CHECK(r[0].piece != done);
    /* max_partials 0 is treated as 1 */
    bitfield_free(&all);
    pk_free(&k);
    CHECK(pk_init(&k, 6, 32, 192, 16, 0, 23) == 0);
    peer_all(&all, 6);
    CHECK_EQ_INT(picker_pick(&k.p, &all, 0, r, 32), 2);
    CHECK_EQ_INT(k.p.n_partials, 1);
    bitfield_free(&all);
    pk_free(&k);
}

int main(void)
{
    RUN(geometry_short_last_piece_and_block);
    RUN(rarest_first);
    RUN(only_pieces_the_peer_has_and_we_lack);
    RUN(begun_pieces_finished_first);
    RUN(release_makes_block_requestable_again);
    RUN(received_results);
    RUN(finish_after_hash_failure_makes_piece_pickable);
    RUN(suspect_piece_is_exclusive);
    RUN(endgame);
    RUN(endgame_never_duplicates_to_the_holder_after_first_release);
    RUN(max_partials_respected);
    return check_summary();
}
