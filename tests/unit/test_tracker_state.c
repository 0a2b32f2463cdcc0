/* test_tracker_state.c — the tracker's sans-I/O core: query parsing, the swarm table, limits, expiry, encodings,
 * whitelist, scrape, status JSON and the BEP 15 UDP packet handler. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bencode.h"
#include "check.h"
#include "tracker_state.h"
#include "tracker_udp.h"

static const uint8_t IH[20] = "AAAAAAAAAAAAAAAAAAA";   /* 19 chars + NUL = 20 bytes */
static uint8_t IH2[20];

static void pct(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 3 * i, "%%%02X", b[i]);
}

/* an announce query for IH with peer id "-TS0001-" + 12 digits of n */
static char *q_announce(const uint8_t *ih, unsigned n, unsigned port, uint64_t left, const char *extra)
{
    static char q[4096];
    char ihs[64], pid[21];
    pct(ihs, ih, 20);
    snprintf(pid, sizeof pid, "-TS0001-%012u", n);
    snprintf(q, sizeof q, "info_hash=%s&peer_id=%s&port=%u&uploaded=0&downloaded=0&left=%llu%s%s", ihs, pid, port,
             (unsigned long long)left, extra ? "&" : "", extra ? extra : "");
    return q;
}

static struct tracker_state *mk(uint32_t per, uint32_t total)
{
    struct ts_config c = {.interval_s = 60, .min_interval_s = 5, .max_peers_per_torrent = per,
                          .max_peers_total = total, .rng_seed = 42};
    struct ds_err e;
    struct tracker_state *st = ts_new(&c, &e);
    ts_add_torrent(st, IH, "sda1", 1000000, 10, &e);
    return st;
}

static struct ts_addr v4(const char *ip)
{
    struct ts_addr a;
    ts_parse_addr(ip, &a);
    return a;
}

/* announce through the HTTP path; returns the decoded response (caller frees doc and buf) */
static int http_ann(struct tracker_state *st, const char *q, const char *src, uint64_t now, struct buf *b,
                    struct bdoc *doc)
{
    struct ts_addr a = v4(src);
    buf_clear(b);
    int status = ts_http_announce(st, q, strlen(q), &a, false, now, b);
    struct ds_err e;
    if (bdecode(b->data, b->len, doc, &e))
        return -1;
    return status;
}

static int64_t dint(const struct bdoc *d, const char *k)
{
    const struct bnode *n = bdict_get_int(d->root, k);
    return n ? n->u.i : -999;
}

TEST(parse_good)
{
    struct ts_announce a;
    struct ds_err e;
    const char *q = q_announce(IH, 7, 6881, 12345, "event=started&numwant=20&compact=1&ds_name=pc%2D7&ds_rate=99");
    CHECK_EQ_INT(ts_parse_announce(q, strlen(q), &a, &e), 0);
    CHECK(!memcmp(a.info_hash, IH, 20));
    CHECK(!memcmp(a.peer_id, "-TS0001-000000000007", 20));
    CHECK_EQ_INT(a.port, 6881);
    CHECK_EQ_INT(a.left, 12345);
    CHECK_EQ_INT(a.event, TS_EV_STARTED);
    CHECK_EQ_INT(a.numwant, 20);
    CHECK(a.compact);
    CHECK_STR(a.name, "pc-7");
    CHECK(a.has_rate && a.rate == 99);
    /* raw bytes (not escaped) are fine when they are legal query characters */
    const char *q2 = "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=3"
                     "&numwant=100000&key=zz&unknown=%41";
    CHECK_EQ_INT(ts_parse_announce(q2, strlen(q2), &a, &e), 0);
    CHECK_EQ_INT(a.numwant, TS_MAX_NUMWANT);
    CHECK_EQ_INT(a.downloaded, 2);
    /* %00 inside a binary info-hash survives */
    uint8_t z[20] = {0};
    z[19] = 0xff;
    const char *q3 = q_announce(z, 1, 2, 0, NULL);
    CHECK_EQ_INT(ts_parse_announce(q3, strlen(q3), &a, &e), 0);
    CHECK(!memcmp(a.info_hash, z, 20));
}

