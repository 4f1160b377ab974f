/* Tests of the simulated provider: each test runs a real libuv loop, collects
 * what the callbacks receive, and checks the bytes with bt_json_parse (fields)
 * and cJSON (an independent oracle for validity and schema fit). */
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "sim/sim.h"

/* ---- collecting callbacks ---- */

#define MAX_PIECES 16384

struct col {
    uv_loop_t *loop;
    uint64_t t0;
    int nhead, status;
    char ctype[64], retry_after[32], retry_after_ms[32], fault[32];
    struct bt_buf data;
    int ndata;
    size_t ends[MAX_PIECES]; /* end offset of each on_data */
    int ndone;
    enum bt_err err;
    int after_done;          /* callbacks that came after on_done */
    uint64_t head_ms, first_data_ms, done_ms;
    struct bt_sim_call *call;
    int cancel_at_data;      /* cancel inside the n-th on_data (1-based) */
    bool cancel_in_head, cancel_in_done;
    bool cancelled;
};

static void copy_val(char *dst, size_t cap, struct bt_str v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    memcpy(dst, v.p, n);
    dst[n] = 0;
}

static void on_head(void *ud, int status, const struct bt_http_header *h, size_t n)
{
    struct col *c = ud;
    if (c->ndone) c->after_done++;
    c->nhead++;
    c->status = status;
    c->head_ms = uv_now(c->loop) - c->t0;
    for (size_t i = 0; i < n; i++) {
        if (bt_str_caseeq_c(h[i].name, "content-type")) copy_val(c->ctype, sizeof c->ctype, h[i].value);
        if (bt_str_caseeq_c(h[i].name, "retry-after"))
            copy_val(c->retry_after, sizeof c->retry_after, h[i].value);
        if (bt_str_caseeq_c(h[i].name, "retry-after-ms"))
            copy_val(c->retry_after_ms, sizeof c->retry_after_ms, h[i].value);
        if (bt_str_caseeq_c(h[i].name, "x-sim-fault")) copy_val(c->fault, sizeof c->fault, h[i].value);
    }
    if (c->cancel_in_head) {
        c->cancelled = true;
        bt_sim_cancel(c->call);
    }
}

static void on_data(void *ud, const char *p, size_t n)
{
    struct col *c = ud;
    if (c->ndone) c->after_done++;
    if (c->ndata == 0) c->first_data_ms = uv_now(c->loop) - c->t0;
    bt_buf_append(&c->data, p, n);
    if (c->ndata < MAX_PIECES) c->ends[c->ndata] = c->data.len;
    c->ndata++;
    if (c->cancel_at_data && c->ndata == c->cancel_at_data) {
        c->cancelled = true;
        bt_sim_cancel(c->call);
    }
}

static void on_done(void *ud, enum bt_err err, const char *detail)
{
    (void)detail;
    struct col *c = ud;
    if (c->ndone) c->after_done++;
    c->ndone++;
    c->err = err;
    c->done_ms = uv_now(c->loop) - c->t0;
    if (c->cancel_in_done) {
        c->cancelled = true;
        bt_sim_cancel(c->call);
    }
}

static const struct bt_up_callbacks cbs = {on_head, on_data, on_done, NULL};

static void col_init(struct col *c)
{
    memset(c, 0, sizeof *c);
    bt_buf_init(&c->data, 64 << 20);
}

static void col_free(struct col *c)
{
    bt_buf_free(&c->data);
}

/* Runs one simulated call to completion (or until it goes quiet; a stalled
 * call is then cancelled so its memory is released). */
static void run(const struct bt_sim_cfg *cfg, const char *method, const char *path,
                const char *body, int fault, struct col *c)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    c->loop = &loop;
    c->t0 = uv_now(&loop);
    struct bt_sim_request req = {bt_str_c(method), bt_str_c(path), bt_str_c(body), fault};
    c->call = bt_sim_start(&loop, BT_API_OPENAI, cfg, &req, &cbs, c);
    CHECK(c->call != NULL);
    /* Never synchronous. */
    CHECK_INT(c->nhead + c->ndata + c->ndone, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (c->call && !c->ndone && !c->cancelled) {
        bt_sim_cancel(c->call);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    CHECK_INT(uv_loop_close(&loop), 0);
    c->loop = NULL;
}

static void run_chat(const struct bt_sim_cfg *cfg, const char *body, struct col *c)
{
    run(cfg, "POST", "/chat/completions", body, -1, c);
}

/* ---- parsed JSON helpers ---- */

struct pj {
    struct bt_arena a;
    struct bt_json_doc d;
    bool ok;
};

static bool pj_parse(struct pj *p, const char *s, size_t n)
{
    bt_arena_init(&p->a, 4096, 0);
    p->ok = bt_json_parse(&p->d, s, n, &p->a, NULL, NULL) == BT_OK;
    return p->ok;
}

static void pj_free(struct pj *p)
{
    bt_arena_free(&p->a);
}

/* Unescaped string value of tok, NUL-terminated in the arena ("" when absent). */
static const char *pj_str(struct pj *p, int tok)
{
    struct bt_str s;
    if (bt_json_type(&p->d, tok) != BT_JSON_STRING || bt_json_str(&p->d, tok, &p->a, &s))
        return "(not a string)";
    return bt_arena_strdup(&p->a, s).p;
}

static int64_t pj_int(struct pj *p, int tok)
{
    int64_t v = -999;
    if (bt_json_int(&p->d, tok, &v)) return -999;
    return v;
}

/* ---- SSE splitting ---- */

#define MAX_EVENTS 8192

struct events {
    struct bt_str ev[MAX_EVENTS]; /* the payload after "data: " */
    int n;
    bool framing_ok;              /* every event is "data: ...\n\n" */
};

static void split_sse(const struct bt_buf *b, struct events *e)
{
    e->n = 0;
    e->framing_ok = true;
    size_t i = 0;
    while (i < b->len && e->n < MAX_EVENTS) {
        const char *end = memmem(b->p + i, b->len - i, "\n\n", 2);
        if (!end) {
            e->framing_ok = false;
            break;
        }
        size_t len = (size_t)(end - (b->p + i));
        if (len < 6 || memcmp(b->p + i, "data: ", 6) != 0) e->framing_ok = false;
        e->ev[e->n++] = (struct bt_str){b->p + i + 6, len >= 6 ? len - 6 : 0};
        i += len + 2;
    }
}

/* True when each on_data call carried exactly one whole event. */
static bool one_event_per_data(const struct col *c, const struct events *e)
{
    if (c->ndata != e->n) return false;
    for (int i = 0; i < e->n && i < MAX_PIECES; i++) {
        size_t end = (size_t)(e->ev[i].p + e->ev[i].len + 2 - c->data.p);
        if (c->ends[i] != end) return false;
    }
    return true;
}

/* ---- a small JSON-schema checker over cJSON (the test oracle) ---- */

static size_t cps(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static const cJSON *resolve(const cJSON *root, const char *ref)
{
    if (ref[0] != '#') return NULL;
    const cJSON *cur = root;
    char seg[128];
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        size_t k = 0;
        while (*p && *p != '/' && k + 1 < sizeof seg) seg[k++] = *p++;
        seg[k] = 0;
        cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
        if (!cur) return NULL;
    }
    return cur;
}

static bool type_is(const cJSON *v, const char *t)
{
    if (!strcmp(t, "object")) return cJSON_IsObject(v);
    if (!strcmp(t, "array")) return cJSON_IsArray(v);
    if (!strcmp(t, "string")) return cJSON_IsString(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    return false;
}

static bool fits(const cJSON *v, const cJSON *s, const cJSON *root)
{
    if (!s || cJSON_IsTrue(s)) return true;
    const cJSON *k;
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "$ref")))
        return fits(v, resolve(root, k->valuestring), root);
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "anyOf"))) {
        const cJSON *a;
        cJSON_ArrayForEach(a, k) if (fits(v, a, root)) return true;
        return false;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "enum"))) {
        const cJSON *a;
        bool found = false;
        cJSON_ArrayForEach(a, k) if (cJSON_Compare(v, a, true)) found = true;
        if (!found) return false;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "type"))) {
        if (cJSON_IsString(k) && !type_is(v, k->valuestring)) return false;
        if (cJSON_IsArray(k)) {
            const cJSON *a;
            bool any = false;
            cJSON_ArrayForEach(a, k) if (type_is(v, a->valuestring)) any = true;
            if (!any) return false;
        }
    }
    if (cJSON_IsObject(v)) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required"), *a;
        cJSON_ArrayForEach(a, req) if (!cJSON_GetObjectItemCaseSensitive(v, a->valuestring)) return false;
        const cJSON *m;
        cJSON_ArrayForEach(m, v)
        {
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, m->string);
            if (!ps && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s, "additionalProperties")))
                return false;
            if (ps && !fits(m, ps, root)) return false;
        }
    }
    if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "minItems")) && n < k->valueint) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "maxItems")) && n > k->valueint) return false;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items"), *a;
        cJSON_ArrayForEach(a, v) if (!fits(a, items, root)) return false;
    }
    if (cJSON_IsString(v)) {
        size_t n = cps(v->valuestring);
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "minLength")) && n < (size_t)k->valueint) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "maxLength")) && n > (size_t)k->valueint) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "format")) && !strcmp(k->valuestring, "date-time") &&
            (strlen(v->valuestring) != 20 || v->valuestring[10] != 'T'))
            return false;
    }
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "minimum")) && x < k->valuedouble) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "maximum")) && x > k->valuedouble) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum")) && x <= k->valuedouble) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum")) && x >= k->valuedouble) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(s, "multipleOf")) && fmod(x, k->valuedouble) != 0) return false;
    }
    return true;
}

