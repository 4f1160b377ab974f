/* The store (SQLite backend: open, migrations, CRUD), virtual keys (hashing,
 * generation, the field validator), the key table (lookup by digest, constant-
 * time compare of the whole digest) and the key service's snapshot swap. Each
 * test works in its own temporary directory. */
#include "harness.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "store/keys.h"
#include "store/ledger.h"
#include "store/store.h"

static char tmpl[64];

static const char *temp_db(void)
{
    static char path[128];
    snprintf(tmpl, sizeof(tmpl), "/tmp/baton-store-XXXXXX");
    if (!mkdtemp(tmpl)) return NULL;
    snprintf(path, sizeof(path), "%s/t.db", tmpl);
    return path;
}

static void cleanup(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpl);
}

/* A new SQLite store in a temporary directory (cleanup() removes it). */
static struct bt_store *temp_store(void)
{
    const char *path = temp_db();
    char why[600];
    struct bt_store *s = NULL;
    if (!path || bt_store_open_sqlite(path, &s, why, sizeof(why))) return NULL;
    return s;
}

static enum bt_err patch(const char *json, struct bt_key_patch *p, char *why, size_t cap)
{
    return bt_key_patch_parse(bt_str_c(json), (int64_t)time(NULL), p, why, cap);
}

TEST(hash_is_sha256)
{
    unsigned char h[BT_KEY_HASH_LEN];
    bt_key_hash(BT_STR("abc"), h);
    static const unsigned char want[4] = {0xba, 0x78, 0x16, 0xbf};
    CHECK(memcmp(h, want, 4) == 0);
    CHECK(h[31] == 0xad);
}

TEST(generate_keys)
{
    char a[BT_KEY_LEN + 1], b[BT_KEY_LEN + 1];
    struct bt_key_rec ka, kb;
    bt_key_rec_init(&ka);
    bt_key_rec_init(&kb);
    REQUIRE(bt_key_generate(a, &ka) == BT_OK);
    REQUIRE(bt_key_generate(b, &kb) == BT_OK);
    CHECK_INT(strlen(a), BT_KEY_LEN);
    CHECK(strncmp(a, "sk-bt-", 6) == 0);
    CHECK(strcmp(a, b) != 0);
    CHECK(strcmp(ka.id, kb.id) != 0);
    CHECK_INT(strlen(ka.id), BT_KEY_ID_LEN);
    CHECK(strncmp(ka.prefix, a, BT_KEY_PREFIX_LEN) == 0);
    for (size_t i = 6; i < BT_KEY_LEN; i++)
        CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
    unsigned char h[BT_KEY_HASH_LEN];
    bt_key_hash(bt_str_c(a), h);
    CHECK(memcmp(h, ka.hash, BT_KEY_HASH_LEN) == 0);
}

