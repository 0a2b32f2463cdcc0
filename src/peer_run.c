/* peer_run.c — see peer_run.h. */
#include "peer_run.h"

#include <errno.h>
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
#include "net.h"
#include "piece_check.h"
#include "progress.h"
#include "swarm_auth.h"
#include "tracker_client.h"

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
        cli_error("checking %s: %s", st->path ? st->path : "source", e.msg);
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

int peer_run_read_secret(const char *path, uint8_t *buf, size_t cap, size_t *len)
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

int peer_run_set_trackers(struct metainfo *mi, const char *const *urls, size_t n)
{
    char **t = calloc(n ? n : 1, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!(t[i] = strdup(urls[i]))) {
            for (size_t j = 0; j < i; j++)
                free(t[j]);
            free(t);
            return -1;
        }
    for (size_t i = 0; i < mi->num_trackers; i++)
        free(mi->trackers[i]);
    free(mi->trackers);
    mi->trackers = t;
    mi->num_trackers = n;
    return 0;
}

int peer_run(const struct peer_run_opts *o, struct peer_run_result *res)
{
    uint8_t secret[4096];
    size_t secret_len = 0;
    struct ds_err e;
    struct metainfo *mi = o->mi;
    struct store *st = o->store;
    struct session s;
    struct net n;
    struct announcer an;
    struct bitfield resumed = {0};
    bool s_ok = false, n_ok = false, an_ok = false;
    int rc = 1;
    int sfd = -1;
    sigset_t mask;
    struct peer_run_result rr;
    memset(&rr, 0, sizeof rr);
    snprintf(rr.reason, sizeof rr.reason, "error");

    /* Block the stop signals before any thread exists (the tracker worker inherits the mask), so they are
     * only ever read from the signalfd and never kill the process with default handling. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    if (!o->no_signals)
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (o->n_trackers && peer_run_set_trackers(mi, o->trackers, o->n_trackers)) {
        cli_error("out of memory");
        goto out;
    }

    uint64_t now = net_now_ms();
    struct progress pg;
    progress_init(&pg, o->role ? o->role : (o->fetch ? "fetch" : "seed"), o->json, o->quiet, now);

    if (!o->fetch && o->verify && verify_source(st, mi, &pg))
        goto out;
    bool have_initial = false;
    if (o->fetch && o->recheck) {
        if (check_pieces(st, mi, &pg, &resumed))
            goto out;
        have_initial = true;
        char f[96], t[160];
        snprintf(f, sizeof f, "\"pieces\":%u,\"num_pieces\":%u", resumed.count, mi->num_pieces);
        snprintf(t, sizeof t, "%s: resuming: %u of %u pieces already on %s", pg.role, resumed.count,
                 mi->num_pieces, o->dev);
        progress_event(&pg, "resume", f, t);
    } else if (o->fetch && o->initial_have) {
        if (bitfield_init(&resumed, mi->num_pieces)) {
            cli_error("out of memory");
            goto out;
        }
        for (uint32_t i = 0; i < mi->num_pieces && i < o->initial_have->nbits; i++)
            if (bitfield_get(o->initial_have, i))
                bitfield_set(&resumed, i);
        have_initial = true;
    }

    struct session_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mi = mi;
    cfg.store = st;
    memcpy(cfg.peer_id, "-DS0100-", 8);
    if (getrandom(cfg.peer_id + 8, 12, 0) != 12) {
        cli_error("cannot get random bytes for the peer id");
        goto out;
    }
    cfg.have_all = !o->fetch;
    cfg.super_seed = !o->fetch && o->super_seed;
    cfg.initial_have = have_initial ? &resumed : NULL;
    cfg.allow = o->allow;
    cfg.n_allow = o->n_allow;
    if (o->secret_file) {
        if (peer_run_read_secret(o->secret_file, secret, sizeof secret, &secret_len))
            goto out;
        cfg.secret = secret;
        cfg.secret_len = secret_len;
        if (getrandom(cfg.nonce_key, sizeof cfg.nonce_key, 0) != (ssize_t)sizeof cfg.nonce_key) {
            cli_error("cannot get random bytes");
            goto out;
        }
    }
    cfg.zpiece = !o->no_wire_compress;
    cfg.zcache_bytes = o->zcache_mib < 0 ? 0 : (size_t)(o->zcache_mib ? o->zcache_mib : ZP_DEFAULT_CACHE_MIB) << 20;
    cfg.zlevel = o->zlevel < 0 ? 0 : o->zlevel ? o->zlevel : ZP_DEFAULT_LEVEL;
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

    struct run_state rs = {0};
    if (!o->no_signals) {
        sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0 || net_watch(&n, sfd, on_signal, &rs, &e)) {
            cli_error("cannot watch signals");
            goto out;
        }
    }

    uint64_t t0 = net_now_ms(), last_tick = t0, t_complete = o->fetch ? 0 : t0;
    bool completed = !o->fetch;
    const char *end_reason = NULL;
    const char *tick_reason = NULL;
    /* The first round does not wait: the --peer candidates are dialled and the first announce is submitted
     * at once instead of after a 200 ms idle poll (that was a fifth of a deployment's start-up). */
    if (an_ok)
        announcer_tick(&an, now);
    int wait_ms = 0;
    /* bounded by the exit conditions below; each round waits at most 200 ms */
    for (;; wait_ms = 200) {
        if (net_poll(&n, wait_ms, &e)) {
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
            if (o->tick)
                tick_reason = o->tick(o->ctx, &s, completed, now);
        }
        if (an_ok)
            announcer_tick(&an, now);
        if (!completed && session_complete(&s)) {
            completed = true;
            t_complete = now;
            if (store_sync(st, &e)) {
                cli_error("%s", e.msg);
                goto out;
            }
            struct session_stats ss;
            session_stats(&s, &ss);
            progress_update(&pg, &ss, now);
            double secs = (double)(now - t0) / 1000.0;
            rr.seconds_to_complete_ms = now - t0;
            char f[160], t[200];
            snprintf(f, sizeof f, "\"seconds\":%.2f,\"bytes\":%" PRIu64 ",\"pieces\":%u", secs, ss.total_bytes,
                     ss.num_pieces);
            snprintf(t, sizeof t, "%s: complete, all %u pieces verified on %s in %.1f s", pg.role, ss.num_pieces,
                     o->dev, secs);
            progress_event(&pg, "complete", f, t);
            if (o->on_complete && o->on_complete(o->ctx, &s)) {
                progress_clear(&pg);
                goto out;
            }
            if (an_ok)
                announcer_completed(&an);
        }
        if (rs.stop) {
            end_reason = "signal";
            break;
        }
        if (o->stop && atomic_load(o->stop)) {
            end_reason = "stopped";
            break;
        }
        if (completed) {
            uint64_t since = now - t_complete;
            uint32_t done = (uint32_t)s.n_complete_ids + (o->fetch ? 1u : 0u);
            if (tick_reason) {
                end_reason = tick_reason;
                break;
            }
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
        char f[768], t[320], zf[400];
        zpiece_json(s.z, ss.payload_down, ss.payload_up, zf, sizeof zf);
        snprintf(f, sizeof f,
                 "\"ok\":%s,\"reason\":\"%s\",\"pieces\":%u,\"num_pieces\":%u,\"downloaded\":%" PRIu64
                 ",\"uploaded\":%" PRIu64 ",\"hash_failures\":%u,\"peers_complete\":%u%s",
                 ok ? "true" : "false", end_reason, ss.pieces_have, ss.num_pieces, ss.payload_down, ss.payload_up,
                 ss.hash_failures, (unsigned)s.n_complete_ids, zf);
        snprintf(t, sizeof t, "%s: stopping (%s): %u/%u pieces, uploaded %" PRIu64 " bytes", pg.role, end_reason,
                 ss.pieces_have, ss.num_pieces, ss.payload_up);
        progress_event(&pg, "done", f, t);
        if (!ok)
            cli_error("interrupted before completion: %u of %u pieces verified on %s", ss.pieces_have,
                      ss.num_pieces, o->dev);
        rc = ok ? 0 : 1;
        rr.complete = session_complete(&s);
        rr.ss = ss;
        snprintf(rr.reason, sizeof rr.reason, "%s", end_reason);
    }
out:
    if (s_ok && rc != 0 && !rr.complete) {
        session_stats(&s, &rr.ss);
        rr.complete = session_complete(&s);
    }
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
    if (res)
        *res = rr;
    return rc;
}