TEST(parse_bad)
{
    struct ts_announce a;
    struct ds_err e;
    static const char *bad[] = {
        "",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2",   /* no left */
        "peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0",                          /* no ih */
        "info_hash=abcdefghijklmnopqrs&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0", /* 19 */
        "info_hash=abcdefghijklmnopqrstu&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRS&port=1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrs%ZZ&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrs%4&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=65536&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=0&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=-1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=99999999999999999999&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=9223372036854775808&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1x&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0&event=bogus",
        "info_hash=abcdefghijklmnopqrst&info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0&compact=2",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJ MNOPQRST&port=1&uploaded=1&downloaded=2&left=0",
        "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=1&uploaded=1&downloaded=2&left=0&ds_pieces=zz",
        "\xff\xfe\x01garbage",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = ts_parse_announce(bad[i], strlen(bad[i]), &a, &e);
        if (r != -1)
            fprintf(stderr, "  accepted bad query %zu\n", i);
        CHECK_EQ_INT(r, -1);
    }
    /* port 0 is fine for stopped */
    const char *s = "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=0&uploaded=1&downloaded=2&left=0"
                    "&event=stopped";
    CHECK_EQ_INT(ts_parse_announce(s, strlen(s), &a, &e), 0);
    /* oversized: refused with a failure reason and HTTP 400 */
    size_t big = TS_MAX_QUERY + 10;
    char *q = malloc(big + 1);
    memset(q, 'a', big);
    q[big] = 0;
    CHECK_EQ_INT(ts_parse_announce(q, big, &a, &e), -1);
    struct tracker_state *st = mk(10, 10);
    struct buf b = {0};
    struct ts_addr src = v4("10.0.0.1");
    CHECK_EQ_INT(ts_http_announce(st, q, big, &src, false, 0, &b), 400);
    CHECK(b.len > 0 && memmem(b.data, b.len, "failure reason", 14));
    /* garbage through the HTTP path: a failure reason, never a crash */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_clear(&b);
        CHECK_EQ_INT(ts_http_announce(st, bad[i], strlen(bad[i]), &src, false, 0, &b), 200);
        CHECK(memmem(b.data, b.len, "failure reason", 14) != NULL);
    }
    CHECK_EQ_INT(ts_num_peers(st), 0);
    buf_free(&b);
    free(q);
    ts_free(st);
}

TEST(pct_decode)
{
    uint8_t out[8];
    CHECK_EQ_INT(ts_pct_decode("a%20b", 5, out, sizeof out), 3);
    CHECK(!memcmp(out, "a b", 3));
    CHECK_EQ_INT(ts_pct_decode("%", 1, out, sizeof out), -1);
    CHECK_EQ_INT(ts_pct_decode("%a", 2, out, sizeof out), -1);
    CHECK_EQ_INT(ts_pct_decode("%g0", 3, out, sizeof out), -1);
    CHECK_EQ_INT(ts_pct_decode("123456789", 9, out, sizeof out), -1);   /* overflow */
    CHECK_EQ_INT(ts_pct_decode("%00%ff", 6, out, sizeof out), 2);
    CHECK(out[0] == 0 && out[1] == 0xff);
}

