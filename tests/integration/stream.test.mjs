// Streaming through baton: chunks relayed as they arrive and valid, the SDK's
// stream helper, tool-call argument fragments, usage only when asked, a broken
// provider stream ends with an error event (never [DONE]), a client abort cancels
// the upstream transfer, 50 concurrent streams.
import {
    test, run, setup, assert, eq, startBaton, startSim, client, streamRaw, rejects, waitFor, sleep,
} from './lib.mjs';
import { validate } from './schema.mjs';

const up = await setup(() => startSim(['--seed', '11', '--ttft', '100ms', '--tps', '10', '--tokens', '300']));
const fastUp = await setup(() => startSim(['--seed', '12']));
const b = await setup(() => startBaton(`
providers:
  sim: {type: sim, seed: 3}
  paced: {type: sim, seed: 5, ttft: 200ms, tokens_per_sec: 20, reply_tokens: 20}
  reset: {type: sim, seed: 1, reply_tokens: 40, faults: {reset_mid: 1}}
  errev: {type: sim, seed: 1, reply_tokens: 40, faults: {error_event: 1}}
  stall: {type: sim, seed: 1, reply_tokens: 40, faults: {stall_mid: 1}, timeouts: {idle: 300ms}}
  up: {type: openai, base_url: "${up.url}", api_key: "sk-upstream-test", timeouts: {idle: 5s}}
  up2: {type: openai, base_url: "${fastUp.url}", api_key: "sk-upstream-test-2"}
models:
  demo: {provider: sim}
  paced: {provider: paced}
  broken-reset: {provider: reset}
  broken-event: {provider: errev}
  broken-stall: {provider: stall}
  slow-up: {provider: up, model: slow-model}
  fast-up: {provider: up2, model: fast-model}
  emb-up: {provider: up2, model: text-embedding-3-small}
`));
const CHAT = `${b.url}/chat/completions`;
const sdk = client(b.url);
const user = (content, model = 'demo') => ({ model, messages: [{ role: 'user', content }] });

// Collects an SDK stream, validating every chunk.
async function collect(stream) {
    const chunks = [];
    for await (const ch of stream) { validate('CreateChatCompletionStreamResponse', ch); chunks.push(ch); }
    return chunks;
}

test('plain stream: chunks validate, role first, one finish, [DONE], no usage chunk', async () => {
    const chunks = await collect(await sdk.chat.completions.create({ ...user('stream please'), stream: true }));
    assert(chunks.length >= 3, `only ${chunks.length} chunks`);
    eq(chunks[0].choices[0]?.delta?.role, 'assistant', 'first delta role');
    const text = chunks.map((c) => c.choices[0]?.delta?.content || '').join('');
    assert(text.length > 0, 'no content');
    eq(chunks.filter((c) => c.choices[0]?.finish_reason).length, 1, 'chunks with a finish_reason');
    assert(chunks.every((c) => c.usage == null), 'a usage chunk reached a client that did not ask for it');
    assert(chunks.every((c) => c.choices.length > 0), 'a chunk with empty choices (the usage chunk) was not dropped');
    const raw = await streamRaw(CHAT, { ...user('stream please'), stream: true });
    eq(raw.status, 200, 'status');
    assert((raw.headers.get('content-type') || '').startsWith('text/event-stream'), `content-type ${raw.headers.get('content-type')}`);
    assert(raw.done && raw.events[raw.events.length - 1].data === '[DONE]', 'last event is not [DONE]');
    assert(!raw.afterDone, 'events after [DONE]');
    eq(raw.headers.get('x-baton-deployment'), 'sim/demo', 'x-baton-deployment');
    assert(raw.headers.get('x-request-id') && raw.headers.get('x-baton-attempts'), 'x-request-id / x-baton-attempts missing');
});

test('include_usage: a final usage chunk with empty choices, before [DONE]', async () => {
    const chunks = await collect(await sdk.chat.completions.create({ ...user('count tokens'), stream: true, stream_options: { include_usage: true } }));
    const last = chunks[chunks.length - 1];
    eq(last.choices.length, 0, 'usage chunk choices');
    assert(last.usage && last.usage.prompt_tokens > 0 && last.usage.completion_tokens > 0, `usage: ${JSON.stringify(last.usage)}`);
    eq(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens, 'total_tokens');
    eq(chunks.filter((c) => c.usage).length, 1, 'chunks carrying usage');
});

