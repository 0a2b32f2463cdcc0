/* tracker_loadgen.c — load generator for `diskswarm tracker` (bench/tracker_load.sh). Loopback only.
 *
 *   tracker_loadgen http HOST PORT IH_HEX PEERS THREADS SECONDS MAXREQ
 *       THREADS keep-alive connections announce in a loop (peer ids cycle over PEERS simulated peers, so the
 *       table holds PEERS peers) for SECONDS or MAXREQ requests in all; prints requests/s.
 *   tracker_loadgen udp HOST PORT IH_HEX PEERS THREADS SECONDS MAXREQ
 *       the same over BEP 15 (one connect per thread, then announces).
 * Output: one line "proto=... requests=N seconds=S rate=R errors=E". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdbool.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *host;
static int port, npeers, seconds;
static long maxreq;
static uint8_t ih[20];
static atomic_long done, errors;
static double t_end;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        perror("connect");
        exit(1);
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static bool more(void) { return now() < t_end && (maxreq <= 0 || atomic_load(&done) < maxreq); }

static void *http_worker(void *arg)
{
    long id = (long)arg, k = 0;
    int fd = dial(SOCK_STREAM);
    char ihq[64], req[1024], buf[65536];
    for (int i = 0; i < 20; i++)
        sprintf(ihq + 3 * i, "%%%02X", ih[i]);
    size_t have = 0;
    while (more()) {
        long peer = (id * 7919 + k++) % npeers;
        int n = snprintf(req, sizeof req,
                         "GET /announce?info_hash=%s&peer_id=-LG0001-%012ld&port=%ld&uploaded=0&downloaded=0"
                         "&left=%ld&compact=1&numwant=50 HTTP/1.1\r\nHost: %s\r\n\r\n",
                         ihq, peer, 1024 + peer % 60000, (peer % 10) ? 1000000 - k % 1000 : 0, host);
        if (write(fd, req, (size_t)n) != n) {
            atomic_fetch_add(&errors, 1);
            break;
        }
        /* read one response: headers, then Content-Length bytes */
        for (;;) {
            char *hdr_end = memmem(buf, have, "\r\n\r\n", 4);
            if (hdr_end) {
                char *cl = memmem(buf, (size_t)(hdr_end - buf), "Content-Length: ", 16);
                if (!cl)
                    cl = memmem(buf, (size_t)(hdr_end - buf), "content-length: ", 16);
                size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
                size_t total = (size_t)(hdr_end - buf) + 4 + body;
                if (have >= total) {
                    if (strncmp(buf, "HTTP/1.1 200", 12) || memmem(buf, total, "failure reason", 14))
                        atomic_fetch_add(&errors, 1);
                    memmove(buf, buf + total, have - total);
                    have -= total;
                    break;
                }
            }
            ssize_t r = read(fd, buf + have, sizeof buf - have);
            if (r <= 0) {
                atomic_fetch_add(&errors, 1);
                close(fd);
                return NULL;
            }
            have += (size_t)r;
        }
        atomic_fetch_add(&done, 1);
    }
    close(fd);
    return NULL;
}

static void be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static void be64(uint8_t *p, uint64_t v) { be32(p, (uint32_t)(v >> 32)); be32(p + 4, (uint32_t)v); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void *udp_worker(void *arg)
{
    long id = (long)arg, k = 0;
    int fd = dial(SOCK_DGRAM);
    uint8_t pkt[98], in[2048];
    be64(pkt, 0x41727101980ull);
    be32(pkt + 8, 0);
    be32(pkt + 12, 1);
    if (write(fd, pkt, 16) != 16 || read(fd, in, sizeof in) != 16) {
        atomic_fetch_add(&errors, 1);
        return NULL;
    }
    uint8_t cid[8];
    memcpy(cid, in + 8, 8);
    double reconnect = now() + 50;
    while (more()) {
        long peer = (id * 7919 + k++) % npeers;
        memset(pkt, 0, sizeof pkt);
        memcpy(pkt, cid, 8);
        be32(pkt + 8, 1);
        be32(pkt + 12, (uint32_t)k);
        memcpy(pkt + 16, ih, 20);
        snprintf((char *)pkt + 36, 21, "-LG0002-%012ld", peer);
        be64(pkt + 64, (peer % 10) ? 1000000 : 0);
        be32(pkt + 92, 50);
        pkt[96] = (uint8_t)((1024 + peer % 60000) >> 8);
        pkt[97] = (uint8_t)(1024 + peer % 60000);
        if (write(fd, pkt, 98) != 98) {
            atomic_fetch_add(&errors, 1);
            continue;
        }
        ssize_t r = read(fd, in, sizeof in);
        if (r < 20 || rd32(in) != 1 || rd32(in + 4) != (uint32_t)k)
            atomic_fetch_add(&errors, 1);
        else
            atomic_fetch_add(&done, 1);
        if (now() > reconnect)
            break;   /* connection ids last a minute or two: the bench stays shorter */
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: %s http|udp HOST PORT IH_HEX PEERS THREADS SECONDS MAXREQ\n", argv[0]);
        return 2;
    }
    bool udp = !strcmp(argv[1], "udp");
    host = argv[2];
    port = atoi(argv[3]);
    for (int i = 0; i < 20; i++)
        sscanf(argv[4] + 2 * i, "%2hhx", &ih[i]);
    npeers = atoi(argv[5]);
    int threads = atoi(argv[6]);
    seconds = atoi(argv[7]);
    maxreq = atol(argv[8]);
    if (strncmp(host, "127.", 4)) {
        fprintf(stderr, "loopback only\n");
        return 2;
    }
    double t0 = now();
    t_end = t0 + seconds;
    pthread_t th[256];
    if (threads > 256)
        threads = 256;
    for (long i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, udp ? udp_worker : http_worker, (void *)i);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double dt = now() - t0;
    printf("proto=%s requests=%ld seconds=%.2f rate=%.0f errors=%ld\n", udp ? "udp" : "http", atomic_load(&done),
           dt, atomic_load(&done) / dt, atomic_load(&errors));
    return 0;
}