TEST(table_add_update_stop)
{
    struct tracker_state *st = mk(100, 1000);
    struct buf b = {0};
    struct bdoc d;
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 1, 1001, 1000000, "event=started"), "10.0.0.1", 1000, &b, &d), 200);
    CHECK_EQ_INT(dint(&d, "incomplete"), 1);
    CHECK_EQ_INT(dint(&d, "complete"), 0);
    CHECK_EQ_INT(dint(&d, "interval"), 60);
    CHECK_EQ_INT(dint(&d, "min interval"), 5);
    const struct bnode *p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 0);          /* alone: nobody else */
    bdoc_free(&d);
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 2, 1002, 0, "event=started"), "10.0.0.2", 1100, &b, &d), 200);
    CHECK_EQ_INT(dint(&d, "complete"), 1);
    CHECK_EQ_INT(dint(&d, "incomplete"), 1);
    p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 6);
    if (p && p->u.s.len == 6) {
        CHECK(!memcmp(p->u.s.p, "\x0a\x00\x00\x01\x03\xe9", 6));   /* 10.0.0.1:1001 */
    }
    bdoc_free(&d);
    /* update: same peer id, progress; the seed (2) gets no seeds, the leecher gets the seed */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 1, 1001, 500000, NULL), "10.0.0.1", 6000, &b, &d), 200);
    CHECK_EQ_INT(ts_num_peers(st), 2);
    p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 6);
    bdoc_free(&d);
    /* completed */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 1, 1001, 0, "event=completed"), "10.0.0.1", 7000, &b, &d), 200);
    CHECK_EQ_INT(dint(&d, "complete"), 2);
    CHECK_EQ_INT(dint(&d, "downloaded"), 1);
    p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 0);          /* seeds don't get seeds */
    bdoc_free(&d);
    /* stopped removes */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 2, 1002, 0, "event=stopped"), "10.0.0.2", 8000, &b, &d), 200);
    CHECK_EQ_INT(ts_num_peers(st), 1);
    CHECK_EQ_INT(dint(&d, "complete"), 1);
    bdoc_free(&d);
    /* a stopped peer is not handed out */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 3, 1003, 5, NULL), "10.0.0.3", 8100, &b, &d), 200);
    p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 6 && !memcmp(p->u.s.p, "\x0a\x00\x00\x01", 4));
    bdoc_free(&d);
    buf_free(&b);
    ts_free(st);
}

TEST(expiry_and_limits)
{
    struct tracker_state *st = mk(5, 7);
    struct ds_err e;
    ts_add_torrent(st, IH2, NULL, 0, 0, &e);
    struct buf b = {0};
    struct bdoc d;
    for (unsigned i = 0; i < 8; i++) {
        CHECK_EQ_INT(http_ann(st, q_announce(IH, i, 2000 + i, 10, NULL), "10.0.1.1", 1000 + i, &b, &d), 200);
        if (i >= 5)
            CHECK(bdict_get_str(d.root, "warning message") != NULL);
        bdoc_free(&d);
    }
    CHECK_EQ_INT(ts_num_peers(st), 5);    /* per-torrent cap */
    for (unsigned i = 0; i < 4; i++) {
        CHECK_EQ_INT(http_ann(st, q_announce(IH2, 100 + i, 3000 + i, 10, NULL), "10.0.2.1", 1000, &b, &d), 200);
        bdoc_free(&d);
    }
    CHECK_EQ_INT(ts_num_peers(st), 7);    /* total cap */
    /* expiry: expire_s = 2*60+60 = 180 s; refresh one peer late, then expire the rest */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 0, 2000, 10, NULL), "10.0.1.1", 150000, &b, &d), 200);
    bdoc_free(&d);
    CHECK_EQ_INT(ts_expire(st, 100000), 0);
    CHECK_EQ_INT(ts_expire(st, 182000), 6);
    CHECK_EQ_INT(ts_num_peers(st), 1);
    /* the table still works after the index was rebuilt */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 0, 2000, 10, NULL), "10.0.1.1", 183000, &b, &d), 200);
    bdoc_free(&d);
    CHECK_EQ_INT(ts_num_peers(st), 1);
    /* room again after expiry */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 50, 2050, 10, NULL), "10.0.1.9", 183000, &b, &d), 200);
    CHECK(bdict_get_str(d.root, "warning message") == NULL);
    bdoc_free(&d);
    CHECK_EQ_INT(ts_num_peers(st), 2);
    buf_free(&b);
    ts_free(st);
}

