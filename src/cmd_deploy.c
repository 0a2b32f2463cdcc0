/* cmd_deploy.c — `diskswarm deploy http://SERVER:PORT --to TARGET`: everything a machine does to receive an
 * image from `diskswarm serve`:
 *   1. GET /deploy.json, /manifest.json and the torrent(s) (bounded sizes, timeouts): one for a whole-disk or a
 *      single image; for a per-partition image (capture --per-partition, import of a Clonezilla directory) every
 *      partition's torrent, each written at its partition's start on the target, plus the table: a "table"
 *      torrent, or the recorded sfdisk dump (GET /partition-table, checked against the manifest);
 *   2. check the target: a block device or regular file, not mounted / swap / holding `/`, big enough;
 *      ask for confirmation (a TTY) unless --yes; refuse without --yes when stdin is not a TTY;
 *   3. unless resuming: wipe the first MiB of the target, of every partition in the manifest and the last MiB,
 *      so a half-written target never looks like a valid disk; recreate the table from the sfdisk dump (libfdisk);
 *   4. fetch every torrent onto the target at once (one thread each), announcing to the server's tracker and
 *      dialling the server's seeder for it; every ~2 s the verified pieces are fdatasync'ed and recorded in a
 *      state file per torrent (so a rerun after kill -9 or power loss resumes without fetching them again);
 *   5. keep seeding until the server says all expected machines are complete (or it is gone), or --seed-time;
 *   6. fix-ups: on a larger target, move the backup GPT to the end; fdatasync; delete the state file;
 *   7. exit 0 only when every piece is verified and the fix-ups worked; then run --then. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "addr_filter.h"
#include "buf.h"
#include "cli.h"
#include "extent_map.h"
#include "gpt_fixup.h"
#include "manifest.h"
#include "metainfo.h"
#include "net.h"
#include "partition_restore.h"
#include "peer_run.h"
#include "store.h"
#include "target_check.h"

#define DEPLOY_MAX_DOC ((size_t)64 << 20)
#define WIPE_LEN ((uint64_t)1 << 20)
#define STATE_DIR "/var/lib/diskswarm"

struct deploy_opts {
    const char *url;
    const char *target;
    bool yes, json, quiet, verbose, recheck;
    int64_t seed_time;
    uint64_t expect;
    const char *then;
    const char *state;
    const char *secret_file;
    const char *listen;
    struct cidr allow[CLI_MAX_ALLOW];
    size_t n_allow;
};

static void usage(FILE *f)
{
    fputs("usage: diskswarm deploy http://SERVER:PORT --to DEVICE|FILE [options]\n"
          "  Receive the image served by `diskswarm serve` onto DEVICE: check it, wipe its partition heads, write\n"
          "  and verify every piece, seed to the other machines until all are done, fix up, exit 0 on success.\n"
          "options:\n"
          "  --to TARGET            the disk (or image file) to overwrite\n"
          "  --yes                  don't ask for confirmation (required when stdin is not a terminal)\n"
          "  --seed-time SEC        seed at most this long after completion (default: until the swarm is done,\n"
          "                         at most 1800 s; 0 without an expected machine count)\n"
          "  --expect N             the swarm is done when N machines are complete (default: the server's)\n"
          "  --then reboot|poweroff|CMD   run this after a successful deploy\n"
          "  --state FILE           resume state (default: TARGET.dsstate for a file,\n"
          "                         " STATE_DIR "/<info-hash>.state for a device)\n"
          "  --recheck              on resume, re-hash the pieces the state file lists instead of trusting it\n"
          "  --listen [ADDR:]PORT   accept peers here (default 6881)\n"
          "  --allow CIDR           only talk to peers in this range (repeatable)\n"
          "  --secret-file FILE     the swarm secret given to serve\n"
          "  --json                 JSON lines on stdout\n"
          "  --quiet                no progress output\n"
          "  --verbose              log peer connections\n",
          f);
}

/* ---- HTTP ---- */

struct dl {
    struct buf *b;
    size_t max;
    bool too_big;
};

static size_t on_data(char *p, size_t sz, size_t n, void *ctx)
{
    struct dl *d = ctx;
    size_t len = sz * n;
    if (d->b->len + len > d->max || buf_put(d->b, p, len)) {
        d->too_big = true;
        return 0;
    }
    return len;
}

static int http_get(const char *url, size_t max, long timeout_s, struct buf *out, struct ds_err *e)
{
    CURL *c = curl_easy_init();
    if (!c)
        return ds_errf(e, "cannot initialise libcurl");
    struct dl d = {.b = out, .max = max};
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout_s < 5 ? timeout_s : 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode r = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (d.too_big)
        return ds_errf(e, "%s: more than %zu bytes", url, max);
    if (r != CURLE_OK)
        return ds_errf(e, "%s: %s", url, err[0] ? err : curl_easy_strerror(r));
    if (code != 200)
        return ds_errf(e, "%s: HTTP status %ld", url, code);
    return 0;
}

