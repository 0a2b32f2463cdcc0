/* tracker_state.c — see tracker_state.h. */
#include "tracker_state.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bencode.h"

#define TS_GONE_MAX 64              /* recently stopped / expired peers kept for the dashboard, per torrent */

struct ts_peer {
    uint8_t id[20];
    struct ts_addr addr;
    uint64_t uploaded, downloaded, left;
    uint64_t first_seen, last_seen, prev_t;
    uint64_t prev_left, prev_up;
    double rate, up_rate;           /* bytes/s */
    bool seed;                      /* left == 0 */
    bool has_strip;
    uint8_t nstrip;
    enum ts_event last_event;
    char name[TS_NAME_MAX];
    uint8_t *strip;                 /* nstrip bytes when has_strip */
};

struct ts_gone {
    struct ts_peer p;               /* strip always NULL */
    uint64_t gone_at;
    bool expired;
};

struct ts_torrent {
    uint8_t ih[20];
    char *name;
    uint64_t total;                 /* 0 = unknown */
    uint32_t npieces;
    uint64_t max_left;              /* size estimate when total is unknown */
    uint32_t downloaded;            /* completed events */
    uint32_t seeds;
    struct ts_peer *peers;
    size_t n, cap;
    uint32_t *idx;                  /* open addressing: peer index + 1, 0 = empty */
    size_t idx_cap;                 /* power of two, >= 2 * cap */
    struct ts_gone *gone;           /* ring, TS_GONE_MAX, lazily allocated */
    size_t gone_n, gone_head;
};

struct tracker_state {
    struct ts_config cfg;
    struct ts_torrent *t;
    size_t nt, capt;
    size_t total_peers;
    uint64_t rng;
    uint64_t hash_key;
    ts_note_fn note;
    void *note_ctx;
};

/* ------------------------------------------------------------------------------------------------------ */
/* small helpers */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t id_hash(const struct tracker_state *st, const uint8_t id[20])
{
    uint64_t h = 0xcbf29ce484222325ull ^ st->hash_key;
    for (int i = 0; i < 20; i++) {
        h ^= id[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void note(struct tracker_state *st, enum ts_note w, const struct ts_torrent *t, const struct ts_peer *p,
                 const char *detail)
{
    if (st->note)
        st->note(st->note_ctx, w, t ? t->ih : NULL, p ? p->id : NULL, p ? &p->addr : NULL, detail);
}

void ts_addr_format(const struct ts_addr *a, bool with_port, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(a->family == AF_INET6 ? AF_INET6 : AF_INET, a->ip, ip, sizeof ip);
    if (!with_port)
        snprintf(out, outlen, "%s", ip);
    else if (a->family == AF_INET6)
        snprintf(out, outlen, "[%s]:%u", ip, a->port);
    else
        snprintf(out, outlen, "%s:%u", ip, a->port);
}

int ts_parse_addr(const char *s, struct ts_addr *out)
{
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, out->ip) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out->ip) == 1) {
        out->family = AF_INET6;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(out->ip, mapped, 12)) {
            memmove(out->ip, out->ip + 12, 4);
            memset(out->ip + 4, 0, 12);
            out->family = AF_INET;
        }
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------------------ */
/* lifecycle */

struct tracker_state *ts_new(const struct ts_config *cfg, struct ds_err *e)
{
    struct tracker_state *st = calloc(1, sizeof *st);
    if (!st) {
        ds_errf(e, "out of memory");
        return NULL;
    }
    if (cfg)
        st->cfg = *cfg;
    struct ts_config *c = &st->cfg;
    if (!c->interval_s)
        c->interval_s = 120;
    if (!c->min_interval_s)
        c->min_interval_s = c->interval_s < 5 ? c->interval_s : 5;
    if (c->min_interval_s > c->interval_s)
        c->min_interval_s = c->interval_s;
    if (!c->expire_s)
        c->expire_s = 2 * c->interval_s + 60;
    if (!c->max_peers_per_torrent)
        c->max_peers_per_torrent = 10000;
    if (!c->max_peers_total)
        c->max_peers_total = 100000;
    if (!c->max_torrents)
        c->max_torrents = 1000;
    st->rng = c->rng_seed ? c->rng_seed : 0x9e3779b97f4a7c15ull;
    st->hash_key = rng_next(&st->rng);
    return st;
}

static void torrent_free(struct ts_torrent *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->peers[i].strip);
    free(t->peers);
    free(t->idx);
    free(t->gone);
    free(t->name);
}

void ts_free(struct tracker_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nt; i++)
        torrent_free(&st->t[i]);
    free(st->t);
    free(st);
}

void ts_set_note(struct tracker_state *st, ts_note_fn fn, void *ctx)
{
    st->note = fn;
    st->note_ctx = ctx;
}

const struct ts_config *ts_config(const struct tracker_state *st) { return &st->cfg; }
size_t ts_num_peers(const struct tracker_state *st) { return st->total_peers; }
size_t ts_num_torrents(const struct tracker_state *st) { return st->nt; }

static struct ts_torrent *find_torrent(const struct tracker_state *st, const uint8_t ih[20])
{
    for (size_t i = 0; i < st->nt; i++)
        if (!memcmp(st->t[i].ih, ih, 20))
            return &st->t[i];
    return NULL;
}

