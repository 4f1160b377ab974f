/* Model entries that choose another model by the request's content: `rules:`
 * (first matching rule wins; conditions compiled here, regexes included) and
 * `router:` (the learned router's file, loaded here, and its threshold). The
 * names they point to resolve once every model is read; chains are allowed
 * (a rule may name a router), cycles are not, and a chain is at most
 * BT_CHOICE_DEPTH long so a request's decision stays bounded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/values.h"
#include "core/buf.h"
#include "learn/learn.h"

#define BT_CHOICE_DEPTH 4
#define MAX_RULES 64
#define MAX_LIST 64

const char *const bt_lang_codes[BT_LANG_COUNT] = {"ko", "ja", "zh", "en", "ru",
                                                  "ar", "hi", "th", "el", "he"};

static bool scalar_is(const struct bt_ynode *v, const char *s)
{
    return v->kind == BT_Y_SCALAR && v->len == strlen(s) && memcmp(v->text, s, v->len) == 0;
}

/* A string or a list of strings into a malloc'd array. */
static bool get_names(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                      char ***out, uint32_t *n)
{
    const struct bt_ynode *const *items = &v;
    size_t count = 1;
    if (v->kind == BT_Y_SEQ) {
        items = (const struct bt_ynode *const *)v->items;
        count = v->n;
    }
    if (count == 0 || count > MAX_LIST) {
        bt_cfg_err(L, v, "%s must be a name or a list of 1 to %d names", what, MAX_LIST);
        return false;
    }
    *out = calloc(count, sizeof(char *));
    if (!*out) {
        L->oom = true;
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        size_t len;
        if (!bt_cfg_get_string(L, items[i], what, &(*out)[*n], &len, NULL)) return false;
        (*n)++;
        if (len == 0) {
            bt_cfg_err(L, items[i], "%s: an empty name", what);
            return false;
        }
    }
    return true;
}

static void load_language(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                          struct bt_rule *r)
{
    const struct bt_ynode *const *items = &v;
    size_t count = 1;
    if (v->kind == BT_Y_SEQ) {
        items = (const struct bt_ynode *const *)v->items;
        count = v->n;
    }
    if (count == 0) bt_cfg_err(L, v, "%s: language must be a code or a list of codes", what);
    for (size_t i = 0; i < count; i++) {
        int found = -1;
        for (int l = 0; l < BT_LANG_COUNT; l++)
            if (scalar_is(items[i], bt_lang_codes[l])) found = l;
        if (found < 0)
            bt_cfg_err(L, items[i], "%s: unknown language \"%.*s\" (expected one of: ko, ja, zh, "
                                    "en, ru, ar, hi, th, el, he)", what,
                       BT_CFG_SHOWN(items[i]->kind == BT_Y_SCALAR ? items[i]->len : 0),
                       items[i]->kind == BT_Y_SCALAR ? items[i]->text : "");
        else
            r->languages |= 1u << found;
    }
}

/* "> 8000", ">=8000", "< 100", "<= 100". */
static void load_tokens(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                        struct bt_rule *r)
{
    const char *s = v->kind == BT_Y_SCALAR ? v->text : "";
    size_t i = 0;
    bool ok = v->kind == BT_Y_SCALAR;
    if (ok && (s[0] == '<' || s[0] == '>')) {
        bool ge = s[1] == '=';
        r->tokens_op = s[0] == '<' ? (ge ? BT_CMP_LE : BT_CMP_LT) : (ge ? BT_CMP_GE : BT_CMP_GT);
        i = ge ? 2 : 1;
        while (s[i] == ' ') i++;
        uint64_t x = 0;
        size_t digits = 0;
        for (; s[i] >= '0' && s[i] <= '9' && digits < 10; i++, digits++)
            x = x * 10 + (uint64_t)(s[i] - '0');
        ok = digits > 0 && i == v->len;
        r->tokens = x;
    } else {
        ok = false;
    }
    if (!ok)
        bt_cfg_err(L, v, "%s: prompt_tokens must be a comparison in quotes such as \"> 8000\" or "
                         "\"<= 500\" (<, <=, >, >= and a whole number of up to 10 digits)", what);
}

