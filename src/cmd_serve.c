/* cmd_serve.c — `diskswarm serve IMAGE_DIR`: tracker + seeder + dashboard in one process, and the files a
 * machine needs to deploy (GET /manifest.json, /torrents/<file>, /deploy.json), so `diskswarm deploy` needs only
 * the server's address.
 *
 * One seeding run (peer_run) per torrent of the manifest, each on its own thread, listening on consecutive ports
 * from --peer-port. The seeders don't announce to the tracker: deploy dials the server's seeder directly (its port
 * is in /deploy.json) and learns the other machines from the tracker, so the tracker's completed count is exactly
 * the number of machines that finished. With --expect N the process exits 0 once every torrent has been completed
 * by N machines and --seed-time (default 5 s, so deploys still see the count) has passed after that. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "addr_filter.h"
#include "cli.h"
#include "extent_map.h"
#include "image_file.h"
#include "manifest.h"
#include "metainfo.h"
#include "net.h"
#include "netboot.h"
#include "peer_run.h"
#include "serve_device.h"
#include "store.h"
#include "tracker_client.h"
#include "tracker_http.h"
#include "tracker_state.h"

#define SERVE_MAX_FILE ((size_t)256 << 20)   /* a torrent or manifest larger than this is refused */

struct serve_torrent {
    char file[128];
    char listen[300];
    struct metainfo *mi;
    struct extent_map map;
    struct store st;
    struct buf bytes;            /* the .torrent file as served */
    pthread_t th;
    bool started;
    int rc;
    struct peer_run_opts ro;
};

struct serve {
    const char *dir;
    struct buf manifest_json;
    struct buf partition_table;  /* the manifest's sfdisk dump (import of a Clonezilla image), served to deploy */
    struct serve_torrent *t;
    size_t n;
    uint64_t expect;
    uint16_t peer_port;
    struct tracker_state *ts;
    pthread_mutex_t mu;
    atomic_bool stop;
    struct netboot *nb;          /* --netboot: DHCP/TFTP (dnsmasq) and the /netboot/ routes */
};

static void usage(FILE *f)
{
    fputs("usage: diskswarm serve IMAGE_DIR|DEVICE [options]\n"
          "  Tracker + seeder + dashboard in one process for an IMAGE_DIR made by `capture -o` or `import`.\n"
          "  A DEVICE (or an image file) is captured first into a state directory (torrent + manifest, no image\n"
          "  store) and seeded straight from the device; it must not be mounted read-write.\n"
          "  Machines then run: diskswarm deploy http://SERVER:PORT --to /dev/sdX\n"
          "options:\n"
          "  --state-dir DIR        serve DEVICE: keep the capture in DIR (default: a temporary directory,\n"
          "                         removed on exit)\n"
          "  --listen ADDR:PORT     HTTP: tracker, dashboard and deploy files (default 0.0.0.0:6969)\n"
          "  --peer-port PORT       first BitTorrent port of the seeders (default: HTTP port + 1)\n"
          "  --expect N             exit 0 when N machines have completed every torrent (+ --seed-time)\n"
          "  --seed-time SEC        with --expect: keep serving this long afterwards (default 5);\n"
          "                         without: stop after SEC seconds\n"
          "  --allow CIDR           only talk to peers in this address range (repeatable)\n"
          "  --secret-file FILE     private swarm secret (deploy needs the same file)\n"
          "  --json                 JSON events on stdout\n"
          "  --verbose              log peer connections\n"
          "  --no-super-seed        show every machine every piece at once (by default each machine is\n"
          "                         shown a few never-sent pieces at a time, so the server's uplink sends\n"
          "                         each piece about once and the machines trade the rest)\n"
          "network boot (blank machines boot, deploy, reboot into the image; see netboot/README.md):\n"
          "  --netboot BOOTDIR      also answer network boot (dnsmasq: DHCP/proxy DHCP + TFTP) and serve\n"
          "                         BOOTDIR/vmlinuz + initrd.img (made by netboot/build-bootenv.sh)\n"
          "  --netboot-addr ADDR    this server's IPv4 address as the machines reach it (default: --listen's)\n"
          "  --dhcp-range START,END[,MASK]  be the DHCP server for this range (default: proxy DHCP beside\n"
          "                         the network's own DHCP server)\n"
          "  --netboot-iface IFACE  answer DHCP on this interface only\n"
          "  --netboot-no-dhcp      no dnsmasq: your DHCP server sends iPXE to\n"
          "                         http://ADDR:PORT/netboot/boot.ipxe itself\n"
          "  --netboot-disk DEV     the disk the machines deploy to (default: auto, the first fixed disk)\n"
          "  --netboot-then reboot|poweroff   after a successful deploy (default reboot: into the image)\n"
          "  --netboot-args TEXT    more kernel command line for the deploy environment\n"
          "  with --expect N, serve exits once N machines have network-booted again after their deploy and\n"
          "  were told to boot from their disk (at most 300 s after the swarm completed), + --seed-time\n",
          f);
}

