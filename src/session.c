#include "session.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bencode.h"
#include "hasher.h"

#define HANDSHAKE_TIMEOUT_MS 20000
#define IDLE_TIMEOUT_MS 150000
#define KEEPALIVE_MS 60000
#define STALL_TIMEOUT_MS 30000
#define PEX_INTERVAL_MS 5000 /* machines must find each other within the first seconds of a deployment */
#define PEX_MAX_ADDED 50
#define EXT_MSG_MAX (64u * 1024u)
#define OUR_UT_PEX_ID 1
#define OUR_DS_AUTH_ID 2
#define OUR_DS_ZPIECE_ID 3
#define AUTH_TIMEOUT_MS 15000
#define SOLE_STRIKES_TO_BAN 2
#define SUPER_STALE_MS 20000 /* a piece shown to a peer that has not fetched it by then may go to another */
#define SUPER_END_COPIES 2    /* end of the first pass: a piece may be in flight at this many peers */

/* ---------- small helpers ---------- */

static void peer_close(struct sess_peer *p, const char *why)
{
    if (!p->closing) {
        p->closing = true;
        snprintf(p->reason, sizeof p->reason, "%s", why);
    }
}

static bool id_in(uint8_t (*ids)[20], size_t n, const uint8_t id[20])
{
    for (size_t i = 0; i < n; i++)
        if (!memcmp(ids[i], id, 20))
            return true;
    return false;
}

static int id_add(uint8_t (**ids)[20], size_t *n, const uint8_t id[20])
{
    if (id_in(*ids, *n, id))
        return 0;
    if (*n >= 65536)
        return -1;
    uint8_t(*nv)[20] = realloc(*ids, (*n + 1) * sizeof **ids);
    if (!nv)
        return -1;
    memcpy(nv[*n], id, 20);
    *ids = nv;
    (*n)++;
    return 0;
}

static bool addr_eq(const struct peer_addr *a, const struct peer_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
    }
    return false;
}

/* Same host, whatever the port. */
static bool addr_same_host(const struct peer_addr *a, const struct peer_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
    }
    return false;
}

/* Incoming connections from one host that have not finished the handshake yet. An honest peer finishes it
 * within milliseconds, so a host holding several open is stalling on purpose (slowloris): it may not take
 * the slots every other machine of the swarm needs. Machines behind one address (NAT, or several processes
 * on one test host) still connect without limit once they handshake. */
static uint32_t half_open_from(const struct session *s, const struct peer_addr *a)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        const struct sess_peer *p = s->peers[i];
        if (p && !p->outgoing && !p->closing && p->state == PS_HANDSHAKE && addr_same_host(&p->addr, a))
            n++;
    }
    return n;
}

static void oom(struct session *s)
{
    if (!s->fatal) {
        s->fatal = true;
        ds_errf(&s->fatal_err, "out of memory");
    }
}

void session_log(const struct session *s, const char *fmt, ...)
{
    if (!s->cfg.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->cfg.log(s->cfg.log_ctx, msg);
}

static void mark_sent(struct sess_peer *p, uint64_t now) { p->t_last_send = now; }

/* ---------- init / free ---------- */

int session_init(struct session *s, const struct session_config *cfg, struct ds_err *e)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    if (!s->cfg.max_peers)
        s->cfg.max_peers = 64;
    if (s->cfg.max_peers > PICKER_GONE_SLOT - 1)
        s->cfg.max_peers = PICKER_GONE_SLOT - 1;
    if (!s->cfg.upload_slots)
        s->cfg.upload_slots = 64;
    if (!s->cfg.pipeline)
        s->cfg.pipeline = 128;
    if (!s->cfg.block_size)
        s->cfg.block_size = WIRE_BLOCK_SIZE;
    if (!s->cfg.out_watermark)
        s->cfg.out_watermark = 64 * 1024;
    s->mi = cfg->mi;
    s->store = cfg->store;
    const struct metainfo *mi = s->mi;
    if (mi->piece_length > UINT32_MAX)
        return ds_errf(e, "piece length %llu is too large for the wire protocol",
                       (unsigned long long)mi->piece_length);
    if (bitfield_init(&s->have, mi->num_pieces))
        return ds_errf(e, "out of memory");
    if (cfg->have_all) {
        bitfield_set_all(&s->have);
        s->bytes_have = mi->total_length;
    } else if (cfg->initial_have && cfg->initial_have->nbits == mi->num_pieces) {
        for (uint32_t i = 0; i < mi->num_pieces; i++)
            if (bitfield_get(cfg->initial_have, i)) {
                bitfield_set(&s->have, i);
                s->bytes_have += metainfo_piece_size(mi, i);
            }
    }
    uint64_t seed = cfg->seed;
    if (!seed)
        memcpy(&seed, cfg->peer_id + 12, sizeof seed);
    size_t max_partials = 64 + 2 * (size_t)s->cfg.max_peers;
    if (picker_init(&s->picker, mi->num_pieces, mi->piece_length, mi->total_length, s->cfg.block_size, &s->have,
                    max_partials, seed)) {
        bitfield_free(&s->have);
        return ds_errf(e, "out of memory");
    }
    if (cfg->super_seed && cfg->have_all) {
        s->super_active = true;
        s->sent_count = calloc(mi->num_pieces ? mi->num_pieces : 1, sizeof *s->sent_count);
        s->in_flight = calloc(mi->num_pieces ? mi->num_pieces : 1, sizeof *s->in_flight);
        s->reveal_t = calloc(mi->num_pieces ? mi->num_pieces : 1, sizeof *s->reveal_t);
    }
    if (cfg->zpiece) {
        struct ds_err ze;
        s->z = malloc(sizeof *s->z);
        if (s->z && zpiece_init(s->z, mi, cfg->zcache_bytes, cfg->zlevel, &ze)) {
            free(s->z);
            s->z = NULL; /* e.g. pieces too large: plain transfer only */
        }
    }
    s->peers = calloc(s->cfg.max_peers, sizeof *s->peers);
    s->blockbuf = malloc(WIRE_MAX_BLOCK);
    s->cands = calloc(SESSION_MAX_CANDIDATES, sizeof *s->cands);
    if (!s->peers || !s->blockbuf || !s->cands ||
        (s->super_active && (!s->sent_count || !s->in_flight || !s->reveal_t))) {
        session_free(s);
        return ds_errf(e, "out of memory");
    }
    return 0;
}

static void peer_destroy(struct sess_peer *p)
{
    bitfield_free(&p->revealed);
    buf_free(&p->in);
    buf_free(&p->out);
    bitfield_free(&p->have);
    free(p->ours);
    free(p->theirs);
    free(p);
}

void session_free(struct session *s)
{
    if (s->peers)
        for (uint32_t i = 0; i < s->n_slots; i++)
            if (s->peers[i])
                peer_destroy(s->peers[i]);
    free(s->peers);
    picker_free(&s->picker);
    bitfield_free(&s->have);
    free(s->blockbuf);
    free(s->cands);
    free(s->complete_ids);
    free(s->banned_ids);
    free(s->sent_count);
    free(s->in_flight);
    free(s->reveal_t);
    if (s->z) {
        zpiece_free(s->z);
        free(s->z);
    }
    memset(s, 0, sizeof *s);
}

/* ---------- outgoing messages ---------- */

static void send_handshake(struct session *s, struct sess_peer *p, uint64_t now)
{
    struct wire_handshake hs;
    memset(&hs, 0, sizeof hs);
    hs.reserved[WIRE_RSV_EXTENDED_BYTE] |= WIRE_RSV_EXTENDED_MASK;
    hs.reserved[WIRE_RSV_FAST_BYTE] |= WIRE_RSV_FAST_MASK;
    memcpy(hs.info_hash, s->mi->info_hash, 20);
    memcpy(hs.peer_id, s->cfg.peer_id, 20);
    if (wire_put_handshake(&p->out, &hs))
        oom(s);
    p->handshake_sent = true;
    mark_sent(p, now);
}

static void send_ext_handshake(struct session *s, struct sess_peer *p)
{
    struct buf b = {0};
    int rc = benc_dict_begin(&b);
    rc |= benc_cstr(&b, "ds_maxreq");
    rc |= benc_int(&b, WIRE_MAX_BLOCK);
    if (s->cfg.secret) {
        rc |= benc_cstr(&b, "ds_nonce");
        rc |= benc_str(&b, p->nonce, SWARM_NONCE_LEN);
    }
    rc |= benc_cstr(&b, "ds_seed");
    rc |= benc_int(&b, s->cfg.have_all ? 1 : 0);
    rc |= benc_cstr(&b, "m");
    rc |= benc_dict_begin(&b);
    if (s->cfg.secret) {
        rc |= benc_cstr(&b, "ds_auth");
        rc |= benc_int(&b, OUR_DS_AUTH_ID);
    }
    if (s->z) {
        rc |= benc_cstr(&b, ZP_EXT_NAME);
        rc |= benc_int(&b, OUR_DS_ZPIECE_ID);
    }
    rc |= benc_cstr(&b, "ut_pex");
    rc |= benc_int(&b, OUR_UT_PEX_ID);
    rc |= benc_end(&b);
    if (s->cfg.listen_port) {
        rc |= benc_cstr(&b, "p");
        rc |= benc_int(&b, s->cfg.listen_port);
    }
    rc |= benc_cstr(&b, "reqq");
    rc |= benc_int(&b, SESSION_MAX_PEER_REQS);
    rc |= benc_cstr(&b, "v");
    rc |= benc_cstr(&b, "diskswarm 0.1.0");
    rc |= benc_end(&b);
    if (rc || wire_put_extended(&p->out, 0, b.data, b.len))
        oom(s);
    buf_free(&b);
}

