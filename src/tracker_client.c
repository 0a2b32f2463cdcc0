/* tracker_client.c — announce URL building and response parsing for HTTP trackers (BEP 3, BEP 23, BEP 7).
 * No I/O here except peer_addr_parse, which may resolve a hostname. */
#include "tracker_client.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bencode.h"
#include "buf.h"

#define MSG_MAX 1024   /* tracker-supplied messages are truncated to this many bytes */

/* ---------------------------------------------------------------------------------------------------------------
 * Announce URL
 * ------------------------------------------------------------------------------------------------------------- */

static bool is_unreserved(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static int put_pct(struct buf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        if (is_unreserved(p[i])) {
            if (buf_put_u8(b, p[i]))
                return -1;
        } else {
            char t[3] = {'%', hex[p[i] >> 4], hex[p[i] & 15]};
            if (buf_put(b, t, 3))
                return -1;
        }
    }
    return 0;
}

char *tracker_announce_url(const struct announce_req *r)
{
    if (!r || !r->announce_url || !r->announce_url[0])
        return NULL;
    /* A fragment is never sent to the server; parameters placed after it would be lost. */
    size_t base_len = strcspn(r->announce_url, "#");
    if (base_len == 0)
        return NULL;

    struct buf b = {0};
    if (buf_put(&b, r->announce_url, base_len))
        goto oom;
    const char *q = memchr(r->announce_url, '?', base_len);
    char last = r->announce_url[base_len - 1];
    if (!q) {
        if (buf_put_u8(&b, '?'))
            goto oom;
    } else if (last != '?' && last != '&') {
        if (buf_put_u8(&b, '&'))
            goto oom;
    }

    if (buf_printf(&b, "info_hash=") || put_pct(&b, r->info_hash, sizeof r->info_hash) ||
        buf_printf(&b, "&peer_id=") || put_pct(&b, r->peer_id, sizeof r->peer_id) ||
        buf_printf(&b, "&port=%u&uploaded=%" PRIu64 "&downloaded=%" PRIu64 "&left=%" PRIu64 "&compact=1",
                   (unsigned)r->port, r->uploaded, r->downloaded, r->left))
        goto oom;

    const char *ev = NULL;
    switch (r->event) {
    case AE_STARTED: ev = "started"; break;
    case AE_COMPLETED: ev = "completed"; break;
    case AE_STOPPED: ev = "stopped"; break;
    case AE_NONE: break;
    }
    if (ev && buf_printf(&b, "&event=%s", ev))
        goto oom;
    if (r->numwant >= 0 && buf_printf(&b, "&numwant=%d", r->numwant))
        goto oom;
    if (r->extra && r->extra[0]) {
        const char *x = r->extra[0] == '&' ? r->extra + 1 : r->extra;
        if (x[0] && buf_printf(&b, "&%s", x))
            goto oom;
    }
    return buf_steal_str(&b);

oom:
    buf_free(&b);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Response parsing
 * ------------------------------------------------------------------------------------------------------------- */

/* Copy a tracker-supplied string, truncated, with control bytes (including NUL) replaced so it is safe to log. */
static char *dup_msg(const struct bnode *n)
{
    size_t len = n->u.s.len < MSG_MAX ? n->u.s.len : MSG_MAX;
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = n->u.s.p[i];
        s[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    s[len] = '\0';
    return s;
}

static int64_t get_int_or(const struct bnode *root, const char *key, int64_t dflt, int64_t min)
{
    const struct bnode *n = bdict_get_int(root, key);
    if (!n || n->u.i < min)
        return dflt;
    return n->u.i;
}

static void set_v4(struct peer_addr *a, const uint8_t ip[4], uint16_t port)
{
    memset(a, 0, sizeof *a);
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, ip, 4);
    sin->sin_port = htons(port);
    a->len = sizeof *sin;
}

static void set_v6(struct peer_addr *a, const uint8_t ip[16], uint16_t port)
{
    memset(a, 0, sizeof *a);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, ip, 16);
    sin6->sin6_port = htons(port);
    a->len = sizeof *sin6;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Peer from a dictionary-model entry. Returns 1 when usable, 0 to skip, -1 when the entry is malformed. */
static int dict_peer(const struct bnode *ent, struct peer_addr *out)
{
    if (ent->type != BN_DICT)
        return -1;
    const struct bnode *ip = bdict_get_str(ent, "ip");
    const struct bnode *port = bdict_get_int(ent, "port");
    if (!ip || !port)
        return -1;
    if (port->u.i <= 0 || port->u.i > 65535)
        return 0;
    char host[INET6_ADDRSTRLEN];
    if (ip->u.s.len == 0 || ip->u.s.len >= sizeof host || memchr(ip->u.s.p, '\0', ip->u.s.len))
        return 0;
    memcpy(host, ip->u.s.p, ip->u.s.len);
    host[ip->u.s.len] = '\0';
    uint8_t a[16];
    if (inet_pton(AF_INET, host, a) == 1) {
        if (all_zero(a, 4))
            return 0;
        set_v4(out, a, (uint16_t)port->u.i);
        return 1;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        if (all_zero(a, 16))
            return 0;
        set_v6(out, a, (uint16_t)port->u.i);
        return 1;
    }
    return 0;   /* a hostname or junk: we do not resolve names from tracker responses */
}

int tracker_parse_response(const uint8_t *body, size_t len, struct announce_resp *resp, struct ds_err *e)
{
    if (!resp)
        return ds_errf(e, "tracker response: no output");
    memset(resp, 0, sizeof *resp);
    resp->complete = resp->incomplete = -1;
    if (!body || len == 0)
        return ds_errf(e, "tracker response: empty body");

    struct bdoc doc;
    struct ds_err be;
    if (bdecode(body, len, &doc, &be))
        return ds_errf(e, "tracker response: %s", be.msg);
    const struct bnode *root = doc.root;
    if (!root || root->type != BN_DICT) {
        bdoc_free(&doc);
        return ds_errf(e, "tracker response: not a dictionary");
    }

    const struct bnode *fr = bdict_get(root, "failure reason");
    if (fr) {
        if (fr->type != BN_STR) {
            bdoc_free(&doc);
            return ds_errf(e, "tracker response: 'failure reason' is not a string");
        }
        resp->failure = dup_msg(fr);
        bdoc_free(&doc);
        if (!resp->failure)
            return ds_errf(e, "tracker response: out of memory");
        return 0;
    }

    const struct bnode *warn = bdict_get_str(root, "warning message");
    if (warn && !(resp->warning = dup_msg(warn)))
        goto oom;
    resp->interval = get_int_or(root, "interval", 0, 0);
    resp->min_interval = get_int_or(root, "min interval", 0, 0);
    resp->complete = get_int_or(root, "complete", -1, 0);
    resp->incomplete = get_int_or(root, "incomplete", -1, 0);

    const struct bnode *peers = bdict_get(root, "peers");
    const struct bnode *peers6 = bdict_get(root, "peers6");
    size_t n4 = 0, nl = 0, n6 = 0;
    if (peers) {
        if (peers->type == BN_STR) {
            if (peers->u.s.len % 6) {
                ds_errf(e, "tracker response: compact 'peers' length %zu is not a multiple of 6", peers->u.s.len);
                goto fail;
            }
            n4 = peers->u.s.len / 6;
        } else if (peers->type == BN_LIST) {
            nl = peers->u.l.n;
        } else {
            ds_errf(e, "tracker response: 'peers' is neither a string nor a list");
            goto fail;
        }
    }
    if (peers6) {
        if (peers6->type != BN_STR || peers6->u.s.len % 18) {
            ds_errf(e, "tracker response: 'peers6' is not a string of 18-byte entries");
            goto fail;
        }
        n6 = peers6->u.s.len / 18;
    }

    /* Validate every dictionary-model entry first, so a malformed list is rejected whatever the cap. */
    for (size_t i = 0; i < nl; i++) {
        struct peer_addr tmp;
        if (dict_peer(peers->u.l.items[i], &tmp) < 0) {
            ds_errf(e, "tracker response: peer entry %zu is malformed", i);
            goto fail;
        }
    }

    size_t want = n4 + nl + n6;   /* each bounded by len, no overflow */
    if (want > TRACKER_MAX_PEERS)
        want = TRACKER_MAX_PEERS;
    if (want) {
        resp->peers = calloc(want, sizeof *resp->peers);
        if (!resp->peers)
            goto oom;
    }
    size_t k = 0;
    for (size_t i = 0; i < n4 && k < want; i++) {
        const uint8_t *p = peers->u.s.p + 6 * i;
        uint16_t port = get_be16(p + 4);
        if (port == 0 || all_zero(p, 4))
            continue;
        set_v4(&resp->peers[k++], p, port);
    }
    for (size_t i = 0; i < nl && k < want; i++)
        if (dict_peer(peers->u.l.items[i], &resp->peers[k]) == 1)
            k++;
    for (size_t i = 0; i < n6 && k < want; i++) {
        const uint8_t *p = peers6->u.s.p + 18 * i;
        uint16_t port = get_be16(p + 16);
        if (port == 0 || all_zero(p, 16))
            continue;
        set_v6(&resp->peers[k++], p, port);
    }
    resp->num_peers = k;
    if (k == 0) {
        free(resp->peers);
        resp->peers = NULL;
    }
    bdoc_free(&doc);
    return 0;

oom:
    ds_errf(e, "tracker response: out of memory");
fail:   /* e is filled before anything it refers to is freed */
    announce_resp_free(resp);
    bdoc_free(&doc);
    return -1;
}

void announce_resp_free(struct announce_resp *resp)
{
    if (!resp)
        return;
    free(resp->failure);
    free(resp->warning);
    free(resp->peers);
    memset(resp, 0, sizeof *resp);
    resp->complete = resp->incomplete = -1;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Peer addresses
 * ------------------------------------------------------------------------------------------------------------- */

static bool valid_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_'))
            return false;
    }
    return true;
}