static void load_metadata(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                          struct bt_rule *r)
{
    if (v->kind != BT_Y_MAP || v->n == 0 || v->n / 2 > MAX_LIST) {
        bt_cfg_err(L, v, "%s: metadata must be a mapping of 1 to %d keys to the values they must "
                         "have, like {tier: free}", what, MAX_LIST);
        return;
    }
    r->metadata = calloc(v->n / 2, sizeof(*r->metadata));
    if (!r->metadata) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        struct bt_rule_kv *kv = &r->metadata[r->nmetadata++];
        if (!bt_cfg_get_string(L, v->items[i], what, &kv->key, NULL, NULL)) return;
        bt_cfg_get_string(L, v->items[i + 1], what, &kv->value, NULL, NULL);
    }
}

static void load_regex(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       struct bt_rule *r)
{
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &r->regex_src, &len, NULL)) return;
    const char *src = r->regex_src;
    int flags = REG_EXTENDED | REG_NOSUB;
    if (strncmp(src, "(?i)", 4) == 0) flags |= REG_ICASE, src += 4;
    /* Back-references can take exponential time: a rule runs on every request. */
    for (size_t i = 0; src[i]; i++) {
        if (src[i] == '\\' && src[i + 1] >= '1' && src[i + 1] <= '9') {
            bt_cfg_err(L, v, "%s: regex \"%s\": back-references (\\%c) are not allowed", what,
                       r->regex_src, src[i + 1]);
            return;
        }
        if (src[i] == '\\' && src[i + 1]) i++;
    }
    if (!len || !*src) {
        bt_cfg_err(L, v, "%s: regex is empty", what);
        return;
    }
    r->regex = calloc(1, sizeof(*r->regex));
    if (!r->regex) {
        L->oom = true;
        return;
    }
    int rc = regcomp(r->regex, src, flags);
    if (rc != 0) {
        char why[160];
        regerror(rc, r->regex, why, sizeof(why));
        free(r->regex);
        r->regex = NULL;
        bt_cfg_err(L, v, "%s: regex \"%s\" does not compile: %s", what, r->regex_src, why);
    }
}

static void load_when(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                      struct bt_rule *r)
{
    static const char *const keys[] = {"language", "language_share", "tools", "images",
                                       "json_schema", "prompt_tokens", "metadata", "tags",
                                       "user", "regex", "budget_left_below", NULL};
    if (v->kind != BT_Y_MAP || v->n == 0) {
        bt_cfg_err(L, v, "%s: when must be a mapping of conditions like {language: ko}", what);
        return;
    }
    r->language_share = 0.3;
    const struct bt_ynode *share = NULL;
    for (size_t i = 0; i + 1 < v->n && !L->oom; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, what);
        const struct bt_ynode *x = v->items[i + 1];
        char w[BT_CFG_MAX_NAME + 140];
        snprintf(w, sizeof(w), "%s: %s", what, idx >= 0 ? keys[idx] : "?");
        switch (idx) {
        case 0: r->conds |= BT_COND_LANGUAGE, load_language(L, x, what, r); break;
        case 1:
            share = x;
            bt_cfg_get_double(L, x, w, 0.01, 1, &r->language_share);
            break;
        case 2: r->conds |= BT_COND_TOOLS, bt_cfg_get_bool(L, x, w, &r->tools); break;
        case 3: r->conds |= BT_COND_IMAGES, bt_cfg_get_bool(L, x, w, &r->images); break;
        case 4: r->conds |= BT_COND_JSON_SCHEMA, bt_cfg_get_bool(L, x, w, &r->json_schema); break;
        case 5: r->conds |= BT_COND_PROMPT_TOKENS, load_tokens(L, x, what, r); break;
        case 6: r->conds |= BT_COND_METADATA, load_metadata(L, x, what, r); break;
        case 7: r->conds |= BT_COND_TAGS, get_names(L, x, w, &r->tags, &r->ntags); break;
        case 8: r->conds |= BT_COND_USER, get_names(L, x, w, &r->users, &r->nusers); break;
        case 9: r->conds |= BT_COND_REGEX, load_regex(L, x, what, r); break;
        case 10:
            r->conds |= BT_COND_BUDGET_LEFT;
            bt_cfg_get_double(L, x, w, 0, 1, &r->budget_left_below);
            break;
        default: break;
        }
    }
    if (share && !(r->conds & BT_COND_LANGUAGE))
        bt_cfg_err(L, share, "%s: language_share needs language beside it", what);
}

