/* cmd_peer.c — `seed` and `fetch`: open the torrent and the device, run the swarm until done, report. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "announcer.h"
#include "cli.h"
#include "extent_map.h"
#include "image_file.h"
#include "metainfo.h"
#include "addr_filter.h"
#include "net.h"
#include "piece_check.h"
#include "progress.h"
#include "session.h"
#include "store.h"
#include "swarm_auth.h"
#include "tracker_client.h"

#define MAX_CLI_PEERS 256
#define MAX_ALLOW 64

struct peer_opts {
    bool fetch;
    const char *torrent;
    const char *dev;
    const char *listen;
    const char *peers[MAX_CLI_PEERS];
    size_t n_peers;
    bool verify;
    bool resume;
    struct cidr allow[MAX_ALLOW];
    size_t n_allow;
    const char *secret_file;
    bool json, quiet, no_tracker, verbose;
    int64_t seed_time;      /* seconds; -1 = not given */
    uint64_t expect;        /* 0 = not given */
    uint64_t max_peers;
    uint64_t pipeline;
};

struct run_state {
    bool stop;
    int sig;
};

static void on_signal(void *ctx, int fd)
{
    struct run_state *rs = ctx;
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        rs->stop = true;
        rs->sig = (int)si.ssi_signo;
    }
}

static void log_line(void *ctx, const char *msg)
{
    struct progress *pg = ctx;
    progress_clear(pg);
    fprintf(stderr, "%s: %s\n", pg->role, msg);
}

static void usage(FILE *f, bool fetch)
{
    if (fetch)
        fputs("usage: diskswarm fetch TORRENT --to DEVICE|FILE [options]\n"
              "  Download the torrent's extents onto DEVICE at their offsets, verify every piece, then seed.\n",
              f);
    else
        fputs("usage: diskswarm seed TORRENT --from DEVICE|FILE|IMAGE_DIR [options]\n"
              "  Serve the torrent's extents from DEVICE (a device, or an image holding them at their offsets),\n"
              "  a .dsimg image file, an IMAGE_DIR holding one for TORRENT, or an uncompressed partclone image.\n",
              f);
    fputs("options:\n"
          "  --listen [ADDR:]PORT   accept peers here (default 6881; 0 = any free port)\n"
          "  --peer HOST:PORT       connect to this peer (repeatable); works without a tracker\n"
          "  --no-tracker           ignore the torrent's trackers\n"
          "  --seed-time SEC        keep seeding this long after completion (fetch, default 0) or in all (seed)\n"
          "  --expect N             the swarm is done when N downloading machines are complete: then exit\n"
          "                         (with --seed-time as an upper bound; fetch counts itself)\n"
          "  --max-peers N          connections at most (default 64)\n"
          "  --allow CIDR           only talk to peers in this address range (repeatable)\n"
          "  --secret-file FILE     private swarm: peers must prove they know this secret (>= 16 bytes)\n"
          "  --json                 one JSON status object per line on stdout\n"
          "  --quiet                no progress output\n"
          "  --verbose              log peer connections and disconnections to stderr\n",
          f);
    if (!fetch)
        fputs("  --verify               hash every piece of the source (on all cores) before serving\n", f);
    else
        fputs("  --resume               first check the pieces already on the target (on all cores) and fetch\n"
              "                         only the missing or wrong ones (after an interrupted run)\n",
              f);
}