static int read_file_buf(const char *path, struct buf *b, struct ds_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ds_errno(e, "cannot open %s", path);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b->len + n > SERVE_MAX_FILE || buf_put(b, tmp, n)) {
            fclose(f);
            return ds_errf(e, "%s: too large or out of memory", path);
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (err)
        return ds_errf(e, "cannot read %s", path);
    return 0;
}

static bool path_eq(const char *p, size_t pl, const char *want)
{
    return pl == strlen(want) && !memcmp(p, want, pl);
}

static void copy_buf(struct tracker_http_reply *r, const struct buf *src)
{
    buf_put(&r->body, src->data, src->len);
}

/* /deploy.json: what deploy needs besides the manifest: the seeders' port, --expect, completions so far. */
static void deploy_json(struct serve *sv, struct buf *out)
{
    buf_printf(out, "{\"format\":\"diskswarm-deploy\",\"version\":1,\"expect\":%" PRIu64 ",\"peer_port\":%u,"
                    "\"torrents\":[",
               sv->expect, sv->peer_port);
    uint32_t min_done = UINT32_MAX;
    pthread_mutex_lock(&sv->mu);
    for (size_t i = 0; i < sv->n; i++) {
        uint32_t c = 0, inc = 0, d = 0;
        ts_counts(sv->ts, sv->t[i].mi->info_hash, &c, &inc, &d);
        if (d < min_done)
            min_done = d;
        char hex[41];
        for (int k = 0; k < 20; k++)
            snprintf(hex + 2 * k, 3, "%02x", sv->t[i].mi->info_hash[k]);
        buf_printf(out, "%s{\"file\":\"%s\",\"info_hash\":\"%s\",\"peer_port\":%u,\"completed\":%u,"
                        "\"seeding\":%u,\"downloading\":%u}",
                   i ? "," : "", sv->t[i].file, hex, (unsigned)(sv->peer_port + i), d, c, inc);
    }
    pthread_mutex_unlock(&sv->mu);
    buf_printf(out, "],\"machines_complete\":%u}\n", sv->n ? min_done : 0);
}

static bool extra(void *ctx, const char *path, size_t plen, const char *query, size_t qlen,
                  struct tracker_http_reply *r)
{
    struct serve *sv = ctx;
    if (netboot_http(sv->nb, path, plen, query, qlen, r))
        return true;
    if (path_eq(path, plen, "/manifest.json")) {
        r->content_type = "application/json";
        copy_buf(r, &sv->manifest_json);
        return true;
    }
    if (path_eq(path, plen, "/partition-table") && sv->partition_table.len) {
        r->content_type = "text/plain";
        copy_buf(r, &sv->partition_table);
        return true;
    }
    if (path_eq(path, plen, "/deploy.json")) {
        r->content_type = "application/json";
        deploy_json(sv, &r->body);
        return true;
    }
    static const char pre[] = "/torrents/";
    if (plen > sizeof pre - 1 && !memcmp(path, pre, sizeof pre - 1)) {
        /* only the exact file names listed in the manifest: nothing else in IMAGE_DIR, no traversal */
        const char *name = path + sizeof pre - 1;
        size_t nl = plen - (sizeof pre - 1);
        for (size_t i = 0; i < sv->n; i++)
            if (path_eq(name, nl, sv->t[i].file)) {
                r->content_type = "application/x-bittorrent";
                copy_buf(r, &sv->t[i].bytes);
                return true;
            }
    }
    return false;
}

