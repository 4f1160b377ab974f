#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/time.h"
#include "obs/metrics.h"

/* ---- helpers ---- */

static struct bt_metrics *make(unsigned shards, size_t max_series)
{
    struct bt_metrics *m = NULL;
    struct bt_metrics_opts o = {
        .shards = shards, .max_series = max_series, .version = "9.9.9-test"};
    if (bt_metrics_create(&o, &m)) return NULL;
    return m;
}

/* Renders into a fresh NUL-terminated malloc'd string (free()), NULL on error. */
static char *render(struct bt_metrics *m)
{
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    if (bt_metrics_render(m, &b) || bt_buf_cstr(&b)) {
        bt_buf_free(&b);
        return NULL;
    }
    if (!b.p) return calloc(1, 1);
    return bt_buf_steal(&b, NULL);
}

/* The line that starts with exactly `series` followed by a space, or NULL. */
static const char *find_line(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return p;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NULL;
}

/* The value of `series` as an integer, or -1 when the line is absent. */
static long long value(const char *text, const char *series)
{
    const char *l = find_line(text, series);
    if (!l) return -1;
    return strtoll(l + strlen(series) + 1, NULL, 10);
}

/* The value text of `series` copied into buf (for sums with a fraction). */
static const char *value_text(const char *text, const char *series, char *buf, size_t cap)
{
    const char *l = find_line(text, series);
    if (!l) return "(absent)";
    l += strlen(series) + 1;
    size_t n = strcspn(l, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(buf, l, n);
    buf[n] = 0;
    return buf;
}

static int count_prefix(const char *text, const char *prefix)
{
    int c = 0;
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, n) == 0) c++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return c;
}

/* Every sample line (not a comment) must be unique as a series. */
static bool no_duplicate_series(const char *text)
{
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    const char **starts = calloc(lines + 1, sizeof(*starts));
    size_t *lens = calloc(lines + 1, sizeof(*lens));
    size_t n = 0;
    bool ok = true;
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        if (*p != '#') {
            size_t linelen = e ? (size_t)(e - p) : strlen(p);
            const char *sp = memrchr(p, ' ', linelen);
            size_t len = sp ? (size_t)(sp - p) : linelen;
            for (size_t i = 0; i < n; i++)
                if (lens[i] == len && memcmp(starts[i], p, len) == 0) ok = false;
            starts[n] = p;
            lens[n++] = len;
        }
        p = e ? e + 1 : NULL;
    }
    free(starts);
    free(lens);
    return ok;
}