static bool json_fits(const char *json, size_t len, const char *schema)
{
    cJSON *v = cJSON_ParseWithLength(json, len), *s = cJSON_Parse(schema);
    bool ok = v && s && fits(v, s, s);
    if (!ok) fprintf(stderr, "    value does not fit: %.*s\n", (int)len, json);
    cJSON_Delete(v);
    cJSON_Delete(s);
    return ok;
}

static bool cjson_valid(const char *p, size_t n)
{
    cJSON *v = cJSON_ParseWithLength(p, n);
    bool ok = v != NULL;
    cJSON_Delete(v);
    return ok;
}

static size_t count_char(const char *s, char ch)
{
    size_t n = 0;
    for (; *s; s++)
        if (*s == ch) n++;
    return n;
}

static struct bt_sim_cfg cfg_default(void)
{
    struct bt_sim_cfg cfg;
    bt_sim_cfg_default(&cfg);
    return cfg;
}

static const char *const CHAT_HELLO =
    "{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello there, how are you?\"}]}";

/* ---- tests ---- */

TEST(fault_names_and_defaults)
{
    CHECK_INT(bt_sim_fault_parse(BT_STR("429")), BT_SIM_FAULT_429);
    CHECK_INT(bt_sim_fault_parse(BT_STR("500")), BT_SIM_FAULT_500);
    CHECK_INT(bt_sim_fault_parse(BT_STR("503")), BT_SIM_FAULT_503);
    CHECK_INT(bt_sim_fault_parse(BT_STR("no_answer")), BT_SIM_FAULT_NO_ANSWER);
    CHECK_INT(bt_sim_fault_parse(BT_STR("reset_before")), BT_SIM_FAULT_RESET_BEFORE);
    CHECK_INT(bt_sim_fault_parse(BT_STR("reset_mid")), BT_SIM_FAULT_RESET_MID);
    CHECK_INT(bt_sim_fault_parse(BT_STR("stall_mid")), BT_SIM_FAULT_STALL_MID);
    CHECK_INT(bt_sim_fault_parse(BT_STR("slow_bytes")), BT_SIM_FAULT_SLOW_BYTES);
    CHECK_INT(bt_sim_fault_parse(BT_STR("invalid_json")), BT_SIM_FAULT_INVALID_JSON);
    CHECK_INT(bt_sim_fault_parse(BT_STR(" error_event ")), BT_SIM_FAULT_ERROR_EVENT);
    CHECK_INT(bt_sim_fault_parse(BT_STR("none")), BT_SIM_FAULT_NONE);
    CHECK_INT(bt_sim_fault_parse(BT_STR("502")), -1);
    CHECK_INT(bt_sim_fault_parse(BT_STR("")), -1);
    CHECK_INT(bt_sim_fault_parse(BT_STR("reset")), -1);
    struct bt_sim_cfg cfg = cfg_default();
    CHECK_INT(cfg.seed, 1);
    CHECK_INT(cfg.reply_tokens, 24);
    CHECK_INT(cfg.embedding_dims, 16);
    CHECK_INT(cfg.ttft_ms, 0);
    CHECK(cfg.tokens_per_sec == 0 && cfg.fault_500 == 0);
    CHECK_INT(cfg.retry_after_s, 1);
}

TEST(chat_text_nonstream)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    col_init(&c);
    run_chat(&cfg, CHAT_HELLO, &c);
    CHECK_INT(c.nhead, 1);
    CHECK_INT(c.status, 200);
    CHECK_STR(c.ctype, "application/json");
    CHECK_INT(c.ndone, 1);
    CHECK_INT(c.err, BT_OK);
    CHECK_INT(c.after_done, 0);
    CHECK(cjson_valid(c.data.p, c.data.len));
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    struct bt_json_doc *d = &p.d;
    CHECK(!strncmp(pj_str(&p, bt_json_get(d, 0, "id")), "chatcmpl-", 9));
    CHECK_STR(pj_str(&p, bt_json_get(d, 0, "object")), "chat.completion");
    CHECK_STR(pj_str(&p, bt_json_get(d, 0, "model")), "gpt-test");
    CHECK(pj_int(&p, bt_json_get(d, 0, "created")) > 1600000000);
    CHECK(!strncmp(pj_str(&p, bt_json_get(d, 0, "system_fingerprint")), "fp_", 3));
    int ch = bt_json_at(d, bt_json_get(d, 0, "choices"), 0);
    CHECK_INT(d->toks[bt_json_get(d, 0, "choices")].size, 1);
    CHECK_INT(pj_int(&p, bt_json_get(d, ch, "index")), 0);
    int msg = bt_json_get(d, ch, "message");
    CHECK_STR(pj_str(&p, bt_json_get(d, msg, "role")), "assistant");
    const char *content = pj_str(&p, bt_json_get(d, msg, "content"));
    CHECK_INT(count_char(content, ' '), 23); /* 24 words */
    CHECK(content[strlen(content) - 1] == '.');
    CHECK_INT(bt_json_type(d, bt_json_get(d, msg, "refusal")), BT_JSON_NULL);
    CHECK_INT(bt_json_get(d, msg, "tool_calls"), -1);
    CHECK_INT(bt_json_type(d, bt_json_get(d, ch, "logprobs")), BT_JSON_NULL);
    CHECK_STR(pj_str(&p, bt_json_get(d, ch, "finish_reason")), "stop");
    int u = bt_json_get(d, 0, "usage");
    int64_t pt = pj_int(&p, bt_json_get(d, u, "prompt_tokens"));
    int64_t ct = pj_int(&p, bt_json_get(d, u, "completion_tokens"));
    CHECK_INT(pt, 7); /* 25 content bytes / 4, rounded up */
    CHECK_INT(ct, 24);
    CHECK_INT(pj_int(&p, bt_json_get(d, u, "total_tokens")), pt + ct);
    pj_free(&p);
    col_free(&c);
}

