/* Unit tests for the HTTP tracker client (URL building, response parsing, peer addresses) and the libcurl
 * worker, the latter against a tiny HTTP server running in a thread on 127.0.0.1. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "tracker_client.h"
#include "tracker_worker.h"

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------------------------- */

/* Byte-string literal with embedded NULs: pointer + length. */
#define B(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

static struct announce_req base_req(void)
{
    static const uint8_t ih[20] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45,
                                   0x67, 0x89, 0xab, 0xcd, 0xef, 0x12, 0x34, 0x56, 0x78, 0x9a};
    struct announce_req r = {0};
    r.announce_url = "http://tracker.lan:6969/announce";
    memcpy(r.info_hash, ih, 20);
    memcpy(r.peer_id, "-DS0001-ab.~_ Z/+%\xffQ", 20);
    r.port = 6881;
    r.uploaded = 1;
    r.downloaded = 2;
    r.left = 12345678901234ULL;
    r.event = AE_NONE;
    r.numwant = -1;
    return r;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse a copy of exactly len bytes so the sanitizers see any read past the end. */
static int parse_exact(const uint8_t *p, size_t len, struct announce_resp *r, struct ds_err *e)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, p, len);
    int rc = tracker_parse_response(copy, len, r, e);
    free(copy);
    return rc;
}

