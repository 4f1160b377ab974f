// Fast-path exactness against the fake provider (tests/fake): the request baton
// sends upstream is the client's bytes with only `model` replaced, carries the
// provider's key and none of the client's auth/encoding headers; replies and
// stream events, vendor fields included, reach the client unchanged; upstream
// connections are reused; a 200 stream that breaks or stalls ends in an error event.
import {
    test, run, setup, assert, eq, deepEq, startBaton, client, post, streamRaw, freePort,
} from './lib.mjs';
import { validate } from './schema.mjs';
import { startFake, cannedCompletion, cannedChunks } from '../fake/fake_provider.mjs';

const PROVIDER_KEY = 'sk-fake-provider-KEY-0123456789';
const MASTER = 'sk-master-passthrough-abcdef';
const fake = await setup(async () => startFake(await freePort()));
const b = await setup(() => startBaton(`
auth:
  master_key: "${MASTER}"
providers:
  fake: {type: openai, base_url: "${fake.url}", api_key: "${PROVIDER_KEY}", timeouts: {first_byte: 2s, idle: 500ms}}
models:
  vendor: {provider: fake, model: upstream/model-v1}
  vendor-emb: {provider: fake, model: emb-up}
`));
const CHAT = `${b.url}/chat/completions`;
const CLIENT_HEADERS = {
    authorization: `Bearer ${MASTER}`,
    'accept-encoding': 'gzip, deflate',
    accept: 'application/json',
    'x-stainless-lang': 'js',
    'user-agent': 'OpenAI/JS 6.0.0',
};

const lastReq = () => fake.requests[fake.requests.length - 1];
const upstreamHeaders = (rec) => {
    const h = {};
    for (let i = 0; i < rec.rawHeaders.length; i += 2) {
        const k = rec.rawHeaders[i].toLowerCase();
        h[k] = h[k] === undefined ? rec.rawHeaders[i + 1] : `${h[k]}, ${rec.rawHeaders[i + 1]}`;
    }
    return h;
};

// Posts `text` as the body (exact bytes) and returns {r, up (the fake's record)}.
async function send(text, url = CHAT) {
    fake.reset();
    const r = await post(url, text, { headers: CLIENT_HEADERS });
    eq(fake.requests.length, 1, `upstream requests for one client request (client got ${r.status} ${r.text.slice(0, 200)})`);
    return { r, up: lastReq() };
}

test('request body: only model is replaced, every other byte is the client\'s', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('upstream/model-v1')));
    const bodies = [
        '{"model":"vendor","messages":[{"role":"user","content":"h\\u00e9llo 한국어 \\ud83d\\ude00"}],"temperature":0.70,"x_custom":{"a":[1,2.50,3e2],"b":null},"reasoning_effort":"high","top_p":1.0}',
        '{\n  "messages" : [ {"role": "user", "content": "spaced\\nout"} ],\n  "model" : "vendor" ,\n  "seed": 12345678901234567890, "metadata": {"k": "v"}\n}',
    ];
    for (const text of bodies) {
        const { r, up } = await send(text);
        eq(r.status, 200, `status (${r.text.slice(0, 200)})`);
        eq(up.method, 'POST', 'upstream method');
        eq(up.url, '/v1/chat/completions', 'upstream path');
        const want = text.replace(/("model"\s*:\s*)"vendor"/, '$1"upstream/model-v1"');
        eq(up.body.toString('utf8'), want, 'upstream body bytes');
    }
});

test('upstream headers: provider key as Bearer; no client authorization, accept-encoding or x-stainless', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('upstream/model-v1')));
    const { up } = await send('{"model":"vendor","messages":[{"role":"user","content":"hdr"}]}');
    const h = upstreamHeaders(up);
    eq(h.authorization, `Bearer ${PROVIDER_KEY}`, 'upstream authorization');
    assert(!JSON.stringify(h).includes(MASTER), 'the client\'s master key was forwarded upstream');
    assert(h['accept-encoding'] === undefined || h['accept-encoding'] === 'identity',
        `client accept-encoding forwarded: ${h['accept-encoding']}`);
    assert(!Object.keys(h).some((k) => k.startsWith('x-stainless')), `x-stainless-* forwarded: ${Object.keys(h).join(',')}`);
    assert((h['content-type'] || '').startsWith('application/json'), `content-type ${h['content-type']}`);
    eq(h.host, `127.0.0.1:${fake.port}`, 'host header');
    if (h['content-length'] !== undefined) eq(Number(h['content-length']), up.body.length, 'content-length');
});