TEST(chat_utf8_words)
{
    struct bt_sim_cfg cfg = cfg_default();
    cfg.reply_tokens = 300;
    struct col c;
    col_init(&c);
    run_chat(&cfg, CHAT_HELLO, &c);
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    const char *content =
        pj_str(&p, bt_json_path(&p.d, bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0),
                                "message", "content", NULL));
    CHECK(strstr(content, "안녕하세요") != NULL);
    CHECK(strstr(content, "\"sim\"") != NULL); /* a quote survived escaping */
    CHECK_INT(count_char(content, ' '), 299);
    pj_free(&p);
    col_free(&c);
}

TEST(chat_deterministic)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col a, b, s2, other;
    col_init(&a);
    col_init(&b);
    col_init(&s2);
    col_init(&other);
    run_chat(&cfg, CHAT_HELLO, &a);
    run_chat(&cfg, CHAT_HELLO, &b);
    CHECK(a.data.len == b.data.len && !memcmp(a.data.p, b.data.p, a.data.len));
    struct bt_sim_cfg cfg2 = cfg;
    cfg2.seed = 2;
    run_chat(&cfg2, CHAT_HELLO, &s2);
    CHECK(!(a.data.len == s2.data.len && !memcmp(a.data.p, s2.data.p, a.data.len)));
    run_chat(&cfg, "{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"Bye\"}]}",
             &other);
    CHECK(!(a.data.len == other.data.len && !memcmp(a.data.p, other.data.p, a.data.len)));
    col_free(&a);
    col_free(&b);
    col_free(&s2);
    col_free(&other);

    /* Streams too, byte for byte. */
    const char *sreq = "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    col_init(&a);
    col_init(&b);
    run_chat(&cfg, sreq, &a);
    run_chat(&cfg, sreq, &b);
    CHECK(a.data.len > 0 && a.data.len == b.data.len && !memcmp(a.data.p, b.data.p, a.data.len));
    CHECK_INT(a.ndata, b.ndata);
    col_free(&a);
    col_free(&b);
}

TEST(chat_max_tokens_length)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             &c);
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    int ch = bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0);
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, ch, "finish_reason")), "length");
    CHECK_INT(count_char(pj_str(&p, bt_json_path(&p.d, ch, "message", "content", NULL)), ' '), 4);
    CHECK_INT(pj_int(&p, bt_json_path(&p.d, 0, "usage", "completion_tokens", NULL)), 5);
    pj_free(&p);
    col_free(&c);

    /* max_completion_tokens works too; 24 fits in 100, so "stop". */
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"m\",\"max_completion_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             &c);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    ch = bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0);
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, ch, "finish_reason")), "stop");
    pj_free(&p);
    col_free(&c);
}

/* Checks the chunk invariants every OpenAI stream has and returns the
 * concatenated content / arguments of choice 0 in `text`. */
static void check_stream(struct col *c, bool usage, const char *model, const char *finish,
                         bool tool, struct bt_buf *text, int *nfrag)
{
    static struct events e;
    split_sse(&c->data, &e);
    CHECK(e.framing_ok);
    CHECK(one_event_per_data(c, &e));
    REQUIRE(e.n >= 3);
    CHECK_SLICE(e.ev[e.n - 1], "[DONE]");
    char first_id[64] = "";
    bool saw_finish = false, saw_usage = false;
    *nfrag = 0;
    for (int i = 0; i < e.n - 1; i++) {
        struct pj p;
        if (!pj_parse(&p, e.ev[i].p, e.ev[i].len)) {
            H_FAIL("event %d is not JSON: %.*s", i, (int)e.ev[i].len, e.ev[i].p);
            pj_free(&p);
            continue;
        }
        CHECK(cjson_valid(e.ev[i].p, e.ev[i].len));
        struct bt_json_doc *d = &p.d;
        CHECK_STR(pj_str(&p, bt_json_get(d, 0, "object")), "chat.completion.chunk");
        CHECK_STR(pj_str(&p, bt_json_get(d, 0, "model")), model);
        if (i == 0) copy_val(first_id, sizeof first_id, bt_str_c(pj_str(&p, bt_json_get(d, 0, "id"))));
        else CHECK_STR(pj_str(&p, bt_json_get(d, 0, "id")), first_id);
        int u = bt_json_get(d, 0, "usage");
        int chs = bt_json_get(d, 0, "choices");
        REQUIRE(bt_json_type(d, chs) == BT_JSON_ARRAY);
        if (!usage) CHECK_INT(u, -1);
        if (usage && d->toks[chs].size == 0) {
            CHECK(!saw_usage && saw_finish);
            CHECK_INT(i, e.n - 2); /* the usage chunk is the last before [DONE] */
            saw_usage = true;
            CHECK(pj_int(&p, bt_json_get(d, u, "completion_tokens")) > 0);
            CHECK_INT(pj_int(&p, bt_json_get(d, u, "total_tokens")),
                      pj_int(&p, bt_json_get(d, u, "completion_tokens")) +
                          pj_int(&p, bt_json_get(d, u, "prompt_tokens")));
            pj_free(&p);
            continue;
        }
        if (usage) CHECK_INT(bt_json_type(d, u), BT_JSON_NULL);
        CHECK_INT(d->toks[chs].size, 1);
        int ch = bt_json_at(d, chs, 0);
        CHECK_INT(pj_int(&p, bt_json_get(d, ch, "index")), 0);
        int delta = bt_json_get(d, ch, "delta");
        CHECK_INT(bt_json_type(d, delta), BT_JSON_OBJECT);
        int fr = bt_json_get(d, ch, "finish_reason");
        CHECK(fr >= 0);
        CHECK(!saw_finish);
        if (i == 0) {
            CHECK_STR(pj_str(&p, bt_json_get(d, delta, "role")), "assistant");
            if (tool) {
                int tc = bt_json_at(d, bt_json_get(d, delta, "tool_calls"), 0);
                CHECK_INT(pj_int(&p, bt_json_get(d, tc, "index")), 0);
                CHECK(!strncmp(pj_str(&p, bt_json_get(d, tc, "id")), "call_", 5));
                CHECK_STR(pj_str(&p, bt_json_get(d, tc, "type")), "function");
                CHECK(strlen(pj_str(&p, bt_json_path(d, tc, "function", "name", NULL))) > 0);
            }
        } else {
            CHECK_INT(bt_json_get(d, delta, "role"), -1);
        }
        if (bt_json_type(d, fr) == BT_JSON_STRING) {
            CHECK_STR(pj_str(&p, fr), finish);
            CHECK_INT(d->toks[delta].size, 0);
            saw_finish = true;
        } else {
            CHECK_INT(bt_json_type(d, fr), BT_JSON_NULL);
        }
        int piece = tool ? bt_json_path(d, bt_json_at(d, bt_json_get(d, delta, "tool_calls"), 0),
                                        "function", "arguments", NULL)
                         : bt_json_get(d, delta, "content");
        if (bt_json_type(d, piece) == BT_JSON_STRING) {
            const char *s = pj_str(&p, piece);
            if (*s) (*nfrag)++;
            bt_buf_append_c(text, s);
        }
        pj_free(&p);
    }
    CHECK(saw_finish);
    CHECK(saw_usage == usage);
}