TEST(patch_validation)
{
    char why[400];
    struct bt_key_patch p;
    CHECK(patch("{\"user\":\"u\",\"team\":\"t\",\"models\":[\"a\",\"b\"],\"rpm\":100,\"tpm\":2000,"
                "\"concurrency\":3,\"budget_usd\":12.5,\"budget_period\":\"week\","
                "\"expires_at\":\"2099-01-31T01:00:00+01:00\",\"metadata\":{\"x\":[1]}}",
                &p, why, sizeof(why)) == BT_OK);
    CHECK_STR(p.v.user, "u");
    CHECK_INT(p.v.nmodels, 2);
    CHECK_INT(p.v.rpm, 100);
    CHECK_INT(p.v.budget_micro_usd, 12500000);
    CHECK_INT(p.v.budget_period, BT_PERIOD_WEEK);
    CHECK_INT(p.v.expires_at, 4073500800LL); /* 2099-01-31T00:00:00Z */
    CHECK_STR(p.v.metadata, "{\"x\":[1]}");
    bt_key_patch_free(&p);
    CHECK(patch("{\"budget_usd\":0.000001,\"expires_at\":4073158800}", &p, why, sizeof(why)) ==
          BT_OK);
    CHECK_INT(p.v.budget_micro_usd, 1);
    CHECK_INT(p.v.expires_at, 4073158800LL);
    bt_key_patch_free(&p);
    CHECK(patch("{\"rpm\":null}", &p, why, sizeof(why)) == BT_OK);
    CHECK_INT(p.set, BT_KF_RPM);
    CHECK_INT(p.v.rpm, -1);
    bt_key_patch_free(&p);
    static const char *const bad[][2] = {
        {"[]", "JSON object"},
        {"{\"nope\":1}", "Unknown field 'nope'"},
        {"{\"rpm\":1,\"rpm\":2}", "twice"},
        {"{\"rpm\":0}", "'rpm'"},
        {"{\"rpm\":1.5}", "'rpm'"},
        {"{\"tpm\":\"5\"}", "'tpm'"},
        {"{\"budget_usd\":1.1234567}", "'budget_usd'"},
        {"{\"budget_usd\":-1}", "'budget_usd'"},
        {"{\"budget_usd\":1e3}", "'budget_usd'"},
        {"{\"budget_period\":\"year\"}", "'budget_period'"},
        {"{\"expires_at\":\"2001-01-01T00:00:00Z\"}", "in the past"},
        {"{\"expires_at\":\"2099-02-30T00:00:00Z\"}", "'expires_at'"},
        {"{\"expires_at\":\"tomorrow\"}", "'expires_at'"},
        {"{\"metadata\":[1]}", "'metadata'"},
        {"{\"models\":\"a\"}", "'models'"},
        {"{\"models\":[\"\"]}", "'models'"},
        {"{\"user\":\"\"}", "'user'"},
        {"{\"user\":", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        if (patch(bad[i][0], &p, why, sizeof(why)) != BT_EINVAL || !strstr(why, bad[i][1]))
            H_FAIL("%s: want an error with \"%s\", got \"%s\"", bad[i][0], bad[i][1], why);
        bt_key_patch_free(&p);
    }
}

TEST(sqlite_open_migrate_crud)
{
    const char *path = temp_db();
    REQUIRE(path);
    char why[600];
    struct bt_store *s = NULL;
    REQUIRE(bt_store_open_sqlite(path, &s, why, sizeof(why)) == BT_OK);
    struct bt_key_patch p;
    REQUIRE(patch("{\"user\":\"ann\",\"models\":[\"chat\"],\"budget_usd\":5}", &p, why,
                  sizeof(why)) == BT_OK);
    char key[BT_KEY_LEN + 1];
    struct bt_key_rec k;
    REQUIRE(bt_store_key_create(s, &p, key, &k, why, sizeof(why)) == BT_OK);
    bt_key_patch_free(&p);
    CHECK_INT(k.budget_period, BT_PERIOD_MONTH); /* a budget without a period */
    char id[BT_KEY_ID_LEN + 1];
    memcpy(id, k.id, sizeof(id));
    bt_key_rec_free(&k);
    bt_store_close(s);

    /* Reopened: the migration is not applied twice and the key is there. */
    REQUIRE(bt_store_open_sqlite(path, &s, why, sizeof(why)) == BT_OK);
    REQUIRE(s->ops->key_get(s, id, &k) == BT_OK);
    CHECK_STR(k.user, "ann");
    CHECK_INT(k.nmodels, 1);
    CHECK_STR(k.models[0], "chat");
    CHECK_INT(k.budget_micro_usd, 5000000);
    unsigned char h[BT_KEY_HASH_LEN];
    bt_key_hash(bt_str_c(key), h);
    CHECK(memcmp(h, k.hash, sizeof(h)) == 0);
    bt_key_rec_free(&k);
    REQUIRE(patch("{\"models\":null,\"rpm\":7,\"user\":null}", &p, why, sizeof(why)) == BT_OK);
    CHECK(bt_store_key_update(s, id, &p, &k, why, sizeof(why)) == BT_OK);
    bt_key_patch_free(&p);
    CHECK(!k.models && k.rpm == 7 && !k.user && k.budget_micro_usd == 5000000);
    bt_key_rec_free(&k);
    CHECK(bt_store_key_revoke(s, id, &k, why, sizeof(why)) == BT_OK);
    CHECK(k.revoked_at > 0);
    bt_key_rec_free(&k);
    REQUIRE(patch("{\"rpm\":8}", &p, why, sizeof(why)) == BT_OK);
    CHECK(bt_store_key_update(s, id, &p, &k, why, sizeof(why)) == BT_EBUSY);
    CHECK(bt_store_key_update(s, "key_0000000000000000", &p, &k, why, sizeof(why)) ==
          BT_ENOTFOUND);
    bt_key_patch_free(&p);
    CHECK(bt_store_key_revoke(s, "key_0000000000000000", &k, why, sizeof(why)) == BT_ENOTFOUND);
    struct bt_key_list l;
    REQUIRE(s->ops->key_list(s, &l) == BT_OK);
    CHECK_INT(l.n, 1);
    bt_key_list_free(&l);
    bt_store_close(s);

    /* A file from a newer baton is refused. */
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, 0)", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    CHECK(bt_store_open_sqlite(path, &s, why, sizeof(why)) != BT_OK);
    CHECK(strstr(why, "newer"));
    cleanup();
}