static void *seed_thread(void *arg)
{
    struct serve_torrent *t = arg;
    t->rc = peer_run(&t->ro, NULL);
    return NULL;
}

/* "ADDR:PORT" → host part ("0.0.0.0", "[::]", "127.0.0.1") and port */
static int split_listen(const char *listen, char *host, size_t hl, unsigned *port)
{
    const char *c = strrchr(listen, ':');
    if (!c || c == listen)
        return -1;
    uint64_t v;
    if (cli_parse_uint(c + 1, 65535, &v))
        return -1;
    snprintf(host, hl, "%.*s", (int)(c - listen), listen);
    *port = (unsigned)v;
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    enum { O_LISTEN = 256, O_PEERPORT, O_EXPECT, O_SEEDTIME, O_ALLOW, O_SECRET, O_JSON, O_VERBOSE, O_NOSUPER, O_HELP,
           O_STATEDIR, O_NETBOOT, O_NB_ADDR, O_NB_RANGE, O_NB_IFACE, O_NB_DISK, O_NB_THEN, O_NB_ARGS, O_NB_NODHCP };
    static const struct option lo[] = {
        {"listen", required_argument, 0, O_LISTEN},   {"peer-port", required_argument, 0, O_PEERPORT},
        {"expect", required_argument, 0, O_EXPECT},   {"seed-time", required_argument, 0, O_SEEDTIME},
        {"allow", required_argument, 0, O_ALLOW},     {"secret-file", required_argument, 0, O_SECRET},
        {"json", no_argument, 0, O_JSON},             {"verbose", no_argument, 0, O_VERBOSE},
        {"no-super-seed", no_argument, 0, O_NOSUPER}, {"state-dir", required_argument, 0, O_STATEDIR},
        {"netboot", required_argument, 0, O_NETBOOT}, {"netboot-addr", required_argument, 0, O_NB_ADDR},
        {"dhcp-range", required_argument, 0, O_NB_RANGE}, {"netboot-iface", required_argument, 0, O_NB_IFACE},
        {"netboot-disk", required_argument, 0, O_NB_DISK}, {"netboot-then", required_argument, 0, O_NB_THEN},
        {"netboot-args", required_argument, 0, O_NB_ARGS}, {"netboot-no-dhcp", no_argument, 0, O_NB_NODHCP},
        {"help", no_argument, 0, O_HELP},             {0, 0, 0, 0},
    };
    const char *listen = "0.0.0.0:6969", *secret = NULL, *state_dir = NULL;
    struct cidr allow[CLI_MAX_ALLOW];
    size_t n_allow = 0;
    int64_t seed_time = -1;
    uint64_t expect = 0, peer_port = 0;
    bool json = false, verbose = false, super_seed = true;
    struct netboot_config nbc;
    memset(&nbc, 0, sizeof nbc);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: listen = optarg; break;
        case O_PEERPORT:
            if (cli_parse_uint(optarg, 65535, &peer_port) || !peer_port) {
                cli_error("serve: --peer-port wants 1..65535");
                return EXIT_USAGE;
            }
            break;
        case O_EXPECT:
            if (cli_opt_expect(optarg, &expect))
                return EXIT_USAGE;
            break;
        case O_SEEDTIME:
            if (cli_opt_seed_time(optarg, &seed_time))
                return EXIT_USAGE;
            break;
        case O_ALLOW:
            if (cli_opt_allow(optarg, allow, &n_allow))
                return EXIT_USAGE;
            break;
        case O_SECRET: secret = optarg; break;
        case O_JSON: json = true; break;
        case O_VERBOSE: verbose = true; break;
        case O_NOSUPER: super_seed = false; break;
        case O_STATEDIR: state_dir = optarg; break;
        case O_NETBOOT: nbc.boot_dir = optarg; break;
        case O_NB_ADDR: nbc.server_addr = optarg; break;
        case O_NB_RANGE: nbc.dhcp_range = optarg; break;
        case O_NB_IFACE: nbc.iface = optarg; break;
        case O_NB_DISK: nbc.disk = optarg; break;
        case O_NB_THEN: nbc.then = optarg; break;
        case O_NB_ARGS: nbc.kernel_args = optarg; break;
        case O_NB_NODHCP: nbc.no_dhcp = true; break;
        case O_HELP:
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        cli_error("serve needs one IMAGE_DIR or DEVICE");
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *dir = argv[optind];
    struct stat sb;
    if (stat(dir, &sb)) {
        cli_error("serve: %s: %s", dir, strerror(errno));
        return 1;
    }
    char host[256];
    unsigned http_port;
    if (split_listen(listen, host, sizeof host, &http_port)) {
        cli_error("serve: --listen wants ADDR:PORT, not '%s'", listen);
        return EXIT_USAGE;
    }
    if (nbc.boot_dir) {
        if (!nbc.server_addr && (!strcmp(host, "0.0.0.0") || !strcmp(host, "[::]") || host[0] == '[')) {
            cli_error("serve: --netboot needs --netboot-addr ADDR (the IPv4 address machines reach) with this --listen");
            return EXIT_USAGE;
        }
        if (!http_port) {
            cli_error("serve: --netboot needs a fixed HTTP port in --listen");
            return EXIT_USAGE;
        }
        if (!nbc.server_addr)
            nbc.server_addr = host;
        nbc.http_port = http_port;
    } else if (nbc.server_addr || nbc.dhcp_range || nbc.iface || nbc.disk || nbc.then || nbc.kernel_args ||
               nbc.no_dhcp) {
        cli_error("serve: the --netboot-* and --dhcp-range options go with --netboot BOOTDIR");
        return EXIT_USAGE;
    }
    /* serve DEVICE: capture it on the fly, then serve that capture from the device itself */
    char dev_dir[1024];
    bool dev_temp = false;
    if (!S_ISDIR(sb.st_mode)) {
        int cr = serve_device_capture(dir, state_dir, json, dev_dir, sizeof dev_dir, &dev_temp);
        if (cr)
            return cr;
        dir = dev_dir;
    }

    /* every thread (MHD, tracker workers, seeders) inherits a mask with the stop signals blocked */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct ds_err e;
    struct serve sv;
    memset(&sv, 0, sizeof sv);
    pthread_mutex_init(&sv.mu, NULL);
    sv.dir = dir;
    sv.expect = expect;
    struct manifest m;
    memset(&m, 0, sizeof m);
    struct tracker_http *http = NULL;
    int rc = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST_FILE);
    if (read_file_buf(path, &sv.manifest_json, &e) || manifest_parse((const char *)sv.manifest_json.data,
                                                                     sv.manifest_json.len, &m, &e)) {
        cli_error("serve: %s", e.msg);
        buf_free(&sv.manifest_json);
        if (dev_temp)
            serve_device_cleanup(dir);
        return 1;
    }
    if (!m.n_torrents) {
        cli_error("serve: %s lists no torrent", path);
        goto out;
    }
    if (m.pt_file[0]) {
        snprintf(path, sizeof path, "%s/%s", dir, m.pt_file);
        if (read_file_buf(path, &sv.partition_table, &e)) {
            cli_error("serve: the manifest's partition table: %s", e.msg);
            goto out;
        }
    }
    struct ts_config tc;
    memset(&tc, 0, sizeof tc);
    tc.interval_s = 30;
    if (getrandom(&tc.rng_seed, sizeof tc.rng_seed, 0) != (ssize_t)sizeof tc.rng_seed)
        tc.rng_seed = (uint64_t)time(NULL);
    if (!(sv.ts = ts_new(&tc, &e))) {
        cli_error("serve: %s", e.msg);
        goto out;
    }
    sv.t = calloc(m.n_torrents, sizeof *sv.t);
    if (!sv.t) {
        cli_error("out of memory");
        goto out;
    }
    sv.peer_port = (uint16_t)(peer_port ? peer_port : http_port + 1);
    if (!peer_port && (http_port == 0 || http_port + m.n_torrents > 65535)) {
        cli_error("serve: give --peer-port with this --listen");
        goto out;
    }
    for (size_t i = 0; i < m.n_torrents; i++) {
        struct serve_torrent *t = &sv.t[sv.n];
        const struct manifest_torrent *mt = &m.torrents[i];
        t->st.fd = -1;
        snprintf(t->file, sizeof t->file, "%s", mt->file);
        if (!t->file[0] || strchr(t->file, '/') || t->file[0] == '.') {
            cli_error("serve: manifest names a bad torrent file '%s'", t->file);
            goto out;
        }
        sv.n++;
        snprintf(path, sizeof path, "%s/%s", dir, mt->file);
        if (read_file_buf(path, &t->bytes, &e) || metainfo_parse(t->bytes.data, t->bytes.len, &t->mi, &e) ||
            extent_map_from_metainfo(t->mi, &t->map, &e)) {
            cli_error("serve: %s", e.msg);
            goto out;
        }
        int r = 0;
        if (mt->image[0] || mt->seed_in_place[0])
            r = image_source_open(&t->st, dir, t->mi, &t->map, &e);
        if (r < 0) {
            cli_error("serve: %s", e.msg);
            goto out;
        }
        if (r == 0) {
            /* no stored image: serve from the captured device itself; a partition's torrent of a whole disk
             * (capture --per-partition) has offsets relative to the partition */
            for (size_t k = 0; !strcmp(m.kind, "disk") && !strcmp(mt->role, "partition") && k < m.n_parts; k++)
                if (!strcmp(m.parts[k].torrent, mt->file)) {
                    if (t->map.dev_end > m.parts[k].size || extent_map_shift(&t->map, m.parts[k].start, &e)) {
                        cli_error("serve: %s does not fit its partition %s", mt->file, m.parts[k].device);
                        goto out;
                    }
                    break;
                }
            if (store_open(&t->st, m.source, STORE_READ, t->mi, &t->map, &e)) {
                cli_error("serve: %s has no stored image for %s and its source: %s", dir, mt->file, e.msg);
                goto out;
            }
        }
        if (ts_add_torrent(sv.ts, t->mi->info_hash, t->mi->name, t->mi->total_length, t->mi->num_pieces, &e)) {
            cli_error("serve: %s", e.msg);
            goto out;
        }
        snprintf(t->listen, sizeof t->listen, "%s:%u", host, (unsigned)(sv.peer_port + i));
    }

    if (nbc.boot_dir && netboot_start(&sv.nb, &nbc, &e)) {
        cli_error("serve: %s", e.msg);
        goto out;
    }
    struct tracker_http_config hc = {.listen = listen, .extra_handler = extra, .extra_ctx = &sv};
    if (tracker_http_start(&http, sv.ts, &sv.mu, &hc, &e)) {
        cli_error("serve: %s", e.msg);
        goto out;
    }
    for (size_t i = 0; i < sv.n; i++) {
        struct serve_torrent *t = &sv.t[i];
        struct peer_run_opts *ro = &t->ro;
        ro->mi = t->mi;
        ro->store = &t->st;
        ro->dev = t->file;
        ro->role = "serve";
        ro->listen = t->listen;
        ro->no_tracker = true;
        ro->allow = allow;
        ro->n_allow = n_allow;
        ro->secret_file = secret;
        ro->quiet = true;
        ro->verbose = verbose;
        ro->super_seed = super_seed;
        ro->seed_time = -1;
        ro->no_signals = true;
        ro->stop = &sv.stop;
        if (pthread_create(&t->th, NULL, seed_thread, t)) {
            cli_error("serve: cannot start a thread");
            atomic_store(&sv.stop, true);
            goto out;
        }
        t->started = true;
    }
    const char *shown = strcmp(host, "0.0.0.0") && strcmp(host, "[::]") ? host : "SERVER";
    unsigned real_port = tracker_http_port(http);
    fprintf(stderr, "diskswarm serve: %zu torrent(s) from %s; seeders on port %u%s\n"
                    "  dashboard:  http://%s:%u/\n"
                    "  on each machine: diskswarm deploy http://%s:%u --to /dev/sdX\n",
            sv.n, dir, sv.peer_port, sv.n > 1 ? "+" : "", shown, real_port, shown, real_port);
    if (json) {
        printf("{\"type\":\"listening\",\"role\":\"serve\",\"http_port\":%u,\"peer_port\":%u,\"torrents\":%zu,"
               "\"expect\":%" PRIu64 "}\n",
               real_port, sv.peer_port, sv.n, expect);
        fflush(stdout);
    }

    uint64_t t0 = net_now_ms(), t_done = 0, t_nb_done = 0;
    uint32_t last_done = 0;
    const char *reason = "signal";
    for (;;) {
        struct timespec to = {.tv_sec = 0, .tv_nsec = 500000000};
        int s = sigtimedwait(&mask, NULL, &to);
        if (s > 0)
            break;
        uint64_t now = net_now_ms();
        uint32_t done = UINT32_MAX;
        pthread_mutex_lock(&sv.mu);
        ts_expire(sv.ts, now);
        for (size_t i = 0; i < sv.n; i++) {
            uint32_t cc = 0, inc = 0, d = 0;
            ts_counts(sv.ts, sv.t[i].mi->info_hash, &cc, &inc, &d);
            if (d < done)
                done = d;
        }
        pthread_mutex_unlock(&sv.mu);
        bool dead = false;
        for (size_t i = 0; i < sv.n; i++)
            if (pthread_tryjoin_np(sv.t[i].th, NULL) == 0) {
                sv.t[i].started = false;
                dead = true;
            }
        if (sv.nb && !netboot_alive(sv.nb)) {
            cli_error("serve: dnsmasq (network boot) stopped (see above)");
            reason = "dnsmasq stopped";
            break;
        }
        if (dead) {
            cli_error("serve: a seeder stopped (see above)");
            reason = "seeder failed";
            break;
        }
        if (done != last_done) {
            last_done = done;
            if (json)
                printf("{\"type\":\"machines\",\"role\":\"serve\",\"complete\":%u,\"expect\":%" PRIu64 "}\n", done,
                       expect);
            else
                fprintf(stderr, "serve: %u machine(s) complete%s\n", done, expect ? "" : "");
            fflush(stdout);
        }
        if (expect) {
            if (!t_done && done >= expect)
                t_done = now;
            /* --netboot: done once the machines came back and were told to boot their disk (or after at most
             * NETBOOT_REBOOT_WAIT_S), so their reboot still finds the DHCP and boot-script answers */
            if (t_done && sv.nb && !t_nb_done &&
                (netboot_local_boots(sv.nb) >= expect || now - t_done >= NETBOOT_REBOOT_WAIT_S * 1000u))
                t_nb_done = now;
            uint64_t t_end = sv.nb ? t_nb_done : t_done;
            int64_t linger = seed_time >= 0 ? seed_time : 5;
            if (t_end && now - t_end >= (uint64_t)linger * 1000u) {
                reason = "swarm complete";
                break;
            }
        } else if (seed_time >= 0 && now - t0 >= (uint64_t)seed_time * 1000u) {
            reason = "seed time over";
            break;
        }
    }
    atomic_store(&sv.stop, true);
    rc = 0;
    for (size_t i = 0; i < sv.n; i++)
        if (sv.t[i].started) {
            pthread_join(sv.t[i].th, NULL);
            sv.t[i].started = false;
            if (sv.t[i].rc)
                rc = 1;
        } else if (sv.t[i].rc) {
            rc = 1;
        }
    if (!strcmp(reason, "seeder failed") || !strcmp(reason, "dnsmasq stopped"))
        rc = 1;
    if (json) {
        printf("{\"type\":\"done\",\"role\":\"serve\",\"ok\":%s,\"reason\":\"%s\",\"machines_complete\":%u}\n",
               rc ? "false" : "true", reason, last_done);
        fflush(stdout);
    }
    fprintf(stderr, "serve: stopping (%s), %u machine(s) complete\n", reason, last_done);
out:
    atomic_store(&sv.stop, true);
    for (size_t i = 0; i < sv.n; i++)
        if (sv.t[i].started)
            pthread_join(sv.t[i].th, NULL);
    tracker_http_stop(http);
    netboot_stop(sv.nb);
    for (size_t i = 0; i < sv.n; i++) {
        store_close(&sv.t[i].st);
        extent_map_free(&sv.t[i].map);
        metainfo_free(sv.t[i].mi);
        buf_free(&sv.t[i].bytes);
    }
    free(sv.t);
    ts_free(sv.ts);
    manifest_free(&m);
    buf_free(&sv.manifest_json);
    buf_free(&sv.partition_table);
    pthread_mutex_destroy(&sv.mu);
    if (dev_temp)
        serve_device_cleanup(dir);
    return rc;
}