static int parse_opts(int argc, char **argv, struct peer_opts *o)
{
    enum { O_TO = 256, O_FROM, O_LISTEN, O_PEER, O_VERIFY, O_SEEDTIME, O_EXPECT, O_JSON, O_QUIET, O_NOTRACKER,
           O_MAXPEERS, O_PIPELINE, O_HELP, O_VERBOSE, O_RESUME, O_ALLOW, O_SECRET };
    static const struct option lo[] = {
        {"to", required_argument, 0, O_TO},           {"from", required_argument, 0, O_FROM},
        {"listen", required_argument, 0, O_LISTEN},   {"peer", required_argument, 0, O_PEER},
        {"verify", no_argument, 0, O_VERIFY},         {"resume", no_argument, 0, O_RESUME},
        {"allow", required_argument, 0, O_ALLOW},     {"secret-file", required_argument, 0, O_SECRET},         {"seed-time", required_argument, 0, O_SEEDTIME},
        {"expect", required_argument, 0, O_EXPECT},   {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET},           {"no-tracker", no_argument, 0, O_NOTRACKER},
        {"max-peers", required_argument, 0, O_MAXPEERS}, {"pipeline", required_argument, 0, O_PIPELINE},
        {"help", no_argument, 0, O_HELP},             {"verbose", no_argument, 0, O_VERBOSE},
        {0, 0, 0, 0},
    };
    o->seed_time = -1;
    o->listen = "6881";
    optind = 1;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_TO:
            if (!o->fetch) goto bad;
            o->dev = optarg;
            break;
        case O_FROM:
            if (o->fetch) goto bad;
            o->dev = optarg;
            break;
        case O_LISTEN: o->listen = optarg; break;
        case O_PEER:
            if (o->n_peers >= MAX_CLI_PEERS) {
                cli_error("too many --peer options (at most %d)", MAX_CLI_PEERS);
                return EXIT_USAGE;
            }
            o->peers[o->n_peers++] = optarg;
            break;
        case O_VERIFY:
            if (o->fetch) goto bad;
            o->verify = true;
            break;
        case O_ALLOW: {
            struct ds_err e;
            if (o->n_allow >= MAX_ALLOW) {
                cli_error("too many --allow ranges (at most %d)", MAX_ALLOW);
                return EXIT_USAGE;
            }
            if (cidr_parse(optarg, &o->allow[o->n_allow], &e)) {
                cli_error("--allow: %s", e.msg);
                return EXIT_USAGE;
            }
            o->n_allow++;
            break;
        }
        case O_SECRET: o->secret_file = optarg; break;
        case O_RESUME:
            if (!o->fetch) goto bad;
            o->resume = true;
            break;
        case O_SEEDTIME:
            if (cli_parse_uint(optarg, 10u * 365 * 86400, &v)) {
                cli_error("--seed-time wants seconds, not '%s'", optarg);
                return EXIT_USAGE;
            }
            o->seed_time = (int64_t)v;
            break;
        case O_EXPECT:
            if (cli_parse_uint(optarg, 1000000, &v) || v == 0) {
                cli_error("--expect wants a positive number of machines, not '%s'", optarg);
                return EXIT_USAGE;
            }
            o->expect = v;
            break;
        case O_JSON: o->json = true; break;
        case O_QUIET: o->quiet = true; break;
        case O_VERBOSE: o->verbose = true; break;
        case O_NOTRACKER: o->no_tracker = true; break;
        case O_MAXPEERS:
            if (cli_parse_uint(optarg, 4096, &o->max_peers) || !o->max_peers) {
                cli_error("--max-peers wants a number from 1 to 4096");
                return EXIT_USAGE;
            }
            break;
        case O_PIPELINE:
            if (cli_parse_uint(optarg, 4096, &o->pipeline) || !o->pipeline) {
                cli_error("--pipeline wants a number from 1 to 4096");
                return EXIT_USAGE;
            }
            break;
        case O_HELP:
        case 'h':
            usage(stdout, o->fetch);
            return -1;
        default:
        bad:
            usage(stderr, o->fetch);
            return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || !o->dev) {
        cli_error("%s needs a TORRENT and %s", o->fetch ? "fetch" : "seed", o->fetch ? "--to DEVICE" : "--from DEVICE");
        usage(stderr, o->fetch);
        return EXIT_USAGE;
    }
    o->torrent = argv[optind];
    return 0;
}