static struct bt_key_rec rec_with_hash(const unsigned char *h, bool revoked)
{
    struct bt_key_rec r;
    bt_key_rec_init(&r);
    memcpy(r.hash, h, BT_KEY_HASH_LEN);
    snprintf(r.id, sizeof(r.id), "key_%02x%02x", h[0], h[31]);
    r.revoked_at = revoked ? 1 : 0;
    return r;
}

TEST(table_lookup)
{
    unsigned char a[32], b[32], c[32], near[32];
    bt_key_hash(BT_STR("a"), a);
    bt_key_hash(BT_STR("b"), b);
    bt_key_hash(BT_STR("c"), c);
    memcpy(near, a, 32);
    near[31] ^= 1; /* the same slot, a different digest */
    struct bt_key_list l = {calloc(3, sizeof(struct bt_key_rec)), 3};
    REQUIRE(l.items);
    l.items[0] = rec_with_hash(a, false);
    l.items[1] = rec_with_hash(b, false);
    l.items[2] = rec_with_hash(c, true);
    struct bt_keytab *t = NULL;
    REQUIRE(bt_keytab_build(&l, &t) == BT_OK);
    bt_key_list_free(&l);
    CHECK_INT(bt_keytab_count(t), 2);
    const struct bt_key_rec *r = bt_keytab_find(t, a);
    CHECK(r && memcmp(r->hash, a, 32) == 0);
    r = bt_keytab_find(t, b);
    CHECK(r && memcmp(r->hash, b, 32) == 0);
    CHECK(!bt_keytab_find(t, c));    /* revoked: not in the table */
    CHECK(!bt_keytab_find(t, near)); /* whole digest compared */
    CHECK(!bt_keytab_find(NULL, a));
    bt_keytab_unref(t);
}

