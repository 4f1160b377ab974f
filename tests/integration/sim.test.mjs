// `baton sim --listen`: the standalone simulated OpenAI-compatible server, driven
// directly (no gateway): replies validate against OpenAI's schemas, it is
// deterministic per seed, every x-sim-fault works, /sim/stats counts.
import {
    test, run, setup, assert, eq, startSim, client, post, get, streamRaw, rawConnect, sleep, waitFor,
    rejects,
} from './lib.mjs';
import { validate, checkError } from './schema.mjs';

const sim = await setup(() => startSim(['--seed', '7']));
const CHAT = `${sim.url}/chat/completions`;
const msg = (text) => ({ model: 'sim-model', messages: [{ role: 'user', content: text }] });
const fault = (f) => ({ headers: { 'x-sim-fault': f } });

test('GET /v1/models lists models in OpenAI shape', async () => {
    const r = await get(`${sim.url}/models`);
    eq(r.status, 200, 'status');
    validate('ListModelsResponse', r.json);
});

test('chat completion validates and is deterministic for a seed and request', async () => {
    const a = await post(CHAT, msg('same question'));
    const b = await post(CHAT, msg('same question'));
    eq(a.status, 200, `status (${a.text.slice(0, 200)})`);
    validate('CreateChatCompletionResponse', a.json);
    const ca = a.json.choices[0].message.content;
    assert(typeof ca === 'string' && ca.length > 0, 'empty content');
    eq(b.json.choices[0].message.content, ca, 'same seed + request -> same reply');
    assert(a.json.usage && a.json.usage.completion_tokens > 0, 'usage.completion_tokens missing');
});

test('a different --seed gives a different reply', async () => {
    const other = await startSim(['--seed', '8']);
    try {
        const a = await post(CHAT, msg('seed question'));
        const b = await post(`${other.url}/chat/completions`, msg('seed question'));
        assert(a.json.choices[0].message.content !== b.json.choices[0].message.content,
            'seeds 7 and 8 gave the same reply');
    } finally { await other.stop(); }
});

