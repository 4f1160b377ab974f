/* Golden pairs: a client API (openai, anthropic) in front of a provider wire
 * (openai, anthropic, gemini; azure as openai's wire), driven from the data
 * files under tests/golden/pairs/<client>-to-<wire>/<case>/ (layout and
 * normalization: tests/golden/pairs/README.md). Each case runs the code path
 * exec runs, without sockets: the client front end's decode (+ chat when the
 * wires differ) -> the provider adapter's encode, compared with upstream.json
 * (or the 400 in error.json); then the provider's stream through the SSE
 * parser -> classify/decode_event -> the front end's stream encoder (the
 * translate path) or the relay (the fast path), or the provider's reply ->
 * decode_reply -> the front end's reply aggregator, or the provider's error
 * reply -> decode_error -> the client's error body, compared with client.sse,
 * client.json or error.json. Streams are also fed split at every byte
 * boundary and in 1-byte pieces: the client's bytes must be identical.
 * BATON_GOLDEN_WRITE=1 writes expected files that are missing (read and check
 * them by hand before committing); without it a missing file is a failure.
 * tests/integration/pairs_schema.test.mjs validates the same files against
 * the APIs' official schemas. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "api/anthropic.h"
#include "api/openai.h"
#include "config/config.h"
#include "exec/policy.h"
#include "harness.h"
#include "http/sse.h"
#include "provider/provider.h"

#define PAIRS "tests/golden/pairs"

/* ---- files ---- */

/* The subdirectories of `dir`, sorted; *n of them (caller frees). */
static char **subdirs(const char *dir, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1200];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) || !S_ISDIR(st.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (!nn) break;
            names = nn;
        }
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(names, *n, sizeof(*names), h_cmp_names);
    return names;
}

/* ---- comparisons ---- */

/* Sets every member named "created" (the encoders' clock) to 0. */
static void mask(cJSON *j)
{
    if (!j) return;
    cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        if (c->string && strcmp(c->string, "created") == 0 && cJSON_IsNumber(c))
            cJSON_SetNumberValue(c, 0);
        else
            mask(c);
    }
}

/* True when `a` and `b` are the same JSON once masked. */
static bool json_same(const char *a, size_t al, const char *b, size_t bl)
{
    cJSON *ja = cJSON_ParseWithLength(a, al), *jb = cJSON_ParseWithLength(b, bl);
    mask(ja);
    mask(jb);
    bool same = ja && jb && cJSON_Compare(ja, jb, true);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return same;
}

/* A stream as a list of (event name, data). */
struct evlist {
    size_t n;
    char *name[256];
    char *data[256];
    bool over; /* more than 256 events */
};

static int collect(void *ud, const struct bt_sse_event *ev)
{
    struct evlist *l = ud;
    if (!ev->has_data && !ev->event.len) return 0; /* a comment */
    if (l->n == 256) {
        l->over = true;
        return 0;
    }
    l->name[l->n] = strndup(ev->event.p ? ev->event.p : "", ev->event.len);
    l->data[l->n] = strndup(ev->data.p ? ev->data.p : "", ev->data.len);
    l->n++;
    return 0;
}

static bool parse_events(const char *s, size_t n, struct evlist *l)
{
    memset(l, 0, sizeof(*l));
    struct bt_sse p;
    bt_sse_init(&p, 1u << 20, collect, l);
    bool ok = bt_sse_feed(&p, s, n) == BT_OK && !bt_sse_partial(&p) && !l->over;
    bt_sse_free(&p);
    return ok;
}

static void free_events(struct evlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->name[i]);
        free(l->data[i]);
    }
}

/* Streams compared event by event: the same names, and data that are the same
 * JSON once masked (or the same bytes when not JSON, as `[DONE]`). */