static void send_have_state(struct session *s, struct sess_peer *p)
{
    int rc;
    if (s->super_active)
        rc = p->fast ? wire_put_simple(&p->out, WM_HAVE_NONE) : 0; /* pieces are shown one by one */
    else if (p->fast && s->have.count == s->have.nbits)
        rc = wire_put_simple(&p->out, WM_HAVE_ALL);
    else if (p->fast && s->have.count == 0)
        rc = wire_put_simple(&p->out, WM_HAVE_NONE);
    else if (s->have.count == 0)
        rc = 0; /* a bitfield may be omitted when we have nothing */
    else
        rc = wire_put_bitfield(&p->out, s->have.bits, bitfield_bytes(s->have.nbits));
    if (rc)
        oom(s);
}

static bool in_set(const uint32_t *set, uint32_t n, uint32_t v)
{
    for (uint32_t i = 0; i < n; i++)
        if (set[i] == v)
            return true;
    return false;
}

/* A byte counter's rate: once at least min_ms have passed since *t, the rate over that interval is averaged
 * into *rate (half the old value, half the new) and the next interval starts now, at counter. */
static void rate_update(uint64_t *rate, uint64_t *t, uint64_t *at_t, uint64_t counter, uint64_t now,
                        uint64_t min_ms)
{
    if (now - *t < min_ms)
        return;
    uint64_t inst = (counter - *at_t) * 1000u / (now - *t);
    *rate = *rate ? (*rate + inst) / 2 : inst;
    *t = now;
    *at_t = counter;
}

/* ---------- super-seeding ---------- */

/* Pieces the seed may have shown and not yet landed, over all peers together: SUPER_WINDOW_MS of the seed's
 * recent upload rate, at most SUPER_WINDOW_MAX (also before a rate is measured) and at least 2 pieces,
 * reached by a slow start. It begins at 2 and grows by one for every piece that lands, as TCP's window does.
 * At the start every peer is empty: with a piece shown to each of N peers at once, the seed's uplink is split
 * N ways, the first pieces reach their peers only after N piece-times, and meanwhile the peers' uplinks idle.
 * With two in flight, a piece is out in two piece-times and its peer starts passing it on while the seed sends
 * the next (a binomial pipeline); when the window is full every peer has something to trade.
 * Why a time: every piece shown is in flight at one peer, so the window is what the seed's uplink is split
 * over, and a piece takes window / rate to reach its first peer; the whole swarm trails the seed by that much
 * (at the start, and again at the end). On a slow link a fixed 4 MiB is a long lag. Cluster bench, 16
 * machines at 50 Mbit/s: 4 MiB (0.67 s) gave 1.118-1.122x the limit, 2 MiB (0.33 s) 1.087-1.110x, 1 MiB
 * (0.17 s) 1.105x. Why a cap: a rate averaged over the last samples (rate in raw bytes, which compressed
 * pieces inflate 4x and more on an OS image) without it let the window grow to 60+ pieces and every piece
 * crawl: the OS image at 4 machines took 0.41-0.66x the limit instead of 0.24-0.28x. The rate is an average,
 * not the peak, for the same reason (compressibility changes along the image). */
#define SUPER_WINDOW_MS 300
#define SUPER_RATE_MS 500
#define SUPER_WINDOW_MAX (4u << 20)

static void super_rate_sample(struct session *s, uint64_t now)
{
    if (s->up_rate_t == 0 || now < s->up_rate_t) {
        s->up_rate_t = now;
        s->up_rate_bytes = s->payload_up;
        return;
    }
    rate_update(&s->up_rate, &s->up_rate_t, &s->up_rate_bytes, s->payload_up, now, SUPER_RATE_MS);
}

static uint32_t super_global_window(const struct session *s)
{
    uint64_t bytes = s->up_rate ? s->up_rate * SUPER_WINDOW_MS / 1000u : SUPER_WINDOW_MAX;
    if (bytes > SUPER_WINDOW_MAX)
        bytes = SUPER_WINDOW_MAX;
    uint64_t budget = bytes / s->mi->piece_length;
    if (budget < 2)
        budget = 2;
    uint64_t w = 2u + (uint64_t)s->super_landed_n;
    return (uint32_t)(w < budget ? w : budget);
}

/* How many pieces a peer may have been shown and not have yet: cfg.super_window (tests: then there is no
 * global limit either), or the global window shared among the peers still downloading, at least one each.
 * Every piece shown is in flight at one peer only, so the window is what the seed's uplink is split over: a
 * small one makes each piece arrive, verify and be forwarded soon instead of all of them crawling in parallel
 * at RATE / (N x window). */
static uint32_t super_window(const struct session *s)
{
    if (s->cfg.super_window)
        return s->cfg.super_window;
    uint32_t downloading = 0;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        const struct sess_peer *q = s->peers[k];
        if (q && q->state == PS_ACTIVE && q->revealed.bits && q->have.count < q->have.nbits)
            downloading++;
    }
    uint32_t g = super_global_window(s);
    uint32_t w = downloading ? g / downloading : g;
    return w ? w : 1;
}

/* Keep the window of pieces shown to p that it does not have yet. A piece is shown only while nobody
 * connected has it and, until the first pass is over, nobody is fetching it (in_flight == 0), never-sent
 * first, scanning from a rotating cursor so peers get different pieces: each piece leaves the seed about once,
 * and the peers trade the rest. A piece shown long ago to a peer that has not fetched it (a client that
 * ignores it, a stalled peer) may be shown to another one after SUPER_STALE_MS. When nothing may be shown, p
 * gets its pieces from the other peers. */
static void reveal_more(struct session *s, struct sess_peer *p, uint64_t now)
{
    if (!s->super_active || p->state != PS_ACTIVE || !p->authed || !p->revealed.bits)
        return;
    uint32_t n = s->mi->num_pieces, window = super_window(s);
    uint32_t global = s->cfg.super_window ? UINT32_MAX : super_global_window(s);
    while (p->shown_pending < window && s->super_shown < global) {
        uint32_t best = UINT32_MAX;
        uint64_t best_key = UINT64_MAX;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = (s->reveal_cursor + k) % n;
            if (bitfield_get(&p->revealed, i) || bitfield_get(&p->have, i) || s->picker.avail[i] > 0)
                continue;
            /* tiers: not in flight anywhere; shown long ago and still not fetched; at the end of the first
             * pass, when nothing else is left, in flight at one other peer only (the seed's uplink would idle
             * while the last pieces crawl to their single peers) */
            uint64_t tier;
            if (s->in_flight[i] == 0)
                tier = 0;
            else if (now - s->reveal_t[i] > SUPER_STALE_MS)
                tier = 1;
            else if (s->in_flight[i] < SUPER_END_COPIES)
                tier = 2;
            else
                continue;
            uint64_t key = (tier << 40) | ((uint64_t)s->in_flight[i] << 24) | (s->sent_count[i] & 0xFFFFFFu);
            if (key < best_key) {
                best_key = key;
                best = i;
                if (key == 0)
                    break;
            }
        }
        if (best == UINT32_MAX)
            break;
        s->reveal_cursor = (best + 1) % n;
        bitfield_set(&p->revealed, best);
        s->sent_count[best]++;
        s->in_flight[best]++;
        s->super_shown++;
        s->reveal_t[best] = now;
        if (wire_put_index(&p->out, WM_HAVE, best))
            oom(s);
        mark_sent(p, now);
        p->shown_pending++;
    }
}

/* p now has piece i (or is gone, or said so in its first bitfield): if it had been shown i, i is no longer in
 * flight there. */
static bool super_landed(struct session *s, struct sess_peer *p, uint32_t i)
{
    if (!p->revealed.bits || !bitfield_get(&p->revealed, i))
        return false;
    if (p->shown_pending > 0)
        p->shown_pending--;
    if (!s->in_flight || s->in_flight[i] == 0)
        return false;
    s->in_flight[i]--;
    if (s->super_shown > 0)
        s->super_shown--;
    s->super_landed_n++;
    return true;
}

/* A piece landed or a peer left: room in the windows goes first to peers that have nothing shown (taken in
 * turn from a rotating start, so under the slow start no peer waits behind the same others), then to all. */
static void reveal_all(struct session *s, uint64_t now)
{
    if (!s->super_active || !s->n_slots)
        return;
    super_rate_sample(s, now);
    uint32_t start = s->reveal_peer_cursor % s->n_slots;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t j = 0; j < s->n_slots; j++) {
            uint32_t k = (start + j) % s->n_slots;
            struct sess_peer *q = s->peers[k];
            if (!q || q->closing || !q->revealed.bits || (pass == 0 && q->shown_pending > 0))
                continue;
            uint32_t before = s->super_shown;
            reveal_more(s, q, now);
            if (s->super_shown != before)
                s->reveal_peer_cursor = k + 1;
        }
}

/* Once the connected peers together hold every piece, show everyone everything: from here the swarm
 * serves itself and the seed only fills gaps (late joiners, departed peers). */
