#include "target_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int target_size(int fd, const struct stat *st, uint64_t *size, struct ds_err *e)
{
    if (S_ISREG(st->st_mode)) {
        *size = (uint64_t)st->st_size;
        return 0;
    }
    if (S_ISBLK(st->st_mode)) {
        uint64_t sz = 0;
        if (ioctl(fd, BLKGETSIZE64, &sz) != 0)
            return ds_errno(e, "cannot read the size of the block device");
        *size = sz;
        return 0;
    }
    return ds_errf(e, "not a block device or regular file");
}

/* Read a small sysfs file into buf; returns length or -1. */
static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return (int)n;
}

/* Is device major:minor mounted (rw_only: mounted read-write)? Fills where with the mount point. */
static bool dev_mounted(unsigned maj, unsigned min, bool rw_only, char *where, size_t wlen)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned a, b;
        char mp[2048], opts[64];
        /* id parent major:minor root mountpoint options ... */
        int n = sscanf(line, "%*u %*u %u:%u %*s %2047s %63s", &a, &b, mp, opts);
        if (n >= 3 && a == maj && b == min &&
            (!rw_only || (n == 4 && !strncmp(opts, "rw", 2) && (opts[2] == ',' || opts[2] == 0)))) {
            snprintf(where, wlen, "%s", mp);
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

static bool dev_is_swap(unsigned maj, unsigned min)
{
    FILE *f = fopen("/proc/swaps", "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char path[2048];
        struct stat st;
        if (sscanf(line, "%2047s", path) == 1 && path[0] == '/' && stat(path, &st) == 0 && S_ISBLK(st.st_mode) &&
            major(st.st_rdev) == maj && minor(st.st_rdev) == min)
            found = true;
    }
    fclose(f);
    return found;
}

/* Check one block device and, through sysfs, its partitions and holders (one level each, bounded). rw_only: only
 * what can change its content counts (a read-write mount, swap, a holder), for a device to be read. */
static int check_blockdev(unsigned maj, unsigned min, bool rw_only, const char *label, struct ds_err *e)
{
    char where[2048];
    const char *why = rw_only ? "its content would change while it is read" : "refusing to write to it";
    if (dev_mounted(maj, min, rw_only, where, sizeof where))
        return ds_errf(e, "%s is mounted%s on %s; %s", label, rw_only ? " read-write" : "", where,
                       rw_only ? "its content would change while it is read: unmount it or remount it read-only"
                               : why);
    if (dev_is_swap(maj, min))
        return ds_errf(e, "%s is in use as swap; %s", label, why);

    char sys[256];
    snprintf(sys, sizeof sys, "/sys/dev/block/%u:%u", maj, min);
    const char *subs[] = {"", "/holders"};
    for (size_t k = 0; k < 2; k++) {
        char dir[320];
        snprintf(dir, sizeof dir, "%s%s", sys, subs[k]);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        int budget = 4096;
        while ((de = readdir(d)) && budget-- > 0) {
            if (de->d_name[0] == '.')
                continue;
            char devf[600], val[64];
            snprintf(devf, sizeof devf, "%s/%s/dev", dir, de->d_name);
            if (read_small(devf, val, sizeof val) <= 0)
                continue;
            unsigned a, b;
            if (sscanf(val, "%u:%u", &a, &b) != 2 || (a == maj && b == min))
                continue;
            if (dev_mounted(a, b, rw_only, where, sizeof where)) {
                closedir(d);
                return ds_errf(e, "%s is in use: %s (part of it) is mounted%s on %s; %s", label, de->d_name,
                               rw_only ? " read-write" : "", where,
                               rw_only ? "its content would change while it is read: unmount it or remount it "
                                         "read-only"
                                       : why);
            }
            if (dev_is_swap(a, b)) {
                closedir(d);
                return ds_errf(e, "%s is in use: %s (part of it) is swap; %s", label, de->d_name, why);
            }
            if (k == 1) {
                closedir(d);
                return ds_errf(e, "%s is in use by %s (device-mapper/md holder); %s", label, de->d_name, why);
            }
        }
        closedir(d);
    }
    return 0;
}

/* For a regular file: find loop devices whose backing file is this inode and check them. */
static int check_file_loops(const struct stat *st, bool rw_only, const char *label, struct ds_err *e)
{
    DIR *d = opendir("/sys/block");
    if (!d)
        return 0;
    struct dirent *de;
    int rc = 0, budget = 4096;
    while (rc == 0 && (de = readdir(d)) && budget-- > 0) {
        if (strncmp(de->d_name, "loop", 4) != 0)
            continue;
        char p[512], back[4096], devv[64];
        snprintf(p, sizeof p, "/sys/block/%s/loop/backing_file", de->d_name);
        if (read_small(p, back, sizeof back) <= 0)
            continue;
        struct stat bst;
        if (stat(back, &bst) != 0 || bst.st_dev != st->st_dev || bst.st_ino != st->st_ino)
            continue;
        snprintf(p, sizeof p, "/sys/block/%s/dev", de->d_name);
        unsigned a, b;
        if (read_small(p, devv, sizeof devv) <= 0 || sscanf(devv, "%u:%u", &a, &b) != 2)
            continue;
        char lbl[700];
        snprintf(lbl, sizeof lbl, "%s (through /dev/%s)", label, de->d_name);
        rc = check_blockdev(a, b, rw_only, lbl, e);
    }
    closedir(d);
    return rc;
}

int target_check_unused(const char *path, const struct stat *st, struct ds_err *e)
{
    if (S_ISBLK(st->st_mode))
        return check_blockdev(major(st->st_rdev), minor(st->st_rdev), false, path, e);
    if (S_ISREG(st->st_mode))
        return check_file_loops(st, false, path, e);
    return ds_errf(e, "%s is not a block device or regular file", path);
}

int target_check_unchanging(const char *path, const struct stat *st, struct ds_err *e)
{
    if (S_ISBLK(st->st_mode))
        return check_blockdev(major(st->st_rdev), minor(st->st_rdev), true, path, e);
    if (S_ISREG(st->st_mode))
        return check_file_loops(st, true, path, e);
    return ds_errf(e, "%s is not a block device or regular file", path);
}