TEST(many_peers_numwant)
{
    struct tracker_state *st = mk(20000, 20000);
    struct buf b = {0};
    struct bdoc d;
    char ip[32];
    for (unsigned i = 0; i < 3000; i++) {
        snprintf(ip, sizeof ip, "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
        struct ts_addr a = v4(ip);
        const char *q = q_announce(IH, i, 1 + i, 100, NULL);
        buf_clear(&b);
        ts_http_announce(st, q, strlen(q), &a, false, 1000, &b);
    }
    CHECK_EQ_INT(ts_num_peers(st), 3000);
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 5, 6, 100, "numwant=30"), "10.0.0.5", 2000, &b, &d), 200);
    const struct bnode *p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 30 * 6);
    CHECK_EQ_INT(dint(&d, "incomplete"), 3000);
    bdoc_free(&d);
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 5, 6, 100, NULL), "10.0.0.5", 2000, &b, &d), 200);
    p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == TS_DEFAULT_NUMWANT * 6);
    bdoc_free(&d);
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 5, 6, 100, "numwant=0"), "10.0.0.5", 2000, &b, &d), 200);
    p = bdict_get_str(d.root, "peers");
    CHECK(p && p->u.s.len == 0);
    bdoc_free(&d);
    /* stop half of them: the index stays consistent */
    for (unsigned i = 0; i < 3000; i += 2) {
        const char *q = q_announce(IH, i, 1 + i, 100, "event=stopped");
        struct ts_addr a = v4("10.0.0.1");
        buf_clear(&b);
        ts_http_announce(st, q, strlen(q), &a, false, 3000, &b);
    }
    CHECK_EQ_INT(ts_num_peers(st), 1500);
    for (unsigned i = 1; i < 3000; i += 2) {
        const char *q = q_announce(IH, i, 1 + i, 50, NULL);
        struct ts_addr a = v4("10.0.0.1");
        buf_clear(&b);
        ts_http_announce(st, q, strlen(q), &a, false, 4000, &b);
    }
    CHECK_EQ_INT(ts_num_peers(st), 1500);
    buf_free(&b);
    ts_free(st);
}

TEST(encodings)
{
    struct tracker_state *st = mk(100, 100);
    struct buf b = {0};
    struct bdoc d;
    struct ts_addr a6;
    ts_parse_addr("2001:db8::7", &a6);
    const char *q = q_announce(IH, 1, 4000, 0, NULL);
    ts_http_announce(st, q, strlen(q), &a6, false, 1000, &b);
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 2, 4001, 0, NULL), "10.9.9.9", 1000, &b, &d), 200);
    bdoc_free(&d);
    /* compact: v4 in peers, v6 in peers6 */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 3, 4002, 10, NULL), "10.0.0.3", 1000, &b, &d), 200);
    const struct bnode *p4 = bdict_get_str(d.root, "peers"), *p6 = bdict_get_str(d.root, "peers6");
    CHECK(p4 && p4->u.s.len == 6);
    CHECK(p6 && p6->u.s.len == 18);
    if (p6 && p6->u.s.len == 18) {
        CHECK(!memcmp(p6->u.s.p, a6.ip, 16));
        CHECK(p6->u.s.p[16] == 4000 >> 8 && p6->u.s.p[17] == (4000 & 255));
    }
    bdoc_free(&d);
    /* dictionary model */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 3, 4002, 10, "compact=0"), "10.0.0.3", 1000, &b, &d), 200);
    const struct bnode *pl = bdict_get_list(d.root, "peers");
    CHECK(pl && pl->u.l.n == 2);
    if (pl && pl->u.l.n == 2) {
        for (size_t i = 0; i < 2; i++) {
            const struct bnode *e = pl->u.l.items[i];
            const struct bnode *ip = bdict_get_str(e, "ip"), *pid = bdict_get_str(e, "peer id"),
                               *port = bdict_get_int(e, "port");
            CHECK(ip && pid && port && pid->u.s.len == 20);
            if (ip && port && ip->u.s.len == 8)
                CHECK(!memcmp(ip->u.s.p, "10.9.9.9", 8) && port->u.i == 4001);
            else if (ip && port)
                CHECK(ip->u.s.len == 11 && !memcmp(ip->u.s.p, "2001:db8::7", 11) && port->u.i == 4000);
        }
    }
    bdoc_free(&d);
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 3, 4002, 10, "compact=0&no_peer_id=1"), "10.0.0.3", 1000, &b, &d), 200);
    pl = bdict_get_list(d.root, "peers");
    CHECK(pl && pl->u.l.n == 2 && !bdict_get(pl->u.l.items[0], "peer id"));
    bdoc_free(&d);
    /* failure encoding */
    buf_clear(&b);
    ts_encode_failure("nope", &b);
    CHECK(b.len == 25 && !memcmp(b.data, "d14:failure reason4:nopee", 25));
    buf_free(&b);
    ts_free(st);
}

