/* tracker_udp.c — see tracker_udp.h. */
#include "tracker_udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net.h"
#include "tracker_client.h"

static uint64_t get_be64(const uint8_t *p) { return (uint64_t)get_be32(p) << 32 | get_be32(p + 4); }
static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

void tracker_addr_from_sa(const struct sockaddr *sa, struct ts_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        out->family = AF_INET;
        memcpy(out->ip, &s4->sin_addr, 4);
        out->port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        out->port = ntohs(s6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            out->family = AF_INET;
            memcpy(out->ip, s6->sin6_addr.s6_addr + 12, 4);
        } else {
            out->family = AF_INET6;
            memcpy(out->ip, &s6->sin6_addr, 16);
        }
    }
}

bool tracker_addr_is_loopback(const struct ts_addr *a)
{
    static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (a->family == AF_INET)
        return a->ip[0] == 127;
    return a->family == AF_INET6 && !memcmp(a->ip, v6lo, 16);
}

void tu_init(struct tu_core *c, const uint8_t secret[32])
{
    memset(c, 0, sizeof *c);
    memcpy(c->secret, secret, 32);
    c->trust_loopback_ip = true;
}

uint64_t tu_conn_id(const struct tu_core *c, const struct ts_addr *from, uint64_t now_ms, unsigned minutes_ago)
{
    uint8_t msg[32], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    uint64_t minute = now_ms / 60000u - minutes_ago;
    msg[0] = (uint8_t)from->family;
    memcpy(msg + 1, from->ip, 16);
    msg[17] = (uint8_t)(from->port >> 8);
    msg[18] = (uint8_t)from->port;
    put_be64(msg + 19, minute);
    if (!HMAC(EVP_sha256(), c->secret, 32, msg, 27, mac, &maclen) || maclen < 8)
        return 0;
    return get_be64(mac);
}

static size_t error_reply(uint32_t tid, const char *msg, uint8_t *out, size_t cap)
{
    size_t n = strlen(msg);
    if (8 + n > cap)
        n = cap - 8;
    put_be32(out, TU_ERROR);
    put_be32(out + 4, tid);
    memcpy(out + 8, msg, n);
    return 8 + n;
}

size_t tu_handle(const struct tu_core *c, struct tracker_state *st, const struct ts_addr *from, const uint8_t *pkt,
                 size_t len, uint64_t now_ms, uint8_t *out, size_t cap)
{
    if (len < 16 || cap < TU_MAX_REPLY)
        return 0;
    uint64_t cid = get_be64(pkt);
    uint32_t action = get_be32(pkt + 8), tid = get_be32(pkt + 12);
    if (action == TU_CONNECT) {
        if (cid != TU_PROTOCOL_ID)
            return 0;
        put_be32(out, TU_CONNECT);
        put_be32(out + 4, tid);
        put_be64(out + 8, tu_conn_id(c, from, now_ms, 0));
        return 16;
    }
    if (action != TU_ANNOUNCE && action != TU_SCRAPE)
        return error_reply(tid, "unknown action", out, cap);
    if (cid != tu_conn_id(c, from, now_ms, 0) && cid != tu_conn_id(c, from, now_ms, 1))
        return error_reply(tid, "connection id mismatch", out, cap);

    if (action == TU_SCRAPE) {
        size_t n = (len - 16) / 20;
        if (n == 0 || (len - 16) % 20)
            return error_reply(tid, "malformed scrape", out, cap);
        if (n > TS_MAX_SCRAPE)
            n = TS_MAX_SCRAPE;
        put_be32(out, TU_SCRAPE);
        put_be32(out + 4, tid);
        for (size_t i = 0; i < n; i++) {
            uint32_t cpl = 0, inc = 0, dl = 0;
            ts_counts(st, pkt + 16 + 20 * i, &cpl, &inc, &dl);
            put_be32(out + 8 + 12 * i, cpl);
            put_be32(out + 12 + 12 * i, dl);
            put_be32(out + 16 + 12 * i, inc);
        }
        return 8 + 12 * n;
    }

    /* announce: 98 bytes (BEP 41 options may follow; ignored) */
    if (len < 98)
        return error_reply(tid, "malformed announce", out, cap);
    struct ts_announce a;
    memset(&a, 0, sizeof a);
    memcpy(a.info_hash, pkt + 16, 20);
    memcpy(a.peer_id, pkt + 36, 20);
    a.downloaded = get_be64(pkt + 56);
    a.left = get_be64(pkt + 64);
    a.uploaded = get_be64(pkt + 72);
    if (a.downloaded > INT64_MAX || a.left > INT64_MAX || a.uploaded > INT64_MAX)
        return error_reply(tid, "invalid numbers", out, cap);
    uint32_t ev = get_be32(pkt + 80);
    switch (ev) {
    case 0: a.event = TS_EV_NONE; break;
    case 1: a.event = TS_EV_COMPLETED; break;
    case 2: a.event = TS_EV_STARTED; break;
    case 3: a.event = TS_EV_STOPPED; break;
    default: return error_reply(tid, "invalid event", out, cap);
    }
    uint32_t ip = get_be32(pkt + 84);
    if (ip && from->family == AF_INET) {
        a.has_ip = true;
        a.ip.family = AF_INET;
        memcpy(a.ip.ip, pkt + 84, 4);
    }
    int32_t nw = (int32_t)get_be32(pkt + 92);
    a.numwant = nw < 0 ? -1 : (nw > TS_MAX_NUMWANT ? TS_MAX_NUMWANT : nw);
    a.port = get_be16(pkt + 96);
    a.compact = true;
    if (a.port == 0 && a.event != TS_EV_STOPPED)
        return error_reply(tid, "invalid port", out, cap);

    struct ts_reply *r = malloc(sizeof *r);
    if (!r)
        return error_reply(tid, "out of memory", out, cap);
    ts_announce(st, &a, from, c->trust_loopback_ip && tracker_addr_is_loopback(from), from->family, now_ms, r);
    size_t n;
    if (r->failure) {
        n = error_reply(tid, r->failure, out, cap);
    } else {
        put_be32(out, TU_ANNOUNCE);
        put_be32(out + 4, tid);
        put_be32(out + 8, r->interval);
        put_be32(out + 12, r->incomplete);
        put_be32(out + 16, r->complete);
        n = 20;
        size_t alen = from->family == AF_INET6 ? 16 : 4;
        for (size_t i = 0; i < r->n_peers && n + alen + 2 <= cap; i++) {
            memcpy(out + n, r->peers[i].ip, alen);
            out[n + alen] = (uint8_t)(r->peers[i].port >> 8);
            out[n + alen + 1] = (uint8_t)r->peers[i].port;
            n += alen + 2;
        }
    }
    free(r);
    return n;
}