static bool sse_same(const char *a, size_t al, const char *b, size_t bl, char *why, size_t cap)
{
    struct evlist x, y;
    bool okx = parse_events(a, al, &x); /* both parsed: both freed below */
    bool ok = parse_events(b, bl, &y) && okx;
    if (!ok) snprintf(why, cap, "a stream does not parse as whole SSE events");
    if (ok && x.n != y.n) {
        snprintf(why, cap, "%zu events, expected %zu", x.n, y.n);
        ok = false;
    }
    for (size_t i = 0; ok && i < x.n; i++) {
        size_t xl = strlen(x.data[i]), yl = strlen(y.data[i]);
        cJSON *probe = cJSON_ParseWithLength(x.data[i], xl);
        bool json = probe != NULL;
        cJSON_Delete(probe);
        if (strcmp(x.name[i], y.name[i]) != 0 ||
            !(json ? json_same(x.data[i], xl, y.data[i], yl) : strcmp(x.data[i], y.data[i]) == 0)) {
            snprintf(why, cap, "event %zu differs: %s %s", i, x.name[i], x.data[i]);
            ok = false;
        }
    }
    free_events(&x);
    free_events(&y);
    return ok;
}

enum cmp { CMP_JSON, CMP_SSE, CMP_BYTES };

/* Compares `got` with the file `path`; writes it when missing and
 * BATON_GOLDEN_WRITE is set. */
static bool golden(const char *path, const char *got, size_t n, enum cmp how)
{
    size_t el;
    char *exp = h_read_file(path, &el);
    if (!exp) return h_golden_missing(path, got, n);
    char why[600] = "";
    bool ok;
    if (how == CMP_JSON) {
        ok = json_same(got, n, exp, el);
    } else if (how == CMP_SSE) {
        ok = sse_same(got, n, exp, el, why, sizeof(why));
    } else {
        size_t gl = n;
        while (el && exp[el - 1] == '\n') el--;
        while (gl && got[gl - 1] == '\n') gl--;
        ok = el == gl && memcmp(exp, got, gl) == 0;
    }
    if (!ok)
        fprintf(stderr, "  %s differs (%s); got:\n%.*s\n", path, why, (int)n, got);
    free(exp);
    return ok;
}

/* ---- one pair's setting ---- */

struct pair {
    const char *dir;                /* the pair's directory name */
    const struct bt_frontend *fe;   /* the client's API */
    struct bt_config *cfg;
    const struct bt_provider *prov; /* provider `up` of provider.yaml */
    const struct bt_adapter *ad;
    char model[128];                /* the deployment's model id (`# upstream_model:`) */
};

static bool pair_load(struct pair *p, const char *name)
{
    memset(p, 0, sizeof(*p));
    p->dir = name;
    p->fe = strncmp(name, "openai-", 7) == 0      ? &bt_fe_openai
            : strncmp(name, "anthropic-", 10) == 0 ? &bt_fe_anthropic
                                                   : NULL;
    if (!p->fe) return false;
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s/provider.yaml", PAIRS, name);
    size_t len;
    char *yaml = h_read_file(path, &len);
    if (!yaml) return false;
    const char *m = strstr(yaml, "# upstream_model: ");
    if (m) sscanf(m + 18, "%127s", p->model);
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_string(path, yaml, len, &p->cfg, &d);
    if (err) bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    free(yaml);
    if (err || !p->model[0]) return false;
    p->prov = bt_config_provider(p->cfg, BT_STR("up"));
    if (!p->prov) return false;
    p->ad = bt_adapter_for(p->prov);
    return true;
}

/* ---- the response: what the client receives ---- */

struct run {
    const struct pair *p;
    const struct bt_request *r;
    bool translate;
    bool added_usage;
    void *st;          /* the front end's stream state (translate) */
    struct bt_buf out; /* what the client receives */
    bool saw_done, saw_error, invalid;
};

static void on_translated(void *ud, const struct bt_event *ev)
{
    struct run *x = ud;
    if (ev->type == BT_EV_DONE) x->saw_done = true;
    if (ev->type == BT_EV_ERROR) x->saw_error = true;
    if (x->p->fe->stream_event(x->st, ev, &x->out) && ev->type != BT_EV_ERROR) x->invalid = true;
}

