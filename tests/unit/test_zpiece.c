/* test_zpiece.c — compressed pieces on the wire (zpiece.c and its use in session.c): the message codec, the
 * bounded decompressor against hostile frames (wrong declared size, a zstd bomb, truncation, trailing bytes, no
 * content size, skippable frames, garbage), the LRU cache, and sessions: a compressing seeder and fetcher (fewer
 * bytes on the wire, byte-exact result), a plain fetcher from a compressing seeder, incompressible pieces going
 * plain, frames forwarded from the cache without recompressing, and a hostile peer answering a compressed
 * request with bad frames (dropped with a reason, nothing written) or with frames nobody asked for. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "check.h"

#include "buf.h"
#include "err.h"
#include "extent_map.h"
#include "metainfo.h"
#include "session.h"
#include "sha1.h"
#include "store.h"
#include "wire.h"
#include "zpiece.h"

#define MAX_ROUNDS 100000

static uint64_t rng_state = 0x5EED1234ABCDULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---------- codec ---------- */

/* the payload of the one extended message in b (after length, id 20 and ext id) */
static const uint8_t *ext_payload(const struct buf *b, uint8_t *ext_id, size_t *n)
{
    struct wire_msg m;
    size_t used;
    if (wire_parse_msg(b->data, b->len, 1u << 24, &m, &used) != WIRE_OK || m.type != WM_EXTENDED || used != b->len)
        return NULL;
    *ext_id = m.ext_id;
    *n = m.data_len;
    return m.data;
}

TEST(codec_roundtrip)
{
    static const enum zp_type simple[] = {ZP_REQ, ZP_PLAIN, ZP_REJECT, ZP_CANCEL};
    for (size_t i = 0; i < 4; i++) {
        struct buf b = {0};
        CHECK(zp_put_simple(&b, 7, simple[i], 0xA1B2C3D4u) == 0);
        uint8_t id;
        size_t n;
        const uint8_t *d = ext_payload(&b, &id, &n);
        CHECK(d != NULL);
        struct zp_msg m;
        CHECK(d && zp_parse(d, n, &m) == 0);
        CHECK_EQ_INT(id, 7);
        CHECK_EQ_INT(m.type, simple[i]);
        CHECK_EQ_INT(m.piece, 0xA1B2C3D4u);
        buf_free(&b);
    }
    struct buf b = {0};
    const uint8_t frame[] = {1, 2, 3, 4, 5};
    CHECK(zp_put_data(&b, 3, 42, 1 << 20, frame, sizeof frame) == 0);
    uint8_t id;
    size_t n;
    const uint8_t *d = ext_payload(&b, &id, &n);
    struct zp_msg m;
    CHECK(d && zp_parse(d, n, &m) == 0);
    CHECK_EQ_INT(m.type, ZP_DATA);
    CHECK_EQ_INT(m.piece, 42);
    CHECK_EQ_INT(m.raw_len, 1 << 20);
    CHECK_EQ_INT(m.frame_len, 5);
    CHECK(m.frame && !memcmp(m.frame, frame, 5));
    buf_free(&b);
}

TEST(codec_malformed)
{
    struct zp_msg m;
    const uint8_t req6[] = {ZP_REQ, 0, 0, 0, 1, 9};
    const uint8_t short4[] = {ZP_REQ, 0, 0, 0};
    const uint8_t unknown[] = {5, 0, 0, 0, 1};
    const uint8_t data_empty[] = {ZP_DATA, 0, 0, 0, 1, 0, 0, 1, 0};
    CHECK(zp_parse(req6, sizeof req6, &m) < 0);
    CHECK(zp_parse(short4, sizeof short4, &m) < 0);
    CHECK(zp_parse(unknown, sizeof unknown, &m) < 0);
    CHECK(zp_parse(data_empty, sizeof data_empty, &m) < 0);
    CHECK(zp_parse(NULL, 0, &m) < 0);
    CHECK(zp_worth(90, 100));
    CHECK(!zp_worth(91, 100));
    CHECK(!zp_worth(0, 100));
    CHECK(!zp_worth(100, 100));
}