TEST(service_swaps_tables)
{
    const char *path = temp_db();
    REQUIRE(path);
    char why[600];
    struct bt_keys *ks = NULL;
    struct bt_store_where where = {path, NULL};
    REQUIRE(bt_keys_start(&where, NULL, &ks, why, sizeof(why)) == BT_OK);
    struct bt_keytab *cached = NULL;
    uint64_t gen = 0;
    struct bt_keytab *t0 = bt_keys_current(ks, &cached, &gen);
    REQUIRE(t0);
    CHECK_INT(bt_keytab_count(t0), 0);
    CHECK(bt_keys_current(ks, &cached, &gen) == t0); /* unchanged: the same table */
    struct bt_keytab *old = bt_keytab_ref(t0);       /* a request still holding it */
    struct bt_key_patch p;
    REQUIRE(patch("{}", &p, why, sizeof(why)) == BT_OK);
    char key[BT_KEY_LEN + 1];
    struct bt_key_rec k;
    REQUIRE(bt_keys_create(ks, &p, key, &k, why, sizeof(why)) == BT_OK);
    bt_key_patch_free(&p);
    struct bt_keytab *t1 = bt_keys_current(ks, &cached, &gen);
    CHECK(t1 != old);
    CHECK_INT(bt_keytab_count(t1), 1);
    CHECK(bt_keytab_find(t1, k.hash));
    CHECK_INT(bt_keytab_count(old), 0); /* the old snapshot is intact */
    bt_keytab_unref(old);

    /* Another handle (another process, `baton keys`) writes: the service sees it. */
    struct bt_store *s2 = NULL;
    REQUIRE(bt_store_open_sqlite(path, &s2, why, sizeof(why)) == BT_OK);
    CHECK(bt_store_key_revoke(s2, k.id, NULL, why, sizeof(why)) == BT_OK);
    bt_store_close(s2);
    bt_key_rec_free(&k);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) { /* the thread polls every 250 ms */
        gone = bt_keytab_count(bt_keys_current(ks, &cached, &gen)) == 0;
        if (!gone) usleep(20000);
    }
    CHECK(gone);
    bt_keytab_unref(cached);
    bt_keys_stop(ks);
    cleanup();
}

TEST(limits_in_memory)
{
    struct bt_key_live live;
    memset(&live, 0, sizeof(live));
    struct bt_key_rec k;
    bt_key_rec_init(&k);
    bool held = false;
    const char *which = NULL;
    int64_t ra = 0, t = 6000000; /* a minute's start */
    CHECK(bt_key_take(&k, t, &held, &which, &ra) && !held); /* no counters: no check */
    k.live = &live;
    k.concurrency = 2;
    k.rpm = 3;
    CHECK(bt_key_take(&k, t, &held, &which, &ra) && held);
    CHECK(bt_key_take(&k, t + 1, &held, &which, &ra) && held);
    CHECK(!bt_key_take(&k, t + 2, &held, &which, &ra) && !held);
    CHECK_STR(which, "concurrency");
    CHECK_INT(atomic_load(&live.inflight), 2);
    bt_key_release(&live);
    CHECK(bt_key_take(&k, t + 10, &held, &which, &ra) && held); /* the third of the minute */
    bt_key_release(&live);
    CHECK(!bt_key_take(&k, t + 20, &held, &which, &ra) && !held);
    CHECK_STR(which, "rpm");
    CHECK_INT(ra, 40);
    CHECK_INT(atomic_load(&live.inflight), 1); /* a refusal holds nothing */
    CHECK(bt_key_take(&k, t + 60, &held, &which, &ra)); /* the next minute */
    bt_key_release(&live);
    bt_key_release(&live);
    CHECK_INT(atomic_load(&live.inflight), 0);
    /* tokens per minute: estimates taken, then corrected to the usage */
    int64_t minute = 0;
    CHECK(bt_key_take_tokens(&k, t, 1000000, &minute, &ra)); /* no tpm: no check */
    k.tpm = 100;
    CHECK(bt_key_take_tokens(&k, t, 60, &minute, &ra));
    CHECK_INT(minute, t / 60);
    CHECK(!bt_key_take_tokens(&k, t + 1, 60, &minute, &ra)); /* 120 > 100 */
    CHECK_INT(ra, 59);
    bt_key_correct_tokens(&live, minute, 25 - 60);  /* it used 25 */
    CHECK(bt_key_take_tokens(&k, t + 2, 60, &minute, &ra)); /* 85 */
    CHECK_INT(atomic_load(&live.tokens), 85);
    CHECK(!bt_key_take_tokens(&k, t + 3, 16, &minute, &ra)); /* 101 */
    CHECK(bt_key_take_tokens(&k, t + 3, 15, &minute, &ra));  /* exactly 100 */
    CHECK(bt_key_take_tokens(&k, t + 60, 100, &minute, &ra)); /* a new minute */
    bt_key_correct_tokens(&live, t / 60, -50); /* an old minute's correction: ignored */
    CHECK_INT(atomic_load(&live.tokens), 100);
    CHECK(!bt_key_take_tokens(&k, t + 61, 101 - 100, &minute, &ra));
}

