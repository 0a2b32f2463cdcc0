/* fuzz_tracker_request.c — libFuzzer target for the tracker's request handling: the HTTP announce/scrape query
 * parsers (tracker_state.h) and the BEP 15 UDP packet handler (tracker_udp.h). Built by tests/fuzz/run.sh.
 *
 * Input: a sequence of records [kind][len_hi][len_lo][len bytes], applied in order to one fresh tracker
 * (whitelist mode with two known torrents, or open mode with small limits, chosen by the first byte):
 *   kind & 7 == 0  ts_http_announce(query)          1  ts_http_scrape(query)
 *              2  ts_parse_announce + ts_announce  3  tu_handle(packet) as is
 *              4  tu_handle with a valid connection id patched into bytes 0..7 (reaches announce/scrape)
 *              5  ts_pct_decode / ts_parse_addr    6  ts_status_json + ts_expire   7  switch source address
 *   kind >> 3      seconds the clock advances before the record
 * Checks: every HTTP reply body is strict bencode (bdecode accepts it) with a dict root; UDP replies fit the
 * buffer and echo the transaction id; parsed announces respect the documented ranges; the peer table never
 * exceeds the configured limits. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bencode.h"
#include "tracker_state.h"
#include "tracker_udp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t IH1[20] = "AAAAAAAAAAAAAAAAAAAA";
static const uint8_t IH2[20] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x00, 0x25,
                                0x26, 0x3d, 0x3f, 0x2b, 0x20, 0x7f, 0x80, 0xff, 0x0a, 0x0d};

static void check_bencode(const struct buf *b)
{
    struct bdoc doc;
    struct ds_err e;
    if (b->len == 0 || bdecode(b->data, b->len, &doc, &e) != 0 || doc.root->type != BN_DICT)
        abort();
    bdoc_free(&doc);
}

static void src_addr(int which, struct ts_addr *a)
{
    memset(a, 0, sizeof *a);
    switch (which & 3) {
    case 0: a->family = AF_INET; a->ip[0] = 127; a->ip[3] = 1; break;
    case 1: a->family = AF_INET; a->ip[0] = 10; a->ip[3] = (uint8_t)which; break;
    case 2: a->family = AF_INET6; a->ip[15] = 1; break;
    default: a->family = AF_INET6; a->ip[0] = 0xfd; a->ip[15] = (uint8_t)which; break;
    }
    a->port = (uint16_t)(40000 + which);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct ts_config cfg = {0};
    bool open = data[0] & 1;
    cfg.open = open;
    cfg.max_peers_per_torrent = 40;
    cfg.max_peers_total = 60;
    cfg.max_torrents = 4;
    cfg.rng_seed = 7;
    struct ds_err e;
    struct tracker_state *st = ts_new(&cfg, &e);
    if (!st)
        abort();
    if (!open) {
        if (ts_add_torrent(st, IH1, "disk", 123456, 3, &e) || ts_add_torrent(st, IH2, NULL, 0, 0, &e))
            abort();
    }
    struct tu_core tu;
    uint8_t secret[32] = {1, 2, 3};
    tu_init(&tu, secret);
    tu.trust_loopback_ip = data[0] & 2;
    data++;
    size--;
    uint64_t now = 1000000;
    struct ts_addr src;
    int which = 0;
    src_addr(which, &src);
    static uint8_t out[TU_MAX_REPLY + 64];
    while (size >= 3) {
        uint8_t kind = data[0];
        size_t len = (size_t)data[1] << 8 | data[2];
        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        /* exact-size copy of the record so ASan catches over-reads */
        uint8_t *rec = malloc(len ? len : 1);
        if (!rec)
            break;
        if (len)
            memcpy(rec, data, len);
        data += len;
        size -= len;
        now += (uint64_t)(kind >> 3) * 1000;
        struct buf b = {0};
        switch (kind & 7) {
        case 0: {
            int st_code = ts_http_announce(st, (const char *)rec, len, &src, src.ip[0] == 127, now, &b);
            if (st_code != 200 && st_code != 400)
                abort();
            check_bencode(&b);
            break;
        }
        case 1: {
            int st_code = ts_http_scrape(st, (const char *)rec, len, &b);
            if (st_code != 200 && st_code != 400)
                abort();
            check_bencode(&b);
            break;
        }
        case 2: {
            struct ts_announce *a = malloc(sizeof *a);
            struct ts_reply *r = malloc(sizeof *r);
            if (!a || !r)
                abort();
            if (ts_parse_announce((const char *)rec, len, a, &e) == 0) {
                if (a->numwant < -1 || a->numwant > TS_MAX_NUMWANT) /* -1: not given */
                    abort();
                if (a->port == 0 && a->event != TS_EV_STOPPED)
                    abort();
                if (memchr(a->name, 0, TS_NAME_MAX) == NULL)
                    abort();
                for (const char *c = a->name; *c; c++)
                    if (*c < 32 || *c > 126)
                        abort();
                if ((a->uploaded | a->downloaded | a->left) >> 63)
                    abort();
                ts_announce(st, a, &src, which & 4, (which & 8) ? AF_INET : 0, now, r);
                if (!r->failure) {
                    int want = a->numwant < 0 ? TS_DEFAULT_NUMWANT : a->numwant;
                    if (r->n_peers > TS_MAX_NUMWANT || r->n_peers > (size_t)want)
                        abort();
                    for (size_t i = 0; i < r->n_peers; i++)
                        if (r->peers[i].family != AF_INET && r->peers[i].family != AF_INET6)
                            abort();
                }
                if (ts_encode_reply(r, a->compact, a->no_peer_id, &b))
                    abort();
                check_bencode(&b);
            } else if (!e.msg[0]) {
                abort();
            }
            free(a);
            free(r);
            break;
        }
        case 3:
        case 4: {
            if ((kind & 7) == 4 && len >= 8) {
                uint64_t cid = tu_conn_id(&tu, &src, now, kind >> 7);
                for (int i = 0; i < 8; i++)
                    rec[i] = (uint8_t)(cid >> (56 - 8 * i));
            }
            memset(out, 0xee, sizeof out);
            size_t n = tu_handle(&tu, st, &src, rec, len, now, out, TU_MAX_REPLY);
            if (n > TU_MAX_REPLY)
                abort();
            for (size_t i = TU_MAX_REPLY; i < sizeof out; i++)
                if (out[i] != 0xee)
                    abort();
            if (n && (n < 8 || memcmp(out + 4, rec + 12, 4) != 0))
                abort(); /* every reply echoes the transaction id */
            break;
        }
        case 5: {
            uint8_t dec[256];
            long d = ts_pct_decode((const char *)rec, len, dec, sizeof dec);
            if (d < -1 || d > (long)sizeof dec || (d >= 0 && (size_t)d > len))
                abort();
            char s[128];
            size_t k = len < sizeof s - 1 ? len : sizeof s - 1;
            memcpy(s, rec, k);
            s[k] = 0;
            struct ts_addr a;
            if (ts_parse_addr(s, &a) == 0) {
                if (a.family != AF_INET && a.family != AF_INET6)
                    abort();
                char f[80];
                ts_addr_format(&a, true, f, sizeof f);
                if (!memchr(f, 0, sizeof f))
                    abort();
            }
            break;
        }
        case 6: {
            if (ts_status_json(st, now, &b))
                abort();
            if (b.len && memchr(b.data, 0, b.len))
                abort();
            ts_expire(st, now);
            break;
        }
        default:
            which = len ? rec[0] : which + 1;
            src_addr(which, &src);
            break;
        }
        buf_free(&b);
        free(rec);
        if (ts_num_peers(st) > cfg.max_peers_total || ts_num_torrents(st) > (open ? cfg.max_torrents : 2))
            abort();
    }
    ts_free(st);
    return 0;
}
