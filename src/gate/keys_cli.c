/* `baton keys`: the admin API's key operations from the command line, on the
 * configured store file. Flags become the same JSON object the admin API
 * takes, so both are judged by one validator (bt_key_patch_parse). */
#include "gate/keys_cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/buf.h"
#include "store/keys.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: baton keys create -c FILE [FIELDS]\n"
            "       baton keys list -c FILE [--json]\n"
            "       baton keys get -c FILE ID\n"
            "       baton keys update -c FILE ID [FIELDS]\n"
            "       baton keys revoke -c FILE ID\n"
            "\n"
            "Manages virtual keys in the store FILE names (store.sqlite, default baton.db\n"
            "beside it), also while servers run on it: they see a change within a second.\n"
            "`create` prints the new key once, in a JSON object; only its hash is kept.\n"
            "FIELDS (see docs/governance.md; `null` clears a field in update):\n"
            "  --user NAME  --team NAME  --models A,B  --rpm N  --tpm N  --concurrency N\n"
            "  --budget-usd 12.50  --budget-period day|week|month\n"
            "  --expires-at 2027-01-31T00:00:00Z|UNIX_SECONDS  --metadata '{\"k\":\"v\"}'\n");
}

/* A plain number as JSON: digits, at most one '.', no sign or exponent. */
static bool plain_number(const char *s)
{
    if (!*s) return false;
    int dots = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.') dots++;
        else if (*p < '0' || *p > '9') return false;
    }
    return dots <= 1 && s[0] != '.';
}

enum { F_STR, F_NUM, F_LIST, F_TIME, F_JSON };

struct flag {
    const char *opt;   /* command-line name */
    const char *field; /* JSON field */
    int kind;
};

static const struct flag flags[] = {
    {"user", "user", F_STR},           {"team", "team", F_STR},
    {"models", "models", F_LIST},      {"rpm", "rpm", F_NUM},
    {"tpm", "tpm", F_NUM},             {"concurrency", "concurrency", F_NUM},
    {"budget-usd", "budget_usd", F_NUM}, {"budget-period", "budget_period", F_STR},
    {"expires-at", "expires_at", F_TIME}, {"metadata", "metadata", F_JSON},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

/* Adds `--opt value` to the JSON object being written. False after a message. */
static bool add_flag(struct bt_jw *w, const struct flag *f, const char *v)
{
    bt_jw_key(w, f->field);
    if (strcmp(v, "null") == 0) {
        bt_jw_null(w);
        return true;
    }
    switch (f->kind) {
    case F_STR: bt_jw_cstr(w, v); return true;
    case F_NUM:
        if (!plain_number(v)) {
            fprintf(stderr, "baton keys: --%s expects a number, got '%s'\n", f->opt, v);
            return false;
        }
        bt_jw_raw(w, bt_str_c(v));
        return true;
    case F_TIME:
        if (plain_number(v) && !strchr(v, '.')) bt_jw_raw(w, bt_str_c(v));
        else bt_jw_cstr(w, v);
        return true;
    case F_JSON:
        if (bt_json_validate(v, strlen(v), 32, NULL, 0)) {
            fprintf(stderr, "baton keys: --%s expects a JSON object, got '%s'\n", f->opt, v);
            return false;
        }
        bt_jw_raw(w, bt_str_c(v));
        return true;
    case F_LIST: {
        bt_jw_arr_begin(w);
        const char *p = v;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            bt_jw_str(w, (struct bt_str){p, n});
            p += n + (c ? 1 : 0);
            if (c && !*p) bt_jw_str(w, BT_STR("")); /* "a," : an empty name, refused */
        }
        bt_jw_arr_end(w);
        return true;
    }
    }
    return false;
}

static void print_key(const struct bt_key_rec *k, const char *key)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_key_write_json(&w, k, (int64_t)time(NULL), key);
    if (!w.err) printf("%.*s\n", (int)b.len, b.p);
    bt_buf_free(&b);
}

