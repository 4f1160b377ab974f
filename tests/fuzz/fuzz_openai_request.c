/* libFuzzer target for the OpenAI front end's request decoder and the fast path's
 * encoder: bt_openai_decode_request on an arbitrary body (chat or embeddings),
 * then, when it is accepted, bt_provider_encode with an upstream model id taken
 * from the input.
 *
 * Input: byte 0 picks the operation (bit 0: embeddings) and the length of the
 * upstream model id (bits 1..7, taken from the end of the input, any bytes,
 * invalid UTF-8 included); the rest is the body.
 *
 * Checked: no crash, leak or out-of-bounds access; a rejection comes with a
 * message; an accepted request has a non-empty model and, for chat, a messages
 * array; the encoded body is valid JSON whose `model` is the upstream id (after
 * bt_json_escape's replacement of invalid UTF-8), which decodes again as a
 * request of the same kind, keeps `stream`, and asks for usage exactly when the
 * encoder says it added it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "provider/provider.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum bt_op op = (data[0] & 1) ? BT_OP_EMBED : BT_OP_CHAT;
    size_t mlen = (size_t)(data[0] >> 1);
    if (mlen > size - 1) mlen = size - 1;
    struct bt_str upstream = {(const char *)data + size - mlen, mlen};
    struct bt_str body = {(const char *)data + 1, size - 1 - mlen};

    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_request r;
    char msg[300];
    msg[0] = 0;
    const char *param = (const char *)1;
    enum bt_err err = bt_openai_decode_request(&r, op, body, &a, msg, sizeof(msg), &param);
    CHECK(err == BT_OK || err == BT_EPARSE || err == BT_EINVAL || err == BT_ETOOBIG);
    if (err) {
        CHECK(msg[0] != 0 && strlen(msg) < sizeof(msg));
        bt_arena_free(&a);
        return 0;
    }
    CHECK(param == NULL);
    CHECK(r.model.len > 0 && r.tok_model > 0);
    CHECK(bt_json_type(&r.doc, 0) == BT_JSON_OBJECT);
    if (op == BT_OP_CHAT) CHECK(bt_json_type(&r.doc, r.tok_messages) == BT_JSON_ARRAY);
    else CHECK(r.tok_input > 0);
    if (upstream.len == 0) upstream = BT_STR("m");
    /* An upstream model id is a config name or a client's checked direct id: never
     * a control character, at most BT_NAME_MAX bytes (decode refuses the others). */
    char clean[BT_NAME_MAX];
    if (upstream.len > sizeof(clean)) upstream.len = sizeof(clean);
    for (size_t i = 0; i < upstream.len; i++) {
        unsigned char ch = (unsigned char)upstream.p[i];
        clean[i] = ch < 0x20 || ch == 0x7f ? '_' : (char)ch;
    }
    upstream.p = clean;

    struct bt_provider prov;
    memset(&prov, 0, sizeof(prov));
    prov.name = "fuzz";
    prov.type = BT_PROVIDER_OPENAI;
    struct bt_pbody parts;
    bool added = false;
    err = bt_provider_encode(&prov, &r, upstream, &a, &parts, &added);
    CHECK(err == BT_OK);
    struct bt_buf out; /* the slices, joined as they go upstream */
    bt_buf_init(&out, body.len * 2 + upstream.len * 6 + 4096);
    CHECK(parts.n <= BT_UP_BODY_PARTS);
    for (size_t i = 0; i < parts.n; i++) CHECK(bt_buf_append_str(&out, parts.parts[i]) == BT_OK);

    /* The upstream body is JSON and carries the upstream model. */
    struct bt_json_doc d2;
    struct bt_json_limits deeper = {.max_depth = 200};
    CHECK(bt_json_parse(&d2, out.p, out.len, &a, &deeper, NULL) == BT_OK);
    int m = bt_json_get(&d2, 0, "model");
    CHECK(bt_json_type(&d2, m) == BT_JSON_STRING);
    struct bt_buf want;
    bt_buf_init(&want, upstream.len * 6 + 16);
    CHECK(bt_json_escape(&want, upstream) == BT_OK);
    struct bt_str got = bt_json_raw(&d2, m);
    CHECK(got.len == want.len && memcmp(got.p, want.p, want.len) == 0);
    bt_buf_free(&want);

    /* It decodes again as the same kind of request. */
    struct bt_request r2;
    err = bt_openai_decode_request(&r2, op, bt_buf_str(&out), &a, msg, sizeof(msg), &param);
    CHECK(err == BT_OK);
    CHECK(r2.stream == r.stream);
    if (op == BT_OP_CHAT) {
        CHECK(added == (r.stream && !r.include_usage));
        if (added) CHECK(r2.include_usage);
        else CHECK(r2.include_usage == r.include_usage);
        CHECK(r2.doc.toks[r2.tok_messages].size == r.doc.toks[r.tok_messages].size);
    } else {
        CHECK(!added);
    }
    /* Nothing else at the top level was lost or added (stream_options aside). */
    uint32_t k1 = r.doc.toks[0].size, k2 = r2.doc.toks[0].size;
    CHECK(k2 == k1 || (added && r.tok_stream_options < 0 && k2 == k1 + 1));
    bt_buf_free(&out);
    bt_arena_free(&a);
    return 0;
}
