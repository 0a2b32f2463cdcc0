#include "wire.h"
#include "check.h"

#include <stdlib.h>

#define MAXLEN (13u + WIRE_MAX_BLOCK)

/* Parse p[0..len) expecting exactly one complete message; checks every strict prefix says NEED_MORE without
 * consuming anything. Parses from an exact-size heap copy so ASan sees any over-read. */
static enum wire_parse_result parse_exact(const uint8_t *p, size_t len, uint32_t max_len, struct wire_msg *m,
                                          uint8_t **copy_out)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    size_t consumed = 99;
    for (size_t i = 0; i < len; i++) {
        uint8_t *pre = malloc(i ? i : 1);
        memcpy(pre, p, i);
        enum wire_parse_result r = wire_parse_msg(pre, i, max_len, m, &consumed);
        CHECK_EQ_INT(r, WIRE_NEED_MORE);
        CHECK_EQ_INT(consumed, 0);
        free(pre);
    }
    enum wire_parse_result r = wire_parse_msg(copy, len, max_len, m, &consumed);
    if (r == WIRE_OK)
        CHECK_EQ_INT(consumed, len);
    *copy_out = copy;   /* m->data points into it: caller frees */
    return r;
}

TEST(handshake_round_trip)
{
    struct wire_handshake hs, out;
    for (int i = 0; i < 8; i++)
        hs.reserved[i] = (uint8_t)i;
    hs.reserved[WIRE_RSV_EXTENDED_BYTE] |= WIRE_RSV_EXTENDED_MASK;
    hs.reserved[WIRE_RSV_FAST_BYTE] |= WIRE_RSV_FAST_MASK;
    memset(hs.info_hash, 0xAB, 20);
    for (int i = 0; i < 20; i++)
        hs.peer_id[i] = (uint8_t)('A' + i);
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_handshake(&b, &hs), 0);
    CHECK_EQ_INT(b.len, WIRE_HANDSHAKE_LEN);
    CHECK_EQ_INT(b.data[0], 19);
    CHECK(memcmp(b.data + 1, "BitTorrent protocol", 19) == 0);
    for (size_t i = 0; i < WIRE_HANDSHAKE_LEN; i++)
        CHECK_EQ_INT(wire_parse_handshake(b.data, i, &out), WIRE_NEED_MORE);
    CHECK_EQ_INT(wire_parse_handshake(b.data, b.len, &out), WIRE_OK);
    CHECK(memcmp(&hs, &out, sizeof hs) == 0);
    CHECK(out.reserved[WIRE_RSV_EXTENDED_BYTE] & WIRE_RSV_EXTENDED_MASK);
    CHECK(out.reserved[WIRE_RSV_FAST_BYTE] & WIRE_RSV_FAST_MASK);
    /* extra bytes after the handshake (first message already arrived) are fine */
    CHECK_EQ_INT(wire_put_simple(&b, WM_HAVE_ALL), 0);
    CHECK_EQ_INT(wire_parse_handshake(b.data, b.len, &out), WIRE_OK);
    buf_free(&b);
}

TEST(handshake_bad_pstr)
{
    struct wire_handshake hs = {0}, out;
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_handshake(&b, &hs), 0);
    /* wrong pstrlen: detected from the first byte */
    b.data[0] = 18;
    CHECK_EQ_INT(wire_parse_handshake(b.data, 1, &out), WIRE_ERROR);
    CHECK_EQ_INT(wire_parse_handshake(b.data, b.len, &out), WIRE_ERROR);
    b.data[0] = 0;
    CHECK_EQ_INT(wire_parse_handshake(b.data, b.len, &out), WIRE_ERROR);
    b.data[0] = 19;
    /* each byte of the protocol string corrupted, detected as soon as it arrives */
    for (size_t i = 1; i < 20; i++) {
        uint8_t save = b.data[i];
        b.data[i] ^= 0x20;
        CHECK_EQ_INT(wire_parse_handshake(b.data, i, &out), WIRE_NEED_MORE);
        CHECK_EQ_INT(wire_parse_handshake(b.data, i + 1, &out), WIRE_ERROR);
        CHECK_EQ_INT(wire_parse_handshake(b.data, b.len, &out), WIRE_ERROR);
        b.data[i] = save;
    }
    /* an HTTP request is not a handshake */
    const char *http = "GET / HTTP/1.1\r\n";
    CHECK_EQ_INT(wire_parse_handshake((const uint8_t *)http, strlen(http), &out), WIRE_ERROR);
    CHECK_EQ_INT(wire_parse_handshake(b.data, 0, &out), WIRE_NEED_MORE);
    buf_free(&b);
}