struct relay_ev {
    bool error;
    char msg[400], code[64], type[64];
};

static void on_relay_event(void *ud, const struct bt_event *ev)
{
    struct relay_ev *re = ud;
    if (ev->type != BT_EV_ERROR) return;
    re->error = true;
    struct bt_buf b;
    bt_buf_init(&b, sizeof(re->msg) - 1);
    if (bt_json_unescape(ev->err_message, &b) == BT_OK)
        snprintf(re->msg, sizeof(re->msg), "%.*s", (int)b.len, b.p ? b.p : "");
    bt_buf_reset(&b);
    if (bt_json_unescape(ev->err_code, &b) == BT_OK)
        snprintf(re->code, sizeof(re->code), "%.*s", (int)b.len, b.p ? b.p : "");
    bt_buf_reset(&b);
    if (bt_json_unescape(ev->err_type, &b) == BT_OK)
        snprintf(re->type, sizeof(re->type), "%.*s", (int)b.len, b.p ? b.p : "");
    bt_buf_free(&b);
}

/* One provider event, as exec's on_sse handles it: translated into the
 * client's API, or relayed (the fast path: the bytes as they came, but the
 * usage event baton asked for dropped and an error event written anew). */
static int on_sse(void *ud, const struct bt_sse_event *ev)
{
    struct run *x = ud;
    if (x->saw_error || x->invalid) return 0;
    enum bt_ev_kind k = x->p->ad->classify_event(ev, false, true);
    if (k == BT_EVK_INVALID) {
        x->invalid = true;
        return 0;
    }
    if (k == BT_EVK_RELAY) {
        if (!x->translate) bt_buf_append_str(&x->out, ev->raw);
        return 0;
    }
    if (k == BT_EVK_DONE) {
        if (x->translate) on_translated(x, &(struct bt_event){.type = BT_EV_DONE});
        else bt_buf_append_str(&x->out, ev->raw);
        x->saw_done = true;
        return 0;
    }
    struct bt_arena a;
    bt_arena_init(&a, 4096, 1u << 22);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, ev->data.p, ev->data.len, &a, NULL, NULL) ||
        bt_json_type(&doc, 0) != BT_JSON_OBJECT) {
        x->invalid = true;
    } else if (x->translate) {
        x->p->ad->decode_event(&doc, on_translated, x);
    } else {
        struct relay_ev re = {0};
        x->p->ad->decode_event(&doc, on_relay_event, &re);
        if (re.error) {
            x->saw_error = true;
            struct bt_error e = {.status = 502, .cls = BT_OUTCOME_SERVER_ERROR, .upstream = true,
                                 .message = bt_str_c(re.msg), .code = re.code[0] ? re.code : NULL};
            /* the provider's own type is relayed: it speaks the client's API */
            e.type = bt_str_c(re.type);
            x->p->fe->stream_error(&x->out, &e);
        } else if (!(x->added_usage && x->p->ad->added_usage_event(&doc))) {
            bt_buf_append_str(&x->out, ev->raw);
        }
    }
    bt_arena_free(&a);
    return 0;
}

/* Rewrites every `"created":DIGITS` in `b` as `"created":0`: the OpenAI
 * encoder writes the clock there, which may tick between two runs. */
static void mask_created_bytes(struct bt_buf *b)
{
    static const char key[] = "\"created\":";
    size_t kl = sizeof(key) - 1, o = 0;
    for (size_t i = 0; i < b->len;) {
        if (b->len - i > kl && memcmp(b->p + i, key, kl) == 0) {
            memmove(b->p + o, b->p + i, kl);
            o += kl;
            i += kl;
            size_t d = i;
            while (d < b->len && b->p[d] >= '0' && b->p[d] <= '9') d++;
            if (d > i) b->p[o++] = '0';
            i = d;
            continue;
        }
        b->p[o++] = b->p[i++];
    }
    b->len = o;
}