test('chunks are relayed as they arrive (ttft 200ms, 20 tok/s)', async () => {
    const times = [];
    const raw = await streamRaw(CHAT, { ...user('pace me', 'paced'), stream: true }, {
        onEvent: (ev) => { if (ev.json?.choices?.[0]?.delta?.content) times.push(ev.t); },
    });
    assert(raw.done, 'stream did not finish');
    assert(times.length >= 10, `only ${times.length} content chunks`);
    const first = times[0], last = times[times.length - 1];
    assert(first >= 150, `first content after ${first} ms: ttft 200ms not honoured`);
    assert(last - first >= 500, `first chunk at ${first} ms, last at ${last} ms: the stream was buffered, not relayed`);
});

test('SDK .stream() helper: finalChatCompletion works', async () => {
    const s = sdk.chat.completions.stream({ ...user('helper please') });
    let deltas = 0;
    s.on('content', () => deltas++);
    const final = await s.finalChatCompletion();
    const ch = final.choices[0];
    assert(ch.message.content && ch.message.content.length > 0, 'no content');
    eq(ch.finish_reason, 'stop', 'finish_reason');
    assert(deltas >= 2, `content events: ${deltas}`);
});

const TOOLS = [{
    type: 'function',
    function: {
        name: 'lookup_order', description: 'Order status',
        parameters: { type: 'object', properties: { order_id: { type: 'string' }, verbose: { type: 'boolean' } }, required: ['order_id', 'verbose'] },
    },
}];

test('tools: streamed argument fragments assemble into valid JSON', async () => {
    const raw = await streamRaw(CHAT, { ...user('Where is order 42?'), stream: true, tools: TOOLS });
    assert(raw.done, 'stream did not finish');
    const deltas = raw.events.filter((e) => e.json).map((e) => { validate('CreateChatCompletionStreamResponse', e.json); return e.json.choices[0]?.delta; }).filter(Boolean);
    const tc = deltas.filter((d) => d.tool_calls).flatMap((d) => d.tool_calls);
    assert(tc.length >= 2, `tool call arrived in ${tc.length} fragment(s); expected streamed fragments`);
    const firstTc = tc[0];
    assert(Number.isInteger(firstTc.index) && firstTc.id && firstTc.type === 'function' && firstTc.function?.name === 'lookup_order',
        `first tool-call delta lacks index/id/type/name: ${JSON.stringify(firstTc)}`);
    const s = sdk.chat.completions.stream({ ...user('Where is order 42?'), tools: TOOLS });
    const final = await s.finalChatCompletion();
    eq(final.choices[0].finish_reason, 'tool_calls', 'finish_reason');
    const call = final.choices[0].message.tool_calls[0];
    eq(call.function.name, 'lookup_order', 'name');
    const args = JSON.parse(call.function.arguments);
    assert(typeof args.order_id === 'string' && typeof args.verbose === 'boolean', `arguments: ${call.function.arguments}`);
});

for (const [model, what] of [['broken-reset', 'reset_mid'], ['broken-event', 'error_event'], ['broken-stall', 'stall_mid + idle timeout 300ms']]) {
    test(`a provider stream that breaks (${what}) ends with an error event, no [DONE]`, async () => {
        const t0 = Date.now();
        const raw = await streamRaw(CHAT, { ...user('break', model), stream: true }, { timeout: 8000 });
        eq(raw.status, 200, `status (${raw.text ? raw.text.slice(0, 200) : ''})`);
        assert(!raw.done, 'stream ended with [DONE]: a fake clean finish');
        assert(raw.error, `no {"error":...} event; events: ${raw.events.map((e) => e.data.slice(0, 60)).join(' | ').slice(0, 400)}${raw.readError ? '; read error: ' + raw.readError.message : ''}`);
        assert(typeof raw.error.message === 'string' && raw.error.message.length > 0, 'error event without a message');
        assert(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
        const e = await rejects((async () => { for await (const _ of await sdk.chat.completions.create({ ...user('break', model), stream: true })); })(), 'SDK iteration');
        assert(e && e.message, 'SDK did not throw');
    });
}

test('a client abort mid-stream cancels the upstream transfer (sim stats)', async () => {
    const s0 = await up.stats();
    let seen = 0;
    const ac = new AbortController();
    const r = await fetch(CHAT, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...user('long one', 'slow-up'), stream: true }) });
    eq(r.status, 200, 'status');
    eq(r.headers.get('x-baton-deployment'), 'up/slow-model', 'deployment');
    const reader = r.body.getReader();
    while (seen < 3) { const { done } = await reader.read(); if (done) throw new Error('stream ended early'); seen++; }
    const mid = await up.stats();
    assert(mid.active > s0.active, `upstream not active mid-stream: ${JSON.stringify(mid)}`);
    const tAbort = Date.now();
    ac.abort();
    const s1 = await waitFor(async () => { const s = await up.stats(); return s.cancelled > s0.cancelled && s; }, 1500, 'sim cancelled counter incremented');
    assert(Date.now() - tAbort <= 1500, `cancel took ${Date.now() - tAbort} ms`);
    eq(s1.active, s0.active, 'upstream requests still active after the abort');
});