TEST(keepalive)
{
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_keepalive(&b), 0);
    CHECK_EQ_INT(b.len, 4);
    struct wire_msg m;
    uint8_t *copy;
    CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, WM_KEEPALIVE);
    free(copy);
    /* keep-alive is accepted even with max_len 0 */
    size_t consumed;
    CHECK_EQ_INT(wire_parse_msg(b.data, b.len, 0, &m, &consumed), WIRE_OK);
    CHECK_EQ_INT(consumed, 4);
    buf_free(&b);
}

TEST(simple_round_trip)
{
    enum wire_type types[] = {WM_CHOKE, WM_UNCHOKE, WM_INTERESTED, WM_NOT_INTERESTED, WM_HAVE_ALL, WM_HAVE_NONE};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct buf b = {0};
        CHECK_EQ_INT(wire_put_simple(&b, types[i]), 0);
        CHECK_EQ_INT(b.len, 5);
        CHECK_EQ_INT(get_be32(b.data), 1);
        struct wire_msg m;
        uint8_t *copy;
        CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
        CHECK_EQ_INT(m.type, types[i]);
        CHECK(m.data == NULL);
        CHECK_EQ_INT(m.data_len, 0);
        free(copy);
        buf_free(&b);
    }
}

TEST(index_round_trip)
{
    enum wire_type types[] = {WM_HAVE, WM_SUGGEST, WM_ALLOWED_FAST};
    uint32_t vals[] = {0, 1, 1313, 0xDEADBEEF, UINT32_MAX};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            struct buf b = {0};
            CHECK_EQ_INT(wire_put_index(&b, types[i], vals[v]), 0);
            CHECK_EQ_INT(b.len, 9);
            CHECK_EQ_INT(get_be32(b.data), 5);
            struct wire_msg m;
            uint8_t *copy;
            CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
            CHECK_EQ_INT(m.type, types[i]);
            CHECK_EQ_INT(m.index, vals[v]);
            free(copy);
            buf_free(&b);
        }
}

TEST(block_ref_round_trip)
{
    enum wire_type types[] = {WM_REQUEST, WM_CANCEL, WM_REJECT};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct buf b = {0};
        CHECK_EQ_INT(wire_put_block_ref(&b, types[i], 77, 3 * WIRE_BLOCK_SIZE, WIRE_BLOCK_SIZE), 0);
        CHECK_EQ_INT(b.len, 17);
        CHECK_EQ_INT(get_be32(b.data), 13);
        struct wire_msg m;
        uint8_t *copy;
        CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
        CHECK_EQ_INT(m.type, types[i]);
        CHECK_EQ_INT(m.index, 77);
        CHECK_EQ_INT(m.begin, 3 * WIRE_BLOCK_SIZE);
        CHECK_EQ_INT(m.length, WIRE_BLOCK_SIZE);
        free(copy);
        buf_free(&b);
    }
}

TEST(request_lengths_are_callers_business)
{
    /* The codec frames REQUEST length 0 and length > WIRE_MAX_BLOCK; rejecting them is the caller's job. */
    uint32_t lens[] = {0, WIRE_MAX_BLOCK + 1, UINT32_MAX};
    for (size_t i = 0; i < 3; i++) {
        struct buf b = {0};
        CHECK_EQ_INT(wire_put_block_ref(&b, WM_REQUEST, 1, 2, lens[i]), 0);
        struct wire_msg m;
        size_t consumed;
        CHECK_EQ_INT(wire_parse_msg(b.data, b.len, MAXLEN, &m, &consumed), WIRE_OK);
        CHECK_EQ_INT(m.length, lens[i]);
        buf_free(&b);
    }
}

