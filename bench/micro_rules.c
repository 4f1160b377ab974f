/* bench/micro_rules: what choosing a model by content costs per request, in CPU
 * time: reading the prompt (the canonical chat decode of an already tokenized
 * body, then the decoded prompt view) and the rules' decision. Built by
 * bench/run.sh against build/release/libbaton.a.
 *   micro_rules REQUEST.json
 * Prints one line per case:
 *   micro_rules case=NAME bytes=N ns=X
 * - prompt: bt_openai_chat_decode + bt_prompt_from_chat of REQUEST.json;
 * - first_rule: eight rules, the first (tags, from a header) matches;
 * - all_rules: the same eight rules all tried (language, images, tools, json
 *   schema, regex, metadata, user, prompt tokens), the default taken;
 * - all_rules_no_tokens: the same without the prompt_tokens rule (the
 *   tokenizer's share). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#include "api/openai_chat.h"
#include "canon/prompt.h"
#include "config/config.h"
#include "route/choose.h"

static const char *yaml =
    "providers: {sim: {type: sim}}\n"
    "models:\n"
    "  a: {provider: sim}\n"
    "  b: {provider: sim}\n"
    "  rules:\n"
    "    rules:\n"
    "      - {when: {tags: [batch]}, model: a}\n"
    "      - {when: {language: [ko, ja]}, model: a}\n"
    "      - {when: {images: true}, model: a}\n"
    "      - {when: {tools: true, json_schema: true}, model: a}\n"
    "      - {when: {regex: \"(?i)\\\\b(prove|theorem|derive)\\\\b\"}, model: a}\n"
    "      - {when: {metadata: {tier: free}}, model: a}\n"
    "      - {when: {user: [vip-1, vip-2]}, model: a}\n"
    "      - {when: {prompt_tokens: \"> 100000\"}, model: a}\n"
    "      - {model: b}\n"
    "  no_tokens:\n"
    "    rules:\n"
    "      - {when: {tags: [batch]}, model: a}\n"
    "      - {when: {language: [ko, ja]}, model: a}\n"
    "      - {when: {images: true}, model: a}\n"
    "      - {when: {tools: true, json_schema: true}, model: a}\n"
    "      - {when: {regex: \"(?i)\\\\b(prove|theorem|derive)\\\\b\"}, model: a}\n"
    "      - {when: {metadata: {tier: free}}, model: a}\n"
    "      - {when: {user: [vip-1, vip-2]}, model: a}\n"
    "      - {model: b}\n";

static double secs_budget(void)
{
    const char *s = getenv("MICRO_SECS");
    return s ? atof(s) : 1.0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: micro_rules REQUEST.json\n");
        return 2;
    }
    size_t len = 0;
    char *body = read_file(argv[1], &len);
    if (!body) {
        fprintf(stderr, "micro_rules: cannot read %s\n", argv[1]);
        return 1;
    }
    struct bt_config *cfg = NULL;
    struct bt_config_diags d = {0};
    if (bt_config_load_string("bench.yaml", yaml, strlen(yaml), &cfg, &d)) {
        bt_config_diags_print(&d, stderr);
        return 1;
    }
    bt_config_diags_free(&d);
    struct bt_arena doc_arena, a;
    bt_arena_init(&doc_arena, 1 << 16, 1u << 28);
    bt_arena_init(&a, 1 << 16, 1u << 28);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, body, len, &doc_arena, NULL, NULL)) {
        fprintf(stderr, "micro_rules: %s is not JSON\n", argv[1]);
        return 1;
    }
    double secs = secs_budget();
    /* reading the prompt */
    long iters = 0;
    double t0 = cpu_s(), t;
    struct bt_prompt p;
    do {
        for (int k = 0; k < 16; k++) {
            bt_arena_reset(&a);
            struct bt_chat chat;
            struct bt_chat_error err;
            if (bt_openai_chat_decode(&doc, &a, &chat, &err) || bt_prompt_from_chat(&chat, &a, &p)) {
                fprintf(stderr, "micro_rules: the request does not decode\n");
                return 1;
            }
        }
        iters += 16;
    } while ((t = cpu_s()) - t0 < secs);
    printf("micro_rules case=prompt bytes=%zu ns=%.0f\n", len, (t - t0) / (double)iters * 1e9);

    struct {
        const char *name, *model, *tags;
    } cases[] = {
        {"first_rule", "rules", "batch"},
        {"all_rules", "rules", ""},
        {"all_rules_no_tokens", "no_tokens", ""},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct bt_model *m = bt_config_model(cfg, bt_str_c(cases[c].model));
        p.tags = bt_str_c(cases[c].tags);
        p.user = BT_STR("someone");
        const struct bt_model *got = NULL;
        iters = 0;
        t0 = cpu_s();
        do {
            for (int k = 0; k < 16; k++) {
                struct bt_route_facts f;
                bt_route_facts_init(&f);
                got = bt_route_choose(m, &p, NULL, &f, NULL, 0);
            }
            iters += 16;
        } while ((t = cpu_s()) - t0 < secs);
        if (!got) return 1;
        printf("micro_rules case=%s chose=%s bytes=%zu ns=%.0f\n", cases[c].name, got->name, len,
               (t - t0) / (double)iters * 1e9);
    }
    bt_arena_free(&a);
    bt_arena_free(&doc_arena);
    bt_config_unref(cfg);
    free(body);
    return 0;
}
