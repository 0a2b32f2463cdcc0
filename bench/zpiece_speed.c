/* zpiece_speed.c — zstd speed per core on an image, piece by piece, as ds_zpiece uses it (bench/zstd_speed.sh).
 *
 *   zpiece_speed FILE PIECE_BYTES LEVEL [ROUNDS]
 *
 * Splits FILE into pieces, compresses each on its own at LEVEL (one frame with the content size, as capture
 * --compress and the sender do) and decompresses each into a buffer of exactly the piece size (as the receiver
 * does). One thread; prints one line: ratio, compression MB/s and decompression MB/s of raw bytes per core
 * (CPU time of this thread), and the link rate in Mbit/s that one core keeps up with when decompressing:
 * decompression MB/s × ratio × 8 (a link carries compressed bytes). Pieces that do not compress to 90 % go
 * plain (counted at ratio 1, no decompression), like the sender decides. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: zpiece_speed FILE PIECE_BYTES LEVEL [ROUNDS]\n");
        return 2;
    }
    size_t piece = strtoull(argv[2], NULL, 0);
    int level = atoi(argv[3]), rounds = argc > 4 ? atoi(argv[4]) : 3;
    FILE *f = fopen(argv[1], "rb");
    if (!f || piece == 0) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)sz);
    if (!data || fread(data, 1, (size_t)sz, f) != (size_t)sz) {
        fprintf(stderr, "read failed\n");
        return 1;
    }
    fclose(f);
    size_t n = ((size_t)sz + piece - 1) / piece, cap = ZSTD_compressBound(piece);
    uint8_t **fr = calloc(n, sizeof *fr);
    size_t *fl = calloc(n, sizeof *fl);
    uint8_t *out = malloc(piece);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!fr || !fl || !out || !c || !d)
        return 1;
    double t0 = cpu_s();
    uint64_t stored = 0, zraw = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)sz - i * piece < piece ? (size_t)sz - i * piece : piece;
        fr[i] = malloc(cap);
        size_t r = ZSTD_compressCCtx(c, fr[i], cap, data + i * piece, len, level);
        if (ZSTD_isError(r) || r * 10 > len * 9) {
            fl[i] = 0; /* plain */
            stored += len;
        } else {
            fl[i] = r;
            stored += r;
            zraw += len;
        }
    }
    double ct = cpu_s() - t0;
    double best = 1e30;
    for (int k = 0; k < rounds; k++) {
        double t1 = cpu_s();
        for (size_t i = 0; i < n; i++) {
            if (!fl[i])
                continue;
            size_t len = (size_t)sz - i * piece < piece ? (size_t)sz - i * piece : piece;
            size_t r = ZSTD_decompressDCtx(d, out, len, fr[i], fl[i]);
            if (ZSTD_isError(r) || r != len || memcmp(out, data + i * piece, len)) {
                fprintf(stderr, "piece %zu does not round-trip\n", i);
                return 1;
            }
        }
        double dt = cpu_s() - t1;
        if (dt < best)
            best = dt;
    }
    double ratio = (double)stored / (double)sz;
    double cmb = (double)sz / 1e6 / ct, dmb = best > 0 ? (double)zraw / 1e6 / best : 0;
    printf("piece %7zu  level %2d  ratio %.3f (%.2f:1)  compress %7.1f MB/s/core  decompress %7.1f MB/s/core"
           "  keeps up with %6.0f Mbit/s\n",
           piece, level, ratio, 1 / ratio, cmb, dmb, dmb * ratio * 8);
    return 0;
}
