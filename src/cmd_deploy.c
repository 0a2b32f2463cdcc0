/* cmd_deploy.c — `diskswarm deploy http://SERVER:PORT --to TARGET`: everything a machine does to receive an
 * image from `diskswarm serve`:
 *   1. GET /deploy.json, /manifest.json and the torrent (bounded sizes, timeouts);
 *   2. check the target: a block device or regular file, not mounted / swap / holding `/`, big enough;
 *      ask for confirmation (a TTY) unless --yes; refuse without --yes when stdin is not a TTY;
 *   3. unless resuming: wipe the first MiB of the target, of every partition in the manifest and the last MiB,
 *      so a half-written target never looks like a valid disk;
 *   4. fetch onto the target, announcing to the server's tracker and dialling the server's seeder; every
 *      ~2 s the verified pieces are fdatasync'ed and recorded in the state file (so a rerun after kill -9 or
 *      power loss resumes without fetching them again);
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
#include "peer_run.h"
#include "store.h"
#include "target_check.h"

#define MAX_ALLOW 64
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
    struct cidr allow[MAX_ALLOW];
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

/* ---- the run ---- */

struct deploy_ctx {
    const struct deploy_opts *o;
    const char *base;
    const char *state_path;
    struct store *st;
    const struct metainfo *mi;
    struct bitfield snap;
    uint64_t expect;
    uint64_t last_state, last_poll;
    bool state_complete;
    unsigned poll_fails;
    uint64_t last_machines;
};