/* ---------- bounded decompression ---------- */

static size_t compress_to(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, int level)
{
    size_t r = ZSTD_compress(dst, cap, src, n, level);
    return ZSTD_isError(r) ? 0 : r;
}

TEST(decompress_good_and_hostile)
{
    const size_t PL = 65536;
    uint8_t *raw = malloc(PL), *out = malloc(PL + 16), *fr = malloc(ZSTD_compressBound(8u << 20));
    CHECK(raw && out && fr);
    if (!raw || !out || !fr)
        goto done;
    for (size_t i = 0; i < PL; i++)
        raw[i] = (uint8_t)((i / 100) % 7 == 0 ? rnd() : 'a' + i % 13);
    size_t fl = compress_to(fr, ZSTD_compressBound(8u << 20), raw, PL, 3);
    CHECK(fl > 0 && fl < PL);
    const char *why = NULL;
    ZSTD_DCtx *d = ZSTD_createDCtx();
    CHECK(zp_decompress(d, fr, fl, out, PL, &why) == 0);
    CHECK(!memcmp(out, raw, PL));
    CHECK(zp_decompress(NULL, fr, fl, out, PL, &why) == 0); /* temporary context */
    /* the declared size is not the piece's */
    CHECK(zp_decompress(d, fr, fl, out, PL - 1, &why) < 0 && why);
    CHECK(zp_decompress(d, fr, fl, out, PL / 2, &why) < 0);
    /* truncated, trailing bytes, garbage, empty */
    CHECK(zp_decompress(d, fr, fl - 1, out, PL, &why) < 0 && why);
    CHECK(zp_decompress(d, fr, fl / 2, out, PL, &why) < 0);
    CHECK(zp_decompress(d, fr, 3, out, PL, &why) < 0);
    memcpy(fr + fl, "junk", 4);
    CHECK(zp_decompress(d, fr, fl + 4, out, PL, &why) < 0 && why);
    uint8_t garbage[64];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)rnd();
    CHECK(zp_decompress(d, garbage, sizeof garbage, out, PL, &why) < 0);
    CHECK(zp_decompress(d, fr, 0, out, PL, &why) < 0);
    /* a bit flipped inside the compressed payload: an error, or at worst the wrong bytes (the hash catches it);
     * never more than PL bytes written */
    uint8_t keep = fr[fl / 2];
    fr[fl / 2] ^= 0x5A;
    out[PL] = 0xEE;
    (void)zp_decompress(d, fr, fl, out, PL, &why);
    CHECK_EQ_INT(out[PL], 0xEE);
    fr[fl / 2] = keep;
    /* a zstd bomb: 8 MiB of zeros in a few hundred bytes, offered as a 64 KiB piece */
    uint8_t *zeros = calloc(1, 8u << 20);
    CHECK(zeros != NULL);
    if (zeros) {
        size_t bl = compress_to(fr, ZSTD_compressBound(8u << 20), zeros, 8u << 20, 19);
        CHECK(bl > 0 && bl < 4096);
        CHECK(zp_decompress(d, fr, bl, out, PL, &why) < 0 && why);
        CHECK_EQ_INT(out[PL], 0xEE);
        free(zeros);
    }
    /* a frame without a content size (streaming) is refused */
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    ZSTD_outBuffer ob = {fr, ZSTD_compressBound(PL), 0};
    ZSTD_inBuffer ib = {raw, PL, 0};
    size_t rem = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end);
    CHECK(rem == 0);
    CHECK(ZSTD_getFrameContentSize(fr, ob.pos) == ZSTD_CONTENTSIZE_UNKNOWN);
    CHECK(zp_decompress(d, fr, ob.pos, out, PL, &why) < 0 && why);
    ZSTD_freeCCtx(c);
    /* a skippable frame (declares 0 bytes) */
    uint8_t skip[16] = {0x50, 0x2A, 0x4D, 0x18, 8, 0, 0, 0};
    CHECK(zp_decompress(d, skip, sizeof skip, out, PL, &why) < 0);
    /* two frames back to back: only one frame per piece */
    size_t half = compress_to(fr, ZSTD_compressBound(8u << 20), raw, PL / 2, 1);
    size_t half2 = compress_to(fr + half, ZSTD_compressBound(8u << 20), raw + PL / 2, PL / 2, 1);
    CHECK(half && half2);
    CHECK(zp_decompress(d, fr, half + half2, out, PL, &why) < 0);
    ZSTD_freeDCtx(d);
