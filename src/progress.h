/* progress.h — what a running peer tells its user: a live bar on a TTY (stderr), a plain line every few
 * seconds otherwise, or one JSON object per line on stdout with --json (for scripts and dashboards). */
#ifndef DS_PROGRESS_H
#define DS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "session.h"

struct progress {
    bool json, quiet, tty;
    const char *role;          /* "fetch" / "seed" */
    uint64_t t_start, t_last, t_last_line;
    uint64_t last_down, last_up;
    double rate_down, rate_up; /* bytes/s, smoothed */
    int drawn;                 /* a bar is on screen */
};

void progress_init(struct progress *pg, const char *role, bool json, bool quiet, uint64_t now);
/* Once a second or so. */
void progress_update(struct progress *pg, const struct session_stats *st, uint64_t now);
/* A one-off event: JSON {"type":type, <json_fields>} or, for humans, the text line. json_fields may be "". */
void progress_event(struct progress *pg, const char *type, const char *json_fields, const char *text);
/* Clear the bar line before other output. */
void progress_clear(struct progress *pg);

#endif
