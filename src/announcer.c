#include "announcer.h"

#include <poll.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "tracker_client.h"

static bool is_http(const char *url) { return !strncmp(url, "http://", 7) || !strncmp(url, "https://", 8); }

int announcer_init(struct announcer *a, struct session *s, const uint8_t peer_id[20], uint16_t port,
                   struct ds_err *e)
{
    memset(a, 0, sizeof *a);
    a->s = s;
    a->mi = s->mi;
    memcpy(a->peer_id, peer_id, 20);
    a->port = port;
    a->pending = AE_STARTED;
    if (gethostname(a->name, sizeof a->name - 1) != 0)
        a->name[0] = 0;
    for (size_t i = 0; i < a->mi->num_trackers; i++)
        if (is_http(a->mi->trackers[i])) {
            if (!a->any_http)
                a->cur = i;
            a->any_http = true;
        }
    if (!a->any_http)
        return 0;
    return tracker_worker_start(&a->w, 15, e);
}

int announcer_fd(const struct announcer *a) { return a->w ? tracker_worker_fd(a->w) : -1; }

/* Progress extras for diskswarm's own tracker (other trackers ignore unknown parameters):
 * ds_name, ds_rate/ds_up (bytes/s since the last announce), ds_npieces and ds_pieces (have-bitfield in hex,
 * left out above 65536 pieces to keep the URL bounded). */
static char *progress_extra(struct announcer *a, const struct session_stats *st, uint64_t now)
{
    struct buf b = {0};
    double dt = a->last_t && now > a->last_t ? (double)(now - a->last_t) / 1000.0 : 0.0;
    uint64_t rate = dt > 0 ? (uint64_t)((double)(st->payload_down - a->last_down) / dt) : 0;
    uint64_t up = dt > 0 ? (uint64_t)((double)(st->payload_up - a->last_up) / dt) : 0;
    a->last_t = now;
    a->last_down = st->payload_down;
    a->last_up = st->payload_up;
    int rc = buf_printf(&b, "ds_name=");
    for (const char *c = a->name; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_')
            rc |= buf_put_u8(&b, ch);
        else
            rc |= buf_printf(&b, "%%%02X", ch);
    }
    rc |= buf_printf(&b, "&ds_rate=%llu&ds_up=%llu&ds_npieces=%u", (unsigned long long)rate,
                     (unsigned long long)up, st->num_pieces);
    if (st->num_pieces <= 65536) {
        rc |= buf_printf(&b, "&ds_pieces=");
        const struct bitfield *h = &a->s->have;
        char hex[3];
        for (size_t i = 0; i < bitfield_bytes(h->nbits); i++) {
            snprintf(hex, sizeof hex, "%02x", h->bits[i]);
            rc |= buf_put(&b, hex, 2);
        }
    }
    char *out = rc ? NULL : buf_steal_str(&b);
    buf_free(&b);
    return out;
}

static void submit(struct announcer *a, enum announce_event ev)
{
    struct session_stats st;
    session_stats(a->s, &st);
    struct announce_req r;
    memset(&r, 0, sizeof r);
    r.announce_url = a->mi->trackers[a->cur];
    memcpy(r.info_hash, a->mi->info_hash, 20);
    memcpy(r.peer_id, a->peer_id, 20);
    r.port = a->port;
    r.uploaded = st.payload_up;
    r.downloaded = st.payload_down;
    r.left = st.total_bytes - st.bytes_have;
    r.event = ev;
    r.numwant = ev == AE_STOPPED ? 0 : 200;
    char *extra = progress_extra(a, &st, net_now_ms());
    r.extra = extra;
    char *url = tracker_announce_url(&r);
    free(extra);
    if (!url)
        return;
    if (tracker_worker_submit(a->w, url) == 0)
        a->inflight = ev;
    free(url);
}