done:
    free(raw);
    free(out);
    free(fr);
}

/* ---------- cache ---------- */

TEST(cache_lru_bounded)
{
    struct zcache c;
    CHECK(zcache_init(&c, 10, 300) == 0);
    uint8_t a[100], b[100], x[100], big[301];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    memset(x, 'x', sizeof x);
    memset(big, 'B', sizeof big);
    size_t n = 0;
    CHECK(zcache_put(&c, 1, a, 100) == 0);
    CHECK(zcache_put(&c, 2, b, 100) == 0);
    CHECK(zcache_put(&c, 3, x, 100) == 0);
    CHECK_EQ_INT(c.bytes, 300);
    CHECK(zcache_get(&c, 1, &n) != NULL); /* 1 is now the most recent: 2 goes first */
    CHECK(zcache_put(&c, 4, a, 50) == 0);
    CHECK(zcache_get(&c, 2, &n) == NULL);
    CHECK(zcache_get(&c, 1, &n) != NULL && n == 100);
    CHECK(c.bytes <= 300);
    CHECK(zcache_put(&c, 5, big, sizeof big) == 0); /* larger than the cache: not kept, nothing evicted */
    CHECK(zcache_get(&c, 5, &n) == NULL);
    CHECK(zcache_get(&c, 3, &n) != NULL);
    CHECK(zcache_put(&c, 3, b, 10) == 0); /* replaced */
    const uint8_t *g = zcache_get(&c, 3, &n);
    CHECK(g && n == 10 && g[0] == 'b');
    zcache_drop(&c, 3);
    CHECK(zcache_get(&c, 3, &n) == NULL);
    CHECK(zcache_put(&c, 99, a, 10) == 0); /* beyond the torrent: ignored */
    CHECK(zcache_get(&c, 99, &n) == NULL);
    CHECK_EQ_INT(c.bytes, 150);
    zcache_free(&c);
    CHECK(zcache_init(&c, 10, 0) == 0); /* no cache at all */
    CHECK(zcache_put(&c, 1, a, 10) == 0);
    CHECK(zcache_get(&c, 1, &n) == NULL);
    zcache_free(&c);
}

/* ---------- sessions ---------- */

/* 12 pieces of 64 KiB in two extents with a gap; pieces 0..9 compress (text with zero runs), 10 is random
 * (incompressible), 11 is short and compressible. */
static const struct extent EXTS[] = {
    {.dev_off = 4096, .len = 400000},
    {.dev_off = 500000, .len = 350000},
};
#define N_EXTS 2
#define PIECE_LEN 65536u
#define TOTAL 750000u
#define NPIECES 12u
#define DEV_END 850000u
#define RANDOM_PIECE 10u

static struct metainfo *g_mi;
static struct extent_map g_map;
static uint8_t *g_data;

