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

#include "cli.h"
#include "extent_map.h"
#include "image_file.h"
#include "metainfo.h"
#include "addr_filter.h"
#include "peer_run.h"
#include "store.h"

#define MAX_CLI_PEERS 256

struct peer_opts {
    bool fetch;
    const char *torrent;
    const char *dev;
    const char *listen;
    const char *peers[MAX_CLI_PEERS];
    size_t n_peers;
    const char *trackers[MAX_CLI_PEERS];
    size_t n_trackers;
    bool verify;
    bool super_seed;
    bool resume;
    struct cidr allow[CLI_MAX_ALLOW];
    size_t n_allow;
    const char *secret_file;
    bool json, quiet, no_tracker, verbose;
    int64_t seed_time;      /* seconds; -1 = not given */
    uint64_t expect;        /* 0 = not given */
    uint64_t max_peers;
    uint64_t pipeline;
    bool no_wire_compress;
    int64_t zcache_mib;     /* 0 = default, -1 = none */
    int zlevel;             /* 0 = default, -1 = never compress on the fly */
};

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
          "  --tracker URL          announce here instead of the torrent's trackers (repeatable)\n"
          "  --seed-time SEC        keep seeding this long after completion (fetch, default 0) or in all (seed)\n"
          "  --expect N             the swarm is done when N downloading machines are complete: then exit\n"
          "                         (with --seed-time as an upper bound; fetch counts itself)\n"
          "  --max-peers N          connections at most (default 64)\n"
          "  --allow CIDR           only talk to peers in this address range (repeatable)\n"
          "  --secret-file FILE     private swarm: peers must prove they know this secret (>= 16 bytes)\n"
          "  --json                 one JSON status object per line on stdout\n"
          "  --quiet                no progress output\n"
          "  --verbose              log peer connections and disconnections to stderr\n"
          "  --no-wire-compress     never send or ask for compressed pieces (diskswarm peers only; on by default)\n"
          "  --zcache MIB           memory for compressed pieces kept for forwarding (default 64; 0 = none)\n"
          "  --zlevel N             compress pieces on the fly at zstd level N for diskswarm peers (default 1;\n"
          "                         0 = only send frames stored in a --compress image or received compressed)\n",
          f);
    if (!fetch)
        fputs("  --verify               hash every piece of the source (on all cores) before serving\n"
              "  --super-seed           deployment seed: show each machine a few pieces at a time, never-sent\n"
              "                         first, so the uplink sends every piece about once (until the machines\n"
              "                         together hold every piece)\n",
              f);
    else
        fputs("  --resume               first check the pieces already on the target (on all cores) and fetch\n"
              "                         only the missing or wrong ones (after an interrupted run)\n",
              f);
}

static int parse_opts(int argc, char **argv, struct peer_opts *o)
{
    enum { O_TO = 256, O_FROM, O_LISTEN, O_PEER, O_VERIFY, O_SUPER, O_SEEDTIME, O_EXPECT, O_JSON, O_QUIET, O_NOTRACKER,
           O_MAXPEERS, O_PIPELINE, O_HELP, O_VERBOSE, O_RESUME, O_ALLOW, O_SECRET, O_TRACKER, O_NOZ, O_ZCACHE,
           O_ZLEVEL };
    static const struct option lo[] = {
        {"to", required_argument, 0, O_TO},           {"from", required_argument, 0, O_FROM},
        {"listen", required_argument, 0, O_LISTEN},   {"peer", required_argument, 0, O_PEER},
        {"verify", no_argument, 0, O_VERIFY},         {"super-seed", no_argument, 0, O_SUPER},         {"resume", no_argument, 0, O_RESUME},
        {"allow", required_argument, 0, O_ALLOW},     {"secret-file", required_argument, 0, O_SECRET},         {"seed-time", required_argument, 0, O_SEEDTIME},
        {"expect", required_argument, 0, O_EXPECT},   {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET},           {"no-tracker", no_argument, 0, O_NOTRACKER},
        {"max-peers", required_argument, 0, O_MAXPEERS}, {"pipeline", required_argument, 0, O_PIPELINE},
        {"help", no_argument, 0, O_HELP},             {"verbose", no_argument, 0, O_VERBOSE},
        {"tracker", required_argument, 0, O_TRACKER},
        {"no-wire-compress", no_argument, 0, O_NOZ}, {"zcache", required_argument, 0, O_ZCACHE},
        {"zlevel", required_argument, 0, O_ZLEVEL},
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
        case O_TRACKER:
            if (o->n_trackers >= MAX_CLI_PEERS) {
                cli_error("too many --tracker options (at most %d)", MAX_CLI_PEERS);
                return EXIT_USAGE;
            }
            o->trackers[o->n_trackers++] = optarg;
            break;
        case O_VERIFY:
            if (o->fetch) goto bad;
            o->verify = true;
            break;
        case O_SUPER:
            if (o->fetch) goto bad;
            o->super_seed = true;
            break;
        case O_ALLOW:
            if (cli_opt_allow(optarg, o->allow, &o->n_allow))
                return EXIT_USAGE;
            break;
        case O_SECRET: o->secret_file = optarg; break;
        case O_RESUME:
            if (!o->fetch) goto bad;
            o->resume = true;
            break;
        case O_SEEDTIME:
            if (cli_opt_seed_time(optarg, &o->seed_time))
                return EXIT_USAGE;
            break;
        case O_EXPECT:
            if (cli_opt_expect(optarg, &o->expect))
                return EXIT_USAGE;
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
        case O_NOZ: o->no_wire_compress = true; break;
        case O_ZCACHE:
            if (cli_parse_uint(optarg, 65536, &v)) {
                cli_error("--zcache wants MiB from 0 to 65536");
                return EXIT_USAGE;
            }
            o->zcache_mib = v ? (int64_t)v : -1;
            break;
        case O_ZLEVEL:
            if (cli_parse_uint(optarg, 19, &v)) {
                cli_error("--zlevel wants a zstd level from 0 to 19");
                return EXIT_USAGE;
            }
            o->zlevel = v ? (int)v : -1;
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
    struct ds_err e;
    struct metainfo *mi = NULL;
    struct extent_map map = {0};
    struct store st = {.fd = -1};
    int rc = 1;

    /* Block the stop signals before any thread exists (image readers, tracker worker inherit the mask). */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);

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
    struct peer_run_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.mi = mi;
    ro.store = &st;
    ro.dev = o->dev;
    ro.role = o->fetch ? "fetch" : "seed";
    ro.fetch = o->fetch;
    ro.listen = o->listen;
    ro.peers = o->peers;
    ro.n_peers = o->n_peers;
    ro.trackers = o->trackers;
    ro.n_trackers = o->n_trackers;
    ro.no_tracker = o->no_tracker;
    ro.verify = o->verify;
    ro.super_seed = o->super_seed;
    ro.recheck = o->resume;
    ro.allow = o->allow;
    ro.n_allow = o->n_allow;
    ro.secret_file = o->secret_file;
    ro.json = o->json;
    ro.quiet = o->quiet;
    ro.verbose = o->verbose;
    ro.seed_time = o->seed_time;
    ro.expect = o->expect;
    ro.max_peers = o->max_peers;
    ro.pipeline = o->pipeline;
    ro.no_wire_compress = o->no_wire_compress;
    ro.zcache_mib = o->zcache_mib;
    ro.zlevel = o->zlevel;
    rc = peer_run(&ro, NULL);
out:
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