test('reply bytes pass through unchanged (vendor fields like reasoning_content)', async () => {
    const body = cannedCompletion('upstream/model-v1');
    fake.handle((req, res, h) => h.json(200, body));
    const { r } = await send('{"model":"vendor","messages":[{"role":"user","content":"reply"}]}');
    eq(r.status, 200, 'status');
    eq(r.text, body, 'client body');
    validate('CreateChatCompletionResponse', r.json);
    eq(r.headers.get('x-baton-deployment'), 'fake/upstream/model-v1', 'x-baton-deployment');
    const data = await client(b.url, { apiKey: MASTER }).chat.completions.create({ model: 'vendor', messages: [{ role: 'user', content: 'sdk' }] });
    eq(data.choices[0].message.reasoning_content, 'thinking about it', 'reasoning_content through the SDK');
    deepEq(data.x_vendor_extra, { temperature_used: 0.7, list: [1, 2.5, 300] }, 'vendor top-level field');
});

test('stream: events pass through unchanged; the usage chunk baton asked for is dropped', async () => {
    fake.handle((req, res, h) => h.sse(cannedChunks('upstream/model-v1', { usage: req.json?.stream_options?.include_usage === true })));
    fake.reset();
    const clientBody = { model: 'vendor', messages: [{ role: 'user', content: 'stream' }], stream: true, x_vendor_flag: [1, 2] };
    const raw = await streamRaw(CHAT, clientBody, { headers: CLIENT_HEADERS });
    eq(raw.status, 200, 'status');
    const up = lastReq();
    const sent = { ...up.json }; delete sent.stream_options;
    deepEq(sent, { ...clientBody, model: 'upstream/model-v1' }, 'upstream request (apart from stream_options)');
    const want = cannedChunks('upstream/model-v1');
    deepEq(raw.events.map((e) => e.data), [...want, '[DONE]'], 'client events');
    for (const e of raw.events) if (e.json) validate('CreateChatCompletionStreamResponse', e.json);
});

test('stream with include_usage: the client gets the usage chunk', async () => {
    fake.handle((req, res, h) => h.sse(cannedChunks('upstream/model-v1', { usage: req.json?.stream_options?.include_usage === true })));
    const raw = await streamRaw(CHAT, { model: 'vendor', messages: [{ role: 'user', content: 's' }], stream: true, stream_options: { include_usage: true } }, { headers: CLIENT_HEADERS });
    deepEq(raw.events.map((e) => e.data), [...cannedChunks('upstream/model-v1', { usage: true }), '[DONE]'], 'client events');
});

test('SDK stream through the fast path assembles reasoning deltas untouched', async () => {
    fake.handle((req, res, h) => h.sse(cannedChunks('upstream/model-v1', { usage: req.json?.stream_options?.include_usage === true })));
    const s = await client(b.url, { apiKey: MASTER }).chat.completions.create({ model: 'vendor', messages: [{ role: 'user', content: 's' }], stream: true });
    let reasoning = '', content = '';
    for await (const ch of s) { reasoning += ch.choices[0]?.delta?.reasoning_content || ''; content += ch.choices[0]?.delta?.content || ''; }
    eq(reasoning, 'hmm let me think', 'reasoning_content deltas');
    eq(content, 'Hello world', 'content');
});

test('a 200 stream whose connection breaks ends with an error event, no [DONE]', async () => {
    fake.handle((req, res, h) => h.sse(cannedChunks('upstream/model-v1'), { breakAfter: 3 }));
    const raw = await streamRaw(CHAT, { model: 'vendor', messages: [{ role: 'user', content: 'b' }], stream: true }, { headers: CLIENT_HEADERS, timeout: 5000 });
    eq(raw.status, 200, 'status');
    deepEq(raw.events.slice(0, 3).map((e) => e.data), cannedChunks('upstream/model-v1').slice(0, 3), 'events before the break');
    assert(raw.error, `no error event; events: ${raw.events.map((e) => e.data.slice(0, 50)).join(' | ')}`);
    assert(!raw.done, '[DONE] after a broken upstream stream');
});

