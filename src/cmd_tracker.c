/* cmd_tracker.c — `diskswarm tracker`: a private HTTP (+ optional UDP) BitTorrent tracker with a live dashboard. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli.h"
#include "metainfo.h"
#include "net.h"
#include "tracker_http.h"
#include "tracker_state.h"
#include "tracker_udp.h"

#define MAX_TORRENT_ARGS 256

static void tr_usage(FILE *f)
{
    fputs("usage: diskswarm tracker [options]\n"
          "  A private BitTorrent tracker (HTTP BEP 3/23/7, optional UDP BEP 15) with a live dashboard at /\n"
          "  and the swarm's state at /status.json. Runs until SIGINT/SIGTERM.\n"
          "options:\n"
          "  --listen ADDR:PORT     HTTP address (default 0.0.0.0:6969)\n"
          "  --udp ADDR:PORT        also serve the UDP tracker protocol here\n"
          "  --whitelist FILE       serve these info-hashes (40 hex digits per line)\n"
          "  --torrent T.torrent    serve this torrent (repeatable; gives the dashboard its name and size)\n"
          "  --open                 serve any info-hash (a public tracker); needed without --whitelist/--torrent\n"
          "  --interval SEC         announce interval given to clients (default 120)\n"
          "  --min-interval SEC     minimum interval (default 5)\n"
          "  --expire SEC           forget peers silent this long (default 2*interval+60)\n"
          "  --max-peers N          peers per torrent (default 10000)\n"
          "  --max-total N          peers over all torrents (default 100000)\n"
          "  --allow-ip-param       trust the `ip` announce parameter from any client (default: loopback only)\n"
          "  --json-log             log peer events as JSON lines on stdout\n",
          f);
}

struct tr_log {
    bool json;
};

static const char *note_name(enum ts_note w)
{
    switch (w) {
    case TS_NOTE_JOIN: return "join";
    case TS_NOTE_COMPLETE: return "complete";
    case TS_NOTE_STOP: return "stop";
    case TS_NOTE_EXPIRE: return "expire";
    case TS_NOTE_REFUSED: return "refused";
    }
    return "?";
}

static void on_note(void *ctx, enum ts_note w, const uint8_t ih[20], const uint8_t pid[20],
                    const struct ts_addr *addr, const char *detail)
{
    struct tr_log *lg = ctx;
    char ihx[41] = "", pidx[41] = "", a[80] = "";
    for (int i = 0; ih && i < 20; i++)
        sprintf(ihx + 2 * i, "%02x", ih[i]);
    for (int i = 0; pid && i < 20; i++)
        sprintf(pidx + 2 * i, "%02x", pid[i]);
    if (addr)
        ts_addr_format(addr, true, a, sizeof a);
    if (lg->json) {
        printf("{\"t\":%.3f,\"event\":\"%s\",\"info_hash\":\"%s\",\"peer_id\":\"%s\",\"addr\":\"%s\",\"detail\":\"%s\"}\n",
               (double)time(NULL), note_name(w), ihx, pidx, a, detail ? detail : "");
        fflush(stdout);
    } else {
        fprintf(stderr, "tracker: %s %s %.8s… %s%s%s\n", note_name(w), a, ihx, pidx, detail ? " " : "",
                detail ? detail : "");
    }
}

int cmd_tracker(int argc, char **argv)
{
    enum { O_LISTEN = 256, O_UDP, O_WL, O_TORRENT, O_OPEN, O_INTERVAL, O_MININT, O_EXPIRE, O_MAXPEERS, O_MAXTOTAL,
           O_ALLOWIP, O_JSONLOG, O_HELP };
    static const struct option lo[] = {
        {"listen", required_argument, 0, O_LISTEN},     {"udp", required_argument, 0, O_UDP},
        {"whitelist", required_argument, 0, O_WL},      {"torrent", required_argument, 0, O_TORRENT},
        {"open", no_argument, 0, O_OPEN},               {"interval", required_argument, 0, O_INTERVAL},
        {"min-interval", required_argument, 0, O_MININT}, {"expire", required_argument, 0, O_EXPIRE},
        {"max-peers", required_argument, 0, O_MAXPEERS}, {"max-total", required_argument, 0, O_MAXTOTAL},
        {"allow-ip-param", no_argument, 0, O_ALLOWIP},  {"json-log", no_argument, 0, O_JSONLOG},
        {"help", no_argument, 0, O_HELP},               {0, 0, 0, 0},
    };
    const char *listen = "0.0.0.0:6969", *udp = NULL, *wl = NULL;
    const char *torrents[MAX_TORRENT_ARGS];
    size_t nt = 0;
    struct ts_config cfg;
    memset(&cfg, 0, sizeof cfg);
    bool allow_ip = false;
    struct tr_log lg = {0};
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: listen = optarg; break;
        case O_UDP: udp = optarg; break;
        case O_WL: wl = optarg; break;
        case O_TORRENT:
            if (nt >= MAX_TORRENT_ARGS) {
                cli_error("tracker: at most %d --torrent options", MAX_TORRENT_ARGS);
                return EXIT_USAGE;
            }
            torrents[nt++] = optarg;
            break;
        case O_OPEN: cfg.open = true; break;
        case O_INTERVAL:
        case O_MININT:
        case O_EXPIRE:
            if (cli_parse_uint(optarg, 86400, &v) || !v) {
                cli_error("tracker: %s wants seconds from 1 to 86400, not '%s'", argv[optind - 1], optarg);
                return EXIT_USAGE;
            }
            if (c == O_INTERVAL) cfg.interval_s = (uint32_t)v;
            else if (c == O_MININT) cfg.min_interval_s = (uint32_t)v;
            else cfg.expire_s = (uint32_t)v;
            break;
        case O_MAXPEERS:
        case O_MAXTOTAL:
            if (cli_parse_uint(optarg, 10000000, &v) || !v) {
                cli_error("tracker: %s wants a number from 1 to 10000000", argv[optind - 1]);
                return EXIT_USAGE;
            }
            if (c == O_MAXPEERS) cfg.max_peers_per_torrent = (uint32_t)v;
            else cfg.max_peers_total = (uint32_t)v;
            break;
        case O_ALLOWIP: allow_ip = true; break;
        case O_JSONLOG: lg.json = true; break;
        case O_HELP:
        case 'h': tr_usage(stdout); return 0;
        default: tr_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_error("tracker: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (!wl && !nt && !cfg.open) {
        cli_error("tracker: give --whitelist FILE or --torrent T.torrent (a private swarm), or --open for a public "
                  "tracker");
        return EXIT_USAGE;
    }
    if (getrandom(&cfg.rng_seed, sizeof cfg.rng_seed, 0) != (ssize_t)sizeof cfg.rng_seed)
        cfg.rng_seed = (uint64_t)time(NULL);

    struct ds_err e;
    int rc = 1;
    struct tracker_http *http = NULL;
    struct tracker_udp *tu = NULL;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    struct tracker_state *st = ts_new(&cfg, &e);
    if (!st) {
        cli_error("tracker: %s", e.msg);
        return 1;
    }
    ts_set_note(st, on_note, &lg);
    if (wl && ts_load_whitelist(st, wl, &e)) {
        cli_error("tracker: %s", e.msg);
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        struct metainfo *mi;
        if (metainfo_load_file(torrents[i], &mi, &e)) {
            cli_error("tracker: %s: %s", torrents[i], e.msg);
            goto out;
        }
        int r = ts_add_torrent(st, mi->info_hash, mi->name, mi->total_length, mi->num_pieces, &e);
        metainfo_free(mi);
        if (r) {
            cli_error("tracker: %s", e.msg);
            goto out;
        }
    }

    /* signals: block them for every thread, wait for them here */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct tracker_http_config hc = {.listen = listen, .allow_ip_param = allow_ip};
    if (tracker_http_start(&http, st, &mu, &hc, &e)) {
        cli_error("tracker: %s", e.msg);
        goto out;
    }
    if (udp && tracker_udp_start(&tu, st, &mu, udp, &e)) {
        cli_error("tracker: %s", e.msg);
        goto out;
    }
    const struct ts_config *ec = ts_config(st);
    if (lg.json) {
        printf("{\"event\":\"listening\",\"http_port\":%u,\"udp_port\":%u,\"torrents\":%zu,\"open\":%s,"
               "\"interval\":%u}\n",
               tracker_http_port(http), tu ? tracker_udp_port(tu) : 0, ts_num_torrents(st),
               ec->open ? "true" : "false", ec->interval_s);
        fflush(stdout);
    }
    fprintf(stderr, "diskswarm tracker: http on %s (port %u)%s%s, %zu torrent(s)%s, interval %u s; dashboard at "
                    "http://%s/\n",
            listen, tracker_http_port(http), tu ? ", udp on " : "", tu ? udp : "", ts_num_torrents(st),
            ec->open ? " + any (open)" : "", ec->interval_s, listen);

    int sig = 0;
    while (!sig) {
        struct timespec ts = {.tv_sec = 1};
        int s = sigtimedwait(&mask, NULL, &ts);
        if (s > 0)
            sig = s;
        else if (s < 0 && errno != EAGAIN && errno != EINTR)
            break;
        pthread_mutex_lock(&mu);
        ts_expire(st, net_now_ms());
        pthread_mutex_unlock(&mu);
    }
    fprintf(stderr, "diskswarm tracker: stopping (%s), %" PRIu64 " HTTP requests, %" PRIu64 " UDP packets\n",
            sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "error", tracker_http_requests(http),
            tu ? tracker_udp_packets(tu) : 0);
    rc = 0;
out:
    tracker_udp_stop(tu);
    tracker_http_stop(http);
    ts_free(st);
    return rc;
}