static void check_progress(void *ctx, uint32_t done, uint32_t total)
{
    struct progress *pg = ctx;
    if (pg->tty && (done % 8 == 0 || done == total)) {
        fprintf(stderr, "\r\033[K%s: checking pieces %u/%u", pg->role, done, total);
        pg->drawn = 1;
    }
}

/* Hash every piece on all cores; ok gets the pieces that match. */
static int check_pieces(struct store *st, const struct metainfo *mi, struct progress *pg, struct bitfield *ok)
{
    struct ds_err e;
    if (bitfield_init(ok, mi->num_pieces)) {
        cli_error("out of memory");
        return -1;
    }
    if (piece_check_all(st, 0, ok, check_progress, pg, &e)) {
        progress_clear(pg);
        cli_error("checking %s: %s", st->path, e.msg);
        return -1;
    }
    progress_clear(pg);
    return 0;
}

static int verify_source(struct store *st, const struct metainfo *mi, struct progress *pg)
{
    struct bitfield ok;
    if (check_pieces(st, mi, pg, &ok))
        return -1;
    uint32_t bad = mi->num_pieces - ok.count;
    bitfield_free(&ok);
    if (bad) {
        cli_error("the source does not match the torrent: %u of %u pieces differ", bad, mi->num_pieces);
        return -1;
    }
    progress_event(pg, "verified", "\"ok\":true", "source verified: every piece matches");
    return 0;
}

/* Read a swarm secret: at least SWARM_SECRET_MIN bytes, trailing newline ignored, at most 4 KiB. */
static int read_secret(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("--secret-file %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (more || n < SWARM_SECRET_MIN) {
        cli_error("--secret-file %s: the secret must be %d to %zu bytes", path, SWARM_SECRET_MIN, cap);
        return -1;
    }
    *len = n;
    return 0;
}

/* The source of a seed: a .dsimg, an IMAGE_DIR or a partclone image when --from names one (image_file.h),
 * otherwise the device or raw image file itself. Fetch targets are always opened with store_open. */
static int open_store(struct store *st, const struct peer_opts *o, const struct metainfo *mi,
                      const struct extent_map *map, struct ds_err *e)
{
    int r = o->fetch ? 0 : image_source_open(st, o->dev, mi, map, e);
    if (r != 0)
        return r < 0 ? -1 : 0;
    return store_open(st, o->dev, o->fetch ? STORE_WRITE : STORE_READ, mi, map, e);
}

