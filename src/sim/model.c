/* The simulated model (model.h): choices cut into tokens, their schedule, and
 * embedding vectors, in no wire format. */
#include "sim/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/rng.h"
#include "sim/schema.h"

#define SIM_GEN_MAX ((size_t)4 << 20) /* cap on one generated content / arguments */

/* ---- choices ---- */

static enum bt_err choice_token(struct bt_sim_choice *c, size_t end)
{
    if (c->ntokens == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 32;
        size_t *e = realloc(c->ends, cap * sizeof *e);
        if (!e) return BT_ENOMEM;
        c->ends = e;
        c->cap = cap;
    }
    c->ends[c->ntokens++] = end;
    return BT_OK;
}

/* Cuts JSON text into 2..6-byte tokens on UTF-8 boundaries, like the tokens a
 * model streams. */
static enum bt_err choice_split(struct bt_sim_choice *c, struct bt_sim_rng *r)
{
    size_t i = 0, n = c->text.len;
    while (i < n) {
        size_t e = i + 2 + bt_sim_rng_below(r, 5);
        if (e > n) e = n;
        while (e < n && ((unsigned char)c->text.p[e] & 0xC0) == 0x80) e++;
        enum bt_err err = choice_token(c, e);
        if (err) return err;
        i = e;
    }
    return BT_OK;
}

/* JSON from `schema` (-1: any small object), cut into tokens. */
static enum bt_err choice_json(const struct bt_sim_chat *ch, struct bt_sim_choice *c, int schema,
                               struct bt_sim_rng *r)
{
    enum bt_err err = bt_sim_schema_value(ch->doc, schema, ch->arena, r, &c->text);
    if (err) return err;
    if (c->kind == BT_SIM_OUT_TOOL && schema < 0) {
        /* No parameters schema: an empty argument object, as models send. */
        bt_buf_reset(&c->text);
        if ((err = bt_buf_append_c(&c->text, "{}"))) return err;
    }
    return choice_split(c, r);
}

static enum bt_err choice_build(const struct bt_sim_chat *ch, struct bt_sim_choice *c,
                                uint32_t index)
{
    struct bt_sim_rng r = {bt_sim_mix64(ch->h ^ bt_sim_mix64(index + 1))};
    enum bt_err err = BT_OK;
    bt_buf_init(&c->text, SIM_GEN_MAX);
    c->finish = BT_SIM_FINISH_STOP;
    if (ch->call_tool) {
        c->kind = BT_SIM_OUT_TOOL;
        c->finish = BT_SIM_FINISH_TOOL;
        c->call_seed = bt_sim_rng_next(&r);
        err = choice_json(ch, c, ch->tool_params, &r);
    } else if (ch->json) {
        c->kind = BT_SIM_OUT_JSON;
        err = choice_json(ch, c, ch->json_schema, &r);
    } else {
        c->kind = BT_SIM_OUT_TEXT;
        uint32_t nw = ch->cfg->reply_tokens;
        for (uint32_t i = 0; i < nw && !err; i++) {
            if (i) err = bt_buf_append_c(&c->text, " ");
            if (!err) err = bt_buf_append_c(&c->text, bt_sim_rng_word(&r));
            if (!err && i + 1 == nw) err = bt_buf_append_c(&c->text, ".");
            if (!err) err = choice_token(c, c->text.len);
        }
    }
    if (err) return err;
    if (ch->max_tokens > 0 && c->ntokens > (uint64_t)ch->max_tokens) {
        c->ntokens = (uint32_t)ch->max_tokens;
        c->text.len = c->ends[c->ntokens - 1];
        c->finish = BT_SIM_FINISH_LENGTH;
    }
    return BT_OK;
}

static void choices_free(struct bt_sim_chat *ch)
{
    if (!ch->choices) return;
    for (uint32_t i = 0; i < ch->n; i++) {
        bt_buf_free(&ch->choices[i].text);
        free(ch->choices[i].ends);
    }
    free(ch->choices);
    ch->choices = NULL;
}

struct bt_str bt_sim_chat_token(const struct bt_sim_choice *c, uint32_t k)
{
    size_t start = k ? c->ends[k - 1] : 0;
    return (struct bt_str){c->text.p + start, c->ends[k] - start};
}

uint64_t bt_sim_chat_completion_tokens(const struct bt_sim_chat *ch)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < ch->n; i++) n += ch->choices[i].ntokens;
    return n;
}

/* ---- the schedule ---- */

/* Tokens of the longest choice. */
static uint32_t longest_choice(const struct bt_sim_chat *ch)
{
    uint32_t m = 0;
    for (uint32_t i = 0; i < ch->n; i++)
        if (ch->choices[i].ntokens > m) m = ch->choices[i].ntokens;
    return m;
}

/* Due times are absolute (ms since start), so fractional intervals keep their
 * average rate. */
static double token_interval(const struct bt_sim_cfg *cfg)
{
    return cfg->tokens_per_sec > 0 ? 1000.0 / cfg->tokens_per_sec : 0;
}

/* When the last token is generated. */
static double last_due(const struct bt_sim_chat *ch)
{
    uint32_t mt = longest_choice(ch);
    return (double)ch->cfg->ttft_ms + (mt ? mt - 1 : 0) * token_interval(ch->cfg);
}

