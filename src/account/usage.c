#include "account/usage.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"

/* "YYYY-MM-DD" as unix ms of that UTC midnight; false when not a real date. */
static bool parse_date(const char *s, int64_t *out)
{
    int y, m, d;
    char tail;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || s[4] != '-' ||
        s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31) return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d || back.tm_mon != m - 1) return false; /* 2026-02-30 */
    *out = (int64_t)t * 1000;
    return true;
}

enum bt_err bt_usage_query_set(struct bt_usage_query *q, const char *name, const char *value,
                               char *why, size_t whycap)
{
    if (strcmp(name, "since") == 0) {
        if (!parse_date(value, &q->since_ms)) {
            snprintf(why, whycap, "since must be a date, YYYY-MM-DD (UTC).");
            return BT_EINVAL;
        }
        return BT_OK;
    }
    if (strcmp(name, "group") == 0 || strcmp(name, "by") == 0) {
        if (!bt_usage_group_parse(bt_str_c(value), &q->group)) {
            snprintf(why, whycap, "%s must be one of key, team, user, model, deployment, day.",
                     name);
            return BT_EINVAL;
        }
        return BT_OK;
    }
    const char **slot = strcmp(name, "key") == 0     ? &q->key_id
                        : strcmp(name, "user") == 0  ? &q->user
                        : strcmp(name, "team") == 0  ? &q->team
                        : strcmp(name, "model") == 0 ? &q->model
                                                     : NULL;
    if (!slot) {
        snprintf(why, whycap,
                 "Unknown parameter '%.40s' (known: key, user, team, model, since, group).", name);
        return BT_EINVAL;
    }
    if (!*value) {
        snprintf(why, whycap, "%s must not be empty.", name);
        return BT_EINVAL;
    }
    *slot = value;
    return BT_OK;
}

enum bt_err bt_usage_query_parse(struct bt_str query, struct bt_arena *a, struct bt_usage_query *q,
                                 char *why, size_t whycap)
{
    *q = (struct bt_usage_query){0};
    struct bt_str rest = query;
    while (rest.len) {
        const char *amp = memchr(rest.p, '&', rest.len);
        struct bt_str pair = {rest.p, amp ? (size_t)(amp - rest.p) : rest.len};
        rest = amp ? (struct bt_str){amp + 1, rest.len - pair.len - 1} : BT_STR_NULL;
        if (!pair.len) continue;
        const char *eq = memchr(pair.p, '=', pair.len);
        struct bt_str name = {pair.p, eq ? (size_t)(eq - pair.p) : pair.len};
        struct bt_str raw = eq ? (struct bt_str){eq + 1, pair.len - name.len - 1} : BT_STR("");
        struct bt_buf b;
        bt_buf_init(&b, 1024);
        enum bt_err err = bt_buf_append_pct_decoded(&b, raw);
        if (!err) err = bt_buf_cstr(&b);
        struct bt_str value = err ? BT_STR_NULL : bt_arena_strdup(a, bt_buf_str(&b));
        bt_buf_free(&b);
        char nm[48];
        size_t nl = name.len < 40 ? name.len : 40;
        for (size_t i = 0; i < nl; i++) /* shown in a message: printable only */
            nm[i] = (unsigned char)name.p[i] < 0x20 || name.p[i] == 0x7f ? '?' : name.p[i];
        nm[nl] = 0;
        if (!value.p || memchr(value.p, 0, value.len)) {
            snprintf(why, whycap, "The value of '%s' is not a valid URL-encoded string.", nm);
            return BT_EINVAL;
        }
        if ((err = bt_usage_query_set(q, nm, value.p, why, whycap))) return err;
    }
    return BT_OK;
}

static void write_int(struct bt_jw *w, const char *key, int64_t v)
{
    bt_jw_key(w, key);
    bt_jw_int(w, v);
}

void bt_usage_write_json(struct bt_jw *w, const struct bt_usage_query *q,
                         const struct bt_usage_rows *rows)
{
    const char *g = q->group ? bt_usage_group_name(q->group) : NULL;
    bt_jw_obj_begin(w);
    bt_jw_key(w, "object");
    bt_jw_cstr(w, "list");
    bt_jw_key(w, "group");
    if (g) bt_jw_cstr(w, g);
    else bt_jw_null(w);
    bt_jw_key(w, "data");
    bt_jw_arr_begin(w);
    for (size_t i = 0; i < rows->n; i++) {
        const struct bt_usage_row *r = &rows->items[i];
        bt_jw_obj_begin(w);
        if (g) {
            bt_jw_key(w, g);
            bt_jw_cstr(w, r->group);
        }
        write_int(w, "requests", r->requests);
        write_int(w, "input_tokens", r->input_tokens);
        write_int(w, "cached_tokens", r->cached_tokens);
        write_int(w, "cache_write_tokens", r->cache_write_tokens);
        write_int(w, "output_tokens", r->output_tokens);
        write_int(w, "reasoning_tokens", r->reasoning_tokens);
        write_int(w, "total_tokens", r->input_tokens + r->output_tokens);
        char cost[BT_DECIMAL_MAX];
        bt_str_decimal(cost, sizeof(cost), r->cost_pusd, 12);
        bt_jw_key(w, "cost_usd");
        bt_jw_cstr(w, cost);
        bt_jw_obj_end(w);
    }
    bt_jw_arr_end(w);
    bt_jw_obj_end(w);
}