/* value of the first "key":NUMBER in a small JSON text (our own /deploy.json) */
static bool json_u64(const struct buf *b, const char *key, uint64_t *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    if (!b->data)
        return false;
    const char *s = memmem(b->data, b->len, pat, strlen(pat));
    if (!s)
        return false;
    s += strlen(pat);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return false;
    *out = v;
    return true;
}

/* ---- state file: the info-hash and the pieces verified and durable on the target ---- */

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static int state_save(const char *path, const uint8_t ih[20], const struct bitfield *have, struct ds_err *e)
{
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return ds_errno(e, "cannot write %s", tmp);
    char hex[41];
    hex_of(ih, 20, hex);
    fprintf(f, "diskswarm-state 1\ninfo_hash %s\npieces %u\nbits ", hex, have->nbits);
    for (size_t i = 0; i < bitfield_bytes(have->nbits); i++)
        fprintf(f, "%02x", have->bits[i]);
    fputc('\n', f);
    bool bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    if (fclose(f) || bad) {
        unlink(tmp);
        return ds_errno(e, "cannot write %s", tmp);
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return ds_errno(e, "cannot rename %s", tmp);
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl)
        *(sl == dir ? sl + 1 : sl) = 0;
    int dfd = open(sl ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* 1 = loaded into have (initialised here), 0 = no usable state (missing or for another torrent), -1 = error */
static int state_load(const char *path, const struct metainfo *mi, struct bitfield *have, struct ds_err *e)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return ds_errno(e, "cannot read %s", path);
    }
    char line[256], hex[41];
    hex_of(mi->info_hash, 20, hex);
    unsigned n = 0;
    int ok = 0;
    char want[64];
    snprintf(want, sizeof want, "info_hash %s\n", hex);
    if (fgets(line, sizeof line, f) && !strcmp(line, "diskswarm-state 1\n") && fgets(line, sizeof line, f) &&
        !strcmp(line, want) && fgets(line, sizeof line, f) && sscanf(line, "pieces %u", &n) == 1 &&
        n == mi->num_pieces && fscanf(f, "bits ") == 0 && bitfield_init(have, n) == 0) {
        size_t nb = bitfield_bytes(n);
        uint8_t *raw = malloc(nb ? nb : 1);
        ok = raw != NULL;
        for (size_t i = 0; ok && i < nb; i++) {
            unsigned v;
            if (fscanf(f, "%2x", &v) != 1)
                ok = 0;
            else
                raw[i] = (uint8_t)v;
        }
        if (ok && bitfield_load(have, raw, nb))
            ok = 0;
        free(raw);
        if (!ok)
            bitfield_free(have);
    }
    fclose(f);
    return ok;
}

/* ---- target checks ---- */