/* The client's bytes for provider stream `src` fed in pieces of `step` bytes
 * after a first piece of `cut` bytes (step 0: the rest in one piece), with
 * `created` masked. */
static void run_stream(struct run *x, const char *src, size_t len, size_t cut, size_t step)
{
    bt_buf_reset(&x->out);
    x->saw_done = x->saw_error = x->invalid = false;
    if (x->translate) x->p->fe->stream_begin(x->st, x->r, x->r->model);
    struct bt_sse sse;
    bt_sse_init(&sse, 1u << 20, on_sse, x);
    bool broken = bt_sse_feed(&sse, src, cut) != BT_OK;
    for (size_t at = cut; !broken && at < len;) {
        size_t n = step && step < len - at ? step : len - at;
        broken = bt_sse_feed(&sse, src + at, n) != BT_OK;
        at += n;
    }
    bool partial = bt_sse_partial(&sse);
    bt_sse_free(&sse);
    /* How exec ends the stream (up_done): an error already written ends it; a
     * stream without its end marker is cut short. */
    if (!x->saw_error && (broken || x->invalid || !x->saw_done || partial)) {
        struct bt_error e = {.status = 502, .cls = BT_OUTCOME_SERVER_ERROR, .upstream = true,
                             .message = BT_STR("the provider ended the stream before it was "
                                               "complete"),
                             .code = "upstream_incomplete"};
        if (x->translate) x->p->fe->stream_end(x->st, &e, &x->out);
        else x->p->fe->stream_error(&x->out, &e);
    }
    mask_created_bytes(&x->out);
}

static void check_stream(struct run *x, const char *cdir, const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/provider.sse", cdir);
    size_t len;
    char *src = h_read_file(path, &len);
    if (!src) return;
    run_stream(x, src, len, len, 0);
    struct bt_buf whole;
    bt_buf_init(&whole, 1u << 22);
    bt_buf_append_str(&whole, bt_buf_str(&x->out));
    snprintf(path, sizeof(path), "%s/client.sse", cdir);
    /* the fast path relays: the client reads the provider's bytes, but for
     * what the relay drops or rewrites (client.sse records both) */
    if (!golden(path, whole.p ? whole.p : "", whole.len, CMP_SSE)) H_FAIL("%s", path);
    for (size_t cut = 0; cut < len; cut++) {
        run_stream(x, src, len, cut, 0);
        if (x->out.len != whole.len || memcmp(x->out.p, whole.p, whole.len) != 0) {
            H_FAIL("%s: split at byte %zu the client gets other bytes:\n%.*s", cdir, cut,
                   (int)x->out.len, x->out.p ? x->out.p : "");
            break;
        }
    }
    run_stream(x, src, len, 0, 1);
    if (x->out.len != whole.len || memcmp(x->out.p, whole.p, whole.len) != 0)
        H_FAIL("%s: fed in 1-byte pieces the client gets other bytes", cdir);
    bt_buf_free(&whole);
    free(src);
}

static void check_reply(struct run *x, const char *cdir, const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/provider.json", cdir);
    size_t len;
    char *src = h_read_file(path, &len);
    if (!src) return;
    snprintf(path, sizeof(path), "%s/client.json", cdir);
    bt_buf_reset(&x->out);
    if (!x->translate) {
        bt_buf_append(&x->out, src, len); /* the reply goes back as it came */
    } else {
        struct bt_arena a;
        bt_arena_init(&a, 4096, 1u << 22);
        struct bt_json_doc doc;
        CHECK(bt_json_parse(&doc, src, len, &a, NULL, NULL) == BT_OK);
        void *rep = x->p->fe->reply_new(x->r, x->r->model, 1u << 20);
        REQUIRE(rep);
        x->p->ad->decode_reply(&doc, x->p->fe->reply_event, rep);
        int status = 0;
        CHECK(x->p->fe->reply_write(rep, &x->out, &status) == BT_OK);
        if (status != 200) H_FAIL("%s: reply status %d", cdir, status);
        x->p->fe->reply_free(rep);
        bt_arena_free(&a);
    }
    if (!golden(path, x->out.p ? x->out.p : "", x->out.len, CMP_JSON)) H_FAIL("%s", path);
    free(src);
}