static struct ts_torrent *new_torrent(struct tracker_state *st, const uint8_t ih[20])
{
    if (st->nt == st->capt) {
        size_t nc = st->capt ? st->capt * 2 : 4;
        struct ts_torrent *nt = realloc(st->t, nc * sizeof *nt);
        if (!nt)
            return NULL;
        st->t = nt;
        st->capt = nc;
    }
    struct ts_torrent *t = &st->t[st->nt++];
    memset(t, 0, sizeof *t);
    memcpy(t->ih, ih, 20);
    return t;
}

int ts_add_torrent(struct tracker_state *st, const uint8_t info_hash[20], const char *name, uint64_t total_length,
                   uint32_t num_pieces, struct ds_err *e)
{
    struct ts_torrent *t = find_torrent(st, info_hash);
    if (!t && !(t = new_torrent(st, info_hash)))
        return ds_errf(e, "out of memory");
    if (name) {
        char *n = strdup(name);
        if (!n)
            return ds_errf(e, "out of memory");
        free(t->name);
        t->name = n;
    }
    if (total_length)
        t->total = total_length;
    if (num_pieces)
        t->npieces = num_pieces;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ts_load_whitelist(struct tracker_state *st, const char *path, struct ds_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ds_errno(e, "%s", path);
    char line[512];
    unsigned lineno = 0, n = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        char *hash = strchr(p, '#');
        if (hash)
            *hash = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t l = strlen(p);
        while (l && (p[l - 1] == '\n' || p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
            p[--l] = 0;
        if (!l)
            continue;
        uint8_t ih[20];
        bool ok = l == 40;
        for (size_t i = 0; ok && i < 20; i++) {
            int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
            if (hi < 0 || lo < 0)
                ok = false;
            else
                ih[i] = (uint8_t)(hi << 4 | lo);
        }
        if (!ok) {
            rc = ds_errf(e, "%s:%u: not a 40-hex-digit info-hash", path, lineno);
            break;
        }
        if (ts_add_torrent(st, ih, NULL, 0, 0, e)) {
            rc = -1;
            break;
        }
        n++;
    }
    if (!rc && ferror(f))
        rc = ds_errno(e, "%s: read error", path);
    fclose(f);
    if (!rc && n == 0)
        rc = ds_errf(e, "%s: no info-hashes in the whitelist", path);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------ */
/* query parsing */

long ts_pct_decode(const char *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (o >= cap)
            return -1;
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval((unsigned char)src[i + 1]), lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            dst[o++] = (uint8_t)(hi << 4 | lo);
            i += 2;
        } else if (c < 0x21 || c == 0x7f || c == '#') {
            return -1;      /* raw spaces, controls and fragments do not belong in a query */
        } else {
            dst[o++] = c;
        }
    }
    return (long)o;
}

static int parse_u64(const uint8_t *v, long n, uint64_t max, uint64_t *out)
{
    if (n <= 0 || n > 19)
        return -1;
    uint64_t x = 0;
    for (long i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (x > max)
        return -1;
    *out = x;
    return 0;
}

/* Iterate key=value pairs: calls fn for each with decoded key (NUL-terminated, <= 31 bytes) and value. */
typedef int (*kv_fn)(void *ctx, const char *key, const uint8_t *val, long vlen, struct ds_err *e);

static int each_param(const char *q, size_t len, kv_fn fn, void *ctx, struct ds_err *e)
{
    if (len > TS_MAX_QUERY)
        return ds_errf(e, "request too long");
    uint8_t *scratch = malloc(len + 1);
    if (!scratch)
        return ds_errf(e, "out of memory");
    int rc = 0;
    size_t i = 0;
    while (i < len && !rc) {
        size_t j = i;
        while (j < len && q[j] != '&')
            j++;
        if (j > i) {
            size_t eq = i;
            while (eq < j && q[eq] != '=')
                eq++;
            uint8_t kb[32];
            long kl = ts_pct_decode(q + i, eq - i, kb, sizeof kb - 1);
            if (kl < 0) {
                /* an over-long or malformed key: unknown to us anyway, unless it is garbage */
                long chk = ts_pct_decode(q + i, eq - i, scratch, len + 1);
                if (chk < 0)
                    rc = ds_errf(e, "malformed percent-encoding in the query");
            } else {
                kb[kl] = 0;
                long vl = 0;
                if (eq < j) {
                    vl = ts_pct_decode(q + eq + 1, j - eq - 1, scratch, len + 1);
                    if (vl < 0) {
                        rc = ds_errf(e, "malformed percent-encoding in '%s'", (char *)kb);
                        break;
                    }
                }
                if (memchr(kb, 0, (size_t)kl) == NULL)
                    rc = fn(ctx, (const char *)kb, scratch, vl, e);
            }
        }
        i = j + 1;
    }
    free(scratch);
    return rc;
}

enum {
    F_IH = 1 << 0, F_PID = 1 << 1, F_PORT = 1 << 2, F_UP = 1 << 3, F_DOWN = 1 << 4, F_LEFT = 1 << 5,
    F_EVENT = 1 << 6, F_NUMWANT = 1 << 7, F_COMPACT = 1 << 8, F_IP = 1 << 9, F_NAME = 1 << 10,
    F_RATE = 1 << 11, F_NP = 1 << 12, F_PIECES = 1 << 13, F_NOPID = 1 << 14, F_UPR = 1 << 15,
};

struct ann_ctx {
    struct ts_announce *a;
    unsigned seen;
    uint8_t *bits;          /* decoded ds_pieces */
    long nbits_bytes;
};

static int ann_kv(void *ctx, const char *k, const uint8_t *v, long n, struct ds_err *e)
{
    struct ann_ctx *c = ctx;
    struct ts_announce *a = c->a;
    unsigned f = 0;
    uint64_t x;
    if (!strcmp(k, "info_hash")) f = F_IH;
    else if (!strcmp(k, "peer_id")) f = F_PID;
    else if (!strcmp(k, "port")) f = F_PORT;
    else if (!strcmp(k, "uploaded")) f = F_UP;
    else if (!strcmp(k, "downloaded")) f = F_DOWN;
    else if (!strcmp(k, "left")) f = F_LEFT;
    else if (!strcmp(k, "event")) f = F_EVENT;
    else if (!strcmp(k, "numwant")) f = F_NUMWANT;
    else if (!strcmp(k, "compact")) f = F_COMPACT;
    else if (!strcmp(k, "no_peer_id")) f = F_NOPID;
    else if (!strcmp(k, "ip")) f = F_IP;
    else if (!strcmp(k, "ds_name")) f = F_NAME;
    else if (!strcmp(k, "ds_rate")) f = F_RATE;
    else if (!strcmp(k, "ds_up")) f = F_UPR;
    else if (!strcmp(k, "ds_npieces")) f = F_NP;
    else if (!strcmp(k, "ds_pieces")) f = F_PIECES;
    else return 0;
    if (c->seen & f)
        return ds_errf(e, "'%s' given twice", k);
    c->seen |= f;
    switch (f) {
    case F_IH:
    case F_PID:
        if (n != 20)
            return ds_errf(e, "%s must be 20 bytes, not %ld", k, n);
        memcpy(f == F_IH ? a->info_hash : a->peer_id, v, 20);
        return 0;
    case F_PORT:
        if (parse_u64(v, n, 65535, &x))
            return ds_errf(e, "invalid port");
        a->port = (uint16_t)x;
        return 0;
    case F_UP:
    case F_DOWN:
    case F_LEFT:
        if (parse_u64(v, n, INT64_MAX, &x))
            return ds_errf(e, "invalid %s", k);
        *(f == F_UP ? &a->uploaded : f == F_DOWN ? &a->downloaded : &a->left) = x;
        return 0;
    case F_EVENT:
        if (n == 0 || (n == 5 && !memcmp(v, "empty", 5))) a->event = TS_EV_NONE;
        else if (n == 7 && !memcmp(v, "started", 7)) a->event = TS_EV_STARTED;
        else if (n == 9 && !memcmp(v, "completed", 9)) a->event = TS_EV_COMPLETED;
        else if (n == 7 && !memcmp(v, "stopped", 7)) a->event = TS_EV_STOPPED;
        else if (n == 6 && !memcmp(v, "paused", 6)) a->event = TS_EV_NONE;   /* BEP 21 */
        else return ds_errf(e, "invalid event");
        return 0;
    case F_NUMWANT:
        if (parse_u64(v, n, INT64_MAX, &x))
            return ds_errf(e, "invalid numwant");
        a->numwant = x > TS_MAX_NUMWANT ? TS_MAX_NUMWANT : (int)x;
        return 0;
    case F_COMPACT:
    case F_NOPID:
        if (n != 1 || (v[0] != '0' && v[0] != '1'))
            return ds_errf(e, "invalid %s", k);
        if (f == F_COMPACT)
            a->compact = v[0] == '1';
        else
            a->no_peer_id = v[0] == '1';
        return 0;
    case F_IP: {
        char s[INET6_ADDRSTRLEN + 1];
        if (n <= 0 || n >= (long)sizeof s)
            return 0;   /* a hostname or junk: ignored, like most trackers do */
        memcpy(s, v, (size_t)n);
        s[n] = 0;
        if (ts_parse_addr(s, &a->ip) == 0)
            a->has_ip = true;
        return 0;
    }
    case F_NAME: {
        if (n >= TS_NAME_MAX)
            return ds_errf(e, "ds_name longer than %d bytes", TS_NAME_MAX - 1);
        for (long i = 0; i < n; i++)
            a->name[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? (char)v[i] : '?';
        a->name[n] = 0;
        return 0;
    }
    case F_RATE:
    case F_UPR:
        if (parse_u64(v, n, INT64_MAX, &x))
            return ds_errf(e, "invalid %s", k);
        if (f == F_RATE) {
            a->rate = x;
            a->has_rate = true;
        } else {
            a->up_rate = x;
            a->has_up = true;
        }
        return 0;
    case F_NP:
        if (parse_u64(v, n, UINT32_MAX, &x) || x == 0)
            return ds_errf(e, "invalid ds_npieces");
        a->npieces = (uint32_t)x;
        return 0;
    case F_PIECES:
        if (n > TS_MAX_BITFIELD_HEX || n % 2)
            return ds_errf(e, "invalid ds_pieces");
        c->bits = malloc((size_t)n / 2 + 1);
        if (!c->bits)
            return ds_errf(e, "out of memory");
        for (long i = 0; i < n / 2; i++) {
            int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return ds_errf(e, "invalid ds_pieces");
            c->bits[i] = (uint8_t)(hi << 4 | lo);
        }
        c->nbits_bytes = n / 2;
        return 0;
    }
    return 0;
}

int ts_parse_announce(const char *query, size_t len, struct ts_announce *a, struct ds_err *e)
{
    memset(a, 0, sizeof *a);
    a->numwant = -1;
    a->compact = true;
    struct ann_ctx c = {.a = a};
    int rc = each_param(query, len, ann_kv, &c, e);
    if (!rc) {
        static const struct { unsigned f; const char *name; } req[] = {
            {F_IH, "info_hash"}, {F_PID, "peer_id"}, {F_PORT, "port"},
            {F_UP, "uploaded"}, {F_DOWN, "downloaded"}, {F_LEFT, "left"},
        };
        for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
            if (!(c.seen & req[i].f)) {
                rc = ds_errf(e, "missing %s", req[i].name);
                break;
            }
    }
    if (!rc && a->port == 0 && a->event != TS_EV_STOPPED)
        rc = ds_errf(e, "invalid port");
    if (!rc && c.bits) {
        /* fold the bitfield into buckets; a mismatched length is ignored (not fatal) */
        uint32_t np = a->npieces;
        if (np && (uint64_t)c.nbits_bytes == ((uint64_t)np + 7) / 8) {
            uint32_t nb = np < TS_STRIP ? np : TS_STRIP;
            for (uint32_t b = 0; b < nb; b++) {
                uint32_t lo = (uint32_t)((uint64_t)b * np / nb), hi = (uint32_t)((uint64_t)(b + 1) * np / nb);
                uint32_t have = 0;
                for (uint32_t p = lo; p < hi; p++)
                    have += (c.bits[p >> 3] >> (7 - (p & 7))) & 1;
                a->strip[b] = (uint8_t)((have * 255u + (hi - lo) / 2) / (hi - lo));
            }
            a->has_strip = true;
        }
    }
    free(c.bits);
    return rc;
}

struct scr_ctx {
    struct ts_scrape *s;
};

static int scr_kv(void *ctx, const char *k, const uint8_t *v, long n, struct ds_err *e)
{
    struct scr_ctx *c = ctx;
    if (strcmp(k, "info_hash"))
        return 0;
    if (n != 20)
        return ds_errf(e, "info_hash must be 20 bytes, not %ld", n);
    if (c->s->n >= TS_MAX_SCRAPE)
        return ds_errf(e, "too many info_hash values (at most %d)", TS_MAX_SCRAPE);
    memcpy(c->s->hashes[c->s->n++], v, 20);
    return 0;
}

int ts_parse_scrape(const char *query, size_t len, struct ts_scrape *s, struct ds_err *e)
{
    memset(s, 0, sizeof *s);
    struct scr_ctx c = {.s = s};
    return each_param(query, len, scr_kv, &c, e);
}

/* ------------------------------------------------------------------------------------------------------ */
/* peer table */

static int idx_rebuild(const struct tracker_state *st, struct ts_torrent *t, size_t want_cap)
{
    size_t ic = t->idx_cap ? t->idx_cap : 16;
    while (ic < 2 * want_cap)
        ic *= 2;
    if (ic != t->idx_cap) {
        uint32_t *ni = malloc(ic * sizeof *ni);
        if (!ni)
            return -1;
        free(t->idx);
        t->idx = ni;
        t->idx_cap = ic;
    }
    memset(t->idx, 0, t->idx_cap * sizeof *t->idx);
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)id_hash(st, t->peers[i].id) & (t->idx_cap - 1);
        while (t->idx[h])
            h = (h + 1) & (t->idx_cap - 1);
        t->idx[h] = (uint32_t)i + 1;
    }
    return 0;
}

static struct ts_peer *find_peer(const struct tracker_state *st, const struct ts_torrent *t, const uint8_t id[20])
{
    if (!t->idx_cap)
        return NULL;
    size_t h = (size_t)id_hash(st, id) & (t->idx_cap - 1);
    while (t->idx[h]) {
        struct ts_peer *p = &t->peers[t->idx[h] - 1];
        if (!memcmp(p->id, id, 20))
            return p;
        h = (h + 1) & (t->idx_cap - 1);
    }
    return NULL;
}

static struct ts_peer *add_peer(struct tracker_state *st, struct ts_torrent *t, const uint8_t id[20])
{
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 8;
        struct ts_peer *np = realloc(t->peers, nc * sizeof *np);
        if (!np)
            return NULL;
        t->peers = np;
        t->cap = nc;
    }
    if (t->idx_cap < 2 * t->cap && idx_rebuild(st, t, t->cap))
        return NULL;
    struct ts_peer *p = &t->peers[t->n];
    memset(p, 0, sizeof *p);
    memcpy(p->id, id, 20);
    size_t h = (size_t)id_hash(st, id) & (t->idx_cap - 1);
    while (t->idx[h])
        h = (h + 1) & (t->idx_cap - 1);
    t->idx[h] = (uint32_t)t->n + 1;
    t->n++;
    st->total_peers++;
    return p;
}