void bt_cfg_load_rules(struct bt_cfg_loader *L, const struct bt_ynode *v, struct bt_model *m)
{
    static const char *const keys[] = {"when", "model", NULL};
    char ctx[BT_CFG_MAX_NAME + 40];
    snprintf(ctx, sizeof(ctx), "model \"%s\" rules", m->name);
    m->kind = BT_MODEL_RULES;
    if (v->kind != BT_Y_SEQ || v->n == 0 || v->n > MAX_RULES) {
        bt_cfg_err(L, v, "%s must be a list of 1 to %d entries like {when: {language: ko}, "
                         "model: NAME}, the last without when", ctx, MAX_RULES);
        return;
    }
    m->rules = calloc(v->n, sizeof(*m->rules));
    if (!m->rules) {
        L->oom = true;
        return;
    }
    for (size_t j = 0; j < v->n && !L->oom; j++) {
        const struct bt_ynode *e = v->items[j];
        struct bt_rule *r = &m->rules[m->nrules++];
        r->line = e->line;
        r->col = e->col;
        char what[BT_CFG_MAX_NAME + 80];
        snprintf(what, sizeof(what), "%s %zu", ctx, j + 1);
        if (e->kind != BT_Y_MAP) {
            bt_cfg_err(L, e, "%s must be a mapping like {when: {...}, model: NAME}, not %s", what,
                       bt_cfg_kind_name(e));
            continue;
        }
        const struct bt_ynode *when = NULL, *model = NULL;
        for (size_t i = 0; i + 1 < e->n; i += 2) {
            int idx = bt_cfg_key_index(L, e->items[i], keys, what);
            if (idx == 0) when = e->items[i + 1];
            else if (idx == 1) model = e->items[i + 1];
        }
        if (when) load_when(L, when, what, r);
        if (!model)
            bt_cfg_err(L, e, "%s needs model: NAME", what);
        else if (bt_cfg_get_string(L, model, what, &r->model_name, NULL, NULL) && !*r->model_name)
            bt_cfg_err(L, model, "%s: model is empty", what);
        bool last = j + 1 == v->n;
        if (last && when)
            bt_cfg_err(L, when, "%s: the last rule is the default and takes no when (add "
                                "{model: NAME} after it)", what);
        else if (!last && !when)
            bt_cfg_err(L, e, "%s has no when, so the rules after it are never used", what);
    }
}

/* A path as written, relative to the config file's folder. */
static char *beside_config(struct bt_cfg_loader *L, const char *file)
{
    const char *cp = L->cfg->path ? L->cfg->path : "";
    const char *slash = strrchr(cp, '/');
    if (file[0] == '/' || !slash) return bt_cfg_dup(L, file, strlen(file));
    size_t dl = (size_t)(slash - cp) + 1, fl = strlen(file);
    char *p = malloc(dl + fl + 1);
    if (!p) {
        L->oom = true;
        return NULL;
    }
    memcpy(p, cp, dl);
    memcpy(p + dl, file, fl + 1);
    return p;
}