/* A provider's error reply (provider.err: the HTTP status on the first line,
 * the body after it) as exec's record_upstream_status + finish_error make it. */
static void check_provider_error(struct run *x, const char *cdir, const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/provider.err", cdir);
    size_t len;
    char *src = h_read_file(path, &len);
    if (!src) return;
    char *nl = strchr(src, '\n');
    REQUIRE(nl);
    int s = (int)strtol(src, NULL, 10);
    struct bt_str body = {nl + 1, len - (size_t)(nl + 1 - src)};
    struct bt_arena a;
    bt_arena_init(&a, 4096, 1u << 20);
    struct bt_perror pe;
    x->p->ad->decode_error(s, body, &a, &pe);
    int out = bt_exec_client_status(s, pe.cls);
    char msg[600], code[48] = "", param[64] = "";
    if (pe.message.len)
        snprintf(msg, sizeof(msg), "provider %s returned HTTP %d: %.*s", x->p->prov->name, s,
                 (int)pe.message.len, pe.message.p);
    else
        snprintf(msg, sizeof(msg), "provider %s returned HTTP %d", x->p->prov->name, s);
    if (pe.code.len) snprintf(code, sizeof(code), "%.*s", (int)pe.code.len, pe.code.p);
    if (pe.param.len && out >= 400 && out < 500)
        snprintf(param, sizeof(param), "%.*s", (int)pe.param.len, pe.param.p);
    struct bt_error e = {.status = out, .cls = pe.cls, .upstream = out >= 500,
                         .message = bt_str_c(msg), .code = code[0] ? code : NULL,
                         .param = param[0] ? param : NULL};
    struct bt_buf b;
    bt_buf_init(&b, 1u << 16);
    bt_buf_printf(&b, "{\"status\":%d,\"class\":\"%s\",\"body\":", out, bt_outcome_name(pe.cls));
    x->p->fe->error_body(&b, &e);
    bt_buf_append_c(&b, "}");
    snprintf(path, sizeof(path), "%s/error.json", cdir);
    if (!golden(path, b.p, b.len, CMP_JSON)) H_FAIL("%s", path);
    bt_buf_free(&b);
    bt_arena_free(&a);
    free(src);
}

/* ---- one case ---- */

static void refused(struct run *x, const char *cdir, const char *name, int status,
                    const char *message, const char *param)
{
    struct bt_error e = {.status = status, .cls = BT_OUTCOME_BAD_REQUEST, .upstream = false,
                         .message = bt_str_c(message), .code = "untranslatable",
                         .param = param && param[0] ? param : NULL};
    struct bt_buf b;
    bt_buf_init(&b, 1u << 16);
    bt_buf_printf(&b, "{\"status\":%d,\"class\":\"bad_request\",\"body\":", status);
    x->p->fe->error_body(&b, &e);
    bt_buf_append_c(&b, "}");
    char path[1200];
    snprintf(path, sizeof(path), "%s/error.json", cdir);
    if (!golden(path, b.p, b.len, CMP_JSON)) H_FAIL("%s", path);
    bt_buf_free(&b);
}

