/* serve_device.c — capture a device for `serve DEVICE` (see serve_device.h). */
#include "serve_device.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "manifest.h"
#include "target_check.h"

int serve_device_capture(const char *device, const char *state_dir, bool quiet, char *dir_out, size_t dir_len,
                         bool *made_temp)
{
    struct ds_err e;
    struct stat sb;
    char abs[PATH_MAX];
    *made_temp = false;
    if (!realpath(device, abs) || stat(abs, &sb)) {
        cli_error("serve: %s: %s", device, strerror(errno));
        return 1;
    }
    if (!S_ISBLK(sb.st_mode) && !S_ISREG(sb.st_mode)) {
        cli_error("serve: %s is neither an IMAGE_DIR nor a block device or image file", device);
        return EXIT_USAGE;
    }
    if (target_check_unchanging(abs, &sb, &e)) {
        cli_error("serve: refusing to serve %s: %s", device, e.msg);
        return 1;
    }
    if (state_dir && strlen(state_dir) + 64 >= dir_len) {
        cli_error("serve: --state-dir: path too long");
        return EXIT_USAGE;
    }
    if (state_dir) {
        if (mkdir(state_dir, 0755) && errno != EEXIST) {
            cli_error("serve: cannot create %s: %s", state_dir, strerror(errno));
            return 1;
        }
        snprintf(dir_out, dir_len, "%s", state_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir_out, dir_len, "%s/diskswarm-serve-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir_out)) {
            cli_error("serve: cannot create a state directory (%s): %s; give --state-dir DIR", dir_out,
                      strerror(errno));
            return 1;
        }
        *made_temp = true;
    }
    fprintf(stderr, "diskswarm serve: capturing %s into %s (used blocks only, hashed on all cores)\n", abs,
            dir_out);
    /* capture's own lines go to stderr: stdout stays serve's (JSON lines with --json) */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        cli_error("serve: %s", strerror(errno));
        if (saved >= 0)
            close(saved);
        return 1;
    }
    char *argv[] = {"capture", abs, "-o", dir_out, quiet ? "--quiet" : NULL, NULL};
    int rc = cmd_capture(quiet ? 5 : 4, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    if (rc) {
        cli_error("serve: capturing %s failed", device);
        if (*made_temp)
            serve_device_cleanup(dir_out);
        return rc;
    }
    return 0;
}

void serve_device_cleanup(const char *dir)
{
    struct manifest m;
    struct ds_err e;
    char p[PATH_MAX + 200];
    if (manifest_read(dir, &m, &e) == 0) {
        for (size_t i = 0; i < m.n_torrents; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, m.torrents[i].file);
            unlink(p);
        }
        manifest_free(&m);
    }
    snprintf(p, sizeof p, "%s/%s", dir, MANIFEST_FILE);
    unlink(p);
    if (rmdir(dir))
        fprintf(stderr, "diskswarm serve: warning: cannot remove %s: %s\n", dir, strerror(errno));
}