TEST(chat_stream_text_usage)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"gpt-s\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
             "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
             &c);
    CHECK_INT(c.status, 200);
    CHECK(!strncmp(c.ctype, "text/event-stream", 17));
    CHECK_INT(c.ndone, 1);
    CHECK_INT(c.err, BT_OK);
    struct bt_buf text;
    bt_buf_init(&text, 1 << 20);
    int nfrag = 0;
    check_stream(&c, true, "gpt-s", "stop", false, &text, &nfrag);
    CHECK_INT(nfrag, 24);
    bt_buf_cstr(&text);
    CHECK_INT(count_char(text.p, ' '), 23);
    /* 1 role chunk + 24 tokens + finish + usage + [DONE] */
    CHECK_INT(c.ndata, 28);
    bt_buf_free(&text);
    col_free(&c);

    /* Without include_usage no chunk has a usage key. */
    col_init(&c);
    run_chat(&cfg, "{\"model\":\"m\",\"stream\":true,\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", &c);
    bt_buf_init(&text, 1 << 20);
    check_stream(&c, false, "m", "length", false, &text, &nfrag);
    CHECK_INT(nfrag, 3);
    CHECK_INT(c.ndata, 6);
    bt_buf_free(&text);
    col_free(&c);
}

static const char *const TOOL_SCHEMA =
    "{\"type\":\"object\",\"properties\":{"
    "\"city\":{\"type\":\"string\",\"minLength\":3,\"maxLength\":12},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":7},"
    "\"ratio\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1},"
    "\"verbose\":{\"type\":\"boolean\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":2,\"maxItems\":4},"
    "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"loc\":{\"type\":\"object\",\"properties\":{\"lat\":{\"type\":\"number\",\"minimum\":-90,"
    "\"maximum\":90},\"lon\":{\"type\":\"number\"}},\"required\":[\"lat\",\"lon\"],"
    "\"additionalProperties\":false},"
    "\"note\":{\"type\":[\"string\",\"null\"]}"
    "},\"required\":[\"city\",\"unit\",\"days\",\"ratio\",\"verbose\",\"tags\",\"loc\"],"
    "\"additionalProperties\":false}";

static char *tool_request(const char *extra, bool stream)
{
    struct bt_buf b;
    bt_buf_init(&b, 1 << 16);
    bt_buf_printf(&b,
                  "{\"model\":\"gpt-tools\",%s\"messages\":[{\"role\":\"user\",\"content\":"
                  "\"weather?\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
                  "\"get_weather\",\"parameters\":%s}},{\"type\":\"function\",\"function\":{"
                  "\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":{"
                  "\"tz\":{\"type\":\"string\"}},\"required\":[\"tz\"]}}}]%s%s}",
                  stream ? "\"stream\":true," : "", TOOL_SCHEMA, extra ? "," : "",
                  extra ? extra : "");
    bt_buf_cstr(&b);
    size_t n;
    return bt_buf_steal(&b, &n);
}

TEST(chat_tools_nonstream)
{
    for (uint64_t seed = 1; seed <= 25; seed++) {
        struct bt_sim_cfg cfg = cfg_default();
        cfg.seed = seed;
        char *req = tool_request(NULL, false);
        struct col c;
        col_init(&c);
        run_chat(&cfg, req, &c);
        CHECK_INT(c.status, 200);
        struct pj p;
        if (!pj_parse(&p, c.data.p, c.data.len)) {
            H_FAIL("not JSON");
        } else {
            struct bt_json_doc *d = &p.d;
            int ch = bt_json_at(d, bt_json_get(d, 0, "choices"), 0);
            int msg = bt_json_get(d, ch, "message");
            CHECK_STR(pj_str(&p, bt_json_get(d, ch, "finish_reason")), "tool_calls");
            CHECK_INT(bt_json_type(d, bt_json_get(d, msg, "content")), BT_JSON_NULL);
            int tc = bt_json_at(d, bt_json_get(d, msg, "tool_calls"), 0);
            CHECK(!strncmp(pj_str(&p, bt_json_get(d, tc, "id")), "call_", 5));
            CHECK_STR(pj_str(&p, bt_json_get(d, tc, "type")), "function");
            CHECK_STR(pj_str(&p, bt_json_path(d, tc, "function", "name", NULL)), "get_weather");
            const char *args = pj_str(&p, bt_json_path(d, tc, "function", "arguments", NULL));
            CHECK(json_fits(args, strlen(args), TOOL_SCHEMA));
            struct pj a;
            CHECK(pj_parse(&a, args, strlen(args)));
            pj_free(&a);
        }
        pj_free(&p);
        col_free(&c);
        free(req);
    }
}

TEST(chat_tools_stream)
{
    for (uint64_t seed = 1; seed <= 10; seed++) {
        struct bt_sim_cfg cfg = cfg_default();
        cfg.seed = seed;
        char *req = tool_request("\"stream_options\":{\"include_usage\":true}", true);
        struct col c;
        col_init(&c);
        run_chat(&cfg, req, &c);
        struct bt_buf args;
        bt_buf_init(&args, 1 << 20);
        int nfrag = 0;
        check_stream(&c, true, "gpt-tools", "tool_calls", true, &args, &nfrag);
        CHECK(nfrag >= 5); /* arguments arrive in several fragments */
        CHECK(json_fits(args.p, args.len, TOOL_SCHEMA));
        bt_buf_free(&args);
        col_free(&c);
        free(req);
    }
}

TEST(chat_tool_choice)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct pj p;
    struct col c;
    /* Named function: the second tool. */
    char *req = tool_request("\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}",
                             false);
    col_init(&c);
    run_chat(&cfg, req, &c);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    int tc = bt_json_path(&p.d, bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0), "message",
                          "tool_calls", NULL);
    tc = bt_json_at(&p.d, tc, 0);
    CHECK_STR(pj_str(&p, bt_json_path(&p.d, tc, "function", "name", NULL)), "get_time");
    const char *args = pj_str(&p, bt_json_path(&p.d, tc, "function", "arguments", NULL));
    CHECK(json_fits(args, strlen(args),
                    "{\"type\":\"object\",\"properties\":{\"tz\":{\"type\":\"string\"}},\"required\":[\"tz\"]}"));
    pj_free(&p);
    col_free(&c);
    free(req);

    /* "none": plain text. */
    req = tool_request("\"tool_choice\":\"none\"", false);
    col_init(&c);
    run_chat(&cfg, req, &c);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    int ch = bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0);
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, ch, "finish_reason")), "stop");
    CHECK_INT(bt_json_type(&p.d, bt_json_path(&p.d, ch, "message", "content", NULL)), BT_JSON_STRING);
    pj_free(&p);
    col_free(&c);
    free(req);

    /* Unknown name: 400 naming tool_choice. */
    req = tool_request("\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}", false);
    col_init(&c);
    run_chat(&cfg, req, &c);
    CHECK_INT(c.status, 400);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    CHECK_STR(pj_str(&p, bt_json_path(&p.d, 0, "error", "param", NULL)), "tool_choice");
    CHECK(strstr(pj_str(&p, bt_json_path(&p.d, 0, "error", "message", NULL)), "nope") != NULL);
    pj_free(&p);
    col_free(&c);
    free(req);

    /* After a tool result, "auto" answers in text (agent loops terminate). */
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":"
             "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
             "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":"
             "\"call_1\",\"content\":\"sunny\"}],\"tools\":[{\"type\":\"function\",\"function\":{"
             "\"name\":\"f\"}}]}",
             &c);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    ch = bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0);
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, ch, "finish_reason")), "stop");
    pj_free(&p);
    col_free(&c);

    /* "required" still calls after a tool result; no parameters -> "{}". */
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":"
             "\"x\"}],\"tool_choice\":\"required\",\"tools\":[{\"type\":\"function\",\"function\":{"
             "\"name\":\"f\"}}]}",
             &c);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    ch = bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0);
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, ch, "finish_reason")), "tool_calls");
    tc = bt_json_at(&p.d, bt_json_path(&p.d, ch, "message", "tool_calls", NULL), 0);
    CHECK_STR(pj_str(&p, bt_json_path(&p.d, tc, "function", "arguments", NULL)), "{}");
    pj_free(&p);
    col_free(&c);

    /* tool_choice without tools is refused. */
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}",
             &c);
    CHECK_INT(c.status, 400);
    col_free(&c);
}