static int fixture_init(void)
{
    g_data = malloc(TOTAL);
    if (!g_data)
        return -1;
    static const char words[] = "the quick brown fox jumps over the lazy dog; int main(void) { return 0; }\n";
    for (size_t i = 0; i < TOTAL; i++) {
        uint32_t p = (uint32_t)(i / PIECE_LEN);
        if (p == RANDOM_PIECE)
            g_data[i] = (uint8_t)(rnd() >> 24);
        else if ((i / 4096) % 3 == 0)
            g_data[i] = 0;
        else
            g_data[i] = (uint8_t)(words[(i * 7 + p) % (sizeof words - 1)] ^ ((rnd() & 31) == 0));
    }
    uint8_t hashes[NPIECES * SHA1_LEN];
    for (uint32_t p = 0; p < NPIECES; p++) {
        uint64_t b = (uint64_t)p * PIECE_LEN;
        sha1(g_data + b, TOTAL - b < PIECE_LEN ? TOTAL - b : PIECE_LEN, hashes + p * SHA1_LEN);
    }
    struct buf tor = {0};
    struct ds_err e;
    int rc = metainfo_build_ezio("sdz", EXTS, N_EXTS, PIECE_LEN, hashes, NULL, 0, "test_zpiece", false, &tor, &e);
    if (rc == 0)
        rc = metainfo_parse(tor.data, tor.len, &g_mi, &e);
    buf_free(&tor);
    if (rc == 0)
        rc = extent_map_from_metainfo(g_mi, &g_map, &e);
    if (rc == 0 && (g_mi->num_pieces != NPIECES || g_mi->total_length != TOTAL))
        rc = -1;
    return rc;
}

struct node {
    struct session s;
    struct store st;
    char path[64];
    bool up;
};

struct zopts {
    bool zpiece;
    int level;
    size_t cache;
};

static int node_open(struct node *n, int id, bool seeder, struct zopts z)
{
    memset(n, 0, sizeof *n);
    strcpy(n->path, "/tmp/ds-test-zp-XXXXXX");
    int fd = mkstemp(n->path);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (seeder) {
        rc = ftruncate(fd, DEV_END);
        uint64_t tor = 0;
        for (size_t i = 0; i < N_EXTS && rc == 0; i++) {
            if (pwrite(fd, g_data + tor, EXTS[i].len, (off_t)EXTS[i].dev_off) != (ssize_t)EXTS[i].len)
                rc = -1;
            tor += EXTS[i].len;
        }
    }
    close(fd);
    struct ds_err e;
    if (rc == 0)
        rc = store_open(&n->st, n->path, seeder ? STORE_READ : STORE_WRITE, g_mi, &g_map, &e);
    struct session_config cfg = {.mi = g_mi, .store = &n->st, .have_all = seeder, .zpiece = z.zpiece,
                                 .zlevel = z.level, .zcache_bytes = z.cache};
    memcpy(cfg.peer_id, "-DS0100-zpiece-test", 19);
    cfg.peer_id[19] = (uint8_t)('a' + id);
    if (rc == 0)
        rc = session_init(&n->s, &cfg, &e);
    n->up = rc == 0;
    return rc;
}

static void node_free(struct node *n)
{
    if (n->up)
        session_free(&n->s);
    store_close(&n->st);
    if (n->path[0])
        unlink(n->path);
    memset(n, 0, sizeof *n);
}

static bool node_data_ok(const struct node *n)
{
    int fd = open(n->path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t *b = malloc(TOTAL);
    bool ok = b != NULL;
    uint64_t tor = 0;
    for (size_t i = 0; i < N_EXTS && ok; i++) {
        ok = pread(fd, b, EXTS[i].len, (off_t)EXTS[i].dev_off) == (ssize_t)EXTS[i].len &&
             !memcmp(b, g_data + tor, EXTS[i].len);
        tor += EXTS[i].len;
    }
    free(b);
    close(fd);
    return ok;
}

/* every byte of the node's file is zero (nothing written) */
static bool node_all_zero(const struct node *n)
{
    int fd = open(n->path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t b[8192];
    bool ok = true;
    ssize_t r;
    off_t off = 0;
    while (ok && (r = pread(fd, b, sizeof b, off)) > 0) {
        for (ssize_t i = 0; i < r && ok; i++)
            ok = b[i] == 0;
        off += r;
    }
    close(fd);
    return ok;
}

static struct peer_addr fake_addr(int n)
{
    struct peer_addr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)(6881 + n));
    sin->sin_addr.s_addr = htonl(0xC6120000u | (uint32_t)n);
    a.len = sizeof *sin;
    return a;
}

