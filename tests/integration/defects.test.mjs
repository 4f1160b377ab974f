// The defects found by trying baton as a new user and a hostile client would
// (issue 19), one test each: a model id with CR/LF crashed baton; a body that
// broke after its head was not counted as an upstream error; a provider's 401 did
// not fall over; clients chose metric label values; duplicated keys reached the
// provider; a provider's `param` was lost; model ids with '/' could not be
// retrieved; a stream cut short was logged with no completion tokens.
import net from 'node:net';
import {
    test, run, setup, assert, eq, startBaton, client, post, get, streamRaw, freePort, writeTemp,
    readText, waitFor, sleep, SLOW,
    metricSum,
} from './lib.mjs';
import { checkError } from './schema.mjs';
import { startFake } from '../fake/fake_provider.mjs';

const fake = await setup(async () => startFake(await freePort()));
const ACCESS = writeTemp('defects-access.log', '');
const b = await setup(() => startBaton(`
log:
  access: ${ACCESS}
providers:
  sim: {type: sim, seed: 3}
  slow: {type: sim, seed: 5, tokens_per_sec: 40, reply_tokens: 400}
  fmid: {type: sim, faults: {reset_mid: 1}}
  fake: {type: openai, base_url: "${fake.url}", api_key: "sk-fake-defects"}
models:
  demo: {provider: sim}
  slowm: {provider: slow}
  broken-mid: {provider: fmid, model: m}
  mid-then-ok:
    deployments:
      - {provider: fmid, model: m}
      - {provider: sim, model: ok}
  auth-only: {provider: fake, model: up-auth}
  auth-then-ok:
    deployments:
      - {provider: fake, model: up-auth}
      - {provider: sim, model: ok}
  param-err: {provider: fake, model: up-param}
  meta/llama-3: {provider: sim, model: llama-3}
`));
const CHAT = `${b.url}/chat/completions`;
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

fake.handle((req, res, h) => {
    const body = JSON.parse(req.body?.toString() || '{}');
    if (body.model === 'up-auth')
        return h.json(401, '{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}');
    if (body.model === 'up-param')
        return h.json(400, '{"error":{"message":"dimensions is not supported","type":"invalid_request_error","param":"dimensions","code":null}}');
    return h.json(200, '{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}');
});

async function metrics() { return (await get(`${b.base}/metrics`)).text; }

// Sends `body` as a keep-alive POST on a raw socket and returns {socket, reply}
// where reply resolves to the bytes received within `ms` (the socket stays open).
function heldPost(port, body, ms) {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.on('error', () => {});
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    return { socket: s, reply: sleep(ms).then(() => got) };
}

test('1: a model id with CR/LF (plain and streamed, held open) gets a 400 naming it while 60 other requests pass', async () => {
    const bad = [
        '{"model":"sim/x\\r\\ny","messages":[{"role":"user","content":"hi"}]}',
        '{"model":"sim/x\\r\\ny","stream":true,"messages":[{"role":"user","content":"hi"}]}',
        '{"model":"demo\\r\\nx","messages":[{"role":"user","content":"hi"}]}',
    ];
    const held = bad.map((x) => heldPost(b.port, x, 1500 * SLOW));
    const normal = await Promise.all(Array.from({ length: 60 }, (_, i) =>
        post(CHAT, chat(i % 2 ? 'demo' : 'sim/anything', { stream: i % 3 === 0 }))));
    for (const r of normal) eq(r.status, 200, `a normal request beside the held ones: ${r.text.slice(0, 200)}`);
    for (const h of held) {
        const got = await h.reply;
        assert(/^HTTP\/1\.1 400 /.test(got), `held bad request: ${JSON.stringify(got.slice(0, 120))}`);
        const body = JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4));
        checkError(body);
        eq(body.error.param, 'model', 'param');
        assert(/\\x0d\\x0a/.test(body.error.message), `the message shows the bad id: ${body.error.message}`);
        h.socket.destroy();
    }
    eq((await get(`${b.base}/health/live`)).status, 200, 'baton is still up');
    eq(b.proc.child.exitCode, null, 'baton exit code');
});

test('6, 11: a duplicated key baton reads, or a NUL in the id, is a 400 and never reaches the provider', async () => {
    fake.reset();
    for (const body of [
        '{"model":"auth-only","model":"demo","messages":[{"role":"user","content":"hi"}]}',
        '{"model":"fake/a\\u0000b","messages":[{"role":"user","content":"hi"}]}',
        '{"model":"demo","stream":false,"stream":true,"messages":[{"role":"user","content":"hi"}]}',
        '{"model":"demo","stream":true,"stream_options":{"include_usage":false,"include_usage":true},"messages":[{"role":"user","content":"hi"}]}',
    ]) {
        const r = await post(CHAT, body);
        eq(r.status, 400, `${body}: ${r.text.slice(0, 200)}`);
        checkError(r.json);
        assert(/model|stream/.test(r.json.error.param), `param ${r.json.error.param}`);
    }
    eq(fake.requests.length, 0, 'requests that reached the provider');
});