static void super_check_end(struct session *s, uint64_t now)
{
    if (!s->super_active)
        return;
    for (uint32_t i = 0; i < s->mi->num_pieces; i++)
        if (s->picker.avail[i] == 0)
            return;
    s->super_active = false;
    session_log(s, "super-seeding done: the peers together hold every piece");
    for (uint32_t k = 0; k < s->n_slots; k++) {
        struct sess_peer *q = s->peers[k];
        if (!q || q->state != PS_ACTIVE || !q->revealed.bits)
            continue;
        for (uint32_t i = 0; i < s->mi->num_pieces; i++)
            if (!bitfield_get(&q->revealed, i) && !bitfield_get(&q->have, i) && wire_put_index(&q->out, WM_HAVE, i))
                oom(s);
        mark_sent(q, now);
    }
}

/* BEP 6: grant an IPv4 peer its allowed-fast set, so a choked peer can still start. */
static void send_allowed_fast(struct session *s, struct sess_peer *p)
{
    if (!p->authed || !p->fast || p->addr.ss.ss_family != AF_INET || s->have.count == 0 || s->super_active)
        return;
    const struct sockaddr_in *sin = (const void *)&p->addr.ss;
    uint8_t ip[4];
    memcpy(ip, &sin->sin_addr, 4);
    p->n_fast_out = (uint32_t)wire_allowed_fast_set(ip, s->mi->info_hash, s->mi->num_pieces, SESSION_ALLOWED_FAST,
                                                    p->fast_out);
    for (uint32_t i = 0; i < p->n_fast_out; i++)
        if (bitfield_get(&s->have, p->fast_out[i]) && wire_put_index(&p->out, WM_ALLOWED_FAST, p->fast_out[i]))
            oom(s);
}

static void update_interest(struct session *s, struct sess_peer *p, uint64_t now)
{
    if (p->state != PS_ACTIVE)
        return;
    bool want = p->wanted > 0;
    if (want == p->am_interested)
        return;
    p->am_interested = want;
    if (wire_put_simple(&p->out, want ? WM_INTERESTED : WM_NOT_INTERESTED))
        oom(s);
    mark_sent(p, now);
}

static uint32_t unchoked_count(const struct session *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->peers[i] && s->peers[i]->state == PS_ACTIVE && !s->peers[i]->am_choking)
            n++;
    return n;
}

/* Cooperative LAN policy: every interested peer is unchoked while slots last; no tit-for-tat. */
static void maybe_unchoke(struct session *s, struct sess_peer *p, uint64_t now)
{
    if (p->state != PS_ACTIVE || !p->authed || !p->am_choking || !p->peer_interested || s->have.count == 0)
        return;
    if (unchoked_count(s) >= s->cfg.upload_slots)
        return;
    p->am_choking = false;
    if (wire_put_simple(&p->out, WM_UNCHOKE))
        oom(s);
    mark_sent(p, now);
}

/* ---------- our requests ---------- */

static int ours_push(struct sess_peer *p, const struct block_req *r)
{
    if (p->n_ours == p->cap_ours) {
        size_t nc = p->cap_ours ? p->cap_ours * 2 : 64;
        struct peer_req *nv = realloc(p->ours, nc * sizeof *nv);
        if (!nv)
            return -1;
        p->ours = nv;
        p->cap_ours = nc;
    }
    p->ours[p->n_ours++] = (struct peer_req){r->piece, r->begin, r->length, 0};
    p->ours_bytes += r->length;
    return 0;
}

static bool ours_take(struct sess_peer *p, uint32_t piece, uint32_t begin, uint32_t length)
{
    for (size_t i = 0; i < p->n_ours; i++) {
        struct peer_req *r = &p->ours[i];
        if (!r->z && r->piece == piece && r->begin == begin && r->length == length) {
            memmove(r, r + 1, (p->n_ours - i - 1) * sizeof *r);
            p->n_ours--;
            p->ours_bytes -= length;
            return true;
        }
    }
    return false;
}

/* Give back every picker block a (possibly merged) request covered. */
static void release_range(struct session *s, struct sess_peer *p, const struct peer_req *r)
{
    for (uint32_t off = 0; off < r->length; off += s->cfg.block_size)
        picker_release(&s->picker, r->piece, r->begin + off, p->slot);
}

static void release_ours(struct session *s, struct sess_peer *p)
{
    for (size_t i = 0; i < p->n_ours; i++)
        release_range(s, p, &p->ours[i]);
    p->n_ours = 0;
    p->ours_bytes = 0;
}

/* Bytes to keep requested from p: about SESSION_QUEUE_MS of its measured delivery rate, within
 * [SESSION_QUEUE_MIN, pipeline * block_size]. A deep queue at a slow source (a machine shares its uplink with
 * the whole swarm) only spreads our download over many half-done pieces, none of which can be verified and
 * passed on; a short one keeps the link busy and pieces completing. Cluster bench, 16 machines, 256 KiB
 * pieces: 300 ms -> 150 ms took 1.144x -> 1.106x the limit at 50 Mbit/s and 1.157x -> 1.122x at 100 Mbit/s
 * (100 ms: 1.119x; 600 ms: 1.137x). */
static uint64_t request_budget(const struct session *s, const struct sess_peer *p)
{
    uint64_t cap = (uint64_t)s->cfg.pipeline * s->cfg.block_size;
    uint64_t b = p->down_rate ? p->down_rate * SESSION_QUEUE_MS / 1000u : SESSION_QUEUE_START;
    if (b < SESSION_QUEUE_MIN)
        b = SESSION_QUEUE_MIN;
    return b < cap ? b : cap;
}

/* Delivery rate: measured over intervals of at least 250 ms while requests are outstanding. */
static void update_rate(struct sess_peer *p, uint64_t now)
{
    rate_update(&p->down_rate, &p->rate_t, &p->rate_bytes, p->bytes_down, now, 250);
}

/* ---------- compressed pieces (ds_zpiece, zpiece.h) ---------- */

static bool ours_take_z(struct sess_peer *p, uint32_t piece, struct peer_req *out)
{
    for (size_t i = 0; i < p->n_ours; i++) {
        struct peer_req *r = &p->ours[i];
        if (r->z && r->piece == piece) {
            *out = *r;
            memmove(r, r + 1, (p->n_ours - i - 1) * sizeof *r);
            p->n_ours--;
            p->ours_bytes -= out->length;
            return true;
        }
    }
    return false;
}

/* Request from a peer that speaks ds_zpiece. The picker's blocks are gathered first; every piece whose blocks
 * were all picked here (a fresh piece) is asked for compressed in one message, the rest block by block. The
 * budget is one piece more than the plain one (request_budget, at least a piece) and picking waits until a
 * whole piece fits, so a fresh piece is always picked in one round whatever the piece size. It counts
 * the raw bytes a request covers, as for plain requests (the endgame and the stall clock treat a compressed
 * request like the blocks it covers; their picker blocks are held by this peer until it answers). */
static void fill_requests_z(struct session *s, struct sess_peer *p, const struct bitfield *from, uint64_t now)
{
    const uint32_t bs = s->cfg.block_size;
    uint64_t budget = request_budget(s, p);
    if (budget < s->mi->piece_length)
        budget = s->mi->piece_length;
    budget += s->mi->piece_length;
    /* pick only when a whole piece fits: small top-ups would start pieces that can no longer go compressed */
    if (p->ours_bytes + s->mi->piece_length > budget)
        return;
    size_t cap = (size_t)((budget - p->ours_bytes) / bs) + 64, n = 0;
    struct block_req *acc = malloc(cap * sizeof *acc);
    if (!acc) {
        oom(s);
        return;
    }
    uint64_t pend = 0;
    while (p->ours_bytes + pend < budget && n < cap) {
        uint64_t want = (budget - p->ours_bytes - pend + bs - 1) / bs;
        if (want > 64)
            want = 64;
        if (want > cap - n)
            want = cap - n;
        size_t got = picker_pick(&s->picker, from, p->slot, acc + n, (size_t)want);
        if (got == 0)
            break;
        for (size_t k = 0; k < got; k++)
            pend += acc[n + k].length;
        n += got;
    }
    for (size_t i = 0; i < n;) {
        struct block_req r = acc[i];
        uint32_t ps = (uint32_t)metainfo_piece_size(s->mi, r.piece);
        if (r.begin == 0 && !bitfield_get(&s->z->incompressible, r.piece)) {
            size_t j = i + 1;
            uint32_t end = r.length;
            while (j < n && acc[j].piece == r.piece && acc[j].begin == end)
                end += acc[j++].length;
            if (end == ps) {
                struct block_req whole = {r.piece, 0, ps};
                if (ours_push(p, &whole) || zp_put_simple(&p->out, p->ds_zpiece_id, ZP_REQ, r.piece)) {
                    oom(s);
                    break;
                }
                p->ours[p->n_ours - 1].z = 1;
                i = j;
                continue;
            }
        }
        i++;
        while (i < n && acc[i].piece == r.piece && acc[i].begin == r.begin + r.length &&
               r.length + acc[i].length <= p->max_req)
            r.length += acc[i++].length;
        if (ours_push(p, &r) || wire_put_block_ref(&p->out, WM_REQUEST, r.piece, r.begin, r.length)) {
            oom(s);
            break;
        }
    }
    if (n)
        mark_sent(p, now);
    free(acc);
}

/* Keep about request_budget() bytes requested from the peer. Consecutive blocks of a piece are merged
 * into one request up to the peer's max_req: diskswarm peers take 128 KiB requests, which cuts the
 * per-message and per-syscall cost eightfold on both sides; other clients get standard 16 KiB requests. */