TEST(period_starts)
{
    /* 2026-12-09 (a Wednesday) 15:30:00 UTC */
    int64_t t = 1796830200000;
    CHECK_INT(bt_period_start_ms(BT_PERIOD_DAY, t), 1796774400000);   /* 12-09 00:00 */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, t), 1796601600000);  /* Mon 12-07 */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, t), 1796083200000); /* 12-01 */
    /* a Monday at midnight is its own week's start; a Sunday belongs to the week before */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, 1796601600000), 1796601600000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, 1796601599999), 1795996800000);
    /* the month before: 2026-11-30 23:59:59.999 */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, 1796083199999), 1793491200000);
    /* epoch itself (a Thursday): week starts on Monday 1969-12-29 */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, 0), -3 * 86400000LL);
    /* a leap day, 2028-02-29 12:00: its own day, the week of Monday 02-28, February */
    int64_t leap = 1835438400000;
    CHECK_INT(bt_period_start_ms(BT_PERIOD_DAY, leap), 1835395200000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, leap), 1835308800000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, leap), 1832976000000);
    /* its last millisecond is still February; the next is March 1st */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, 1835481599999), 1832976000000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, 1835481600000), 1835481600000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_DAY, 1835481599999), 1835395200000);
    /* the year's end: 2026-12-31 23:59:59.999 is December and the week of Monday
     * 12-28; 2027-01-01 starts a month but not a week (Monday 2027-01-04 does) */
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, 1798761599999), 1796083200000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_MONTH, 1798761600000), 1798761600000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, 1798761600000), 1798416000000);
    CHECK_INT(bt_period_start_ms(BT_PERIOD_WEEK, 1799020800000), 1799020800000);
}

static struct bt_usage_rec *rec(const char *key, const char *user, const char *team,
                                const char *model, int64_t ts_ms, int64_t cost)
{
    struct bt_usage_rec *r = bt_usage_rec_new("req", key, user, team, bt_str_c(model),
                                              BT_STR("sim"), BT_STR("m1"));
    if (!r) abort();
    r->ts_ms = ts_ms;
    r->input_tokens = 10;
    r->output_tokens = 5;
    r->cost_pusd = cost;
    r->cost_known = true;
    r->status = 200;
    return r;
}

