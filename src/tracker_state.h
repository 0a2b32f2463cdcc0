/* tracker_state.h — the sans-I/O core of `diskswarm tracker`: announce/scrape query parsing, the swarm table,
 * expiry, limits, the info-hash whitelist, bencoded responses (BEP 3, compact BEP 23, peers6 BEP 7) and the
 * status JSON behind the dashboard. No sockets, no clock, no locking: the caller passes the time in (ms, any
 * monotonic origin) and serialises calls (tracker_http/tracker_udp share one mutex).
 *
 * Announce query parameters (all values percent-decoded; a malformed %-escape refuses the request):
 *   info_hash, peer_id   exactly 20 bytes each (required)
 *   port                 1..65535 (required; 0 allowed only with event=stopped)
 *   uploaded, downloaded, left   decimal, 0..2^63-1 (required)
 *   event                started | completed | stopped | empty (optional)
 *   numwant              0..TS_MAX_NUMWANT (optional, default TS_DEFAULT_NUMWANT; larger values are capped)
 *   compact              0 | 1 (default 1); no_peer_id 0 | 1
 *   ip                   numeric IPv4/IPv6 address; used only when the caller says the source may be trusted
 *   key, trackerid, corrupt, supportcrypto, redundant, ipv4, ipv6 ... ignored
 * diskswarm extras (optional; other clients simply don't send them):
 *   ds_name=TEXT         the machine's name for the dashboard (printable ASCII, at most 63 bytes)
 *   ds_rate=N            the peer's own measured download rate in bytes/s (else derived from `left`)
 *   ds_up=N              its upload rate in bytes/s
 *   ds_npieces=N         the torrent's piece count, with
 *   ds_pieces=HEX        the peer's have-bitfield (BEP 3 order, high bit first) in hex, ceil(N/8) bytes;
 *                        at most TS_MAX_BITFIELD_HEX hex digits (bigger torrents leave it out). It is folded
 *                        into TS_STRIP buckets at once; the tracker keeps only those, never the bitfield.
 * Unknown parameters are ignored; repeated announce parameters are refused. */
#ifndef DS_TRACKER_STATE_H
#define DS_TRACKER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define TS_MAX_QUERY 24576          /* longest query string accepted (fits a 64k-piece ds_pieces) */
#define TS_MAX_BITFIELD_HEX 16384
#define TS_DEFAULT_NUMWANT 50
#define TS_MAX_NUMWANT 200
#define TS_NAME_MAX 64
#define TS_STRIP 128                /* buckets of the piece-availability picture */
#define TS_MAX_SCRAPE 74            /* info-hashes per scrape request */
#define TS_STATUS_MAX_PEERS 1000    /* rows per torrent in the status JSON */

enum ts_event { TS_EV_NONE = 0, TS_EV_STARTED, TS_EV_COMPLETED, TS_EV_STOPPED };

struct ts_addr {                    /* an IPv4 or IPv6 address + port, host-independent */
    int family;                     /* AF_INET or AF_INET6 */
    uint8_t ip[16];                 /* IPv4: first 4 bytes */
    uint16_t port;
};

struct ts_announce {
    uint8_t info_hash[20];
    uint8_t peer_id[20];
    uint16_t port;
    uint64_t uploaded, downloaded, left;
    enum ts_event event;
    int numwant;
    bool compact, no_peer_id;
    bool has_ip;
    struct ts_addr ip;              /* the `ip` parameter (port unset) */
    /* diskswarm extras */
    char name[TS_NAME_MAX];
    bool has_rate, has_up;
    uint64_t rate, up_rate;
    bool has_strip;
    uint32_t npieces;
    uint8_t strip[TS_STRIP];        /* per bucket: fraction of its pieces held, 0..255 */
};

struct ts_scrape {
    uint8_t hashes[TS_MAX_SCRAPE][20];
    size_t n;                       /* 0: all torrents */
};

struct ts_config {
    uint32_t interval_s;            /* default 120 */
    uint32_t min_interval_s;        /* default 5 */
    uint32_t expire_s;              /* a peer silent this long is dropped; default 2*interval + 60 */
    uint32_t max_peers_per_torrent; /* default 10000 */
    uint32_t max_peers_total;       /* default 100000 */
    uint32_t max_torrents;          /* open mode: torrents created on demand, at most this many; default 1000 */
    bool open;                      /* serve any info-hash (public tracker); otherwise whitelist only */
    uint64_t rng_seed;
};