void bt_cfg_load_router(struct bt_cfg_loader *L, const struct bt_ynode *v, struct bt_model *m)
{
    static const char *const keys[] = {"file", "strong", "weak", "strong_share", "threshold", NULL};
    char ctx[BT_CFG_MAX_NAME + 40];
    snprintf(ctx, sizeof(ctx), "model \"%s\" router", m->name);
    m->kind = BT_MODEL_ROUTER;
    struct bt_router_cfg *rc = &m->router;
    rc->line = v->line;
    rc->col = v->col;
    rc->strong_share = -1;
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v, "%s must be a mapping like {file: PATH, strong: MODEL, weak: MODEL, "
                         "strong_share: 0.3}", ctx);
        return;
    }
    const struct bt_ynode *fv = NULL, *sv = NULL, *tv = NULL;
    double share = -1, threshold = 0;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, ctx);
        const struct bt_ynode *x = v->items[i + 1];
        char w[BT_CFG_MAX_NAME + 60];
        snprintf(w, sizeof(w), "%s: %s", ctx, idx >= 0 ? keys[idx] : "?");
        if (idx == 0) fv = x;
        else if (idx == 1) bt_cfg_get_string(L, x, w, &rc->strong_name, NULL, NULL);
        else if (idx == 2) bt_cfg_get_string(L, x, w, &rc->weak_name, NULL, NULL);
        else if (idx == 3) sv = x, bt_cfg_get_double(L, x, w, 0, 1, &share);
        else if (idx == 4) {
            tv = x;
            /* scores lie in -1..1: a signed decimal */
            const char *t = x->kind == BT_Y_SCALAR ? x->text : "";
            char *end = NULL;
            threshold = strtod(t, &end);
            if (!*t || !end || *end || !isfinite(threshold) || fabs(threshold) > 1)
                bt_cfg_err(L, x, "%s must be a number from -1 to 1", w);
        }
    }
    if (!fv) bt_cfg_err(L, v, "%s needs file: PATH (written by baton route train)", ctx);
    if (!rc->strong_name) bt_cfg_err(L, v, "%s needs strong: MODEL", ctx);
    if (!rc->weak_name) bt_cfg_err(L, v, "%s needs weak: MODEL", ctx);
    if (sv && tv) bt_cfg_err(L, tv, "%s: give strong_share or threshold, not both", ctx);
    if (!fv || L->oom) return;
    char *file;
    if (!bt_cfg_get_string(L, fv, ctx, &file, NULL, NULL)) return;
    rc->file = file;
    char *path = beside_config(L, file);
    if (!path) return;
    rc->router = calloc(1, sizeof(*rc->router));
    char msg[256] = "";
    enum bt_err e = rc->router ? bt_router_load(rc->router, path, msg, sizeof(msg)) : BT_ENOMEM;
    if (e == BT_ENOMEM) {
        L->oom = true;
    } else if (e) {
        bt_cfg_err(L, fv, "%s: %s: %s", ctx, path, e == BT_EIO ? "cannot be read" : msg);
        free(rc->router);
        rc->router = NULL;
    } else if (sv) {
        rc->strong_share = share;
        rc->threshold = bt_router_threshold_for(rc->router, share);
    } else if (tv) {
        rc->threshold = threshold;
    } else {
        rc->threshold = rc->router->threshold;
    }
    free(path);
}

/* The model a choice names, or NULL after reporting it. */
static const struct bt_model *resolve(struct bt_cfg_loader *L, const struct bt_model *m,
                                      const char *name, int line, int col, const char *what)
{
    if (!name) return NULL;
    const struct bt_model *t = bt_config_model(L->cfg, bt_str_c(name));
    struct bt_ynode at = {.line = line, .col = col};
    if (!t) bt_cfg_err(L, &at, "model \"%s\" %s: unknown model \"%s\"", m->name, what, name);
    else if (t == m) bt_cfg_err(L, &at, "model \"%s\" %s: a model cannot name itself", m->name, what);
    return t;
}

/* How many choices a request for m goes through (1 for a group); -1 on a cycle. */
static int depth(const struct bt_model *m, int seen)
{
    if (!m || m->kind == BT_MODEL_DEPLOYMENTS) return 0;
    if (seen > BT_CHOICE_DEPTH) return -1;
    int most = 0;
    for (size_t i = 0; i < m->nrules; i++) {
        int d = depth(m->rules[i].model, seen + 1);
        if (d < 0) return -1;
        if (d > most) most = d;
    }
    if (m->kind == BT_MODEL_ROUTER) {
        int a = depth(m->router.strong, seen + 1), b = depth(m->router.weak, seen + 1);
        if (a < 0 || b < 0) return -1;
        most = a > most ? a : most;
        most = b > most ? b : most;
    }
    return most + 1;
}

void bt_cfg_resolve_choices(struct bt_cfg_loader *L)
{
    struct bt_config *c = L->cfg;
    for (size_t i = 0; i < c->nmodels; i++) {
        struct bt_model *m = &c->models[i];
        for (size_t j = 0; j < m->nrules; j++) {
            struct bt_rule *r = &m->rules[j];
            r->model = resolve(L, m, r->model_name, r->line, r->col, "rules");
        }
        if (m->kind == BT_MODEL_ROUTER) {
            struct bt_router_cfg *rc = &m->router;
            rc->strong = resolve(L, m, rc->strong_name, rc->line, rc->col, "router strong");
            rc->weak = resolve(L, m, rc->weak_name, rc->line, rc->col, "router weak");
        }
        for (uint32_t j = 0; j < m->fallback.n; j++) {
            const struct bt_model *f = m->fallback.models[j];
            struct bt_ynode at = {.line = m->fallback.lines[j], .col = m->fallback.cols[j]};
            if (f && f->kind != BT_MODEL_DEPLOYMENTS)
                bt_cfg_err(L, &at, "model \"%s\" fallback: \"%s\" chooses by rules or a router; "
                                   "a fallback names a model with deployments", m->name, f->name);
        }
    }
    if (L->nerrors) return; /* a cycle through an unresolved name is already reported */
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *m = &c->models[i];
        if (m->kind == BT_MODEL_DEPLOYMENTS) continue;
        struct bt_ynode at = {.line = m->line, .col = m->col};
        if (depth(m, 0) < 0)
            bt_cfg_err(L, &at, "model \"%s\": its rules or router lead back to it, or through "
                               "more than %d choices", m->name, BT_CHOICE_DEPTH);
    }
}

