/* bitfield.h — a fixed-size bit set in BitTorrent order (bit 0 = high bit of byte 0). */
#ifndef DS_BITFIELD_H
#define DS_BITFIELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bitfield {
    uint8_t *bits;
    uint32_t nbits;
    uint32_t count;     /* number of set bits, maintained */
};

int bitfield_init(struct bitfield *b, uint32_t nbits);          /* all clear; -1 on OOM */
void bitfield_free(struct bitfield *b);
static inline size_t bitfield_bytes(uint32_t nbits) { return ((size_t)nbits + 7) / 8; }
static inline bool bitfield_get(const struct bitfield *b, uint32_t i)
{
    return (b->bits[i >> 3] >> (7 - (i & 7))) & 1;
}
void bitfield_set(struct bitfield *b, uint32_t i);
void bitfield_clear(struct bitfield *b, uint32_t i);
void bitfield_set_all(struct bitfield *b);
void bitfield_clear_all(struct bitfield *b);
static inline bool bitfield_full(const struct bitfield *b) { return b->count == b->nbits; }
/* Load from wire bytes. Returns -1 if len != bitfield_bytes(nbits) or any spare trailing bit is set. */
int bitfield_load(struct bitfield *b, const uint8_t *p, size_t len);

#endif
