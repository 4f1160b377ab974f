/* libFuzzer target for the OpenAI chat request decoder of the translate path:
 * bt_json_parse on arbitrary bytes, then bt_openai_chat_decode on whatever
 * parses (src/api/openai_chat.c).
 *
 * Checked: no crash, leak or out-of-bounds access; a refusal is BT_EINVAL with
 * a message and a parameter path that fit their buffers; an accepted request
 * has a model, at least one message, parts arrays for every count, known roles
 * and part types, and every string field is a valid JSON string body that lies
 * in the input or in the arena (a data URL's media type); the tool-call
 * argument helpers work on every call. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai_chat.h"
#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"

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

static void part_ok(const struct bt_chat_part *p, struct bt_arena *a, int depth)
{
    switch (p->type) {
    case BT_PART_TEXT:
    case BT_PART_REFUSAL: body_ok(p->text); break;
    case BT_PART_IMAGE:
        CHECK(p->image.url.len || p->image.data.len || p->image.media_type.len);
        body_ok(p->image.url);
        body_ok(p->image.media_type);
        body_ok(p->image.data);
        CHECK(p->image.detail <= BT_DETAIL_HIGH);
        break;
    case BT_PART_AUDIO:
        body_ok(p->audio.data);
        body_ok(p->audio.format);
        break;
    case BT_PART_FILE:
        CHECK(p->file.data.len || p->file.file_id.len);
        body_ok(p->file.data);
        body_ok(p->file.media_type);
        body_ok(p->file.file_id);
        body_ok(p->file.filename);
        break;
    case BT_PART_TOOL_CALL: {
        body_ok(p->tool_call.id);
        body_ok(p->tool_call.name);
        body_ok(p->tool_call.args);
        struct bt_str s;
        enum bt_err err = bt_chat_args_json(p, a, &s);
        CHECK(err == BT_OK || err == BT_EPARSE || err == BT_ENOMEM);
        err = bt_chat_args_string(p, a, &s);
        CHECK(err == BT_OK || err == BT_ENOMEM);
        break;
    }
    case BT_PART_TOOL_RESULT:
        CHECK(depth == 0);
        CHECK(!p->tool_result.nparts || p->tool_result.parts);
        body_ok(p->tool_result.call_id);
        body_ok(p->tool_result.name);
        for (uint32_t i = 0; i < p->tool_result.nparts; i++)
            part_ok(&p->tool_result.parts[i], a, depth + 1);
        break;
    case BT_PART_THINKING:
    case BT_PART_REDACTED_THINKING: body_ok(p->thinking.text); break;
    default: CHECK(0);
    }
    body_ok(p->cache.ttl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 64u << 20);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, (const char *)data, size, &a, NULL, NULL) == BT_OK) {
        struct bt_chat c;
        struct bt_chat_error e;
        enum bt_err err = bt_openai_chat_decode(&doc, &a, &c, &e);
        CHECK(err == BT_OK || err == BT_EINVAL || err == BT_ENOMEM);
        CHECK(strlen(e.message) < sizeof(e.message) && strlen(e.param) < sizeof(e.param));
        if (err == BT_EINVAL) CHECK(e.message[0] != 0);
        if (err == BT_OK) {
            CHECK(c.model.len > 0 && c.nmsgs > 0 && c.msgs);
            body_ok(c.model);
            for (uint32_t i = 0; i < c.nmsgs; i++) {
                const struct bt_chat_msg *m = &c.msgs[i];
                CHECK(m->role >= BT_ROLE_SYSTEM && m->role <= BT_ROLE_TOOL);
                CHECK(!m->nparts || m->parts);
                body_ok(m->name);
                for (uint32_t j = 0; j < m->nparts; j++) part_ok(&m->parts[j], &a, 0);
            }
            CHECK(!c.ntools || c.tools);
            for (uint32_t i = 0; i < c.ntools; i++) {
                CHECK(c.tools[i].name.len > 0);
                body_ok(c.tools[i].name);
                body_ok(c.tools[i].description);
            }
            CHECK(c.tool_choice != BT_TOOL_CHOICE_NAMED || c.tool_choice_name.p);
            CHECK(!(c.given & BT_GIVEN_STOP) || c.nstop > 0);
            for (uint32_t i = 0; i < c.nstop; i++) body_ok(c.stop[i]);
            for (uint32_t i = 0; i < c.nextras; i++) body_ok(c.extras[i].key);
            CHECK(!(c.given & ~((BT_GIVEN_LAST << 1) - 1)));
        }
    }
    bt_arena_free(&a);
    return 0;
}
