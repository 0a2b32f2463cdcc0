#include "net.h"

#include "hasher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (256u * 1024u)
#define READS_PER_EVENT 8
#define CONNECT_TIMEOUT_MS 10000
#define MAX_PENDING_CONNECTS 32
#define NET_NOTSENT_LOWAT (32 * 1024)

/* epoll data tags: low bits say what kind of fd it is */
enum { TAG_LISTEN = 1, TAG_WATCH = 2, TAG_CONN = 3 };

struct net_conn {
    int tag;                 /* TAG_CONN */
    int fd;
    bool connecting;
    int cand;
    struct peer_addr addr;
    uint64_t t_start;
    struct sess_peer *peer;  /* NULL while connecting */
    uint32_t events;         /* current epoll mask */
};


uint64_t net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len, struct ds_err *e)
{
    char host[256] = "";
    const char *port = spec;
    if (spec[0] == '[') {
        const char *r = strchr(spec, ']');
        if (!r || r[1] != ':' || (size_t)(r - spec - 1) >= sizeof host)
            return ds_errf(e, "bad listen address '%s'", spec);
        memcpy(host, spec + 1, (size_t)(r - spec - 1));
        host[r - spec - 1] = 0;
        port = r + 2;
    } else if (strchr(spec, ':')) {
        const char *c = strrchr(spec, ':');
        if ((size_t)(c - spec) >= sizeof host)
            return ds_errf(e, "bad listen address '%s'", spec);
        memcpy(host, spec, (size_t)(c - spec));
        host[c - spec] = 0;
        port = c + 1;
    }
    char *end;
    long pv = strtol(port, &end, 10);
    if (!*port || *end || pv < 0 || pv > 65535)
        return ds_errf(e, "bad listen port in '%s'", spec);
    memset(ss, 0, sizeof *ss);
    if (!host[0] || strchr(host, ':') == NULL) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pv);
        if (host[0] && inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return ds_errf(e, "bad listen address '%s' (give a numeric IP)", host);
        *len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pv);
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return ds_errf(e, "bad listen address '%s'", host);
        *len = sizeof *sin6;
    }
    return 0;
}

static void on_hasher(void *ctx, int fd)
{
    (void)fd;
    struct net *n = ctx;
    session_hasher_ready(n->s, net_now_ms());
}

int net_init(struct net *n, struct session *s, const char *listen_spec, struct ds_err *e)
{
    memset(n, 0, sizeof *n);
    n->listen_fd = -1;
    n->s = s;
    n->max_conns = s->cfg.max_peers;
    n->max_pending = MAX_PENDING_CONNECTS;
    n->conns = calloc(n->max_conns, sizeof *n->conns);
    n->pending = calloc(n->max_pending, sizeof *n->pending);
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!n->conns || !n->pending || n->epfd < 0) {
        net_free(n);
        return ds_errno(e, "cannot set up the event loop");
    }
    /* a fetching session verifies on a second core: receiving and hashing overlap */
    if (!s->cfg.have_all && s->have.count < s->have.nbits) {
        struct hasher *h;
        if (hasher_start(&h, s->store, e)) {
            net_free(n);
            return -1;
        }
        n->hasher = h;
        session_attach_hasher(s, h);
        if (net_watch(n, hasher_fd(h), on_hasher, n, e)) {
            net_free(n);
            return -1;
        }
    }
    if (!listen_spec)
        return 0;
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_listen(listen_spec, &ss, &len, e)) {
        net_free(n);
        return -1;
    }
    n->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (n->listen_fd < 0 || setsockopt(n->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(n->listen_fd, (struct sockaddr *)&ss, len) || listen(n->listen_fd, 128)) {
        ds_errno(e, "cannot listen on %s", listen_spec);
        net_free(n);
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    getsockname(n->listen_fd, (struct sockaddr *)&got, &gl);
    n->listen_port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                                    : ((struct sockaddr_in6 *)&got)->sin6_port);
    n->listen_tag = (struct net_tag){TAG_LISTEN, 0};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &n->listen_tag};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->listen_fd, &ev)) {
        ds_errno(e, "epoll");
        net_free(n);
        return -1;
    }
    return 0;
}

static void conn_close(struct net *n, struct net_conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->peer) {
        char a[80];
        peer_addr_format(&c->peer->addr, a, sizeof a);
        session_log(n->s, "peer %s (%s) disconnected: %s", a, c->peer->client[0] ? c->peer->client : "?",
                    c->peer->reason[0] ? c->peer->reason : "closed");
        n->conns[c->peer->slot] = NULL;
        session_peer_free(n->s, c->peer);
    }
    free(c);
}

