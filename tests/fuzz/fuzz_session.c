/* fuzz_session.c — libFuzzer target for the swarm engine (session.c) with real storage: a struct session for a
 * small torrent (three extents with gaps, one out of device order, 9 pieces of 128 bytes, the last one short)
 * over a temp file, driven by up to two fuzz-controlled peers. Built by tests/fuzz/run.sh.
 *
 * Input: mode byte, then chunks [ctl][len][len bytes]:
 *   mode bit 0     we are a seeder (have_all, read-only store holding the true data) / a fetcher (writable
 *                  store holding garbage inside the extents)
 *        bit 1     prefix each new connection's input with a valid handshake (right info-hash, a fresh peer id)
 *        bit 2, 3  that handshake offers the fast / extension protocol
 *        bit 4     the connection is outgoing (we dialled it)
 *        bit 5, 6  block size 16 / 32 / 64 / 128 bytes (requests of that size; pieces are 128 bytes)
 *        bit 7     peers have IPv4 (allowed-fast sets) / IPv6 addresses
 *   ctl  bit 0     call session_tick after the chunk        bit 1  the chunk goes to peer B (else peer A)
 *        bits 2..7 the clock advances by that many × 600 ms first
 * Each peer's chunk is appended to its input and processed (session_peer_input), its output is topped up
 * (session_peer_fill) and drained as if sent. A closed peer is freed; its next chunk opens a new connection.
 *
 * Invariants checked after every chunk: no byte of the file outside the torrent's extents changes (in seeder
 * mode no byte at all changes); every piece the session claims to have holds exactly the torrent's data; no
 * storage error; memory bounded (input ≤ one message + one chunk, queued requests capped); the byte count
 * agrees with the have-bitfield. Leaks are caught by libFuzzer's leak check after session_free. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "extent_map.h"
#include "metainfo.h"
#include "session.h"
#include "sha1.h"
#include "store.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEV_SIZE 4096u
#define PIECE_LEN 128u
static const struct extent EXTS[] = {
    {.dev_off = 2048, .len = 300},
    {.dev_off = 256, .len = 500},
    {.dev_off = 3500, .len = 333},
};
#define N_EXTS 3
#define TOTAL 1133u
#define MAX_CONNS 12

static struct metainfo *g_mi;
static struct extent_map g_map;
static uint8_t g_data[TOTAL];          /* the torrent's true bytes */
static uint8_t g_inside[DEV_SIZE];     /* 1 where the byte belongs to an extent */
static uint8_t g_seed_img[DEV_SIZE];   /* seeder's file: pattern outside, true data inside */
static uint8_t g_fetch_img[DEV_SIZE];  /* fetcher's file: pattern outside, garbage inside */
static char g_path[2][64];
static struct store g_store[2];        /* [0] fetcher (writable), [1] seeder (read-only) */
static int g_fd[2];

static uint8_t outside_byte(size_t i) { return (uint8_t)(i * 37u + 0xA5u); }

static void die(const char *what, const struct ds_err *e)
{
    fprintf(stderr, "fuzz_session setup: %s: %s\n", what, e ? e->msg : "");
    abort();
}

