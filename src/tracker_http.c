/* tracker_http.c — see tracker_http.h. */
#include "tracker_http.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dashboard.h"
#include "net.h"
#include "tracker_client.h"
#include "tracker_udp.h"

#define MAX_TARGET (TS_MAX_QUERY + 1024)

struct tracker_http {
    struct MHD_Daemon *d;
    struct tracker_state *st;
    pthread_mutex_t *mu;
    bool allow_ip_param;
    tracker_http_extra_fn extra;
    void *extra_ctx;
    uint16_t port;
    atomic_uint_fast64_t requests;
};

/* The raw request target, saved before libmicrohttpd decodes the query. */
struct req {
    bool too_long;
    bool headers_seen;              /* the handler's first call only marks this: answering then would be an
                                       "early response" after which libmicrohttpd closes the connection */
    size_t len;
    char target[];
};

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *con)
{
    (void)cls;
    (void)con;
    size_t n = strlen(uri);
    bool too_long = n > MAX_TARGET;
    if (too_long)
        n = 0;
    struct req *r = malloc(sizeof *r + n + 1);
    if (!r)
        return NULL;
    r->too_long = too_long;
    r->headers_seen = false;
    r->len = n;
    memcpy(r->target, uri, n);
    r->target[n] = 0;
    return r;
}

static void completed(void *cls, struct MHD_Connection *con, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con;
    (void)toe;
    free(*req_cls);
    *req_cls = NULL;
}

static enum MHD_Result send_buf(struct MHD_Connection *con, unsigned status, const char *ctype, struct buf *b)
{
    size_t len = b->len;
    void *data = b->data;
    if (!data) {
        data = malloc(1);
        if (!data)
            return MHD_NO;
    }
    b->data = NULL;
    b->len = b->cap = b->off = 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(con, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *con, unsigned status, const char *text)
{
    struct buf b = {0};
    buf_put(&b, text, strlen(text));
    return send_buf(con, status, "text/plain; charset=utf-8", &b);
}

static bool path_is(const char *path, size_t plen, const char *want)
{
    return plen == strlen(want) && !memcmp(path, want, plen);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **req_cls)
{
    (void)url;
    (void)version;
    (void)upload_data;
    struct tracker_http *h = cls;
    struct req *r = *req_cls;
    if (!r)
        return MHD_NO;
    if (!r->headers_seen) {
        r->headers_seen = true;
        return MHD_YES;
    }
    if (*upload_data_size) {            /* a body: not ours to accept, discarded */
        *upload_data_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&h->requests, 1);
    bool head = !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (strcmp(method, MHD_HTTP_METHOD_GET) && !head)
        return send_text(con, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (r->too_long) {
        struct buf b = {0};
        ts_encode_failure("request too long", &b);
        return send_buf(con, MHD_HTTP_BAD_REQUEST, "text/plain", &b);
    }
    const char *q = memchr(r->target, '?', r->len);
    size_t plen = q ? (size_t)(q - r->target) : r->len;
    const char *query = q ? q + 1 : "";
    size_t qlen = q ? r->len - plen - 1 : 0;
    const char *path = r->target;
    /* absolute-form targets: skip scheme://host */
    if (plen > 7 && (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8))) {
        const char *slash = memchr(path + 8, '/', plen - 8);
        if (!slash)
            slash = path + plen;
        plen -= (size_t)(slash - path);
        path = slash;
    }

    uint64_t now = net_now_ms();
    struct buf b = {0};
    if (path_is(path, plen, "/announce") || path_is(path, plen, "/scrape")) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct ts_addr src;
        memset(&src, 0, sizeof src);
        if (ci && ci->client_addr)
            tracker_addr_from_sa(ci->client_addr, &src);
        if (!src.family)
            return send_text(con, MHD_HTTP_BAD_REQUEST, "no client address\n");
        int status;
        pthread_mutex_lock(h->mu);
        if (path[1] == 'a')
            status = ts_http_announce(h->st, query, qlen, &src, h->allow_ip_param || tracker_addr_is_loopback(&src),
                                      now, &b);
        else
            status = ts_http_scrape(h->st, query, qlen, &b);
        pthread_mutex_unlock(h->mu);
        return send_buf(con, (unsigned)status, "text/plain", &b);
    }
    if (path_is(path, plen, "/status.json")) {
        pthread_mutex_lock(h->mu);
        int rc = ts_status_json(h->st, now, &b);
        pthread_mutex_unlock(h->mu);
        if (rc) {
            buf_free(&b);
            return send_text(con, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        return send_buf(con, MHD_HTTP_OK, "application/json", &b);
    }
    if (path_is(path, plen, "/") || path_is(path, plen, "/index.html")) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(dashboard_html_len, (void *)dashboard_html,
                                                                     MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                "connect-src 'self'; img-src data:");
        enum MHD_Result ret = MHD_queue_response(con, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (h->extra) {
        struct tracker_http_reply xr = {.status = MHD_HTTP_OK, .content_type = "application/octet-stream"};
        if (h->extra(h->extra_ctx, path, plen, query, qlen, &xr))
            return send_buf(con, xr.status, xr.content_type, &xr.body);
        buf_free(&xr.body);
    }
    return send_text(con, MHD_HTTP_NOT_FOUND, "not found\n");
}

int tracker_http_start(struct tracker_http **out, struct tracker_state *st, pthread_mutex_t *mu,
                       const struct tracker_http_config *cfg, struct ds_err *e)
{
    struct peer_addr pa;
    if (peer_addr_parse(cfg->listen, &pa, e))
        return -1;
    struct tracker_http *h = calloc(1, sizeof *h);
    if (!h)
        return ds_errf(e, "out of memory");
    h->st = st;
    h->mu = mu;
    h->allow_ip_param = cfg->allow_ip_param;
    h->extra = cfg->extra_handler;
    h->extra_ctx = cfg->extra_ctx;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (pa.ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&pa.ss,
                            MHD_OPTION_URI_LOG_CALLBACK, uri_log, (void *)h,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, (void *)h,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections ? cfg->max_connections : 1000),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->timeout_s ? cfg->timeout_s : 30),
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(2 * MAX_TARGET + 16384),
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                            MHD_OPTION_END);
    if (!h->d) {
        free(h);
        return ds_errf(e, "cannot listen for HTTP on %s (address in use or not local?)", cfg->listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    *out = h;
    return 0;
}

uint16_t tracker_http_port(const struct tracker_http *h) { return h->port; }
uint64_t tracker_http_requests(const struct tracker_http *h)
{
    return atomic_load(&((struct tracker_http *)h)->requests);
}

void tracker_http_stop(struct tracker_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}