struct tracker_state;

/* Callbacks for notable events (peer joined, completed, stopped, expired), for logging by the command. */
enum ts_note { TS_NOTE_JOIN, TS_NOTE_COMPLETE, TS_NOTE_STOP, TS_NOTE_EXPIRE, TS_NOTE_REFUSED };
typedef void (*ts_note_fn)(void *ctx, enum ts_note what, const uint8_t info_hash[20], const uint8_t peer_id[20],
                           const struct ts_addr *addr, const char *detail);

struct tracker_state *ts_new(const struct ts_config *cfg, struct ds_err *e);
void ts_free(struct tracker_state *st);
void ts_set_note(struct tracker_state *st, ts_note_fn fn, void *ctx);
const struct ts_config *ts_config(const struct tracker_state *st);

/* Whitelist an info-hash; name/total_length/num_pieces from a .torrent (NULL/0 when unknown). */
int ts_add_torrent(struct tracker_state *st, const uint8_t info_hash[20], const char *name, uint64_t total_length,
                   uint32_t num_pieces, struct ds_err *e);
/* Load a whitelist file: one 40-hex info-hash per line; '#' comments and blank lines allowed. */
int ts_load_whitelist(struct tracker_state *st, const char *path, struct ds_err *e);

/* Parsing. query = the part after '?' (not NUL-terminated necessarily). 0 or -1 with a reason in e. */
int ts_parse_announce(const char *query, size_t len, struct ts_announce *a, struct ds_err *e);
int ts_parse_scrape(const char *query, size_t len, struct ts_scrape *s, struct ds_err *e);
/* Percent-decode src into dst (capacity cap). Returns the decoded length, or -1 on a bad escape / overflow. */
long ts_pct_decode(const char *src, size_t len, uint8_t *dst, size_t cap);
int ts_parse_addr(const char *s, struct ts_addr *out);   /* numeric IPv4/IPv6, port left 0 */

/* The outcome of an announce, before encoding. */
struct ts_reply {
    const char *failure;            /* non-NULL: refused with this reason (nothing else meaningful) */
    const char *warning;
    uint32_t interval, min_interval;
    uint32_t complete, incomplete, downloaded;
    size_t n_peers;
    struct ts_addr peers[TS_MAX_NUMWANT];
    uint8_t peer_ids[TS_MAX_NUMWANT][20];
};

/* Apply an announce from `src` (the connection's address; its port is ignored). trust_ip: honour a->ip.
 * want_family: AF_INET/AF_INET6 to return only that family (UDP), 0 for both. */
void ts_announce(struct tracker_state *st, const struct ts_announce *a, const struct ts_addr *src, bool trust_ip,
                 int want_family, uint64_t now_ms, struct ts_reply *r);

/* Encoders (0, or -1 on OOM). */
int ts_encode_reply(const struct ts_reply *r, bool compact, bool no_peer_id, struct buf *out);
int ts_encode_failure(const char *reason, struct buf *out);
/* Counts for one info-hash; false when it is not served. */
bool ts_counts(const struct tracker_state *st, const uint8_t info_hash[20], uint32_t *complete,
               uint32_t *incomplete, uint32_t *downloaded);
int ts_encode_scrape(const struct tracker_state *st, const struct ts_scrape *s, struct buf *out);

/* Whole HTTP requests: parse + apply + encode. Always fills out with a bencoded body; returns the HTTP status
 * (200; 400 for an over-long query). */
int ts_http_announce(struct tracker_state *st, const char *query, size_t len, const struct ts_addr *src,
                     bool trust_ip, uint64_t now_ms, struct buf *out);
int ts_http_scrape(struct tracker_state *st, const char *query, size_t len, struct buf *out);

/* Drop peers silent for longer than expire_s. Returns how many went. */
size_t ts_expire(struct tracker_state *st, uint64_t now_ms);

/* The status JSON for /status.json (see the dashboard). */
int ts_status_json(const struct tracker_state *st, uint64_t now_ms, struct buf *out);

/* Totals, for tests and logs. */
size_t ts_num_peers(const struct tracker_state *st);
size_t ts_num_torrents(const struct tracker_state *st);

void ts_addr_format(const struct ts_addr *a, bool with_port, char *out, size_t outlen);

#endif
