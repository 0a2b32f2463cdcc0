#include "file_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int write_file_atomic(const char *path, const void *data, size_t len, struct ds_err *e)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return ds_errf(e, "out of memory");
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ds_errno(e, "cannot create '%s'", tmp);
        free(tmp);
        return -1;
    }
    const uint8_t *p = data;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            ds_errno(e, "cannot write '%s'", tmp);
            goto fail;
        }
        done += (size_t)w;
    }
    if (fchmod(fd, 0644) || fsync(fd)) {
        ds_errno(e, "cannot finish '%s'", tmp);
        goto fail;
    }
    int rc = close(fd);
    fd = -1;
    if (rc) {
        ds_errno(e, "cannot close '%s'", tmp);
        goto fail;
    }
    if (rename(tmp, path)) {
        ds_errno(e, "cannot rename '%s' to '%s'", tmp, path);
        goto fail;
    }
    free(tmp);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}
