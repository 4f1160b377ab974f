/* libFuzzer target: the learned router's file loader (bt_router_load_mem).
 * Each input is tried as it is, then with its checksum repaired so that the
 * checks behind the checksum (header fields, names, finite weights) are
 * reached too; whatever loads must score a prompt (the input's own bytes) to
 * a finite number. The seed is a small valid file (2^8 buckets). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "learn/learn.h"

static struct bt_learn_scratch *scratch;

static void try_load(const uint8_t *data, size_t size)
{
    struct bt_router r;
    char msg[256];
    if (bt_router_load_mem(&r, data, size, msg, sizeof msg) != BT_OK) {
        if (r.idf || r.w[0] || r.w[1]) abort(); /* a refused file leaves nothing behind */
        if (!msg[0]) abort();                    /* and says why */
        return;
    }
    double v = bt_router_score(&r, scratch, (const char *)data, size);
    if (!isfinite(v)) abort();
    double t = bt_router_threshold_for(&r, size ? data[0] / 255.0 : 0.3);
    if (!isfinite(t) || t > r.cal[0] || t < r.cal[BT_LEARN_CAL - 1]) abort();
    bt_router_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!scratch) scratch = bt_learn_scratch_new();
    if (!scratch) return 0;
    try_load(data, size);
    if (size < 16 || size > (1u << 20)) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    uint64_t h = bt_router_checksum(copy, size - 8);
    for (int i = 0; i < 8; i++) copy[size - 8 + i] = (uint8_t)(h >> (8 * i));
    try_load(copy, size);
    free(copy);
    return 0;
}