static void remember_gone(struct ts_torrent *t, const struct ts_peer *p, uint64_t now, bool expired)
{
    if (!t->gone) {
        t->gone = calloc(TS_GONE_MAX, sizeof *t->gone);
        if (!t->gone)
            return;
    }
    /* one row per peer id */
    for (size_t k = 0; k < t->gone_n; k++) {
        struct ts_gone *g = &t->gone[(t->gone_head + k) % TS_GONE_MAX];
        if (!memcmp(g->p.id, p->id, 20)) {
            g->p = *p;
            g->p.strip = NULL;
            g->gone_at = now;
            g->expired = expired;
            return;
        }
    }
    size_t slot;
    if (t->gone_n < TS_GONE_MAX) {
        slot = (t->gone_head + t->gone_n++) % TS_GONE_MAX;
    } else {
        slot = t->gone_head;
        t->gone_head = (t->gone_head + 1) % TS_GONE_MAX;
    }
    t->gone[slot].p = *p;
    t->gone[slot].p.strip = NULL;
    t->gone[slot].gone_at = now;
    t->gone[slot].expired = expired;
}

static void forget_gone(struct ts_torrent *t, const uint8_t id[20])
{
    for (size_t k = 0; k < t->gone_n; k++) {
        size_t s = (t->gone_head + k) % TS_GONE_MAX;
        if (!memcmp(t->gone[s].p.id, id, 20)) {
            /* shift the later ones down */
            for (size_t m = k; m + 1 < t->gone_n; m++)
                t->gone[(t->gone_head + m) % TS_GONE_MAX] = t->gone[(t->gone_head + m + 1) % TS_GONE_MAX];
            t->gone_n--;
            return;
        }
    }
}