static void fill_requests(struct session *s, struct sess_peer *p, uint64_t now)
{
    if (p->state != PS_ACTIVE || p->closing || !p->authed || !p->am_interested)
        return;
    if (s->have.count == s->have.nbits)
        return;
    /* choked: only the pieces it declared allowed-fast (BEP 6) */
    struct bitfield fastonly = {0};
    const struct bitfield *from = &p->have;
    if (p->peer_choking) {
        if (p->n_fast_in == 0 || bitfield_init(&fastonly, p->have.nbits))
            return;
        for (uint32_t i = 0; i < p->n_fast_in; i++)
            if (bitfield_get(&p->have, p->fast_in[i]))
                bitfield_set(&fastonly, p->fast_in[i]);
        from = &fastonly;
    }
    struct block_req reqs[64];
    if (p->n_ours == 0) {
        p->t_last_block = now; /* the stall clock starts with the first outstanding request */
        p->rate_t = now;       /* and so does the rate measurement: idle time is not slowness */
        p->rate_bytes = p->bytes_down;
    }
    if (s->z && p->ds_zpiece_id) {
        fill_requests_z(s, p, from, now);
        goto out;
    }
    const uint64_t budget = request_budget(s, p);
    while (p->ours_bytes < budget) {
        uint64_t want = (budget - p->ours_bytes + s->cfg.block_size - 1) / s->cfg.block_size;
        if (want > 64)
            want = 64;
        size_t n = picker_pick(&s->picker, from, p->slot, reqs, (size_t)want);
        if (n == 0)
            break;
        for (size_t i = 0; i < n;) {
            struct block_req r = reqs[i++];
            while (i < n && reqs[i].piece == r.piece && reqs[i].begin == r.begin + r.length &&
                   r.length + reqs[i].length <= p->max_req)
                r.length += reqs[i++].length;
            if (ours_push(p, &r) || wire_put_block_ref(&p->out, WM_REQUEST, r.piece, r.begin, r.length)) {
                oom(s);
                goto out;
            }
        }
        mark_sent(p, now);
    }
out:
    bitfield_free(&fastonly);
}

static void fill_all_requests(struct session *s, uint64_t now)
{
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->peers[i])
            fill_requests(s, s->peers[i], now);
}

/* ---------- peer completion bookkeeping ---------- */

static void check_peer_complete(struct session *s, struct sess_peer *p)
{
    if (p->seen_complete || p->have.count != p->have.nbits)
        return;
    p->seen_complete = true;
    if (id_add(&s->complete_ids, &s->n_complete_ids, p->peer_id))
        oom(s);
}

/* ---------- piece verification ---------- */

static void piece_verified(struct session *s, uint32_t piece, uint64_t now)
{
    bitfield_set(&s->have, piece);
    s->bytes_have += metainfo_piece_size(s->mi, piece);
    picker_finish(&s->picker, piece);
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sess_peer *q = s->peers[i];
        if (!q || q->state != PS_ACTIVE)
            continue;
        if (wire_put_index(&q->out, WM_HAVE, piece))
            oom(s);
        mark_sent(q, now);
        if (bitfield_get(&q->have, piece)) {
            q->wanted--;
            update_interest(s, q, now);
        }
        maybe_unchoke(s, q, now);
    }
}

static void ban_id(struct session *s, const uint8_t id[20])
{
    if (id_add(&s->banned_ids, &s->n_banned_ids, id))
        oom(s);
}

/* A piece failed its hash. With one contributor the culprit is certain: ban it. With several, nobody is
 * blamed (an honest peer must not be banned for sharing a piece with a liar); the piece becomes suspect and
 * is fetched again from a single peer, so the next failure names its culprit. */
static void piece_failed(struct session *s, struct partial *pp, uint64_t now)
{
    (void)now;
    s->hash_failures++;
    if (s->z)
        zcache_drop(&s->z->cache, pp->piece); /* never forward a frame of a piece that failed */
    uint16_t only = pp->from[0];
    bool single = true;
    for (uint32_t b = 1; b < pp->nblocks; b++)
        if (pp->from[b] != only)
            single = false;
    if (single && only != PICKER_NO_SLOT && only < s->n_slots && s->peers[only]) {
        /* Certain culprit. One failure could still be a glitch (and banning the only seed would stall the whole
         * deployment), so the piece is retried; a second proven failure bans the peer. */
        struct sess_peer *q = s->peers[only];
        if (++q->strikes >= SOLE_STRIKES_TO_BAN) {
            ban_id(s, q->peer_id);
            if (q->cand >= 0)
                s->cands[q->cand].banned = true;
            session_log(s, "piece %u failed its hash again with every block from one peer: banned", pp->piece);
            peer_close(q, "sent data that failed the piece hash");
        } else {
            session_log(s, "piece %u failed its hash; every block came from one peer: retrying", pp->piece);
        }
    } else {
        for (uint32_t b = 0; b < pp->nblocks; b++)
            if (pp->from[b] < s->n_slots && s->peers[pp->from[b]])
                s->peers[pp->from[b]]->strikes++;
        session_log(s, "piece %u failed its hash with blocks from several peers: refetching it from one", pp->piece);
        picker_mark_suspect(&s->picker, pp->piece);
    }
    picker_finish(&s->picker, pp->piece);
}

/* Feed in-order received blocks to the piece's SHA-1; blocks that arrived out of order are read back from the
 * target (page cache) when their turn comes. Completes the piece when all blocks are hashed. */
/* Threaded verification: hand each in-order run of received blocks to the hashing thread, then the final. */
static void queue_hash(struct session *s, struct partial *pp)
{
    uint64_t base = (uint64_t)pp->piece * s->mi->piece_length;
    while (pp->hashed < pp->nblocks && pp->state[pp->hashed] == BLK_RECEIVED) {
        uint32_t first = pp->hashed, len = 0;
        while (pp->hashed < pp->nblocks && pp->state[pp->hashed] == BLK_RECEIVED)
            len += picker_block_len(&s->picker, pp->piece, pp->hashed++);
        if (hasher_update(s->hasher, &pp->sha, pp->piece, base + (uint64_t)first * s->cfg.block_size, len))
            goto fail;
    }
    if (pp->hashed == pp->nblocks && !pp->final_queued) {
        if (hasher_final(s->hasher, &pp->sha, pp->piece, s->mi->piece_hashes + (size_t)pp->piece * SHA1_LEN))
            goto fail;
        pp->final_queued = true;
    }
    return;
fail:
    if (!s->fatal) {
        s->fatal = true;
        ds_errf(&s->fatal_err, "the hashing thread stopped");
    }
}

void session_attach_hasher(struct session *s, struct hasher *h) { s->hasher = h; }

void session_hasher_ready(struct session *s, uint64_t now)
{
    if (!s->hasher)
        return;
    uint32_t piece;
    bool ok, io_error;
    struct ds_err e;
    /* bounded: each round takes one posted result */
    for (int k = 0; k < 4096 && hasher_take(s->hasher, &piece, &ok, &io_error, &e) == 1; k++) {
        if (io_error) {
            if (!s->fatal) {
                s->fatal = true;
                s->fatal_err = e;
            }
            return;
        }
        struct partial *pp = picker_partial(&s->picker, piece);
        if (!pp || !pp->final_queued)
            continue;
        pp->sha_live = false; /* the thread finalised (and released) the context */
        if (ok)
            piece_verified(s, piece, now);
        else
            piece_failed(s, pp, now);
    }
}

static void advance_hash(struct session *s, struct partial *pp, uint32_t just_first, uint32_t just_n,
                         const uint8_t *just_data, uint64_t now)
{
    if (s->hasher) {
        queue_hash(s, pp);
        return;
    }
    uint64_t base = (uint64_t)pp->piece * s->mi->piece_length;
    while (pp->hashed < pp->nblocks && pp->state[pp->hashed] == BLK_RECEIVED) {
        uint32_t b = pp->hashed;
        uint32_t len = picker_block_len(&s->picker, pp->piece, b);
        const uint8_t *data = just_data ? just_data + (size_t)(b - just_first) * s->cfg.block_size : NULL;
        if (!just_data || b < just_first || b >= just_first + just_n) {
            struct ds_err e;
            if (store_read(s->store, base + (uint64_t)b * s->cfg.block_size, s->blockbuf, len, &e)) {
                s->fatal = true;
                s->fatal_err = e;
                return;
            }
            data = s->blockbuf;
        }
        if (sha1_update(&pp->sha, data, len)) {
            oom(s);
            return;
        }
        pp->hashed++;
    }
    if (pp->hashed < pp->nblocks)
        return;
    uint8_t h[SHA1_LEN];
    int rc = sha1_final(&pp->sha, h);
    pp->sha_live = false;
    if (rc) {
        oom(s);
        return;
    }
    uint32_t piece = pp->piece;
    if (!memcmp(h, s->mi->piece_hashes + (size_t)piece * SHA1_LEN, SHA1_LEN))
        piece_verified(s, piece, now);
    else
        piece_failed(s, pp, now);
}

/* ---------- incoming messages ---------- */

static void on_have(struct session *s, struct sess_peer *p, uint32_t i, uint64_t now)
{
    if (i >= s->mi->num_pieces) {
        peer_close(p, "HAVE for a piece beyond the torrent");
        return;
    }
    if (bitfield_get(&p->have, i))
        return;
    bool landed = super_landed(s, p, i);
    bitfield_set(&p->have, i);
    picker_inc(&s->picker, i);
    if (!bitfield_get(&s->have, i)) {
        p->wanted++;
        update_interest(s, p, now);
    }
    check_peer_complete(s, p);
    if (s->super_active) {
        super_check_end(s, now);
        if (landed) /* room in the global window: the peers waiting for a piece first */
            reveal_all(s, now);
        else
            reveal_more(s, p, now);
    }
}