static unsigned port_of(const struct peer_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void fmt(const struct peer_addr *a, char out[64]) { peer_addr_format(a, out, 64); }

/* ---------------------------------------------------------------------------------------------------------------
 * Announce URL
 * ------------------------------------------------------------------------------------------------------------- */

TEST(url_known_vector)
{
    struct announce_req r = base_req();
    char *u = tracker_announce_url(&r);
    CHECK_STR(u, "http://tracker.lan:6969/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"
                 "&peer_id=-DS0001-ab.~_%20Z%2F%2B%25%FFQ"
                 "&port=6881&uploaded=1&downloaded=2&left=12345678901234&compact=1");
    free(u);
}

TEST(url_event_numwant_extra)
{
    struct announce_req r = base_req();
    memset(r.info_hash, 'a', 20);
    memset(r.peer_id, 0, 20);
    r.event = AE_STARTED;
    r.numwant = 50;
    r.extra = "key=abc";
    char *u = tracker_announce_url(&r);
    CHECK_STR(u, "http://tracker.lan:6969/announce?info_hash=aaaaaaaaaaaaaaaaaaaa"
                 "&peer_id=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00"
                 "&port=6881&uploaded=1&downloaded=2&left=12345678901234&compact=1&event=started&numwant=50&key=abc");
    free(u);

    r.event = AE_COMPLETED;
    r.numwant = 0;
    r.extra = NULL;
    u = tracker_announce_url(&r);
    CHECK(u && strstr(u, "&compact=1&event=completed&numwant=0") && u[strlen(u) - 1] == '0');
    free(u);

    r.event = AE_STOPPED;
    r.numwant = -1;
    u = tracker_announce_url(&r);
    CHECK(u && strstr(u, "&event=stopped") && !strstr(u, "numwant"));
    free(u);
}

TEST(url_existing_query)
{
    struct announce_req r = base_req();
    r.announce_url = "https://t.example/ann?passkey=xyz";
    char *u = tracker_announce_url(&r);
    CHECK(u && strncmp(u, "https://t.example/ann?passkey=xyz&info_hash=%124Vx", 50) == 0);
    free(u);

    r.announce_url = "http://t/ann?";   /* already ends with a separator: no empty parameter */
    u = tracker_announce_url(&r);
    CHECK(u && strncmp(u, "http://t/ann?info_hash=", 23) == 0);
    free(u);

    r.announce_url = "http://t/ann#frag";   /* fragment dropped, parameters still reach the server */
    u = tracker_announce_url(&r);
    CHECK(u && strncmp(u, "http://t/ann?info_hash=", 23) == 0 && !strchr(u, '#'));
    free(u);

    r.announce_url = NULL;
    CHECK(tracker_announce_url(&r) == NULL);
    CHECK(tracker_announce_url(NULL) == NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Response parsing
 * ------------------------------------------------------------------------------------------------------------- */

static const char compact_body[] =
    "d8:completei5e10:incompletei3e8:intervali1800e12:min intervali60e"
    "5:peers18:\x0a\x00\x00\x01\x1a\xe1\xc0\xa8\x01\x02\x00\x50\x0a\x00\x00\x03\x00\x00"
    "15:warning message4:caree";

TEST(parse_compact)
{
    struct announce_resp r;
    struct ds_err e = {{0}};
    CHECK_EQ_INT(parse_exact(B(compact_body), &r, &e), 0);
    CHECK(r.failure == NULL);
    CHECK_STR(r.warning, "care");
    CHECK_EQ_INT(r.interval, 1800);
    CHECK_EQ_INT(r.min_interval, 60);
    CHECK_EQ_INT(r.complete, 5);
    CHECK_EQ_INT(r.incomplete, 3);
    CHECK_EQ_INT(r.num_peers, 2);   /* third entry has port 0 */
    if (r.num_peers == 2) {
        char s[64];
        fmt(&r.peers[0], s);
        CHECK_STR(s, "10.0.0.1:6881");
        fmt(&r.peers[1], s);
        CHECK_STR(s, "192.168.1.2:80");
        CHECK_EQ_INT(r.peers[0].len, sizeof(struct sockaddr_in));
    }
    announce_resp_free(&r);
}

TEST(parse_absent_fields)
{
    struct announce_resp r;
    struct ds_err e;
    CHECK_EQ_INT(parse_exact(B("d5:peers0:e"), &r, &e), 0);
    CHECK_EQ_INT(r.interval, 0);
    CHECK_EQ_INT(r.min_interval, 0);
    CHECK_EQ_INT(r.complete, -1);
    CHECK_EQ_INT(r.incomplete, -1);
    CHECK_EQ_INT(r.num_peers, 0);
    CHECK(r.warning == NULL && r.failure == NULL);
    announce_resp_free(&r);

    CHECK_EQ_INT(parse_exact(B("de"), &r, &e), 0);
    CHECK_EQ_INT(r.num_peers, 0);
    announce_resp_free(&r);
}

TEST(parse_dict_model)
{
    static const char body[] = "d8:intervali900e5:peersl"
                               "d2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881ee"
                               "d2:ip3:::14:porti1ee"
                               "d2:ip11:example.com4:porti80ee"   /* hostname: not resolved, skipped */
                               "d2:ip8:10.0.0.14:porti0ee"        /* port 0: skipped */
                               "d2:ip8:10.0.0.14:porti70000ee"    /* out of range: skipped */
                               "ee";
    struct announce_resp r;
    struct ds_err e = {{0}};
    CHECK_EQ_INT(parse_exact(B(body), &r, &e), 0);
    CHECK_EQ_INT(r.interval, 900);
    CHECK_EQ_INT(r.num_peers, 2);
    if (r.num_peers == 2) {
        char s[64];
        fmt(&r.peers[0], s);
        CHECK_STR(s, "127.0.0.1:6881");
        fmt(&r.peers[1], s);
        CHECK_STR(s, "[::1]:1");
        CHECK_EQ_INT(r.peers[1].len, sizeof(struct sockaddr_in6));
    }
    announce_resp_free(&r);
}

TEST(parse_peers6)
{
    static const char body[] = "d5:peers6:\x7f\x00\x00\x01\x00\x01"
                               "6:peers636:"
                               "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1"
                               "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00"
                               "e";
    struct announce_resp r;
    struct ds_err e = {{0}};
    CHECK_EQ_INT(parse_exact(B(body), &r, &e), 0);
    CHECK_EQ_INT(r.num_peers, 2);
    if (r.num_peers == 2) {
        char s[64];
        fmt(&r.peers[0], s);
        CHECK_STR(s, "127.0.0.1:1");
        fmt(&r.peers[1], s);
        CHECK_STR(s, "[2001:db8::1]:6881");
    }
    announce_resp_free(&r);
}

TEST(parse_failure_reason)
{
    struct announce_resp r;
    struct ds_err e;
    CHECK_EQ_INT(parse_exact(B("d14:failure reason17:torrent not found8:intervali5ee"), &r, &e), 0);
    CHECK_STR(r.failure, "torrent not found");
    CHECK_EQ_INT(r.num_peers, 0);
    announce_resp_free(&r);
    CHECK(r.failure == NULL);

    /* control bytes (and NUL) in tracker text are neutralised */
    CHECK_EQ_INT(parse_exact(B("d14:failure reason5:a\x00\x1b[me"), &r, &e), 0);
    CHECK_STR(r.failure, "a??[m");
    announce_resp_free(&r);

    CHECK_EQ_INT(parse_exact(B("d14:failure reasoni3ee"), &r, &e), -1);
}

TEST(parse_malformed)
{
    static const char *const bad[] = {
        "",
        "i5e",
        "le",
        "4:spam",
        "d5:peers7:abcdefge",                       /* compact length not a multiple of 6 */
        "d5:peersi5ee",                             /* wrong type */
        "d6:peers617:aaaaaaaaaaaaaaaaae",           /* peers6 length not a multiple of 18 */
        "d6:peers6i0ee",
        "d5:peersli1eee",                           /* list entry not a dict */
        "d5:peersld4:porti1eeee",                   /* entry without ip */
        "d5:peersld2:ip7:1.2.3.4eee",               /* entry without port */
        "d5:peers0:e trailing",
        "d5:peers0:5:peers0:e",                     /* duplicate key */
        "garbage",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct announce_resp r;
        struct ds_err e = {{0}};
        int rc = parse_exact((const uint8_t *)bad[i], strlen(bad[i]), &r, &e);
        if (rc != -1)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
        CHECK(e.msg[0] != '\0');
        CHECK(r.peers == NULL && r.num_peers == 0 && r.failure == NULL && r.warning == NULL);
        announce_resp_free(&r);
    }
    struct announce_resp r;
    CHECK_EQ_INT(tracker_parse_response(NULL, 0, &r, NULL), -1);
}

TEST(parse_truncated_every_prefix)
{
    static const char *const bodies[] = {
        compact_body,
        "d8:intervali900e5:peersld2:ip9:127.0.0.14:porti6881eeee",
        "d14:failure reason3:nope",
    };
    size_t lens[] = {sizeof compact_body - 1, strlen(bodies[1]), strlen(bodies[2])};
    for (size_t b = 0; b < 3; b++) {
        for (size_t n = 0; n < lens[b]; n++) {
            struct announce_resp r;
            struct ds_err e;
            int rc = parse_exact((const uint8_t *)bodies[b], n, &r, &e);
            if (rc != -1)
                fprintf(stderr, "  body %zu prefix %zu accepted\n", b, n);
            CHECK_EQ_INT(rc, -1);
            announce_resp_free(&r);
        }
    }
}

TEST(parse_cap)
{
    size_t n = TRACKER_MAX_PEERS + 100;
    size_t plen = n * 6;
    char head[64];
    int hl = snprintf(head, sizeof head, "d5:peers%zu:", plen);
    size_t total = (size_t)hl + plen + 1;
    uint8_t *body = malloc(total);
    memcpy(body, head, (size_t)hl);
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = body + hl + 6 * i;
        p[0] = 10;
        p[1] = (uint8_t)(i >> 16);
        p[2] = (uint8_t)(i >> 8);
        p[3] = (uint8_t)i;
        p[4] = 0x1a;
        p[5] = 0xe1;
    }
    body[total - 1] = 'e';
    struct announce_resp r;
    struct ds_err e;
    CHECK_EQ_INT(tracker_parse_response(body, total, &r, &e), 0);
    CHECK_EQ_INT(r.num_peers, TRACKER_MAX_PEERS);
    announce_resp_free(&r);
    free(body);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Peer addresses
 * ------------------------------------------------------------------------------------------------------------- */

TEST(peer_addr_good)
{
    struct peer_addr a;
    struct ds_err e;
    char s[64];
    CHECK_EQ_INT(peer_addr_parse("1.2.3.4:6881", &a, &e), 0);
    CHECK_EQ_INT(a.ss.ss_family, AF_INET);
    CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in));
    fmt(&a, s);
    CHECK_STR(s, "1.2.3.4:6881");

    CHECK_EQ_INT(peer_addr_parse("[::1]:65535", &a, &e), 0);
    CHECK_EQ_INT(a.ss.ss_family, AF_INET6);
    CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in6));
    fmt(&a, s);
    CHECK_STR(s, "[::1]:65535");

    CHECK_EQ_INT(peer_addr_parse("[2001:db8::a:b]:1", &a, &e), 0);
    fmt(&a, s);
    CHECK_STR(s, "[2001:db8::a:b]:1");

    CHECK_EQ_INT(peer_addr_parse("localhost:8080", &a, &e), 0);
    CHECK(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
    CHECK_EQ_INT(port_of(&a), 8080);
}