test('a 200 stream that stalls past the idle timeout (500ms) ends with an error event', async () => {
    fake.handle(async (req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${cannedChunks('upstream/model-v1')[0]}\n\n`);
        // then nothing: the connection stays open
    });
    const t0 = Date.now();
    const raw = await streamRaw(CHAT, { model: 'vendor', messages: [{ role: 'user', content: 'st' }], stream: true }, { headers: CLIENT_HEADERS, timeout: 5000 });
    assert(raw.error, `no error event after the stall (${Date.now() - t0} ms; read error: ${raw.readError?.message})`);
    assert(!raw.done, '[DONE] after a stalled stream');
    assert(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms for a 500ms idle timeout`);
});

test('the idle deadline moves with every event: 6 events 300ms apart pass a 500ms idle timeout, then a stall ends it', async () => {
    const chunks = cannedChunks('upstream/model-v1');
    fake.handle(async (req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (let i = 0; i < 6; i++) {
            res.write(`data: ${chunks[i % 2]}\n\n`);
            await new Promise((r) => setTimeout(r, 300));
        }
        // 1.8 s in: longer than the idle timeout, shorter than first_byte; then nothing
    });
    const t0 = Date.now();
    const raw = await streamRaw(CHAT, { model: 'vendor', messages: [{ role: 'user', content: 'mv' }], stream: true }, { headers: CLIENT_HEADERS, timeout: 6000 });
    const took = Date.now() - t0;
    eq(raw.events.filter((e) => !e.json?.error).length, 6, 'every paced event relayed before the stall');
    assert(raw.error, `no error event after the stall (${took} ms)`);
    assert(/\(idle timeout\)/.test(raw.error.message), `the phase named: ${raw.error.message}`);
    assert(!raw.done, '[DONE] after a stalled stream');
    assert(took >= 1900 && took < 4000, `the stall was detected after ${took} ms (the last event at ~1500 ms, idle 500 ms)`);
});

test('a stream\'s head reaches the client when the provider\'s does, before the first event', async () => {
    const chunks = cannedChunks('upstream/model-v1');
    fake.handle(async (req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        await new Promise((r) => setTimeout(r, 300)); // under the 500ms idle timeout
        for (const c of chunks) res.write(`data: ${c}\n\n`);
        res.end('data: [DONE]\n\n');
    });
    const t0 = Date.now();
    const r = await fetch(CHAT, {
        method: 'POST',
        headers: { ...CLIENT_HEADERS, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'vendor', messages: [{ role: 'user', content: 'hd' }], stream: true }),
    });
    const tHead = Date.now() - t0;
    eq(r.status, 200, 'status');
    assert(tHead < 150, `the head arrived after ${tHead} ms; the provider sent its own at once`);
    const text = await r.text();
    const tBody = Date.now() - t0;
    assert(tBody >= 250, `the body ended after ${tBody} ms, before the provider's first event`);
    assert(text.trimEnd().endsWith('data: [DONE]'), `stream not complete: ...${text.slice(-80)}`);
});

test('a stream ended by the provider without [DONE] is not reported as a clean finish', async () => {
    fake.handle((req, res, h) => h.sse(cannedChunks('upstream/model-v1').slice(0, 3), { done: false }));
    const raw = await streamRaw(CHAT, { model: 'vendor', messages: [{ role: 'user', content: 'nd' }], stream: true }, { headers: CLIENT_HEADERS, timeout: 5000 });
    assert(!raw.done, '[DONE] sent although the provider stopped before finishing');
    assert(raw.error, 'no error event for a truncated stream');
});

test('upstream connections are kept alive and reused', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('upstream/model-v1')));
    const c0 = fake.connections;
    for (let i = 0; i < 8; i++) {
        const r = await post(CHAT, `{"model":"vendor","messages":[{"role":"user","content":"ka ${i}"}]}`, { headers: CLIENT_HEADERS });
        eq(r.status, 200, `request ${i}`);
    }
    assert(fake.connections - c0 <= 2, `8 sequential requests opened ${fake.connections - c0} upstream connections`);
});

test('embeddings: body bytes spliced, reply unchanged', async () => {
    const reply = '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25,0.125]}],"model":"emb-up","usage":{"prompt_tokens":2,"total_tokens":2},"x_extra":true}';
    fake.handle((req, res, h) => h.json(200, reply));
    const text = '{"model":"vendor-emb","input":["one"],"encoding_format":"float","dimensions":3,"user":"u-1"}';
    const { r, up } = await send(text, `${b.url}/embeddings`);
    eq(up.url, '/v1/embeddings', 'upstream path');
    eq(up.body.toString(), text.replace('"vendor-emb"', '"emb-up"'), 'upstream body');
    eq(r.text, reply, 'client body');
    validate('CreateEmbeddingResponse', r.json);
});

test('provider/model with slashes reaches the provider as the part after the first /', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('org/model-x')));
    const { r, up } = await send('{"model":"fake/org/model-x","messages":[{"role":"user","content":"d"}]}');
    eq(r.status, 200, 'status');
    eq(up.json.model, 'org/model-x', 'upstream model');
    eq(r.headers.get('x-baton-deployment'), 'fake/org/model-x', 'x-baton-deployment');
});

await run();
