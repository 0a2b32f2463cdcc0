/* tracker_worker.c — one background thread running blocking libcurl announces, so the epoll loop never waits on
 * DNS, connect or a slow tracker. Hand-off: submit() stores a URL and signals the thread; the thread stores the
 * result and bumps an eventfd; take() collects it and drains the eventfd. stop() sets a flag that the libcurl
 * progress callback checks, so an in-flight request is aborted within about a second. */
#include "tracker_worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TW_MAX_BODY (1024 * 1024)   /* larger responses are aborted */
#define TW_MAX_REDIRS 3L
#define TW_USER_AGENT "diskswarm/0.1"

struct tracker_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int efd;
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];

    /* protected by mu */
    char *url;                   /* pending request, owned; NULL when none */
    bool have_result;
    struct tracker_result result;

    atomic_bool busy;            /* from submit() until take() returns the result */
    atomic_bool stopping;        /* read by the progress callback without the lock */

    /* worker thread only, during a transfer */
    uint8_t *body;
    size_t body_len, body_cap;
    bool too_large;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;   /* written once, under curl_once */

static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct tracker_worker *w = ud;
    size_t n = size * nmemb;   /* libcurl guarantees size == 1 */
    if (n > TW_MAX_BODY - w->body_len) {
        w->too_large = true;
        return 0;   /* CURLE_WRITE_ERROR */
    }
    if (w->body_len + n > w->body_cap) {
        size_t ncap = w->body_cap ? w->body_cap : 4096;
        while (ncap < w->body_len + n)
            ncap *= 2;
        if (ncap > TW_MAX_BODY)
            ncap = TW_MAX_BODY;
        uint8_t *p = realloc(w->body, ncap);
        if (!p)
            return 0;
        w->body = p;
        w->body_cap = ncap;
    }
    memcpy(w->body + w->body_len, data, n);
    w->body_len += n;
    return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct tracker_worker *w = ud;
    return atomic_load(&w->stopping) ? 1 : 0;
}

static void run_request(struct tracker_worker *w, const char *url, struct tracker_result *res)
{
    memset(res, 0, sizeof *res);
    w->body = NULL;
    w->body_len = w->body_cap = 0;
    w->too_large = false;
    w->errbuf[0] = '\0';

    CURLcode rc = curl_easy_setopt(w->curl, CURLOPT_URL, url);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(w->curl);
    long status = 0;
    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
    res->http_status = status;

    if (rc != CURLE_OK) {
        if (w->too_large || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(res->error, sizeof res->error, "tracker response larger than %d bytes", TW_MAX_BODY);
        else if (rc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&w->stopping))
            snprintf(res->error, sizeof res->error, "announce aborted: worker stopping");
        else
            snprintf(res->error, sizeof res->error, "%s", w->errbuf[0] ? w->errbuf : curl_easy_strerror(rc));
        free(w->body);
        w->body = NULL;
        return;
    }
    res->body = w->body;
    res->body_len = w->body_len;
    w->body = NULL;
    if (status != 200)
        snprintf(res->error, sizeof res->error, "tracker answered HTTP %ld", status);
    else if (res->body_len == 0)
        snprintf(res->error, sizeof res->error, "tracker sent an empty body");
    else
        res->ok = 1;
}

static void *worker_main(void *arg)
{
    struct tracker_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->url && !atomic_load(&w->stopping))
            pthread_cond_wait(&w->cv, &w->mu);
        if (atomic_load(&w->stopping))
            break;
        char *url = w->url;
        w->url = NULL;
        pthread_mutex_unlock(&w->mu);

        struct tracker_result res;
        run_request(w, url, &res);
        free(url);

        pthread_mutex_lock(&w->mu);
        w->result = res;
        w->have_result = true;
        uint64_t one = 1;
        /* The counter cannot overflow (one result at a time), so this write cannot fail for want of room. */
        ssize_t wr = write(w->efd, &one, sizeof one);
        (void)wr;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