TEST(bitfield_round_trip)
{
    uint8_t bits[165];
    for (size_t i = 0; i < sizeof bits; i++)
        bits[i] = (uint8_t)(i * 37);
    bits[164] = 0x80;
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_bitfield(&b, bits, sizeof bits), 0);
    CHECK_EQ_INT(b.len, 5 + sizeof bits);
    struct wire_msg m;
    uint8_t *copy;
    CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, WM_BITFIELD);
    CHECK_EQ_INT(m.data_len, sizeof bits);
    CHECK(m.data == copy + 5);
    CHECK(memcmp(m.data, bits, sizeof bits) == 0);
    free(copy);
    buf_free(&b);
    /* empty bitfield frames fine (0-piece torrent; bitfield_load decides) */
    CHECK_EQ_INT(wire_put_bitfield(&b, NULL, 0), 0);
    CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, WM_BITFIELD);
    CHECK_EQ_INT(m.data_len, 0);
    free(copy);
    buf_free(&b);
}

TEST(piece_round_trip)
{
    uint8_t block[WIRE_BLOCK_SIZE];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (uint8_t)(i ^ (i >> 8));
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_piece_header(&b, 5, WIRE_BLOCK_SIZE, sizeof block), 0);
    CHECK_EQ_INT(b.len, 13);
    CHECK_EQ_INT(buf_put(&b, block, sizeof block), 0);
    struct wire_msg m;
    size_t consumed;
    /* too big for a small limit */
    CHECK_EQ_INT(wire_parse_msg(b.data, b.len, 9 + WIRE_BLOCK_SIZE - 1, &m, &consumed), WIRE_ERROR);
    /* exactly at the limit */
    CHECK_EQ_INT(wire_parse_msg(b.data, b.len, 9 + WIRE_BLOCK_SIZE, &m, &consumed), WIRE_OK);
    CHECK_EQ_INT(consumed, 13 + sizeof block);
    CHECK_EQ_INT(m.type, WM_PIECE);
    CHECK_EQ_INT(m.index, 5);
    CHECK_EQ_INT(m.begin, WIRE_BLOCK_SIZE);
    CHECK_EQ_INT(m.data_len, sizeof block);
    CHECK(m.data == b.data + 13);
    CHECK(memcmp(m.data, block, sizeof block) == 0);
    /* every prefix of a PIECE needs more */
    for (size_t i = 0; i < b.len; i += 97)
        CHECK_EQ_INT(wire_parse_msg(b.data, i, MAXLEN, &m, &consumed), WIRE_NEED_MORE);
    CHECK_EQ_INT(wire_parse_msg(b.data, b.len - 1, MAXLEN, &m, &consumed), WIRE_NEED_MORE);
    buf_free(&b);
    /* empty block: framed (the caller will find it was never requested) */
    CHECK_EQ_INT(wire_put_piece_header(&b, 1, 0, 0), 0);
    uint8_t *copy;
    CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, WM_PIECE);
    CHECK_EQ_INT(m.data_len, 0);
    free(copy);
    buf_free(&b);
}

TEST(extended_round_trip)
{
    const char *payload = "d1:md11:ut_metadatai1ee1:pi6881ee";
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_extended(&b, 0, (const uint8_t *)payload, strlen(payload)), 0);
    CHECK_EQ_INT(b.len, 6 + strlen(payload));
    struct wire_msg m;
    uint8_t *copy;
    CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, WM_EXTENDED);
    CHECK_EQ_INT(m.ext_id, 0);
    CHECK_EQ_INT(m.data_len, strlen(payload));
    CHECK(memcmp(m.data, payload, m.data_len) == 0);
    free(copy);
    buf_free(&b);
    CHECK_EQ_INT(wire_put_extended(&b, 3, NULL, 0), 0);
    CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, WM_EXTENDED);
    CHECK_EQ_INT(m.ext_id, 3);
    CHECK_EQ_INT(m.data_len, 0);
    free(copy);
    buf_free(&b);
}