TEST(peer_addr_bad)
{
    static const char *const bad[] = {
        "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:99999999", "1.2.3.4:-1", "1.2.3.4:+80",
        "1.2.3.4:80x", "1.2.3.4: 80", "::1:80", "[::1]80", "[::1]", "[::1", "[]:80", "[1.2.3.4]:80",
        "[zz::1]:80", ":80", "127.1:80", "1.2.3.256:80", "bad host!:80", "", ":",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct peer_addr a;
        struct ds_err e = {{0}};
        int rc = peer_addr_parse(bad[i], &a, &e);
        if (rc != -1)
            fprintf(stderr, "  accepted: '%s'\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
        CHECK(e.msg[0] != '\0');
    }
    char longs[400];
    memset(longs, 'a', sizeof longs - 4);
    memcpy(longs + sizeof longs - 4, ":80", 4);
    struct peer_addr a;
    CHECK_EQ_INT(peer_addr_parse(longs, &a, NULL), -1);
    CHECK_EQ_INT(peer_addr_parse(NULL, &a, NULL), -1);

    char s[64];
    memset(&a, 0, sizeof a);   /* unknown family */
    fmt(&a, s);
    CHECK_STR(s, "?");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Worker against a one-shot HTTP server in a thread
 * ------------------------------------------------------------------------------------------------------------- */

enum srv_mode { SRV_REPLY, SRV_HANG, SRV_BIG };

struct srv {
    int lfd;
    unsigned port;
    enum srv_mode mode;
    const char *response;   /* SRV_REPLY: full HTTP response */
    atomic_bool quit;
    char request[4096];
    pthread_t thr;
};

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) != 1)
        return NULL;
    int c = accept(s->lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    if (s->mode == SRV_HANG) {
        for (int i = 0; i < 100 && !atomic_load(&s->quit); i++)
            usleep(50 * 1000);
        close(c);
        return NULL;
    }
    size_t got = 0;
    while (got < sizeof s->request - 1 && !strstr(s->request, "\r\n\r\n")) {
        struct pollfd cp = {.fd = c, .events = POLLIN};
        if (poll(&cp, 1, 5000) != 1)
            break;
        ssize_t n = recv(c, s->request + got, sizeof s->request - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        s->request[got] = '\0';
    }
    if (s->mode == SRV_REPLY) {
        send(c, s->response, strlen(s->response), MSG_NOSIGNAL);
    } else {   /* SRV_BIG: 2 MiB with no Content-Length, so only the write-callback cap can stop it */
        const char *hdr = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
        static char chunk[65536];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 32; i++)
            if (send(c, chunk, sizeof chunk, MSG_NOSIGNAL) < 0)
                break;
    }
    close(c);
    return NULL;
}