static const char *const RF_SCHEMA =
    "{\"type\":\"object\",\"properties\":{"
    "\"items\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/Item\"}},"
    "\"status\":{\"anyOf\":[{\"type\":\"string\",\"enum\":[\"ok\",\"fail\"]},{\"type\":\"null\"}]},"
    "\"count\":{\"type\":\"integer\",\"multipleOf\":5,\"minimum\":10,\"maximum\":40},"
    "\"const\":{\"const\":\"fixed\"}"
    "},\"required\":[\"items\",\"status\",\"count\",\"const\"],\"additionalProperties\":false,"
    "\"$defs\":{\"Item\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"qty\":{\"type\":\"integer\",\"exclusiveMinimum\":0},\"sub\":{\"$ref\":\"#/$defs/Item\"}},"
    "\"required\":[\"name\",\"qty\"],\"additionalProperties\":false}}}";

TEST(chat_json_schema)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct bt_sim_cfg cfg = cfg_default();
        cfg.seed = seed;
        struct bt_buf req;
        bt_buf_init(&req, 1 << 16);
        bt_buf_printf(&req,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                      "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":"
                      "\"out\",\"strict\":true,\"schema\":%s}}%s}",
                      RF_SCHEMA, seed % 2 ? ",\"stream\":true" : "");
        bt_buf_cstr(&req);
        struct col c;
        col_init(&c);
        run_chat(&cfg, req.p, &c);
        CHECK_INT(c.status, 200);
        if (seed % 2) {
            struct bt_buf text;
            bt_buf_init(&text, 1 << 20);
            int nfrag;
            check_stream(&c, false, "m", "stop", false, &text, &nfrag);
            CHECK(json_fits(text.p, text.len, RF_SCHEMA));
            bt_buf_free(&text);
        } else {
            struct pj p;
            REQUIRE(pj_parse(&p, c.data.p, c.data.len));
            const char *content = pj_str(
                &p, bt_json_path(&p.d, bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0),
                                 "message", "content", NULL));
            CHECK(json_fits(content, strlen(content), RF_SCHEMA));
            pj_free(&p);
        }
        col_free(&c);
        bt_buf_free(&req);
    }

    /* json_object: some JSON object. */
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    col_init(&c);
    run_chat(&cfg,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"response_format\":{\"type\":\"json_object\"}}",
             &c);
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    const char *content = pj_str(
        &p, bt_json_path(&p.d, bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0), "message",
                         "content", NULL));
    CHECK(json_fits(content, strlen(content), "{\"type\":\"object\"}"));
    pj_free(&p);
    col_free(&c);
}

TEST(chat_n_choices)
{
    struct bt_sim_cfg cfg = cfg_default();
    cfg.reply_tokens = 4;
    struct col c;
    col_init(&c);
    run_chat(&cfg, "{\"model\":\"m\",\"n\":3,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &c);
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    int chs = bt_json_get(&p.d, 0, "choices");
    CHECK_INT(p.d.toks[chs].size, 3);
    for (uint32_t i = 0; i < 3; i++)
        CHECK_INT(pj_int(&p, bt_json_get(&p.d, bt_json_at(&p.d, chs, i), "index")), i);
    CHECK_INT(pj_int(&p, bt_json_path(&p.d, 0, "usage", "completion_tokens", NULL)), 12);
    pj_free(&p);
    col_free(&c);

    col_init(&c);
    run_chat(&cfg, "{\"model\":\"m\",\"n\":2,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &c);
    static struct events e;
    split_sse(&c.data, &e);
    /* 2 role + 2*4 tokens + 2 finish + [DONE] */
    CHECK_INT(e.n, 13);
    int roles = 0;
    for (int i = 0; i < e.n - 1; i++) {
        REQUIRE(pj_parse(&p, e.ev[i].p, e.ev[i].len));
        int ch = bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0);
        if (bt_json_path(&p.d, ch, "delta", "role", NULL) >= 0) {
            CHECK_INT(pj_int(&p, bt_json_get(&p.d, ch, "index")), roles);
            roles++;
        }
        pj_free(&p);
    }
    CHECK_INT(roles, 2);
    col_free(&c);

    col_init(&c);
    run_chat(&cfg, "{\"model\":\"m\",\"n\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &c);
    CHECK_INT(c.status, 400);
    col_free(&c);
}

/* Checks an OpenAI error body; param may be NULL for a null param. */
static void check_error(struct col *c, int status, const char *type, const char *param)
{
    CHECK_INT(c->status, status);
    CHECK_STR(c->ctype, "application/json");
    CHECK_INT(c->ndone, 1);
    CHECK_INT(c->err, BT_OK);
    struct pj p;
    if (!pj_parse(&p, c->data.p, c->data.len)) {
        H_FAIL("error body is not JSON: %.*s", (int)c->data.len, c->data.p);
        pj_free(&p);
        return;
    }
    int e = bt_json_get(&p.d, 0, "error");
    CHECK_INT(bt_json_type(&p.d, e), BT_JSON_OBJECT);
    CHECK(strlen(pj_str(&p, bt_json_get(&p.d, e, "message"))) > 0);
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, e, "type")), type);
    int pa = bt_json_get(&p.d, e, "param");
    if (param) CHECK_STR(pj_str(&p, pa), param);
    else CHECK_INT(bt_json_type(&p.d, pa), BT_JSON_NULL);
    CHECK(bt_json_get(&p.d, e, "code") >= 0);
    pj_free(&p);
}

TEST(chat_bad_requests)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct {
        const char *body, *param;
    } cases[] = {
        {"{\"model\":\"m\",\"messages\":[", NULL},
        {"", NULL},
        {"[1,2]", NULL},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL},
        {"{\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model"},
        {"{\"model\":\"m\"}", "messages"},
        {"{\"model\":\"m\",\"messages\":{}}", "messages"},
        {"{\"model\":\"m\",\"messages\":[]}", "messages"},
        {"{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", "stream"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{\"include_usage\":true}}", "stream_options"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", "tools"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"yaml\"}}", "response_format.type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct col c;
        col_init(&c);
        run_chat(&cfg, cases[i].body, &c);
        check_error(&c, 400, "invalid_request_error", cases[i].param);
        col_free(&c);
    }
}

TEST(paths_models_404)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    col_init(&c);
    run(&cfg, "GET", "/models", "", -1, &c);
    CHECK_INT(c.status, 200);
    CHECK_SLICE(bt_buf_str(&c.data),
                "{\"object\":\"list\",\"data\":[{\"id\":\"sim\",\"object\":\"model\",\"created\":0,"
                "\"owned_by\":\"baton-sim\"}]}");
    col_free(&c);

    col_init(&c);
    run(&cfg, "GET", "/models/gpt-x", "", -1, &c);
    CHECK_INT(c.status, 200);
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, 0, "id")), "gpt-x");
    pj_free(&p);
    col_free(&c);

    col_init(&c);
    run(&cfg, "POST", "/completions", "{}", -1, &c);
    check_error(&c, 404, "invalid_request_error", NULL);
    col_free(&c);

    col_init(&c);
    run(&cfg, "GET", "/chat/completions", "", -1, &c);
    check_error(&c, 405, "invalid_request_error", NULL);
    col_free(&c);
}

/* Decodes standard base64 into out (cap bytes); returns the length or -1. */
static long b64dec(const char *s, unsigned char *out, size_t cap)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    if (n % 4) return -1;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *q = strchr(al, s[i + k]);
            if (s[i + k] == '=') {
                pad++;
                v <<= 6;
            } else if (q && s[i + k]) {
                v = (v << 6) | (uint32_t)(q - al);
            } else {
                return -1;
            }
        }
        for (int k = 0; k < 3 - pad; k++) {
            if (o >= cap) return -1;
            out[o++] = (unsigned char)(v >> (16 - 8 * k));
        }
    }
    return (long)o;
}