static void run_case(const struct pair *p, const char *name)
{
    char cdir[1024], path[1200];
    snprintf(cdir, sizeof(cdir), "%s/%s/%s", PAIRS, p->dir, name);
    size_t len;
    snprintf(path, sizeof(path), "%s/request.json", cdir);
    char *body = h_read_file(path, &len);
    if (!body) {
        H_FAIL("%s: no request.json", cdir);
        return;
    }
    struct bt_arena arena;
    bt_arena_init(&arena, 4096, 1u << 24);
    struct bt_request r;
    memset(&r, 0, sizeof(r));
    char msg[400] = "";
    const char *param = NULL;
    enum bt_err err =
        p->fe->decode(&r, BT_OP_CHAT, (struct bt_str){body, len}, &arena, msg, sizeof(msg), &param);
    struct run x = {.p = p, .r = &r, .translate = p->ad->wire != r.api};
    bt_buf_init(&x.out, 1u << 22);
    if (err) {
        refused(&x, cdir, name, 400, msg, param);
        goto done;
    }
    if (x.translate && p->fe->translate_check &&
        p->fe->translate_check(&r, msg, sizeof(msg), &param) == BT_EINVAL) {
        refused(&x, cdir, name, 400, msg, param);
        goto done;
    }
    if (x.translate && !r.chat && p->fe->chat) {
        struct bt_chat *chat = bt_arena_alloc(&arena, sizeof(*chat));
        struct bt_chat_error cerr = {{0}, {0}};
        REQUIRE(chat);
        if (p->fe->chat(&r, &arena, chat, &cerr) == BT_EINVAL) {
            refused(&x, cdir, name, 400, cerr.message, cerr.param);
            goto done;
        }
        r.chat = chat;
    }
    struct bt_pbody pb;
    memset(&pb, 0, sizeof(pb));
    err = bt_provider_encode(p->prov, &r, bt_str_c(p->model), &arena, &pb, &x.added_usage);
    if (err == BT_EINVAL && pb.refused.message[0]) {
        refused(&x, cdir, name, 400, pb.refused.message, pb.refused.param);
        goto done;
    }
    if (err) {
        H_FAIL("%s: encode failed: %s", cdir, bt_strerror(err));
        goto done;
    }
    struct bt_buf up;
    bt_buf_init(&up, 1u << 22);
    for (size_t i = 0; i < pb.n; i++) bt_buf_append_str(&up, pb.parts[i]);
    snprintf(path, sizeof(path), "%s/upstream.json", cdir);
    /* the fast path sends the client's bytes with `model` spliced: bytes */
    if (!golden(path, up.p ? up.p : "", up.len, x.translate ? CMP_JSON : CMP_BYTES))
        H_FAIL("%s", path);
    bt_buf_free(&up);
    /* the target after the base path, when the adapter builds it */
    struct bt_buf target;
    bt_buf_init(&target, 4096);
    bt_buf_append_str(&target, pb.path.len ? pb.path : bt_str_c(p->ad->path(BT_OP_CHAT)));
    snprintf(path, sizeof(path), "%s/upstream.path", cdir);
    char *want = h_read_file(path, NULL);
    if (want) {
        if (!golden(path, target.p, target.len, CMP_BYTES)) H_FAIL("%s", path);
        free(want);
    }
    bt_buf_free(&target);
    if (x.translate) {
        x.st = calloc(1, p->fe->stream_size);
        REQUIRE(x.st);
    }
    check_stream(&x, cdir, name);
    check_reply(&x, cdir, name);
    check_provider_error(&x, cdir, name);
done:
    free(x.st);
    bt_buf_free(&x.out);
    bt_arena_free(&arena);
    free(body);
}

TEST(golden_pairs)
{
    size_t np;
    char **pairs = subdirs(PAIRS, &np);
    CHECK(np >= 6);
    size_t total = 0;
    for (size_t i = 0; i < np; i++) {
        struct pair p;
        if (!pair_load(&p, pairs[i])) {
            H_FAIL("%s: no client API or no loadable provider.yaml", pairs[i]);
            bt_config_unref(p.cfg);
            continue;
        }
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/%s", PAIRS, pairs[i]);
        size_t nc;
        char **cases = subdirs(dir, &nc);
        for (size_t k = 0; k < nc; k++) run_case(&p, cases[k]);
        total += nc;
        h_free_list(cases, nc);
        bt_config_unref(p.cfg);
    }
    h_free_list(pairs, np);
    printf("golden pairs: %zu cases\n", total);
    CHECK(total >= 40);
}

int main(void)
{
    RUN(golden_pairs);
    return HARNESS_DONE();
}
