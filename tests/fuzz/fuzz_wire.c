/* fuzz_wire.c — libFuzzer target for the wire codec. Not built by meson; build by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_wire.c src/wire.c \
 *         src/buf.c src/bitfield.c -lcrypto -o /tmp/fuzz_wire && /tmp/fuzz_wire -max_total_time=60
 * Input: one byte selecting max_len, then a handshake, then messages until error or need-more. Every decoded
 * message is checked against the framing invariants, re-encoded, re-parsed, and (for bitfields) loaded. */
#include <stdlib.h>
#include <string.h>

#include "bitfield.h"
#include "wire.h"

static uint32_t pick_max_len(uint8_t sel)
{
    switch (sel & 3) {
    case 0: return 13u + WIRE_MAX_BLOCK;
    case 1: return sel >> 2;              /* tiny limits: 0..63 */
    case 2: return UINT32_MAX;
    default: return 1u << (sel >> 3);
    }
}

/* Re-encode a decoded message and check it parses back to the same thing. */
static void reencode(const struct wire_msg *m, uint32_t max_len)
{
    struct buf b = {0};
    int rc;
    switch (m->type) {
    case WM_KEEPALIVE: rc = wire_put_keepalive(&b); break;
    case WM_CHOKE: case WM_UNCHOKE: case WM_INTERESTED: case WM_NOT_INTERESTED: case WM_HAVE_ALL: case WM_HAVE_NONE:
        rc = wire_put_simple(&b, (enum wire_type)m->type); break;
    case WM_HAVE: case WM_SUGGEST: case WM_ALLOWED_FAST:
        rc = wire_put_index(&b, (enum wire_type)m->type, m->index); break;
    case WM_REQUEST: case WM_CANCEL: case WM_REJECT:
        rc = wire_put_block_ref(&b, (enum wire_type)m->type, m->index, m->begin, m->length); break;
    case WM_BITFIELD: rc = wire_put_bitfield(&b, m->data, m->data_len); break;
    case WM_PIECE:
        rc = wire_put_piece_header(&b, m->index, m->begin, (uint32_t)m->data_len);
        if (!rc)
            rc = buf_put(&b, m->data, m->data_len);
        break;
    case WM_PORT: rc = wire_put_port(&b, m->port); break;
    case WM_EXTENDED: rc = wire_put_extended(&b, m->ext_id, m->data, m->data_len); break;
    default: return;
    }
    if (rc)
        abort();
    struct wire_msg m2;
    size_t consumed;
    if (wire_parse_msg(b.data, b.len, max_len, &m2, &consumed) != WIRE_OK || consumed != b.len)
        abort();
    if (m2.type != m->type || m2.index != m->index || m2.begin != m->begin || m2.length != m->length ||
        m2.port != m->port || m2.ext_id != m->ext_id || m2.data_len != m->data_len ||
        (m->data_len && memcmp(m2.data, m->data, m->data_len) != 0))
        abort();
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    uint32_t max_len = pick_max_len(sel);
    data++;
    size--;

    struct wire_handshake hs;
    enum wire_parse_result r = wire_parse_handshake(data, size, &hs);
    if (r == WIRE_OK) {
        data += WIRE_HANDSHAKE_LEN;
        size -= WIRE_HANDSHAKE_LEN;
    } else if (r != WIRE_ERROR && r != WIRE_NEED_MORE) {
        abort();
    }
    /* Parse messages regardless of the handshake result, so the fuzzer need not find the handshake first. */
    /* Copy to an exact-size heap buffer so ASan catches any read past the end. */
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    size_t off = 0;
    for (;;) {
        struct wire_msg m;
        size_t consumed = 12345;
        r = wire_parse_msg(p + off, size - off, max_len, &m, &consumed);
        if (r != WIRE_OK) {
            if ((r != WIRE_ERROR && r != WIRE_NEED_MORE) || consumed != 0)
                abort();
            break;
        }
        if (consumed < 4 || consumed > size - off || consumed - 4 > max_len)
            abort();
        if (m.data && (m.data < p + off || m.data_len > consumed || m.data + m.data_len > p + off + consumed))
            abort();
        reencode(&m, max_len);
        if (m.type == WM_BITFIELD) {
            struct bitfield bf;
            uint32_t nbits = (uint32_t)(m.data_len * 8) - (m.data_len ? (sel >> 5) : 0);   /* 0..7 spare bits */
            if (bitfield_init(&bf, nbits) == 0) {
                if (bitfield_load(&bf, m.data, m.data_len) == 0) {
                    uint32_t c = 0;
                    for (uint32_t i = 0; i < bf.nbits; i++)
                        c += bitfield_get(&bf, i);
                    if (c != bf.count)
                        abort();
                }
                bitfield_free(&bf);
            }
        }
        off += consumed;
    }
    free(p);
    return 0;
}