static void on_full_state(struct session *s, struct sess_peer *p, uint64_t now)
{
    picker_add_bitfield(&s->picker, &p->have);
    if (p->revealed.bits)
        for (uint32_t i = 0; i < p->have.nbits; i++)
            if (bitfield_get(&p->have, i))
                super_landed(s, p, i);
    p->wanted = 0;
    for (uint32_t i = 0; i < p->have.nbits; i++)
        if (bitfield_get(&p->have, i) && !bitfield_get(&s->have, i))
            p->wanted++;
    update_interest(s, p, now);
    check_peer_complete(s, p);
    if (s->super_active) {
        super_check_end(s, now);
        reveal_more(s, p, now);
    }
}

static void theirs_push(struct session *s, struct sess_peer *p, const struct peer_req *req);

static void on_request(struct session *s, struct sess_peer *p, const struct wire_msg *m, uint64_t now)
{
    const struct metainfo *mi = s->mi;
    if (m->index >= mi->num_pieces || m->length == 0 || m->length > WIRE_MAX_BLOCK ||
        (uint64_t)m->begin + m->length > metainfo_piece_size(mi, m->index)) {
        peer_close(p, "request outside the piece");
        return;
    }
    bool allowed = p->authed && (!p->am_choking || in_set(p->fast_out, p->n_fast_out, m->index)) &&
                   (!s->super_active || bitfield_get(&p->revealed, m->index));
    if (!allowed || !bitfield_get(&s->have, m->index)) {
        if (p->fast) {
            if (wire_put_block_ref(&p->out, WM_REJECT, m->index, m->begin, m->length))
                oom(s);
            mark_sent(p, now);
        }
        return;
    }
    theirs_push(s, p, &(struct peer_req){m->index, m->begin, m->length, 0});
}

static void theirs_push(struct session *s, struct sess_peer *p, const struct peer_req *req)
{
    if (p->n_theirs >= SESSION_MAX_PEER_REQS) {
        peer_close(p, "request flood");
        return;
    }
    if (p->head_theirs + p->n_theirs == p->cap_theirs) {
        if (p->head_theirs > 0) {
            memmove(p->theirs, p->theirs + p->head_theirs, p->n_theirs * sizeof *p->theirs);
            p->head_theirs = 0;
        } else {
            size_t nc = p->cap_theirs ? p->cap_theirs * 2 : 64;
            struct peer_req *nv = realloc(p->theirs, nc * sizeof *nv);
            if (!nv) {
                oom(s);
                return;
            }
            p->theirs = nv;
            p->cap_theirs = nc;
        }
    }
    p->theirs[p->head_theirs + p->n_theirs++] = *req;
}

static void on_cancel(struct sess_peer *p, const struct wire_msg *m)
{
    for (size_t k = 0; k < p->n_theirs; k++) {
        struct peer_req *r = &p->theirs[p->head_theirs + k];
        if (r->piece == m->index && r->begin == m->begin && r->length == m->length &&
            (m->type == WM_CANCEL) == !r->z) {
            memmove(r, r + 1, (p->n_theirs - k - 1) * sizeof *r);
            p->n_theirs--;
            return;
        }
    }
}

/* Is every picker block of r received already (or its piece verified)? */
static bool range_received(struct session *s, const struct peer_req *r)
{
    if (bitfield_get(&s->have, r->piece))
        return true;
    struct partial *pp = picker_partial(&s->picker, r->piece);
    if (!pp)
        return false;
    for (uint32_t off = 0; off < r->length; off += s->cfg.block_size) {
        uint32_t b = (r->begin + off) / s->cfg.block_size;
        if (b >= pp->nblocks || pp->state[b] != BLK_RECEIVED)
            return false;
    }
    return true;
}

/* Endgame: a block just arrived; cancel requests elsewhere that can no longer bring anything new. A merged
 * request is cancelled once every block it covers has arrived. */
static void cancel_elsewhere(struct session *s, struct sess_peer *from, uint32_t piece, uint32_t begin,
                             uint32_t length, uint64_t now)
{
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sess_peer *q = s->peers[i];
        if (!q || q == from || q->state != PS_ACTIVE)
            continue;
        for (size_t k = 0; k < q->n_ours; k++) {
            struct peer_req r = q->ours[k];
            if (r.piece != piece || begin < r.begin || begin + length > r.begin + r.length)
                continue;
            if (r.length != length && !range_received(s, &r))
                break;
            struct peer_req zr;
            if (r.z ? !ours_take_z(q, r.piece, &zr) : !ours_take(q, r.piece, r.begin, r.length))
                break;
            release_range(s, q, &r);
            if (r.z ? zp_put_simple(&q->out, q->ds_zpiece_id, ZP_CANCEL, r.piece)
                    : wire_put_block_ref(&q->out, WM_CANCEL, r.piece, r.begin, r.length))
                oom(s);
            mark_sent(q, now);
            break;
        }
    }
}

static uint32_t accept_data(struct session *s, struct sess_peer *p, const struct wire_msg *m, uint64_t now);

static void on_piece(struct session *s, struct sess_peer *p, const struct wire_msg *m, uint64_t now)
{
    uint32_t len = (uint32_t)m->data_len;
    if (!p->authed || !ours_take(p, m->index, m->begin, len))
        return; /* not asked for (or cancelled, or from an unproven peer): never written */
    p->t_last_block = now;
    p->bytes_down += len;
    update_rate(p, now);
    s->payload_down += len;
    accept_data(s, p, m, now);
}

/* Write and hash the blocks of m->data we asked this peer for; returns the bytes accepted as first copies. */
static uint32_t accept_data(struct session *s, struct sess_peer *p, const struct wire_msg *m, uint64_t now)
{
    uint32_t len = (uint32_t)m->data_len, accepted = 0;
    const uint32_t bs = s->cfg.block_size;
    if (m->begin % bs) {
        peer_close(p, "block with a bad offset");
        return 0;
    }
    /* A request may cover several picker blocks. Only blocks accepted as first copies are written, in runs,
     * so a late duplicate can never overwrite a piece that was already verified. */
    uint64_t base = (uint64_t)m->index * s->mi->piece_length;
    uint32_t run_start = 0, run_len = 0;
    for (uint32_t off = 0, blen = 0;; off += blen) { /* ends at off == len: at most len/bs + 1 rounds */
        int acc = 0;
        blen = 0;
        if (off < len) {
            blen = len - off < bs ? len - off : bs;
            acc = picker_received(&s->picker, m->index, m->begin + off, blen, p->slot);
            if (acc < 0) {
                peer_close(p, "block with a bad offset");
                return accepted;
            }
        }
        if (acc == 1) {
            if (run_len == 0)
                run_start = off;
            run_len += blen;
            accepted += blen;
            cancel_elsewhere(s, p, m->index, m->begin + off, blen, now);
            continue;
        }
        if (run_len > 0) {
            struct ds_err e;
            if (store_write(s->store, base + m->begin + run_start, m->data + run_start, run_len, &e)) {
                s->fatal = true;
                s->fatal_err = e;
                return accepted;
            }
            struct partial *pp = picker_partial(&s->picker, m->index);
            if (pp)
                advance_hash(s, pp, (m->begin + run_start) / bs, (run_len + bs - 1) / bs, m->data + run_start,
                             now);
            run_len = 0;
        }
        if (off >= len)
            break;
    }
    fill_requests(s, p, now);
    return accepted;
}