TEST(port_round_trip)
{
    uint16_t ports[] = {0, 6881, 65535};
    for (size_t i = 0; i < 3; i++) {
        struct buf b = {0};
        CHECK_EQ_INT(wire_put_port(&b, ports[i]), 0);
        CHECK_EQ_INT(b.len, 7);
        struct wire_msg m;
        uint8_t *copy;
        CHECK_EQ_INT(parse_exact(b.data, b.len, MAXLEN, &m, &copy), WIRE_OK);
        CHECK_EQ_INT(m.type, WM_PORT);
        CHECK_EQ_INT(m.port, ports[i]);
        free(copy);
        buf_free(&b);
    }
}

TEST(unknown_id)
{
    uint8_t msg[] = {0, 0, 0, 4, 200, 'a', 'b', 'c'};
    struct wire_msg m;
    uint8_t *copy;
    CHECK_EQ_INT(parse_exact(msg, sizeof msg, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, 200);
    CHECK_EQ_INT(m.data_len, 3);
    CHECK(m.data == copy + 5);
    free(copy);
    uint8_t bare[] = {0, 0, 0, 1, 10};
    CHECK_EQ_INT(parse_exact(bare, sizeof bare, MAXLEN, &m, &copy), WIRE_OK);
    CHECK_EQ_INT(m.type, 10);
    CHECK_EQ_INT(m.data_len, 0);
    free(copy);
}

TEST(encoder_type_misuse)
{
    struct buf b = {0};
    CHECK_EQ_INT(wire_put_simple(&b, WM_HAVE), -1);
    CHECK_EQ_INT(wire_put_simple(&b, WM_KEEPALIVE), -1);
    CHECK_EQ_INT(wire_put_index(&b, WM_CHOKE, 1), -1);
    CHECK_EQ_INT(wire_put_index(&b, WM_REQUEST, 1), -1);
    CHECK_EQ_INT(wire_put_block_ref(&b, WM_PIECE, 1, 2, 3), -1);
    CHECK_EQ_INT(wire_put_block_ref(&b, WM_HAVE, 1, 2, 3), -1);
    CHECK_EQ_INT(wire_put_piece_header(&b, 0, 0, UINT32_MAX - 8), -1);
    CHECK_EQ_INT(b.len, 0);   /* nothing appended on failure */
    buf_free(&b);
}

/* Encode one of each message type into one buffer. Returns the number of messages; types[] gets their types. */
static size_t build_stream(struct buf *b, int *types)
{
    size_t n = 0;
    static const uint8_t bits[3] = {0xFF, 0x0F, 0x80};
    static const uint8_t block[40] = {1, 2, 3, 4, 5};
    wire_put_keepalive(b), types[n++] = WM_KEEPALIVE;
    wire_put_bitfield(b, bits, sizeof bits), types[n++] = WM_BITFIELD;
    wire_put_simple(b, WM_CHOKE), types[n++] = WM_CHOKE;
    wire_put_simple(b, WM_UNCHOKE), types[n++] = WM_UNCHOKE;
    wire_put_simple(b, WM_INTERESTED), types[n++] = WM_INTERESTED;
    wire_put_simple(b, WM_NOT_INTERESTED), types[n++] = WM_NOT_INTERESTED;
    wire_put_simple(b, WM_HAVE_ALL), types[n++] = WM_HAVE_ALL;
    wire_put_simple(b, WM_HAVE_NONE), types[n++] = WM_HAVE_NONE;
    wire_put_index(b, WM_HAVE, 9), types[n++] = WM_HAVE;
    wire_put_index(b, WM_SUGGEST, 10), types[n++] = WM_SUGGEST;
    wire_put_index(b, WM_ALLOWED_FAST, 11), types[n++] = WM_ALLOWED_FAST;
    wire_put_block_ref(b, WM_REQUEST, 1, 0, 40), types[n++] = WM_REQUEST;
    wire_put_block_ref(b, WM_CANCEL, 1, 0, 40), types[n++] = WM_CANCEL;
    wire_put_block_ref(b, WM_REJECT, 1, 0, 40), types[n++] = WM_REJECT;
    wire_put_piece_header(b, 1, 0, sizeof block), buf_put(b, block, sizeof block), types[n++] = WM_PIECE;
    wire_put_port(b, 6881), types[n++] = WM_PORT;
    wire_put_extended(b, 1, (const uint8_t *)"xyz", 3), types[n++] = WM_EXTENDED;
    wire_put_keepalive(b), types[n++] = WM_KEEPALIVE;
    return n;
}

TEST(stream_split_everywhere)
{
    struct buf b = {0};
    int types[32];
    size_t n = build_stream(&b, types);
    /* For every split point s: deliver bytes [0, s) first, parse what is possible, then deliver the rest.
     * Every message must come out exactly once, in order, whatever the split. */
    for (size_t s = 0; s <= b.len; s++) {
        struct buf in = {0};
        size_t got = 0;
        int bad = 0;
        for (int phase = 0; phase < 2; phase++) {
            if (phase == 0)
                buf_put(&in, b.data, s);
            else
                buf_put(&in, b.data + s, b.len - s);
            for (;;) {
                struct wire_msg m;
                size_t consumed;
                enum wire_parse_result r = wire_parse_msg(buf_head(&in), buf_unread(&in), MAXLEN, &m, &consumed);
                if (r == WIRE_NEED_MORE)
                    break;
                if (r != WIRE_OK || consumed > buf_unread(&in) || got >= n || m.type != types[got]) {
                    bad = 1;
                    break;
                }
                got++;
                buf_consume(&in, consumed);
            }
        }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(got, n);
        CHECK_EQ_INT(buf_unread(&in), 0);
        buf_free(&in);
    }
    buf_free(&b);
}

TEST(stream_byte_by_byte)
{
    struct buf b = {0};
    int types[32];
    size_t n = build_stream(&b, types);
    struct buf in = {0};
    size_t got = 0;
    for (size_t i = 0; i < b.len; i++) {
        buf_put(&in, b.data + i, 1);
        struct wire_msg m;
        size_t consumed;
        enum wire_parse_result r;
        while ((r = wire_parse_msg(buf_head(&in), buf_unread(&in), MAXLEN, &m, &consumed)) == WIRE_OK) {
            CHECK(got < n);
            if (got < n)
                CHECK_EQ_INT(m.type, types[got]);
            got++;
            buf_consume(&in, consumed);
        }
        CHECK_EQ_INT(r, WIRE_NEED_MORE);
    }
    CHECK_EQ_INT(got, n);
    buf_free(&in);
    buf_free(&b);
}

TEST(wrong_fixed_lengths)
{
    struct { int id; uint32_t len; } fixed[] = {
        {WM_CHOKE, 1}, {WM_UNCHOKE, 1}, {WM_INTERESTED, 1}, {WM_NOT_INTERESTED, 1}, {WM_HAVE_ALL, 1},
        {WM_HAVE_NONE, 1}, {WM_HAVE, 5}, {WM_SUGGEST, 5}, {WM_ALLOWED_FAST, 5}, {WM_REQUEST, 13},
        {WM_CANCEL, 13}, {WM_REJECT, 13}, {WM_PORT, 3},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        uint32_t bad[] = {fixed[i].len - 1, fixed[i].len + 1, fixed[i].len + 1000};
        for (size_t j = 0; j < 3; j++) {
            if (bad[j] == 0)
                continue;       /* that would be a keep-alive */
            uint8_t msg[4 + 1100] = {0};
            put_be32(msg, bad[j]);
            msg[4] = (uint8_t)fixed[i].id;
            struct wire_msg m;
            size_t consumed = 99;
            /* rejected as soon as the id byte is there, before the body */
            CHECK_EQ_INT(wire_parse_msg(msg, 5, MAXLEN, &m, &consumed), WIRE_ERROR);
            CHECK_EQ_INT(wire_parse_msg(msg, 4 + bad[j], MAXLEN, &m, &consumed), WIRE_ERROR);
            CHECK_EQ_INT(consumed, 0);
        }
    }
    /* PIECE needs >= 9, EXTENDED >= 2 */
    for (uint32_t l = 1; l < 9; l++) {
        uint8_t msg[16] = {0};
        put_be32(msg, l);
        msg[4] = WM_PIECE;
        struct wire_msg m;
        size_t consumed;
        CHECK_EQ_INT(wire_parse_msg(msg, 4 + l, MAXLEN, &m, &consumed), WIRE_ERROR);
    }
    uint8_t ext[5] = {0, 0, 0, 1, WM_EXTENDED};
    struct wire_msg m;
    size_t consumed;
    CHECK_EQ_INT(wire_parse_msg(ext, 5, MAXLEN, &m, &consumed), WIRE_ERROR);
}

TEST(oversized_prefix_rejected_early)
{
    uint8_t huge[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    struct wire_msg m;
    size_t consumed = 99;
    /* only the 4-byte prefix has arrived: rejected right away, not NEED_MORE */
    CHECK_EQ_INT(wire_parse_msg(huge, 4, MAXLEN, &m, &consumed), WIRE_ERROR);
    CHECK_EQ_INT(consumed, 0);
    uint8_t one_over[4];
    put_be32(one_over, MAXLEN + 1);
    CHECK_EQ_INT(wire_parse_msg(one_over, 4, MAXLEN, &m, &consumed), WIRE_ERROR);
    uint8_t at_limit[5];
    put_be32(at_limit, MAXLEN);
    at_limit[4] = WM_PIECE;
    CHECK_EQ_INT(wire_parse_msg(at_limit, 5, MAXLEN, &m, &consumed), WIRE_NEED_MORE);
    /* even with the largest limit, a 4 GiB announcement just waits (no overflow in the size arithmetic) */
    CHECK_EQ_INT(wire_parse_msg(huge, 4, UINT32_MAX, &m, &consumed), WIRE_NEED_MORE);
    /* fewer than 4 bytes: need more, whatever they are */
    CHECK_EQ_INT(wire_parse_msg(huge, 3, MAXLEN, &m, &consumed), WIRE_NEED_MORE);
    CHECK_EQ_INT(wire_parse_msg(huge, 0, MAXLEN, &m, &consumed), WIRE_NEED_MORE);
}

static int same_set(const uint32_t *a, const uint32_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

TEST(bep6_vectors)
{
    const uint8_t ip[4] = {80, 4, 4, 200};
    uint8_t ih[20];
    memset(ih, 0xAA, sizeof ih);
    const uint32_t want[9] = {1059, 431, 808, 1217, 287, 376, 1188, 353, 508};
    uint32_t out[16];
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 1313, 7, out), 7);
    CHECK(same_set(out, want, 7));
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 1313, 9, out), 9);
    CHECK(same_set(out, want, 9));
    /* the last octet is masked off: same /24, same set */
    const uint8_t ip2[4] = {80, 4, 4, 1};
    CHECK_EQ_INT(wire_allowed_fast_set(ip2, ih, 1313, 9, out), 9);
    CHECK(same_set(out, want, 9));
    /* a different /24 gives a different set */
    const uint8_t ip3[4] = {80, 4, 5, 200};
    CHECK_EQ_INT(wire_allowed_fast_set(ip3, ih, 1313, 9, out), 9);
    CHECK(!same_set(out, want, 9));
}

