/* test_addr_filter.c — --allow CIDR parsing and matching. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "addr_filter.h"
#include "check.h"

static struct peer_addr v4(const char *ip)
{
    struct peer_addr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sin->sin_addr);
    a.len = sizeof *sin;
    return a;
}

static struct peer_addr v6(const char *ip)
{
    struct peer_addr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    a.len = sizeof *sin6;
    return a;
}

TEST(parse)
{
    struct cidr c;
    CHECK(cidr_parse("198.18.0.0/15", &c, NULL) == 0 && c.family == AF_INET && c.bits == 15);
    CHECK(cidr_parse("198.18.0.7", &c, NULL) == 0 && c.bits == 32);
    CHECK(cidr_parse("fd00::/8", &c, NULL) == 0 && c.family == AF_INET6 && c.bits == 8);
    CHECK(cidr_parse("::1", &c, NULL) == 0 && c.bits == 128);
    CHECK(cidr_parse("198.18.0.0/0", &c, NULL) == 0 && c.bits == 0);
    const char *bad[] = {"", "/8", "198.18.0.0/33", "198.18.0.0/", "198.18.0.0/-1", "198.18.0.0/8x",
                         "host.example/8", "fd00::/129", "1.2.3", "198.18.0.0/15/1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ds_err e;
        if (cidr_parse(bad[i], &c, &e) == 0)
            fprintf(stderr, "  accepted '%s'\n", bad[i]);
        CHECK(cidr_parse(bad[i], &c, &e) == -1);
    }
}

TEST(match)
{
    struct cidr c[2];
    CHECK(cidr_parse("198.18.0.0/15", &c[0], NULL) == 0);
    CHECK(cidr_parse("fd00:1::/32", &c[1], NULL) == 0);
    struct peer_addr a = v4("198.19.255.255"), b = v4("198.20.0.1"), m = v6("::ffff:198.18.3.4"),
                     x = v6("fd00:1:2::5"), y = v6("fd00:2::5");
    CHECK(cidr_match(&c[0], &a));
    CHECK(!cidr_match(&c[0], &b));
    CHECK(cidr_match(&c[0], &m)); /* v4-mapped v6 matches the v4 rule */
    CHECK(!cidr_match(&c[1], &a));
    CHECK(cidr_match(&c[1], &x));
    CHECK(!cidr_match(&c[1], &y));
    CHECK(addr_allowed(c, 2, &x) && addr_allowed(c, 2, &a) && !addr_allowed(c, 2, &b));
    CHECK(addr_allowed(NULL, 0, &b)); /* empty list: everyone */
    struct cidr any;
    CHECK(cidr_parse("0.0.0.0/0", &any, NULL) == 0);
    CHECK(cidr_match(&any, &b) && !cidr_match(&any, &x));
    struct cidr odd;
    CHECK(cidr_parse("198.18.0.128/25", &odd, NULL) == 0);
    struct peer_addr lo = v4("198.18.0.127"), hi = v4("198.18.0.128");
    CHECK(!cidr_match(&odd, &lo) && cidr_match(&odd, &hi));
}

int main(void)
{
    RUN(parse);
    RUN(match);
    return check_summary();
}