static void on_ext_handshake(struct session *s, struct sess_peer *p, const uint8_t *d, size_t n)
{
    struct bdoc doc;
    struct ds_err e;
    if (bdecode(d, n, &doc, &e) || doc.root->type != BN_DICT) {
        if (doc.root)
            bdoc_free(&doc);
        /* some clients send slightly non-canonical dicts; a bad extension handshake only disables extensions */
        return;
    }
    const struct bnode *m = bdict_get_dict(doc.root, "m");
    const struct bnode *pex = m ? bdict_get_int(m, "ut_pex") : NULL;
    p->ut_pex_id = pex && pex->u.i > 0 && pex->u.i < 256 ? (uint8_t)pex->u.i : 0;
    const struct bnode *port = bdict_get_int(doc.root, "p");
    if (port && port->u.i > 0 && port->u.i < 65536 && !p->outgoing) {
        p->listen = p->addr;
        if (p->listen.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&p->listen.ss)->sin_port = htons((uint16_t)port->u.i);
        else
            ((struct sockaddr_in6 *)&p->listen.ss)->sin6_port = htons((uint16_t)port->u.i);
        p->listen_known = true;
        /* remember it, so we neither dial it again nor forget it after it leaves */
        for (size_t i = 0; i < s->n_cands; i++)
            if (addr_eq(&s->cands[i].addr, &p->listen)) {
                s->cands[i].connected = true;
                p->cand = (int)i;
            }
        if (p->cand < 0 && s->n_cands < SESSION_MAX_CANDIDATES) {
            s->cands[s->n_cands] = (struct candidate){.addr = p->listen, .connected = true};
            p->cand = (int)s->n_cands++;
        }
    }
    const struct bnode *v = bdict_get_str(doc.root, "v");
    if (v) {
        size_t k = v->u.s.len < sizeof p->client - 1 ? v->u.s.len : sizeof p->client - 1;
        for (size_t i = 0; i < k; i++)
            p->client[i] = (v->u.s.p[i] >= 32 && v->u.s.p[i] < 127) ? (char)v->u.s.p[i] : '?';
        p->client[k] = 0;
    }
    if (s->cfg.secret && !p->authed) {
        const struct bnode *da = m ? bdict_get_int(m, "ds_auth") : NULL;
        const struct bnode *nonce = bdict_get_str(doc.root, "ds_nonce");
        uint8_t mac[SWARM_MAC_LEN];
        if (!da || da->u.i <= 0 || da->u.i > 255 || !nonce || nonce->u.s.len != SWARM_NONCE_LEN) {
            bdoc_free(&doc);
            peer_close(p, "peer does not take part in the swarm secret");
            return;
        }
        p->ds_auth_id = (uint8_t)da->u.i;
        if (swarm_auth_mac(s->cfg.secret, s->cfg.secret_len, nonce->u.s.p, s->mi->info_hash, s->cfg.peer_id, mac) ||
            wire_put_extended(&p->out, p->ds_auth_id, mac, sizeof mac))
            oom(s);
    }
    const struct bnode *dz = m && s->z ? bdict_get_int(m, ZP_EXT_NAME) : NULL;
    p->ds_zpiece_id = dz && dz->u.i > 0 && dz->u.i < 256 ? (uint8_t)dz->u.i : 0;
    const struct bnode *mr = bdict_get_int(doc.root, "ds_maxreq");
    if (mr && mr->u.i >= (int64_t)s->cfg.block_size)
        p->max_req = mr->u.i > (int64_t)WIRE_MAX_BLOCK ? WIRE_MAX_BLOCK : (uint32_t)mr->u.i;
    const struct bnode *dss = bdict_get_int(doc.root, "ds_seed");
    if (dss && dss->u.i == 1) {
        /* an original seeder is not one of the machines being deployed; its have-all came first */
        p->seen_complete = true;
        for (size_t i = 0; i < s->n_complete_ids; i++)
            if (!memcmp(s->complete_ids[i], p->peer_id, 20)) {
                memmove(s->complete_ids[i], s->complete_ids[i + 1], (s->n_complete_ids - i - 1) * 20);
                s->n_complete_ids--;
                break;
            }
    }
    bdoc_free(&doc);
}

static void on_pex(struct session *s, const uint8_t *d, size_t n)
{
    struct bdoc doc;
    struct ds_err e;
    if (bdecode(d, n, &doc, &e))
        return;
    const struct bnode *added = doc.root->type == BN_DICT ? bdict_get_str(doc.root, "added") : NULL;
    if (added && added->u.s.len % 6 == 0) {
        for (size_t i = 0; i + 6 <= added->u.s.len && i < 6 * 200; i += 6) {
            struct peer_addr a;
            memset(&a, 0, sizeof a);
            struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, added->u.s.p + i, 4);
            memcpy(&sin->sin_port, added->u.s.p + i + 4, 2);
            a.len = sizeof *sin;
            if (sin->sin_port != 0)
                session_add_candidate(s, &a);
        }
    }
    const struct bnode *added6 = doc.root->type == BN_DICT ? bdict_get_str(doc.root, "added6") : NULL;
    if (added6 && added6->u.s.len % 18 == 0) {
        for (size_t i = 0; i + 18 <= added6->u.s.len && i < 18 * 200; i += 18) {
            struct peer_addr a;
            memset(&a, 0, sizeof a);
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, added6->u.s.p + i, 16);
            memcpy(&sin6->sin6_port, added6->u.s.p + i + 16, 2);
            a.len = sizeof *sin6;
            if (sin6->sin6_port != 0)
                session_add_candidate(s, &a);
        }
    }
    bdoc_free(&doc);
}

static void send_pex(struct session *s, struct sess_peer *p, uint64_t now)
{
    struct buf v4 = {0}, v6 = {0}, f4 = {0}, f6 = {0};
    size_t n = 0;
    for (uint32_t i = 0; i < s->n_slots && n < PEX_MAX_ADDED; i++) {
        struct sess_peer *q = s->peers[i];
        if (!q || q == p || q->state != PS_ACTIVE || !q->listen_known || !q->authed)
            continue;
        uint8_t flag = q->have.count == q->have.nbits ? 0x02 : 0x00; /* 0x02: seed */
        if (q->listen.ss.ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const void *)&q->listen.ss;
            if (buf_put(&v4, &sin->sin_addr, 4) || buf_put(&v4, &sin->sin_port, 2) || buf_put_u8(&f4, flag))
                goto fail;
        } else {
            const struct sockaddr_in6 *sin6 = (const void *)&q->listen.ss;
            if (buf_put(&v6, &sin6->sin6_addr, 16) || buf_put(&v6, &sin6->sin6_port, 2) || buf_put_u8(&f6, flag))
                goto fail;
        }
        n++;
    }
    if (n > 0) {
        struct buf b = {0};
        int rc = benc_dict_begin(&b);
        rc |= benc_cstr(&b, "added") | benc_str(&b, v4.data, v4.len);
        rc |= benc_cstr(&b, "added.f") | benc_str(&b, f4.data, f4.len);
        rc |= benc_cstr(&b, "added6") | benc_str(&b, v6.data, v6.len);
        rc |= benc_cstr(&b, "added6.f") | benc_str(&b, f6.data, f6.len);
        rc |= benc_cstr(&b, "dropped") | benc_str(&b, "", 0);
        rc |= benc_end(&b);
        if (rc || wire_put_extended(&p->out, p->ut_pex_id, b.data, b.len))
            oom(s);
        buf_free(&b);
        mark_sent(p, now);
    }
    p->t_last_pex = now;
fail:
    buf_free(&v4);
    buf_free(&v6);
    buf_free(&f4);
    buf_free(&f6);
}

/* The peer's proof that it knows the swarm secret (see swarm_auth.h). */
static void on_auth(struct session *s, struct sess_peer *p, const uint8_t *d, size_t n, uint64_t now)
{
    uint8_t want[SWARM_MAC_LEN];
    if (n != SWARM_MAC_LEN ||
        swarm_auth_mac(s->cfg.secret, s->cfg.secret_len, p->nonce, s->mi->info_hash, p->peer_id, want) ||
        !swarm_auth_equal(want, d)) {
        /* not one of ours: do not dial it again, and refuse it if it comes back */
        ban_id(s, p->peer_id);
        if (p->cand >= 0)
            s->cands[p->cand].banned = true;
        peer_close(p, "wrong swarm secret");
        return;
    }
    p->authed = true;
    session_log(s, "peer proved the swarm secret");
    if (p->ut_pex_id)
        send_pex(s, p, now);
    send_allowed_fast(s, p);
    reveal_more(s, p, now);
    maybe_unchoke(s, p, now);
    fill_requests(s, p, now);
}

/* A ds_zpiece message (zpiece.h). */
static void on_zpiece(struct session *s, struct sess_peer *p, const uint8_t *d, size_t n, uint64_t now)
{
    struct zp_msg zm;
    if (!p->ds_zpiece_id) {
        peer_close(p, "ds_zpiece message without offering ds_zpiece");
        return;
    }
    if (zp_parse(d, n, &zm) || zm.piece >= s->mi->num_pieces) {
        peer_close(p, "malformed ds_zpiece message");
        return;
    }
    uint32_t ps = (uint32_t)metainfo_piece_size(s->mi, zm.piece);
    struct peer_req r;
    switch (zm.type) {
    case ZP_REQ: {
        bool allowed = (!p->am_choking || in_set(p->fast_out, p->n_fast_out, zm.piece)) &&
                       (!s->super_active || bitfield_get(&p->revealed, zm.piece)) && bitfield_get(&s->have, zm.piece);
        if (!allowed) {
            if (zp_put_simple(&p->out, p->ds_zpiece_id, ZP_REJECT, zm.piece))
                oom(s);
            mark_sent(p, now);
            return;
        }
        theirs_push(s, p, &(struct peer_req){zm.piece, 0, ps, 1});
        return;
    }
    case ZP_CANCEL: {
        struct wire_msg cm = {.type = WM_EXTENDED, .index = zm.piece, .begin = 0, .length = ps};
        on_cancel(p, &cm);
        return;
    }
    case ZP_PLAIN:
    case ZP_REJECT:
        if (!ours_take_z(p, zm.piece, &r))
            return;
        if (zm.type == ZP_PLAIN)
            bitfield_set(&s->z->incompressible, zm.piece); /* from now on block by block, from anyone */
        release_range(s, p, &r);
        fill_all_requests(s, now);
        return;
    case ZP_DATA: {
        if (!ours_take_z(p, zm.piece, &r))
            return; /* not asked for, or cancelled: never written */
        p->t_last_block = now;
        const char *why = NULL;
        if (zpiece_receive(s->z, &zm, &why)) {
            release_range(s, p, &r);
            peer_close(p, why);
            return;
        }
        p->bytes_down += ps;
        s->payload_down += ps;
        update_rate(p, now);
        /* kept for forwarding only when the whole piece came from this frame (dropped again on a hash failure) */
        if (zcache_put(&s->z->cache, zm.piece, zm.frame, zm.frame_len))
            oom(s);
        struct wire_msg pm = {.type = WM_PIECE, .index = zm.piece, .begin = 0, .data = s->z->raw, .data_len = ps};
        if (accept_data(s, p, &pm, now) != ps)
            zcache_drop(&s->z->cache, zm.piece);
        return;
    }
    default:
        return;
    }
}