TEST(ip_param)
{
    struct tracker_state *st = mk(100, 100);
    struct buf b = {0};
    struct bdoc d;
    struct ts_addr lo = v4("127.0.0.1"), other = v4("10.0.0.8");
    const char *q = q_announce(IH, 1, 7000, 0, "ip=192.0.2.5");
    ts_http_announce(st, q, strlen(q), &lo, true, 1000, &b);       /* trusted: taken */
    q = q_announce(IH, 2, 7001, 0, "ip=192.0.2.6");
    buf_clear(&b);
    ts_http_announce(st, q, strlen(q), &other, false, 1000, &b);   /* untrusted: ignored */
    CHECK_EQ_INT(http_ann(st, q_announce(IH, 3, 7002, 5, "compact=0"), "10.0.0.3", 1000, &b, &d), 200);
    const struct bnode *pl = bdict_get_list(d.root, "peers");
    int seen5 = 0, seen8 = 0;
    for (size_t i = 0; pl && i < pl->u.l.n; i++) {
        const struct bnode *ip = bdict_get_str(pl->u.l.items[i], "ip");
        if (bstr_eq(ip, "192.0.2.5")) seen5++;
        if (bstr_eq(ip, "10.0.0.8")) seen8++;
        CHECK(!bstr_eq(ip, "192.0.2.6"));
    }
    CHECK(seen5 == 1 && seen8 == 1);
    bdoc_free(&d);
    buf_free(&b);
    ts_free(st);
}

TEST(whitelist_and_open)
{
    struct tracker_state *st = mk(100, 100);
    struct buf b = {0};
    struct bdoc d;
    uint8_t other[20];
    memset(other, 0x42, 20);
    CHECK_EQ_INT(http_ann(st, q_announce(other, 1, 1, 10, NULL), "10.0.0.1", 1, &b, &d), 200);
    const struct bnode *f = bdict_get_str(d.root, "failure reason");
    CHECK(f != NULL);
    bdoc_free(&d);
    CHECK_EQ_INT(ts_num_peers(st), 0);
    CHECK_EQ_INT(ts_num_torrents(st), 1);
    ts_free(st);
    /* open mode: created on demand, bounded */
    struct ts_config c = {.open = true, .max_torrents = 2};
    struct ds_err e;
    st = ts_new(&c, &e);
    for (int i = 0; i < 3; i++) {
        memset(other, 0x10 + i, 20);
        CHECK_EQ_INT(http_ann(st, q_announce(other, 1, 1, 10, NULL), "10.0.0.1", 1, &b, &d), 200);
        CHECK((bdict_get_str(d.root, "failure reason") != NULL) == (i == 2));
        bdoc_free(&d);
    }
    CHECK_EQ_INT(ts_num_torrents(st), 2);
    ts_free(st);
    /* whitelist file */
    char path[] = "/tmp/ts_wl_XXXXXX";
    int fd = mkstemp(path);
    FILE *fp = fdopen(fd, "w");
    fprintf(fp, "# comment\n\n%s\n  4141414141414141414141414141414141414141  # IH-ish\n",
            "00112233445566778899aabbccddeeff00112233");
    fclose(fp);
    struct ts_config c2 = {0};
    st = ts_new(&c2, &e);
    CHECK_EQ_INT(ts_load_whitelist(st, path, &e), 0);
    CHECK_EQ_INT(ts_num_torrents(st), 2);
    fp = fopen(path, "w");
    fprintf(fp, "00112233445566778899aabbccddeeff0011223\n");
    fclose(fp);
    CHECK_EQ_INT(ts_load_whitelist(st, path, &e), -1);
    unlink(path);
    buf_free(&b);
    ts_free(st);
}