static int srv_start(struct srv *s, enum srv_mode mode, const char *response)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->response = response;
    atomic_init(&s->quit, false);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sin, sizeof sin) || listen(s->lfd, 4) ||
        getsockname(s->lfd, (struct sockaddr *)&sin, &sl))
        return -1;
    s->port = ntohs(sin.sin_port);
    return pthread_create(&s->thr, NULL, srv_main, s) ? -1 : 0;
}

static void srv_finish(struct srv *s)
{
    atomic_store(&s->quit, true);
    pthread_join(s->thr, NULL);
    close(s->lfd);
}

/* Wait (bounded) until the worker's fd is readable, via epoll as the event loop would. */
static int wait_result(struct tracker_worker *w, int ms)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, tracker_worker_fd(w), &ev);
    int n = epoll_wait(ep, &ev, 1, ms);
    close(ep);
    return n;
}

static const char http_body[] = "d8:intervali60e5:peers6:\x7f\x01\x01\x01\x1a\xe1" "e";   /* no NUL bytes */

TEST(worker_fetch)
{
    char resp[256];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             sizeof http_body - 1, http_body);
    struct srv s;
    CHECK_EQ_INT(srv_start(&s, SRV_REPLY, resp), 0);
    struct tracker_worker *w = NULL;
    struct ds_err e;
    CHECK_EQ_INT(tracker_worker_start(&w, 5, &e), 0);
    if (!w) {
        srv_finish(&s);
        return;
    }
    CHECK(!tracker_worker_busy(w));
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/announce?info_hash=%%00x", s.port);
    CHECK_EQ_INT(tracker_worker_submit(w, url), 0);
    CHECK(tracker_worker_busy(w));
    CHECK_EQ_INT(tracker_worker_submit(w, url), -1);   /* one at a time */

    CHECK_EQ_INT(wait_result(w, 5000), 1);
    struct tracker_result res;
    CHECK_EQ_INT(tracker_worker_take(w, &res), 1);
    CHECK_EQ_INT(res.ok, 1);
    CHECK_EQ_INT(res.http_status, 200);
    CHECK_EQ_INT(res.body_len, sizeof http_body - 1);
    CHECK(res.body && memcmp(res.body, http_body, sizeof http_body - 1) == 0);
    CHECK(!tracker_worker_busy(w));
    struct tracker_result res2;
    CHECK_EQ_INT(tracker_worker_take(w, &res2), 0);   /* nothing more */
    CHECK_EQ_INT(wait_result(w, 0), 0);                                   /* fd drained */

    struct announce_resp ar;
    CHECK_EQ_INT(tracker_parse_response(res.body, res.body_len, &ar, &e), 0);
    CHECK_EQ_INT(ar.interval, 60);
    CHECK_EQ_INT(ar.num_peers, 1);
    announce_resp_free(&ar);
    free(res.body);

    srv_finish(&s);
    CHECK(strncmp(s.request, "GET /announce?info_hash=%00x HTTP/1.1\r\n", 39) == 0);
    CHECK(strstr(s.request, "\r\nUser-Agent: diskswarm/0.1\r\n") != NULL);
    tracker_worker_stop(w);
}

