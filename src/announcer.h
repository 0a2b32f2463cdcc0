/* announcer.h — when and what to tell the HTTP trackers of a torrent: `started` at once, periodic announces
 * at the tracker's interval (more often while downloading with few peers, so a lab that boots over a minute
 * finds itself quickly), `completed` when done, `stopped` on exit. Peers it learns go to the session as
 * candidates. Requests run on the tracker worker thread; results come back through net_watch. */
#ifndef DS_ANNOUNCER_H
#define DS_ANNOUNCER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "session.h"
#include "tracker_worker.h"

struct announcer {
    struct tracker_worker *w;
    struct session *s;
    const struct metainfo *mi;
    uint8_t peer_id[20];
    uint16_t port;
    size_t cur;                  /* tracker in use (index into mi->trackers) */
    uint64_t next_at;
    enum announce_event pending; /* event to send with the next announce */
    enum announce_event inflight;
    int64_t interval_s;
    uint32_t failures;
    char last_error[1024];
    uint32_t last_peers;
    bool any_http;
    /* for the progress extras our tracker shows on its dashboard */
    uint64_t last_t, last_down, last_up;
    char name[64];
};

/* Returns 0 with a->any_http false when the torrent names no http(s) tracker (nothing to do). */
int announcer_init(struct announcer *a, struct session *s, const uint8_t peer_id[20], uint16_t port,
                   struct ds_err *e);
int announcer_fd(const struct announcer *a);
void announcer_tick(struct announcer *a, uint64_t now);
void announcer_on_ready(void *ctx, int fd);
void announcer_completed(struct announcer *a);
/* Best-effort `stopped`, waiting at most wait_ms; then frees. */
void announcer_stop(struct announcer *a, int wait_ms);

#endif
