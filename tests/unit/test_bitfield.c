#include "bitfield.h"
#include "check.h"

#include <stdlib.h>

TEST(init_clear)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 20), 0);
    CHECK_EQ_INT(b.nbits, 20);
    CHECK_EQ_INT(b.count, 0);
    CHECK_EQ_INT(bitfield_bytes(20), 3);
    for (uint32_t i = 0; i < 20; i++)
        CHECK(!bitfield_get(&b, i));
    CHECK(!bitfield_full(&b));
    bitfield_free(&b);
    CHECK(b.bits == NULL);
}

TEST(bit_order)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 16), 0);
    bitfield_set(&b, 0);
    CHECK_EQ_INT(b.bits[0], 0x80);
    bitfield_set(&b, 7);
    CHECK_EQ_INT(b.bits[0], 0x81);
    bitfield_set(&b, 9);
    CHECK_EQ_INT(b.bits[1], 0x40);
    CHECK(bitfield_get(&b, 0) && bitfield_get(&b, 7) && bitfield_get(&b, 9));
    CHECK(!bitfield_get(&b, 1) && !bitfield_get(&b, 8));
    CHECK_EQ_INT(b.count, 3);
    bitfield_free(&b);
}

TEST(count_maintained)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 10), 0);
    bitfield_set(&b, 3);
    bitfield_set(&b, 3);        /* idempotent */
    CHECK_EQ_INT(b.count, 1);
    bitfield_clear(&b, 4);      /* clearing a clear bit */
    CHECK_EQ_INT(b.count, 1);
    bitfield_clear(&b, 3);
    bitfield_clear(&b, 3);
    CHECK_EQ_INT(b.count, 0);
    bitfield_set(&b, 10);       /* out of range: ignored */
    bitfield_set(&b, UINT32_MAX);
    CHECK_EQ_INT(b.count, 0);
    CHECK_EQ_INT(b.bits[1], 0);
    for (uint32_t i = 0; i < 10; i++)
        bitfield_set(&b, i);
    CHECK(bitfield_full(&b));
    CHECK_EQ_INT(b.bits[1], 0xC0);
    bitfield_free(&b);
}

TEST(set_all_clears_spare)
{
    uint32_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 1313};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        struct bitfield b;
        uint32_t n = sizes[s];
        CHECK_EQ_INT(bitfield_init(&b, n), 0);
        bitfield_set_all(&b);
        CHECK_EQ_INT(b.count, n);
        CHECK(bitfield_full(&b));
        size_t nb = bitfield_bytes(n);
        if (n % 8)
            CHECK_EQ_INT(b.bits[nb - 1], (uint8_t)(0xFF << (8 - n % 8)));
        else
            CHECK_EQ_INT(b.bits[nb - 1], 0xFF);
        /* the result must itself be loadable */
        struct bitfield c;
        CHECK_EQ_INT(bitfield_init(&c, n), 0);
        CHECK_EQ_INT(bitfield_load(&c, b.bits, nb), 0);
        CHECK_EQ_INT(c.count, n);
        bitfield_clear_all(&b);
        CHECK_EQ_INT(b.count, 0);
        for (size_t i = 0; i < nb; i++)
            CHECK_EQ_INT(b.bits[i], 0);
        bitfield_free(&b);
        bitfield_free(&c);
    }
}

TEST(load_ok)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 12), 0);
    uint8_t p[2] = {0xA5, 0x30};
    CHECK_EQ_INT(bitfield_load(&b, p, 2), 0);
    CHECK_EQ_INT(b.count, 6);
    CHECK(bitfield_get(&b, 0) && !bitfield_get(&b, 1) && bitfield_get(&b, 2));
    CHECK(bitfield_get(&b, 10) && bitfield_get(&b, 11));
    bitfield_free(&b);
}

TEST(load_spare_bits_rejected)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 12), 0);
    bitfield_set(&b, 1);
    for (int bit = 0; bit < 4; bit++) {
        uint8_t p[2] = {0x00, (uint8_t)(1u << bit)};   /* bits 12..15 are spare */
        CHECK_EQ_INT(bitfield_load(&b, p, 2), -1);
    }
    /* a failed load leaves the set untouched */
    CHECK_EQ_INT(b.count, 1);
    CHECK(bitfield_get(&b, 1));
    bitfield_free(&b);
}

TEST(load_wrong_length)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 16), 0);
    uint8_t p[3] = {0xFF, 0xFF, 0xFF};
    CHECK_EQ_INT(bitfield_load(&b, p, 1), -1);
    CHECK_EQ_INT(bitfield_load(&b, p, 3), -1);
    CHECK_EQ_INT(bitfield_load(&b, p, 0), -1);
    CHECK_EQ_INT(b.count, 0);
    CHECK_EQ_INT(bitfield_load(&b, p, 2), 0);
    CHECK(bitfield_full(&b));
    bitfield_free(&b);
}

TEST(empty)
{
    struct bitfield b;
    CHECK_EQ_INT(bitfield_init(&b, 0), 0);
    CHECK(b.bits != NULL);
    CHECK(bitfield_full(&b));
    bitfield_set_all(&b);
    bitfield_clear_all(&b);
    bitfield_set(&b, 0);
    CHECK_EQ_INT(b.count, 0);
    CHECK_EQ_INT(bitfield_load(&b, NULL, 0), 0);
    uint8_t x = 0;
    CHECK_EQ_INT(bitfield_load(&b, &x, 1), -1);
    bitfield_free(&b);
}

TEST(random_against_model)
{
    enum { N = 1000 };
    struct bitfield b;
    bool model[N] = {0};
    uint32_t count = 0;
    CHECK_EQ_INT(bitfield_init(&b, N), 0);
    srand(12345);
    for (int it = 0; it < 20000; it++) {
        uint32_t i = (uint32_t)rand() % N;
        if (rand() & 1) {
            bitfield_set(&b, i);
            if (!model[i]) { model[i] = true; count++; }
        } else {
            bitfield_clear(&b, i);
            if (model[i]) { model[i] = false; count--; }
        }
    }
    CHECK_EQ_INT(b.count, count);
    int mismatches = 0;
    for (uint32_t i = 0; i < N; i++)
        mismatches += bitfield_get(&b, i) != model[i];
    CHECK_EQ_INT(mismatches, 0);
    struct bitfield c;
    CHECK_EQ_INT(bitfield_init(&c, N), 0);
    CHECK_EQ_INT(bitfield_load(&c, b.bits, bitfield_bytes(N)), 0);
    CHECK_EQ_INT(c.count, count);
    bitfield_free(&b);
    bitfield_free(&c);
}

int main(void)
{
    RUN(init_clear);
    RUN(bit_order);
    RUN(count_maintained);
    RUN(set_all_clears_spare);
    RUN(load_ok);
    RUN(load_spare_bits_rejected);
    RUN(load_wrong_length);
    RUN(empty);
    RUN(random_against_model);
    return check_summary();
}