TEST(scrape)
{
    struct tracker_state *st = mk(100, 100);
    struct ds_err e;
    uint8_t ih2[20];
    memset(ih2, 0x01, 20);   /* sorts before IH */
    ts_add_torrent(st, ih2, NULL, 0, 0, &e);
    struct buf b = {0};
    struct bdoc d;
    http_ann(st, q_announce(IH, 1, 1, 0, NULL), "10.0.0.1", 1, &b, &d);
    bdoc_free(&d);
    http_ann(st, q_announce(IH, 2, 2, 10, NULL), "10.0.0.2", 1, &b, &d);
    bdoc_free(&d);
    char q[256], h1[64], h2[64];
    pct(h1, IH, 20);
    pct(h2, ih2, 20);
    snprintf(q, sizeof q, "info_hash=%s&info_hash=%s", h1, h2);
    buf_clear(&b);
    CHECK_EQ_INT(ts_http_scrape(st, q, strlen(q), &b), 200);
    CHECK_EQ_INT(bdecode(b.data, b.len, &d, &e), 0);   /* keys ascending, or bdecode refuses */
    const struct bnode *files = bdict_get_dict(d.root, "files");
    CHECK(files && files->u.d.n == 2);
    if (files && files->u.d.n == 2) {
        const struct bnode *t = files->u.d.items[1].val;
        CHECK(!memcmp(files->u.d.items[1].key, IH, 20));
        CHECK(bdict_get_int(t, "complete")->u.i == 1 && bdict_get_int(t, "incomplete")->u.i == 1);
    }
    bdoc_free(&d);
    /* all torrents */
    buf_clear(&b);
    CHECK_EQ_INT(ts_http_scrape(st, "", 0, &b), 200);
    CHECK_EQ_INT(bdecode(b.data, b.len, &d, &e), 0);
    files = bdict_get_dict(d.root, "files");
    CHECK(files && files->u.d.n == 2);
    bdoc_free(&d);
    /* bad: a short hash */
    buf_clear(&b);
    ts_http_scrape(st, "info_hash=abc", 13, &b);
    CHECK(memmem(b.data, b.len, "failure reason", 14) != NULL);
    buf_free(&b);
    ts_free(st);
}

TEST(status_json)
{
    struct tracker_state *st = mk(100, 100);
    struct buf b = {0};
    struct bdoc d;
    http_ann(st, q_announce(IH, 1, 1, 0, "ds_name=seed%20box"), "10.0.0.1", 1000, &b, &d);
    bdoc_free(&d);
    http_ann(st, q_announce(IH, 2, 2, 1000000, "event=started&ds_name=pc%22quoted"), "10.0.0.2", 1000, &b, &d);
    bdoc_free(&d);
    /* 10 pieces, pieces 0-4 held: bitfield f8 00 */
    http_ann(st, q_announce(IH, 2, 2, 500000, "ds_npieces=10&ds_pieces=f800"), "10.0.0.2", 11000, &b, &d);
    bdoc_free(&d);
    buf_clear(&b);
    CHECK_EQ_INT(ts_status_json(st, 12000, &b), 0);
    buf_put_u8(&b, 0);
    const char *j = (const char *)b.data;
    CHECK(strstr(j, "\"torrents\":[{\"info_hash\":\"") != NULL);
    CHECK(strstr(j, "\"name\":\"sda1\"") != NULL);
    CHECK(strstr(j, "\"name\":\"seed box\"") != NULL);
    CHECK(strstr(j, "\"name\":\"pc\\\"quoted\"") != NULL);
    CHECK(strstr(j, "\"state\":\"seeding\"") != NULL);
    CHECK(strstr(j, "\"state\":\"downloading\"") != NULL);
    CHECK(strstr(j, "\"progress\":0.5000") != NULL);
    CHECK(strstr(j, "\"rate\":50000") != NULL);        /* 500000 bytes in 10 s */
    CHECK(strstr(j, "\"eta\":10") != NULL);
    CHECK(strstr(j, "\"availability_source\":\"pieces\"") != NULL);
    CHECK(strstr(j, "\"availability\":[2.00,2.00,2.00,2.00,2.00,1.00,1.00,1.00,1.00,1.00]") != NULL);
    CHECK(strstr(j, "\"totals\":{\"torrents\":1,\"machines\":2,\"complete\":1") != NULL);
    /* stopped peers stay visible as "stopped" rows */
    http_ann(st, q_announce(IH, 2, 2, 0, "event=stopped"), "10.0.0.2", 13000, &b, &d);
    bdoc_free(&d);
    buf_clear(&b);
    ts_status_json(st, 14000, &b);
    buf_put_u8(&b, 0);
    CHECK(strstr((const char *)b.data, "\"gone\":[{") != NULL);
    CHECK(strstr((const char *)b.data, "\"state\":\"stopped\"") != NULL);
    buf_free(&b);
    ts_free(st);
}

