/* addr_filter.h — `--allow CIDR` lists: which peer addresses may talk to us at all. IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d) match IPv4 rules. An empty list allows everything. */
#ifndef DS_ADDR_FILTER_H
#define DS_ADDR_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tracker_client.h"

struct cidr {
    int family;          /* AF_INET or AF_INET6 */
    uint8_t addr[16];    /* network order; IPv4 in the first 4 bytes */
    unsigned bits;       /* prefix length */
};

/* "198.18.0.0/15", "10.1.2.3" (= /32), "fd00::/8", "::1" (= /128). */
int cidr_parse(const char *s, struct cidr *out, struct ds_err *e);
bool cidr_match(const struct cidr *c, const struct peer_addr *a);
bool addr_allowed(const struct cidr *list, size_t n, const struct peer_addr *a);

#endif