TEST(bep6_bounds)
{
    const uint8_t ip[4] = {80, 4, 4, 200};
    uint8_t ih[20];
    memset(ih, 0xAA, sizeof ih);
    uint32_t out[64];
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 0, 7, out), 0);
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 1313, 0, out), 0);
    /* k larger than the number of pieces: every piece once, and the loop ends */
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 1, 10, out), 1);
    CHECK_EQ_INT(out[0], 0);
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 3, 64, out), 3);
    /* published by other implementations for this input: [1, 2, 0] */
    CHECK_EQ_INT(out[0], 1);
    CHECK_EQ_INT(out[1], 2);
    CHECK_EQ_INT(out[2], 0);
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 50, 64, out), 50);
    int seen[50] = {0}, bad = 0;
    for (int i = 0; i < 50; i++) {
        if (out[i] >= 50 || seen[out[i]]++)
            bad = 1;
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(bep6_large_set)
{
    /* above the linear-scan threshold: bitmap dedup path; every piece of a 2000-piece torrent, distinct */
    const uint8_t ip[4] = {10, 0, 0, 7};
    uint8_t ih[20];
    for (int i = 0; i < 20; i++)
        ih[i] = (uint8_t)i;
    uint32_t *out = malloc(2000 * sizeof *out);
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 2000, 2000, out), 2000);
    uint8_t *seen = calloc(2000, 1);
    int bad = 0;
    for (int i = 0; i < 2000; i++)
        if (out[i] >= 2000 || seen[out[i]]++)
            bad = 1;
    CHECK_EQ_INT(bad, 0);
    /* the first values agree with the small-set (scan) path */
    uint32_t small[10];
    CHECK_EQ_INT(wire_allowed_fast_set(ip, ih, 2000, 10, small), 10);
    CHECK(same_set(out, small, 10));
    free(seen);
    free(out);
}

