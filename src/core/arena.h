/* A per-request memory pool: many small allocations, one free. Everything
 * request-scoped (parsed headers, JSON tokens, rewritten body pieces) comes from
 * the request's arena and dies with it. Blocks are malloc'd on demand; a total
 * cap bounds what one request may take. */
#ifndef BT_CORE_ARENA_H
#define BT_CORE_ARENA_H

#include <stddef.h>

#include "core/str.h"

struct bt_arena_block;

struct bt_arena {
    struct bt_arena_block *head; /* newest block, owned */
    size_t used;                 /* bytes handed out from all blocks */
    size_t max;                  /* cap on bytes handed out; 0 = unlimited */
    size_t block_size;           /* default size of a new block */
};

/* Initialises an empty arena; allocates nothing until the first bt_arena_alloc. */
void bt_arena_init(struct bt_arena *a, size_t block_size, size_t max);
/* Returns `n` bytes aligned to 16, valid until bt_arena_reset/free; NULL when out
 * of memory or past the arena's cap. */
void *bt_arena_alloc(struct bt_arena *a, size_t n);
/* Zeroed allocation of n * size bytes (overflow-checked). */
void *bt_arena_calloc(struct bt_arena *a, size_t n, size_t size);
/* Copies s into the arena with a trailing NUL; returns an empty slice with p ==
 * NULL on failure. */
struct bt_str bt_arena_strdup(struct bt_arena *a, struct bt_str s);
/* Frees all but the first block and rewinds; memory handed out becomes invalid. */
void bt_arena_reset(struct bt_arena *a);
/* Frees every block. */
void bt_arena_free(struct bt_arena *a);

#endif
