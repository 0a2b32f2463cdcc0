/* cli.h — the subcommands and small helpers shared by their option parsers. Only code reachable from main()
 * prints to the user and chooses exit codes: 0 success, 1 failure, 2 usage error. */
#ifndef DS_CLI_H
#define DS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXIT_USAGE 2
/* --allow ranges one command takes */
#define CLI_MAX_ALLOW 64

struct cidr;

int cmd_info(int argc, char **argv);
int cmd_make_torrent(int argc, char **argv);
int cmd_seed(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_capture(int argc, char **argv);
int cmd_tracker(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_deploy(int argc, char **argv);

/* Print "diskswarm: <msg>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a byte size: decimal or 0x hex, optional K/M/G (binary) suffix. 0 on success. */
int cli_parse_size(const char *s, uint64_t *out);
/* Parse a --piece-size value: a size (as cli_parse_size) that is a power of two from 16 KiB to 1 GiB. */
int cli_parse_piece_size(const char *s, uint64_t *out);
/* Parse a non-negative integer (decimal) no larger than max. */
int cli_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* Options shared by seed/fetch, serve and deploy. Each prints why a value is refused and returns -1. */
/* --seed-time SECONDS (at most ten years) */
int cli_opt_seed_time(const char *s, int64_t *out);
/* --expect N: a positive number of machines */
int cli_opt_expect(const char *s, uint64_t *out);
/* --allow CIDR: appended to allow[*n] (at most CLI_MAX_ALLOW) */
int cli_opt_allow(const char *s, struct cidr *allow, size_t *n);
/* Write a file atomically (file_util.h); on failure print why and return -1. */
int cli_write_file(const char *path, const void *data, unsigned long len);
/* Format bytes human-readably ("1.5 GiB") into out. */
void cli_format_bytes(uint64_t n, char *out, unsigned long outlen);

#endif
