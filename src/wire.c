/* wire.c — sans-I/O codec for the BitTorrent peer wire protocol (BEP 3, BEP 6, BEP 10 framing).
 *
 * Parsing never trusts a length field: the 4-byte length prefix is checked against the caller's max_len as soon as
 * it is available (so a peer announcing a 4 GiB message is rejected before any of its body arrives), and against the
 * fixed size of its message type as soon as the id byte is available. Decoded messages point into the input; nothing
 * is copied or allocated.
 *
 * The codec only frames. Semantic checks belong to the caller, in particular:
 *   - REQUEST/CANCEL/REJECT with length 0 or length > WIRE_MAX_BLOCK, or index/begin outside the torrent;
 *   - PIECE blocks that were never requested; HAVE/SUGGEST/ALLOWED_FAST indices >= number of pieces;
 *   - BITFIELD payload length and spare bits (see bitfield_load);
 *   - messages that are not allowed in the current state (fast messages without BEP 6 negotiated, BITFIELD not
 *     first, EXTENDED without BEP 10 negotiated, ...).
 * Unknown message ids are returned with type = id and data/data_len = the payload after the id byte, for the
 * caller to ignore. */
#include "wire.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define PSTRLEN 19u

/* ---------------------------------------------------------------------------------------------------------------- */
/* Handshake */

enum wire_parse_result wire_parse_handshake(const uint8_t *p, size_t len, struct wire_handshake *hs)
{
    /* Reject a wrong protocol string as early as the bytes show it, so a non-BitTorrent peer is not waited on. */
    if (len >= 1 && p[0] != PSTRLEN)
        return WIRE_ERROR;
    size_t have = len > 1 ? len - 1 : 0;
    if (have > PSTRLEN)
        have = PSTRLEN;
    if (have > 0 && memcmp(p + 1, WIRE_PROTOCOL, have) != 0)
        return WIRE_ERROR;
    if (len < WIRE_HANDSHAKE_LEN)
        return WIRE_NEED_MORE;
    memcpy(hs->reserved, p + 20, 8);
    memcpy(hs->info_hash, p + 28, 20);
    memcpy(hs->peer_id, p + 48, 20);
    return WIRE_OK;
}