test('3: a reply that breaks after its head is counted in baton_upstream_errors_total (alone and before a fallback)', async () => {
    const before = metricSum(await metrics(), 'baton_upstream_errors_total', { provider: 'fmid' });
    const r = await post(CHAT, chat('broken-mid'));
    eq(r.status, 502, `status: ${r.text.slice(0, 200)}`);
    eq(r.json.error.code, 'upstream_reset', 'code');
    // The group's first deployment rotates: two requests try the broken one first once.
    let fellBack = 0;
    for (let i = 0; i < 2; i++) {
        const f = await post(CHAT, chat('mid-then-ok'));
        eq(f.status, 200, 'the group answers');
        if (f.headers.get('x-baton-attempts') === '2') fellBack++;
    }
    eq(fellBack, 1, 'requests that fell back from the broken deployment');
    const after = metricSum(await metrics(), 'baton_upstream_errors_total', { provider: 'fmid' });
    eq(after - before, 2, 'upstream errors counted for the two broken replies');
});

test('4: a provider refusing baton\'s credential (401) falls over to the next deployment', async () => {
    for (let i = 0; i < 2; i++) { // whichever deployment the rotation puts first
        const r = await post(CHAT, chat('auth-then-ok'));
        eq(r.status, 200, `status: ${r.text.slice(0, 200)}`);
        eq(r.headers.get('x-baton-deployment'), 'sim/ok', 'deployment');
    }
    const one = await post(CHAT, chat('auth-only'));
    eq(one.status, 502, 'alone: 502');
    eq(one.json.error.code, 'upstream_auth', 'code');
});

test('5: direct provider/model ids are labelled by their provider, never by the client\'s id', async () => {
    for (const id of ['sim/foo-label-1', 'sim/bar-label-2', 'sim/ünïcode']) eq((await post(CHAT, chat(id))).status, 200, id);
    const t = await metrics();
    assert(!/label-1|label-2|ünïcode/.test(t), 'a client-chosen id became a label value');
    assert(metricSum(t, 'baton_requests_total', { model: 'none', deployment: 'sim' }) >= 3, 'direct requests counted under deployment="sim"');
});

test('9: an upstream 4xx keeps its param', async () => {
    const r = await post(CHAT, chat('param-err'));
    eq(r.status, 400, 'status');
    checkError(r.json);
    eq(r.json.error.param, 'dimensions', 'param');
});

test('10: model ids with "/" can be retrieved (SDK %2F and a literal slash); bad ids are a 400', async () => {
    const m = await client(b.url).models.retrieve('meta/llama-3');
    eq(m.id, 'meta/llama-3', 'SDK retrieve');
    const d = await get(`${b.url}/models/sim/foo`);
    eq(d.status, 200, 'direct id');
    eq(d.json.id, 'sim/foo', 'id');
    eq(d.json.owned_by, 'sim', 'owned_by');
    eq((await get(`${b.url}/models/nosuch%2Fx`)).status, 404, 'unknown provider');
    const bad = await get(`${b.url}/models/a%0Ab`);
    eq(bad.status, 400, 'control character');
    checkError(bad.json);
    eq((await get(`${b.url}/models/a%2`)).status, 400, 'broken escape');
});

test('15: a stream the client cuts short is logged with the tokens sent, marked as an estimate', async () => {
    const ac = new AbortController();
    let events = 0;
    const r = await fetch(CHAT, {
        method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-request-id': 'cut-short-1' },
        body: JSON.stringify(chat('slowm', { stream: true })),
    });
    eq(r.status, 200, 'status');
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    while (events < 12) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value);
        events = (buf.match(/"content":"[^"]/g) || []).length;
    }
    ac.abort();
    const line = await waitFor(() => readText(ACCESS).split('\n').find((l) => l.includes('"cut-short-1"')), 5000, 'access line');
    const rec = JSON.parse(line);
    eq(rec.status, 499, 'status logged');
    // what was sent, not the reply's 400 tokens: at 40 a second, the events in
    // flight while the abort reaches baton (a loaded machine: up to a few seconds)
    assert(rec.completion_tokens >= events && rec.completion_tokens < 200,
        `completion_tokens ${rec.completion_tokens} for ${events} content events received (of 400)`);
    eq(rec.usage_estimated, true, 'usage_estimated');
});

await run();
