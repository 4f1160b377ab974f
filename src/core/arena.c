#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct bt_arena_block {
    struct bt_arena_block *next; /* older block */
    size_t size;                 /* usable bytes in data */
    size_t off;                  /* next free offset in data */
    _Alignas(16) char data[];
};

void bt_arena_init(struct bt_arena *a, size_t block_size, size_t max)
{
    a->head = NULL;
    a->used = 0;
    a->max = max;
    a->block_size = block_size ? block_size : 4096;
}

void *bt_arena_alloc(struct bt_arena *a, size_t n)
{
    if (n == 0) n = 1;
    if (n > SIZE_MAX - 16) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    if (a->max && (need > a->max || a->used > a->max - need)) return NULL;
    struct bt_arena_block *b = a->head;
    if (!b || b->size - b->off < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        b = malloc(sizeof(*b) + size);
        if (!b) return NULL;
        b->size = size;
        b->off = 0;
        /* A block made for one oversized allocation goes behind the current one so
         * the current block's free space stays usable. */
        if (a->head && size > a->block_size) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->off;
    b->off += need;
    a->used += need;
    return p;
}

void *bt_arena_calloc(struct bt_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = bt_arena_alloc(a, n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

struct bt_str bt_arena_strdup(struct bt_arena *a, struct bt_str s)
{
    char *p = bt_arena_alloc(a, s.len + 1);
    if (!p) return BT_STR_NULL;
    if (s.len) memcpy(p, s.p, s.len);
    p[s.len] = '\0';
    return (struct bt_str){p, s.len};
}

void bt_arena_reset(struct bt_arena *a)
{
    struct bt_arena_block *keep = NULL;
    struct bt_arena_block *b = a->head;
    while (b) {
        struct bt_arena_block *next = b->next;
        if (!keep && b->size == a->block_size) {
            keep = b;
            keep->off = 0;
        } else {
            free(b);
        }
        b = next;
    }
    if (keep) keep->next = NULL;
    a->head = keep;
    a->used = 0;
}

void bt_arena_free(struct bt_arena *a)
{
    struct bt_arena_block *b = a->head;
    while (b) {
        struct bt_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}
