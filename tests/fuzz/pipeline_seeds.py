#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_pipeline (tests/fuzz/corpus/pipeline/).

Each seed is the 7 control bytes described at the top of fuzz_pipeline.c followed
by the body material. Run from the repo root: python3 tests/fuzz/pipeline_seeds.py
"""
import json
import os

OUT = "tests/fuzz/corpus/pipeline"

# indices into fuzz_pipeline.c's tables
PATH = {"chat": 0, "messages": 2, "count": 3, "embed": 4, "models": 6, "model_m": 7, "model_raw": 8, "ready": 9,
        "live": 10, "metrics": 11, "reload": 12, "admin": 13, "query": 14, "v1": 15}
MODELS = ["chat", "paced", "embed", "flaky", "fallback", "spread", "resets", "stalls",
          "broken", "refused-then-ok", "keyless", "sim/gpt-4o-mini", "ant", "429/m",
          "500/m", "503/m", "no_answer/m", "reset_before/m", "reset_mid/m", "stall_mid/m",
          "slow_bytes/m", "invalid_json/m", "error_event/m", "refused/m", "nope", "sim/",
          "/chat", "sim/a/b", "chat ", "gem"]
FAULTS = ["none", "429", "500", "503", "no_answer", "reset_before", "reset_mid", "stall_mid",
          "slow_bytes", "invalid_json", "error_event", "bogus"]
RAW, PREFIX, CHAT, EMBED = 0, 1, 2, 3


def seed(name, path="chat", method=0, v10=False, close=False, mode=CHAT, stream=False,
         extra=False, usage=False, no_stream_key=False, model="chat", fault=None, timeout=0,
         draining=False, cut=7, auth=0, chunked=False, rid=False, rst=False, close_mode=0,
         pipeline=False, second=None, shutdown=False, n=0, rest=b""):
    b0 = PATH[path] | method << 4 | v10 << 6 | close << 7
    b1 = mode | stream << 2 | extra << 3 | usage << 4 | no_stream_key << 5
    b2 = MODELS.index(model)
    b3 = (FAULTS.index(fault) if fault else 15) | timeout << 4 | draining << 7
    b4 = cut | auth << 3 | chunked << 5 | rid << 6 | rst << 7
    b5 = (close_mode | pipeline << 3 | (second is not None) << 4 | (second or 0) << 5
          | shutdown << 7)
    if isinstance(rest, str):
        rest = rest.encode()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([b0, b1, b2, b3, b4, b5, n]) + rest)


def raw(model, **extra):
    body = {"model": "MODEL", "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).replace('"MODEL"', model)


os.makedirs(OUT, exist_ok=True)
seed("chat_plain", rest="hello there")
seed("messages_plain", path="messages", rest="hello there")
seed("messages_stream_ant", path="messages", stream=True, model="ant", rest="stream me")
seed("messages_stream_gem_tools", path="messages", stream=True, extra=True, model="gem", rest="call the tool")
seed("messages_stream_fault", path="messages", stream=True, model="error_event/m", rest="x")
seed("messages_no_max_tokens", path="messages", no_stream_key=True, model="gem", rest="x")
seed("count_tokens", path="count", rest="count these words")
seed("chat_to_ant_stream", stream=True, usage=True, model="ant", rest="hi")
seed("chat_to_gem_tools", extra=True, model="gem", rest="call the tool")
seed("chat_stream", stream=True, model="paced", rest="stream me")
seed("chat_stream_usage", stream=True, usage=True, rest="usage please")
seed("chat_tools", extra=True, model="sim/gpt-4o-mini", rest="call the tool")
seed("chat_tools_stream", extra=True, stream=True, model="paced", rest="call the tool")
seed("chat_prefix", mode=PREFIX, stream=True,
     rest='"messages":[{"role":"user","content":"x"}],"max_tokens":3,"n":2}')
seed("chat_korean_chunked", chunked=True, cut=3, rest="안녕하세요 모델 café \"quoted\"")
seed("embeddings", path="embed", mode=EMBED, model="embed", rest="embed this")
seed("embeddings_base64", path="embed", mode=EMBED, extra=True, model="embed", rest="b64")
for i, f in enumerate(FAULTS[1:11]):
    seed("fault_" + f, stream=bool(i % 2), model=f + "/m", fault=f, rest="fault " + f)
    seed("fault_" + f + "_other", stream=not bool(i % 2), model=f + "/m", fault=f,
         rest="fault " + f)
seed("group_fallback", model="fallback", rest="fall back")
seed("group_spread_stream", model="spread", stream=True, rest="spread")
seed("group_resets_stream", model="resets", stream=True, rest="resets")
seed("group_stalls", model="stalls", rest="stalls")
seed("group_broken_stream", model="broken", stream=True, rest="broken")
seed("group_refused", model="refused-then-ok", rest="refused first")
seed("flaky_stream", model="flaky", stream=True, rest="flaky")
seed("keyless", model="keyless", rest="no key")
seed("unknown_model", model="nope", rest="nope")
seed("timeout_5ms", model="stalls", timeout=4, rest="short budget")
seed("timeout_bad", timeout=7, rest="bad budget")
seed("no_auth", auth=2, rest="who am i")
seed("wrong_auth", auth=3, rest="who am i")
seed("x_api_key_rid", auth=1, rid=True, rest="with id")
# The bad model ids of the brief: CR/LF and NUL through JSON escapes, then raw.
seed("model_crlf", mode=RAW, rest=raw('"sim/x\\r\\ny"'))
seed("model_crlf_stream", mode=RAW, rest=raw('"sim/x\\r\\ny"', stream=True))
seed("model_nul", mode=RAW, rest=raw('"sim/x\\u0000y"'))
seed("model_lf_group", mode=RAW, rest=raw('"chat\\n"'))
seed("dup_keys", mode=RAW, rest='{"model":"chat","model":"paced","stream":false,"stream":true,'
     '"messages":[{"role":"user","content":"a"}],"messages":[]}')
seed("dup_keys_prefix", mode=PREFIX, model="fallback",
     rest='"model":"sim/other","messages":[{"role":"user","content":"b"}]}')
seed("big_content_8k", rest="x" * 8192)
seed("big_model_8k", mode=RAW, rest=raw('"sim/' + "m" * 8192 + '"'))
seed("big_unknown_model_8k", mode=RAW, rest=raw('"' + "q" * 8192 + '"'))
seed("models_list", path="models", mode=RAW)
seed("model_get", path="model_m", mode=RAW, model="paced")
seed("model_get_raw", path="model_raw", rest="sim/x\r\ny")
seed("health_ready_draining", path="ready", mode=RAW, draining=True)
seed("health_live_head", path="live", method=3, mode=RAW)
seed("metrics", path="metrics", mode=RAW)
seed("admin_reload", path="reload", mode=RAW)
seed("admin_other", path="admin", mode=RAW)
seed("query_string", path="query", rest="query")
seed("v1_root", path="v1", mode=RAW)
seed("get_on_chat", method=1, rest="wrong method")
seed("http10_stream", v10=True, stream=True, model="paced", rest="old client")
seed("conn_close_pipeline", close=True, pipeline=True, rest="twice")
seed("pipeline_stream", pipeline=True, stream=True, model="paced", rest="twice")
seed("close_mid_request", close_mode=4, model="stalls", rest="bye")
seed("close_after_send", close_mode=5, stream=True, model="no_answer/m", rst=True, rest="bye")
seed("close_after_bytes", close_mode=6, n=20, stream=True, model="slow_bytes/m", rest="bye")
seed("hold_second_chat", model="stall_mid/m", stream=True, second=1, rest="hold")
seed("hold_second_stream", model="no_answer/m", second=2, rest="hold")
seed("hold_second_models", model="slow_bytes/m", second=0, rest="hold")
seed("hold_second_ready", model="stalls", second=3, draining=True, rest="hold")
seed("shutdown_stream", model="stall_mid/m", stream=True, shutdown=True, n=3, rest="stop")
seed("shutdown_plain", model="no_answer/m", shutdown=True, n=1, rest="stop")
seed("invalid_utf8", rest=b"\xff\xfe bad \xc3")
seed("not_json", mode=RAW, rest="{\"model\":")
print(len(os.listdir(OUT)), "seeds in", OUT)
