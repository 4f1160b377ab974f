/* Choosing a model by the request's content: rules (first match wins) and the
 * learned router. What each condition reads and how: docs/routing.md. */
#include "route/choose.h"

#include <stdio.h>
#include <string.h>

#include "route/health.h"
#include "tok/tok.h"

#define REGEX_MAX (256u << 10) /* a regex reads at most this much of the message */

/* ---- scripts ---- */

enum script { S_OTHER = BT_LANG_COUNT, S_KANA, S_HAN, S_N };

/* The script of a letter, or -1 for what is not a letter (digits, spaces,
 * punctuation, symbols). */
static int script_of(uint32_t c)
{
    if (c < 0x80) return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? BT_LANG_EN : -1;
    if (c >= 0xC0 && c <= 0x24F) return (c == 0xD7 || c == 0xF7) ? -1 : BT_LANG_EN;
    if (c >= 0x1E00 && c <= 0x1EFF) return BT_LANG_EN;
    if (c >= 0x370 && c <= 0x3FF) return BT_LANG_EL;
    if (c >= 0x400 && c <= 0x52F) return BT_LANG_RU;
    if (c >= 0x5D0 && c <= 0x5EA) return BT_LANG_HE;
    if ((c >= 0x620 && c <= 0x64A) || (c >= 0x66E && c <= 0x6D3) || (c >= 0x750 && c <= 0x77F))
        return BT_LANG_AR;
    if (c >= 0x904 && c <= 0x939) return BT_LANG_HI;
    if (c >= 0xE01 && c <= 0xE30) return BT_LANG_TH;
    if ((c >= 0x1100 && c <= 0x11FF) || (c >= 0x3131 && c <= 0x318E) || (c >= 0xAC00 && c <= 0xD7A3))
        return BT_LANG_KO;
    if ((c >= 0x3041 && c <= 0x30FF && c != 0x30FB && c != 0x30FC) || (c >= 0x31F0 && c <= 0x31FF) ||
        (c >= 0xFF66 && c <= 0xFF9D))
        return S_KANA;
    if ((c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF))
        return S_HAN;
    if ((c >= 0x250 && c <= 0x2AF) || (c >= 0x10A0 && c <= 0x10FF) || (c >= 0x530 && c <= 0x58F))
        return S_OTHER; /* IPA, Georgian, Armenian: letters of no listed language */
    return -1;
}

/* Counts the letters of s by script (UTF-8; a malformed byte is skipped). */
static void count_scripts(struct bt_str s, uint32_t *n)
{
    if (!s.len) return; /* a message without text has no bytes at all (p NULL) */
    const unsigned char *p = (const unsigned char *)s.p, *end = p + s.len;
    while (p < end) {
        uint32_t c = *p;
        size_t k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (k > 1) {
            if ((size_t)(end - p) < k) break;
            c &= 0x3Fu >> (k - 1);
            for (size_t i = 1; i < k; i++) c = c << 6 | (p[i] & 0x3Fu);
        }
        p += k;
        int sc = script_of(c);
        if (sc >= 0) n[sc]++;
    }
}

static void scripts(struct bt_route_facts *f, const struct bt_prompt *p)
{
    if (f->scripts_done) return;
    f->scripts_done = true;
    uint32_t n[S_N] = {0};
    for (uint32_t i = 0; i < p->nmsgs; i++)
        if (p->msgs[i].role == BT_ROLE_USER) count_scripts(p->msgs[i].text, n);
    /* Han characters are Japanese in a text that has kana, Chinese otherwise. */
    if (n[S_KANA]) n[BT_LANG_JA] += n[S_KANA] + n[S_HAN];
    else n[BT_LANG_ZH] += n[S_HAN];
    uint32_t total = 0;
    for (int i = 0; i < BT_LANG_COUNT; i++) total += n[i];
    total += n[S_OTHER];
    f->letters = total;
    for (int i = 0; i < BT_LANG_COUNT; i++) f->share[i] = total ? (double)n[i] / total : 0;
}

