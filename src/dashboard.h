/* dashboard.h — the tracker's live dashboard: one self-contained HTML page (inline CSS and JS, no external
 * resources) that polls /status.json every second and shows a row per machine (name/address, progress bar,
 * percent, rate, ETA, state), the swarm's totals and a piece-availability strip. */
#ifndef DS_DASHBOARD_H
#define DS_DASHBOARD_H

#include <stddef.h>

extern const char dashboard_html[];
extern const size_t dashboard_html_len;

#endif