/* ---- baton usage ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: baton usage -c FILE [--by key|team|user|model|deployment|day]\n"
            "                   [--since YYYY-MM-DD] [--key ID] [--user U] [--team T]\n"
            "                   [--model M] [--json]\n"
            "\n"
            "Sums the usage ledger in the store FILE names (store.sqlite): requests,\n"
            "tokens and cost in USD, one row per group (one row in all without --by),\n"
            "since the date given (UTC) or from the start. Reads the file directly: no\n"
            "server needed; records a running server has not written yet (at most\n"
            "store.ledger_interval old) are not in it.\n");
}

static void print_table(const struct bt_usage_query *q, const struct bt_usage_rows *rows)
{
    const char *g = q->group ? bt_usage_group_name(q->group) : "all";
    char head[16];
    size_t i = 0;
    for (; g[i] && i + 1 < sizeof(head); i++) head[i] = (char)(g[i] >= 'a' && g[i] <= 'z' ? g[i] - 32 : g[i]);
    head[i] = 0;
    printf("%-28s  %9s  %12s  %12s  %12s  %12s  %s\n", head, "REQUESTS", "INPUT", "CACHED",
           "OUTPUT", "REASONING", "COST_USD");
    for (size_t j = 0; j < rows->n; j++) {
        const struct bt_usage_row *r = &rows->items[j];
        char cost[BT_DECIMAL_MAX];
        bt_str_decimal(cost, sizeof(cost), r->cost_pusd, 12);
        printf("%-28s  %9lld  %12lld  %12lld  %12lld  %12lld  %s\n",
               q->group ? (r->group[0] ? r->group : "-") : "all", (long long)r->requests,
               (long long)r->input_tokens, (long long)r->cached_tokens,
               (long long)r->output_tokens, (long long)r->reasoning_tokens, cost);
    }
}

int bt_usage_cli(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"by", required_argument, NULL, 'b'},
        {"since", required_argument, NULL, 's'},  {"key", required_argument, NULL, 'k'},
        {"user", required_argument, NULL, 'u'},   {"team", required_argument, NULL, 't'},
        {"model", required_argument, NULL, 'm'},  {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    bool json = false;
    struct bt_usage_query q = {0};
    char why[300];
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        const char *name = c == 'b'   ? "by"
                           : c == 's' ? "since"
                           : c == 'k' ? "key"
                           : c == 'u' ? "user"
                           : c == 't' ? "team"
                           : c == 'm' ? "model"
                                      : NULL;
        if (name) {
            if (bt_usage_query_set(&q, name, optarg, why, sizeof(why))) {
                fprintf(stderr, "baton usage: --%s\n", why);
                return 2;
            }
        } else if (c == 'c') {
            config = optarg;
        } else if (c == 'j') {
            json = true;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return 2;
    }
    int rc = 1;
    struct bt_config *cfg = NULL;
    struct bt_store *s = NULL;
    struct bt_usage_rows rows = {0};
    if (!(cfg = bt_config_load_for_store(config, "baton usage"))) goto out;
    char swhy[600];
    if (bt_store_open_sqlite(cfg->store.sqlite, &s, swhy, sizeof(swhy))) {
        fprintf(stderr, "baton usage: cannot open the store: %s\n", swhy);
        goto out;
    }
    if (s->ops->usage_report(s, &q, &rows)) {
        fprintf(stderr, "baton usage: %s\n", s->errmsg);
        goto out;
    }
    if (json) {
        struct bt_buf b;
        bt_buf_init(&b, 256u << 20);
        struct bt_jw w;
        bt_jw_init(&w, &b);
        bt_usage_write_json(&w, &q, &rows);
        if (!w.err) printf("%.*s\n", (int)b.len, b.p);
        bt_buf_free(&b);
        if (w.err) {
            fprintf(stderr, "baton usage: the report is too large\n");
            goto out;
        }
    } else {
        print_table(&q, &rows);
    }
    rc = 0;
out:
    free(rows.items);
    bt_store_close(s);
    if (cfg) bt_config_unref(cfg);
    return rc;
}
