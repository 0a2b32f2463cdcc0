/* tracker_client.h — sans-I/O HTTP tracker client pieces: build the announce URL (BEP 3, with compact=1 per
 * BEP 23) and parse the bencoded response (compact IPv4 `peers` string, BEP 23; dictionary-model `peers` list;
 * compact IPv6 `peers6`, BEP 7; `failure reason`, `warning message`, `interval`, `min interval`). */
#ifndef DS_TRACKER_CLIENT_H
#define DS_TRACKER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"

#define TRACKER_MAX_PEERS 4096   /* more peers than this in one response are ignored */

struct peer_addr {
    struct sockaddr_storage ss;  /* AF_INET or AF_INET6, port set */
    socklen_t len;
};

enum announce_event { AE_NONE = 0, AE_STARTED, AE_COMPLETED, AE_STOPPED };

struct announce_req {
    const char *announce_url;    /* http:// or https:// */
    uint8_t info_hash[20];
    uint8_t peer_id[20];
    uint16_t port;
    uint64_t uploaded, downloaded, left;
    enum announce_event event;
    int numwant;                 /* < 0: omit */
    const char *extra;           /* optional extra query text appended verbatim after '&' (may be NULL) */
};

struct announce_resp {
    char *failure;               /* "failure reason" when present (then nothing else is meaningful) */
    char *warning;
    int64_t interval;            /* seconds; 0 when absent */
    int64_t min_interval;
    int64_t complete, incomplete;/* -1 when absent */
    struct peer_addr *peers;
    size_t num_peers;
};

/* malloc'd URL: announce_url + ('?' or '&') + info_hash, peer_id, port, uploaded, downloaded, left, compact=1,
 * event, numwant. Binary values percent-encoded. */
char *tracker_announce_url(const struct announce_req *r);

/* Parse an HTTP response body. Returns 0 (resp filled, maybe with failure set) or -1 on garbage. */
int tracker_parse_response(const uint8_t *body, size_t len, struct announce_resp *resp, struct ds_err *e);
void announce_resp_free(struct announce_resp *resp);

/* Parse "host:port" / "[v6]:port" / "1.2.3.4:port" (numeric or resolvable host) into a peer_addr. */
int peer_addr_parse(const char *s, struct peer_addr *out, struct ds_err *e);
/* Format as "1.2.3.4:5" or "[::1]:5" into out (at least 64 bytes). */
void peer_addr_format(const struct peer_addr *a, char *out, size_t outlen);

#endif