/* Remove peers[i] (swap with the last); the caller rebuilds the index. */
static void drop_peer_at(struct tracker_state *st, struct ts_torrent *t, size_t i, uint64_t now, bool expired)
{
    struct ts_peer *p = &t->peers[i];
    remember_gone(t, p, now, expired);
    if (p->seed)
        t->seeds--;
    free(p->strip);
    t->peers[i] = t->peers[t->n - 1];
    t->n--;
    st->total_peers--;
}

size_t ts_expire(struct tracker_state *st, uint64_t now_ms)
{
    size_t gone = 0;
    uint64_t limit = (uint64_t)st->cfg.expire_s * 1000u;
    for (size_t k = 0; k < st->nt; k++) {
        struct ts_torrent *t = &st->t[k];
        size_t before = gone;
        for (size_t i = 0; i < t->n;) {
            if (now_ms > t->peers[i].last_seen && now_ms - t->peers[i].last_seen > limit) {
                note(st, TS_NOTE_EXPIRE, t, &t->peers[i], "silent too long");
                drop_peer_at(st, t, i, now_ms, true);
                gone++;
            } else {
                i++;
            }
        }
        if (gone != before)
            idx_rebuild(st, t, t->cap);
    }
    return gone;
}

static uint64_t torrent_size(const struct ts_torrent *t) { return t->total ? t->total : t->max_left; }