static void setup(void)
{
    for (size_t t = 0; t < TOTAL; t++) {
        uint32_t piece = (uint32_t)(t / PIECE_LEN);
        /* every third piece is all zeros, so the fuzzer can produce a piece that verifies */
        g_data[t] = piece % 3 == 0 ? 0 : (uint8_t)(t * 131u + 17u);
    }
    uint32_t np = (TOTAL + PIECE_LEN - 1) / PIECE_LEN;
    uint8_t hashes[16 * SHA1_LEN];
    for (uint32_t p = 0; p < np; p++) {
        uint32_t b = p * PIECE_LEN;
        sha1(g_data + b, TOTAL - b < PIECE_LEN ? TOTAL - b : PIECE_LEN, hashes + p * SHA1_LEN);
    }
    struct buf tor = {0};
    struct ds_err e;
    if (metainfo_build_ezio("fz0", EXTS, N_EXTS, PIECE_LEN, hashes, NULL, 0, "fuzz", false, &tor, &e))
        die("build", &e);
    if (metainfo_parse(tor.data, tor.len, &g_mi, &e))
        die("parse", &e);
    buf_free(&tor);
    if (extent_map_from_metainfo(g_mi, &g_map, &e))
        die("map", &e);
    if (g_mi->total_length != TOTAL || g_mi->num_pieces != np)
        die("fixture mismatch", NULL);
    for (size_t i = 0; i < DEV_SIZE; i++)
        g_seed_img[i] = g_fetch_img[i] = outside_byte(i);
    uint64_t t = 0;
    for (size_t i = 0; i < N_EXTS; i++) {
        memset(g_inside + EXTS[i].dev_off, 1, EXTS[i].len);
        memcpy(g_seed_img + EXTS[i].dev_off, g_data + t, EXTS[i].len);
        memset(g_fetch_img + EXTS[i].dev_off, 0xCC, EXTS[i].len);
        t += EXTS[i].len;
    }
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int k = 0; k < 2; k++) {
        snprintf(g_path[k], sizeof g_path[k], "%s/fuzz_session.%d.%d", dir, (int)getpid(), k);
        FILE *f = fopen(g_path[k], "w");
        if (!f || fwrite(k ? g_seed_img : g_fetch_img, 1, DEV_SIZE, f) != DEV_SIZE || fclose(f))
            die("temp file", NULL);
        if (store_open(&g_store[k], g_path[k], k ? STORE_READ : STORE_WRITE, g_mi, &g_map, &e))
            die("store_open", &e);
        g_fd[k] = open(g_path[k], O_RDWR | O_CLOEXEC); /* ours, to reset and inspect the file */
        if (g_fd[k] < 0)
            die("open", NULL);
        unlink(g_path[k]); /* the open stores keep it alive; nothing left behind */
    }
}

static void reset_file(int k)
{
    if (pwrite(g_fd[k], k ? g_seed_img : g_fetch_img, DEV_SIZE, 0) != DEV_SIZE)
        abort();
}

struct conn {
    struct sess_peer *p;
    int n;              /* connections opened so far */
};

static void make_addr(struct peer_addr *a, int n, bool v6)
{
    memset(a, 0, sizeof *a);
    if (!v6) {
        struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;
        s->sin_family = AF_INET;
        s->sin_addr.s_addr = htonl(0x0a000001u + (uint32_t)n);
        s->sin_port = htons((uint16_t)(6881 + n));
        a->len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;
        s->sin6_family = AF_INET6;
        s->sin6_addr.s6_addr[0] = 0xfd;
        s->sin6_addr.s6_addr[15] = (uint8_t)n;
        s->sin6_port = htons((uint16_t)(6881 + n));
        a->len = sizeof *s;
    }
}

