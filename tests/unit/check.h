/* check.h — a minimal unit-test harness. Each test binary defines tests with TEST(name) { ... }, lists them in
 * main with RUN(name), and ends with return check_summary(); which prints "N passed, N failed" and returns the
 * exit status. CHECK failures report file:line and mark the current test failed but keep going. */
#ifndef DS_CHECK_H
#define DS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_passed __attribute__((unused)), check_failed __attribute__((unused)), check_cur_failed __attribute__((unused));

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_cur_failed = 1;                                                    \
        }                                                                            \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, \
                    check_a_, #b, check_b_);                                                       \
            check_cur_failed = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                              \
    do {                                                                                             \
        const char *check_a_ = (a), *check_b_ = (b);                                                 \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                             \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,      \
                    check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");                 \
            check_cur_failed = 1;                                                                    \
        }                                                                                            \
    } while (0)

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                    \
    do {                                                             \
        check_cur_failed = 0;                                        \
        test_##name();                                               \
        if (check_cur_failed) {                                      \
            check_failed++;                                          \
            printf("FAIL %s\n", #name);                              \
        } else {                                                     \
            check_passed++;                                          \
            printf("ok   %s\n", #name);                              \
        }                                                            \
        fflush(stdout);                                              \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
