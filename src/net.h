/* net.h — the thin I/O layer: an epoll loop over the listening socket, peer connections and a few extra fds
 * (tracker worker, signals). It moves bytes between sockets and the session's per-peer buffers and dials the
 * candidates the session asks for; all protocol decisions stay in the session. */
#ifndef DS_NET_H
#define DS_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "session.h"

#define NET_MAX_WATCH 8

typedef void (*net_fd_cb)(void *ctx, int fd);

struct net_conn;

struct net_tag {                   /* what an epoll event points at when it is not a connection */
    int tag;
    int idx;
};

struct net {
    int epfd;
    int listen_fd;
    uint16_t listen_port;          /* actual port (after binding port 0) */
    struct session *s;
    struct net_conn **conns;       /* indexed by session slot for peers; dialling ones live in pending */
    uint32_t max_conns;
    struct net_conn **pending;     /* outgoing connects in progress */
    uint32_t n_pending, max_pending;
    struct { int fd; net_fd_cb cb; void *ctx; } watch[NET_MAX_WATCH];
    int n_watch;
    struct net_tag listen_tag;
    struct hasher *hasher;         /* piece verification thread of a fetching session */
    struct net_tag watch_tag[NET_MAX_WATCH];
};

/* listen: "PORT", "ADDR:PORT", "[V6]:PORT", or NULL for no listening socket. */
int net_init(struct net *n, struct session *s, const char *listen, struct ds_err *e);
void net_free(struct net *n);
int net_watch(struct net *n, int fd, net_fd_cb cb, void *ctx, struct ds_err *e);
/* One round: wait up to timeout_ms for events, do all I/O, dial candidates, close finished peers. */
int net_poll(struct net *n, int timeout_ms, struct ds_err *e);
/* Flush what peers still have to send (bounded by timeout_ms), then close every connection. */
void net_shutdown(struct net *n, int timeout_ms);

uint64_t net_now_ms(void);   /* CLOCK_MONOTONIC in milliseconds */

#endif
