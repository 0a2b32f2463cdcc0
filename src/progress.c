#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void progress_init(struct progress *pg, const char *role, bool json, bool quiet, uint64_t now)
{
    memset(pg, 0, sizeof *pg);
    pg->role = role;
    pg->json = json;
    pg->quiet = quiet;
    pg->tty = !json && isatty(STDERR_FILENO);
    pg->t_start = pg->t_last = now;
}

void progress_clear(struct progress *pg)
{
    if (pg->drawn) {
        fputs("\r\033[K", stderr);
        pg->drawn = 0;
    }
}

void progress_update(struct progress *pg, const struct session_stats *st, uint64_t now)
{
    double dt = (double)(now - pg->t_last) / 1000.0;
    if (dt > 0.05) {
        double down = (double)(st->payload_down - pg->last_down) / dt;
        double up = (double)(st->payload_up - pg->last_up) / dt;
        /* smooth over ~3 samples so the ETA does not jump */
        pg->rate_down = pg->t_last == pg->t_start ? down : 0.6 * pg->rate_down + 0.4 * down;
        pg->rate_up = pg->t_last == pg->t_start ? up : 0.6 * pg->rate_up + 0.4 * up;
        pg->last_down = st->payload_down;
        pg->last_up = st->payload_up;
        pg->t_last = now;
    }
    double pct = st->total_bytes ? 100.0 * (double)st->bytes_have / (double)st->total_bytes : 100.0;
    uint64_t left = st->total_bytes - st->bytes_have;
    double eta = pg->rate_down > 1.0 ? (double)left / pg->rate_down : -1.0;
    double elapsed = (double)(now - pg->t_start) / 1000.0;
    if (pg->json) {
        printf("{\"type\":\"progress\",\"role\":\"%s\",\"t\":%.1f,\"pieces\":%u,\"num_pieces\":%u,\"bytes\":%llu,"
               "\"total\":%llu,\"percent\":%.2f,\"down_bps\":%.0f,\"up_bps\":%.0f,\"downloaded\":%llu,"
               "\"uploaded\":%llu,\"peers\":%u,\"seeds\":%u,\"hash_failures\":%u,\"eta\":%.0f}\n",
               pg->role, elapsed, st->pieces_have, st->num_pieces, (unsigned long long)st->bytes_have,
               (unsigned long long)st->total_bytes, pct, pg->rate_down, pg->rate_up,
               (unsigned long long)st->payload_down, (unsigned long long)st->payload_up, st->peers, st->seeds,
               st->hash_failures, eta);
        fflush(stdout);
        return;
    }
    if (pg->quiet)
        return;
    char have[32], total[32], rd[32], ru[32], etas[32];
    cli_format_bytes(st->bytes_have, have, sizeof have);
    cli_format_bytes(st->total_bytes, total, sizeof total);
    cli_format_bytes((uint64_t)pg->rate_down, rd, sizeof rd);
    cli_format_bytes((uint64_t)pg->rate_up, ru, sizeof ru);
    if (eta < 0 || st->bytes_have == st->total_bytes)
        snprintf(etas, sizeof etas, "--");
    else
        snprintf(etas, sizeof etas, "%d:%02d", (int)eta / 60, (int)eta % 60);
    if (pg->tty) {
        char bar[31];
        int fill = (int)(pct * 30.0 / 100.0);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %5.1f%% %s/%s  down %s/s  up %s/s  peers %u  ETA %s", pg->role, bar, pct,
                have, total, rd, ru, st->peers, etas);
        fflush(stderr);
        pg->drawn = 1;
    } else if (now - pg->t_last_line >= 5000 || pg->t_last_line == 0) {
        fprintf(stderr, "%s: %5.1f%% %s/%s down %s/s up %s/s peers %u ETA %s\n", pg->role, pct, have, total, rd, ru,
                st->peers, etas);
        pg->t_last_line = now;
    }
}

void progress_event(struct progress *pg, const char *type, const char *json_fields, const char *text)
{
    if (pg->json) {
        printf("{\"type\":\"%s\",\"role\":\"%s\"%s%s}\n", type, pg->role, json_fields && *json_fields ? "," : "",
               json_fields ? json_fields : "");
        fflush(stdout);
        return;
    }
    if (pg->quiet || !text)
        return;
    progress_clear(pg);
    fprintf(stderr, "%s\n", text);
}
