/* peer_run.h — one BitTorrent peer run on an opened store: session + event loop + tracker announcer + signal
 * handling + progress output, until the run's end condition. Used by `seed`/`fetch` (cmd_peer.c), `serve`
 * (one run per torrent, on threads) and `deploy`.
 *
 * End conditions, checked after every loop round (≤ 200 ms):
 *   - SIGINT/SIGTERM/SIGHUP (when handle_signals) or *stop becoming true: reason "signal" / "stopped";
 *   - a storage error: rc 1;
 *   - tick() returning a reason (polled about once a second, e.g. deploy asking its server whether the swarm is
 *     done), after completion only;
 *   - --expect / --seed-time as documented for seed/fetch.
 * A fetching run is ok only when every piece is verified on the store. */
#ifndef DS_PEER_RUN_H
#define DS_PEER_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr_filter.h"
#include "bitfield.h"
#include "metainfo.h"
#include "session.h"
#include "store.h"

struct peer_run_opts {
    struct metainfo *mi;            /* loaded torrent (its trackers are replaced when trackers is given) */
    struct store *store;            /* opened: STORE_WRITE for a fetch, a read-only source for a seed */
    const char *dev;                /* for messages */
    const char *role;               /* progress role: "seed", "fetch", "deploy", "serve" */
    bool fetch;                     /* download missing pieces (else: seed, every piece present) */
    const char *listen;             /* "[ADDR:]PORT" */
    const char *const *peers;       /* HOST:PORT to dial */
    size_t n_peers;
    const char *const *trackers;    /* announce URLs replacing the torrent's (n_trackers > 0) */
    size_t n_trackers;
    bool no_tracker;
    bool verify;                    /* seed: hash the whole source first */
    bool super_seed;                /* seed: show pieces a few at a time, never-sent first (session.h) */
    bool recheck;                   /* fetch: hash what is already on the target first (--resume) */
    const struct bitfield *initial_have; /* fetch: pieces known verified and durable (a state file); may be NULL */
    const struct cidr *allow;
    size_t n_allow;
    const char *secret_file;
    bool json, quiet, verbose;
    int64_t seed_time;              /* seconds; -1 = not given */
    uint64_t expect;                /* 0 = not given; counted from the peers this session saw complete */
    uint64_t max_peers, pipeline;   /* 0 = session default */
    /* compressed pieces between diskswarm peers (zpiece.h): on unless no_wire_compress */
    bool no_wire_compress;
    int64_t zcache_mib;             /* 0 = default (ZP_DEFAULT_CACHE_MIB), -1 = none */
    int zlevel;                     /* 0 = default (ZP_DEFAULT_LEVEL), -1 = never compress on the fly */
    bool no_signals;                /* don't block/read SIGINT/SIGTERM/SIGHUP (the caller handles them) */
    const atomic_bool *stop;        /* optional: end the run when it becomes true */
    /* optional, once a second: return NULL to go on, or a reason to end the run (honoured once complete) */
    const char *(*tick)(void *ctx, struct session *s, bool completed, uint64_t now);
    /* optional, once on completion (after the store is synced): non-zero fails the run */
    int (*on_complete)(void *ctx, struct session *s);
    void *ctx;
};

struct peer_run_result {
    bool complete;                  /* every piece verified */
    char reason[64];                /* why it ended */
    struct session_stats ss;
    uint64_t seconds_to_complete_ms;
};

/* Returns the exit status: 0 ok, 1 failure, EXIT_USAGE for a bad --peer. res may be NULL. */
int peer_run(const struct peer_run_opts *o, struct peer_run_result *res);

/* Replace mi's trackers by urls (copied). 0, or -1 on OOM. */
int peer_run_set_trackers(struct metainfo *mi, const char *const *urls, size_t n);

/* Read a swarm secret file (>= SWARM_SECRET_MIN bytes, trailing newline ignored); prints the error. */
int peer_run_read_secret(const char *path, uint8_t *buf, size_t cap, size_t *len);

#endif
