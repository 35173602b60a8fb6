/*
 * hash.c: a fast, seedless 64-bit hash of byte strings, for symbols and rows.
 * Reads 8 bytes at a time and folds each word with a 128-bit multiply (the
 * "multiply and fold" idea of the wyhash family, written from that description).
 * Not for adversarial input: hash tables keyed by outside data must tolerate collisions.
 */
#include "base/base.h"

#include <string.h>

static inline uint64_t fold(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t read64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

uint64_t dl__hash_bytes(const void *data, size_t n) {
    const unsigned char *p = data;
    const uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull;
    uint64_t h = k0 ^ (uint64_t)n;
    while (n >= 16) {
        h = fold(read64(p) ^ k1, read64(p + 8) ^ h);
        p += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        a = read64(p);
        b = read64(p + n - 8);
    } else if (n > 0) {
        unsigned char tmp[8] = {0};
        memcpy(tmp, p, n);
        a = read64(tmp);
    }
    return fold(fold(a ^ k1, b ^ h) ^ k0, (uint64_t)n ^ k1);
}