/* ---- UDP ---- */

static void be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static void be64(uint8_t *p, uint64_t v) { be32(p, (uint32_t)(v >> 32)); be32(p + 4, (uint32_t)v); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }

static size_t udp_announce(uint8_t *pkt, uint64_t cid, uint32_t tid, const uint8_t *ih, unsigned n, uint64_t left,
                           uint32_t ev, uint16_t port)
{
    memset(pkt, 0, 98);
    be64(pkt, cid);
    be32(pkt + 8, 1);
    be32(pkt + 12, tid);
    memcpy(pkt + 16, ih, 20);
    snprintf((char *)pkt + 36, 21, "-UD0001-%012u", n);
    be64(pkt + 64, left);
    be32(pkt + 80, ev);
    be32(pkt + 92, 0xffffffffu);
    pkt[96] = (uint8_t)(port >> 8);
    pkt[97] = (uint8_t)port;
    return 98;
}

TEST(udp)
{
    struct tracker_state *st = mk(100, 100);
    struct tu_core c;
    uint8_t secret[32];
    memset(secret, 7, 32);
    tu_init(&c, secret);
    struct ts_addr from = v4("10.1.2.3");
    from.port = 5555;
    uint8_t pkt[256], out[TU_MAX_REPLY];
    uint64_t now = 10 * 60000 + 500;

    /* connect */
    be64(pkt, TU_PROTOCOL_ID);
    be32(pkt + 8, 0);
    be32(pkt + 12, 0xdeadbeef);
    CHECK_EQ_INT(tu_handle(&c, st, &from, pkt, 16, now, out, sizeof out), 16);
    CHECK_EQ_INT(rd32(out), 0);
    CHECK_EQ_INT(rd32(out + 4), 0xdeadbeef);
    uint64_t cid = rd64(out + 8);
    CHECK(cid == tu_conn_id(&c, &from, now, 0));
    /* wrong protocol id: silence */
    be64(pkt, 12345);
    CHECK_EQ_INT(tu_handle(&c, st, &from, pkt, 16, now, out, sizeof out), 0);
    /* short packets: silence */
    CHECK_EQ_INT(tu_handle(&c, st, &from, pkt, 15, now, out, sizeof out), 0);
    CHECK_EQ_INT(tu_handle(&c, st, &from, pkt, 0, now, out, sizeof out), 0);

    /* announce with the right id (a seed), then a leecher gets it */
    size_t n = udp_announce(pkt, cid, 77, IH, 1, 0, 2, 6881);
    size_t r = tu_handle(&c, st, &from, pkt, n, now, out, sizeof out);
    CHECK_EQ_INT(r, 20);
    CHECK_EQ_INT(rd32(out), 1);
    CHECK_EQ_INT(rd32(out + 4), 77);
    CHECK_EQ_INT(rd32(out + 8), 60);
    CHECK_EQ_INT(rd32(out + 16), 1);   /* seeders */
    struct ts_addr from2 = v4("10.1.2.4");
    from2.port = 5556;
    uint64_t cid2 = tu_conn_id(&c, &from2, now, 0);
    n = udp_announce(pkt, cid2, 78, IH, 2, 100, 2, 6882);
    r = tu_handle(&c, st, &from2, pkt, n, now + 61000, out, sizeof out);   /* still valid a minute later */
    CHECK_EQ_INT(r, 26);
    CHECK(!memcmp(out + 20, "\x0a\x01\x02\x03\x1a\xe1", 6));
    CHECK_EQ_INT(rd32(out + 12), 1);   /* leechers */

    /* wrong connection id: error; another client's id: error; too old: error */
    n = udp_announce(pkt, cid ^ 1, 79, IH, 3, 100, 0, 6883);
    r = tu_handle(&c, st, &from, pkt, n, now, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3 && rd32(out + 4) == 79);
    n = udp_announce(pkt, cid, 80, IH, 3, 100, 0, 6883);
    CHECK_EQ_INT(rd32(out), 3);
    r = tu_handle(&c, st, &from2, pkt, n, now, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3);
    r = tu_handle(&c, st, &from, pkt, n, now + 3 * 60000, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3);
    CHECK_EQ_INT(ts_num_peers(st), 2);

    /* truncated announce */
    r = tu_handle(&c, st, &from, pkt, 97, now, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3);
    /* not whitelisted */
    uint8_t other[20];
    memset(other, 0x33, 20);
    n = udp_announce(pkt, cid, 81, other, 4, 100, 2, 6884);
    r = tu_handle(&c, st, &from, pkt, n, now, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3);
    /* bad event */
    n = udp_announce(pkt, cid, 82, IH, 4, 100, 9, 6884);
    r = tu_handle(&c, st, &from, pkt, n, now, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3);

    /* scrape */
    be64(pkt, cid);
    be32(pkt + 8, 2);
    be32(pkt + 12, 90);
    memcpy(pkt + 16, IH, 20);
    memcpy(pkt + 36, other, 20);
    r = tu_handle(&c, st, &from, pkt, 56, now, out, sizeof out);
    CHECK_EQ_INT(r, 32);
    CHECK_EQ_INT(rd32(out), 2);
    CHECK_EQ_INT(rd32(out + 8), 1);    /* seeders */
    CHECK_EQ_INT(rd32(out + 16), 1);   /* leechers */
    CHECK_EQ_INT(rd32(out + 20), 0);   /* unknown hash: zeros */
    r = tu_handle(&c, st, &from, pkt, 50, now, out, sizeof out);   /* ragged */
    CHECK(r > 8 && rd32(out) == 3);

    /* stopped over UDP removes */
    n = udp_announce(pkt, cid, 83, IH, 1, 0, 3, 6881);
    r = tu_handle(&c, st, &from, pkt, n, now, out, sizeof out);
    CHECK_EQ_INT(rd32(out), 1);
    CHECK_EQ_INT(ts_num_peers(st), 1);
    /* unknown action */
    be32(pkt + 8, 9);
    r = tu_handle(&c, st, &from, pkt, 16, now, out, sizeof out);
    CHECK(r > 8 && rd32(out) == 3);
    ts_free(st);
}

