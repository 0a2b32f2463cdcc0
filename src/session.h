/* session.h — the swarm engine for one torrent: per-peer protocol state machines, request scheduling,
 * choking, piece verification, HAVE broadcast, peer exchange. Sans-I/O for the network: the event loop feeds
 * received bytes into peer->in and sends whatever appears in peer->out; the session never touches a socket.
 * Storage goes through struct store (pread/pwrite on the target).
 *
 * Rules kept here: only blocks this peer was asked for are written, at offsets inside the torrent; a piece is
 * announced (HAVE) only after its SHA-1 matched; memory per peer is bounded (input ≤ one message, output ≤ a
 * watermark, request queues capped). */
#ifndef DS_SESSION_H
#define DS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr_filter.h"
#include "bitfield.h"
#include "buf.h"
#include "err.h"
#include "metainfo.h"
#include "picker.h"
#include "store.h"
#include "swarm_auth.h"
#include "tracker_client.h"
#include "wire.h"
#include "zpiece.h"

#define SESSION_MAX_PEER_REQS 512    /* requests a peer may queue at us; more is a flood: drop it */
#define SESSION_MAX_CANDIDATES 2048
/* incoming connections one host may hold before finishing the handshake (see half_open_from) */
#define SESSION_MAX_HALF_OPEN_PER_HOST 4
#define SESSION_ALLOWED_FAST 10      /* BEP 6 allowed-fast set size we grant and accept */
#define SESSION_QUEUE_MS 150         /* requests kept outstanding at a peer: this long at its measured rate */
#define SESSION_QUEUE_MIN (64u * 1024u)   /* ... but at least this many bytes */
#define SESSION_QUEUE_START (256u * 1024u) /* ... and this many before its rate is known */

struct session_config {
    const struct metainfo *mi;
    struct store *store;
    uint8_t peer_id[20];
    uint16_t listen_port;           /* advertised in the extension handshake (0 = none) */
    bool have_all;                  /* seeding from a trusted source: all pieces present without hashing */
    const struct bitfield *initial_have; /* pieces already verified on the target (resume), may be NULL */
    /* Super-seeding (for the original seed of a deployment): each peer is shown only a few pieces at a time,
     * never-sent ones first, so the seed's uplink sends every piece about once and the machines trade the
     * rest among themselves. Ends by itself once the connected peers together hold every piece. */
    bool super_seed;
    /* pieces shown to a peer and not yet had by it; 0 = automatic: about 4 MiB worth shared among the
     * peers still downloading, at least one each (a piece in flight at a peer is never shown to a second
     * one, so a smaller window means pieces complete sooner and are forwarded sooner) */
    uint32_t super_window;
    uint32_t max_peers;             /* connections, default 64 */
    uint32_t upload_slots;          /* unchoked peers, default 64 (cooperative LAN: everyone interested) */
    uint32_t pipeline;              /* outstanding block requests per peer at most, default 128; fewer at a
                                     * peer that delivers slowly (SESSION_QUEUE_MS) */
    uint32_t block_size;            /* default WIRE_BLOCK_SIZE */
    size_t out_watermark;           /* stop filling a peer's output above this many bytes, default 64 KiB: our
                                     * REQUESTs and HAVEs to a peer queue behind the piece data we send it */
    uint64_t seed;                  /* RNG seed for piece tie-breaks (0: from peer_id) */
    /* who may talk to us (--allow); empty = anyone */
    const struct cidr *allow;
    size_t n_allow;
    /* optional shared swarm secret (see swarm_auth.h); NULL = open swarm */
    const uint8_t *secret;
    size_t secret_len;
    uint8_t nonce_key[16];          /* random, for per-connection nonces */
    /* optional: peer connects/disconnects and other notable events, for --verbose */
    void (*log)(void *ctx, const char *msg);
    void *log_ctx;
    /* compressed pieces between diskswarm peers (zpiece.h): offered and used when set */
    bool zpiece;
    size_t zcache_bytes;            /* frames received compressed kept for forwarding */
    int zlevel;                     /* compress on the fly at this zstd level (0: stored/cached frames only) */
};

