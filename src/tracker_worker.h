/* tracker_worker.h — runs HTTP announces (libcurl) on a background thread so the event loop never blocks.
 * The loop submits a URL and polls an fd that becomes readable when a result is ready. One request at a time. */
#ifndef DS_TRACKER_WORKER_H
#define DS_TRACKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct tracker_worker;

struct tracker_result {
    int ok;                 /* 1: HTTP 200 and a body; 0: failure (error holds why) */
    long http_status;
    uint8_t *body;          /* malloc'd, may be NULL */
    size_t body_len;
    char error[256];
};

int tracker_worker_start(struct tracker_worker **out, long timeout_sec, struct ds_err *e);
/* Returns -1 when a request is already in flight. Takes a copy of url. */
int tracker_worker_submit(struct tracker_worker *w, const char *url);
bool tracker_worker_busy(const struct tracker_worker *w);
int tracker_worker_fd(const struct tracker_worker *w);     /* readable when a result is ready */
/* Non-blocking: 1 and *res filled (caller frees res->body) when a result is ready, 0 otherwise. */
int tracker_worker_take(struct tracker_worker *w, struct tracker_result *res);
void tracker_worker_stop(struct tracker_worker *w);        /* joins the thread; aborts a request in flight */

#endif