static void fmt_time(int64_t t, char *out, size_t cap)
{
    if (!t) {
        snprintf(out, cap, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_table(const struct bt_key_list *l)
{
    int64_t now = (int64_t)time(NULL);
    printf("%-20s  %-15s  %-8s  %-16s  %-16s  %-20s  %s\n", "ID", "PREFIX", "STATUS", "USER",
           "TEAM", "EXPIRES", "MODELS");
    for (size_t i = 0; i < l->n; i++) {
        const struct bt_key_rec *k = &l->items[i];
        char exp[32], models[256] = "*";
        fmt_time(k->expires_at, exp, sizeof(exp));
        if (k->models) {
            size_t off = 0;
            models[0] = 0;
            for (size_t j = 0; j < k->nmodels && off + 1 < sizeof(models); j++) {
                int n = snprintf(models + off, sizeof(models) - off, "%s%s", j ? "," : "",
                                 k->models[j]);
                if (n < 0) break;
                off += (size_t)n;
            }
        }
        printf("%-20s  %-12s...  %-8s  %-16s  %-16s  %-20s  %s\n", k->id, k->prefix,
               bt_key_status(k, now), k->user ? k->user : "-", k->team ? k->team : "-", exp,
               models);
    }
}

int bt_keys_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    bool create = strcmp(sub, "create") == 0, list = strcmp(sub, "list") == 0,
         get = strcmp(sub, "get") == 0, update = strcmp(sub, "update") == 0,
         revoke = strcmp(sub, "revoke") == 0;
    if (!create && !list && !get && !update && !revoke) {
        fprintf(stderr, "baton keys: unknown subcommand '%s' (try --help)\n", sub);
        return 2;
    }
    struct option opts[NFLAGS + 4];
    size_t no = 0;
    opts[no++] = (struct option){"config", required_argument, NULL, 'c'};
    opts[no++] = (struct option){"json", no_argument, NULL, 'j'};
    opts[no++] = (struct option){"help", no_argument, NULL, 'h'};
    for (size_t i = 0; i < NFLAGS; i++)
        opts[no++] = (struct option){flags[i].opt, required_argument, NULL, 1000 + (int)i};
    opts[no] = (struct option){NULL, 0, NULL, 0};
    const char *config = NULL;
    bool json = false;
    struct bt_buf body;
    bt_buf_init(&body, 1u << 20);
    struct bt_jw w;
    bt_jw_init(&w, &body);
    bt_jw_obj_begin(&w);
    int nfields = 0, rc = 2, c;
    struct bt_store *s = NULL;
    struct bt_config *cfg = NULL;
    optind = 2;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'j') {
            json = true;
        } else if (c == 'h') {
            usage(stdout);
            rc = 0;
            goto out;
        } else if (c >= 1000 && c < 1000 + (int)NFLAGS) {
            if ((list || get || revoke)) {
                fprintf(stderr, "baton keys %s: --%s does not apply\n", sub, flags[c - 1000].opt);
                goto out;
            }
            if (!add_flag(&w, &flags[c - 1000], optarg)) goto out;
            nfields++;
        } else {
            goto out;
        }
    }
    bt_jw_obj_end(&w);
    const char *id = NULL;
    if (get || update || revoke) {
        if (optind != argc - 1) {
            fprintf(stderr, "baton keys %s: give one key id (try --help)\n", sub);
            goto out;
        }
        id = argv[optind];
    } else if (optind != argc) {
        fprintf(stderr, "baton keys %s: unexpected argument '%s'\n", sub, argv[optind]);
        goto out;
    }
    if (!config) {
        fprintf(stderr, "baton keys %s: -c FILE is required (try --help)\n", sub);
        goto out;
    }
    if (update && !nfields) {
        fprintf(stderr, "baton keys update: nothing to change (give fields such as --rpm 100)\n");
        goto out;
    }
    rc = 1;
    if (w.err) {
        fprintf(stderr, "baton keys: %s\n", bt_strerror(w.err));
        goto out;
    }
    enum bt_err err;
    if (!(cfg = bt_config_load_for_store(config, "baton keys"))) goto out;
    char why[600];
    struct bt_store_where where = {cfg->store.sqlite, cfg->store.postgres};
    if (bt_store_open(&where, &s, why, sizeof(why))) {
        fprintf(stderr, "baton keys: cannot open the store: %s\n", why);
        goto out;
    }
    struct bt_key_rec k;
    if (list) {
        struct bt_key_list l;
        if (s->ops->key_list(s, &l)) {
            fprintf(stderr, "baton keys list: %s\n", s->errmsg);
            goto out;
        }
        if (json)
            for (size_t i = 0; i < l.n; i++) print_key(&l.items[i], NULL);
        else
            print_table(&l);
        bt_key_list_free(&l);
        rc = 0;
        goto out;
    }
    if (get) {
        if (s->ops->key_get(s, id, &k)) {
            fprintf(stderr, "baton keys get: %s\n", s->errmsg);
            goto out;
        }
    } else if (revoke) {
        if (bt_store_key_revoke(s, id, &k, why, sizeof(why))) {
            fprintf(stderr, "baton keys revoke: %s\n", why);
            goto out;
        }
    } else {
        struct bt_key_patch p;
        err = bt_key_patch_parse(bt_buf_str(&body), (int64_t)time(NULL), &p, why, sizeof(why));
        char key[BT_KEY_LEN + 1];
        if (!err)
            err = create ? bt_store_key_create(s, &p, key, &k, why, sizeof(why))
                         : bt_store_key_update(s, id, &p, &k, why, sizeof(why));
        bt_key_patch_free(&p);
        if (err) {
            fprintf(stderr, "baton keys %s: %s\n", sub, why);
            goto out;
        }
        if (create) {
            print_key(&k, key);
            fprintf(stderr, "baton keys: the key is shown this once; only its hash is stored\n");
            memset(key, 0, sizeof(key));
            bt_key_rec_free(&k);
            rc = 0;
            goto out;
        }
    }
    print_key(&k, NULL);
    bt_key_rec_free(&k);
    rc = 0;
out:
    bt_store_close(s);
    if (cfg) bt_config_unref(cfg);
    bt_buf_free(&body);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
