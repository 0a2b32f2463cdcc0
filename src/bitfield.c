/* bitfield.c — fixed-size bit set in BitTorrent order, with a maintained population count.
 * Invariant: spare bits past nbits in the last byte are always zero, so loads can be compared byte-wise and the
 * buffer can be sent as a BITFIELD payload as is. Out-of-range indices in set/clear are ignored (bitfield_get, an
 * inline in the header, does not check: callers validate indices coming from the wire). */
#include "bitfield.h"

#include <stdlib.h>
#include <string.h>

static uint32_t popcount_bytes(const uint8_t *p, size_t n)
{
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (uint32_t)__builtin_popcount(p[i]);
    return c;
}

/* Mask of the valid bits in the last byte (0xFF when nbits is a multiple of 8). */
static uint8_t last_byte_mask(uint32_t nbits)
{
    unsigned r = nbits & 7;
    return r ? (uint8_t)(0xFFu << (8 - r)) : 0xFF;
}

int bitfield_init(struct bitfield *b, uint32_t nbits)
{
    size_t n = bitfield_bytes(nbits);
    /* Always allocate at least one byte so bits is never NULL, even for an empty set. */
    b->bits = calloc(n ? n : 1, 1);
    if (!b->bits) {
        b->nbits = b->count = 0;
        return -1;
    }
    b->nbits = nbits;
    b->count = 0;
    return 0;
}

void bitfield_free(struct bitfield *b)
{
    free(b->bits);
    b->bits = NULL;
    b->nbits = b->count = 0;
}

void bitfield_set(struct bitfield *b, uint32_t i)
{
    if (i >= b->nbits)
        return;
    uint8_t m = (uint8_t)(0x80u >> (i & 7));
    if (!(b->bits[i >> 3] & m)) {
        b->bits[i >> 3] |= m;
        b->count++;
    }
}

void bitfield_clear(struct bitfield *b, uint32_t i)
{
    if (i >= b->nbits)
        return;
    uint8_t m = (uint8_t)(0x80u >> (i & 7));
    if (b->bits[i >> 3] & m) {
        b->bits[i >> 3] &= (uint8_t)~m;
        b->count--;
    }
}

void bitfield_set_all(struct bitfield *b)
{
    size_t n = bitfield_bytes(b->nbits);
    if (n == 0)
        return;
    memset(b->bits, 0xFF, n);
    b->bits[n - 1] &= last_byte_mask(b->nbits);
    b->count = b->nbits;
}

void bitfield_clear_all(struct bitfield *b)
{
    memset(b->bits, 0, bitfield_bytes(b->nbits));
    b->count = 0;
}

int bitfield_load(struct bitfield *b, const uint8_t *p, size_t len)
{
    size_t n = bitfield_bytes(b->nbits);
    if (len != n)
        return -1;
    if (n == 0) {
        b->count = 0;
        return 0;
    }
    if (p[n - 1] & (uint8_t)~last_byte_mask(b->nbits))
        return -1;              /* spare bits set: BEP 3 says drop the connection */
    memcpy(b->bits, p, n);
    b->count = popcount_bytes(b->bits, n);
    return 0;
}