void announcer_tick(struct announcer *a, uint64_t now)
{
    if (!a->w || tracker_worker_busy(a->w) || now < a->next_at)
        return;
    enum announce_event ev = a->pending;
    a->pending = AE_NONE;
    submit(a, ev);
    /* provisional: the response sets the real schedule */
    a->next_at = now + 30000;
}

static void next_tracker(struct announcer *a)
{
    for (size_t k = 1; k <= a->mi->num_trackers; k++) {
        size_t i = (a->cur + k) % a->mi->num_trackers;
        if (is_http(a->mi->trackers[i])) {
            a->cur = i;
            return;
        }
    }
}

void announcer_on_ready(void *ctx, int fd)
{
    (void)fd;
    struct announcer *a = ctx;
    struct tracker_result res;
    if (tracker_worker_take(a->w, &res) != 1)
        return;
    uint64_t now = net_now_ms();
    struct announce_resp resp;
    struct ds_err e;
    memset(&resp, 0, sizeof resp);
    bool ok = false;
    if (!res.ok) {
        snprintf(a->last_error, sizeof a->last_error, "%s: %s", a->mi->trackers[a->cur], res.error);
    } else if (tracker_parse_response(res.body, res.body_len, &resp, &e)) {
        snprintf(a->last_error, sizeof a->last_error, "%s: %s", a->mi->trackers[a->cur], e.msg);
    } else if (resp.failure) {
        snprintf(a->last_error, sizeof a->last_error, "%s refused: %s", a->mi->trackers[a->cur], resp.failure);
    } else {
        ok = true;
    }
    if (ok) {
        a->failures = 0;
        a->last_error[0] = 0;
        a->last_peers = (uint32_t)resp.num_peers;
        for (size_t i = 0; i < resp.num_peers; i++)
            session_add_candidate(a->s, &resp.peers[i]);
        int64_t iv = resp.interval > 0 ? resp.interval : 120;
        if (iv > 1800)
            iv = 1800;
        /* While downloading, report every few seconds (the tracker's dashboard shows live progress, and
         * machines that join late are found quickly), but never more often than the tracker's min interval.
         * 1000 machines every 5 s is 200 announces/s: well within what a tracker serves. */
        if (!session_complete(a->s) && iv > 5)
            iv = resp.min_interval > 5 ? (resp.min_interval < iv ? resp.min_interval : iv) : 5;
        if (iv < 2)
            iv = 2;
        a->interval_s = iv;
        a->next_at = now + (uint64_t)iv * 1000u;
    } else {
        a->failures++;
        if (a->inflight != AE_NONE && a->pending == AE_NONE)
            a->pending = a->inflight; /* the event still has to reach a tracker */
        next_tracker(a);
        uint32_t back = a->failures < 6 ? (1u << a->failures) : 60u;
        a->next_at = now + back * 1000u;
    }
    a->inflight = AE_NONE;
    announce_resp_free(&resp);
    free(res.body);
}

void announcer_completed(struct announcer *a)
{
    if (!a->w)
        return;
    a->pending = AE_COMPLETED;
    a->next_at = 0;
}

void announcer_stop(struct announcer *a, int wait_ms)
{
    if (!a->w)
        return;
    int waited = 0;
    while (tracker_worker_busy(a->w) && waited < wait_ms) {
        struct pollfd pfd = {.fd = tracker_worker_fd(a->w), .events = POLLIN};
        poll(&pfd, 1, 50);
        waited += 50;
        struct tracker_result res;
        if (tracker_worker_take(a->w, &res) == 1)
            free(res.body);
    }
    if (!tracker_worker_busy(a->w) && waited < wait_ms) {
        submit(a, AE_STOPPED);
        while (tracker_worker_busy(a->w) && waited < wait_ms) {
            struct pollfd pfd = {.fd = tracker_worker_fd(a->w), .events = POLLIN};
            poll(&pfd, 1, 50);
            waited += 50;
            struct tracker_result res;
            if (tracker_worker_take(a->w, &res) == 1)
                free(res.body);
        }
    }
    tracker_worker_stop(a->w);
    a->w = NULL;
}
