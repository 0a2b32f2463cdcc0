/* tracker_udp.h — the BEP 15 UDP tracker: a sans-I/O packet handler (connect with connection-id cookies derived
 * from a secret, the client's address and the minute, announce, scrape, error) over tracker_state, and a small
 * socket thread that feeds it. Connection ids are valid for the minute they were issued in and the next one. */
#ifndef DS_TRACKER_UDP_H
#define DS_TRACKER_UDP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"
#include "tracker_state.h"

#define TU_PROTOCOL_ID 0x41727101980ull
#define TU_MAX_REPLY (20 + TS_MAX_NUMWANT * 18)

enum { TU_CONNECT = 0, TU_ANNOUNCE = 1, TU_SCRAPE = 2, TU_ERROR = 3 };

struct tu_core {
    uint8_t secret[32];
    bool trust_loopback_ip;         /* honour the announce's `ip` field from a loopback sender */
};

void tu_init(struct tu_core *c, const uint8_t secret[32]);
/* The connection id for `from` issued in the minute of now_ms (minus `minutes_ago`). */
uint64_t tu_conn_id(const struct tu_core *c, const struct ts_addr *from, uint64_t now_ms, unsigned minutes_ago);
/* Handle one datagram from `from`; writes the reply (up to cap >= TU_MAX_REPLY bytes) and returns its length,
 * or 0 when nothing should be sent (short or unsolicited packets). */
size_t tu_handle(const struct tu_core *c, struct tracker_state *st, const struct ts_addr *from, const uint8_t *pkt,
                 size_t len, uint64_t now_ms, uint8_t *out, size_t cap);

/* sockaddr (v4, v6, v4-mapped v6) → ts_addr. */
void tracker_addr_from_sa(const struct sockaddr *sa, struct ts_addr *out);
bool tracker_addr_is_loopback(const struct ts_addr *a);

/* The socket side: bind `listen` ("ADDR:PORT"), serve on a thread, lock `mu` around tracker_state. */
struct tracker_udp;
int tracker_udp_start(struct tracker_udp **out, struct tracker_state *st, pthread_mutex_t *mu, const char *listen,
                      struct ds_err *e);
uint16_t tracker_udp_port(const struct tracker_udp *u);
uint64_t tracker_udp_packets(const struct tracker_udp *u);
void tracker_udp_stop(struct tracker_udp *u);

#endif