static void set_failure(struct ts_reply *r, const char *why)
{
    memset(r, 0, offsetof(struct ts_reply, peers));
    r->failure = why;
}

void ts_announce(struct tracker_state *st, const struct ts_announce *a, const struct ts_addr *src, bool trust_ip,
                 int want_family, uint64_t now_ms, struct ts_reply *r)
{
    memset(r, 0, offsetof(struct ts_reply, peers));
    struct ts_torrent *t = find_torrent(st, a->info_hash);
    if (!t) {
        if (!st->cfg.open) {
            if (st->note)
                st->note(st->note_ctx, TS_NOTE_REFUSED, a->info_hash, a->peer_id, src, "info_hash not on the whitelist");
            set_failure(r, "info_hash not served by this tracker");
            return;
        }
        if (a->event == TS_EV_STOPPED) {
            set_failure(r, "unknown torrent");
            return;
        }
        if (st->nt >= st->cfg.max_torrents || !(t = new_torrent(st, a->info_hash))) {
            set_failure(r, "tracker is full (torrents)");
            return;
        }
    }
    r->interval = st->cfg.interval_s;
    r->min_interval = st->cfg.min_interval_s;

    struct ts_addr addr = trust_ip && a->has_ip ? a->ip : *src;
    addr.port = a->port;

    struct ts_peer *p = find_peer(st, t, a->peer_id);
    if (a->event == TS_EV_STOPPED) {
        if (p) {
            if (a->left == 0 && !p->seed) {
                /* finished and left before its `completed` announce went out: still a completion */
                t->downloaded++;
                note(st, TS_NOTE_COMPLETE, t, p, "with stopped");
            }
            note(st, TS_NOTE_STOP, t, p, NULL);
            p->left = a->left;
            p->uploaded = a->uploaded;
            p->downloaded = a->downloaded;
            p->last_seen = now_ms;
            p->last_event = TS_EV_STOPPED;
            drop_peer_at(st, t, (size_t)(p - t->peers), now_ms, false);
            idx_rebuild(st, t, t->cap);
        }
        r->complete = t->seeds;
        r->incomplete = (uint32_t)(t->n - t->seeds);
        r->downloaded = t->downloaded;
        return;   /* no peers for a leaving client */
    }

    bool fresh = false;
    if (!p) {
        if (st->total_peers >= st->cfg.max_peers_total || t->n >= st->cfg.max_peers_per_torrent)
            ts_expire(st, now_ms);
        if (st->total_peers >= st->cfg.max_peers_total || t->n >= st->cfg.max_peers_per_torrent) {
            r->warning = "tracker full: not registered";
        } else if ((p = add_peer(st, t, a->peer_id)) != NULL) {
            fresh = true;
            p->first_seen = now_ms;
            p->prev_t = now_ms;
            p->prev_left = a->left;
            p->prev_up = a->uploaded;
            forget_gone(t, a->peer_id);
        } else {
            r->warning = "out of memory: not registered";
        }
    }
    if (p) {
        p->addr = addr;
        p->last_event = a->event;
        if (a->left > t->max_left)
            t->max_left = a->left;
        /* rates: the peer's own figures when it sends them, else progress of `left` between announces */
        uint64_t dt = now_ms - p->prev_t;
        if (dt >= 500) {
            double inst = p->prev_left > a->left ? (double)(p->prev_left - a->left) * 1000.0 / (double)dt : 0;
            double upi = a->uploaded > p->prev_up ? (double)(a->uploaded - p->prev_up) * 1000.0 / (double)dt : 0;
            p->rate = p->rate > 0 ? 0.3 * p->rate + 0.7 * inst : inst;
            p->up_rate = p->up_rate > 0 ? 0.3 * p->up_rate + 0.7 * upi : upi;
            p->prev_t = now_ms;
            p->prev_left = a->left;
            p->prev_up = a->uploaded;
        }
        if (a->has_rate)
            p->rate = (double)a->rate;
        if (a->has_up)
            p->up_rate = (double)a->up_rate;
        if (a->left == 0)
            p->rate = 0;
        p->left = a->left;
        p->uploaded = a->uploaded;
        p->downloaded = a->downloaded;
        p->last_seen = now_ms;
        if (a->name[0])
            memcpy(p->name, a->name, sizeof p->name);
        if (a->has_strip && (!t->npieces || t->npieces == a->npieces)) {
            if (!t->npieces)
                t->npieces = a->npieces;
            uint8_t nb = (uint8_t)(a->npieces < TS_STRIP ? a->npieces : TS_STRIP);
            if (!p->strip)
                p->strip = malloc(TS_STRIP);
            if (p->strip) {
                memcpy(p->strip, a->strip, nb);
                p->nstrip = nb;
                p->has_strip = true;
            }
        }
        bool was_seed = p->seed;
        p->seed = a->left == 0;
        if (p->seed && !was_seed)
            t->seeds++;
        if (!p->seed && was_seed)
            t->seeds--;
        if (a->event == TS_EV_COMPLETED || (!fresh && p->seed && !was_seed)) {
            if (!was_seed) {
                t->downloaded++;
                note(st, TS_NOTE_COMPLETE, t, p, NULL);
            }
        }
        if (fresh)
            note(st, TS_NOTE_JOIN, t, p, p->seed ? "seed" : "leecher");
    }
    r->complete = t->seeds;
    r->incomplete = (uint32_t)(t->n - t->seeds);
    r->downloaded = t->downloaded;

    /* peer selection: a random starting point, the requester itself excluded, seeds don't get seeds */
    int want = a->numwant < 0 ? TS_DEFAULT_NUMWANT : a->numwant;
    if (want > TS_MAX_NUMWANT)
        want = TS_MAX_NUMWANT;
    bool req_seed = a->left == 0;
    if (t->n && want > 0) {
        size_t start = (size_t)(rng_next(&st->rng) % t->n);
        for (size_t k = 0; k < t->n && r->n_peers < (size_t)want; k++) {
            const struct ts_peer *q = &t->peers[(start + k) % t->n];
            if (q == p || !memcmp(q->id, a->peer_id, 20))
                continue;
            if (req_seed && q->seed)
                continue;
            if (want_family && q->addr.family != want_family)
                continue;
            r->peers[r->n_peers] = q->addr;
            memcpy(r->peer_ids[r->n_peers], q->id, 20);
            r->n_peers++;
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* encoders */

int ts_encode_failure(const char *reason, struct buf *out)
{
    int rc = benc_dict_begin(out);
    rc |= benc_cstr(out, "failure reason");
    rc |= benc_cstr(out, reason);
    rc |= benc_end(out);
    return rc ? -1 : 0;
}

int ts_encode_reply(const struct ts_reply *r, bool compact, bool no_peer_id, struct buf *out)
{
    if (r->failure)
        return ts_encode_failure(r->failure, out);
    int rc = benc_dict_begin(out);
    rc |= benc_cstr(out, "complete");
    rc |= benc_int(out, r->complete);
    rc |= benc_cstr(out, "downloaded");
    rc |= benc_int(out, r->downloaded);
    rc |= benc_cstr(out, "incomplete");
    rc |= benc_int(out, r->incomplete);
    rc |= benc_cstr(out, "interval");
    rc |= benc_int(out, r->interval);
    rc |= benc_cstr(out, "min interval");
    rc |= benc_int(out, r->min_interval);
    rc |= benc_cstr(out, "peers");
    if (compact) {
        size_t n4 = 0, n6 = 0;
        for (size_t i = 0; i < r->n_peers; i++)
            if (r->peers[i].family == AF_INET6)
                n6++;
            else
                n4++;
        rc |= buf_printf(out, "%zu:", n4 * 6);
        for (size_t i = 0; i < r->n_peers; i++)
            if (r->peers[i].family != AF_INET6) {
                rc |= buf_put(out, r->peers[i].ip, 4);
                rc |= buf_put_u8(out, (uint8_t)(r->peers[i].port >> 8));
                rc |= buf_put_u8(out, (uint8_t)r->peers[i].port);
            }
        if (n6) {
            rc |= benc_cstr(out, "peers6");
            rc |= buf_printf(out, "%zu:", n6 * 18);
            for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].family == AF_INET6) {
                    rc |= buf_put(out, r->peers[i].ip, 16);
                    rc |= buf_put_u8(out, (uint8_t)(r->peers[i].port >> 8));
                    rc |= buf_put_u8(out, (uint8_t)r->peers[i].port);
                }
        }
    } else {
        rc |= benc_list_begin(out);
        for (size_t i = 0; i < r->n_peers; i++) {
            char ip[64];
            ts_addr_format(&r->peers[i], false, ip, sizeof ip);
            rc |= benc_dict_begin(out);
            rc |= benc_cstr(out, "ip");
            rc |= benc_cstr(out, ip);
            if (!no_peer_id) {
                rc |= benc_cstr(out, "peer id");
                rc |= benc_str(out, r->peer_ids[i], 20);
            }
            rc |= benc_cstr(out, "port");
            rc |= benc_int(out, r->peers[i].port);
            rc |= benc_end(out);
        }
        rc |= benc_end(out);
    }
    if (r->warning) {
        rc |= benc_cstr(out, "warning message");
        rc |= benc_cstr(out, r->warning);
    }
    rc |= benc_end(out);
    return rc ? -1 : 0;
}

bool ts_counts(const struct tracker_state *st, const uint8_t info_hash[20], uint32_t *complete,
               uint32_t *incomplete, uint32_t *downloaded)
{
    const struct ts_torrent *t = find_torrent(st, info_hash);
    if (!t)
        return false;
    *complete = t->seeds;
    *incomplete = (uint32_t)(t->n - t->seeds);
    *downloaded = t->downloaded;
    return true;
}

static int cmp20(const void *a, const void *b) { return memcmp(a, b, 20); }

int ts_encode_scrape(const struct tracker_state *st, const struct ts_scrape *s, struct buf *out)
{
    /* keys must be ascending: sort a copy (all torrents when none was named, bounded by max_torrents) */
    size_t n = s->n ? s->n : st->nt;
    uint8_t (*h)[20] = malloc((n ? n : 1) * 20);
    if (!h)
        return -1;
    for (size_t i = 0; i < n; i++)
        memcpy(h[i], s->n ? s->hashes[i] : st->t[i].ih, 20);
    qsort(h, n, 20, cmp20);
    int rc = benc_dict_begin(out);
    rc |= benc_cstr(out, "files");
    rc |= benc_dict_begin(out);
    for (size_t i = 0; i < n; i++) {
        if (i && !memcmp(h[i], h[i - 1], 20))
            continue;
        uint32_t c, inc, d;
        if (!ts_counts(st, h[i], &c, &inc, &d))
            continue;   /* not served: left out, as opentracker does */
        rc |= benc_str(out, h[i], 20);
        rc |= benc_dict_begin(out);
        rc |= benc_cstr(out, "complete");
        rc |= benc_int(out, c);
        rc |= benc_cstr(out, "downloaded");
        rc |= benc_int(out, d);
        rc |= benc_cstr(out, "incomplete");
        rc |= benc_int(out, inc);
        rc |= benc_end(out);
    }
    rc |= benc_end(out);
    rc |= benc_end(out);
    free(h);
    return rc ? -1 : 0;
}

int ts_http_announce(struct tracker_state *st, const char *query, size_t len, const struct ts_addr *src,
                     bool trust_ip, uint64_t now_ms, struct buf *out)
{
    struct ds_err e;
    if (len > TS_MAX_QUERY) {
        ts_encode_failure("request too long", out);
        return 400;
    }
    struct ts_announce *a = malloc(sizeof *a);
    struct ts_reply *r = malloc(sizeof *r);
    if (!a || !r) {
        free(a);
        free(r);
        ts_encode_failure("out of memory", out);
        return 500;
    }
    if (ts_parse_announce(query, len, a, &e)) {
        ts_encode_failure(e.msg, out);
    } else {
        ts_announce(st, a, src, trust_ip, 0, now_ms, r);
        ts_encode_reply(r, a->compact, a->no_peer_id, out);
    }
    free(a);
    free(r);
    return 200;
}

int ts_http_scrape(struct tracker_state *st, const char *query, size_t len, struct buf *out)
{
    struct ds_err e;
    if (len > TS_MAX_QUERY) {
        ts_encode_failure("request too long", out);
        return 400;
    }
    struct ts_scrape *s = malloc(sizeof *s);
    if (!s) {
        ts_encode_failure("out of memory", out);
        return 500;
    }
    if (ts_parse_scrape(query, len, s, &e))
        ts_encode_failure(e.msg, out);
    else if (!s->n && !st->cfg.open && st->nt > TS_MAX_SCRAPE)
        ts_encode_failure("name the info_hash to scrape", out);
    else if (!s->n && st->cfg.open)
        ts_encode_failure("full scrape is disabled", out);
    else
        ts_encode_scrape(st, s, out);
    free(s);
    return 200;
}

/* ------------------------------------------------------------------------------------------------------ */
/* status JSON */

static void json_str(struct buf *b, const char *s)
{
    buf_put_u8(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            buf_printf(b, "\\u%04x", *p);
        else
            buf_put_u8(b, *p);
    }
    buf_put_u8(b, '"');
}

static void hex20(const uint8_t *h, char *out)
{
    for (int i = 0; i < 20; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

static void client_of(const uint8_t *id, char *out)
{
    /* Azureus style "-XX0000-": the bracketed client code; else the printable prefix */
    size_t n = 0;
    for (size_t i = 0; i < 8 && id[i] >= 0x21 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\'; i++)
        out[n++] = (char)id[i];
    out[n] = 0;
}

static double peer_progress(const struct ts_torrent *t, const struct ts_peer *p)
{
    uint64_t size = torrent_size(t);
    if (p->left == 0)
        return 1.0;
    if (!size || p->left >= size)
        return 0.0;
    return (double)(size - p->left) / (double)size;
}

static void peer_json(struct buf *b, const struct ts_torrent *t, const struct ts_peer *p, uint64_t now,
                      const char *state_override, uint32_t interval_s)
{
    char id[41], client[9], addr[80];
    hex20(p->id, id);
    client_of(p->id, client);
    ts_addr_format(&p->addr, true, addr, sizeof addr);
    const char *state = state_override;
    double rate = state_override ? 0 : p->rate;
    if (!state) {
        if (p->seed)
            state = "seeding";
        else if (now - p->last_seen > (uint64_t)interval_s * 1000u + 30000u)
            state = "silent";
        else if (p->rate > 0)
            state = "downloading";
        else if (p->last_event == TS_EV_STARTED || now - p->first_seen < 15000)
            state = "starting";
        else
            state = "stalled";
    }
    double eta = -1;
    if (!p->seed && rate > 0)
        eta = (double)p->left / rate;
    buf_printf(b, "{\"id\":\"%s\",\"client\":", id);
    json_str(b, client);
    buf_printf(b, ",\"name\":");
    json_str(b, p->name);
    buf_printf(b, ",\"addr\":\"%s\",\"left\":%" PRIu64 ",\"downloaded\":%" PRIu64 ",\"uploaded\":%" PRIu64
                  ",\"size\":%" PRIu64 ",\"progress\":%.4f,\"rate\":%.0f,\"up_rate\":%.0f,\"eta\":%.0f"
                  ",\"state\":\"%s\",\"since\":%.1f,\"age\":%.1f}",
               addr, p->left, p->downloaded, p->uploaded, torrent_size(t), peer_progress(t, p), rate,
               state_override ? 0 : p->up_rate, eta, state, (double)(now - p->first_seen) / 1000.0,
               (double)(now - p->last_seen) / 1000.0);
}

int ts_status_json(const struct tracker_state *st, uint64_t now_ms, struct buf *out)
{
    size_t b0 = out->len;
    uint64_t all_machines = 0, all_complete = 0;
    double all_rate = 0;
    buf_printf(out, "{\"version\":1,\"interval\":%u,\"min_interval\":%u,\"open\":%s,\"torrents\":[",
               st->cfg.interval_s, st->cfg.min_interval_s, st->cfg.open ? "true" : "false");
    for (size_t k = 0; k < st->nt; k++) {
        const struct ts_torrent *t = &st->t[k];
        char ih[41];
        hex20(t->ih, ih);
        double rate = 0, up = 0, prog = 0, eta = 0;
        uint64_t left = 0;
        bool eta_known = true;
        for (size_t i = 0; i < t->n; i++) {
            const struct ts_peer *p = &t->peers[i];
            rate += p->rate;
            up += p->up_rate;
            prog += peer_progress(t, p);
            left += p->left;
            if (p->seed)
                continue;
            if (p->rate > 0) {
                if ((double)p->left / p->rate > eta)
                    eta = (double)p->left / p->rate;
            } else {
                eta_known = false;
            }
        }
        if (!eta_known)
            eta = -1;
        all_machines += t->n;
        all_complete += t->seeds;
        all_rate += rate;
        if (k)
            buf_put_u8(out, ',');
        buf_printf(out, "{\"info_hash\":\"%s\",\"name\":", ih);
        json_str(out, t->name ? t->name : "");
        buf_printf(out, ",\"size\":%" PRIu64 ",\"pieces\":%u,\"complete\":%u,\"incomplete\":%zu,\"downloaded\":%u"
                        ",\"left\":%" PRIu64 ",\"rate\":%.0f,\"up_rate\":%.0f,\"progress\":%.4f,\"eta\":%.0f",
                   torrent_size(t), t->npieces, t->seeds, t->n - t->seeds, t->downloaded, left, rate, up,
                   t->n ? prog / (double)t->n : 0.0, eta);
        /* availability strip: per bucket, how many peers hold it (fractions add up) */
        uint32_t nb = t->npieces ? (t->npieces < TS_STRIP ? t->npieces : TS_STRIP) : TS_STRIP;
        bool any_strip = false;
        buf_printf(out, ",\"availability\":[");
        for (uint32_t b = 0; b < nb; b++) {
            double sum = 0;
            for (size_t i = 0; i < t->n; i++) {
                const struct ts_peer *p = &t->peers[i];
                if (p->has_strip && p->nstrip == nb) {
                    sum += p->strip[b] / 255.0;
                    any_strip = true;
                } else {
                    sum += peer_progress(t, p);
                }
            }
            buf_printf(out, "%s%.2f", b ? "," : "", sum);
        }
        buf_printf(out, "],\"availability_source\":\"%s\",\"peers_total\":%zu,\"peers\":[",
                   any_strip ? "pieces" : "progress", t->n);
        size_t shown = 0;
        for (size_t i = 0; i < t->n && shown < TS_STATUS_MAX_PEERS; i++, shown++) {
            if (shown)
                buf_put_u8(out, ',');
            peer_json(out, t, &t->peers[i], now_ms, NULL, st->cfg.interval_s);
        }
        buf_printf(out, "],\"gone\":[");
        for (size_t g = 0; g < t->gone_n; g++) {
            const struct ts_gone *gp = &t->gone[(t->gone_head + g) % TS_GONE_MAX];
            if (g)
                buf_put_u8(out, ',');
            peer_json(out, t, &gp->p, now_ms, gp->expired ? "lost" : "stopped", st->cfg.interval_s);
        }
        buf_printf(out, "]}");
    }
    buf_printf(out, "],\"totals\":{\"torrents\":%zu,\"machines\":%" PRIu64 ",\"complete\":%" PRIu64
                    ",\"rate\":%.0f}}",
               st->nt, all_machines, all_complete, all_rate);
    if (out->len == b0)
        return -1;
    return 0;
}