void bt_cfg_free_choices(struct bt_model *m)
{
    for (size_t j = 0; j < m->nrules; j++) {
        struct bt_rule *r = &m->rules[j];
        for (uint32_t k = 0; k < r->nmetadata; k++) {
            free(r->metadata[k].key);
            free(r->metadata[k].value);
        }
        free(r->metadata);
        for (uint32_t k = 0; k < r->ntags; k++) free(r->tags[k]);
        free(r->tags);
        for (uint32_t k = 0; k < r->nusers; k++) free(r->users[k]);
        free(r->users);
        if (r->regex) regfree(r->regex);
        free(r->regex);
        free(r->regex_src);
        free(r->model_name);
    }
    free(m->rules);
    struct bt_router_cfg *rc = &m->router;
    if (rc->router) bt_router_free(rc->router);
    free(rc->router);
    free(rc->file);
    free(rc->strong_name);
    free(rc->weak_name);
}

void bt_config_describe_rule(const struct bt_rule *r, char *out, size_t cap)
{
    static const char *const ops[] = {"<", "<=", ">", ">="};
    if (!cap) return;
    out[0] = 0;
    const char *sep = "";
    if (r->conds & BT_COND_LANGUAGE) {
        bt_str_catf(out, cap, "language");
        for (int l = 0, k = 0; l < BT_LANG_COUNT; l++)
            if (r->languages >> l & 1) bt_str_catf(out, cap, "%s%s", k++ ? "|" : " ", bt_lang_codes[l]);
        bt_str_catf(out, cap, " (share >= %.2f)", r->language_share);
        sep = ", ";
    }
    if (r->conds & BT_COND_TOOLS) bt_str_catf(out, cap, "%stools %s", sep, r->tools ? "true" : "false"), sep = ", ";
    if (r->conds & BT_COND_IMAGES) bt_str_catf(out, cap, "%simages %s", sep, r->images ? "true" : "false"), sep = ", ";
    if (r->conds & BT_COND_JSON_SCHEMA)
        bt_str_catf(out, cap, "%sjson_schema %s", sep, r->json_schema ? "true" : "false"), sep = ", ";
    if (r->conds & BT_COND_PROMPT_TOKENS)
        bt_str_catf(out, cap, "%sprompt_tokens %s %llu", sep, ops[r->tokens_op & 3],
            (unsigned long long)r->tokens), sep = ", ";
    for (uint32_t i = 0; i < r->nmetadata; i++)
        bt_str_catf(out, cap, "%smetadata.%s = %s", sep, r->metadata[i].key ? r->metadata[i].key : "?",
            r->metadata[i].value ? r->metadata[i].value : "?"), sep = ", ";
    if (r->conds & BT_COND_TAGS) {
        bt_str_catf(out, cap, "%stags", sep);
        for (uint32_t i = 0; i < r->ntags; i++) bt_str_catf(out, cap, "%s%s", i ? "|" : " ", r->tags[i]);
        sep = ", ";
    }
    if (r->conds & BT_COND_USER) {
        bt_str_catf(out, cap, "%suser", sep);
        for (uint32_t i = 0; i < r->nusers; i++) bt_str_catf(out, cap, "%s%s", i ? "|" : " ", r->users[i]);
        sep = ", ";
    }
    if (r->conds & BT_COND_REGEX) bt_str_catf(out, cap, "%sregex /%s/", sep, r->regex_src ? r->regex_src : ""), sep = ", ";
    if (r->conds & BT_COND_BUDGET_LEFT)
        bt_str_catf(out, cap, "%sbudget_left_below %.2f", sep, r->budget_left_below), sep = ", ";
    if (!r->conds) bt_str_catf(out, cap, "default");
}