/* ------------------------------------------------------------------------------------------------------ */
/* the socket thread */

struct tracker_udp {
    struct tu_core core;
    struct tracker_state *st;
    pthread_mutex_t *mu;
    int fd, stopfd;
    uint16_t port;
    pthread_t th;
    atomic_uint_fast64_t packets;
};

static void *udp_main(void *arg)
{
    struct tracker_udp *u = arg;
    uint8_t in[2048], out[TU_MAX_REPLY];
    for (;;) {
        struct pollfd pf[2] = {{.fd = u->fd, .events = POLLIN}, {.fd = u->stopfd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[1].revents)
            break;
        for (int burst = 0; burst < 64; burst++) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            ssize_t n = recvfrom(u->fd, in, sizeof in, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
            if (n < 0)
                break;
            atomic_fetch_add(&u->packets, 1);
            struct ts_addr from;
            tracker_addr_from_sa((struct sockaddr *)&ss, &from);
            if (!from.family)
                continue;
            pthread_mutex_lock(u->mu);
            size_t r = tu_handle(&u->core, u->st, &from, in, (size_t)n, net_now_ms(), out, sizeof out);
            pthread_mutex_unlock(u->mu);
            if (r)
                (void)sendto(u->fd, out, r, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
        }
    }
    return NULL;
}

int tracker_udp_start(struct tracker_udp **out, struct tracker_state *st, pthread_mutex_t *mu, const char *listen,
                      struct ds_err *e)
{
    struct peer_addr pa;
    if (peer_addr_parse(listen, &pa, e))
        return -1;
    struct tracker_udp *u = calloc(1, sizeof *u);
    if (!u)
        return ds_errf(e, "out of memory");
    uint8_t secret[32];
    if (getentropy(secret, sizeof secret)) {
        free(u);
        return ds_errno(e, "getentropy");
    }
    tu_init(&u->core, secret);
    u->st = st;
    u->mu = mu;
    u->stopfd = -1;
    u->fd = socket(pa.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (u->fd < 0) {
        free(u);
        return ds_errno(e, "udp socket");
    }
    int one = 1;
    setsockopt(u->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(u->fd, (struct sockaddr *)&pa.ss, pa.len)) {
        ds_errno(e, "bind udp %s", listen);
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(u->fd, (struct sockaddr *)&ss, &sl);
    struct ts_addr me;
    tracker_addr_from_sa((struct sockaddr *)&ss, &me);
    u->port = me.port;
    u->stopfd = eventfd(0, EFD_CLOEXEC);
    if (u->stopfd < 0) {
        ds_errno(e, "eventfd");
        goto fail;
    }
    if (pthread_create(&u->th, NULL, udp_main, u)) {
        ds_errf(e, "cannot start the UDP tracker thread");
        goto fail;
    }
    *out = u;
    return 0;
fail:
    close(u->fd);
    if (u->stopfd >= 0)
        close(u->stopfd);
    free(u);
    return -1;
}

uint16_t tracker_udp_port(const struct tracker_udp *u) { return u->port; }
uint64_t tracker_udp_packets(const struct tracker_udp *u) { return atomic_load(&((struct tracker_udp *)u)->packets); }

void tracker_udp_stop(struct tracker_udp *u)
{
    if (!u)
        return;
    uint64_t one = 1;
    (void)!write(u->stopfd, &one, sizeof one);
    pthread_join(u->th, NULL);
    close(u->fd);
    close(u->stopfd);
    free(u);
}