struct link {
    struct node *a, *b;
    struct sess_peer *pa, *pb;
    uint64_t bytes_ab, bytes_ba;   /* everything that crossed, protocol included */
};

static int link_open(struct link *l, struct node *a, int a_no, struct node *b, int b_no, uint64_t now)
{
    memset(l, 0, sizeof *l);
    struct peer_addr ab = fake_addr(b_no), aa = fake_addr(a_no);
    l->a = a;
    l->b = b;
    l->pa = session_peer_new(&a->s, &ab, true, -1, now);
    l->pb = session_peer_new(&b->s, &aa, false, -1, now);
    return l->pa && l->pb ? 0 : -1;
}

static size_t move(struct session *ss, struct sess_peer *sp, struct session *ds, struct sess_peer *dp, uint64_t now)
{
    session_peer_fill(ss, sp, now);
    size_t n = buf_unread(&sp->out), c = 1 + (size_t)(rnd() % 50000);
    if (n > c)
        n = c;
    if (n) {
        if (buf_put(&dp->in, buf_head(&sp->out), n))
            return 0;
        buf_consume(&sp->out, n);
    }
    session_peer_input(ds, dp, now);
    return n;
}

static long run(struct link *ls, size_t nl, struct node **fetchers, size_t nf, uint64_t *now)
{
    for (long round = 0; round < MAX_ROUNDS; round++) {
        (*now)++;
        size_t moved = 0;
        for (size_t i = 0; i < nl; i++) {
            struct link *l = &ls[i];
            if (l->pa->closing || l->pb->closing)
                continue;
            size_t m = move(&l->a->s, l->pa, &l->b->s, l->pb, *now);
            l->bytes_ab += m;
            size_t m2 = move(&l->b->s, l->pb, &l->a->s, l->pa, *now);
            l->bytes_ba += m2;
            moved += m + m2;
        }
        if (round % 100 == 99)
            for (size_t i = 0; i < nl; i++) {
                session_tick(&ls[i].a->s, *now);
                session_tick(&ls[i].b->s, *now);
            }
        bool done = true;
        for (size_t i = 0; i < nf; i++)
            done = done && session_complete(&fetchers[i]->s);
        if (done && moved == 0)
            return round;
    }
    return -1;
}

TEST(compressed_seeder_to_fetcher)
{
    struct node S, F;
    CHECK(node_open(&S, 1, true, (struct zopts){true, 1, 1 << 20}) == 0);
    CHECK(node_open(&F, 2, false, (struct zopts){true, 1, 1 << 20}) == 0);
    uint64_t now = 1000;
    struct link l;
    CHECK(link_open(&l, &F, 2, &S, 1, now) == 0);
    struct node *fe[] = {&F};
    CHECK(run(&l, 1, fe, 1, &now) >= 0);
    CHECK(session_complete(&F.s));
    CHECK(node_data_ok(&F));
    CHECK(l.pa->ds_zpiece_id != 0 && l.pb->ds_zpiece_id != 0);
    CHECK(!l.pa->closing && !l.pb->closing);
    /* most pieces came compressed (the first requests may leave before the extension handshake arrives);
     * the random piece went plain, after a PLAIN answer or because it was requested plain */
    CHECK(F.s.z->st.pieces_down >= NPIECES / 2);
    CHECK(F.s.z->st.pieces_down <= NPIECES - 1);
    CHECK(bitfield_get(&S.s.z->incompressible, RANDOM_PIECE) || !bitfield_get(&F.s.z->incompressible, RANDOM_PIECE));
    CHECK_EQ_INT(F.s.payload_down, TOTAL);    /* payload counts raw bytes */
    CHECK(l.bytes_ba < TOTAL * 3 / 4);         /* the wire carried far less */
    CHECK_EQ_INT(F.s.hash_failures, 0);
    CHECK_EQ_INT(S.s.z->st.pieces_up, F.s.z->st.pieces_down);
    CHECK(S.s.z->st.compressed >= S.s.z->st.pieces_up); /* a plain source: compressed on the fly */
    char js[512];
    zpiece_json(F.s.z, F.s.payload_down, F.s.payload_up, js, sizeof js);
    CHECK(strstr(js, "\"wire_down\":") != NULL && strstr(js, "\"zpieces_down\":") != NULL);
    node_free(&S);
    node_free(&F);
}

