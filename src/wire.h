/* wire.h — sans-I/O codec for the BitTorrent peer wire protocol: BEP 3 messages, BEP 6 fast extension,
 * BEP 10 extension protocol framing. Parsers take bytes and return one decoded message at a time; encoders
 * append bytes to a struct buf. Nothing here touches a socket. Length fields are never trusted: a message
 * longer than the caller's limit, or whose length does not fit its type, is a protocol error. */
#ifndef DS_WIRE_H
#define DS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define WIRE_PROTOCOL "BitTorrent protocol"
#define WIRE_HANDSHAKE_LEN 68
#define WIRE_BLOCK_SIZE 16384u          /* standard request size */
#define WIRE_MAX_BLOCK (128u * 1024u)   /* largest request we honour */

/* Reserved-bit helpers (byte index, mask) */
#define WIRE_RSV_EXTENDED_BYTE 5        /* BEP 10: reserved[5] & 0x10 */
#define WIRE_RSV_EXTENDED_MASK 0x10
#define WIRE_RSV_FAST_BYTE 7            /* BEP 6: reserved[7] & 0x04 */
#define WIRE_RSV_FAST_MASK 0x04

enum wire_type {
    WM_KEEPALIVE = -1,
    WM_CHOKE = 0,
    WM_UNCHOKE = 1,
    WM_INTERESTED = 2,
    WM_NOT_INTERESTED = 3,
    WM_HAVE = 4,
    WM_BITFIELD = 5,
    WM_REQUEST = 6,
    WM_PIECE = 7,
    WM_CANCEL = 8,
    WM_PORT = 9,
    WM_SUGGEST = 13,
    WM_HAVE_ALL = 14,
    WM_HAVE_NONE = 15,
    WM_REJECT = 16,
    WM_ALLOWED_FAST = 17,
    WM_EXTENDED = 20,
};

struct wire_handshake {
    uint8_t reserved[8];
    uint8_t info_hash[20];
    uint8_t peer_id[20];
};

struct wire_msg {
    int type;               /* enum wire_type, or an unknown id 0..255 (caller ignores it) */
    uint32_t index;         /* HAVE, REQUEST, PIECE, CANCEL, SUGGEST, REJECT, ALLOWED_FAST */
    uint32_t begin;         /* REQUEST, PIECE, CANCEL, REJECT */
    uint32_t length;        /* REQUEST, CANCEL, REJECT */
    uint16_t port;          /* PORT */
    uint8_t ext_id;         /* EXTENDED: extended message id (0 = extension handshake) */
    const uint8_t *data;    /* BITFIELD bits, PIECE block, EXTENDED payload (after ext_id); points into input */
    size_t data_len;
};

enum wire_parse_result {
    WIRE_NEED_MORE = 0,     /* not enough bytes yet */
    WIRE_OK = 1,            /* one message decoded; *consumed bytes used */
    WIRE_ERROR = -1,        /* protocol violation: drop the connection */
};

/* Handshake: needs 68 bytes. Checks pstrlen == 19 and the protocol string. */
enum wire_parse_result wire_parse_handshake(const uint8_t *p, size_t len, struct wire_handshake *hs);

/* One length-prefixed message. max_len bounds the length prefix (e.g. 13 + WIRE_MAX_BLOCK, or more while a
 * bitfield/extension message is allowed). Fixed-size messages must have exactly their size. */
enum wire_parse_result wire_parse_msg(const uint8_t *p, size_t len, uint32_t max_len, struct wire_msg *m,
                                      size_t *consumed);

/* Encoders: append one message to b; 0 or -1 on OOM. */
int wire_put_handshake(struct buf *b, const struct wire_handshake *hs);
int wire_put_keepalive(struct buf *b);
int wire_put_simple(struct buf *b, enum wire_type t);   /* CHOKE..NOT_INTERESTED, HAVE_ALL, HAVE_NONE */
int wire_put_index(struct buf *b, enum wire_type t, uint32_t index);  /* HAVE, SUGGEST, ALLOWED_FAST */
int wire_put_block_ref(struct buf *b, enum wire_type t, uint32_t index, uint32_t begin, uint32_t length); /* REQUEST, CANCEL, REJECT */
int wire_put_bitfield(struct buf *b, const uint8_t *bits, size_t nbytes);
/* PIECE header only (13 bytes incl. length prefix); the caller appends data_len bytes of block data next. */
int wire_put_piece_header(struct buf *b, uint32_t index, uint32_t begin, uint32_t data_len);
int wire_put_extended(struct buf *b, uint8_t ext_id, const uint8_t *payload, size_t len);
int wire_put_port(struct buf *b, uint16_t port);

/* BEP 6 allowed-fast set: the k piece indices for a peer at IPv4 address ip (network order bytes). Fills out[]
 * with up to k distinct indices and returns how many. num_pieces == 0 returns 0. */
size_t wire_allowed_fast_set(const uint8_t ip4[4], const uint8_t info_hash[20], uint32_t num_pieces, size_t k,
                             uint32_t *out);

#endif