static uint32_t rng_state = 0x12345678u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

TEST(random_bytes_robustness)
{
    int bad = 0;
    size_t oks = 0, errors = 0, needs = 0;
    for (int it = 0; it < 200000; it++) {
        size_t len = rng() % 48;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rng();
        /* bias towards plausible frames: small length prefix, a known id */
        if (len >= 4 && (rng() & 1)) {
            put_be32(p, rng() % 20);
            if (len >= 5 && (rng() & 1))
                p[4] = (uint8_t)(rng() % 21);
        }
        uint32_t max_len = (rng() & 1) ? MAXLEN : rng() % 32;
        size_t off = 0;
        for (;;) {
            struct wire_msg m;
            size_t consumed = 0;
            enum wire_parse_result r = wire_parse_msg(p + off, len - off, max_len, &m, &consumed);
            if (r == WIRE_OK) {
                oks++;
                if (consumed == 0 || consumed > len - off)
                    bad = 1;
                if (m.data && (m.data < p + off || m.data + m.data_len > p + off + consumed))
                    bad = 1;
                if (consumed == 0 || consumed > len - off)
                    break;
                off += consumed;
            } else {
                if (consumed != 0)
                    bad = 1;
                if (r == WIRE_ERROR)
                    errors++;
                else
                    needs++;
                break;
            }
        }
        struct wire_handshake hs;
        enum wire_parse_result hr = wire_parse_handshake(p, len, &hs);
        if (hr != WIRE_OK && hr != WIRE_ERROR && hr != WIRE_NEED_MORE)
            bad = 1;
        free(p);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(oks > 1000 && errors > 1000 && needs > 1000);
}

int main(void)
{
    RUN(handshake_round_trip);
    RUN(handshake_bad_pstr);
    RUN(keepalive);
    RUN(simple_round_trip);
    RUN(index_round_trip);
    RUN(block_ref_round_trip);
    RUN(request_lengths_are_callers_business);
    RUN(bitfield_round_trip);
    RUN(piece_round_trip);
    RUN(extended_round_trip);
    RUN(port_round_trip);
    RUN(unknown_id);
    RUN(encoder_type_misuse);
    RUN(stream_split_everywhere);
    RUN(stream_byte_by_byte);
    RUN(wrong_fixed_lengths);
    RUN(oversized_prefix_rejected_early);
    RUN(bep6_vectors);
    RUN(bep6_bounds);
    RUN(bep6_large_set);
    RUN(random_bytes_robustness);
    return check_summary();
}