enum peer_state { PS_HANDSHAKE = 0, PS_ACTIVE, PS_CLOSED };

struct peer_req {                   /* a block request, ours or theirs */
    uint32_t piece, begin, length;
    uint8_t z;                      /* a whole piece asked for compressed (ds_zpiece) */
};

struct sess_peer {
    uint16_t slot;                  /* small id, reused after the peer is freed */
    enum peer_state state;
    bool outgoing;
    struct peer_addr addr;          /* remote socket address */
    struct peer_addr listen;        /* where it accepts connections (outgoing: addr; incoming: from ext 'p') */
    bool listen_known;
    int cand;                       /* index of the candidate entry it came from, or -1 */
    uint8_t peer_id[20];
    char client[64];                /* 'v' from the extension handshake */

    struct buf in, out;
    bool handshake_sent;
    bool closing;                   /* the loop must close it; reason says why */
    char reason[160];

    bool fast, extended;            /* BEP 6 / BEP 10 negotiated */
    uint8_t ut_pex_id;              /* peer's id for ut_pex, 0 = unsupported */
    uint8_t ds_auth_id;             /* peer's id for ds_auth, 0 = unsupported */
    uint8_t ds_zpiece_id;           /* peer's id for ds_zpiece, 0 = unsupported (or ours is off) */
    bool authed;                    /* proved the swarm secret (always true in an open swarm) */
    uint8_t nonce[SWARM_NONCE_LEN]; /* ours, sent to this peer */
    bool am_choking, am_interested, peer_choking, peer_interested;
    bool got_bitfield;
    struct bitfield have;
    uint32_t wanted;                /* pieces it has that we lack */
    bool seen_complete;

    struct peer_req *ours;          /* our outstanding requests to it (may span several picker blocks) */
    size_t n_ours, cap_ours;
    uint64_t ours_bytes;            /* bytes requested and not yet received */
    uint32_t max_req;               /* largest request it serves: 16 KiB, more for diskswarm peers */
    struct peer_req *theirs;        /* its requests to us, FIFO */
    size_t n_theirs, head_theirs, cap_theirs;

    uint64_t t_connected, t_last_recv, t_last_send, t_last_block, t_last_pex;
    /* how fast it delivers what we ask (bytes/s, 0 = not measured yet): our request queue at it is sized to
     * about SESSION_QUEUE_MS of that, so a slow source does not hold pieces half-done for seconds */
    uint64_t down_rate;
    uint64_t rate_t, rate_bytes;    /* start of the current measuring interval */
    uint64_t bytes_down, bytes_up;  /* payload */
    uint32_t strikes;               /* hash failures it contributed to */
    /* BEP 6 allowed-fast: pieces it lets us request while choked, and pieces we let it request */
    uint32_t fast_in[SESSION_ALLOWED_FAST];
    uint32_t n_fast_in;
    uint32_t fast_out[SESSION_ALLOWED_FAST];
    uint32_t n_fast_out;
    struct bitfield revealed;       /* super-seeding: pieces we have announced to it */
    uint32_t shown_pending;         /* super-seeding: of those, pieces it does not have yet */
};

struct session_stats {
    uint32_t pieces_have, num_pieces;
    uint64_t bytes_have, total_bytes;
    uint64_t payload_down, payload_up;
    uint32_t peers, seeds;
    uint32_t hash_failures;
    uint32_t peers_seen_complete;
};

struct candidate {
    struct peer_addr addr;
    uint64_t next_try;
    uint32_t fails;
    bool connected;
    bool banned;                    /* self, or sent corrupt data */
};