TEST(embeddings_float_and_base64)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    col_init(&c);
    run(&cfg, "POST", "/embeddings",
        "{\"model\":\"emb\",\"input\":[\"alpha\",\"beta gamma\",\"안녕하세요\"]}", -1, &c);
    CHECK_INT(c.status, 200);
    CHECK(cjson_valid(c.data.p, c.data.len));
    struct pj p;
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, 0, "object")), "list");
    CHECK_STR(pj_str(&p, bt_json_get(&p.d, 0, "model")), "emb");
    int data = bt_json_get(&p.d, 0, "data");
    REQUIRE(p.d.toks[data].size == 3);
    double first[16];
    for (uint32_t i = 0; i < 3; i++) {
        int it = bt_json_at(&p.d, data, i);
        CHECK_STR(pj_str(&p, bt_json_get(&p.d, it, "object")), "embedding");
        CHECK_INT(pj_int(&p, bt_json_get(&p.d, it, "index")), i);
        int v = bt_json_get(&p.d, it, "embedding");
        REQUIRE(bt_json_type(&p.d, v) == BT_JSON_ARRAY);
        CHECK_INT(p.d.toks[v].size, 16);
        double norm = 0;
        for (uint32_t k = 0; k < p.d.toks[v].size; k++) {
            double x = 0;
            CHECK_INT(bt_json_double(&p.d, bt_json_at(&p.d, v, k), &x), BT_OK);
            if (i == 0 && k < 16) first[k] = x;
            norm += x * x;
        }
        CHECK(fabs(norm - 1) < 1e-5);
    }
    /* "alpha"=2, "beta gamma"=3, 15 bytes of Korean=4 */
    CHECK_INT(pj_int(&p, bt_json_path(&p.d, 0, "usage", "prompt_tokens", NULL)), 9);
    CHECK_INT(pj_int(&p, bt_json_path(&p.d, 0, "usage", "total_tokens", NULL)), 9);
    pj_free(&p);
    col_free(&c);

    /* Same text, base64: the same vector as little-endian float32. */
    col_init(&c);
    run(&cfg, "POST", "/embeddings", "{\"model\":\"emb\",\"input\":\"alpha\",\"encoding_format\":\"base64\"}",
        -1, &c);
    CHECK_INT(c.status, 200);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    int it = bt_json_at(&p.d, bt_json_get(&p.d, 0, "data"), 0);
    const char *s = pj_str(&p, bt_json_get(&p.d, it, "embedding"));
    unsigned char raw[256];
    long n = b64dec(s, raw, sizeof raw);
    CHECK_INT(n, 16 * 4);
    double norm = 0;
    for (long k = 0; k < n / 4; k++) {
        uint32_t u = (uint32_t)raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 |
                     (uint32_t)raw[4 * k + 2] << 16 | (uint32_t)raw[4 * k + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        norm += (double)f * f;
        CHECK(fabs((double)f - first[k]) < 1e-7);
    }
    CHECK(fabs(norm - 1) < 1e-5);
    pj_free(&p);
    col_free(&c);

    /* dimensions from the request; token-array input. */
    col_init(&c);
    run(&cfg, "POST", "/embeddings",
        "{\"model\":\"emb\",\"input\":[[1,2,3],[4]],\"dimensions\":5,\"encoding_format\":\"base64\"}", -1, &c);
    REQUIRE(pj_parse(&p, c.data.p, c.data.len));
    for (uint32_t i = 0; i < 2; i++) {
        it = bt_json_at(&p.d, bt_json_get(&p.d, 0, "data"), i);
        CHECK_INT(b64dec(pj_str(&p, bt_json_get(&p.d, it, "embedding")), raw, sizeof raw), 20);
    }
    CHECK_INT(pj_int(&p, bt_json_path(&p.d, 0, "usage", "prompt_tokens", NULL)), 4);
    pj_free(&p);
    col_free(&c);

    /* Bad inputs. */
    const char *bad[] = {
        "{\"model\":\"emb\"}",
        "{\"model\":\"emb\",\"input\":\"\"}",
        "{\"model\":\"emb\",\"input\":[]}",
        "{\"model\":\"emb\",\"input\":[\"a\",3]}",
        "{\"model\":\"emb\",\"input\":\"a\",\"dimensions\":0}",
        "{\"model\":\"emb\",\"input\":\"a\",\"encoding_format\":\"hex\"}",
        "{\"input\":\"a\"}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        col_init(&c);
        run(&cfg, "POST", "/embeddings", bad[i], -1, &c);
        CHECK_INT(c.status, 400);
        col_free(&c);
    }
}

static const char *const STREAM_REQ =
    "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":"
    "[{\"role\":\"user\",\"content\":\"hi\"}]}";

TEST(faults_status)
{
    struct bt_sim_cfg cfg = cfg_default();
    cfg.retry_after_s = 7;
    struct col c;
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", CHAT_HELLO, BT_SIM_FAULT_429, &c);
    check_error(&c, 429, "requests", NULL);
    CHECK_STR(c.retry_after, "7");
    CHECK_STR(c.retry_after_ms, "7000");
    CHECK_STR(c.fault, "429");
    col_free(&c);

    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_500, &c);
    check_error(&c, 500, "server_error", NULL);
    CHECK_STR(c.retry_after, "");
    col_free(&c);

    col_init(&c);
    run(&cfg, "POST", "/embeddings", "{\"model\":\"e\",\"input\":\"x\"}", BT_SIM_FAULT_503, &c);
    check_error(&c, 503, "server_error", NULL);
    col_free(&c);

    /* error_event without a stream is a 500. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", CHAT_HELLO, BT_SIM_FAULT_ERROR_EVENT, &c);
    check_error(&c, 500, "server_error", NULL);
    col_free(&c);
}

TEST(faults_connection)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col full, c;
    col_init(&full);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, -1, &full);

    /* no_answer: nothing at all, even after cancel. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_NO_ANSWER, &c);
    CHECK_INT(c.nhead + c.ndata + c.ndone, 0);
    col_free(&c);

    /* reset_before: on_done(ECONNRESET) without a head. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_RESET_BEFORE, &c);
    CHECK_INT(c.nhead, 0);
    CHECK_INT(c.ndata, 0);
    CHECK_INT(c.ndone, 1);
    CHECK_INT(c.err, BT_ECONNRESET);
    col_free(&c);

    /* reset_mid: the head, a prefix of the stream, then a reset. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_RESET_MID, &c);
    CHECK_INT(c.nhead, 1);
    CHECK_INT(c.status, 200);
    CHECK(c.ndata > 0 && c.data.len < full.data.len);
    CHECK(!memcmp(c.data.p, full.data.p, c.data.len));
    CHECK_INT(c.ndone, 1);
    CHECK_INT(c.err, BT_ECONNRESET);
    col_free(&c);

    /* reset_mid on a JSON body: half of it. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", CHAT_HELLO, BT_SIM_FAULT_RESET_MID, &c);
    CHECK_INT(c.nhead, 1);
    CHECK(c.data.len > 0);
    CHECK(!cjson_valid(c.data.p, c.data.len));
    CHECK_INT(c.err, BT_ECONNRESET);
    col_free(&c);

    /* stall_mid: head and a prefix, then silence (the run helper cancels). */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_STALL_MID, &c);
    CHECK_INT(c.nhead, 1);
    CHECK(c.ndata > 0 && c.data.len < full.data.len);
    CHECK(!memcmp(c.data.p, full.data.p, c.data.len));
    CHECK_INT(c.ndone, 0);
    col_free(&c);
    col_free(&full);
}