static int run_peer(struct peer_opts *o)
{
    uint8_t secret[4096];
    size_t secret_len = 0;
    struct ds_err e;
    struct metainfo *mi = NULL;
    struct extent_map map = {0};
    struct store st = {.fd = -1};
    struct session s;
    struct net n;
    struct announcer an;
    struct bitfield resumed = {0};
    bool s_ok = false, n_ok = false, an_ok = false;
    int rc = 1;
    int sfd = -1;
    sigset_t mask;

    /* Block the stop signals before any thread exists (the tracker worker inherits the mask), so they are
     * only ever read from the signalfd and never kill the process with default handling. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (metainfo_load_file(o->torrent, &mi, &e)) {
        cli_error("%s: %s", o->torrent, e.msg);
        return 1;
    }
    if (extent_map_from_metainfo(mi, &map, &e)) {
        cli_error("%s: %s", o->torrent, e.msg);
        goto out;
    }
    if (open_store(&st, o, mi, &map, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }

    uint64_t now = net_now_ms();
    struct progress pg;
    progress_init(&pg, o->fetch ? "fetch" : "seed", o->json, o->quiet, now);

    if (!o->fetch && o->verify && verify_source(&st, mi, &pg))
        goto out;
    if (o->fetch && o->resume) {
        if (check_pieces(&st, mi, &pg, &resumed))
            goto out;
        char f[96], t[160];
        snprintf(f, sizeof f, "\"pieces\":%u,\"num_pieces\":%u", resumed.count, mi->num_pieces);
        snprintf(t, sizeof t, "fetch: resuming: %u of %u pieces already on %s", resumed.count, mi->num_pieces,
                 o->dev);
        progress_event(&pg, "resume", f, t);
    }

    struct session_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mi = mi;
    cfg.store = &st;
    memcpy(cfg.peer_id, "-DS0100-", 8);
    if (getrandom(cfg.peer_id + 8, 12, 0) != 12) {
        cli_error("cannot get random bytes for the peer id");
        goto out;
    }
    cfg.have_all = !o->fetch;
    cfg.initial_have = o->resume ? &resumed : NULL;
    cfg.allow = o->allow;
    cfg.n_allow = o->n_allow;
    if (o->secret_file) {
        if (read_secret(o->secret_file, secret, sizeof secret, &secret_len))
            goto out;
        cfg.secret = secret;
        cfg.secret_len = secret_len;
        if (getrandom(cfg.nonce_key, sizeof cfg.nonce_key, 0) != (ssize_t)sizeof cfg.nonce_key) {
            cli_error("cannot get random bytes");
            goto out;
        }
    }
    cfg.max_peers = (uint32_t)o->max_peers;
    cfg.pipeline = (uint32_t)o->pipeline;
    if (o->verbose) {
        cfg.log = log_line;
        cfg.log_ctx = &pg;
    }
    if (session_init(&s, &cfg, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    s_ok = true;
    if (net_init(&n, &s, o->listen, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    n_ok = true;
    s.cfg.listen_port = n.listen_port;
    {
        char f[64], t[128];
        snprintf(f, sizeof f, "\"port\":%u", n.listen_port);
        snprintf(t, sizeof t, "%s: listening on port %u", pg.role, n.listen_port);
        progress_event(&pg, "listening", f, t);
    }
    for (size_t i = 0; i < o->n_peers; i++) {
        struct peer_addr a;
        if (peer_addr_parse(o->peers[i], &a, &e)) {
            cli_error("--peer %s: %s", o->peers[i], e.msg);
            rc = EXIT_USAGE;
            goto out;
        }
        if (!addr_allowed(o->allow, o->n_allow, &a)) {
            cli_error("--peer %s is outside every --allow range", o->peers[i]);
            rc = EXIT_USAGE;
            goto out;
        }
        session_add_candidate(&s, &a);
    }
    if (!o->no_tracker) {
        if (announcer_init(&an, &s, cfg.peer_id, n.listen_port, &e)) {
            cli_error("tracker: %s", e.msg);
            goto out;
        }
        an_ok = true;
        if (an.any_http && net_watch(&n, announcer_fd(&an), announcer_on_ready, &an, &e)) {
            cli_error("%s", e.msg);
            goto out;
        }
    }
    if (o->n_peers == 0 && (!an_ok || !an.any_http) && o->fetch)
        progress_event(&pg, "warning", "\"message\":\"no peers and no tracker\"",
                       "warning: no --peer given and the torrent has no HTTP tracker; waiting for peers to connect");

    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    struct run_state rs = {0};
    if (sfd < 0 || net_watch(&n, sfd, on_signal, &rs, &e)) {
        cli_error("cannot watch signals");
        goto out;
    }

    uint64_t t0 = net_now_ms(), last_tick = t0, t_complete = o->fetch ? 0 : t0;
    bool completed = !o->fetch;
    const char *end_reason = NULL;
    /* bounded by the exit conditions below; each round waits at most 200 ms */
    for (;;) {
        if (net_poll(&n, 200, &e)) {
            cli_error("%s", e.msg);
            goto out;
        }
        now = net_now_ms();
        if (s.fatal) {
            progress_clear(&pg);
            cli_error("%s", s.fatal_err.msg);
            goto out;
        }
        if (now - last_tick >= 1000) {
            last_tick = now;
            session_tick(&s, now);
            struct session_stats ss;
            session_stats(&s, &ss);
            progress_update(&pg, &ss, now);
        }
        if (an_ok)
            announcer_tick(&an, now);
        if (!completed && session_complete(&s)) {
            completed = true;
            t_complete = now;
            if (store_sync(&st, &e)) {
                cli_error("%s", e.msg);
                goto out;
            }
            struct session_stats ss;
            session_stats(&s, &ss);
            progress_update(&pg, &ss, now);
            double secs = (double)(now - t0) / 1000.0;
            char f[160], t[200];
            snprintf(f, sizeof f, "\"seconds\":%.2f,\"bytes\":%" PRIu64 ",\"pieces\":%u", secs, ss.total_bytes,
                     ss.num_pieces);
            snprintf(t, sizeof t, "fetch: complete, all %u pieces verified on %s in %.1f s", ss.num_pieces, o->dev,
                     secs);
            progress_event(&pg, "complete", f, t);
            if (an_ok)
                announcer_completed(&an);
        }
        if (rs.stop) {
            end_reason = "signal";
            break;
        }
        if (completed) {
            uint64_t since = now - t_complete;
            uint32_t done = (uint32_t)s.n_complete_ids + (o->fetch ? 1u : 0u);
            if (o->expect) {
                if (done >= o->expect) {
                    end_reason = "swarm complete";
                    break;
                }
                int64_t cap = o->seed_time >= 0 ? o->seed_time : (o->fetch ? 600 : -1);
                if (cap >= 0 && since >= (uint64_t)cap * 1000u) {
                    end_reason = "seed time over";
                    break;
                }
            } else if (o->fetch) {
                int64_t st_s = o->seed_time >= 0 ? o->seed_time : 0;
                if (since >= (uint64_t)st_s * 1000u) {
                    end_reason = "seed time over";
                    break;
                }
            } else if (o->seed_time >= 0 && since >= (uint64_t)o->seed_time * 1000u) {
                end_reason = "seed time over";
                break;
            }
        }
    }
    progress_clear(&pg);
    {
        struct session_stats ss;
        session_stats(&s, &ss);
        bool ok = !o->fetch || session_complete(&s);
        char f[320], t[320];
        snprintf(f, sizeof f,
                 "\"ok\":%s,\"reason\":\"%s\",\"pieces\":%u,\"num_pieces\":%u,\"downloaded\":%" PRIu64
                 ",\"uploaded\":%" PRIu64 ",\"hash_failures\":%u,\"peers_complete\":%u",
                 ok ? "true" : "false", end_reason, ss.pieces_have, ss.num_pieces, ss.payload_down, ss.payload_up,
                 ss.hash_failures, (unsigned)s.n_complete_ids);
        snprintf(t, sizeof t, "%s: stopping (%s): %u/%u pieces, uploaded %" PRIu64 " bytes", pg.role, end_reason,
                 ss.pieces_have, ss.num_pieces, ss.payload_up);
        progress_event(&pg, "done", f, t);
        if (!ok)
            cli_error("interrupted before completion: %u of %u pieces verified on %s", ss.pieces_have,
                      ss.num_pieces, o->dev);
        rc = ok ? 0 : 1;
    }
out:
    if (n_ok)
        net_shutdown(&n, 2000);
    if (an_ok)
        announcer_stop(&an, 2000);
    if (n_ok)
        net_free(&n);
    if (sfd >= 0)
        close(sfd);
    if (s_ok)
        session_free(&s);
    bitfield_free(&resumed);
    store_close(&st);
    extent_map_free(&map);
    metainfo_free(mi);
    return rc;
}

int cmd_seed(int argc, char **argv)
{
    struct peer_opts o;
    memset(&o, 0, sizeof o);
    o.fetch = false;
    int r = parse_opts(argc, argv, &o);
    if (r)
        return r < 0 ? 0 : r;
    return run_peer(&o);
}

int cmd_fetch(int argc, char **argv)
{
    struct peer_opts o;
    memset(&o, 0, sizeof o);
    o.fetch = true;
    int r = parse_opts(argc, argv, &o);
    if (r)
        return r < 0 ? 0 : r;
    return run_peer(&o);
}