void net_free(struct net *n)
{
    /* stop the hashing thread before any peer or partial it might still read goes away */
    if (n->hasher) {
        session_attach_hasher(n->s, NULL);
        hasher_stop(n->hasher);
        n->hasher = NULL;
    }
    if (n->conns)
        for (uint32_t i = 0; i < n->max_conns; i++)
            if (n->conns[i])
                conn_close(n, n->conns[i]);
    if (n->pending)
        for (uint32_t i = 0; i < n->n_pending; i++) {
            close(n->pending[i]->fd);
            free(n->pending[i]);
        }
    free(n->conns);
    free(n->pending);
    if (n->listen_fd >= 0)
        close(n->listen_fd);
    if (n->epfd >= 0)
        close(n->epfd);
    memset(n, 0, sizeof *n);
    n->epfd = n->listen_fd = -1;
}

int net_watch(struct net *n, int fd, net_fd_cb cb, void *ctx, struct ds_err *e)
{
    if (n->n_watch >= NET_MAX_WATCH)
        return ds_errf(e, "too many watched fds");
    int i = n->n_watch++;
    n->watch[i].fd = fd;
    n->watch[i].cb = cb;
    n->watch[i].ctx = ctx;
    n->watch_tag[i] = (struct net_tag){TAG_WATCH, i};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &n->watch_tag[i]};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev))
        return ds_errno(e, "epoll");
    return 0;
}

static void set_events(struct net *n, struct net_conn *c, uint32_t want)
{
    if (c->events == want)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(n->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->events = want;
}

/* TCP_NODELAY: requests and HAVEs leave at once. TCP_NOTSENT_LOWAT: the kernel takes at most ~32 KiB of
 * not-yet-sent bytes per connection (the default lets it buffer MBs). Piece data and control messages share a
 * connection: with MBs queued, a REQUEST or HAVE to a peer we upload to at RATE/15 waited seconds behind
 * piece data; now it waits a fraction of a second, and the session, not the kernel, decides what goes next. */
static void tune_socket(int fd)
{
    int one = 1, lowat = NET_NOTSENT_LOWAT;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
}

static struct net_conn *conn_attach(struct net *n, int fd, struct sess_peer *p, const struct peer_addr *a)
{
    struct net_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->tag = TAG_CONN;
    c->fd = fd;
    c->peer = p;
    c->addr = *a;
    c->cand = -1;
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        free(c);
        return NULL;
    }
    n->conns[p->slot] = c;
    return c;
}

static void on_accept(struct net *n, uint64_t now)
{
    for (int k = 0; k < 64; k++) {
        struct peer_addr a;
        memset(&a, 0, sizeof a);
        a.len = sizeof a.ss;
        int fd = accept4(n->listen_fd, (struct sockaddr *)&a.ss, &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        tune_socket(fd);
        const char *refused = session_refuse_reason(n->s, &a);
        struct sess_peer *p = refused ? NULL : session_peer_new(n->s, &a, false, -1, now);
        char as[80];
        peer_addr_format(&a, as, sizeof as);
        session_log(n->s, "incoming connection from %s%s%s", as, p ? "" : " refused: ",
                    p ? "" : refused ? refused : "out of memory");
        if (!p) {
            close(fd);
            continue;
        }
        if (!conn_attach(n, fd, p, &a)) {
            close(fd);
            session_peer_free(n->s, p);
        }
    }
}

static void dial(struct net *n, uint64_t now)
{
    while (n->n_pending < n->max_pending && n->s->n_peers + n->n_pending < n->s->cfg.max_peers) {
        int ci = session_next_candidate(n->s, now);
        if (ci < 0)
            return;
        const struct peer_addr *a = &n->s->cands[ci].addr;
        int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            session_candidate_failed(n->s, ci, now);
            return;
        }
        tune_socket(fd);
        if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0 && errno != EINPROGRESS) {
            close(fd);
            session_candidate_failed(n->s, ci, now);
            continue;
        }
        struct net_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            session_candidate_failed(n->s, ci, now);
            return;
        }
        c->tag = TAG_CONN;
        c->fd = fd;
        c->connecting = true;
        c->cand = ci;
        c->addr = *a;
        c->t_start = now;
        c->events = EPOLLOUT;
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            close(fd);
            free(c);
            session_candidate_failed(n->s, ci, now);
            return;
        }
        n->pending[n->n_pending++] = c;
    }
}

static void pending_remove(struct net *n, struct net_conn *c)
{
    for (uint32_t i = 0; i < n->n_pending; i++)
        if (n->pending[i] == c) {
            n->pending[i] = n->pending[--n->n_pending];
            return;
        }
}