TEST(worker_http_error)
{
    struct srv s;
    CHECK_EQ_INT(srv_start(&s, SRV_REPLY, "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"),
                 0);
    struct tracker_worker *w = NULL;
    CHECK_EQ_INT(tracker_worker_start(&w, 5, NULL), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/announce", s.port);
    CHECK_EQ_INT(tracker_worker_submit(w, url), 0);
    CHECK_EQ_INT(wait_result(w, 5000), 1);
    struct tracker_result res;
    CHECK_EQ_INT(tracker_worker_take(w, &res), 1);
    CHECK_EQ_INT(res.ok, 0);
    CHECK_EQ_INT(res.http_status, 404);
    CHECK(res.error[0] != '\0');
    free(res.body);
    srv_finish(&s);
    tracker_worker_stop(w);
}

TEST(worker_redirect_to_file_refused)
{
    struct srv s;
    CHECK_EQ_INT(srv_start(&s, SRV_REPLY,
                           "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n"),
                 0);
    struct tracker_worker *w = NULL;
    CHECK_EQ_INT(tracker_worker_start(&w, 5, NULL), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/announce", s.port);
    CHECK_EQ_INT(tracker_worker_submit(w, url), 0);
    CHECK_EQ_INT(wait_result(w, 5000), 1);
    struct tracker_result res;
    CHECK_EQ_INT(tracker_worker_take(w, &res), 1);
    CHECK_EQ_INT(res.ok, 0);
    CHECK(res.body == NULL || memcmp(res.body, "root:", 5) != 0);
    CHECK(res.error[0] != '\0');
    free(res.body);
    srv_finish(&s);
    tracker_worker_stop(w);
}

TEST(worker_too_large)
{
    struct srv s;
    CHECK_EQ_INT(srv_start(&s, SRV_BIG, NULL), 0);
    struct tracker_worker *w = NULL;
    CHECK_EQ_INT(tracker_worker_start(&w, 5, NULL), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/announce", s.port);
    CHECK_EQ_INT(tracker_worker_submit(w, url), 0);
    CHECK_EQ_INT(wait_result(w, 5000), 1);
    struct tracker_result res;
    CHECK_EQ_INT(tracker_worker_take(w, &res), 1);
    CHECK_EQ_INT(res.ok, 0);
    CHECK(res.body == NULL);
    CHECK(strstr(res.error, "larger") != NULL);
    srv_finish(&s);
    tracker_worker_stop(w);
}

TEST(worker_refused_and_bad_scheme)
{
    /* A port that was just bound and closed without listening: connection refused. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    close(fd);

    struct tracker_worker *w = NULL;
    struct ds_err e;
    CHECK_EQ_INT(tracker_worker_start(&w, 5, &e), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/announce", (unsigned)ntohs(sin.sin_port));
    CHECK_EQ_INT(tracker_worker_submit(w, url), 0);
    CHECK_EQ_INT(wait_result(w, 5000), 1);
    struct tracker_result res;
    CHECK_EQ_INT(tracker_worker_take(w, &res), 1);
    CHECK_EQ_INT(res.ok, 0);
    CHECK(res.error[0] != '\0');
    CHECK(res.body == NULL);

    static const char *const schemes[] = {"file:///etc/passwd", "ftp://127.0.0.1/x", "not a url"};
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT(tracker_worker_submit(w, schemes[i]), 0);
        CHECK_EQ_INT(wait_result(w, 5000), 1);
        CHECK_EQ_INT(tracker_worker_take(w, &res), 1);
        CHECK_EQ_INT(res.ok, 0);
        CHECK(res.error[0] != '\0');
        free(res.body);
    }
    CHECK_EQ_INT(tracker_worker_submit(w, NULL), -1);
    tracker_worker_stop(w);

    CHECK_EQ_INT(tracker_worker_start(&w, 0, &e), -1);
    CHECK(w == NULL);
    tracker_worker_stop(NULL);
}

TEST(worker_stop_while_hanging)
{
    struct srv s;
    CHECK_EQ_INT(srv_start(&s, SRV_HANG, NULL), 0);
    struct tracker_worker *w = NULL;
    CHECK_EQ_INT(tracker_worker_start(&w, 30, NULL), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/announce", s.port);
    CHECK_EQ_INT(tracker_worker_submit(w, url), 0);
    usleep(300 * 1000);   /* let the request reach the server */
    CHECK(tracker_worker_busy(w));
    double t0 = now_sec();
    tracker_worker_stop(w);
    double dt = now_sec() - t0;
    if (dt >= 3.0)
        fprintf(stderr, "  stop took %.2f s\n", dt);
    CHECK(dt < 3.0);
    srv_finish(&s);
}

int main(void)
{
    /* The worker honours proxy variables like any libcurl client; the local test server must be reached directly. */
    static const char *const proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                          "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
        unsetenv(proxies[i]);

    RUN(url_known_vector);
    RUN(url_event_numwant_extra);
    RUN(url_existing_query);
    RUN(parse_compact);
    RUN(parse_absent_fields);
    RUN(parse_dict_model);
    RUN(parse_peers6);
    RUN(parse_failure_reason);
    RUN(parse_malformed);
    RUN(parse_truncated_every_prefix);
    RUN(parse_cap);
    RUN(peer_addr_good);
    RUN(peer_addr_bad);
    RUN(worker_fetch);
    RUN(worker_http_error);
    RUN(worker_redirect_to_file_refused);
    RUN(worker_too_large);
    RUN(worker_refused_and_bad_scheme);
    RUN(worker_stop_while_hanging);
    return check_summary();
}
