// Upstream failures through baton: each becomes the right status with an OpenAI
// error object (429 keeps retry-after, 500 -> 502, 503 -> 503, timeouts -> 504,
// refused -> 502, upstream 400 -> 400), for plain and stream requests, and a
// model with a second deployment falls back.
import {
    test, run, setup, assert, eq, startBaton, client, post, streamRaw, rejects, freePort,
} from './lib.mjs';
import { checkError, validate } from './schema.mjs';
import { startFake } from '../fake/fake_provider.mjs';

const fake = await setup(async () => startFake(await freePort()));
const dead = await setup(() => freePort()); // nothing listens here
const b = await setup(() => startBaton(`
providers:
  ok: {type: sim, seed: 9}
  f429: {type: sim, retry_after: 7s, faults: {429: 1}}
  f500: {type: sim, faults: {500: 1}}
  f503: {type: sim, faults: {503: 1}}
  fnoans: {type: sim, faults: {no_answer: 1}, timeouts: {first_byte: 300ms}}
  freset: {type: sim, faults: {reset_before: 1}}
  fjson: {type: sim, faults: {invalid_json: 1}}
  refused: {type: openai, base_url: "http://127.0.0.1:${dead}/v1", api_key: "sk-refused", timeouts: {connect: 2s}}
  fake: {type: openai, base_url: "${fake.url}", api_key: "sk-fake", timeouts: {first_byte: 300ms}}
models:
  m429: {provider: f429}
  m500: {provider: f500}
  m503: {provider: f503}
  mnoans: {provider: fnoans}
  mreset: {provider: freset}
  mjson: {provider: fjson}
  mrefused: {provider: refused, model: x}
  mfake: {provider: fake, model: fake-up}
  fallback:
    deployments:
      - {provider: f500, model: first}
      - {provider: ok, model: second}
`));
const CHAT = `${b.url}/chat/completions`;
const user = (model) => ({ model, messages: [{ role: 'user', content: 'hello' }] });

// POSTs plain and stream variants and checks both get `status` with an error body.
async function expectStatus(model, status, { maxMs = 5000 } = {}) {
    let plain;
    for (const stream of [false, true]) {
        const t0 = Date.now();
        const r = stream
            ? await streamRaw(CHAT, { ...user(model), stream: true }, { timeout: 10000 })
            : await post(CHAT, user(model));
        const what = `${model}${stream ? ' (stream)' : ''}`;
        eq(r.status, status, `${what} status (body ${(r.text || '').slice(0, 200)})`);
        checkError(r.json);
        assert(r.headers.get('x-request-id'), `${what}: x-request-id missing`);
        assert(r.headers.get('x-baton-deployment'), `${what}: x-baton-deployment missing on an upstream error`);
        assert(Date.now() - t0 < maxMs, `${what}: took ${Date.now() - t0} ms`);
        if (!stream) plain = r;
    }
    return plain;
}

test('upstream 429 -> 429 with retry-after passed through', async () => {
    const r = await expectStatus('m429', 429);
    eq(r.headers.get('retry-after'), '7', 'retry-after (the provider sent 7)');
    eq(r.headers.get('x-baton-deployment'), 'f429/m429', 'x-baton-deployment');
    const e = await rejects(client(b.url).chat.completions.create(user('m429')), 'SDK');
    eq(e.status, 429, 'SDK error status');
});

test('upstream 500 -> 502', async () => { await expectStatus('m500', 502); });
test('upstream 503 -> 503', async () => { await expectStatus('m503', 503); });

test('upstream no answer with first_byte 300ms -> 504', async () => {
    const t0 = Date.now();
    await expectStatus('mnoans', 504, { maxMs: 3000 });
    assert(Date.now() - t0 >= 500, 'two 504s came back faster than 2 x 300 ms');
});

test('upstream resets before answering -> 502', async () => { await expectStatus('mreset', 502); });
test('upstream answers invalid JSON -> 502', async () => {
    const r = await post(CHAT, user('mjson'));
    eq(r.status, 502, `status (${r.text.slice(0, 200)})`);
    checkError(r.json);
});
test('connection refused upstream -> 502', async () => { await expectStatus('mrefused', 502, { maxMs: 3000 }); });

test('upstream 400 -> 400 with the error object', async () => {
    fake.handle((req, res, h) => h.json(400, '{"error":{"message":"Invalid value for temperature: fake says no","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}'));
    const r = await post(CHAT, { ...user('mfake'), temperature: 7 });
    eq(r.status, 400, `status (${r.text.slice(0, 200)})`);
    const e = checkError(r.json);
    assert(e.message.includes('fake says no'), `upstream message lost: ${e.message}`);
    const s = await streamRaw(CHAT, { ...user('mfake'), stream: true, temperature: 7 });
    eq(s.status, 400, 'stream status');
    checkError(s.json);
});

test('upstream 404 from the provider comes back as an OpenAI error', async () => {
    fake.handle((req, res, h) => h.json(404, '{"error":{"message":"The model `fake-up` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}'));
    const r = await post(CHAT, user('mfake'));
    assert(r.status >= 400 && r.status < 600, `status ${r.status}`);
    checkError(r.json);
});

test('openai provider that never answers, first_byte 300ms -> 504', async () => {
    fake.handle((req, res, h) => h.hang());
    await expectStatus('mfake', 504, { maxMs: 3000 });
});

test('a failed first deployment falls back to the next', async () => {
    for (let i = 0; i < 6; i++) {
        const r = await post(CHAT, { ...user('fallback'), messages: [{ role: 'user', content: `fallback ${i}` }] });
        eq(r.status, 200, `request ${i} status (${r.text.slice(0, 200)})`);
        validate('CreateChatCompletionResponse', r.json);
        eq(r.headers.get('x-baton-deployment'), 'ok/second', 'deployment that served');
        assert(['1', '2'].includes(r.headers.get('x-baton-attempts')), `x-baton-attempts ${r.headers.get('x-baton-attempts')}`);
    }
});

test('baton keeps serving after all those failures', async () => {
    const r = await post(CHAT, user('fallback'));
    eq(r.status, 200, 'status');
    eq((await fetch(`${b.base}/health/ready`)).status, 200, 'ready');
});

await run();