TEST(ledger_append_spend_report)
{
    const char *path = temp_db();
    REQUIRE(path);
    char why[600];
    struct bt_store *s = NULL;
    REQUIRE(bt_store_open_sqlite(path, &s, why, sizeof(why)) == BT_OK);
    int64_t now = 1796830200000;  /* Wed 2026-12-09 15:30 UTC */
    int64_t mon = 1796601600000 + 3600000, nov = 1793491200000 + 3600000, dec1 = 1796083200000 + 60000;
    struct bt_usage_rec *a = rec("key_a", "ann", "red", "chat", now - 1000, 7);
    a->next = rec("key_a", "ann", "red", "chat", mon, 11);
    a->next->next = rec("key_a", "ann", "red", "embed", dec1, 13);
    a->next->next->next = rec("key_a", "ann", "red", "chat", nov, 1000);
    a->next->next->next->next = rec("master", "", "", "chat", now, 5);
    CHECK(s->ops->usage_append(s, a) == BT_OK);
    for (struct bt_usage_rec *r = a, *n; r; r = n) n = r->next, free(r);
    struct bt_spend_list sl;
    REQUIRE(s->ops->spend(s, now, &sl) == BT_OK);
    CHECK_INT(sl.n, 4); /* key_a, master, and key_a's team and user */
    for (size_t i = 0; i < sl.n; i++) {
        if (strcmp(sl.items[i].key_id, "master") == 0) {
            CHECK_INT(sl.items[i].day_pusd, 5);
        } else {
            CHECK(strcmp(sl.items[i].key_id, "key_a") == 0 ||
                  strcmp(sl.items[i].key_id, "team:red") == 0 ||
                  strcmp(sl.items[i].key_id, "user:ann") == 0);
            CHECK_INT(sl.items[i].day_pusd, 7);
            CHECK_INT(sl.items[i].week_pusd, 18);
            CHECK_INT(sl.items[i].month_pusd, 31); /* November's 1000 is another month */
        }
    }
    free(sl.items);
    struct bt_usage_query q = {.group = BT_UG_MODEL, .key_id = "key_a"};
    struct bt_usage_rows ur;
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    REQUIRE(ur.n == 2);
    CHECK_STR(ur.items[0].group, "chat");
    CHECK_INT(ur.items[0].requests, 3);
    CHECK_INT(ur.items[0].cost_pusd, 1018);
    CHECK_INT(ur.items[0].input_tokens, 30);
    CHECK_STR(ur.items[1].group, "embed");
    free(ur.items);
    q = (struct bt_usage_query){.group = BT_UG_DAY, .since_ms = 1796083200000};
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    REQUIRE(ur.n == 3);
    CHECK_STR(ur.items[0].group, "2026-12-01");
    CHECK_STR(ur.items[1].group, "2026-12-07");
    CHECK_STR(ur.items[2].group, "2026-12-09");
    CHECK_INT(ur.items[2].requests, 2);
    CHECK_INT(ur.items[2].cost_pusd, 12);
    free(ur.items);
    q = (struct bt_usage_query){.group = BT_UG_NONE, .team = "nobody"};
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    CHECK_INT(ur.n, 0);
    free(ur.items);
    /* owners: put, get, list, replace, delete */
    struct bt_owner_rec o = {.kind = BT_OWNER_TEAM, .name = "red", .budget_micro_usd = 5000000,
                             .budget_period = BT_PERIOD_WEEK, .created_at = 1, .updated_at = 1};
    CHECK(s->ops->owner_put(s, &o) == BT_OK);
    o.kind = BT_OWNER_USER;
    o.name = "ann";
    o.budget_micro_usd = -1;
    o.budget_period = BT_PERIOD_NONE;
    CHECK(s->ops->owner_put(s, &o) == BT_OK);
    struct bt_owner_rec g;
    REQUIRE(s->ops->owner_get(s, BT_OWNER_TEAM, "red", &g) == BT_OK);
    CHECK_INT(g.budget_micro_usd, 5000000);
    CHECK(g.budget_period == BT_PERIOD_WEEK);
    free(g.name);
    CHECK(s->ops->owner_get(s, BT_OWNER_USER, "red", &g) == BT_ENOTFOUND);
    o = (struct bt_owner_rec){.kind = BT_OWNER_TEAM, .name = "red", .budget_micro_usd = 7,
                              .budget_period = BT_PERIOD_DAY, .created_at = 9, .updated_at = 2};
    CHECK(s->ops->owner_put(s, &o) == BT_OK); /* replaces; created_at kept */
    struct bt_owner_list ol;
    REQUIRE(s->ops->owner_list(s, &ol) == BT_OK);
    REQUIRE(ol.n == 2);
    CHECK(ol.items[0].kind == BT_OWNER_TEAM && ol.items[0].budget_micro_usd == 7);
    CHECK_INT(ol.items[0].created_at, 1);
    CHECK(ol.items[1].kind == BT_OWNER_USER && ol.items[1].budget_micro_usd == -1);
    bt_owner_list_free(&ol);
    CHECK(s->ops->owner_delete(s, BT_OWNER_TEAM, "red") == BT_OK);
    CHECK(s->ops->owner_delete(s, BT_OWNER_TEAM, "red") == BT_ENOTFOUND);
    bt_store_close(s);
    cleanup();
}

static int ncommitted;
static void on_commit(void *ud, const struct bt_usage_rec *recs)
{
    (void)ud;
    for (; recs; recs = recs->next) ncommitted++;
}

