/* Usage reports from the ledger (docs/governance.md): the one filter and
 * grouping parser GET /admin/usage and `baton usage` share, the JSON answer,
 * the table, and the `baton usage` command. The ledger itself is the store's
 * (store/store.h, store/ledger.h). */
#ifndef BT_ACCOUNT_USAGE_H
#define BT_ACCOUNT_USAGE_H

#include <stddef.h>

#include "core/arena.h"
#include "json/json.h"
#include "store/store.h"

/* Sets one filter or the grouping of *q from a name and its value, borrowed
 * (q keeps pointers into `value`, which must be NUL-terminated and outlive q):
 * key, user, team, model (exact values), since (YYYY-MM-DD, UTC midnight),
 * group (key|team|user|model|deployment|day). BT_EINVAL with a message in why
 * for an unknown name or a bad value. */
enum bt_err bt_usage_query_set(struct bt_usage_query *q, const char *name, const char *value,
                               char *why, size_t whycap);

/* Parses a URL query string (`key=...&group=day`, values percent-decoded into
 * `a`) into *q with bt_usage_query_set for each parameter. BT_EINVAL with the
 * message in why for a broken escape, a control character, an unknown name or
 * a bad value. */
enum bt_err bt_usage_query_parse(struct bt_str query, struct bt_arena *a, struct bt_usage_query *q,
                                 char *why, size_t whycap);

/* Writes rows as {"object":"list","group":G|null,"data":[{G: value, "requests",
 * "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
 * "reasoning_tokens", "total_tokens", "cost_usd": "decimal string"}, ...]}. */
void bt_usage_write_json(struct bt_jw *w, const struct bt_usage_query *q,
                         const struct bt_usage_rows *rows);

/* `baton usage -c FILE [--by G] [--since DATE] [--key ID] [--user U] [--team T]
 * [--model M] [--json]`: a table (or the JSON answer) on stdout. Exit code 0,
 * 1 refused, 2 usage. */
int bt_usage_cli(int argc, char **argv);

#endif