TEST(faults_body)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    static struct events e;

    /* invalid_json, non-stream: 200 and a body that does not parse. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", CHAT_HELLO, BT_SIM_FAULT_INVALID_JSON, &c);
    CHECK_INT(c.status, 200);
    CHECK_INT(c.err, BT_OK);
    CHECK(c.data.len > 0);
    struct pj p;
    CHECK(!pj_parse(&p, c.data.p, c.data.len));
    pj_free(&p);
    CHECK(!cjson_valid(c.data.p, c.data.len));
    col_free(&c);

    /* invalid_json, stream: one broken data line among good events. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_INVALID_JSON, &c);
    CHECK_INT(c.status, 200);
    split_sse(&c.data, &e);
    int broken = 0;
    for (int i = 0; i < e.n; i++)
        if (!bt_str_eq_c(e.ev[i], "[DONE]") && !cjson_valid(e.ev[i].p, e.ev[i].len)) broken++;
    CHECK_INT(broken, 1);
    CHECK(memmem(c.data.p, c.data.len, "data: {broken\n\n", 15) != NULL);
    col_free(&c);

    /* error_event: some chunks, then the error event, and no [DONE]. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, BT_SIM_FAULT_ERROR_EVENT, &c);
    CHECK_INT(c.status, 200);
    CHECK_INT(c.ndone, 1);
    CHECK_INT(c.err, BT_OK);
    split_sse(&c.data, &e);
    CHECK(e.framing_ok);
    REQUIRE(e.n >= 3);
    CHECK_SLICE(e.ev[e.n - 1], "{\"error\":{\"message\":\"simulated error\",\"type\":\"server_error\","
                               "\"param\":null,\"code\":\"sim_error\"}}");
    for (int i = 0; i < e.n; i++) CHECK(!bt_str_eq_c(e.ev[i], "[DONE]"));
    REQUIRE(pj_parse(&p, e.ev[0].p, e.ev[0].len));
    CHECK_STR(pj_str(&p, bt_json_path(&p.d, bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0),
                                      "delta", "role", NULL)),
              "assistant");
    pj_free(&p);
    col_free(&c);

    /* slow_bytes: the normal reply, one byte per on_data, ~10 ms apart. */
    struct col normal;
    col_init(&normal);
    run(&cfg, "GET", "/models", "", -1, &normal);
    col_init(&c);
    run(&cfg, "GET", "/models", "", BT_SIM_FAULT_SLOW_BYTES, &c);
    CHECK_INT(c.status, 200);
    CHECK_INT(c.ndone, 1);
    CHECK_INT((size_t)c.ndata, normal.data.len);
    CHECK(c.data.len == normal.data.len && !memcmp(c.data.p, normal.data.p, c.data.len));
    CHECK(c.done_ms >= 10 * (normal.data.len - 1));
    col_free(&c);
    col_free(&normal);
}

TEST(fault_rates)
{
    struct bt_sim_cfg cfg = cfg_default();
    cfg.fault_500 = 1.0;
    struct col c;
    col_init(&c);
    run_chat(&cfg, CHAT_HELLO, &c);
    CHECK_INT(c.status, 500);
    col_free(&c);

    /* A forced "none" beats the rate. */
    col_init(&c);
    run(&cfg, "POST", "/chat/completions", CHAT_HELLO, BT_SIM_FAULT_NONE, &c);
    CHECK_INT(c.status, 200);
    col_free(&c);

    /* Rates hold over repeated identical requests. */
    cfg.fault_500 = 0.25;
    cfg.fault_429 = 0.25;
    int n500 = 0, n429 = 0, n200 = 0;
    for (int i = 0; i < 400; i++) {
        col_init(&c);
        run(&cfg, "GET", "/models", "", -1, &c);
        if (c.status == 500) n500++;
        else if (c.status == 429) n429++;
        else if (c.status == 200) n200++;
        col_free(&c);
    }
    CHECK(n500 > 60 && n500 < 140);
    CHECK(n429 > 60 && n429 < 140);
    CHECK(n200 > 140 && n200 < 260);
    CHECK_INT(n500 + n429 + n200, 400);
}

TEST(cancel_paths)
{
    struct bt_sim_cfg cfg = cfg_default();
    struct col c;
    /* Cancel inside the first on_data: nothing afterwards, no on_done. */
    col_init(&c);
    c.cancel_at_data = 1;
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, -1, &c);
    CHECK_INT(c.nhead, 1);
    CHECK_INT(c.ndata, 1);
    CHECK_INT(c.ndone, 0);
    col_free(&c);

    /* Cancel inside on_head. */
    col_init(&c);
    c.cancel_in_head = true;
    run(&cfg, "POST", "/chat/completions", STREAM_REQ, -1, &c);
    CHECK_INT(c.nhead, 1);
    CHECK_INT(c.ndata + c.ndone, 0);
    col_free(&c);

    /* Cancel inside on_done is harmless. */
    col_init(&c);
    c.cancel_in_done = true;
    run(&cfg, "POST", "/chat/completions", CHAT_HELLO, -1, &c);
    CHECK_INT(c.ndone, 1);
    CHECK_INT(c.after_done, 0);
    col_free(&c);

    /* Cancel right after start: no callback ever. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    col_init(&c);
    c.loop = &loop;
    struct bt_sim_request req = {BT_STR("POST"), BT_STR("/chat/completions"), bt_str_c(CHAT_HELLO), -1};
    struct bt_sim_call *call = bt_sim_start(&loop, BT_API_OPENAI, &cfg, &req, &cbs, &c);
    REQUIRE(call != NULL);
    bt_sim_cancel(call);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(c.nhead + c.ndata + c.ndone, 0);
    CHECK_INT(uv_loop_close(&loop), 0);
    col_free(&c);

    /* Cancel mid-way through a paced stream, from outside any callback. */
    cfg.tokens_per_sec = 200;
    uv_loop_init(&loop);
    col_init(&c);
    c.loop = &loop;
    c.t0 = uv_now(&loop);
    struct bt_sim_request sreq = {BT_STR("POST"), BT_STR("/chat/completions"), bt_str_c(STREAM_REQ), -1};
    call = bt_sim_start(&loop, BT_API_OPENAI, &cfg, &sreq, &cbs, &c);
    REQUIRE(call != NULL);
    while (c.ndata < 3) uv_run(&loop, UV_RUN_ONCE);
    bt_sim_cancel(call);
    int seen = c.ndata;
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(c.ndata, seen);
    CHECK_INT(c.ndone, 0);
    CHECK_INT(uv_loop_close(&loop), 0);
    col_free(&c);
}

TEST(timing)
{
    struct bt_sim_cfg cfg = cfg_default();
    cfg.ttft_ms = 40;
    cfg.tokens_per_sec = 100; /* 10 ms per token */
    cfg.reply_tokens = 6;
    struct col c;
    col_init(&c);
    run_chat(&cfg, STREAM_REQ, &c);
    CHECK(c.head_ms >= 40);
    CHECK(c.first_data_ms >= 40);
    CHECK(c.done_ms >= 40 + 50);
    CHECK(c.done_ms < 40 + 50 + 200);
    CHECK_INT(c.err, BT_OK);
    col_free(&c);

    /* A non-stream reply arrives whole after the generation time. */
    col_init(&c);
    run_chat(&cfg, CHAT_HELLO, &c);
    CHECK(c.head_ms >= 90);
    CHECK_INT(c.ndata, 1);
    col_free(&c);

    /* Zero latency: a long stream is still one on_data per event, and fast. */
    cfg = cfg_default();
    cfg.reply_tokens = 5000;
    col_init(&c);
    uint64_t t0 = uv_hrtime();
    run_chat(&cfg, STREAM_REQ, &c);
    uint64_t took_ms = (uv_hrtime() - t0) / 1000000;
    CHECK_INT(c.ndata, 5000 + 4);
    CHECK(took_ms < 2000);
    col_free(&c);
}