test('stream via the SDK: chunks validate, role first, usage chunk with include_usage', async () => {
    const c = client(sim.url);
    const s = await c.chat.completions.create({ ...msg('stream me'), stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const ch of s) { validate('CreateChatCompletionStreamResponse', ch); chunks.push(ch); }
    assert(chunks.length >= 3, `only ${chunks.length} chunks`);
    eq(chunks[0].choices[0]?.delta?.role, 'assistant', 'first delta role');
    const last = chunks[chunks.length - 1];
    eq(last.choices.length, 0, 'usage chunk has no choices');
    assert(last.usage && last.usage.total_tokens > 0, 'final usage chunk missing');
    assert(chunks.some((ch) => ch.choices[0]?.finish_reason === 'stop'), 'no finish_reason stop');
});

test('embeddings: float and base64 give the same vector', async () => {
    const f = await post(`${sim.url}/embeddings`, { model: 'emb', input: ['hello', 'world'], encoding_format: 'float' });
    eq(f.status, 200, 'status');
    validate('CreateEmbeddingResponse', f.json);
    eq(f.json.data.length, 2, 'two inputs -> two vectors');
    const b = await post(`${sim.url}/embeddings`, { model: 'emb', input: ['hello', 'world'], encoding_format: 'base64' });
    const raw = Buffer.from(b.json.data[0].embedding, 'base64');
    const v = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
    eq(v.length, f.json.data[0].embedding.length, 'base64 vector length');
    for (let i = 0; i < v.length; i++)
        assert(Math.abs(v[i] - f.json.data[0].embedding[i]) < 1e-6, `component ${i} differs`);
});

test('fault 429 has Retry-After and an OpenAI error body', async () => {
    const r = await post(CHAT, msg('x'), fault('429'));
    eq(r.status, 429, 'status');
    assert(/^\d+$/.test(r.headers.get('retry-after') || ''), `retry-after: ${r.headers.get('retry-after')}`);
    checkError(r.json);
});

for (const [f, st] of [['500', 500], ['503', 503]]) {
    test(`fault ${f} answers ${st} with an OpenAI error body`, async () => {
        const r = await post(CHAT, msg('x'), fault(f));
        eq(r.status, st, 'status');
        checkError(r.json);
    });
}

test('fault no_answer: no response head within 700 ms', async () => {
    const e = await rejects(post(CHAT, msg('x'), { ...fault('no_answer'), timeout: 700 }), 'no_answer request');
    assert(/abort|timeout/i.test(`${e.name} ${e.message}`), `unexpected error: ${e.message}`);
});

test('fault reset_before: the connection closes without a response', async () => {
    const e = await rejects(post(CHAT, msg('x'), fault('reset_before')), 'reset_before request');
    assert(/fetch failed|socket|reset|closed/i.test(`${e.message} ${e.cause?.code || ''} ${e.cause?.message || ''}`), `unexpected error: ${e.message}`);
});

test('fault reset_mid (stream): some chunks, then the connection breaks without [DONE]', async () => {
    const r = await streamRaw(CHAT, { ...msg('x'), stream: true }, fault('reset_mid'));
    eq(r.status, 200, 'status');
    assert(!r.done, 'stream ended with [DONE] despite reset_mid');
    assert(r.readError, 'body read should fail on a reset connection');
});

test('fault stall_mid (stream): some chunks, then silence', async () => {
    let n = 0;
    const r = await streamRaw(CHAT, { ...msg('x'), stream: true }, { ...fault('stall_mid'), timeout: 1500, onEvent: () => n++ });
    eq(r.status, 200, 'status');
    assert(n >= 1, 'no chunk before the stall');
    assert(!r.done, 'stall_mid stream finished');
    assert(r.readError, 'expected our 1.5 s timeout to end the stalled read');
});

test('fault slow_bytes: the reply body trickles in one byte at a time', async () => {
    const ac = new AbortController();
    const r = await fetch(CHAT, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-sim-fault': 'slow_bytes' }, body: JSON.stringify(msg('x')) });
    eq(r.status, 200, 'status');
    const reader = r.body.getReader();
    const t0 = Date.now();
    let bytes = 0, reads = 0, biggest = 0;
    while (Date.now() - t0 < 500) {
        const { value, done } = await reader.read();
        if (done) break;
        bytes += value.length; reads++; biggest = Math.max(biggest, value.length);
    }
    ac.abort();
    assert(bytes >= 10, `only ${bytes} body bytes in 500 ms`);
    assert(bytes <= 100, `${bytes} body bytes in 500 ms: not one byte every 10 ms`);
    // a busy machine may coalesce a few bytes into one read now and then; a reply
    // that did not trickle comes in a few large reads
    assert(reads >= 10 && bytes / reads < 3 && biggest <= 16, `${reads} reads of ${bytes} bytes, biggest ${biggest}: not trickling`);
});

test('fault invalid_json: 200 with a body that is not JSON', async () => {
    const r = await post(CHAT, msg('x'), fault('invalid_json'));
    eq(r.status, 200, 'status');
    eq(r.json, undefined, `body parsed as JSON: ${r.text.slice(0, 100)}`);
});

test('fault error_event (stream): an error event inside the 200 stream, no [DONE]', async () => {
    const r = await streamRaw(CHAT, { ...msg('x'), stream: true }, fault('error_event'));
    eq(r.status, 200, 'status');
    assert(r.error, 'no {"error":...} event');
    assert(!r.done, 'stream ended with [DONE] after the error event');
});

test('/sim/stats counts connections and requests', async () => {
    const s0 = await sim.stats();
    for (const k of ['connections', 'requests', 'cancelled', 'active'])
        assert(Number.isInteger(s0[k]), `stats.${k} not an integer: ${JSON.stringify(s0)}`);
    const conns = [];
    for (let i = 0; i < 3; i++) conns.push(await rawConnect(sim.port));
    for (const c of conns) c.close();
    await sleep(50);
    const s1 = await sim.stats();
    // +3 raw connections; the stats requests themselves may open one more each.
    assert(s1.connections - s0.connections >= 3 && s1.connections - s0.connections <= 5,
        `connections went ${s0.connections} -> ${s1.connections} after 3 new ones`);
    await post(CHAT, msg('count me'));
    const s2 = await sim.stats();
    assert(s2.requests > s1.requests, `requests did not grow: ${s1.requests} -> ${s2.requests}`);
});

test('/sim/stats counts a request whose client went away as cancelled', async () => {
    const s0 = await sim.stats();
    const ac = new AbortController();
    const p = fetch(CHAT, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-sim-fault': 'no_answer' }, body: JSON.stringify(msg('cancel me')) }).catch(() => null);
    await waitFor(async () => (await sim.stats()).active > s0.active, 2000, 'request active');
    ac.abort();
    await p;
    const s1 = await waitFor(async () => { const s = await sim.stats(); return s.cancelled > s0.cancelled && s; }, 1000, 'cancelled incremented');
    eq(s1.active, s0.active, 'active back to its old value');
});

await run();
