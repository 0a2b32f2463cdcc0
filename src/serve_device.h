/* serve_device.h — `diskswarm serve DEVICE`: capture a device (or an image file) on the fly into a state
 * directory — torrent(s) and manifest only, no image store — so serve can seed straight from the device.
 *
 * A device whose content can change while it is served (mounted read-write, swap, held by device-mapper/md) is
 * refused: the pieces' hashes would no longer match what is read. A read-only mount is fine. */
#ifndef DS_SERVE_DEVICE_H
#define DS_SERVE_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

/* Capture device into state_dir (created if missing; NULL: a new temporary directory, *made_temp set) with
 * `diskswarm capture`'s defaults; its console output goes to stderr. dir_out gets the IMAGE_DIR to serve.
 * Prints the reason and returns non-zero on failure. */
int serve_device_capture(const char *device, const char *state_dir, bool quiet, char *dir_out, size_t dir_len,
                         bool *made_temp);

/* Remove what serve_device_capture wrote into a temporary directory, and the directory. */
void serve_device_cleanup(const char *dir);

#endif