int wire_put_handshake(struct buf *b, const struct wire_handshake *hs)
{
    uint8_t *p = buf_tail(b, WIRE_HANDSHAKE_LEN);
    if (!p)
        return -1;
    p[0] = PSTRLEN;
    memcpy(p + 1, WIRE_PROTOCOL, PSTRLEN);
    memcpy(p + 20, hs->reserved, 8);
    memcpy(p + 28, hs->info_hash, 20);
    memcpy(p + 48, hs->peer_id, 20);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Messages */

/* Check a message length (the value of the length prefix, id byte included, > 0) against its type.
 * Returns true if acceptable. Unknown ids accept any length (already bounded by max_len). */
static bool length_fits_type(uint8_t id, uint32_t mlen)
{
    switch (id) {
    case WM_CHOKE:
    case WM_UNCHOKE:
    case WM_INTERESTED:
    case WM_NOT_INTERESTED:
    case WM_HAVE_ALL:
    case WM_HAVE_NONE:
        return mlen == 1;
    case WM_HAVE:
    case WM_SUGGEST:
    case WM_ALLOWED_FAST:
        return mlen == 5;
    case WM_REQUEST:
    case WM_CANCEL:
    case WM_REJECT:
        return mlen == 13;
    case WM_PORT:
        return mlen == 3;
    case WM_PIECE:
        return mlen >= 9;
    case WM_EXTENDED:
        return mlen >= 2;
    case WM_BITFIELD:       /* payload may be empty (0-piece torrent); bitfield_load checks the exact size */
    default:
        return mlen >= 1;
    }
}

enum wire_parse_result wire_parse_msg(const uint8_t *p, size_t len, uint32_t max_len, struct wire_msg *m,
                                      size_t *consumed)
{
    *consumed = 0;
    memset(m, 0, sizeof *m);
    if (len < 4)
        return WIRE_NEED_MORE;
    uint32_t mlen = get_be32(p);
    if (mlen > max_len)
        return WIRE_ERROR;          /* decided before waiting for the body */
    if (mlen == 0) {
        m->type = WM_KEEPALIVE;
        *consumed = 4;
        return WIRE_OK;
    }
    if (len < 5)
        return WIRE_NEED_MORE;
    uint8_t id = p[4];
    if (!length_fits_type(id, mlen))
        return WIRE_ERROR;          /* also decided before the body arrives */
    if (len - 4 < (size_t)mlen)
        return WIRE_NEED_MORE;

    const uint8_t *pl = p + 5;      /* payload after the id byte */
    size_t plen = (size_t)mlen - 1;
    m->type = id;
    switch (id) {
    case WM_CHOKE:
    case WM_UNCHOKE:
    case WM_INTERESTED:
    case WM_NOT_INTERESTED:
    case WM_HAVE_ALL:
    case WM_HAVE_NONE:
        break;
    case WM_HAVE:
    case WM_SUGGEST:
    case WM_ALLOWED_FAST:
        m->index = get_be32(pl);
        break;
    case WM_REQUEST:
    case WM_CANCEL:
    case WM_REJECT:
        /* length 0 or > WIRE_MAX_BLOCK is framed fine here; the caller must reject it. */
        m->index = get_be32(pl);
        m->begin = get_be32(pl + 4);
        m->length = get_be32(pl + 8);
        break;
    case WM_PIECE:
        m->index = get_be32(pl);
        m->begin = get_be32(pl + 4);
        m->data = pl + 8;
        m->data_len = plen - 8;
        break;
    case WM_PORT:
        m->port = get_be16(pl);
        break;
    case WM_EXTENDED:
        m->ext_id = pl[0];
        m->data = pl + 1;
        m->data_len = plen - 1;
        break;
    case WM_BITFIELD:
    default:
        m->data = pl;
        m->data_len = plen;
        break;
    }
    *consumed = 4 + (size_t)mlen;
    return WIRE_OK;
}

int wire_put_keepalive(struct buf *b) { return buf_put_be32(b, 0); }

int wire_put_simple(struct buf *b, enum wire_type t)
{
    switch (t) {
    case WM_CHOKE:
    case WM_UNCHOKE:
    case WM_INTERESTED:
    case WM_NOT_INTERESTED:
    case WM_HAVE_ALL:
    case WM_HAVE_NONE:
        break;
    default:
        return -1;                  /* not a payload-less message: caller bug */
    }
    uint8_t *p = buf_tail(b, 5);
    if (!p)
        return -1;
    put_be32(p, 1);
    p[4] = (uint8_t)t;
    return 0;
}

int wire_put_index(struct buf *b, enum wire_type t, uint32_t index)
{
    if (t != WM_HAVE && t != WM_SUGGEST && t != WM_ALLOWED_FAST)
        return -1;
    uint8_t *p = buf_tail(b, 9);
    if (!p)
        return -1;
    put_be32(p, 5);
    p[4] = (uint8_t)t;
    put_be32(p + 5, index);
    return 0;
}

int wire_put_block_ref(struct buf *b, enum wire_type t, uint32_t index, uint32_t begin, uint32_t length)
{
    if (t != WM_REQUEST && t != WM_CANCEL && t != WM_REJECT)
        return -1;
    uint8_t *p = buf_tail(b, 17);
    if (!p)
        return -1;
    put_be32(p, 13);
    p[4] = (uint8_t)t;
    put_be32(p + 5, index);
    put_be32(p + 9, begin);
    put_be32(p + 13, length);
    return 0;
}

int wire_put_bitfield(struct buf *b, const uint8_t *bits, size_t nbytes)
{
    if (nbytes > UINT32_MAX - 1)
        return -1;
    uint8_t *p = buf_tail(b, 5 + nbytes);
    if (!p)
        return -1;
    put_be32(p, (uint32_t)nbytes + 1);
    p[4] = WM_BITFIELD;
    if (nbytes)
        memcpy(p + 5, bits, nbytes);
    return 0;
}

int wire_put_piece_header(struct buf *b, uint32_t index, uint32_t begin, uint32_t data_len)
{
    if (data_len > UINT32_MAX - 9)
        return -1;
    uint8_t *p = buf_tail(b, 13);
    if (!p)
        return -1;
    put_be32(p, 9 + data_len);
    p[4] = WM_PIECE;
    put_be32(p + 5, index);
    put_be32(p + 9, begin);
    return 0;
}

int wire_put_extended(struct buf *b, uint8_t ext_id, const uint8_t *payload, size_t len)
{
    if (len > UINT32_MAX - 2)
        return -1;
    uint8_t *p = buf_tail(b, 6 + len);
    if (!p)
        return -1;
    put_be32(p, (uint32_t)len + 2);
    p[4] = WM_EXTENDED;
    p[5] = ext_id;
    if (len)
        memcpy(p + 6, payload, len);
    return 0;
}

int wire_put_port(struct buf *b, uint16_t port)
{
    uint8_t *p = buf_tail(b, 7);
    if (!p)
        return -1;
    put_be32(p, 3);
    p[4] = WM_PORT;
    p[5] = (uint8_t)(port >> 8);
    p[6] = (uint8_t)port;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* BEP 6 allowed-fast set */

/* Up to this many wanted indices, duplicates are found by scanning out[]; above it, with a bitmap of num_pieces
 * bits (falling back to the scan if that allocation fails). */
#define AF_SCAN_MAX 256u

size_t wire_allowed_fast_set(const uint8_t ip4[4], const uint8_t info_hash[20], uint32_t num_pieces, size_t k,
                             uint32_t *out)
{
    if (num_pieces == 0 || k == 0)
        return 0;
    /* Only num_pieces distinct values exist: never try to find more (BEP 6's pseudocode would loop forever). */
    size_t want = k < num_pieces ? k : num_pieces;

    uint8_t *seen = NULL;
    if (want > AF_SCAN_MAX)
        seen = calloc(((size_t)num_pieces + 7) / 8, 1);

    /* x = (ip & 0xFFFFFF00) || info_hash; then x = SHA1(x) repeatedly. */
    uint8_t x[24];
    memcpy(x, ip4, 3);
    x[3] = 0;
    memcpy(x + 4, info_hash, 20);
    const uint8_t *in = x;
    size_t in_len = sizeof x;
    uint8_t h[EVP_MAX_MD_SIZE], cur[20];

    /* Bound the hash rounds as well: each round yields 5 draws; collecting `want` of num_pieces values needs about
     * want * ln(num_pieces) draws (coupon collector, worst when want == num_pieces), ln(2^32) < 23, so 8 rounds
     * (40 draws) per wanted value plus slack is never reached in practice. */
    size_t max_rounds = want <= (SIZE_MAX - 64) / 8 ? want * 8 + 64 : SIZE_MAX;
    size_t n = 0;
    for (size_t round = 0; round < max_rounds && n < want; round++) {
        unsigned int hlen = 0;
        if (!EVP_Digest(in, in_len, h, &hlen, EVP_sha1(), NULL) || hlen != 20)
            break;
        memcpy(cur, h, 20);     /* next round hashes this digest (kept apart from the output buffer) */
        in = cur;
        in_len = 20;
        for (size_t i = 0; i < 5 && n < want; i++) {
            uint32_t idx = get_be32(h + 4 * i) % num_pieces;
            bool dup = false;
            if (seen) {
                dup = (seen[idx >> 3] >> (idx & 7)) & 1;
                seen[idx >> 3] |= (uint8_t)(1u << (idx & 7));
            } else {
                for (size_t j = 0; j < n && !dup; j++)
                    dup = out[j] == idx;
            }
            if (!dup)
                out[n++] = idx;
        }
    }
    free(seen);
    return n;
}
