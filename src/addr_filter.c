#include "addr_filter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int cidr_parse(const char *s, struct cidr *out, struct ds_err *e)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof host)
        return ds_errf(e, "bad address range '%s'", s);
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return ds_errf(e, "bad address in '%s' (give a numeric IPv4 or IPv6 address)", s);
    }
    out->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > (long)max)
            return ds_errf(e, "bad prefix length in '%s'", s);
        out->bits = (unsigned)b;
    }
    return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool cidr_match(const struct cidr *c, const struct peer_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)&a->ss;
        return c->family == AF_INET && prefix_eq((const uint8_t *)&sin->sin_addr, c->addr, c->bits);
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const void *)&a->ss;
        const uint8_t *p = sin6->sin6_addr.s6_addr;
        if (c->family == AF_INET6)
            return prefix_eq(p, c->addr, c->bits);
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        return memcmp(p, mapped, 12) == 0 && prefix_eq(p + 12, c->addr, c->bits);
    }
    return false;
}

bool addr_allowed(const struct cidr *list, size_t n, const struct peer_addr *a)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&list[i], a))
            return true;
    return false;
}
