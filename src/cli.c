#include "cli.h"

#include "addr_filter.h"
#include "err.h"

#include "file_util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("diskswarm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

void cli_format_bytes(uint64_t n, char *out, unsigned long outlen)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, outlen, "%llu B", (unsigned long long)n);
    else
        snprintf(out, outlen, "%.1f %s", v, unit[u]);
}

int cli_write_file(const char *path, const void *data, unsigned long len)
{
    struct ds_err e;
    if (write_file_atomic(path, data, len, &e)) {
        cli_error("%s", e.msg);
        return -1;
    }
    return 0;
}

int cli_opt_seed_time(const char *s, int64_t *out)
{
    uint64_t v;
    if (cli_parse_uint(s, 10u * 365 * 86400, &v)) {
        cli_error("--seed-time wants seconds, not '%s'", s);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int cli_opt_expect(const char *s, uint64_t *out)
{
    uint64_t v;
    if (cli_parse_uint(s, 1000000, &v) || v == 0) {
        cli_error("--expect wants a positive number of machines, not '%s'", s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_opt_allow(const char *s, struct cidr *allow, size_t *n)
{
    if (*n >= CLI_MAX_ALLOW) {
        cli_error("too many --allow ranges (at most %d)", CLI_MAX_ALLOW);
        return -1;
    }
    struct ds_err e;
    if (cidr_parse(s, &allow[*n], &e)) {
        cli_error("--allow: %s", e.msg);
        return -1;
    }
    (*n)++;
    return 0;
}

int cli_parse_piece_size(const char *s, uint64_t *out)
{
    uint64_t v;
    if (cli_parse_size(s, &v) || v < ((uint64_t)16 << 10) || v > ((uint64_t)1 << 30) || (v & (v - 1)))
        return -1;
    *out = v;
    return 0;
}
