/* The simulator's deterministic randomness: a splitmix64 generator seeded from
 * the cfg seed and the request, so the same cfg and request give the same bytes,
 * and the words generated text is made of. Nothing here reads a clock or keeps
 * global state. */
#ifndef BT_SIM_RNG_H
#define BT_SIM_RNG_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64's finaliser: a well-mixed 64-bit hash of x. */
static inline uint64_t bt_sim_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct bt_sim_rng {
    uint64_t s; /* state: any value seeds it */
};

static inline uint64_t bt_sim_rng_next(struct bt_sim_rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return bt_sim_mix64(r->s);
}

/* Uniform in [0, n); n == 0 gives 0. */
static inline uint64_t bt_sim_rng_below(struct bt_sim_rng *r, uint64_t n)
{
    return n ? bt_sim_rng_next(r) % n : 0;
}

/* Uniform in [0, 1). */
static inline double bt_sim_rng_unit(struct bt_sim_rng *r)
{
    return (double)(bt_sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* A hash of p[0..n) (FNV-1a, mixed), seeded. */
uint64_t bt_sim_hash(const char *p, size_t n, uint64_t seed);

/* A word of generated text, as a static string. Some are Korean (multi-byte
 * UTF-8) and one carries quotes, so escaping and UTF-8 boundaries are exercised
 * downstream. */
const char *bt_sim_rng_word(struct bt_sim_rng *r);

/* Writes `n` characters of [A-Za-z0-9] derived from `h`, then a NUL, into dst
 * (n + 1 bytes): the random part of ids. */
void bt_sim_id_chars(char *dst, size_t n, uint64_t h);

#endif
