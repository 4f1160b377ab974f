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
    REQUIRE(bt_keys_start(&where, &ks, why, sizeof(why)) == BT_OK);
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
}

int main(void)
{
    RUN(hash_is_sha256);
    RUN(generate_keys);
    RUN(patch_validation);
    RUN(sqlite_open_migrate_crud);
    RUN(table_lookup);
    RUN(service_swaps_tables);
    RUN(limits_in_memory);
    return HARNESS_DONE();
}