test('a client abort of a plain (non-stream) request cancels the upstream transfer too', async () => {
    const s0 = await up.stats();
    const ac = new AbortController();
    const p = fetch(CHAT, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify(user('long plain one', 'slow-up')) }).catch(() => null);
    await waitFor(async () => (await up.stats()).active > s0.active, 2000, 'upstream request active');
    const tAbort = Date.now();
    ac.abort();
    await p;
    await waitFor(async () => { const s = await up.stats(); return s.cancelled > s0.cancelled && s.active === s0.active; }, 1500, 'sim cancelled counter incremented, nothing active');
    assert(Date.now() - tAbort <= 1500, `cancel took ${Date.now() - tAbort} ms`);
});

test('openai-type provider to the standalone sim: 50 concurrent streams, then pooled connections are reused', async () => {
    const one = async (i) => {
        const chunks = await collect(await sdk.chat.completions.create({ ...user(`upstream ${i}`, 'fast-up'), stream: true, stream_options: { include_usage: true } }));
        if (!chunks.map((c) => c.choices[0]?.delta?.content || '').join('')) throw new Error(`stream ${i}: no content`);
        if (!chunks[chunks.length - 1].usage) throw new Error(`stream ${i}: no usage`);
    };
    const s0 = await fastUp.stats();
    const res = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => one(i)));
    const bad = res.filter((r) => r.status === 'rejected');
    assert(bad.length === 0, `${bad.length}/50 failed: ${bad.slice(0, 3).map((r) => r.reason.message).join(' | ')}`);
    const s1 = await fastUp.stats();
    // 50 at once may need 50 upstream connections (+1 for each stats call), never more.
    assert(s1.connections - s0.connections <= 52, `${s1.connections - s0.connections} upstream connections for 50 streams`);
    for (let i = 0; i < 10; i++) await sdk.chat.completions.create(user(`sequential ${i}`, 'fast-up'));
    const s2 = await fastUp.stats();
    assert(s2.connections - s1.connections <= 2, `10 sequential requests after the burst opened ${s2.connections - s1.connections} new upstream connections (keep-alive pool not reused)`);
}, { timeout: 30000 });

test('openai-type provider to the standalone sim: embeddings (SDK base64 default and float)', async () => {
    const viaSdk = await sdk.embeddings.create({ model: 'emb-up', input: 'pooled' });
    const r = await fetch(`${b.url}/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'emb-up', input: 'pooled', encoding_format: 'float' }) });
    eq(r.status, 200, 'status');
    const j = await r.json();
    validate('CreateEmbeddingResponse', j);
    eq(viaSdk.data[0].embedding.length, j.data[0].embedding.length, 'dimensions');
    assert(j.data[0].embedding.length > 0, 'empty vector');
    for (let k = 0; k < j.data[0].embedding.length; k++)
        assert(Math.abs(viaSdk.data[0].embedding[k] - j.data[0].embedding[k]) < 1e-6, `component ${k}`);
});

test('50 concurrent streams all complete correctly', async () => {
    const one = async (i) => {
        const { data: stream, response } = await sdk.chat.completions.create({ ...user(`concurrent ${i}`), stream: true, stream_options: { include_usage: true } }).withResponse();
        const chunks = await collect(stream);
        const text = chunks.map((c) => c.choices[0]?.delta?.content || '').join('');
        if (!text) throw new Error(`stream ${i}: no content`);
        if (!chunks.some((c) => c.choices[0]?.finish_reason)) throw new Error(`stream ${i}: no finish_reason`);
        if (!chunks[chunks.length - 1].usage) throw new Error(`stream ${i}: no usage`);
        return { id: response.headers.get('x-request-id'), cid: chunks[0].id, text };
    };
    const res = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => one(i)));
    const bad = res.filter((r) => r.status === 'rejected');
    assert(bad.length === 0, `${bad.length}/50 failed: ${bad.slice(0, 3).map((r) => r.reason.message).join(' | ')}`);
    const ids = new Set(res.map((r) => r.value.id));
    eq(ids.size, 50, 'distinct x-request-id values');
}, { timeout: 30000 });

test('a stream works again after all that (no leaked state)', async () => {
    await sleep(50);
    const chunks = await collect(await sdk.chat.completions.create({ ...user('still alive'), stream: true }));
    assert(chunks.length >= 3, 'short stream');
});

await run();