TEST(ledger_writer_batches_and_flushes_at_stop)
{
    const char *path = temp_db();
    REQUIRE(path);
    char why[600];
    struct bt_store *s = NULL;
    REQUIRE(bt_store_open_sqlite(path, &s, why, sizeof(why)) == BT_OK);
    uv_mutex_t lock;
    uv_mutex_init(&lock);
    struct bt_ledger *l = NULL;
    struct bt_ledger_opts o = {.interval_ms = 60000, .batch = 3};
    ncommitted = 0;
    REQUIRE(bt_ledger_start(s, &lock, &o, on_commit, NULL, &l) == BT_OK);
    for (int i = 0; i < 2; i++) bt_ledger_push(l, rec("key_b", "", "", "chat", 1000, 1));
    usleep(100000);
    uv_mutex_lock(&lock);
    CHECK_INT(ncommitted, 0); /* two of a batch of three wait for the interval */
    uv_mutex_unlock(&lock);
    bt_ledger_push(l, rec("key_b", "", "", "chat", 1000, 1));
    for (int i = 0; i < 100; i++) {
        uv_mutex_lock(&lock);
        int n = ncommitted;
        uv_mutex_unlock(&lock);
        if (n == 3) break;
        usleep(10000);
    }
    uv_mutex_lock(&lock);
    CHECK_INT(ncommitted, 3); /* the third started the write */
    uv_mutex_unlock(&lock);
    for (int i = 0; i < 7; i++) bt_ledger_push(l, rec("key_b", "", "", "chat", 1000, 1));
    bt_ledger_stop(l); /* writes the 7 queued, in batches of 3 */
    CHECK_INT(ncommitted, 10);
    struct bt_usage_query q = {.group = BT_UG_KEY};
    struct bt_usage_rows ur;
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    REQUIRE(ur.n == 1);
    CHECK_INT(ur.items[0].requests, 10);
    free(ur.items);
    bt_ledger_push(NULL, rec("x", "", "", "chat", 1, 1)); /* no ledger: freed */
    uv_mutex_destroy(&lock);
    bt_store_close(s);
    cleanup();
}

/* Rows older than the cutoff go, oldest first, at most `limit` per call, with
 * the daily spend of the days wholly before it; the current month's spend
 * stays. */
TEST(ledger_prune)
{
    struct bt_store *s = temp_store();
    REQUIRE(s);
    const int64_t day = 86400000;
    int64_t now = 1796830200000; /* Wed 2026-12-09 15:30 UTC */
    struct bt_usage_rec *a = rec("key_a", "ann", "red", "chat", now - 400 * day, 1);
    a->next = rec("key_a", "ann", "red", "chat", now - 100 * day, 2);
    a->next->next = rec("key_a", "ann", "red", "chat", now - 40 * day, 4);
    a->next->next->next = rec("key_a", "ann", "red", "chat", now - 2 * day, 8);
    a->next->next->next->next = rec("key_a", "ann", "red", "chat", now, 16);
    REQUIRE(s->ops->usage_append(s, a) == BT_OK);
    for (struct bt_usage_rec *r = a, *n; r; r = n) n = r->next, free(r);
    uint64_t n = 99;
    int64_t before = now - 31 * day;
    CHECK(s->ops->usage_prune(s, before, 2, &n) == BT_OK);
    CHECK_INT(n, 2); /* the two oldest */
    struct bt_usage_query q = {.group = BT_UG_NONE};
    struct bt_usage_rows ur;
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    REQUIRE(ur.n == 1);
    CHECK_INT(ur.items[0].requests, 3);
    CHECK_INT(ur.items[0].cost_pusd, 28);
    free(ur.items);
    CHECK(s->ops->usage_prune(s, before, 2, &n) == BT_OK);
    CHECK_INT(n, 1); /* fewer than the limit: none older is left */
    CHECK(s->ops->usage_prune(s, before, 2, &n) == BT_OK);
    CHECK_INT(n, 0);
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    REQUIRE(ur.n == 1);
    CHECK_INT(ur.items[0].requests, 2);
    CHECK_INT(ur.items[0].cost_pusd, 24);
    free(ur.items);
    struct bt_spend_list sl;
    REQUIRE(s->ops->spend(s, now, &sl) == BT_OK);
    REQUIRE(sl.n == 3);
    for (size_t i = 0; i < sl.n; i++) CHECK_INT(sl.items[i].month_pusd, 24);
    free(sl.items);
    sqlite3 *db = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/t.db", tmpl);
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *st = NULL;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*), min(day) FROM spend_daily", -1, &st, NULL) ==
            SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int64(st, 0), 6); /* two days each of the key, team and user */
    CHECK_INT(sqlite3_column_int64(st, 1), (now - 2 * day) / day);
    sqlite3_finalize(st);
    sqlite3_close(db);
    bt_store_close(s);
    cleanup();
}