static const char *tick(void *ctx, struct session *s, bool completed, uint64_t now)
{
    struct deploy_ctx *d = ctx;
    struct ds_err e;
    if (d->state_path && !d->state_complete && now - d->last_state >= 2000) {
        d->last_state = now;
        /* snapshot first, then make it durable: the file never lists a piece that is not on stable storage */
        memcpy(d->snap.bits, s->have.bits, bitfield_bytes(s->have.nbits));
        d->snap.count = s->have.count;
        if (store_sync(d->st, &e) || state_save(d->state_path, d->mi->info_hash, &d->snap, &e))
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
    uint64_t v;
    while ((c = getopt_long(argc, argv, "hy", lo, NULL)) != -1) {
        switch (c) {
        case O_TO: o->target = optarg; break;
        case 'y':
        case O_YES: o->yes = true; break;
        case O_SEEDTIME:
            if (cli_parse_uint(optarg, 10u * 365 * 86400, &v)) {
                cli_error("deploy: --seed-time wants seconds, not '%s'", optarg);
                return EXIT_USAGE;
            }
            o->seed_time = (int64_t)v;
            break;
        case O_EXPECT:
            if (cli_parse_uint(optarg, 1000000, &o->expect) || !o->expect) {
                cli_error("deploy: --expect wants a positive number of machines");
                return EXIT_USAGE;
            }
            break;
        case O_THEN: o->then = optarg; break;
        case O_STATE: o->state = optarg; break;
        case O_RECHECK: o->recheck = true; break;
        case O_JSON: o->json = true; break;
        case O_QUIET: o->quiet = true; break;
        case O_VERBOSE: o->verbose = true; break;
        case O_SECRET: o->secret_file = optarg; break;
        case O_LISTEN: o->listen = optarg; break;
        case O_ALLOW: {
            struct ds_err e;
            if (o->n_allow >= MAX_ALLOW || cidr_parse(optarg, &o->allow[o->n_allow], &e)) {
                cli_error("deploy: bad or too many --allow '%s'", optarg);
                return EXIT_USAGE;
            }
            o->n_allow++;
            break;
        }
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
    char base[1024], url[1200], host[300], peer[340], announce[1200], state_path[PATH_MAX];
    snprintf(base, sizeof base, "%s", o.url);
    while (strlen(base) > 8 && base[strlen(base) - 1] == '/')
        base[strlen(base) - 1] = 0;
    url_host(base, host, sizeof host);
    struct buf dj = {0}, mj = {0}, tb = {0};
    struct manifest m;
    memset(&m, 0, sizeof m);
    bool m_ok = false;
    struct metainfo *mi = NULL;
    struct extent_map map = {0};
    struct store st = {.fd = -1};
    struct bitfield have = {0};
    struct deploy_ctx dc;
    memset(&dc, 0, sizeof dc);

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
    const struct manifest_torrent *mt = NULL;
    if (m.n_torrents == 1)
        mt = &m.torrents[0];
    for (size_t i = 0; !mt && i < m.n_torrents; i++)
        if (!strcmp(m.torrents[i].role, "disk"))
            mt = &m.torrents[i];
    if (!mt) {
        cli_error("deploy: the server's image is in %s mode (%zu torrents); deploy handles whole-disk and single "
                  "images: capture the disk without --per-partition",
                  m.mode, m.n_torrents);
        goto out;
    }
    snprintf(url, sizeof url, "%s/torrents/%s", base, mt->file);
    if (http_get(url, DEPLOY_MAX_DOC, 60, &tb, &e) || metainfo_parse(tb.data, tb.len, &mi, &e) ||
        extent_map_from_metainfo(mi, &map, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    char ihex[41];
    hex_of(mi->info_hash, 20, ihex);
    if (strcmp(ihex, mt->info_hash)) {
        cli_error("deploy: the torrent's info-hash %s is not the manifest's %s", ihex, mt->info_hash);
        goto out;
    }
    bool whole_disk = !strcmp(m.kind, "disk") && !strcmp(mt->role, "disk");
    uint64_t need = map.dev_end;
    if (whole_disk && m.source_size > need)
        need = m.source_size;

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

    /* resume state */
    if (o.state)
        snprintf(state_path, sizeof state_path, "%s", o.state);
    else if (S_ISBLK(sb.st_mode))
        snprintf(state_path, sizeof state_path, STATE_DIR "/%s.state", ihex);
    else
        snprintf(state_path, sizeof state_path, "%s.dsstate", o.target);
    if (!o.state && S_ISBLK(sb.st_mode))
        mkdir(STATE_DIR, 0755);
    int sl = state_load(state_path, mi, &have, &e);
    if (sl < 0) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    bool resuming = sl == 1;

    char sz1[32], sz2[32];
    cli_format_bytes(tsize, sz1, sizeof sz1);
    cli_format_bytes(mi->total_length, sz2, sizeof sz2);
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

    /* 3. wipe (fresh start) or resume */
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
            for (size_t i = 0; whole_disk && !w && i < m.n_parts; i++)
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
        snprintf(f, sizeof f, "\"event\":\"%s\",\"pieces\":%u,\"num_pieces\":%u", resuming ? "resume" : "wiped",
                 resuming ? have.count : 0, mi->num_pieces);
        if (resuming)
            snprintf(t, sizeof t, "resuming: %u of %u pieces already verified on %s (%s)", have.count,
                     mi->num_pieces, o.target, state_path);
        else
            snprintf(t, sizeof t, "wiped the partition table and partition heads of %s", o.target);
        event(&o, f, t);
    }
    if (store_open(&st, o.target, STORE_WRITE, mi, &map, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }

    /* 4-5. fetch and seed */
    snprintf(announce, sizeof announce, "%s/announce", base);
    snprintf(peer, sizeof peer, "%s:%u", host, (unsigned)peer_port);
    const char *peers[1] = {peer};
    const char *trackers[1] = {announce};
    dc.o = &o;
    dc.base = base;
    dc.state_path = state_path;
    dc.st = &st;
    dc.mi = mi;
    dc.expect = o.expect ? o.expect : server_expect;
    if (bitfield_init(&dc.snap, mi->num_pieces)) {
        cli_error("out of memory");
        goto out;
    }
    struct peer_run_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.mi = mi;
    ro.store = &st;
    ro.dev = o.target;
    ro.role = "deploy";
    ro.fetch = true;
    ro.listen = o.listen;
    ro.peers = peers;
    ro.n_peers = 1;
    ro.trackers = trackers;
    ro.n_trackers = 1;
    ro.recheck = resuming && o.recheck;
    ro.initial_have = resuming && !o.recheck ? &have : NULL;
    ro.allow = o.allow;
    ro.n_allow = o.n_allow;
    ro.secret_file = o.secret_file;
    ro.json = o.json;
    ro.quiet = o.quiet;
    ro.verbose = o.verbose;
    ro.seed_time = o.seed_time >= 0 ? o.seed_time : (dc.expect ? 1800 : 0);
    ro.tick = tick;
    ro.ctx = &dc;
    struct peer_run_result res;
    int prc = peer_run(&ro, &res);
    if (!res.complete) {
        cli_error("deploy: not complete: %u of %u pieces verified on %s; rerun the same command to resume",
                  res.ss.pieces_have, res.ss.num_pieces, o.target);
        rc = prc ? prc : 1;
        goto out;
    }
    if (store_sync(&st, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    /* record completion before the fix-ups, so an interruption there resumes straight into them */
    bitfield_set_all(&dc.snap);
    if (state_save(state_path, mi->info_hash, &dc.snap, &e))
        fprintf(stderr, "deploy: warning: %s\n", e.msg);

    /* 6. fix-ups */
    bool relocated = false;
    if (whole_disk && !strcmp(m.label, "gpt") && tsize > m.source_size) {
        int g = gpt_relocate_fd(st.fd, m.sector_size ? m.sector_size : 512, tsize, &e);
        if (g < 0) {
            cli_error("deploy: moving the backup GPT to the end of %s: %s", o.target, e.msg);
            goto out;
        }
        relocated = g == 1;
    }
    if (store_sync(&st, &e)) {
        cli_error("deploy: %s", e.msg);
        goto out;
    }
    if (relocated && st.is_blockdev)
        (void)ioctl(st.fd, BLKRRPART);   /* best effort: let the kernel see the new table now */
    if (unlink(state_path) && errno != ENOENT)
        fprintf(stderr, "deploy: warning: cannot remove %s: %s\n", state_path, strerror(errno));
    {
        char f[PATH_MAX + 600], t[PATH_MAX + 400];
        snprintf(f, sizeof f,
                 "\"ok\":true,\"reason\":\"%s\",\"target\":\"%s\",\"pieces\":%u,\"downloaded\":%" PRIu64
                 ",\"uploaded\":%" PRIu64 ",\"resumed\":%s,\"gpt_relocated\":%s,\"machines_complete\":%" PRIu64
                 ",\"expect\":%" PRIu64,
                 res.reason, o.target, res.ss.num_pieces, res.ss.payload_down, res.ss.payload_up,
                 resuming ? "true" : "false", relocated ? "true" : "false", dc.last_machines, dc.expect);
        snprintf(t, sizeof t, "done: %s holds a verified copy (%u pieces)%s; %s", o.target, res.ss.num_pieces,
                 relocated ? ", backup GPT moved to the end" : "", res.reason);
        event(&o, f, t);
    }
    rc = 0;
    if (o.then)
        rc = run_then(o.then);
out:
    store_close(&st);
    bitfield_free(&dc.snap);
    bitfield_free(&have);
    extent_map_free(&map);
    metainfo_free(mi);
    if (m_ok)
        manifest_free(&m);
    buf_free(&dj);
    buf_free(&mj);
    buf_free(&tb);
    curl_global_cleanup();
    return rc;
}