static int resolve(const char *host, const char *port, int family, int flags, struct peer_addr *out)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags | AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return rc;
    int out_rc = EAI_NONAME;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) && ai->ai_addrlen <= sizeof out->ss) {
            memset(out, 0, sizeof *out);
            memcpy(&out->ss, ai->ai_addr, ai->ai_addrlen);
            out->len = ai->ai_addrlen;
            out_rc = 0;
            break;
        }
    }
    freeaddrinfo(res);
    return out_rc;
}

int peer_addr_parse(const char *s, struct peer_addr *out, struct ds_err *e)
{
    if (!s || !out)
        return ds_errf(e, "peer address: missing");
    size_t n = strlen(s);
    char host[300];
    if (n >= sizeof host)
        return ds_errf(e, "peer address: too long");

    const char *port_s;
    bool bracketed = false;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb)
            return ds_errf(e, "peer address '%s': missing ']'", s);
        if (rb[1] != ':')
            return ds_errf(e, "peer address '%s': missing port", s);
        size_t hl = (size_t)(rb - s - 1);
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port_s = rb + 2;
        bracketed = true;
    } else {
        const char *c = strrchr(s, ':');
        if (!c)
            return ds_errf(e, "peer address '%s': missing port", s);
        size_t hl = (size_t)(c - s);
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (strchr(host, ':'))
            return ds_errf(e, "peer address '%s': IPv6 addresses must be written as [addr]:port", s);
        port_s = c + 1;
    }
    if (!host[0])
        return ds_errf(e, "peer address '%s': missing host", s);

    size_t pl = strlen(port_s);
    if (pl == 0 || pl > 5 || strspn(port_s, "0123456789") != pl)
        return ds_errf(e, "peer address '%s': bad port", s);
    long port = strtol(port_s, NULL, 10);
    if (port < 1 || port > 65535)
        return ds_errf(e, "peer address '%s': port out of range 1..65535", s);
    char pbuf[8];
    snprintf(pbuf, sizeof pbuf, "%ld", port);

    if (bracketed) {
        int rc = resolve(host, pbuf, AF_INET6, AI_NUMERICHOST, out);
        if (rc)
            return ds_errf(e, "peer address '%s': not an IPv6 address", s);
        return 0;
    }
    uint8_t v4[4];
    if (inet_pton(AF_INET, host, v4) == 1) {   /* strict dotted quad; getaddrinfo would also take "127.1" */
        set_v4(out, v4, (uint16_t)port);
        return 0;
    }
    if (strspn(host, "0123456789.") == strlen(host))
        return ds_errf(e, "peer address '%s': invalid IPv4 address", s);
    if (!valid_hostname(host))
        return ds_errf(e, "peer address '%s': invalid host name", s);
    int rc = resolve(host, pbuf, AF_UNSPEC, AI_ADDRCONFIG, out);
    if (rc)
        return ds_errf(e, "peer address '%s': %s", s, gai_strerror(rc));
    return 0;
}

void peer_addr_format(const struct peer_addr *a, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    char ip[INET6_ADDRSTRLEN];
    if (a && a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip)) {
            snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
            return;
        }
    } else if (a && a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip)) {
            if (sin6->sin6_scope_id)
                snprintf(out, outlen, "[%s%%%" PRIu32 "]:%u", ip, (uint32_t)sin6->sin6_scope_id,
                         (unsigned)ntohs(sin6->sin6_port));
            else
                snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
            return;
        }
    }
    snprintf(out, outlen, "?");
}