struct session {
    struct session_config cfg;
    const struct metainfo *mi;
    struct store *store;
    struct bitfield have;
    uint64_t bytes_have;
    struct picker picker;
    struct sess_peer **peers;       /* indexed by slot; NULL when free */
    uint32_t n_slots;
    uint32_t n_peers;
    struct candidate *cands;
    size_t n_cands;
    uint8_t (*complete_ids)[20];    /* distinct peer ids seen with every piece */
    size_t n_complete_ids;
    uint8_t (*banned_ids)[20];
    size_t n_banned_ids;
    uint64_t payload_down, payload_up;
    uint32_t hash_failures;
    bool fatal;                     /* a storage error: the loop must stop; fatal_err says why */
    struct ds_err fatal_err;
    uint8_t *blockbuf;              /* scratch for read-back hashing */
    uint64_t nonce_ctr;
    struct hasher *hasher;          /* verification on another thread (set by the event loop), or NULL */
    bool super_active;              /* super-seeding still in force */
    uint32_t *sent_count;           /* super-seeding: times each piece was shown to a peer */
    uint32_t *in_flight;            /* super-seeding: connected peers shown the piece that lack it yet */
    uint64_t *reveal_t;             /* super-seeding: when each piece was last shown */
    uint32_t reveal_cursor;
    uint32_t super_shown;           /* super-seeding: pieces shown and not landed yet (sum of in_flight) */
    uint32_t super_landed_n;        /* super-seeding: pieces that left the window (landed at the peer they
                                     * were shown to, or that peer left): grows the slow start */
    uint32_t reveal_peer_cursor;    /* super-seeding: where the next round of reveals to all peers starts */
    uint64_t up_rate;               /* super-seeding: upload rate, bytes/s, averaged over SUPER_RATE_MS samples */
    uint64_t up_rate_t, up_rate_bytes; /* ... start of the current measurement and payload_up then */
    struct zpiece *z;               /* compressed pieces (cfg.zpiece), or NULL */
};

int session_init(struct session *s, const struct session_config *cfg, struct ds_err *e);
void session_free(struct session *s);

/* Why an incoming connection from addr would be refused now (outside --allow, too many unfinished
 * handshakes from that host, no free slot), or NULL when it would be taken. */
const char *session_refuse_reason(const struct session *s, const struct peer_addr *addr);
/* A new TCP connection (outgoing: we dialled addr; cand = candidate index or -1). NULL when refused
 * (session_refuse_reason for incoming ones) or out of memory. */
struct sess_peer *session_peer_new(struct session *s, const struct peer_addr *addr, bool outgoing, int cand,
                                   uint64_t now);
/* Bytes were appended to p->in: process every complete message. */
void session_peer_input(struct session *s, struct sess_peer *p, uint64_t now);
/* Top up p->out with requested blocks while it holds less than the watermark. */
void session_peer_fill(struct session *s, struct sess_peer *p, uint64_t now);
/* The connection is gone (closed by either side): release everything it held and free it. */
void session_peer_free(struct session *s, struct sess_peer *p);
/* Timers: keep-alives, time-outs, peer exchange, requests. Call about once a second. */
void session_tick(struct session *s, uint64_t now);

/* Verify pieces on a hashing thread from now on (see hasher.h); the loop calls session_hasher_ready when
 * hasher_fd is readable. Without one, pieces are hashed inline as blocks arrive. */
struct hasher;
void session_attach_hasher(struct session *s, struct hasher *h);
void session_hasher_ready(struct session *s, uint64_t now);

/* May this address talk to us (--allow)? */
bool session_addr_allowed(const struct session *s, const struct peer_addr *a);

/* Peer addresses learned from trackers, PEX or the command line. */
void session_add_candidate(struct session *s, const struct peer_addr *a);
/* A candidate worth dialling now (marks it as being tried); -1 when none. */
int session_next_candidate(struct session *s, uint64_t now);
/* An outgoing connection to candidate i failed before a peer existed. */
void session_candidate_failed(struct session *s, int i, uint64_t now);

/* Report an event through cfg.log (no-op without one). */
void session_log(const struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

bool session_complete(const struct session *s);
void session_stats(const struct session *s, struct session_stats *st);

#endif