static void check(const struct session *s, bool seeder)
{
    if (s->fatal) {
        fprintf(stderr, "storage error: %s\n", s->fatal_err.msg);
        abort();
    }
    static uint8_t now_img[DEV_SIZE];
    int k = seeder ? 1 : 0;
    if (pread(g_fd[k], now_img, DEV_SIZE, 0) != DEV_SIZE)
        abort();
    const uint8_t *ref = seeder ? g_seed_img : g_fetch_img;
    for (size_t i = 0; i < DEV_SIZE; i++)
        if ((seeder || !g_inside[i]) && now_img[i] != ref[i]) {
            fprintf(stderr, "byte %zu outside the extents changed: %02x -> %02x\n", i, ref[i], now_img[i]);
            abort();
        }
    /* every piece we have holds the true data */
    uint64_t bytes = 0;
    for (uint32_t pc = 0; pc < g_mi->num_pieces; pc++) {
        if (!bitfield_get(&s->have, pc))
            continue;
        uint64_t b = (uint64_t)pc * PIECE_LEN, e = b + metainfo_piece_size(g_mi, pc);
        bytes += e - b;
        uint64_t t = 0;
        for (size_t x = 0; x < N_EXTS; x++) {
            for (uint64_t o = 0; o < EXTS[x].len; o++)
                if (t + o >= b && t + o < e && now_img[EXTS[x].dev_off + o] != g_data[t + o]) {
                    fprintf(stderr, "piece %u announced but torrent byte %llu is wrong on the store\n", pc,
                            (unsigned long long)(t + o));
                    abort();
                }
            t += EXTS[x].len;
        }
    }
    if (bytes != s->bytes_have)
        abort();
    for (uint32_t i = 0; i < s->n_slots; i++) {
        const struct sess_peer *p = s->peers[i];
        if (!p)
            continue;
        if (p->n_theirs > SESSION_MAX_PEER_REQS || p->n_ours > 4096)
            abort();
        if (buf_unread(&p->in) > 2 * 65536 + 300)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_mi)
        setup();
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    bool seeder = mode & 1, prefix = mode & 2, fast = mode & 4, ext = mode & 8, outgoing = mode & 16;
    bool v6 = mode & 128;
    uint32_t bs = 16u << ((mode >> 5) & 3);
    int k = seeder ? 1 : 0;
    reset_file(k);

    struct session s;
    struct session_config cfg = {0};
    cfg.mi = g_mi;
    cfg.store = &g_store[k];
    memcpy(cfg.peer_id, "-DS0100-fuzzfuzzfuzz", 20);
    cfg.listen_port = 6881;
    cfg.have_all = seeder;
    cfg.max_peers = 4;
    cfg.pipeline = 8;
    cfg.block_size = bs;
    cfg.out_watermark = 1024;
    cfg.seed = 42;
    cfg.zpiece = true; /* ds_zpiece offered: peers whose extension handshake names it reach that code */
    cfg.zlevel = 1;
    cfg.zcache_bytes = 4096;
    struct ds_err e;
    if (session_init(&s, &cfg, &e))
        abort();
    uint64_t now = 1000000;
    struct conn c[2] = {{0}};
    int total_conns = 0;

    while (size >= 2) {
        uint8_t ctl = data[0];
        size_t len = data[1];
        data += 2;
        size -= 2;
        if (len > size)
            len = size;
        struct conn *cn = &c[(ctl >> 1) & 1];
        now += (uint64_t)(ctl >> 2) * 600;
        if (!cn->p) {
            if (total_conns >= MAX_CONNS)
                break;
            struct peer_addr a;
            make_addr(&a, total_conns, v6);
            cn->p = session_peer_new(&s, &a, outgoing, -1, now);
            total_conns++;
            cn->n++;
            if (!cn->p)
                abort(); /* at most two at a time, max_peers is 4 */
            if (prefix) {
                struct wire_handshake hs;
                memset(&hs, 0, sizeof hs);
                if (fast)
                    hs.reserved[WIRE_RSV_FAST_BYTE] |= WIRE_RSV_FAST_MASK;
                if (ext)
                    hs.reserved[WIRE_RSV_EXTENDED_BYTE] |= WIRE_RSV_EXTENDED_MASK;
                memcpy(hs.info_hash, g_mi->info_hash, 20);
                memcpy(hs.peer_id, "-XX0001-hostilepeer0", 20);
                hs.peer_id[19] = (uint8_t)('a' + total_conns);
                if (wire_put_handshake(&cn->p->in, &hs))
                    abort();
            }
        }
        struct sess_peer *p = cn->p;
        if (len && buf_put(&p->in, data, len))
            abort();
        data += len;
        size -= len;
        /* the event loop reserves p->in before every recv, so the session never sees a never-allocated input
         * buffer; doing so here would only trip UBSan on buf_head()'s NULL + 0 (see the report) */
        if (buf_unread(&p->in))
            session_peer_input(&s, p, now);
        for (int i = 0; i < 2; i++) {
            if (c[i].p && !c[i].p->closing)
                session_peer_fill(&s, c[i].p, now);
            if (c[i].p)
                buf_clear(&c[i].p->out); /* "sent" */
        }
        if (ctl & 1)
            session_tick(&s, now);
        for (int i = 0; i < 2; i++) {
            if (c[i].p && c[i].p->closing) {
                if (!c[i].p->reason[0])
                    abort(); /* every close says why */
                session_peer_free(&s, c[i].p);
                c[i].p = NULL;
            } else if (c[i].p) {
                buf_clear(&c[i].p->out);
            }
        }
        check(&s, seeder);
    }
    session_free(&s);
    return 0;
}