static bool have_promtool(void)
{
    return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* Runs `promtool check metrics` on text; true when it passes (or promtool is
 * absent, after saying so). Prints promtool's complaints on failure. */
static bool promtool_ok(const char *text)
{
    if (!have_promtool()) {
        fprintf(stderr,
                "  SKIP promtool check: promtool not installed (Debian package prometheus)\n");
        return true;
    }
    char in[] = "/tmp/bt_metrics_in_XXXXXX";
    char outp[] = "/tmp/bt_metrics_out_XXXXXX";
    int fi = mkstemp(in), fo = mkstemp(outp);
    if (fi < 0 || fo < 0) return false;
    size_t len = strlen(text);
    bool ok = write(fi, text, len) == (ssize_t)len;
    close(fi);
    close(fo);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s 2>&1", in, outp);
    int rc = system(cmd);
    FILE *f = fopen(outp, "r");
    char msg[4096] = "";
    size_t got = f ? fread(msg, 1, sizeof(msg) - 1, f) : 0;
    msg[got] = 0;
    if (f) fclose(f);
    unlink(in);
    unlink(outp);
    if (rc != 0 || got != 0) {
        fprintf(stderr, "  promtool rc=%d: %s\n", rc, msg);
        ok = false;
    }
    return ok;
}

static struct bt_metrics_req req(const char *model, const char *dep, int status, double lat_s,
                                 double ttft_s, long long in, long long out)
{
    return (struct bt_metrics_req){
        .model = bt_str_c(model),
        .deployment = bt_str_c(dep),
        .status = status,
        .latency_ns = (uint64_t)(lat_s * 1e9 + 0.5),
        .ttft_ns = ttft_s > 0 ? (uint64_t)(ttft_s * 1e9 + 0.5) : 0,
        .tokens_in = in,
        .tokens_out = out,
    };
}

/* ---- tests ---- */

TEST(create_and_bad_input)
{
    struct bt_metrics *m = NULL;
    struct bt_metrics_opts o = {.shards = 0};
    CHECK_INT(bt_metrics_create(&o, &m), BT_EINVAL);
    CHECK(m == NULL);
    CHECK_INT(bt_metrics_create(NULL, &m), BT_EINVAL);
    o.shards = 2;
    o.max_series = (size_t)1 << 30;
    CHECK_INT(bt_metrics_create(&o, &m), BT_EINVAL);
    m = make(2, 0);
    REQUIRE(m);
    CHECK(bt_metrics_shard(m, 0) != NULL);
    CHECK(bt_metrics_shard(m, 1) != NULL);
    CHECK(bt_metrics_shard(m, 0) != bt_metrics_shard(m, 1));
    CHECK(bt_metrics_shard(m, 2) == NULL);
    CHECK(bt_metrics_shard(NULL, 0) == NULL);
    /* A NULL shard (metrics not wired) is a no-op, not a crash. */
    struct bt_metrics_req r = req("m", "p/m", 200, 0.1, 0, 1, 1);
    bt_metrics_request_done(NULL, &r);
    bt_metrics_request_done(bt_metrics_shard(m, 0), NULL);
    bt_metrics_inflight_add(NULL, 1);
    bt_metrics_upstream_error(NULL, BT_STR("p"), BT_UPCLASS_TLS);
    bt_metrics_reload(NULL, true);
    CHECK_INT(bt_metrics_render(NULL, NULL), BT_EINVAL);
    CHECK_INT(bt_metrics_render(m, NULL), BT_EINVAL);

    /* An empty registry still renders the process-level families. */
    char *t = render(m);
    REQUIRE(t);
    CHECK(strstr(t, "baton_requests_total") == NULL);
    CHECK_INT(value(t, "baton_requests_in_flight"), 0);
    CHECK_INT(value(t, "baton_open_connections"), 0);
    CHECK_INT(value(t, "baton_config_reloads_total{result=\"success\"}"), 0);
    CHECK_INT(value(t, "baton_config_reloads_total{result=\"failure\"}"), 0);
    CHECK_INT(value(t, "baton_build_info{version=\"9.9.9-test\"}"), 1);
    CHECK_INT(value(t, "baton_workers"), 2);
    CHECK(value(t, "process_start_time_seconds") >= bt_unix_time() - 5);
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
    bt_metrics_free(NULL);
}

TEST(requests_by_labels_and_merge_across_shards)
{
    struct bt_metrics *m = make(3, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s0 = bt_metrics_shard(m, 0), *s1 = bt_metrics_shard(m, 1);
    struct bt_metrics_req r = req("gpt", "openai/gpt-4o", 200, 0.2, 0.05, 10, 20);
    for (int i = 0; i < 5; i++)
        bt_metrics_request_done(s0, &r);
    for (int i = 0; i < 7; i++)
        bt_metrics_request_done(s1, &r);
    r = req("gpt", "azure/gpt-4o", 429, 0.01, 0, -1, -1);
    bt_metrics_request_done(s1, &r);
    r = req("", "", 404, 0.001, 0, 0, 0);
    bt_metrics_request_done(s0, &r);
    r = req("gpt", "openai/gpt-4o", 42, 1, 0, 0, 0); /* nonsense status */
    bt_metrics_request_done(s0, &r);

    char *t = render(m);
    REQUIRE(t);
    CHECK_INT(
        value(t, "baton_requests_total{model=\"gpt\",deployment=\"openai/gpt-4o\",status=\"200\"}"),
        12);
    CHECK_INT(
        value(t, "baton_requests_total{model=\"gpt\",deployment=\"azure/gpt-4o\",status=\"429\"}"),
        1);
    CHECK_INT(value(t, "baton_requests_total{model=\"none\",deployment=\"none\",status=\"404\"}"),
              1);
    CHECK_INT(
        value(t,
              "baton_requests_total{model=\"gpt\",deployment=\"openai/gpt-4o\",status=\"other\"}"),
        1);
    /* One line per label set even though two shards hold it. */
    CHECK_INT(count_prefix(t, "baton_requests_total{"), 4);
    CHECK_INT(count_prefix(t, "# TYPE baton_requests_total counter"), 1);
    CHECK_INT(count_prefix(t, "# HELP baton_requests_total "), 1);
    /* Tokens: unknown (-1) and zero add nothing. */
    CHECK_INT(value(t, "baton_tokens_total{model=\"gpt\",direction=\"in\"}"), 120);
    CHECK_INT(value(t, "baton_tokens_total{model=\"gpt\",direction=\"out\"}"), 240);
    CHECK_INT(value(t, "baton_tokens_total{model=\"none\",direction=\"in\"}"), 0);
    CHECK_INT(value(t, "baton_request_duration_seconds_count{model=\"gpt\"}"), 14);
    /* TTFT only for the 12 requests that produced a token. */
    CHECK_INT(value(t, "baton_time_to_first_token_seconds_count{model=\"gpt\"}"), 12);
    CHECK_INT(value(t, "baton_time_to_first_token_seconds_count{model=\"none\"}"), 0);
    CHECK(no_duplicate_series(t));
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

TEST(histogram_buckets_cumulative_count_sum)
{
    struct bt_metrics *m = make(1, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s = bt_metrics_shard(m, 0);
    struct bt_metrics_req r = {.model = BT_STR("h"), .deployment = BT_STR("p/h"), .status = 200};
    /* le is inclusive: exactly 5 ms is in the 0.005 bucket, 1 ns more is not. */
    uint64_t lat[] = {5000000,      5000001,      1000000000,   1000000000,
                      299999999999, 300000000000, 300000000001, 1000};
    for (size_t i = 0; i < sizeof(lat) / sizeof(lat[0]); i++) {
        r.latency_ns = lat[i];
        r.ttft_ns = i < 2 ? 250000000 : 0; /* two TTFTs of 0.25 s */
        bt_metrics_request_done(s, &r);
    }
    char *t = render(m);
    REQUIRE(t);
#define B(le) value(t, "baton_request_duration_seconds_bucket{model=\"h\",le=\"" le "\"}")
    CHECK_INT(B("0.005"), 2); /* 1 us and exactly 5 ms */
    CHECK_INT(B("0.01"), 3);
    CHECK_INT(B("0.5"), 3);
    CHECK_INT(B("1"), 5);
    CHECK_INT(B("120"), 5);
    CHECK_INT(B("300"), 7);
    CHECK_INT(B("+Inf"), 8);
#undef B
    CHECK_INT(value(t, "baton_request_duration_seconds_count{model=\"h\"}"), 8);
    /* Buckets never decrease and there are 16 bounds plus +Inf. */
    CHECK_INT(count_prefix(t, "baton_request_duration_seconds_bucket{model=\"h\""), 17);
    long long prev = -1;
    bool monotonic = true;
    for (const char *p = strstr(t, "baton_request_duration_seconds_bucket"); p;
         p = strstr(p + 1, "baton_request_duration_seconds_bucket")) {
        long long v = strtoll(strchr(p, ' ') + 1, NULL, 10);
        if (v < prev) monotonic = false;
        prev = v;
    }
    CHECK(monotonic);
    /* Sum in seconds, microsecond resolution, exact:
     * 0.005 + 0.005 (5 ms + 1 ns rounds to 5000 us) + 1 + 1 + 300 (299.999999999 rounds)
     * + 300 + 300 + 0.000001 */
    char buf[64];
    CHECK_STR(value_text(t, "baton_request_duration_seconds_sum{model=\"h\"}", buf, sizeof(buf)),
              "902.010001");
    CHECK_STR(value_text(t, "baton_time_to_first_token_seconds_sum{model=\"h\"}", buf, sizeof(buf)),
              "0.500000");
    CHECK_INT(value(t, "baton_time_to_first_token_seconds_bucket{model=\"h\",le=\"0.1\"}"), 0);
    CHECK_INT(value(t, "baton_time_to_first_token_seconds_bucket{model=\"h\",le=\"0.25\"}"), 2);
    CHECK_INT(value(t, "baton_time_to_first_token_seconds_bucket{model=\"h\",le=\"+Inf\"}"), 2);
    CHECK_INT(value(t, "baton_time_to_first_token_seconds_count{model=\"h\"}"), 2);
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

TEST(label_escaping_and_utf8)
{
    struct bt_metrics *m = make(2, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s = bt_metrics_shard(m, 0);
    struct bt_metrics_req r = req("a\"b\\c\nd", "p/\"q\"", 200, 0.1, 0, 0, 0);
    bt_metrics_request_done(s, &r);
    /* Valid multi-byte characters are kept as they are. */
    r = req("caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80", "p/x", 200, 0.1, 0, 0, 0);
    bt_metrics_request_done(s, &r);
    /* Invalid: stray byte, overlong '/', a surrogate, past U+10FFFF, truncated. */
    r = req("x\xff"
            "y\xc0\xaf"
            "z\xed\xa0\x80"
            "w\xf4\x90\x80\x80"
            "v\xe2\x82",
            "p/x", 200, 0.1, 0, 0, 0);
    bt_metrics_request_done(s, &r);
    /* Two different invalid bytes render the same: one merged series, not two. */
    r = req("bad\xfe", "p/x", 500, 0.1, 0, 0, 0);
    bt_metrics_request_done(s, &r);
    r = req("bad\xfd", "p/x", 500, 0.1, 0, 0, 0);
    bt_metrics_request_done(bt_metrics_shard(m, 1), &r);
    bt_metrics_upstream_error(s, BT_STR("prov\"1\\"), BT_UPCLASS_5XX);

    char *t = render(m);
    REQUIRE(t);
    CHECK_INT(value(t, "baton_requests_total{model=\"a\\\"b\\\\c\\nd\",deployment=\"p/"
                       "\\\"q\\\"\",status=\"200\"}"),
              1);
    CHECK_INT(value(t, "baton_requests_total{model=\"caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80\","
                       "deployment=\"p/x\",status=\"200\"}"),
              1);
#define R "\xef\xbf\xbd"
    CHECK_INT(value(t, "baton_requests_total{model=\"x" R "y" R R "z" R R R "w" R R R R "v" R R
                       "\",deployment=\"p/x\",status=\"200\"}"),
              1);
    CHECK_INT(
        value(t, "baton_requests_total{model=\"bad" R "\",deployment=\"p/x\",status=\"500\"}"), 2);
    CHECK_INT(value(t, "baton_request_duration_seconds_count{model=\"bad" R "\"}"), 2);
#undef R
    CHECK_INT(value(t, "baton_upstream_errors_total{provider=\"prov\\\"1\\\\\",class=\"5xx\"}"), 1);
    CHECK(no_duplicate_series(t));
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

TEST(long_labels_are_cut_consistently)
{
    struct bt_metrics *m = make(1, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s = bt_metrics_shard(m, 0);
    char longm[400];
    /* 199 'a' then a 2-byte character straddling the 200-byte limit, then more. */
    memset(longm, 'a', 199);
    memcpy(longm + 199, "\xc3\xa9", 2);
    memset(longm + 201, 'b', 150);
    longm[351] = 0;
    struct bt_metrics_req r = req(longm, "p/x", 200, 0.1, 0, 0, 0);
    bt_metrics_request_done(s, &r);
    bt_metrics_request_done(s, &r);
    longm[300] = 'c'; /* differs only past the cut: the same series */
    bt_metrics_request_done(s, &r);
    char *t = render(m);
    REQUIRE(t);
    char want[300];
    snprintf(want, sizeof(want),
             "baton_requests_total{model=\"%.199s\",deployment=\"p/x\",status=\"200\"}", longm);
    CHECK_INT(value(t, want), 3);
    CHECK_INT(count_prefix(t, "baton_requests_total{"), 1);
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

TEST(series_cap_folds_into_other)
{
    /* Cap 6 over two shards; each new model costs 2 series (requests + model). */
    struct bt_metrics *m = make(2, 6);
    REQUIRE(m);
    struct bt_metrics_shard *s0 = bt_metrics_shard(m, 0), *s1 = bt_metrics_shard(m, 1);
    char name[32];
    int sent = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "model-%02d", i);
        struct bt_metrics_req r = req(name, "p/x", i % 2 ? 200 : 503, 0.1, 0.05, 1, 2);
        bt_metrics_request_done(i % 3 ? s0 : s1, &r);
        sent++;
    }
    /* Existing series keep counting after the cap is reached. */
    struct bt_metrics_req r0 = req("model-00", "p/x", 503, 0.1, 0, 0, 0);
    bt_metrics_request_done(s1, &r0);
    sent++;
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "prov-%02d", i);
        bt_metrics_upstream_error(s0, bt_str_c(name), BT_UPCLASS_TIMEOUT);
    }
    char *t = render(m);
    REQUIRE(t);
    CHECK_INT(
        value(t, "baton_requests_total{model=\"model-00\",deployment=\"p/x\",status=\"503\"}"), 2);
    /* Folded series keep the status: it is bounded. */
    CHECK(value(t, "baton_requests_total{model=\"other\",deployment=\"other\",status=\"200\"}") >
          0);
    CHECK(value(t, "baton_requests_total{model=\"other\",deployment=\"other\",status=\"503\"}") >
          0);
    CHECK_INT(value(t, "baton_upstream_errors_total{provider=\"other\",class=\"timeout\"}"), 30);
    /* Nothing lost: requests_total and the histogram counts add up to what was sent. */
    long long total = 0, hist = 0, tok_in = 0;
    for (const char *p = strstr(t, "\nbaton_requests_total{"); p;
         p = strstr(p + 1, "\nbaton_requests_total{"))
        total += strtoll(strchr(p + 1, ' ') + 1, NULL, 10);
    for (const char *p = strstr(t, "\nbaton_request_duration_seconds_count{"); p;
         p = strstr(p + 1, "\nbaton_request_duration_seconds_count{"))
        hist += strtoll(strchr(p + 1, ' ') + 1, NULL, 10);
    for (const char *p = strstr(t, ",direction=\"in\"} "); p;
         p = strstr(p + 1, ",direction=\"in\"} "))
        tok_in += strtoll(strchr(p, ' ') + 1, NULL, 10);
    CHECK_INT(total, sent);
    CHECK_INT(hist, sent);
    CHECK_INT(tok_in, 40);
    /* Bounded: at most cap real series plus the folded ones. */
    int real = count_prefix(t, "baton_requests_total{model=\"model-") +
               count_prefix(t, "baton_request_duration_seconds_count{model=\"model-");
    CHECK(real <= 6);
    CHECK(real >= 4);
    CHECK(value(t, "baton_metrics_series_folded_total") > 0);
    CHECK(no_duplicate_series(t));
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

TEST(upstream_classes)
{
    CHECK_INT(bt_metrics_upclass_from_err(BT_ETIMEDOUT), BT_UPCLASS_TIMEOUT);
    CHECK_INT(bt_metrics_upclass_from_err(BT_ECONNRESET), BT_UPCLASS_RESET);
    CHECK_INT(bt_metrics_upclass_from_err(BT_ECLOSED), BT_UPCLASS_RESET);
    CHECK_INT(bt_metrics_upclass_from_err(BT_ECONNREFUSED), BT_UPCLASS_REFUSED);
    CHECK_INT(bt_metrics_upclass_from_err(BT_EDNS), BT_UPCLASS_DNS);
    CHECK_INT(bt_metrics_upclass_from_err(BT_ETLS), BT_UPCLASS_TLS);
    CHECK_INT(bt_metrics_upclass_from_err(BT_EPROTO), BT_UPCLASS_INVALID);
    CHECK_INT(bt_metrics_upclass_from_err(BT_EPARSE), BT_UPCLASS_INVALID);
    CHECK_INT(bt_metrics_upclass_from_err(BT_ENOMEM), BT_UPCLASS_OTHER);
    CHECK_INT(bt_metrics_upclass_from_status(429), BT_UPCLASS_RATE_LIMITED);
    CHECK_INT(bt_metrics_upclass_from_status(400), BT_UPCLASS_4XX);
    CHECK_INT(bt_metrics_upclass_from_status(301), BT_UPCLASS_4XX);
    CHECK_INT(bt_metrics_upclass_from_status(500), BT_UPCLASS_5XX);
    CHECK_INT(bt_metrics_upclass_from_status(599), BT_UPCLASS_5XX);
    CHECK_INT(bt_metrics_upclass_from_status(200), BT_UPCLASS_INVALID);
    CHECK_INT(bt_metrics_upclass_from_status(999), BT_UPCLASS_INVALID);
    CHECK_STR(bt_metrics_upclass_name(BT_UPCLASS_TIMEOUT), "timeout");
    CHECK_STR(bt_metrics_upclass_name(BT_UPCLASS_4XX), "4xx");
    CHECK_STR(bt_metrics_upclass_name(BT_UPCLASS_RATE_LIMITED), "rate_limited");
    CHECK_STR(bt_metrics_upclass_name(BT_UPCLASS_COUNT), "other");
    CHECK_STR(bt_metrics_upclass_name((enum bt_metrics_upclass) - 1), "other");

    struct bt_metrics *m = make(1, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s = bt_metrics_shard(m, 0);
    for (int c = 0; c < BT_UPCLASS_COUNT; c++)
        bt_metrics_upstream_error(s, BT_STR("openai"), c);
    bt_metrics_upstream_error(s, BT_STR("openai"), BT_UPCLASS_TLS);
    bt_metrics_upstream_error(s, BT_STR("openai"), (enum bt_metrics_upclass)77); /* -> other */
    bt_metrics_upstream_error(s, BT_STR_NULL, BT_UPCLASS_DNS);
    char *t = render(m);
    REQUIRE(t);
    CHECK_INT(value(t, "baton_upstream_errors_total{provider=\"openai\",class=\"tls\"}"), 2);
    CHECK_INT(value(t, "baton_upstream_errors_total{provider=\"openai\",class=\"other\"}"), 2);
    CHECK_INT(value(t, "baton_upstream_errors_total{provider=\"openai\",class=\"timeout\"}"), 1);
    CHECK_INT(value(t, "baton_upstream_errors_total{provider=\"none\",class=\"dns\"}"), 1);
    CHECK_INT(count_prefix(t, "baton_upstream_errors_total{"), BT_UPCLASS_COUNT + 1);
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

static int64_t conns_value;
static int64_t conns_fn(void *ud)
{
    return *(int64_t *)ud;
}

TEST(gauges_reloads_connections)
{
    struct bt_metrics *m = make(2, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s0 = bt_metrics_shard(m, 0), *s1 = bt_metrics_shard(m, 1);
    bt_metrics_inflight_add(s0, 1);
    bt_metrics_inflight_add(s0, 1);
    bt_metrics_inflight_add(s1, 1);
    bt_metrics_inflight_add(s0, -1);
    bt_metrics_connections_add(s0, 3);
    bt_metrics_connections_set(s1, 10);
    bt_metrics_connections_add(s1, -2);
    int64_t before = bt_unix_time();
    bt_metrics_reload(m, true);
    bt_metrics_reload(m, false);
    bt_metrics_reload(m, false);
    char *t = render(m);
    REQUIRE(t);
    CHECK_INT(value(t, "baton_requests_in_flight"), 2);
    CHECK_INT(value(t, "baton_open_connections"), 11);
    CHECK_INT(value(t, "baton_config_reloads_total{result=\"success\"}"), 1);
    CHECK_INT(value(t, "baton_config_reloads_total{result=\"failure\"}"), 2);
    CHECK_INT(value(t, "baton_config_last_reload_successful"), 0);
    long long ts = value(t, "baton_config_last_reload_success_timestamp_seconds");
    CHECK(ts >= before && ts <= bt_unix_time());
    CHECK(promtool_ok(t));
    free(t);

    /* An installed function replaces the shard sum. */
    conns_value = 42;
    bt_metrics_set_connections_fn(m, conns_fn, &conns_value);
    bt_metrics_reload(m, true);
    t = render(m);
    REQUIRE(t);
    CHECK_INT(value(t, "baton_open_connections"), 42);
    CHECK_INT(value(t, "baton_config_last_reload_successful"), 1);
    CHECK_INT(value(t, "baton_config_reloads_total{result=\"success\"}"), 2);
    free(t);
    bt_metrics_set_connections_fn(m, NULL, NULL);
    t = render(m);
    REQUIRE(t);
    CHECK_INT(value(t, "baton_open_connections"), 11);
    free(t);
    bt_metrics_free(m);
}

TEST(render_respects_buffer_cap)
{
    struct bt_metrics *m = make(1, 0);
    REQUIRE(m);
    struct bt_metrics_req r = req("gpt", "openai/gpt-4o", 200, 0.2, 0.05, 10, 20);
    bt_metrics_request_done(bt_metrics_shard(m, 0), &r);
    struct bt_buf b;
    bt_buf_init(&b, 300);
    CHECK_INT(bt_metrics_render(m, &b), BT_ETOOBIG);
    CHECK(b.len <= 300);
    bt_buf_free(&b);
    /* The caller's existing bytes are kept; render appends. */
    bt_buf_init(&b, 1 << 20);
    bt_buf_append_c(&b, "HEAD\n");
    CHECK_INT(bt_metrics_render(m, &b), BT_OK);
    CHECK(b.len > 5 && memcmp(b.p, "HEAD\n# HELP", 11) == 0);
    bt_buf_free(&b);
    bt_metrics_free(m);
}

/* ---- concurrency: workers update their shards while scrapes run ---- */

#define NTHREADS 4
#define ITERS 20000

struct worker_arg {
    struct bt_metrics_shard *s;
    int id;
};

static atomic_int workers_done;

static void *worker(void *p)
{
    struct worker_arg *a = p;
    static const char *models[] = {"gpt", "claude", "llama"};
    static const int statuses[] = {200, 200, 200, 429, 502};
    char dep[32];
    for (int i = 0; i < ITERS; i++) {
        bt_metrics_inflight_add(a->s, 1);
        const char *model = models[i % 3];
        snprintf(dep, sizeof(dep), "prov%d/%s", i % 2, model);
        /* Some brand-new series while scrapes run: one per thread per 1000. */
        char fresh[32];
        if (i % 1000 == 0) {
            snprintf(fresh, sizeof(fresh), "m-%d-%d", a->id, i);
            model = fresh;
        }
        struct bt_metrics_req r = {
            .model = bt_str_c(model),
            .deployment = bt_str_c(dep),
            .status = statuses[i % 5],
            .latency_ns = (uint64_t)(i % 400) * 1000000, /* 0..399 ms, whole us */
            .ttft_ns = i % 2 ? 1000000 : 0,
            .tokens_in = 3,
            .tokens_out = i % 7,
        };
        bt_metrics_request_done(a->s, &r);
        if (i % 5 == 4) bt_metrics_upstream_error(a->s, BT_STR("prov1"), BT_UPCLASS_5XX);
        bt_metrics_inflight_add(a->s, -1);
    }
    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

static long long sum_family(const char *t, const char *prefix)
{
    long long total = 0;
    size_t n = strlen(prefix);
    for (const char *p = t; p && *p;) {
        if (strncmp(p, prefix, n) == 0) total += strtoll(strchr(p, ' ') + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return total;
}

TEST(concurrent_updates_and_scrapes)
{
    struct bt_metrics *m = make(NTHREADS, 0);
    REQUIRE(m);
    pthread_t th[NTHREADS];
    struct worker_arg args[NTHREADS];
    atomic_store(&workers_done, 0);
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (struct worker_arg){bt_metrics_shard(m, i), i};
        REQUIRE(pthread_create(&th[i], NULL, worker, &args[i]) == 0);
    }
    int scrapes = 0;
    long long prev_total = 0, prev_err = 0;
    bool monotonic = true, consistent = true, rendered = true;
    while (atomic_load(&workers_done) < NTHREADS || scrapes < 3) {
        char *t = render(m);
        if (!t) {
            rendered = false;
            break;
        }
        long long total = sum_family(t, "baton_requests_total{");
        long long errs = sum_family(t, "baton_upstream_errors_total{");
        if (total < prev_total || errs < prev_err) monotonic = false;
        prev_total = total;
        prev_err = errs;
        if (!no_duplicate_series(t)) consistent = false;
        scrapes++;
        free(t);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(rendered);
    CHECK(monotonic);
    CHECK(consistent);
    CHECK(scrapes >= 3);

    char *t = render(m);
    REQUIRE(t);
    const long long n = (long long)NTHREADS * ITERS;
    CHECK_INT(sum_family(t, "baton_requests_total{"), n);
    CHECK_INT(sum_family(t, "baton_request_duration_seconds_count{"), n);
    CHECK_INT(sum_family(t, "baton_time_to_first_token_seconds_count{"), n / 2);
    CHECK_INT(sum_family(t, "baton_upstream_errors_total{"), n / 5);
    CHECK_INT(value(t, "baton_requests_in_flight"), 0);
    /* 200 is 3 of every 5 statuses; gpt gets i%3==0 minus the fresh ones
     * (i%1000==0, 20 per thread, all with i%3 in 0..2). */
    long long ok =
        sum_family(t,
                   "baton_requests_total{model=\"gpt\",deployment=\"prov0/gpt\",status=\"200\"}") +
        sum_family(t,
                   "baton_requests_total{model=\"gpt\",deployment=\"prov1/gpt\",status=\"200\"}");
    long long want_ok = 0;
    for (int i = 0; i < ITERS; i++)
        if (i % 3 == 0 && i % 1000 != 0 && (i % 5) < 3) want_ok++;
    CHECK_INT(ok, want_ok * NTHREADS);
    /* Every token counted once: in = 3 per request over every model. */
    long long all_in = 0;
    for (const char *p = strstr(t, ",direction=\"in\"} "); p;
         p = strstr(p + 1, ",direction=\"in\"} "))
        all_in += strtoll(strchr(p, ' ') + 1, NULL, 10);
    CHECK_INT(all_in, 3 * n);
    /* Latency sum: per thread sum over i of (i % 400) ms, exactly. */
    long long ms = 0;
    for (int i = 0; i < ITERS; i++)
        ms += i % 400;
    ms *= NTHREADS;
    long long sum_us = 0;
    for (const char *p = strstr(t, "\nbaton_request_duration_seconds_sum{"); p;
         p = strstr(p + 1, "\nbaton_request_duration_seconds_sum{")) {
        const char *v = strchr(p + 1, ' ') + 1;
        char *dot;
        long long sec = strtoll(v, &dot, 10);
        sum_us += sec * 1000000 + strtoll(dot + 1, NULL, 10);
    }
    CHECK_INT(sum_us, ms * 1000);
    CHECK(promtool_ok(t));
    free(t);
    bt_metrics_free(m);
}

/* Not a pass/fail check on speed (sanitizer builds are slow), but the numbers
 * in docs/internals/metrics.md come from running this at -O2. */
TEST(update_cost)
{
    struct bt_metrics *m = make(1, 0);
    REQUIRE(m);
    struct bt_metrics_shard *s = bt_metrics_shard(m, 0);
    struct bt_metrics_req r = req("gpt-4o-mini", "openai/gpt-4o-mini", 200, 0.8, 0.3, 100, 50);
    bt_metrics_request_done(s, &r);
    const int n = 1000000;
    uint64_t t0 = bt_now_ns();
    for (int i = 0; i < n; i++) {
        r.latency_ns += 1;
        bt_metrics_request_done(s, &r);
    }
    uint64_t t1 = bt_now_ns();
    for (int i = 0; i < n; i++)
        bt_metrics_inflight_add(s, i & 1 ? -1 : 1);
    uint64_t t2 = bt_now_ns();
    char *t = render(m);
    REQUIRE(t);
    CHECK_INT(value(t, "baton_requests_total{model=\"gpt-4o-mini\",deployment=\"openai/"
                       "gpt-4o-mini\",status=\"200\"}"),
              n + 1);
    CHECK_INT(count_prefix(t, "baton_requests_total{"), 1);
    free(t);
    fprintf(stderr, "  update cost: request_done %.1f ns, inflight_add %.1f ns\n",
            (double)(t1 - t0) / n, (double)(t2 - t1) / n);
    bt_metrics_free(m);
}

int main(void)
{
    RUN(create_and_bad_input);
    RUN(requests_by_labels_and_merge_across_shards);
    RUN(histogram_buckets_cumulative_count_sum);
    RUN(label_escaping_and_utf8);
    RUN(long_labels_are_cut_consistently);
    RUN(series_cap_folds_into_other);
    RUN(upstream_classes);
    RUN(gauges_reloads_connections);
    RUN(render_respects_buffer_cap);
    RUN(concurrent_updates_and_scrapes);
    RUN(update_cost);
    return HARNESS_DONE();
}