TEST(plain_fetcher_from_compressing_seeder)
{
    struct node S, F;
    CHECK(node_open(&S, 1, true, (struct zopts){true, 1, 1 << 20}) == 0);
    CHECK(node_open(&F, 2, false, (struct zopts){false, 0, 0}) == 0);
    uint64_t now = 1000;
    struct link l;
    CHECK(link_open(&l, &F, 2, &S, 1, now) == 0);
    struct node *fe[] = {&F};
    CHECK(run(&l, 1, fe, 1, &now) >= 0);
    CHECK(node_data_ok(&F));
    CHECK(F.s.z == NULL);
    CHECK_EQ_INT(l.pb->ds_zpiece_id, 0);       /* the seeder saw no capability */
    CHECK_EQ_INT(S.s.z->st.pieces_up, 0);
    CHECK(l.bytes_ba >= TOTAL);
    node_free(&S);
    node_free(&F);
}

/* Without compression on the fly a plain source answers PLAIN for every piece; all still arrive. */
TEST(no_level_means_plain_answers)
{
    struct node S, F;
    CHECK(node_open(&S, 1, true, (struct zopts){true, 0, 0}) == 0);
    CHECK(node_open(&F, 2, false, (struct zopts){true, 1, 1 << 20}) == 0);
    uint64_t now = 1000;
    struct link l;
    CHECK(link_open(&l, &F, 2, &S, 1, now) == 0);
    struct node *fe[] = {&F};
    CHECK(run(&l, 1, fe, 1, &now) >= 0);
    CHECK(node_data_ok(&F));
    CHECK_EQ_INT(F.s.z->st.pieces_down, 0);
    CHECK(S.s.z->st.plain_answers > 0);
    node_free(&S);
    node_free(&F);
}

/* A chain S -> A -> B (B only knows A): A forwards the frames it received, from its cache. */
TEST(forward_from_cache)
{
    struct node S, A, B;
    CHECK(node_open(&S, 1, true, (struct zopts){true, 1, 1 << 20}) == 0);
    CHECK(node_open(&A, 2, false, (struct zopts){true, 0, 1 << 20}) == 0); /* A never compresses itself */
    CHECK(node_open(&B, 3, false, (struct zopts){true, 1, 1 << 20}) == 0);
    uint64_t now = 1000;
    struct link l[2];
    CHECK(link_open(&l[0], &A, 2, &S, 1, now) == 0);
    struct node *fa[] = {&A};
    CHECK(run(l, 1, fa, 1, &now) >= 0);
    CHECK(link_open(&l[1], &B, 3, &A, 2, now) == 0);
    struct node *fb[] = {&B};
    CHECK(run(l, 2, fb, 1, &now) >= 0);
    CHECK(node_data_ok(&A) && node_data_ok(&B));
    CHECK(A.s.z->st.from_cache > 0);
    CHECK_EQ_INT(A.s.z->st.compressed, 0);
    CHECK_EQ_INT(A.s.z->st.from_cache, A.s.z->st.pieces_up);
    CHECK_EQ_INT(B.s.hash_failures, 0);
    node_free(&S);
    node_free(&A);
    node_free(&B);
}

/* ---------- a hostile peer answering compressed requests ---------- */

struct raw {
    struct node *victim;
    struct sess_peer *vp;
    struct buf rx;
};