/* The whole disk holding "/" as major:minor (0:0 when unknown or not a disk, e.g. tmpfs/overlay). */
static dev_t root_disk(void)
{
    struct stat st;
    if (stat("/", &st))
        return 0;
    char p[128], link[PATH_MAX];
    snprintf(p, sizeof p, "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    ssize_t n = readlink(p, link, sizeof link - 1);
    if (n <= 0)
        return 0;
    link[n] = 0;
    /* .../block/sda/sda2 → the parent's dev file; .../block/sda → itself */
    char dpath[PATH_MAX + 32];
    snprintf(dpath, sizeof dpath, "/sys/dev/block/%u:%u/partition", major(st.st_dev), minor(st.st_dev));
    bool is_part = access(dpath, F_OK) == 0;
    snprintf(dpath, sizeof dpath, "/sys/dev/block/%u:%u/%sdev", major(st.st_dev), minor(st.st_dev),
             is_part ? "../" : "");
    FILE *f = fopen(dpath, "re");
    if (!f)
        return st.st_dev;
    unsigned a, b;
    dev_t d = st.st_dev;
    if (fscanf(f, "%u:%u", &a, &b) == 2)
        d = makedev(a, b);
    fclose(f);
    return d;
}

static int wipe_range(int fd, uint64_t off, uint64_t len, uint64_t size, struct ds_err *e)
{
    static const uint8_t zero[65536];
    if (off >= size)
        return 0;
    if (off + len > size)
        len = size - off;
    while (len) {
        size_t n = len > sizeof zero ? sizeof zero : (size_t)len;
        ssize_t w = pwrite(fd, zero, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ds_errno(e, "wiping at offset %" PRIu64, off);
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return 0;
}

/* ---- the run: one job per torrent — one for a whole disk or a single image; the table torrent (or a table
 * recreated from the recorded sfdisk dump) and one per partition for a per-partition image ---- */

struct deploy_job {
    const struct manifest_torrent *mt;
    const struct manifest_part *part;   /* per-partition image: the partition its torrent is written to */
    size_t index;                       /* in the manifest's torrents: the server seeds it on peer_port + index */
    struct buf tb;
    struct metainfo *mi;
    struct extent_map map;
    struct store st;
    struct bitfield have, snap;
    bool resuming;
    char state_path[PATH_MAX];
    char role[96], peer[340], listen[320];
    const char *peers[1];
    const char *trackers[1];
    const struct deploy_opts *o;
    const char *base;
    uint64_t expect;
    uint64_t last_state, last_poll;
    bool state_complete;
    unsigned poll_fails;
    uint64_t last_machines;
    /* progress, written by the job's thread once a second, read by the main thread */
    atomic_uint_fast64_t p_pieces, p_bytes, p_down, p_up, p_peers;
    struct peer_run_opts ro;
    struct peer_run_result res;
    int prc;
    pthread_t th;
    bool started;
    atomic_bool finished;
};

static const char *tick(void *ctx, struct session *s, bool completed, uint64_t now)
{
    struct deploy_job *d = ctx;
    struct ds_err e;
    struct session_stats ss;
    session_stats(s, &ss);
    atomic_store(&d->p_pieces, ss.pieces_have);
    atomic_store(&d->p_bytes, ss.bytes_have);
    atomic_store(&d->p_down, ss.payload_down);
    atomic_store(&d->p_up, ss.payload_up);
    atomic_store(&d->p_peers, ss.peers);
    if (!d->state_complete && now - d->last_state >= 2000) {
        d->last_state = now;
        /* snapshot first, then make it durable: the file never lists a piece that is not on stable storage */
        memcpy(d->snap.bits, s->have.bits, bitfield_bytes(s->have.nbits));
        d->snap.count = s->have.count;
        if (store_sync(&d->st, &e) || state_save(d->state_path, d->mi->info_hash, &d->snap, &e))
            fprintf(stderr, "deploy: warning: resume state not saved: %s\n", e.msg);
        else if (d->snap.count == d->snap.nbits)
            d->state_complete = true;
    }
    if (!completed || !d->expect || now - d->last_poll < 2000)
        return NULL;
    d->last_poll = now;
    char url[1200];
    snprintf(url, sizeof url, "%s/deploy.json", d->base);
    struct buf b = {0};
    uint64_t done = 0;
    if (http_get(url, 1 << 20, 2, &b, &e) || !json_u64(&b, "machines_complete", &done)) {
        buf_free(&b);
        /* the server going away after we are complete means the deployment is over */
        if (++d->poll_fails >= 3)
            return "server gone";
        return NULL;
    }
    buf_free(&b);
    d->poll_fails = 0;
    d->last_machines = done;
    if (done >= d->expect)
        return "swarm complete";
    return NULL;
}

static void *job_thread(void *arg)
{
    struct deploy_job *j = arg;
    j->prc = peer_run(&j->ro, &j->res);
    atomic_store(&j->finished, true);
    return NULL;
}

static int run_then(const char *then)
{
    fflush(stdout);
    fflush(stderr);
    const char *cmd = then;
    if (!strcmp(then, "reboot"))
        cmd = "systemctl reboot || reboot";
    else if (!strcmp(then, "poweroff"))
        cmd = "systemctl poweroff || poweroff";
    /* the stop signals are blocked in this process; the command must not inherit that */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
    int r = system(cmd);
    if (r != 0) {
        cli_error("--then '%s' failed (status %d)", then, r);
        return 1;
    }
    return 0;
}

static int parse(int argc, char **argv, struct deploy_opts *o)
{
    enum { O_TO = 256, O_YES, O_SEEDTIME, O_EXPECT, O_THEN, O_STATE, O_RECHECK, O_JSON, O_QUIET, O_VERBOSE,
           O_SECRET, O_LISTEN, O_ALLOW, O_HELP };
    static const struct option lo[] = {
        {"to", required_argument, 0, O_TO},           {"yes", no_argument, 0, O_YES},
        {"seed-time", required_argument, 0, O_SEEDTIME}, {"expect", required_argument, 0, O_EXPECT},
        {"then", required_argument, 0, O_THEN},       {"state", required_argument, 0, O_STATE},
        {"recheck", no_argument, 0, O_RECHECK},       {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET},           {"verbose", no_argument, 0, O_VERBOSE},
        {"secret-file", required_argument, 0, O_SECRET}, {"listen", required_argument, 0, O_LISTEN},
        {"allow", required_argument, 0, O_ALLOW},     {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    o->seed_time = -1;
    o->listen = "6881";
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hy", lo, NULL)) != -1) {
        switch (c) {
        case O_TO: o->target = optarg; break;
        case 'y':
        case O_YES: o->yes = true; break;
        case O_SEEDTIME:
            if (cli_opt_seed_time(optarg, &o->seed_time))
                return EXIT_USAGE;
            break;
        case O_EXPECT:
            if (cli_opt_expect(optarg, &o->expect))
                return EXIT_USAGE;
            break;
        case O_THEN: o->then = optarg; break;
        case O_STATE: o->state = optarg; break;
        case O_RECHECK: o->recheck = true; break;
        case O_JSON: o->json = true; break;
        case O_QUIET: o->quiet = true; break;
        case O_VERBOSE: o->verbose = true; break;
        case O_SECRET: o->secret_file = optarg; break;
        case O_LISTEN: o->listen = optarg; break;
        case O_ALLOW:
            if (cli_opt_allow(optarg, o->allow, &o->n_allow))
                return EXIT_USAGE;
            break;
        case O_HELP:
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || !o->target) {
        cli_error("deploy needs the server's URL and --to TARGET");
        usage(stderr);
        return EXIT_USAGE;
    }
    o->url = argv[optind];
    if (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8)) {
        cli_error("deploy: the server is given as http://SERVER:PORT, not '%s'", o->url);
        return EXIT_USAGE;
    }
    if (strlen(o->url) > 1000) {
        cli_error("deploy: URL too long");
        return EXIT_USAGE;
    }
    return 0;
}

/* "http://HOST:PORT/..." → "HOST" (brackets kept for IPv6) */
static void url_host(const char *url, char *out, size_t len)
{
    const char *h = strstr(url, "://") + 3;
    const char *end = h;
    if (*h == '[') {
        end = strchr(h, ']');
        end = end ? end + 1 : h + strlen(h);
    } else {
        while (*end && *end != ':' && *end != '/')
            end++;
    }
    snprintf(out, len, "%.*s", (int)(end - h), h);
}

static void event(const struct deploy_opts *o, const char *json_fields, const char *text)
{
    if (o->json) {
        printf("{\"type\":\"deploy\",\"role\":\"deploy\",%s}\n", json_fields);
        fflush(stdout);
    } else if (!o->quiet || strstr(json_fields, "\"ok\":false")) {
        fprintf(stderr, "deploy: %s\n", text);
    }
}

/* "[ADDR:]PORT" of job i: the port + i (0 stays 0: any free port) */
static int job_listen(const char *listen, size_t i, char *out, size_t len)
{
    const char *c = strrchr(listen, ':');
    const char *ps = c ? c + 1 : listen;
    uint64_t port;
    if (cli_parse_uint(ps, 65535, &port))
        return -1;
    if (port && port + i > 65535)
        return -1;
    snprintf(out, len, "%.*s%" PRIu64, (int)(ps - listen), listen, port ? port + i : 0);
    return 0;
}

/* Which torrents go where: jobs[] filled, *n_jobs set; *table_torrent when the table travels as a torrent. */
static int plan_jobs(const struct manifest *m, struct deploy_job *jobs, size_t *n_jobs, bool *per_part,
                     bool *table_torrent)
{
    *n_jobs = 0;
    *per_part = !strcmp(m->mode, "per-partition");
    *table_torrent = false;
    if (!*per_part) {
        const struct manifest_torrent *mt = m->n_torrents == 1 ? &m->torrents[0] : NULL;
        size_t idx = 0;
        for (size_t i = 0; !mt && i < m->n_torrents; i++)
            if (!strcmp(m->torrents[i].role, "disk")) {
                mt = &m->torrents[i];
                idx = i;
            }
        if (!mt) {
            cli_error("deploy: the server's image (%s mode) has %zu torrents and none for the whole disk", m->mode,
                      m->n_torrents);
            return -1;
        }
        jobs[0].mt = mt;
        jobs[0].index = idx;
        *n_jobs = 1;
        return 0;
    }
    if (strcmp(m->kind, "disk")) {
        cli_error("deploy: the server's per-partition image records no partition table, so the partitions have "
                  "no place on a disk (capture a whole disk, or import a Clonezilla directory with <disk>-pt.sf)");
        return -1;
    }
    for (size_t i = 0; i < m->n_torrents; i++) {
        const struct manifest_torrent *mt = &m->torrents[i];
        struct deploy_job *j = &jobs[*n_jobs];
        j->mt = mt;
        j->index = i;
        if (!strcmp(mt->role, "table")) {
            *table_torrent = true;
        } else if (!strcmp(mt->role, "partition")) {
            for (size_t k = 0; k < m->n_parts && !j->part; k++)
                if (!strcmp(m->parts[k].torrent, mt->file))
                    j->part = &m->parts[k];
            if (!j->part) {
                cli_error("deploy: the manifest's torrent %s belongs to no partition", mt->file);
                return -1;
            }
        } else {
            cli_error("deploy: the manifest's torrent %s has the unknown role '%s'", mt->file, mt->role);
            return -1;
        }
        (*n_jobs)++;
    }
    if (!*table_torrent && strcmp(m->pt_format, "sfdisk")) {
        cli_error("deploy: the server's image records %s; deploy recreates a table from an sfdisk dump "
                  "(<disk>-pt.sf) or a captured table torrent",
                  m->pt_format[0] ? "only a parted dump of the partition table" : "no partition table");
        return -1;
    }
    return 0;
}

static void print_progress(const struct deploy_opts *o, struct deploy_job *jobs, size_t n, uint64_t t0, uint64_t now,
                           uint64_t *last_down, uint64_t *last_t, bool tty)
{
    uint64_t pieces = 0, npieces = 0, bytes = 0, total = 0, down = 0, up = 0, peers = 0;
    for (size_t i = 0; i < n; i++) {
        pieces += atomic_load(&jobs[i].p_pieces);
        npieces += jobs[i].mi->num_pieces;
        bytes += atomic_load(&jobs[i].p_bytes);
        total += jobs[i].mi->total_length;
        down += atomic_load(&jobs[i].p_down);
        up += atomic_load(&jobs[i].p_up);
        peers += atomic_load(&jobs[i].p_peers);
    }
    double dt = (double)(now - *last_t) / 1000.0, rate = dt > 0 ? (double)(down - *last_down) / dt : 0;
    *last_down = down;
    *last_t = now;
    double pct = total ? 100.0 * (double)bytes / (double)total : 100.0;
    if (o->json) {
        printf("{\"type\":\"progress\",\"role\":\"deploy\",\"t\":%.1f,\"torrents\":%zu,\"pieces\":%" PRIu64
               ",\"num_pieces\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"total\":%" PRIu64 ",\"percent\":%.2f,"
               "\"down_bps\":%.0f,\"downloaded\":%" PRIu64 ",\"uploaded\":%" PRIu64 ",\"peers\":%" PRIu64 "}\n",
               (double)(now - t0) / 1000.0, n, pieces, npieces, bytes, total, pct, rate, down, up, peers);
        fflush(stdout);
    } else if (!o->quiet) {
        char hb[32], ht[32], hr[32];
        cli_format_bytes(bytes, hb, sizeof hb);
        cli_format_bytes(total, ht, sizeof ht);
        cli_format_bytes((uint64_t)rate, hr, sizeof hr);
        fprintf(stderr, "%sdeploy: %5.1f%% %s/%s of %zu torrents, down %s/s, peers %" PRIu64 "%s", tty ? "\r\033[K" : "",
                pct, hb, ht, n, hr, peers, tty ? "" : "\n");
        fflush(stderr);
    }
}

int cmd_deploy(int argc, char **argv)
{
    struct deploy_opts o;
    memset(&o, 0, sizeof o);
    int r = parse(argc, argv, &o);
    if (r)
        return r < 0 ? 0 : r;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    struct ds_err e;
    int rc = 1;
    char base[1024], url[1200], host[300], announce[1200];
    snprintf(base, sizeof base, "%s", o.url);
    while (strlen(base) > 8 && base[strlen(base) - 1] == '/')
        base[strlen(base) - 1] = 0;
    url_host(base, host, sizeof host);
    struct buf dj = {0}, mj = {0}, ptb = {0};
    struct manifest m;
    memset(&m, 0, sizeof m);
    bool m_ok = false;
    struct deploy_job *jobs = NULL;
    size_t nj = 0;
    atomic_bool stop = false;

    /* 1. what the server offers */
    uint64_t server_expect = 0, peer_port = 0;
    snprintf(url, sizeof url, "%s/deploy.json", base);
    if (http_get(url, 1 << 20, 15, &dj, &e)) {
        cli_error("deploy: %s (is `diskswarm serve` running there?)", e.msg);
        goto out;
    }
    if (!json_u64(&dj, "peer_port", &peer_port) || !peer_port || peer_port > 65535) {
        cli_error("deploy: %s is not a diskswarm serve answer", url);
        goto out;
    }
    json_u64(&dj, "expect", &server_expect);
    snprintf(url, sizeof url, "%s/manifest.json", base);
    if (http_get(url, DEPLOY_MAX_DOC, 30, &mj, &e) || manifest_parse((const char *)mj.data, mj.len, &m, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    m_ok = true;
    if (!m.n_torrents) {
        cli_error("deploy: the server's manifest lists no torrent");
        goto out;
    }
    if (!(jobs = calloc(m.n_torrents, sizeof *jobs))) {
        cli_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < m.n_torrents; i++)
        jobs[i].st.fd = -1;
    bool per_part, table_torrent;
    if (plan_jobs(&m, jobs, &nj, &per_part, &table_torrent))
        goto out;
    bool whole_disk = !per_part && !strcmp(m.kind, "disk") && !strcmp(jobs[0].mt->role, "disk");
    uint64_t need = 0, total_bytes = 0;
    if (whole_disk || per_part)
        need = m.source_size;
    for (size_t i = 0; i < nj; i++) {
        struct deploy_job *j = &jobs[i];
        snprintf(url, sizeof url, "%s/torrents/%s", base, j->mt->file);
        if (http_get(url, DEPLOY_MAX_DOC, 60, &j->tb, &e) || metainfo_parse(j->tb.data, j->tb.len, &j->mi, &e) ||
            extent_map_from_metainfo(j->mi, &j->map, &e)) {
            cli_error("deploy: %s", e.msg);
            goto out;
        }
        char ihex[41];
        hex_of(j->mi->info_hash, 20, ihex);
        if (strcmp(ihex, j->mt->info_hash)) {
            cli_error("deploy: the torrent's info-hash %s is not the manifest's %s", ihex, j->mt->info_hash);
            goto out;
        }
        if (j->part) {
            /* a partition's torrent: offsets relative to the partition, which it must not leave */
            if (j->map.dev_end > j->part->size) {
                cli_error("deploy: torrent %s reaches byte %" PRIu64 " of partition %s, which has %" PRIu64,
                          j->mt->file, j->map.dev_end, j->part->device, j->part->size);
                goto out;
            }
            if (extent_map_shift(&j->map, j->part->start, &e)) {
                cli_error("deploy: %s: %s", j->mt->file, e.msg);
                goto out;
            }
            if (j->part->start + j->part->size > need)
                need = j->part->start + j->part->size;
        }
        if (j->map.dev_end > need)
            need = j->map.dev_end;
        total_bytes += j->mi->total_length;
        if (nj == 1)
            snprintf(j->role, sizeof j->role, "deploy");
        else
            snprintf(j->role, sizeof j->role, "deploy/%s", j->mi->name);
    }

    /* 2. the target */
    struct stat sb;
    if (stat(o.target, &sb)) {
        cli_error("deploy: %s: %s", o.target, strerror(errno));
        goto out;
    }
    if (!S_ISBLK(sb.st_mode) && !S_ISREG(sb.st_mode)) {
        cli_error("deploy: %s is neither a block device nor a regular file", o.target);
        goto out;
    }
    if (target_check_unused(o.target, &sb, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    if (S_ISBLK(sb.st_mode)) {
        dev_t rd = root_disk();
        if (rd && (rd == sb.st_rdev)) {
            cli_error("deploy: %s holds the running system's root filesystem; refusing to overwrite it", o.target);
            goto out;
        }
    }
    uint64_t tsize = 0;
    {
        int fd = open(o.target, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || target_size(fd, &sb, &tsize, &e)) {
            cli_error("deploy: %s: %s", o.target, fd < 0 ? strerror(errno) : e.msg);
            if (fd >= 0)
                close(fd);
            goto out;
        }
        close(fd);
    }
    if (S_ISBLK(sb.st_mode) && tsize < need) {
        cli_error("deploy: %s is too small: %" PRIu64 " bytes, the image needs %" PRIu64, o.target, tsize, need);
        goto out;
    }

    /* the partition table dump (a Clonezilla import), checked before anything is written */
    if (per_part && !table_torrent) {
        snprintf(url, sizeof url, "%s/partition-table", base);
        if (http_get(url, 1 << 20, 30, &ptb, &e) ||
            partition_restore_check((const char *)ptb.data, ptb.len, &m, tsize > need ? tsize : need, &e)) {
            cli_error("deploy: partition table: %s", e.msg);
            goto out;
        }
    }

    /* resume state: one file per torrent */
    int resumed = 0;
    unsigned have_pieces = 0, all_pieces = 0;
    for (size_t i = 0; i < nj; i++) {
        struct deploy_job *j = &jobs[i];
        char ihex[41];
        hex_of(j->mi->info_hash, 20, ihex);
        if (o.state)
            snprintf(j->state_path, sizeof j->state_path, "%s%s%s", o.state, nj > 1 ? "." : "",
                     nj > 1 ? j->mi->name : "");
        else if (S_ISBLK(sb.st_mode))
            snprintf(j->state_path, sizeof j->state_path, STATE_DIR "/%s.state", ihex);
        else
            snprintf(j->state_path, sizeof j->state_path, "%s%s%s.dsstate", o.target, nj > 1 ? "." : "",
                     nj > 1 ? j->mi->name : "");
        if (!o.state && S_ISBLK(sb.st_mode))
            mkdir(STATE_DIR, 0755);
        int sl = state_load(j->state_path, j->mi, &j->have, &e);
        if (sl < 0) {
            cli_error("deploy: %s", e.msg);
            goto out;
        }
        j->resuming = sl == 1;
        resumed += j->resuming;
        have_pieces += j->resuming ? j->have.count : 0;
        all_pieces += j->mi->num_pieces;
    }
    bool resuming = resumed > 0;

    char sz1[32], sz2[32];
    cli_format_bytes(tsize, sz1, sizeof sz1);
    cli_format_bytes(total_bytes, sz2, sizeof sz2);
    if (!o.yes) {
        if (!isatty(STDIN_FILENO)) {
            cli_error("deploy: this overwrites %s; stdin is not a terminal, so add --yes to confirm", o.target);
            goto out;
        }
        fprintf(stderr, "deploy: %s (%s) will be OVERWRITTEN with %s from %s (%s of data).\n"
                        "Type 'yes' to continue: ",
                o.target, sz1, m.source, base, sz2);
        char ans[16] = "";
        if (!fgets(ans, sizeof ans, stdin) || strcmp(ans, "yes\n")) {
            cli_error("deploy: not confirmed; nothing written");
            goto out;
        }
    }

    /* 3. wipe (fresh start) or resume; recreate the partition table from the dump */
    {
        int fd = open(o.target, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            cli_error("deploy: %s: %s", o.target, strerror(errno));
            goto out;
        }
        if (S_ISREG(sb.st_mode) && tsize < need) {
            if (ftruncate(fd, (off_t)need)) {
                cli_error("deploy: cannot extend %s to %" PRIu64 " bytes: %s", o.target, need, strerror(errno));
                close(fd);
                goto out;
            }
            tsize = need;
        }
        int w = 0;
        if (!resuming) {
            w |= wipe_range(fd, 0, WIPE_LEN, tsize, &e);
            for (size_t i = 0; (whole_disk || per_part) && !w && i < m.n_parts; i++)
                w |= wipe_range(fd, m.parts[i].start, WIPE_LEN, tsize, &e);
            if (!w && tsize > WIPE_LEN)
                w |= wipe_range(fd, tsize - WIPE_LEN, WIPE_LEN, tsize, &e);
            if (!w && fdatasync(fd))
                w = ds_errno(&e, "fdatasync");
        }
        close(fd);
        if (w) {
            cli_error("deploy: %s: %s", o.target, e.msg);
            goto out;
        }
        char f[200], t[PATH_MAX * 2 + 200];
        snprintf(f, sizeof f, "\"event\":\"%s\",\"pieces\":%u,\"num_pieces\":%u,\"torrents\":%zu",
                 resuming ? "resume" : "wiped", resuming ? have_pieces : 0, all_pieces, nj);
        if (resuming)
            snprintf(t, sizeof t, "resuming: %u of %u pieces already verified on %s (%s)", have_pieces, all_pieces,
                     o.target, nj == 1 ? jobs[0].state_path : "one state file per torrent");
        else
            snprintf(t, sizeof t, "wiped the partition table and partition heads of %s", o.target);
        event(&o, f, t);
        if (ptb.len) {
            if (partition_restore_apply(o.target, (const char *)ptb.data, ptb.len, &m, &e)) {
                cli_error("deploy: %s", e.msg);
                goto out;
            }
            snprintf(f, sizeof f, "\"event\":\"partition-table\",\"format\":\"%s\",\"partitions\":%zu", m.pt_format,
                     m.n_parts);
            snprintf(t, sizeof t, "partition table recreated from %s (%zu partitions)", m.pt_file, m.n_parts);
            event(&o, f, t);
        }
    }
    for (size_t i = 0; i < nj; i++) {
        int so = i == 0 ? store_open(&jobs[0].st, o.target, STORE_WRITE, jobs[0].mi, &jobs[0].map, &e)
                        : store_open_sibling(&jobs[i].st, &jobs[0].st, jobs[i].mi, &jobs[i].map, &e);
        if (so) {
            cli_error("deploy: %s", e.msg);
            goto out;
        }
    }

    /* 4-5. fetch and seed: every torrent at once, each from the server's seeder for it and the other machines */
    snprintf(announce, sizeof announce, "%s/announce", base);
    uint64_t expect = o.expect ? o.expect : server_expect;
    for (size_t i = 0; i < nj; i++) {
        struct deploy_job *j = &jobs[i];
        if (peer_port + j->index > 65535 || job_listen(o.listen, i, j->listen, sizeof j->listen)) {
            cli_error("deploy: no port for torrent %zu (--listen %s)", i + 1, o.listen);
            goto out;
        }
        snprintf(j->peer, sizeof j->peer, "%s:%u", host, (unsigned)(peer_port + j->index));
        j->peers[0] = j->peer;
        j->trackers[0] = announce;
        j->o = &o;
        j->base = base;
        j->expect = expect;
        if (bitfield_init(&j->snap, j->mi->num_pieces)) {
            cli_error("out of memory");
            goto out;
        }
        struct peer_run_opts *ro = &j->ro;
        ro->mi = j->mi;
        ro->store = &j->st;
        ro->dev = o.target;
        ro->role = j->role;
        ro->fetch = true;
        ro->listen = j->listen;
        ro->peers = j->peers;
        ro->n_peers = 1;
        ro->trackers = j->trackers;
        ro->n_trackers = 1;
        ro->recheck = j->resuming && o.recheck;
        ro->initial_have = j->resuming && !o.recheck ? &j->have : NULL;
        ro->allow = o.allow;
        ro->n_allow = o.n_allow;
        ro->secret_file = o.secret_file;
        ro->json = o.json;
        ro->quiet = o.quiet || nj > 1;   /* several torrents: one summary line instead of one bar each */
        ro->verbose = o.verbose;
        ro->seed_time = o.seed_time >= 0 ? o.seed_time : (expect ? 1800 : 0);
        ro->no_signals = true;
        ro->stop = &stop;
        ro->tick = tick;
        ro->ctx = j;
    }
    for (size_t i = 0; i < nj; i++) {
        if (pthread_create(&jobs[i].th, NULL, job_thread, &jobs[i])) {
            cli_error("deploy: cannot start a thread");
            atomic_store(&stop, true);
            goto out;
        }
        jobs[i].started = true;
    }
    {
        uint64_t t0 = net_now_ms(), last_t = t0, last_down = 0, last_line = 0;
        bool tty = isatty(STDERR_FILENO), interrupted = false;
        for (;;) {
            struct timespec to = {.tv_sec = 0, .tv_nsec = 250000000};
            if (sigtimedwait(&mask, NULL, &to) > 0) {
                interrupted = true;
                atomic_store(&stop, true);
            }
            size_t done = 0;
            bool failed = false;
            for (size_t i = 0; i < nj; i++)
                if (atomic_load(&jobs[i].finished)) {
                    done++;
                    failed |= !jobs[i].res.complete;
                }
            if (failed)
                atomic_store(&stop, true);   /* one torrent cannot finish: the disk will not be whole */
            uint64_t now = net_now_ms();
            if (nj > 1 && (o.json || !o.quiet) && now - last_line >= (o.json || tty ? 1000u : 5000u)) {
                print_progress(&o, jobs, nj, t0, now, &last_down, &last_t, tty && !o.json);
                last_line = now;
            }
            if (done == nj)
                break;
        }
        if (nj > 1 && tty && !o.json && !o.quiet)
            fputc('\n', stderr);
        (void)interrupted;
    }
    bool complete = true;
    unsigned got = 0;
    uint64_t down = 0, up = 0, machines = 0;
    const char *reason = jobs[0].res.reason;
    for (size_t i = 0; i < nj; i++) {
        pthread_join(jobs[i].th, NULL);
        jobs[i].started = false;
        complete &= jobs[i].res.complete;
        got += jobs[i].res.ss.pieces_have;
        down += jobs[i].res.ss.payload_down;
        up += jobs[i].res.ss.payload_up;
        if (i == 0 || jobs[i].last_machines < machines)
            machines = jobs[i].last_machines;
        if (jobs[i].prc && !rc)
            rc = jobs[i].prc;
    }
    if (!complete) {
        cli_error("deploy: not complete: %u of %u pieces verified on %s; rerun the same command to resume", got,
                  all_pieces, o.target);
        for (size_t i = 0; i < nj; i++)
            if (jobs[i].prc > 1) {
                rc = jobs[i].prc;
                goto out;
            }
        rc = 1;
        goto out;
    }
    rc = 1;
    for (size_t i = 0; i < nj; i++) {
        if (store_sync(&jobs[i].st, &e)) {
            cli_error("deploy: %s", e.msg);
            goto out;
        }
        /* record completion before the fix-ups, so an interruption there resumes straight into them */
        bitfield_set_all(&jobs[i].snap);
        if (state_save(jobs[i].state_path, jobs[i].mi->info_hash, &jobs[i].snap, &e))
            fprintf(stderr, "deploy: warning: %s\n", e.msg);
    }

    /* 6. fix-ups */
    bool relocated = false;
    if ((whole_disk || table_torrent) && !strcmp(m.label, "gpt") && tsize > m.source_size) {
        int g = gpt_relocate_fd(jobs[0].st.fd, m.sector_size ? m.sector_size : 512, tsize, &e);
        if (g < 0) {
            cli_error("deploy: moving the backup GPT to the end of %s: %s", o.target, e.msg);
            goto out;
        }
        relocated = g == 1;
    }
    if (store_sync(&jobs[0].st, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    if ((relocated || per_part) && jobs[0].st.is_blockdev)
        (void)ioctl(jobs[0].st.fd, BLKRRPART);   /* best effort: let the kernel see the new table now */
    for (size_t i = 0; i < nj; i++)
        if (unlink(jobs[i].state_path) && errno != ENOENT)
            fprintf(stderr, "deploy: warning: cannot remove %s: %s\n", jobs[i].state_path, strerror(errno));
    {
        char f[PATH_MAX + 600], t[PATH_MAX + 400];
        snprintf(f, sizeof f,
                 "\"ok\":true,\"reason\":\"%s\",\"target\":\"%s\",\"torrents\":%zu,\"pieces\":%u,\"downloaded\":%" PRIu64
                 ",\"uploaded\":%" PRIu64 ",\"resumed\":%s,\"gpt_relocated\":%s,\"machines_complete\":%" PRIu64
                 ",\"expect\":%" PRIu64,
                 reason, o.target, nj, all_pieces, down, up, resuming ? "true" : "false", relocated ? "true" : "false",
                 machines, expect);
        snprintf(t, sizeof t, "done: %s holds a verified copy (%u pieces%s%s)%s; %s", o.target, all_pieces,
                 nj > 1 ? " in " : "", nj > 1 ? "several torrents" : "",
                 relocated ? ", backup GPT moved to the end" : "", reason);
        event(&o, f, t);
    }
    rc = 0;
    if (o.then)
        rc = run_then(o.then);
out:
    atomic_store(&stop, true);
    for (size_t i = 0; jobs && i < nj; i++) {
        if (jobs[i].started)
            pthread_join(jobs[i].th, NULL);
        store_close(&jobs[i].st);
        bitfield_free(&jobs[i].snap);
        bitfield_free(&jobs[i].have);
        extent_map_free(&jobs[i].map);
        metainfo_free(jobs[i].mi);
        buf_free(&jobs[i].tb);
    }
    free(jobs);
    if (m_ok)
        manifest_free(&m);
    buf_free(&dj);
    buf_free(&mj);
    buf_free(&ptb);
    curl_global_cleanup();
    return rc;
}