static void on_connected(struct net *n, struct net_conn *c, uint64_t now)
{
    int err = 0;
    socklen_t el = sizeof err;
    pending_remove(n, c);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    struct sess_peer *p = NULL;
    if (err == 0)
        p = session_peer_new(n->s, &c->addr, true, c->cand, now);
    if (!p) {
        epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        session_candidate_failed(n->s, c->cand, now);
        free(c);
        return;
    }
    char as[80];
    peer_addr_format(&c->addr, as, sizeof as);
    session_log(n->s, "connected to %s", as);
    c->connecting = false;
    c->peer = p;
    n->conns[p->slot] = c;
    set_events(n, c, EPOLLIN);
}

static void on_readable(struct net *n, struct net_conn *c, uint64_t now)
{
    struct sess_peer *p = c->peer;
    for (int k = 0; k < READS_PER_EVENT && !p->closing; k++) {
        if (buf_reserve(&p->in, READ_CHUNK)) {
            p->closing = true;
            strcpy(p->reason, "out of memory");
            return;
        }
        ssize_t r = recv(c->fd, p->in.data + p->in.len, p->in.cap - p->in.len, 0);
        if (r > 0) {
            p->in.len += (size_t)r;
            session_peer_input(n->s, p, now);
            if ((size_t)r < READ_CHUNK)
                break;
            continue;
        }
        if (r == 0) {
            p->closing = true;
            strcpy(p->reason, "closed by peer");
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            p->closing = true;
            strcpy(p->reason, "connection error");
        }
        return;
    }
}

/* Fill and send until the socket would block or there is nothing left; bounded rounds keep it fair. */
static void flush_conn(struct net *n, struct net_conn *c, uint64_t now)
{
    struct sess_peer *p = c->peer;
    for (int round = 0; round < 16; round++) {
        if (!p->closing)
            session_peer_fill(n->s, p, now);
        size_t left = buf_unread(&p->out);
        if (left == 0)
            break;
        ssize_t w = send(c->fd, buf_head(&p->out), left, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                p->closing = true;
                if (!p->reason[0])
                    strcpy(p->reason, "send failed");
                buf_clear(&p->out);
            }
            break;
        }
        buf_consume(&p->out, (size_t)w);
        if ((size_t)w < left)
            break;
    }
    uint32_t want = EPOLLIN | (buf_unread(&p->out) ? EPOLLOUT : 0);
    set_events(n, c, want);
}

int net_poll(struct net *n, int timeout_ms, struct ds_err *e)
{
    struct epoll_event evs[64];
    int k = epoll_wait(n->epfd, evs, 64, timeout_ms);
    if (k < 0) {
        if (errno == EINTR)
            k = 0;
        else
            return ds_errno(e, "epoll_wait");
    }
    uint64_t now = net_now_ms();
    for (int i = 0; i < k; i++) {
        int tag = *(int *)evs[i].data.ptr;
        if (tag == TAG_LISTEN) {
            on_accept(n, now);
        } else if (tag == TAG_WATCH) {
            int w = ((struct net_tag *)evs[i].data.ptr)->idx;
            n->watch[w].cb(n->watch[w].ctx, n->watch[w].fd);
        } else {
            struct net_conn *c = evs[i].data.ptr;
            if (c->connecting) {
                on_connected(n, c, now);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(n, c, now);
        }
    }
    /* time out slow connects */
    for (uint32_t i = 0; i < n->n_pending;) {
        struct net_conn *c = n->pending[i];
        if (now - c->t_start > CONNECT_TIMEOUT_MS) {
            n->pending[i] = n->pending[--n->n_pending];
            epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            session_candidate_failed(n->s, c->cand, now);
            free(c);
        } else {
            i++;
        }
    }
    /* send what the session produced, then retire closed peers */
    for (uint32_t i = 0; i < n->max_conns; i++)
        if (n->conns[i])
            flush_conn(n, n->conns[i], now);
    for (uint32_t i = 0; i < n->max_conns; i++) {
        struct net_conn *c = n->conns[i];
        if (c && c->peer->closing)
            conn_close(n, c);
    }
    dial(n, now);
    return 0;
}

void net_shutdown(struct net *n, int timeout_ms)
{
    uint64_t end = net_now_ms() + (uint64_t)timeout_ms;
    for (int round = 0; round < 1000; round++) {
        bool left = false;
        for (uint32_t i = 0; i < n->max_conns; i++) {
            struct net_conn *c = n->conns[i];
            if (!c || c->peer->closing || !buf_unread(&c->peer->out))
                continue;
            ssize_t w = send(c->fd, buf_head(&c->peer->out), buf_unread(&c->peer->out), MSG_NOSIGNAL);
            if (w > 0)
                buf_consume(&c->peer->out, (size_t)w);
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                continue;
            if (buf_unread(&c->peer->out))
                left = true;
        }
        if (!left || net_now_ms() >= end)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (uint32_t i = 0; i < n->max_conns; i++)
        if (n->conns[i]) {
            shutdown(n->conns[i]->fd, SHUT_WR);
            conn_close(n, n->conns[i]);
        }
}
