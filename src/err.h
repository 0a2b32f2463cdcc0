/* err.h — error reporting for library code: functions fill a struct ds_err and return -1;
 * only main() decides to print and exit. */
#ifndef DS_ERR_H
#define DS_ERR_H

struct ds_err {
    char msg[512];
};

/* Format a message into e (if e is non-NULL). Always returns -1 so callers can `return ds_errf(...)`. */
int ds_errf(struct ds_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, with ": strerror(errno)" appended (errno captured at call time). */
int ds_errno(struct ds_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
