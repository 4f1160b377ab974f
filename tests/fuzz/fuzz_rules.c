/* libFuzzer target for choosing a model by content: arbitrary bytes as an
 * OpenAI chat request body, through bt_openai_chat_decode, bt_prompt_from_chat
 * (decoded text, flags, metadata) and a rules model with every condition
 * (route/choose.c).
 *
 * Checked: no crash, leak, out-of-bounds access or undefined behaviour; the
 * prompt's texts lie where they should and the last user message ends with a
 * NUL; every language share lies in 0..1 and they add up to at most 1; the
 * token estimate is at least the per-message overhead; the rules always choose
 * a model with deployments, the same one twice for the same prompt. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai_chat.h"
#include "canon/prompt.h"
#include "config/config.h"
#include "core/arena.h"
#include "json/json.h"
#include "route/choose.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

static const char *yaml =
    "providers: {sim: {type: sim}}\n"
    "models:\n"
    "  a: {provider: sim}\n"
    "  b: {provider: sim}\n"
    "  c: {provider: sim}\n"
    "  r:\n"
    "    rules:\n"
    "      - {when: {tags: [batch]}, model: a}\n"
    "      - {when: {language: [ko, ja, zh, ru], language_share: 0.4}, model: b}\n"
    "      - {when: {images: true, tools: false}, model: a}\n"
    "      - {when: {json_schema: true}, model: c}\n"
    "      - {when: {regex: \"(?i)(prove|[0-9]+x ?[+-])\"}, model: c}\n"
    "      - {when: {metadata: {tier: free}}, model: a}\n"
    "      - {when: {user: [u1, u2]}, model: b}\n"
    "      - {when: {prompt_tokens: \"> 200\"}, model: c}\n"
    "      - {when: {prompt_tokens: \"<= 8\", language: en}, model: a}\n"
    "      - {model: b}\n";

static struct bt_config *cfg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        struct bt_config_diags d = {0};
        if (bt_config_load_string("fuzz.yaml", yaml, strlen(yaml), &cfg, &d)) abort();
        bt_config_diags_free(&d);
    }
    struct bt_arena a;
    bt_arena_init(&a, 4096, 64u << 20);
    struct bt_json_doc doc;
    struct bt_chat chat;
    struct bt_chat_error err;
    struct bt_prompt p;
    if (bt_json_parse(&doc, (const char *)data, size, &a, NULL, NULL) == BT_OK &&
        bt_openai_chat_decode(&doc, &a, &chat, &err) == BT_OK &&
        bt_prompt_from_chat(&chat, &a, &p) == BT_OK) {
        CHECK(p.last_user < (int32_t)p.nmsgs);
        struct bt_str last = bt_prompt_last_user(&p);
        if (last.len) CHECK(last.p[last.len] == 0);
        for (uint32_t i = 0; i < p.nmsgs; i++) CHECK(!p.msgs[i].text.len || p.msgs[i].text.p);
        for (uint32_t i = 0; i < p.nmeta; i++) CHECK(p.meta[i].key.p || !p.meta[i].key.len);
        p.user = size > 2 && data[0] == 'u' ? BT_STR("u1") : BT_STR_NULL;
        p.tags = size > 2 && data[1] == 'b' ? BT_STR(" x ,batch") : BT_STR_NULL;
        const struct bt_model *m = bt_config_model(cfg, BT_STR("r"));
        struct bt_route_facts f;
        bt_route_facts_init(&f);
        const struct bt_model *got = bt_route_choose(m, &p, NULL, &f, NULL, 0);
        CHECK(got && got->kind == BT_MODEL_DEPLOYMENTS);
        int64_t t = bt_route_prompt_tokens(&f, &p);
        CHECK(t >= 3 + 3 * (int64_t)p.nmsgs);
        if (f.scripts_done) {
            double sum = 0;
            for (int l = 0; l < BT_LANG_COUNT; l++) {
                CHECK(f.share[l] >= 0 && f.share[l] <= 1);
                sum += f.share[l];
            }
            CHECK(sum <= 1.000001);
        }
        struct bt_route_facts g;
        bt_route_facts_init(&g);
        char why[200] = "";
        CHECK(bt_route_choose(m, &p, NULL, &g, why, sizeof(why)) == got);
        CHECK(strncmp(why, "r: rule ", 8) == 0);
    }
    bt_arena_free(&a);
    return 0;
}