int64_t bt_route_prompt_tokens(struct bt_route_facts *f, const struct bt_prompt *p)
{
    if (f->tokens >= 0) return f->tokens;
    const struct bt_tok *t = bt_tok_get(BT_TOK_O200K);
    /* OpenAI's count for chat: 3 tokens a message around its text, 3 to prime
     * the reply; without the tokenizer, 4 bytes a token */
    int64_t n = 3;
    for (uint32_t i = 0; i < p->nmsgs; i++) {
        struct bt_str s = p->msgs[i].text;
        size_t c = t ? bt_tok_count(t, s.p, s.len) : s.len / 4;
        n += 3 + (int64_t)(c == SIZE_MAX ? s.len / 4 : c);
    }
    return f->tokens = n;
}

/* Whether the comma-separated list `list` holds `name` (spaces around items
 * ignored). */
static bool list_has(struct bt_str list, const char *name)
{
    size_t nl = strlen(name), i = 0;
    while (i < list.len) {
        size_t j = i;
        while (j < list.len && list.p[j] != ',') j++;
        struct bt_str item = bt_str_trim((struct bt_str){list.p + i, j - i});
        if (item.len == nl && memcmp(item.p, name, nl) == 0) return true;
        i = j + 1;
    }
    return false;
}

static bool cmp(enum bt_cmp op, int64_t a, uint64_t b)
{
    int64_t bb = (int64_t)b;
    switch (op) {
    case BT_CMP_LT: return a < bb;
    case BT_CMP_LE: return a <= bb;
    case BT_CMP_GT: return a > bb;
    default: return a >= bb;
    }
}

bool bt_route_rule_matches(const struct bt_rule *r, const struct bt_prompt *p,
                           struct bt_route_facts *f)
{
    uint32_t c = r->conds;
    if ((c & BT_COND_TOOLS) && p->tools != r->tools) return false;
    if ((c & BT_COND_IMAGES) && p->images != r->images) return false;
    if ((c & BT_COND_JSON_SCHEMA) && p->json_schema != r->json_schema) return false;
    if (c & BT_COND_USER) {
        bool any = false;
        for (uint32_t i = 0; i < r->nusers && !any; i++) any = bt_str_eq(p->user, bt_str_c(r->users[i]));
        if (!any) return false;
    }
    if (c & BT_COND_METADATA) {
        for (uint32_t i = 0; i < r->nmetadata; i++) {
            struct bt_str v = bt_prompt_meta(p, bt_str_c(r->metadata[i].key));
            if (!v.p || !bt_str_eq(v, bt_str_c(r->metadata[i].value))) return false;
        }
    }
    if (c & BT_COND_TAGS) {
        struct bt_str mt = bt_prompt_meta(p, BT_STR("tags"));
        bool any = false;
        for (uint32_t i = 0; i < r->ntags && !any; i++)
            any = list_has(p->tags, r->tags[i]) || (mt.p && list_has(mt, r->tags[i]));
        if (!any) return false;
    }
    if (c & BT_COND_LANGUAGE) {
        scripts(f, p);
        bool any = false;
        for (int l = 0; l < BT_LANG_COUNT && !any; l++)
            any = (r->languages >> l & 1) && f->letters && f->share[l] >= r->language_share;
        if (!any) return false;
    }
    if (c & BT_COND_REGEX) {
        /* the text is NUL-terminated (bt_prompt_last_user); REG_STARTEND bounds the
         * match to REGEX_MAX and past any NUL the user wrote as \u0000 */
        struct bt_str s = bt_prompt_last_user(p);
        regmatch_t m[1] = {{.rm_so = 0, .rm_eo = (regoff_t)(s.len < REGEX_MAX ? s.len : REGEX_MAX)}};
        if (!r->regex || regexec(r->regex, s.len ? s.p : "", 1, m, REG_STARTEND) != 0) return false;
    }
    if ((c & BT_COND_BUDGET_LEFT) && !(p->budget_left >= 0 && p->budget_left < r->budget_left_below))
        return false;
    if ((c & BT_COND_PROMPT_TOKENS) && !cmp(r->tokens_op, bt_route_prompt_tokens(f, p), r->tokens))
        return false;
    return true;
}

