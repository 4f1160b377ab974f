/* Streaming JSON writer. Each level of w->count records bit 0 "something was
 * written at this level" and bit 1 "this level is an object", so the writer
 * knows where commas go and can refuse a value without a key (or a key in an
 * array). Level 0 is the top level, which takes exactly one value. */
#include "json/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LV_USED 1u
#define LV_OBJECT 2u

void bt_jw_init(struct bt_jw *w, struct bt_buf *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
    w->err = BT_OK;
}

static void put(struct bt_jw *w, const void *p, size_t n)
{
    if (w->err) return;
    enum bt_err e = bt_buf_append(w->out, p, n);
    if (e) w->err = e;
}

/* Writes what must precede a value (a comma, or nothing after a key) and checks
 * that a value is allowed here. */
static bool pre_value(struct bt_jw *w)
{
    if (w->err) return false;
    uint8_t *lv = &w->count[w->depth];
    if (w->after_key) {
        w->after_key = 0;
        return true;
    }
    if ((*lv & LV_OBJECT) || (w->depth == 0 && (*lv & LV_USED))) {
        w->err = BT_EINVAL;
        return false;
    }
    if (*lv & LV_USED) put(w, ",", 1);
    *lv |= LV_USED;
    return !w->err;
}

static void begin(struct bt_jw *w, char c, uint8_t kind)
{
    if (!pre_value(w)) return;
    if (w->depth + 1 >= BT_JW_MAX_DEPTH) {
        w->err = BT_ETOOBIG;
        return;
    }
    put(w, &c, 1);
    w->depth++;
    w->count[w->depth] = kind;
}

static void finish(struct bt_jw *w, char c, uint8_t kind)
{
    if (w->err) return;
    if (w->depth == 0 || (w->count[w->depth] & LV_OBJECT) != kind || w->after_key) {
        w->err = BT_EINVAL;
        return;
    }
    put(w, &c, 1);
    w->depth--;
}

void bt_jw_obj_begin(struct bt_jw *w) { begin(w, '{', LV_OBJECT); }
void bt_jw_obj_end(struct bt_jw *w) { finish(w, '}', LV_OBJECT); }
void bt_jw_arr_begin(struct bt_jw *w) { begin(w, '[', 0); }
void bt_jw_arr_end(struct bt_jw *w) { finish(w, ']', 0); }

void bt_jw_key_str(struct bt_jw *w, struct bt_str key)
{
    if (w->err) return;
    uint8_t *lv = &w->count[w->depth];
    if (!(*lv & LV_OBJECT) || w->after_key) {
        w->err = BT_EINVAL;
        return;
    }
    if (*lv & LV_USED) put(w, ",", 1);
    *lv |= LV_USED;
    if (!w->err) {
        enum bt_err e = bt_json_escape(w->out, key);
        if (e) w->err = e;
    }
    put(w, ":", 1);
    w->after_key = 1;
}

void bt_jw_str(struct bt_jw *w, struct bt_str s)
{
    if (!pre_value(w)) return;
    enum bt_err e = bt_json_escape(w->out, s);
    if (e) w->err = e;
}

void bt_jw_cstr(struct bt_jw *w, const char *s)
{
    if (!s) bt_jw_null(w);
    else bt_jw_str(w, bt_str_c(s));
}

void bt_jw_int(struct bt_jw *w, int64_t v)
{
    bt_jw_decimal(w, v, 0);
}

void bt_jw_double(struct bt_jw *w, double v)
{
    if (!isfinite(v)) {
        bt_jw_null(w);
        return;
    }
    if (!pre_value(w)) return;
    char tmp[40];
    int n = 0;
    /* The shortest of %.15g..%.17g that reads back as the same double. */
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (prec == 17 || strtod(tmp, NULL) == v) break;
    }
    if (n <= 0 || (size_t)n >= sizeof(tmp)) {
        w->err = BT_EINVAL;
        return;
    }
    put(w, tmp, (size_t)n);
}

void bt_jw_decimal(struct bt_jw *w, int64_t v, unsigned places)
{
    if (places > 18) {
        if (!w->err) w->err = BT_EINVAL; /* sticky: an earlier error stays the one reported */
        return;
    }
    if (!pre_value(w)) return;
    char tmp[BT_DECIMAL_MAX];
    size_t n = bt_str_decimal(tmp, sizeof(tmp), v, places);
    put(w, tmp, n);
}

void bt_jw_bool(struct bt_jw *w, bool v)
{
    if (!pre_value(w)) return;
    if (v) put(w, "true", 4);
    else put(w, "false", 5);
}

void bt_jw_null(struct bt_jw *w)
{
    if (!pre_value(w)) return;
    put(w, "null", 4);
}

void bt_jw_raw(struct bt_jw *w, struct bt_str json)
{
    if (w->err) return;
    if (json.len == 0) {
        w->err = BT_EINVAL;
        return;
    }
    if (!pre_value(w)) return;
    put(w, json.p, json.len);
}
