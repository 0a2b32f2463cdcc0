/* cmd_verify.c — `verify`: hash every piece as it stands on a device or file. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "extent_map.h"
#include "metainfo.h"
#include "piece_check.h"
#include "store.h"

static void show_progress(void *ctx, uint32_t done, uint32_t total)
{
    (void)ctx;
    if (done % 16 == 0 || done == total)
        fprintf(stderr, "\rverify: %u/%u pieces", done, total);
}

int cmd_verify(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: diskswarm verify TORRENT DEVICE|FILE\n"
             "  Check every piece on DEVICE against the torrent's hashes; exit 0 only if all match.");
        return 0;
    }
    if (argc != 3) {
        cli_error("usage: diskswarm verify TORRENT DEVICE|FILE");
        return EXIT_USAGE;
    }
    struct ds_err e;
    struct metainfo *mi = NULL;
    struct extent_map map = {0};
    struct store st = {.fd = -1};
    int rc = 1;
    if (metainfo_load_file(argv[1], &mi, &e)) {
        cli_error("%s: %s", argv[1], e.msg);
        return 1;
    }
    if (extent_map_from_metainfo(mi, &map, &e) || store_open(&st, argv[2], STORE_READ, mi, &map, &e)) {
        cli_error("%s", e.msg);
        goto out;
    }
    bool tty = isatty(STDERR_FILENO);
    struct bitfield ok = {0};
    if (bitfield_init(&ok, mi->num_pieces)) {
        cli_error("out of memory");
        goto out;
    }
    if (piece_check_all(&st, 0, &ok, tty ? show_progress : NULL, NULL, &e)) {
        if (tty)
            fputs("\r\033[K", stderr);
        cli_error("%s", e.msg);
        bitfield_free(&ok);
        goto out;
    }
    if (tty)
        fputs("\r\033[K", stderr);
    uint32_t bad = mi->num_pieces - ok.count, first_bad = 0;
    while (bad && first_bad < mi->num_pieces && bitfield_get(&ok, first_bad))
        first_bad++;
    bitfield_free(&ok);
    if (bad) {
        printf("FAILED: %u of %u pieces do not match (first: piece %u)\n", bad, mi->num_pieces, first_bad);
        goto out;
    }
    printf("OK: all %u pieces match (%llu bytes in %zu extents)\n", mi->num_pieces,
           (unsigned long long)mi->total_length, map.n);
    rc = 0;
out:
    store_close(&st);
    extent_map_free(&map);
    metainfo_free(mi);
    return rc;
}