static void handle_msg(struct session *s, struct sess_peer *p, const struct wire_msg *m, uint64_t now)
{
    /* The piece state (bitfield / have-all / have-none) must come before any other piece information; other
     * clients put their extension handshake first, so only HAVE-type messages count as "other". */
    bool first = !p->got_bitfield;
    if (m->type == WM_HAVE || m->type == WM_BITFIELD || m->type == WM_HAVE_ALL || m->type == WM_HAVE_NONE)
        p->got_bitfield = true;
    switch (m->type) {
    case WM_KEEPALIVE:
        break;
    case WM_CHOKE:
        p->peer_choking = true;
        if (!p->fast)
            release_ours(s, p); /* without BEP 6 a choke discards every pending request */
        fill_all_requests(s, now);
        break;
    case WM_UNCHOKE:
        p->peer_choking = false;
        fill_requests(s, p, now);
        break;
    case WM_INTERESTED:
        p->peer_interested = true;
        maybe_unchoke(s, p, now);
        break;
    case WM_NOT_INTERESTED:
        p->peer_interested = false;
        break;
    case WM_HAVE:
        on_have(s, p, m->index, now);
        fill_requests(s, p, now);
        break;
    case WM_BITFIELD:
    case WM_HAVE_ALL:
    case WM_HAVE_NONE:
        if (m->type != WM_BITFIELD && !p->fast) {
            peer_close(p, "fast-extension message without the fast extension");
            return;
        }
        if (!first) {
            /* aria2 sends a fresh BITFIELD (or HAVE_ALL) instead of a burst of HAVEs: take it as an update that
             * can only add pieces; a late HAVE_NONE says nothing new */
            if (m->type == WM_HAVE_NONE)
                break;
            struct bitfield upd = {0};
            if (bitfield_init(&upd, s->mi->num_pieces)) {
                oom(s);
                return;
            }
            if (m->type == WM_HAVE_ALL)
                bitfield_set_all(&upd);
            else if (bitfield_load(&upd, m->data, m->data_len)) {
                bitfield_free(&upd);
                peer_close(p, "bitfield of the wrong size");
                return;
            }
            for (uint32_t i = 0; i < upd.nbits && !p->closing; i++)
                if (bitfield_get(&upd, i))
                    on_have(s, p, i, now);
            bitfield_free(&upd);
            fill_requests(s, p, now);
            break;
        }
        if (m->type == WM_BITFIELD) {
            if (bitfield_load(&p->have, m->data, m->data_len)) {
                peer_close(p, "bitfield of the wrong size");
                return;
            }
        } else if (m->type == WM_HAVE_ALL) {
            bitfield_set_all(&p->have);
        }
        on_full_state(s, p, now);
        fill_requests(s, p, now);
        break;
    case WM_REQUEST:
        on_request(s, p, m, now);
        break;
    case WM_PIECE:
        on_piece(s, p, m, now);
        break;
    case WM_CANCEL:
        on_cancel(p, m);
        break;
    case WM_REJECT:
        if (!p->fast) {
            peer_close(p, "REJECT without the fast extension");
            return;
        }
        if (ours_take(p, m->index, m->begin, m->length)) {
            struct peer_req r = {m->index, m->begin, m->length, 0};
            release_range(s, p, &r);
            fill_all_requests(s, now);
        }
        break;
    case WM_EXTENDED:
        if (!p->extended)
            break;
        if (m->ext_id == 0) {
            on_ext_handshake(s, p, m->data, m->data_len);
            /* tell it about the others at once: in a deployment every second of a machine idle counts */
            if (!p->closing && p->authed && p->ut_pex_id)
                send_pex(s, p, now);
        }
        else if (m->ext_id == OUR_UT_PEX_ID && p->authed)
            on_pex(s, m->data, m->data_len);
        else if (m->ext_id == OUR_DS_AUTH_ID && s->cfg.secret && !p->authed)
            on_auth(s, p, m->data, m->data_len, now);
        else if (m->ext_id == OUR_DS_ZPIECE_ID && s->z && p->authed)
            on_zpiece(s, p, m->data, m->data_len, now);
        break;
    case WM_ALLOWED_FAST:
        if (!p->fast) {
            peer_close(p, "ALLOWED_FAST without the fast extension");
            return;
        }
        if (m->index < s->mi->num_pieces && p->n_fast_in < SESSION_ALLOWED_FAST &&
            !in_set(p->fast_in, p->n_fast_in, m->index)) {
            p->fast_in[p->n_fast_in++] = m->index;
            if (p->peer_choking)
                fill_requests(s, p, now);
        }
        break;
    default:
        break; /* PORT, SUGGEST and unknown ids: nothing to do */
    }
}

static void on_handshake(struct session *s, struct sess_peer *p, const struct wire_handshake *hs, uint64_t now)
{
    if (memcmp(hs->info_hash, s->mi->info_hash, 20) != 0) {
        peer_close(p, "handshake for another torrent");
        return;
    }
    if (!memcmp(hs->peer_id, s->cfg.peer_id, 20)) {
        if (p->cand >= 0)
            s->cands[p->cand].banned = true;
        /* answer before closing, so that our dialling side sees its own id too and bans the address */
        if (!p->handshake_sent)
            send_handshake(s, p, now);
        peer_close(p, "connected to ourselves");
        return;
    }
    if (id_in(s->banned_ids, s->n_banned_ids, hs->peer_id)) {
        peer_close(p, "banned peer");
        return;
    }
    memcpy(p->peer_id, hs->peer_id, 20);
    /* Two connections between the same pair (both dialled at once): keep the one dialled by the lower id. */
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sess_peer *q = s->peers[i];
        if (!q || q == p || q->state != PS_ACTIVE || q->closing || memcmp(q->peer_id, hs->peer_id, 20))
            continue;
        if (q->outgoing != p->outgoing) {
            const uint8_t *init_p = p->outgoing ? s->cfg.peer_id : hs->peer_id;
            const uint8_t *init_q = q->outgoing ? s->cfg.peer_id : hs->peer_id;
            if (memcmp(init_q, init_p, 20) < 0) {
                peer_close(p, "duplicate connection");
                return;
            }
            peer_close(q, "duplicate connection");
        } else {
            peer_close(p, "duplicate connection");
            return;
        }
    }
    if (!p->handshake_sent)
        send_handshake(s, p, now);
    p->fast = (hs->reserved[WIRE_RSV_FAST_BYTE] & WIRE_RSV_FAST_MASK) != 0;
    p->extended = (hs->reserved[WIRE_RSV_EXTENDED_BYTE] & WIRE_RSV_EXTENDED_MASK) != 0;
    if (s->cfg.secret && !p->extended) {
        peer_close(p, "swarm secret required, peer lacks the extension protocol");
        return;
    }
    p->state = PS_ACTIVE;
    if (p->cand >= 0)
        s->cands[p->cand].fails = 0;
    send_have_state(s, p); /* BEP 3: the bitfield is the first message after the handshake */
    if (p->extended)
        send_ext_handshake(s, p);
    send_allowed_fast(s, p);
    if (s->super_active) {
        if (bitfield_init(&p->revealed, s->mi->num_pieces))
            oom(s);
        reveal_more(s, p, now);
    }
    mark_sent(p, now);
}

void session_peer_input(struct session *s, struct sess_peer *p, uint64_t now)
{
    if (p->closing)
        return;
    p->t_last_recv = now;
    const uint32_t bitfield_max = 1 + (uint32_t)bitfield_bytes(s->mi->num_pieces);
    uint32_t max_len = 9 + WIRE_MAX_BLOCK;
    if (bitfield_max > max_len)
        max_len = bitfield_max;
    if (2 + EXT_MSG_MAX > max_len)
        max_len = 2 + EXT_MSG_MAX;
    if (s->z && p->ds_zpiece_id && 2 + 9 + s->mi->piece_length > max_len)
        max_len = (uint32_t)(2 + 9 + s->mi->piece_length); /* one compressed piece (never above ZP_MAX_PIECE) */
    /* bounded: each iteration consumes at least 4 bytes or stops */
    while (!p->closing && !s->fatal) {
        size_t avail = buf_unread(&p->in);
        const uint8_t *d = buf_head(&p->in);
        if (p->state == PS_HANDSHAKE) {
            struct wire_handshake hs;
            enum wire_parse_result r = wire_parse_handshake(d, avail, &hs);
            if (r == WIRE_NEED_MORE)
                break;
            if (r == WIRE_ERROR) {
                peer_close(p, "bad handshake");
                break;
            }
            buf_consume(&p->in, WIRE_HANDSHAKE_LEN);
            on_handshake(s, p, &hs, now);
            continue;
        }
        struct wire_msg m;
        size_t used = 0;
        enum wire_parse_result r = wire_parse_msg(d, avail, max_len, &m, &used);
        if (r == WIRE_NEED_MORE)
            break;
        if (r == WIRE_ERROR) {
            peer_close(p, "protocol error");
            break;
        }
        handle_msg(s, p, &m, now);
        buf_consume(&p->in, used);
    }
    if (buf_unread(&p->in) == 0)
        buf_clear(&p->in);
}