static void raw_send(struct raw *r, struct buf *b, uint64_t now)
{
    buf_put(&r->vp->in, b->data, b->len);
    buf_clear(b);
    session_peer_input(&r->victim->s, r->vp, now);
}

/* Collect what the victim sends; return the first ZP_REQ's piece (or -1). */
static long raw_take_zreq(struct raw *r, uint8_t *zid, uint64_t now)
{
    session_peer_fill(&r->victim->s, r->vp, now);
    buf_put(&r->rx, buf_head(&r->vp->out), buf_unread(&r->vp->out));
    buf_consume(&r->vp->out, buf_unread(&r->vp->out));
    long piece = -1;
    for (;;) {
        struct wire_msg m;
        size_t used;
        if (buf_unread(&r->rx) < 4)
            break;
        if (r->rx.off == 0 && r->rx.len >= WIRE_HANDSHAKE_LEN && r->rx.data[0] == 19) {
            buf_consume(&r->rx, WIRE_HANDSHAKE_LEN);
            continue;
        }
        if (wire_parse_msg(buf_head(&r->rx), buf_unread(&r->rx), 1u << 20, &m, &used) != WIRE_OK)
            break;
        struct zp_msg z;
        if (m.type == WM_EXTENDED && m.ext_id == *zid && zp_parse(m.data, m.data_len, &z) == 0 &&
            z.type == ZP_REQ && piece < 0)
            piece = z.piece;
        buf_consume(&r->rx, used);
    }
    return piece;
}

/* A raw peer that claims every piece and ds_zpiece (its id 9), unchoked; returns the piece it was asked for. */
static long raw_setup(struct raw *r, struct node *victim, uint64_t now)
{
    memset(r, 0, sizeof *r);
    r->victim = victim;
    struct peer_addr a = fake_addr(66);
    r->vp = session_peer_new(&victim->s, &a, false, -1, now);
    if (!r->vp)
        return -1;
    struct buf b = {0};
    struct wire_handshake hs;
    memset(&hs, 0, sizeof hs);
    hs.reserved[WIRE_RSV_EXTENDED_BYTE] |= WIRE_RSV_EXTENDED_MASK;
    hs.reserved[WIRE_RSV_FAST_BYTE] |= WIRE_RSV_FAST_MASK;
    memcpy(hs.info_hash, g_mi->info_hash, 20);
    memcpy(hs.peer_id, "-EV0001-evil-zpiece1", 20);
    wire_put_handshake(&b, &hs);
    static const char eh[] = "d1:md9:ds_zpiecei9eee";
    wire_put_extended(&b, 0, (const uint8_t *)eh, sizeof eh - 1);
    wire_put_simple(&b, WM_HAVE_ALL);
    wire_put_simple(&b, WM_UNCHOKE);
    raw_send(r, &b, now);
    buf_free(&b);
    uint8_t zid = 9; /* the victim sends to us with the id we advertised */
    return raw_take_zreq(r, &zid, now);
}

static void raw_free(struct raw *r)
{
    if (r->vp)
        session_peer_free(&r->victim->s, r->vp);
    buf_free(&r->rx);
}

