/* libFuzzer target for the Anthropic Messages request decoder
 * (src/api/anthropic_msg.c) and the OpenAI chat encoder it feeds on the
 * translate path (src/provider/openai_chat_encode.c): bt_json_parse on
 * arbitrary bytes, bt_anthropic_msg_decode on whatever parses (both the
 * Messages and the count_tokens shape), then bt_openai_chat_encode.
 *
 * Checked: no crash, leak or out-of-bounds access; a refusal is BT_EINVAL with
 * a message and a parameter path that fit their buffers; an accepted request
 * has messages of known roles with parts of known types whose strings are valid
 * JSON string bodies; the encoder either refuses with a message and a
 * parameter, or writes one valid JSON value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/anthropic_msg.h"
#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "provider/openai_chat_encode.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

static void body_ok(struct bt_str v)
{
    if (!v.len) return;
    CHECK(v.p != NULL);
    struct bt_buf out;
    bt_buf_init(&out, v.len + 16);
    CHECK(bt_json_unescape(v, &out) == BT_OK);
    bt_buf_free(&out);
}

static void parts_ok(const struct bt_chat_part *p, uint32_t n, int depth)
{
    CHECK(!n || p);
    for (uint32_t i = 0; i < n; i++, p++) {
        CHECK(p->type >= BT_PART_TEXT && p->type <= BT_PART_REFUSAL);
        switch (p->type) {
        case BT_PART_TEXT: body_ok(p->text); break;
        case BT_PART_IMAGE:
            body_ok(p->image.url);
            body_ok(p->image.data);
            break;
        case BT_PART_FILE: body_ok(p->file.data); break;
        case BT_PART_TOOL_CALL:
            body_ok(p->tool_call.id);
            CHECK(!p->tool_call.args_escaped && p->tool_call.args.len >= 2);
            break;
        case BT_PART_TOOL_RESULT:
            CHECK(depth == 0);
            body_ok(p->tool_result.call_id);
            parts_ok(p->tool_result.parts, p->tool_result.nparts, depth + 1);
            break;
        case BT_PART_THINKING:
        case BT_PART_REDACTED_THINKING: body_ok(p->thinking.text); break;
        default: CHECK(0);
        }
    }
}

static void one(const uint8_t *data, size_t size, bool count_only)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 64u << 20);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, (const char *)data, size, &a, NULL, NULL) == BT_OK) {
        struct bt_chat c;
        struct bt_chat_error e;
        enum bt_err err = bt_anthropic_msg_decode(&doc, &a, count_only, &c, &e);
        CHECK(err == BT_OK || err == BT_EINVAL || err == BT_ENOMEM);
        CHECK(strlen(e.message) < sizeof(e.message) && strlen(e.param) < sizeof(e.param));
        if (err == BT_EINVAL) CHECK(e.message[0] != 0);
        if (err == BT_OK) {
            CHECK(!c.nmsgs || c.msgs);
            for (uint32_t i = 0; i < c.nmsgs; i++) {
                CHECK(c.msgs[i].role == BT_ROLE_USER || c.msgs[i].role == BT_ROLE_ASSISTANT);
                parts_ok(c.msgs[i].parts, c.msgs[i].nparts, 0);
            }
            parts_ok(c.system, c.nsystem, 0);
            CHECK(count_only || (c.given & BT_GIVEN_MAX_TOKENS));
            struct bt_buf out;
            bt_buf_init(&out, 64u << 20);
            err = bt_openai_chat_encode(&c, BT_STR("m\"odel"), &a, &out, &e);
            CHECK(err == BT_OK || err == BT_EINVAL || err == BT_ENOMEM);
            if (err == BT_EINVAL) CHECK(e.message[0] && e.param[0]);
            if (err == BT_OK) CHECK(bt_json_validate(out.p, out.len, 0, NULL, 0) == BT_OK);
            bt_buf_free(&out);
        }
    }
    bt_arena_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size, false);
    one(data, size, true);
    return 0;
}