#define SETOPT(opt, val)                                                   \
    do {                                                                   \
        CURLcode c_ = curl_easy_setopt(w->curl, opt, val);                 \
        if (c_ != CURLE_OK) {                                              \
            ds_errf(e, "libcurl option %s: %s", #opt, curl_easy_strerror(c_)); \
            goto fail;                                                     \
        }                                                                  \
    } while (0)

int tracker_worker_start(struct tracker_worker **out, long timeout_sec, struct ds_err *e)
{
    if (!out)
        return ds_errf(e, "tracker worker: no output");
    *out = NULL;
    if (timeout_sec < 1)
        return ds_errf(e, "tracker worker: timeout must be at least 1 second");
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return ds_errf(e, "libcurl init: %s", curl_easy_strerror(curl_init_rc));

    struct tracker_worker *w = calloc(1, sizeof *w);
    if (!w)
        return ds_errf(e, "tracker worker: out of memory");
    w->efd = -1;
    atomic_init(&w->busy, false);
    atomic_init(&w->stopping, false);
    bool mu_ok = false, cv_ok = false;
    if (pthread_mutex_init(&w->mu, NULL)) {
        ds_errf(e, "tracker worker: mutex init failed");
        goto fail;
    }
    mu_ok = true;
    if (pthread_cond_init(&w->cv, NULL)) {
        ds_errf(e, "tracker worker: condvar init failed");
        goto fail;
    }
    cv_ok = true;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        ds_errno(e, "tracker worker: eventfd");
        goto fail;
    }
    w->curl = curl_easy_init();
    if (!w->curl) {
        ds_errf(e, "tracker worker: curl_easy_init failed");
        goto fail;
    }

    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_HTTPGET, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500   /* 7.85.0 */
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SETOPT(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(CURLOPT_MAXREDIRS, TW_MAX_REDIRS);
    SETOPT(CURLOPT_TIMEOUT, timeout_sec);
    SETOPT(CURLOPT_CONNECTTIMEOUT, timeout_sec);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)TW_MAX_BODY);
    SETOPT(CURLOPT_USERAGENT, TW_USER_AGENT);
    SETOPT(CURLOPT_ERRORBUFFER, w->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, w);
    SETOPT(CURLOPT_NOPROGRESS, 0L);
    SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
    SETOPT(CURLOPT_XFERINFODATA, w);

    int prc = pthread_create(&w->thread, NULL, worker_main, w);
    if (prc) {
        errno = prc;
        ds_errno(e, "tracker worker: pthread_create");
        goto fail;
    }
    *out = w;
    return 0;

fail:
    if (w->curl)
        curl_easy_cleanup(w->curl);
    if (w->efd >= 0)
        close(w->efd);
    if (cv_ok)
        pthread_cond_destroy(&w->cv);
    if (mu_ok)
        pthread_mutex_destroy(&w->mu);
    free(w);
    return -1;
}

int tracker_worker_submit(struct tracker_worker *w, const char *url)
{
    if (!w || !url || !url[0])
        return -1;
    char *copy = strdup(url);
    if (!copy)
        return -1;
    pthread_mutex_lock(&w->mu);
    if (atomic_load(&w->busy) || atomic_load(&w->stopping)) {
        pthread_mutex_unlock(&w->mu);
        free(copy);
        return -1;
    }
    w->url = copy;
    atomic_store(&w->busy, true);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

bool tracker_worker_busy(const struct tracker_worker *w)
{
    return w && atomic_load(&w->busy);
}

int tracker_worker_fd(const struct tracker_worker *w)
{
    return w ? w->efd : -1;
}

int tracker_worker_take(struct tracker_worker *w, struct tracker_result *res)
{
    if (!w || !res)
        return 0;
    pthread_mutex_lock(&w->mu);
    if (!w->have_result) {
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    *res = w->result;
    memset(&w->result, 0, sizeof w->result);
    w->have_result = false;
    uint64_t cnt;
    ssize_t rd = read(w->efd, &cnt, sizeof cnt);   /* drain; EAGAIN is fine */
    (void)rd;
    atomic_store(&w->busy, false);
    pthread_mutex_unlock(&w->mu);
    return 1;
}

void tracker_worker_stop(struct tracker_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stopping, true);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);

    free(w->url);
    free(w->result.body);
    curl_easy_cleanup(w->curl);
    close(w->efd);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
