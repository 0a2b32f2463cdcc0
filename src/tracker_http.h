/* tracker_http.h — the HTTP face of `diskswarm tracker` on libmicrohttpd (its own polling thread):
 *   GET /announce     BEP 3 announce (compact BEP 23, peers6 BEP 7), bencoded, text/plain
 *   GET /scrape       scrape
 *   GET /status.json  swarm status for the dashboard
 *   GET /             the dashboard page
 * anything else 404, other methods 405. The raw request target is taken before libmicrohttpd decodes it, so
 * binary info-hashes (%00 included) survive. Every access to tracker_state holds `mu`. The peer's address is
 * the connection's; the `ip` parameter counts only from a loopback client or with allow_ip_param. */
#ifndef DS_TRACKER_HTTP_H
#define DS_TRACKER_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "tracker_state.h"

/* An extra GET/HEAD route (serve: /manifest.json, /torrents/<file>, /deploy.json). path is the request path
 * without the query (not NUL-terminated, plen bytes, already stripped of any scheme://host). Return false when
 * the path is not yours (the tracker answers 404); otherwise fill status, content_type (a static string) and
 * body (taken over and freed by the server). Called on libmicrohttpd's thread, without the tracker mutex. */
struct tracker_http_reply {
    unsigned status;
    const char *content_type;
    struct buf body;
};
typedef bool (*tracker_http_extra_fn)(void *ctx, const char *path, size_t plen, const char *query, size_t qlen,
                                      struct tracker_http_reply *r);

struct tracker_http_config {
    const char *listen;             /* "ADDR:PORT" ("0.0.0.0:6969", "[::]:6969", "127.0.0.1:0") */
    bool allow_ip_param;            /* trust `ip=` from any client (e.g. behind a NAT you control) */
    unsigned max_connections;       /* default 1000 */
    unsigned timeout_s;             /* idle connection timeout, default 30 */
    tracker_http_extra_fn extra_handler; /* optional: more routes, tried after the tracker's own */
    void *extra_ctx;
};

struct tracker_http;

int tracker_http_start(struct tracker_http **out, struct tracker_state *st, pthread_mutex_t *mu,
                       const struct tracker_http_config *cfg, struct ds_err *e);
uint16_t tracker_http_port(const struct tracker_http *h);
uint64_t tracker_http_requests(const struct tracker_http *h);
void tracker_http_stop(struct tracker_http *h);

#endif
