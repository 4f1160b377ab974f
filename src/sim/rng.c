/* The simulator's deterministic randomness (rng.h). */
#include "sim/rng.h"

#include "core/str.h"

uint64_t bt_sim_hash(const char *p, size_t n, uint64_t seed)
{
    return bt_sim_mix64(bt_fnv1a(BT_FNV_OFFSET ^ bt_sim_mix64(seed), p, n) ^ n);
}

static const char *const words[] = {
    "the",     "quick",  "brown",   "fox",    "jumps",     "over",   "lazy",
    "dog",     "baton",  "routes",  "every",  "request",   "to",     "a",
    "model",   "that",   "answers", "fast",   "and",       "cheap",  "stream",
    "tokens",  "arrive", "one",     "by",     "simulated", "reply",  "gateway",
    "안녕하세요", "모델",   "게이트웨이", "시뮬레이션", "테스트", "\"sim\"", "café",
    "latency", "budget", "fallback", "retry", "usage",
};

const char *bt_sim_rng_word(struct bt_sim_rng *r)
{
    return words[bt_sim_rng_below(r, sizeof words / sizeof words[0])];
}

void bt_sim_id_chars(char *dst, size_t n, uint64_t h)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct bt_sim_rng r = {h};
    for (size_t i = 0; i < n; i++) dst[i] = al[bt_sim_rng_below(&r, sizeof al - 1)];
    dst[n] = 0;
}