static void render_whole(const struct bt_sim_renderer *rd, struct bt_sim_chat *ch,
                         struct bt_sim_reply *out)
{
    size_t off = out->body.len;
    rd->render_chat(ch, out);
    if (out->err) return;
    /* The whole body arrives once the model has generated every token. */
    out->head_due = last_due(ch);
    bt_sim_reply_piece(out, off, out->body.len - off, out->head_due);
}

static void render_stream(const struct bt_sim_renderer *rd, struct bt_sim_chat *ch,
                          struct bt_sim_reply *out)
{
    const double ttft = (double)ch->cfg->ttft_ms, iv = token_interval(ch->cfg), end = last_due(ch);
    out->sse = true;
    out->head_due = ttft;
    struct bt_sim_step st = {.kind = BT_SIM_STEP_BEGIN, .due = ttft};
    rd->render_stream_step(ch, &st, out);
    st.kind = BT_SIM_STEP_OPEN;
    for (st.choice = 0; st.choice < ch->n && !out->err; st.choice++)
        rd->render_stream_step(ch, &st, out);
    st.kind = BT_SIM_STEP_DELTA;
    uint32_t mt = longest_choice(ch);
    for (st.token = 0; st.token < mt && !out->err; st.token++) {
        st.due = ttft + st.token * iv;
        for (st.choice = 0; st.choice < ch->n; st.choice++)
            if (st.token < ch->choices[st.choice].ntokens) rd->render_stream_step(ch, &st, out);
    }
    st = (struct bt_sim_step){.kind = BT_SIM_STEP_FINISH, .due = end};
    for (st.choice = 0; st.choice < ch->n && !out->err; st.choice++)
        rd->render_stream_step(ch, &st, out);
    st = (struct bt_sim_step){.kind = BT_SIM_STEP_USAGE, .due = end};
    rd->render_stream_step(ch, &st, out);
    st.kind = BT_SIM_STEP_END;
    rd->render_stream_step(ch, &st, out);
}

void bt_sim_chat_render(const struct bt_sim_renderer *rd, struct bt_sim_chat *ch,
                        struct bt_sim_reply *out)
{
    ch->choices = calloc(ch->n, sizeof *ch->choices);
    if (!ch->choices) {
        out->err = BT_ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < ch->n; i++) {
        enum bt_err e = choice_build(ch, &ch->choices[i], i);
        if (e) {
            out->err = e;
            goto done;
        }
    }
    out->status = 200;
    if (ch->stream) render_stream(rd, ch, out);
    else render_whole(rd, ch, out);
done:
    choices_free(ch);
}

/* ---- embeddings ---- */

void bt_sim_embed_vector(float *v, uint32_t dims, const struct bt_sim_cfg *cfg, struct bt_str input)
{
    struct bt_sim_rng r = {bt_sim_hash(input.p, input.len, cfg->seed ^ 0xe5bedu)};
    double norm = 0;
    for (uint32_t i = 0; i < dims; i++) {
        /* Sum of uniforms: roughly normal, so directions are spread evenly. */
        double x = bt_sim_rng_unit(&r) + bt_sim_rng_unit(&r) + bt_sim_rng_unit(&r) - 1.5;
        v[i] = (float)x;
        norm += x * x;
    }
    norm = sqrt(norm);
    for (uint32_t i = 0; i < dims; i++)
        v[i] = norm > 0 ? (float)(v[i] / norm) : (i == 0 ? 1.0f : 0.0f);
}

/* Appends the little-endian float32 bytes of v[0..n) in base64, three floats
 * (twelve bytes, a whole number of base64 groups) at a time. */
static enum bt_err base64_floats(struct bt_buf *b, const float *v, uint32_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    enum bt_err err = BT_OK;
    for (uint32_t i = 0; i < n && !err; i += 3) {
        unsigned char p[12];
        size_t len = 0;
        for (uint32_t k = i; k < n && k < i + 3; k++) {
            uint32_t u;
            memcpy(&u, &v[k], 4);
            for (unsigned s = 0; s < 32; s += 8) p[len++] = (unsigned char)(u >> s);
        }
        for (size_t j = 0; j < len && !err; j += 3) {
            uint32_t x = (uint32_t)p[j] << 16;
            if (j + 1 < len) x |= (uint32_t)p[j + 1] << 8;
            if (j + 2 < len) x |= p[j + 2];
            char q[4] = {al[(x >> 18) & 63], al[(x >> 12) & 63],
                         j + 1 < len ? al[(x >> 6) & 63] : '=', j + 2 < len ? al[x & 63] : '='};
            err = bt_buf_append(b, q, 4);
        }
    }
    return err;
}

void bt_sim_embed_write(struct bt_jw *w, const float *v, uint32_t dims, bool base64)
{
    if (base64) {
        struct bt_buf s;
        bt_buf_init(&s, (size_t)dims * 8 + 8);
        enum bt_err e = base64_floats(&s, v, dims);
        if (e) w->err = e;
        else bt_jw_str(w, bt_buf_str(&s));
        bt_buf_free(&s);
        return;
    }
    bt_jw_arr_begin(w);
    for (uint32_t k = 0; k < dims; k++) {
        /* 9 significant digits round-trip a float exactly. */
        char num[32];
        int nl = snprintf(num, sizeof num, "%.9g", (double)v[k]);
        bt_jw_raw(w, (struct bt_str){num, (size_t)nl});
    }
    bt_jw_arr_end(w);
}
