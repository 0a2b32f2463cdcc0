/* cmd_info.c — `diskswarm info TORRENT [--json]`: describe a torrent. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "extent_map.h"
#include "metainfo.h"

static void info_usage(FILE *f)
{
    fputs("usage: diskswarm info TORRENT [--json]\n"
          "\n"
          "Show a torrent's name, size, piece length and count, files/extents, the device size it needs,\n"
          "info-hash, trackers, private flag and creator.\n"
          "\n"
          "  --json     print one JSON object instead of text\n"
          "  -h, --help show this help\n",
          f);
}

/* Text output: strings from the torrent may hold control characters; never send those to a terminal. */
static void put_text(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
}

static void put_json_str(const char *s)
{
    if (!s) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'h': info_usage(stdout); return 0;
        default:
            cli_error("info: unknown option '%s'", argv[optind - 1]);
            info_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        cli_error(argc - optind == 0 ? "info: missing TORRENT" : "info: too many arguments");
        info_usage(stderr);
        return EXIT_USAGE;
    }
    const char *path = argv[optind];

    struct metainfo *mi;
    struct ds_err e;
    if (metainfo_load_file(path, &mi, &e)) {
        cli_error("%s", e.msg);
        return 1;
    }
    struct extent_map m;
    struct ds_err me;
    bool have_map = extent_map_from_metainfo(mi, &m, &me) == 0;
    size_t n_pad = 0;
    for (size_t i = 0; i < mi->num_files; i++)
        n_pad += mi->files[i].is_pad;
    size_t n_ext = 0;
    if (have_map)
        for (size_t i = 0; i < m.n; i++)
            n_ext += !m.ext[i].pad;
    char hash[2 * SHA1_LEN + 1];
    hex_encode(mi->info_hash, SHA1_LEN, hash);

    if (json) {
        fputs("{\"name\":", stdout);
        put_json_str(mi->name);
        printf(",\"info_hash\":\"%s\",\"total_length\":%" PRIu64 ",\"piece_length\":%" PRIu64
               ",\"num_pieces\":%" PRIu32 ",\"multi_file\":%s,\"num_files\":%zu,\"pad_files\":%zu",
               hash, mi->total_length, mi->piece_length, mi->num_pieces, mi->multi_file ? "true" : "false",
               mi->num_files, n_pad);
        if (have_map)
            printf(",\"num_extents\":%zu,\"device_span\":%" PRIu64 ",\"device_bytes\":%" PRIu64
                   ",\"layout_error\":null",
                   n_ext, m.dev_end, m.dev_bytes);
        else {
            fputs(",\"num_extents\":null,\"device_span\":null,\"device_bytes\":null,\"layout_error\":", stdout);
            put_json_str(me.msg);
        }
        fputs(",\"trackers\":[", stdout);
        for (size_t i = 0; i < mi->num_trackers; i++) {
            if (i)
                putchar(',');
            put_json_str(mi->trackers[i]);
        }
        printf("],\"private\":%s,\"created_by\":", mi->is_private ? "true" : "false");
        put_json_str(mi->created_by);
        printf(",\"creation_date\":%" PRId64 ",\"comment\":", mi->creation_date);
        put_json_str(mi->comment);
        fputs("}\n", stdout);
    } else {
        char h1[32];
        fputs("name:          ", stdout);
        put_text(mi->name);
        putchar('\n');
        printf("info-hash:     %s\n", hash);
        cli_format_bytes(mi->total_length, h1, sizeof h1);
        printf("total size:    %" PRIu64 " bytes (%s)\n", mi->total_length, h1);
        cli_format_bytes(mi->piece_length, h1, sizeof h1);
        printf("piece length:  %" PRIu64 " (%s)\n", mi->piece_length, h1);
        printf("pieces:        %" PRIu32 "\n", mi->num_pieces);
        if (mi->multi_file)
            printf("files:         %zu (%zu pad)\n", mi->num_files, n_pad);
        else
            printf("files:         1 (single-file torrent)\n");
        if (have_map) {
            printf("extents:       %zu\n", n_ext);
            cli_format_bytes(m.dev_end, h1, sizeof h1);
            printf("device span:   %" PRIu64 " bytes (%s) needed on the target\n", m.dev_end, h1);
        } else {
            printf("extents:       n/a\n");
            fputs("device span:   n/a: ", stdout);
            put_text(me.msg);
            putchar('\n');
        }
        printf("private:       %s\n", mi->is_private ? "yes" : "no");
        if (mi->created_by) {
            fputs("created by:    ", stdout);
            put_text(mi->created_by);
            putchar('\n');
        }
        if (mi->creation_date > 0) {
            time_t t = (time_t)mi->creation_date;
            struct tm tm;
            char ts[64];
            if (gmtime_r(&t, &tm) && strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S UTC", &tm))
                printf("creation date: %s\n", ts);
        }
        if (mi->comment) {
            fputs("comment:       ", stdout);
            put_text(mi->comment);
            putchar('\n');
        }
        if (mi->num_trackers == 0)
            printf("trackers:      (none)\n");
        for (size_t i = 0; i < mi->num_trackers; i++) {
            fputs(i ? "               " : "trackers:      ", stdout);
            put_text(mi->trackers[i]);
            putchar('\n');
        }
    }
    if (have_map)
        extent_map_free(&m);
    metainfo_free(mi);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("info: write error on standard output");
        return 1;
    }
    return 0;
}