/* Answer a compressed-piece request: a frame when the piece compresses, else "fetch it plain". */
static void send_zpiece(struct session *s, struct sess_peer *p, uint32_t piece, uint64_t now)
{
    const uint8_t *frame = NULL;
    size_t len = 0;
    struct ds_err e;
    int rc = zpiece_frame_for(s->z, s->store, piece, &frame, &len, &e);
    if (rc < 0) {
        s->fatal = true;
        s->fatal_err = e;
        return;
    }
    uint32_t ps = (uint32_t)metainfo_piece_size(s->mi, piece);
    if (rc == 0) {
        s->z->st.plain_answers++;
        if (zp_put_simple(&p->out, p->ds_zpiece_id, ZP_PLAIN, piece))
            oom(s);
    } else {
        if (zp_put_data(&p->out, p->ds_zpiece_id, piece, ps, frame, len)) {
            oom(s);
            return;
        }
        s->z->st.pieces_up++;
        s->z->st.wire_up += len;
        s->z->st.raw_up += ps;
        p->bytes_up += ps;
        s->payload_up += ps;
    }
    mark_sent(p, now);
}

void session_peer_fill(struct session *s, struct sess_peer *p, uint64_t now)
{
    if (p->state != PS_ACTIVE || p->closing)
        return;
    while (p->n_theirs > 0 && buf_unread(&p->out) < s->cfg.out_watermark && !s->fatal) {
        struct peer_req r = p->theirs[p->head_theirs];
        p->head_theirs++;
        p->n_theirs--;
        if (p->n_theirs == 0)
            p->head_theirs = 0;
        if ((p->am_choking && !in_set(p->fast_out, p->n_fast_out, r.piece)) || !bitfield_get(&s->have, r.piece)) {
            if (r.z && zp_put_simple(&p->out, p->ds_zpiece_id, ZP_REJECT, r.piece))
                oom(s);
            continue;
        }
        if (r.z) {
            send_zpiece(s, p, r.piece, now);
            continue;
        }
        if (wire_put_piece_header(&p->out, r.piece, r.begin, r.length)) {
            oom(s);
            return;
        }
        uint8_t *dst = buf_tail(&p->out, r.length);
        if (!dst) {
            oom(s);
            return;
        }
        struct ds_err e;
        if (store_read(s->store, (uint64_t)r.piece * s->mi->piece_length + r.begin, dst, r.length, &e)) {
            s->fatal = true;
            s->fatal_err = e;
            return;
        }
        p->bytes_up += r.length;
        s->payload_up += r.length;
        mark_sent(p, now);
    }
}

const char *session_refuse_reason(const struct session *s, const struct peer_addr *addr)
{
    if (!session_addr_allowed(s, addr))
        return "not allowed";
    if (half_open_from(s, addr) >= SESSION_MAX_HALF_OPEN_PER_HOST)
        return "too many unfinished handshakes from this host";
    if (s->n_peers >= s->cfg.max_peers)
        return "too many peers";
    return NULL;
}

struct sess_peer *session_peer_new(struct session *s, const struct peer_addr *addr, bool outgoing, int cand,
                                   uint64_t now)
{
    if (outgoing ? !session_addr_allowed(s, addr) : session_refuse_reason(s, addr) != NULL)
        return NULL;
    uint32_t slot = 0;
    while (slot < s->n_slots && s->peers[slot])
        slot++;
    if (slot >= s->cfg.max_peers)
        return NULL;
    struct sess_peer *p = calloc(1, sizeof *p);
    if (!p || bitfield_init(&p->have, s->mi->num_pieces)) {
        free(p);
        return NULL;
    }
    p->slot = (uint16_t)slot;
    p->outgoing = outgoing;
    p->addr = *addr;
    p->cand = cand;
    if (outgoing) {
        p->listen = *addr;
        p->listen_known = true;
    }
    p->am_choking = p->peer_choking = true;
    p->max_req = s->cfg.block_size;
    p->authed = s->cfg.secret == NULL;
    if (s->cfg.secret) {
        /* fresh per connection: SHA-1(nonce_key || counter), first 16 bytes */
        uint8_t in[24], h[SHA1_LEN];
        memcpy(in, s->cfg.nonce_key, 16);
        uint64_t c = ++s->nonce_ctr;
        memcpy(in + 16, &c, 8);
        sha1(in, sizeof in, h);
        memcpy(p->nonce, h, SWARM_NONCE_LEN);
    }
    p->t_connected = p->t_last_recv = p->t_last_send = p->t_last_block = now;
    s->peers[slot] = p;
    if (slot >= s->n_slots)
        s->n_slots = slot + 1;
    s->n_peers++;
    if (cand >= 0 && (size_t)cand < s->n_cands)
        s->cands[cand].connected = true;
    if (outgoing)
        send_handshake(s, p, now);
    return p;
}

void session_peer_free(struct session *s, struct sess_peer *p)
{
    release_ours(s, p);
    if (s->super_active && p->revealed.bits)
        for (uint32_t i = 0; i < p->revealed.nbits; i++)
            if (!bitfield_get(&p->have, i))
                super_landed(s, p, i); /* what it was shown and did not get may go to another peer */
    picker_forget_slot(&s->picker, p->slot);
    if (p->state == PS_ACTIVE)
        picker_remove_bitfield(&s->picker, &p->have);
    if (p->cand >= 0 && (size_t)p->cand < s->n_cands) {
        struct candidate *c = &s->cands[p->cand];
        c->connected = false;
        /* a peer that was fine may come back (restart): retry soon, with back-off on repeated trouble */
        c->fails = p->state == PS_ACTIVE ? 0 : c->fails + 1;
        c->next_try = p->t_last_recv + 2000u * (1u << (c->fails < 5 ? c->fails : 5));
    }
    s->peers[p->slot] = NULL;
    while (s->n_slots > 0 && !s->peers[s->n_slots - 1])
        s->n_slots--;
    s->n_peers--;
    uint64_t now = p->t_last_recv;
    peer_destroy(p);
    /* blocks it held are free again: give them to the others now rather than at the next tick */
    fill_all_requests(s, now);
    if (s->super_active)
        reveal_all(s, now);
}

void session_tick(struct session *s, uint64_t now)
{
    if (s->super_active)
        super_rate_sample(s, now);
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sess_peer *p = s->peers[i];
        if (!p || p->closing)
            continue;
        if (p->state == PS_HANDSHAKE) {
            if (now - p->t_connected > HANDSHAKE_TIMEOUT_MS)
                peer_close(p, "handshake timed out");
            continue;
        }
        if (now - p->t_last_recv > IDLE_TIMEOUT_MS) {
            peer_close(p, "idle");
            continue;
        }
        if (p->n_ours > 0 && now - p->t_last_block > STALL_TIMEOUT_MS) {
            peer_close(p, "stalled: requested blocks did not arrive");
            continue;
        }
        if (now - p->t_last_send > KEEPALIVE_MS) {
            if (wire_put_keepalive(&p->out))
                oom(s);
            mark_sent(p, now);
        }
        if (!p->authed) {
            if (now - p->t_connected > AUTH_TIMEOUT_MS)
                peer_close(p, "did not prove the swarm secret in time");
            continue;
        }
        if (p->ut_pex_id && (p->t_last_pex == 0 || now - p->t_last_pex > PEX_INTERVAL_MS))
            send_pex(s, p, now);
        maybe_unchoke(s, p, now);
        fill_requests(s, p, now);
        reveal_more(s, p, now);
    }
}

bool session_addr_allowed(const struct session *s, const struct peer_addr *a)
{
    return addr_allowed(s->cfg.allow, s->cfg.n_allow, a);
}

void session_add_candidate(struct session *s, const struct peer_addr *a)
{
    if (!session_addr_allowed(s, a))
        return;
    for (size_t i = 0; i < s->n_cands; i++)
        if (addr_eq(&s->cands[i].addr, a))
            return;
    if (s->n_cands >= SESSION_MAX_CANDIDATES)
        return;
    s->cands[s->n_cands++] = (struct candidate){.addr = *a};
}

int session_next_candidate(struct session *s, uint64_t now)
{
    if (s->n_peers >= s->cfg.max_peers)
        return -1;
    for (size_t i = 0; i < s->n_cands; i++) {
        struct candidate *c = &s->cands[i];
        if (c->connected || c->banned || c->next_try > now)
            continue;
        /* a listen address already reached through an incoming connection is not dialled again */
        bool have = false;
        for (uint32_t k = 0; k < s->n_slots && !have; k++)
            if (s->peers[k] && s->peers[k]->listen_known && addr_eq(&s->peers[k]->listen, &c->addr))
                have = true;
        if (have) {
            c->connected = true;
            continue;
        }
        c->connected = true;
        return (int)i;
    }
    return -1;
}

void session_candidate_failed(struct session *s, int i, uint64_t now)
{
    if (i < 0 || (size_t)i >= s->n_cands)
        return;
    struct candidate *c = &s->cands[i];
    c->connected = false;
    c->fails++;
    c->next_try = now + 1000u * (1u << (c->fails < 5 ? c->fails : 5));
}

bool session_complete(const struct session *s) { return s->have.count == s->have.nbits; }

void session_stats(const struct session *s, struct session_stats *st)
{
    memset(st, 0, sizeof *st);
    st->pieces_have = s->have.count;
    st->num_pieces = s->have.nbits;
    st->bytes_have = s->bytes_have;
    st->total_bytes = s->mi->total_length;
    st->payload_down = s->payload_down;
    st->payload_up = s->payload_up;
    st->hash_failures = s->hash_failures;
    st->peers_seen_complete = 0;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        const struct sess_peer *p = s->peers[i];
        if (!p || p->state != PS_ACTIVE)
            continue;
        st->peers++;
        if (p->have.count == p->have.nbits)
            st->seeds++;
    }
    st->peers_seen_complete = (uint32_t)s->n_complete_ids;
}
