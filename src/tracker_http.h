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

#include "err.h"
#include "tracker_state.h"

struct tracker_http_config {
    const char *listen;             /* "ADDR:PORT" ("0.0.0.0:6969", "[::]:6969", "127.0.0.1:0") */
    bool allow_ip_param;            /* trust `ip=` from any client (e.g. behind a NAT you control) */
    unsigned max_connections;       /* default 1000 */
    unsigned timeout_s;             /* idle connection timeout, default 30 */
};

struct tracker_http;

int tracker_http_start(struct tracker_http **out, struct tracker_state *st, pthread_mutex_t *mu,
                       const struct tracker_http_config *cfg, struct ds_err *e);
uint16_t tracker_http_port(const struct tracker_http *h);
uint64_t tracker_http_requests(const struct tracker_http *h);
void tracker_http_stop(struct tracker_http *h);

#endif