TEST(schema_edge_cases)
{
    struct bt_sim_cfg cfg = cfg_default();
    /* Self-reference through "#", a required recursive member, an
     * exponential array: generation must end, with JSON or a 500. */
    const char *schemas[] = {
        "{\"$ref\":\"#\"}",
        "{\"type\":\"object\",\"properties\":{\"self\":{\"$ref\":\"#\"},\"kids\":{\"type\":"
        "\"array\",\"items\":{\"$ref\":\"#\"}}},\"required\":[\"self\"]}",
        "{\"type\":\"array\",\"minItems\":64,\"items\":{\"$ref\":\"#\"}}",
        "{\"$ref\":\"#/$defs/missing\"}",
        "{\"type\":\"object\",\"required\":[\"x\",\"y\"],\"properties\":{\"y\":{\"type\":"
        "\"integer\",\"minimum\":5,\"maximum\":5}}}",
        "{\"type\":\"string\",\"minLength\":40,\"maxLength\":40}",
        "{\"anyOf\":[{\"type\":\"null\"}]}",
        "{\"enum\":[]}",
        "{\"type\":[\"null\",\"boolean\"]}",
        "{}",
    };
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        struct bt_buf req;
        bt_buf_init(&req, 1 << 16);
        bt_buf_printf(&req,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                      "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":"
                      "\"o\",\"schema\":%s}}}",
                      schemas[i]);
        bt_buf_cstr(&req);
        struct col c;
        col_init(&c);
        run_chat(&cfg, req.p, &c);
        CHECK(c.status == 200 || c.status == 500);
        CHECK_INT(c.ndone, 1);
        CHECK(cjson_valid(c.data.p, c.data.len));
        if (c.status == 200) {
            struct pj p;
            REQUIRE(pj_parse(&p, c.data.p, c.data.len));
            const char *content = pj_str(
                &p, bt_json_path(&p.d, bt_json_at(&p.d, bt_json_get(&p.d, 0, "choices"), 0),
                                 "message", "content", NULL));
            if (!cjson_valid(content, strlen(content))) H_FAIL("schema %zu: content not JSON", i);
            /* 4.. are satisfiable (an empty enum is not) */
            if (i >= 4 && strcmp(schemas[i], "{\"enum\":[]}") != 0)
                CHECK(json_fits(content, strlen(content), schemas[i]));
            pj_free(&p);
        }
        col_free(&c);
        bt_buf_free(&req);
    }
}

TEST(truncated_requests)
{
    /* Every strict prefix of a valid request is invalid JSON: a 400 with an
     * OpenAI error body, never a crash. */
    struct bt_sim_cfg cfg = cfg_default();
    char *full = tool_request("\"stream\":false", false);
    size_t n = strlen(full);
    for (size_t len = 0; len < n; len += 3) {
        char *cut = bt_str_dup((struct bt_str){full, len});
        struct col c;
        col_init(&c);
        run_chat(&cfg, cut, &c);
        if (c.status != 400) H_FAIL("prefix %zu: status %d", len, c.status);
        CHECK(cjson_valid(c.data.p, c.data.len));
        col_free(&c);
        free(cut);
    }
    struct col c;
    col_init(&c);
    run_chat(&cfg, full, &c);
    CHECK_INT(c.status, 200);
    col_free(&c);
    free(full);
}

/* The renderer table: OpenAI's renderer is found by its wire and renders each
 * error the runner and `baton sim` ask for; a wire without a renderer (Anthropic
 * has none yet; 0 and an out-of-range value are none at all) is refused at
 * start: NULL, no callback, nothing left on the loop, whatever the request and
 * fault. */
TEST(renderer_table)
{
    const struct bt_sim_renderer *rd = bt_sim_renderer_find(BT_API_OPENAI);
    REQUIRE(rd != NULL);
    CHECK_INT(rd->wire, BT_API_OPENAI);
    CHECK(rd->render_reply && rd->render_chat && rd->render_stream_step &&
          rd->render_stream_error && rd->render_error && rd->request_id_header);
    static const struct {
        enum bt_sim_error e;
        int status;
        const char *type, *param;
    } errs[] = {
        {BT_SIM_ERR_RATE_LIMIT, 429, "requests", NULL},
        {BT_SIM_ERR_SERVER, 500, "server_error", NULL},
        {BT_SIM_ERR_OVERLOADED, 503, "server_error", NULL},
        {BT_SIM_ERR_SIMULATED, 500, "server_error", NULL},
        {BT_SIM_ERR_RENDER, 500, "server_error", NULL},
        {BT_SIM_ERR_UNKNOWN_URL, 404, "invalid_request_error", NULL},
        {BT_SIM_ERR_BAD_FAULT, 400, "invalid_request_error", "x-sim-fault"},
        {(enum bt_sim_error)0, 500, "server_error", NULL},    /* not an error: a 500 */
        {(enum bt_sim_error)9999, 500, "server_error", NULL}, /* likewise */
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        struct bt_sim_reply r;
        bt_sim_reply_init(&r);
        bt_sim_reply_emit(&r, BT_STR("data: replaced\n\n"), 5);
        r.sse = true;
        rd->render_error(&r, errs[i].e);
        CHECK_INT(r.err, BT_OK);
        CHECK_INT(r.status, errs[i].status);
        CHECK(!r.sse);
        CHECK_INT(r.npieces, 1);
        struct col c;
        col_init(&c);
        c.status = r.status;
        c.ndone = 1;
        memcpy(c.ctype, "application/json", sizeof "application/json");
        bt_buf_append_str(&c.data, bt_buf_str(&r.body));
        check_error(&c, errs[i].status, errs[i].type, errs[i].param);
        col_free(&c);
        bt_sim_reply_free(&r);
    }

    struct bt_sim_cfg cfg = cfg_default();
    CHECK(bt_sim_renderer_find(BT_API_ANTHROPIC) == &bt_sim_anthropic_renderer);
    CHECK(bt_sim_renderer_find(BT_API_GEMINI) == &bt_sim_gemini_renderer);
    const enum bt_api unknown[] = {(enum bt_api)0, (enum bt_api)9999};
    const int faults[] = {-1, BT_SIM_FAULT_429, BT_SIM_FAULT_ERROR_EVENT, BT_SIM_FAULT_NO_ANSWER};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK(bt_sim_renderer_find(unknown[i]) == NULL);
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct col c;
        col_init(&c);
        c.loop = &loop;
        for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
            struct bt_sim_request req = {BT_STR("POST"), BT_STR("/chat/completions"),
                                         bt_str_c(STREAM_REQ), faults[f]};
            CHECK(bt_sim_start(&loop, unknown[i], &cfg, &req, &cbs, &c) == NULL);
            struct bt_sim_request bad = {BT_STR("GET"), BT_STR("/nowhere"), BT_STR(""), faults[f]};
            CHECK(bt_sim_start(&loop, unknown[i], &cfg, &bad, &cbs, &c) == NULL);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK_INT(c.nhead + c.ndata + c.ndone, 0);
        CHECK_INT(uv_loop_close(&loop), 0);
        col_free(&c);
    }
}

int main(void)
{
    RUN(fault_names_and_defaults);
    RUN(chat_text_nonstream);
    RUN(chat_utf8_words);
    RUN(chat_deterministic);
    RUN(chat_max_tokens_length);
    RUN(chat_stream_text_usage);
    RUN(chat_tools_nonstream);
    RUN(chat_tools_stream);
    RUN(chat_tool_choice);
    RUN(chat_json_schema);
    RUN(chat_n_choices);
    RUN(chat_bad_requests);
    RUN(paths_models_404);
    RUN(embeddings_float_and_base64);
    RUN(faults_status);
    RUN(faults_connection);
    RUN(faults_body);
    RUN(fault_rates);
    RUN(cancel_paths);
    RUN(timing);
    RUN(schema_edge_cases);
    RUN(truncated_requests);
    RUN(renderer_table);
    return HARNESS_DONE();
}