double bt_route_router_score(const struct bt_router_cfg *rc, const struct bt_prompt *p,
                             struct bt_learn_scratch *s)
{
    struct bt_str t = bt_prompt_last_user(p);
    return bt_router_score(rc->router, s, t.p ? t.p : "", t.len);
}

const struct bt_model *bt_route_choose(const struct bt_model *m, const struct bt_prompt *p,
                                       struct bt_learn_scratch *s, struct bt_route_facts *f,
                                       char *why, size_t cap)
{
    for (int hop = 0; m && m->kind != BT_MODEL_DEPLOYMENTS && hop < 8; hop++) {
        const struct bt_model *next = NULL;
        if (m->kind == BT_MODEL_RULES) {
            size_t i = 0;
            while (i + 1 < m->nrules && !bt_route_rule_matches(&m->rules[i], p, f)) i++;
            next = m->rules[i].model;
            atomic_fetch_add_explicit(&((struct bt_rule *)&m->rules[i])->chosen, 1,
                                      memory_order_relaxed);
            bt_str_catf(why, cap, "%s: rule %zu -> ", m->name, i + 1);
        } else {
            const struct bt_router_cfg *rc = &m->router;
            double sc = bt_route_router_score(rc, p, s);
            bool strong = sc > rc->threshold;
            next = strong ? rc->strong : rc->weak;
            atomic_fetch_add_explicit(&((struct bt_router_cfg *)rc)->chosen[strong], 1,
                                      memory_order_relaxed);
            bt_str_catf(why, cap, "%s: router %.3f %s %.3f %s -> ", m->name, sc, strong ? ">" : "<=",
                 rc->threshold, strong ? "strong" : "weak");
        }
        m = next;
    }
    return m && m->kind == BT_MODEL_DEPLOYMENTS ? m : NULL;
}

enum bt_err bt_route_render_choices(const struct bt_config *cfg, struct bt_buf *out)
{
    bool any = false;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const struct bt_model *m = &cfg->models[i];
        if (m->kind == BT_MODEL_DEPLOYMENTS) continue;
        if (!any)
            bt_buf_append_c(out, "# HELP baton_route_choices_total Requests a model with rules or a "
                                 "router sent on, per rule (or router side) and the model chosen, "
                                 "since the config was loaded.\n# TYPE baton_route_choices_total "
                                 "counter\n");
        any = true;
        size_t n = m->kind == BT_MODEL_RULES ? m->nrules : 2;
        for (size_t j = 0; j < n; j++) {
            const char *target;
            uint64_t v;
            char choice[32];
            if (m->kind == BT_MODEL_RULES) {
                target = m->rules[j].model_name;
                v = atomic_load_explicit(&m->rules[j].chosen, memory_order_relaxed);
                snprintf(choice, sizeof(choice), "rule %zu", j + 1);
            } else {
                target = j ? m->router.strong_name : m->router.weak_name;
                v = atomic_load_explicit(&m->router.chosen[j], memory_order_relaxed);
                snprintf(choice, sizeof(choice), "%s", j ? "strong" : "weak");
            }
            bt_buf_append_c(out, "baton_route_choices_total{model=\"");
            bt_health_label(out, m->name, strlen(m->name));
            bt_buf_printf(out, "\",choice=\"%s\",target=\"", choice);
            if (target) bt_health_label(out, target, strlen(target));
            bt_buf_printf(out, "\"} %llu\n", (unsigned long long)v);
        }
    }
    return BT_OK;
}