static bool hostile_answer_closes(int kind)
{
    struct node F;
    bool ok = node_open(&F, 2, false, (struct zopts){true, 1, 1 << 20}) == 0;
    uint64_t now = 1000;
    struct raw r;
    long piece = ok ? raw_setup(&r, &F, now) : -1;
    ok = ok && piece >= 0 && !r.vp->closing;
    if (ok) {
        uint32_t ps = (uint32_t)metainfo_piece_size(g_mi, (uint32_t)piece);
        size_t cap = ZSTD_compressBound(4u << 20);
        uint8_t *fr = malloc(cap), *big = calloc(1, 4u << 20);
        size_t fl = 0;
        uint32_t declared = ps;
        switch (kind) {
        case 0: /* wrong raw length in the message */
            fl = compress_to(fr, cap, g_data + (uint64_t)piece * PIECE_LEN, ps, 1);
            declared = ps + 1;
            break;
        case 1: /* zstd bomb: 4 MiB of zeros declared as the piece */
            fl = compress_to(fr, cap, big, 4u << 20, 19);
            break;
        case 2: /* truncated frame */
            fl = compress_to(fr, cap, g_data + (uint64_t)piece * PIECE_LEN, ps, 1) - 5;
            break;
        case 3: /* a frame of the right size with the wrong content: decodes, fails the hash */
            fl = compress_to(fr, cap, big, ps, 1);
            break;
        }
        struct buf b = {0};
        zp_put_data(&b, 3, (uint32_t)piece, declared, fr, fl); /* 3: the id the victim advertised */
        raw_send(&r, &b, now);
        buf_free(&b);
        if (kind == 3) {
            /* the piece was written (it is ours to write) but failed its hash: a strike, no HAVE */
            ok = F.s.hash_failures == 1 && !bitfield_get(&F.s.have, (uint32_t)piece);
        } else {
            ok = r.vp->closing && strstr(r.vp->reason, "compressed") && node_all_zero(&F) && F.s.have.count == 0;
            if (!ok)
                fprintf(stderr, "  kind %d: closing %d reason '%s'\n", kind, r.vp->closing, r.vp->reason);
        }
        free(fr);
        free(big);
    }
    raw_free(&r);
    node_free(&F);
    return ok;
}

TEST(hostile_frames_drop_the_peer)
{
    CHECK(hostile_answer_closes(0));
    CHECK(hostile_answer_closes(1));
    CHECK(hostile_answer_closes(2));
    CHECK(hostile_answer_closes(3));
}

TEST(unrequested_frame_is_not_written)
{
    struct node F;
    CHECK(node_open(&F, 2, false, (struct zopts){true, 1, 1 << 20}) == 0);
    F.s.cfg.pipeline = 1; /* two pieces outstanding at most: most pieces stay unrequested */
    uint64_t now = 1000;
    struct raw r;
    long asked = raw_setup(&r, &F, now);
    CHECK(asked >= 0);
    uint32_t other = NPIECES;
    for (uint32_t i = 0; i < NPIECES - 1 && other == NPIECES; i++) { /* a full-size piece it did not ask for */
        bool asked_i = false;
        for (size_t k = 0; k < r.vp->n_ours; k++)
            asked_i = asked_i || r.vp->ours[k].piece == i;
        if (!asked_i)
            other = i;
    }
    CHECK(other < NPIECES);
    if (other >= NPIECES)
        other = 0;
    uint8_t fr[70000];
    size_t fl = compress_to(fr, sizeof fr, g_data + (uint64_t)other * PIECE_LEN, PIECE_LEN, 1);
    struct buf b = {0};
    zp_put_data(&b, 3, other, PIECE_LEN, fr, fl);
    /* and a malformed one: a message of an unknown type */
    raw_send(&r, &b, now);
    CHECK(!r.vp->closing);
    CHECK(node_all_zero(&F));
    const uint8_t bad[] = {9, 0, 0, 0, 1};
    wire_put_extended(&b, 3, bad, sizeof bad);
    raw_send(&r, &b, now);
    CHECK(r.vp->closing);
    buf_free(&b);
    raw_free(&r);
    node_free(&F);
}

int main(void)
{
    if (fixture_init()) {
        fprintf(stderr, "fixture failed\n");
        return 1;
    }
    RUN(codec_roundtrip);
    RUN(codec_malformed);
    RUN(decompress_good_and_hostile);
    RUN(cache_lru_bounded);
    RUN(compressed_seeder_to_fetcher);
    RUN(plain_fetcher_from_compressing_seeder);
    RUN(no_level_means_plain_answers);
    RUN(forward_from_cache);
    RUN(hostile_frames_drop_the_peer);
    RUN(unrequested_frame_is_not_written);
    extent_map_free(&g_map);
    metainfo_free(g_mi);
    free(g_data);
    return check_summary();
}
