/* main.c — dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fputs("usage: diskswarm COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  info TORRENT                         show a torrent's name, size, pieces, extents, info-hash, trackers\n"
          "  make-torrent SOURCE --extents FILE -o OUT.torrent [--name N] [--piece-size S] [--tracker URL]...\n"
          "                                       describe extents of a device/file as an Ezio-layout torrent\n"
          "  seed TORRENT --from DEVICE|FILE      serve a torrent's pieces from a device or image\n"
          "  fetch TORRENT --to DEVICE|FILE       download onto a device at the extents' offsets, verify, seed\n"
          "  verify TORRENT DEVICE|FILE           check every piece on a device against the torrent\n"
          "  serve IMAGE_DIR [--expect N]         tracker + seeder + dashboard for a captured image\n"
          "  deploy http://SERVER:PORT --to DEV   fetch, check, write, verify and seed an image from `serve`\n"
          "\n"
          "Run 'diskswarm COMMAND --help' for a command's options.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("diskswarm 0.1.0");
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"info", cmd_info},     {"make-torrent", cmd_make_torrent}, {"seed", cmd_seed},
        {"fetch", cmd_fetch},   {"verify", cmd_verify}, {"capture", cmd_capture},
        {"tracker", cmd_tracker}, {"import", cmd_import},
        {"serve", cmd_serve},   {"deploy", cmd_deploy},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s'", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
