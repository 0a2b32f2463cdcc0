/* file_util.h — writing a small file so that readers see either the old one or the complete new one. */
#ifndef DS_FILE_UTIL_H
#define DS_FILE_UTIL_H

#include <stddef.h>

#include "err.h"

/* Write data to path atomically: a temp file beside it (mode 0644), fsync, rename over path. */
int write_file_atomic(const char *path, const void *data, size_t len, struct ds_err *e);

#endif