/* The ledger's rows in all, read under `lock`; -1 on failure. */
static int64_t ledger_rows(struct bt_store *s, uv_mutex_t *lock)
{
    struct bt_usage_query q = {.group = BT_UG_NONE};
    struct bt_usage_rows ur = {0};
    uv_mutex_lock(lock);
    enum bt_err err = s->ops->usage_report(s, &q, &ur);
    uv_mutex_unlock(lock);
    int64_t n = err ? -1 : ur.n ? ur.items[0].requests : 0;
    free(ur.items);
    return n;
}

/* With a retention the writer deletes what outlived it at start, batch after
 * batch, and writes the records that come meanwhile. */
TEST(ledger_writer_prunes_at_start)
{
    struct bt_store *s = temp_store();
    REQUIRE(s);
    const int64_t day = 86400000, now = (int64_t)time(NULL) * 1000;
    const int old = BT_LEDGER_PRUNE_BATCH + 3;
    struct bt_usage_rec *head = NULL;
    for (int i = 0; i < old; i++) {
        struct bt_usage_rec *r = rec("key_c", "", "", "chat", now - 60 * day - i, 1);
        r->next = head;
        head = r;
    }
    struct bt_usage_rec *recent = rec("key_c", "", "", "chat", now - 20 * day, 1);
    recent->next = head;
    REQUIRE(s->ops->usage_append(s, recent) == BT_OK);
    for (struct bt_usage_rec *r = recent, *n; r; r = n) n = r->next, free(r);
    uv_mutex_t lock;
    uv_mutex_init(&lock);
    struct bt_ledger *l = NULL;
    struct bt_ledger_opts o = {.interval_ms = 10, .batch = 10, .retention_ms = 31 * day};
    REQUIRE(bt_ledger_start(s, &lock, &o, NULL, NULL, &l) == BT_OK);
    bt_ledger_push(l, rec("key_c", "", "", "chat", now, 1));
    for (int i = 0; i < 500 && ledger_rows(s, &lock) != 2; i++) usleep(10000);
    bt_ledger_stop(l);
    struct bt_usage_query q = {.group = BT_UG_NONE};
    struct bt_usage_rows ur;
    REQUIRE(s->ops->usage_report(s, &q, &ur) == BT_OK);
    REQUIRE(ur.n == 1);
    CHECK_INT(ur.items[0].requests, 2); /* the recent row and the one pushed */
    free(ur.items);
    uv_mutex_destroy(&lock);
    bt_store_close(s);
    cleanup();
}

int main(void)
{
    RUN(hash_is_sha256);
    RUN(period_starts);
    RUN(ledger_append_spend_report);
    RUN(ledger_writer_batches_and_flushes_at_stop);
    RUN(ledger_prune);
    RUN(ledger_writer_prunes_at_start);
    RUN(generate_keys);
    RUN(patch_validation);
    RUN(sqlite_open_migrate_crud);
    RUN(table_lookup);
    RUN(service_swaps_tables);
    RUN(limits_in_memory);
    return HARNESS_DONE();
}