TEST(udp_ipv6)
{
    struct tracker_state *st = mk(100, 100);
    struct tu_core c;
    uint8_t secret[32] = {1};
    tu_init(&c, secret);
    struct ts_addr a, b6;
    ts_parse_addr("2001:db8::1", &a);
    a.port = 1;
    ts_parse_addr("2001:db8::2", &b6);
    b6.port = 2;
    uint8_t pkt[128], out[TU_MAX_REPLY];
    size_t n = udp_announce(pkt, tu_conn_id(&c, &a, 0, 0), 1, IH, 1, 0, 2, 7000);
    tu_handle(&c, st, &a, pkt, n, 0, out, sizeof out);
    n = udp_announce(pkt, tu_conn_id(&c, &b6, 0, 0), 2, IH, 2, 9, 2, 7001);
    size_t r = tu_handle(&c, st, &b6, pkt, n, 0, out, sizeof out);
    CHECK_EQ_INT(r, 20 + 18);
    CHECK(!memcmp(out + 20, a.ip, 16));
    ts_free(st);
}

int main(void)
{
    memset(IH2, 0xee, 20);
    RUN(parse_good);
    RUN(parse_bad);
    RUN(pct_decode);
    RUN(table_add_update_stop);
    RUN(expiry_and_limits);
    RUN(many_peers_numwant);
    RUN(encodings);
    RUN(ip_param);
    RUN(whitelist_and_open);
    RUN(scrape);
    RUN(status_json);
    RUN(udp);
    RUN(udp_ipv6);
    return check_summary();
}
