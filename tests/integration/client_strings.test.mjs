// Client-chosen strings that can reach a response header, a log line, a metric label
// or an upstream request: `model` (a public name or a direct `provider/model` id),
// `user` and the `x-request-id` header. baton checks them once, when it decodes the
// request: printable, no control characters (C0 including NUL, CR, LF and TAB; DEL),
// at most 256 bytes for model and user; otherwise a 400 in OpenAI's error shape
// ({"error":{"message","type":"invalid_request_error","param":"model"|"user",...}})
// whose message names the field. An x-request-id that is not 1-64 characters of
// [A-Za-z0-9._-] is replaced by a generated one. A top-level key baton reads (model,
// stream, stream_options, messages, user) given twice is a 400 with that key as param.
// Each bad request must be answered within 2 s (a hang is a failure, not a hung test),
// while normal requests keep being served; afterwards /metrics, the access log and
// stderr hold none of the bad strings, and no upstream request carried one.
// Run alone: node tests/integration/client_strings.test.mjs (TEST_ONLY=regex for some).
import {
    test, run, setup, assert, eq, startBaton, freePort, rawConnect, parseResponses, waitFor, writeTemp,
    readText, post, get, streamRaw, sanitizerReport, SLOW,
} from './lib.mjs';
import { spawnSync } from 'node:child_process';
import { checkError, validate } from './schema.mjs';
import { startFake, cannedCompletion, cannedChunks } from '../fake/fake_provider.mjs';

// A bad request must be answered within this; longer is a failure ("hang").
const PROMPT_MS = 2000;
const CAP = 256; // bytes, for model and user

// ---------------------------------------------------------------- servers

const EMB_REPLY = '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25,0.125]}],"model":"m1-emb","usage":{"prompt_tokens":1,"total_tokens":1}}';
// An OpenAI-compatible upstream that records what baton sends it: no bad string may
// ever reach it (in the body or the headers).
const fake = await setup(async () => startFake(await freePort()));
fake.handle((req, res, h) => {
    if (req.url.endsWith('/embeddings')) return h.json(200, EMB_REPLY);
    if (req.json && req.json.stream) return h.sse(cannedChunks('m1'), { gapMs: 0 });
    return h.json(200, cannedCompletion('m1'));
});

const ACCESS = writeTemp('access.log', '');
const CONFIG = `
server:
  workers: 2
log:
  access: ${ACCESS}
providers:
  sim: {type: sim, seed: 5}
  fake: {type: openai, base_url: "${fake.url}", api_key: "sk-fake-client-strings", timeouts: {first_byte: 2s, idle: 1s}}
models:
  demo: {provider: sim}
  emb: {provider: sim, model: text-embedding-3-small}
  up: {provider: fake, model: m1}
  up-emb: {provider: fake, model: m1-emb}
`;
const MODELS = ['demo', 'emb', 'up', 'up-emb'];
const PROVIDERS = ['sim', 'fake'];

// Every baton started (a crash restarts it, so that later cases still test something;
// the case that killed it fails, and run() names the signal at the end).
const servers = [];
let b = await setup(async () => { const s = await startBaton(CONFIG); servers.push(s); return s; });
const alive = (s = b) => s.proc.child.exitCode === null && s.proc.child.signalCode === null;
async function srv() {
    if (!alive()) { b = await startBaton(CONFIG); servers.push(b); }
    return b;
}
// Throws when baton died during a case (with its exit and stderr tail).
function assertAlive(s = b) {
    const c = s.proc.child;
    assert(alive(s), `baton died (exit code ${c.exitCode}, signal ${c.signalCode}); stderr tail: ${s.proc.err().slice(-400)}`);
    const rep = sanitizerReport(s.proc.err());
    assert(!rep, `baton's stderr: ${rep}`);
}

// ---------------------------------------------------------------- helpers

const MSGS = [{ role: 'user', content: 'hi' }];
const CHAT = '/v1/chat/completions';
const EMB = '/v1/embeddings';
const ID_OK = /^[A-Za-z0-9._-]{1,64}$/;
const show = (s) => { const j = JSON.stringify(s); return j.length > 60 ? `${j.slice(0, 40)}..." (${s.length} chars)` : j; };

// POSTs `body` (object or string) and reads the whole answer within `ms` (times SLOW).
// Never throws: {status, headers, text, json, ms} or {status: 0, failure}.
async function send(path, body, { headers = {}, ms = PROMPT_MS, s = b } = {}) {
    const t0 = Date.now();
    const lim = ms * SLOW;
    try {
        const r = await fetch(s.base + path, {
            method: 'POST', signal: AbortSignal.timeout(lim),
            headers: { 'content-type': 'application/json', ...headers },
            body: typeof body === 'string' ? body : JSON.stringify(body),
        });
        const text = await r.text();
        let json;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        return { status: r.status, headers: r.headers, text, json, ms: Date.now() - t0 };
    } catch (e) {
        const hang = e.name === 'TimeoutError' || e.name === 'AbortError';
        const failure = hang ? `no complete answer within ${lim} ms (hang)`
            : `request failed after ${Date.now() - t0} ms: ${e.message}${e.cause ? ` (${e.cause.code || e.cause.message})` : ''}`;
        return { status: 0, failure, ms: Date.now() - t0 };
    }
}

// What is wrong with `r` as the 400 for a bad `param`, or null when nothing is.
function rejectionProblem(r, param) {
    if (r.failure) return r.failure;
    const out = [];
    if (r.status !== 400) return `status ${r.status}, want 400 (${r.text.slice(0, 140).replace(/\s+/g, ' ')})`;
    if (!(r.headers.get('content-type') || '').startsWith('application/json')) out.push(`content-type ${r.headers.get('content-type')}`);
    let e;
    try { e = checkError(r.json); } catch (x) { return x.message; }
    if (e.type !== 'invalid_request_error') out.push(`type ${JSON.stringify(e.type)}, want "invalid_request_error"`);
    if (e.param !== param) out.push(`param ${JSON.stringify(e.param)}, want "${param}"`);
    if (!new RegExp(`\\b${param}\\b`, 'i').test(e.message)) out.push(`message does not name '${param}': ${JSON.stringify(e.message.slice(0, 120))}`);
    for (const [k, v] of r.headers) if (/evil/i.test(v)) out.push(`response header ${k} carries the client's string: ${show(v)}`);
    const id = r.headers.get('x-request-id');
    if (!ID_OK.test(id || '')) out.push(`x-request-id ${show(id)}`);
    return out.length ? out.join('; ') : null;
}

// Requests the fake provider received since index `from` that carry a bad string.
function upstreamLeaks(from = 0) {
    return fake.requests.slice(from).filter((rq) => /evil/i.test(rq.body.toString('latin1')) || rq.rawHeaders.some((h) => /evil/i.test(h)))
        .map((rq) => `${rq.method} ${rq.url} ${show(rq.body.toString('latin1').slice(0, 120))}`);
}

// The bad strings. Each carries the marker "evil" right after its control character,
// so that a forged log line or header would start with it and a leak is easy to find.
const BAD = {
    'CR LF': '\r\nx-evil: 1',
    LF: '\nx-evil: 2',
    NUL: '\u0000evil-nul',
    '\\u0001': '\u0001evil-soh',
    'DEL \\u007f': '\u007fevil-del',
    TAB: '\tevil-tab',
    '8 KB': '-evil-' + 'e'.repeat(8192),
};
const BAD_NAMES = Object.keys(BAD).join(', ');

// Sends every bad string through `make` at once; fails listing each one that was not
// a prompt 400 with `param`, when baton died, or when one reached the upstream.
async function expectAllRejected(path, param, make) {
    const s = await srv();
    const from = fake.requests.length;
    const res = await Promise.all(Object.entries(BAD).map(async ([name, bad]) => [name, await send(path, make(bad), { s })]));
    const problems = res.map(([name, r]) => [name, rejectionProblem(r, param)]).filter(([, p]) => p)
        .map(([name, p]) => `${name}: ${p}`);
    const leaks = upstreamLeaks(from);
    if (leaks.length) problems.push(`${leaks.length} upstream request(s) carried a bad string, e.g. ${leaks[0]}`);
    if (!alive(s)) problems.push(`baton died (signal ${s.proc.child.signalCode}, exit ${s.proc.child.exitCode})`);
    assert(problems.length === 0, `${problems.length} problem(s): ${problems.join(' || ')}`);
    assertAlive(s);
}

// ---------------------------------------------------------------- bad strings in each field

const CHAT_TARGETS = [
    ['model = a configured name + the bad string', 'model', (x) => ({ model: `demo${x}` })],
    ['model = a direct sim/ id + the bad string', 'model', (x) => ({ model: `sim/demo${x}` })],
    ['model = a direct id of an HTTP provider (fake/) + the bad string', 'model', (x) => ({ model: `fake/m1${x}` })],
    ['user (model demo, sim provider)', 'user', (x) => ({ model: 'demo', user: `user-42${x}` })],
    ['user (model up, HTTP provider)', 'user', (x) => ({ model: 'up', user: `user-42${x}` })],
];
for (const stream of [false, true]) {
    for (const [what, param, make] of CHAT_TARGETS) {
        test(`chat stream:${stream}: ${what} {${BAD_NAMES}} -> prompt 400 param "${param}", nothing upstream`, () =>
            expectAllRejected(CHAT, param, (x) => ({ ...make(x), stream, messages: MSGS })));
    }
}
const EMB_TARGETS = [
    ['model = a configured name + the bad string', (x) => `emb${x}`],
    ['model = a direct sim/ id + the bad string', (x) => `sim/text-embedding-3-small${x}`],
    ['model = a direct id of an HTTP provider (fake/) + the bad string', (x) => `fake/m1-emb${x}`],
];
for (const [what, make] of EMB_TARGETS) {
    test(`embeddings: ${what} {${BAD_NAMES}} -> prompt 400 param "model", nothing upstream`, () =>
        expectAllRejected(EMB, 'model', (x) => ({ model: make(x), input: 'hi' })));
}

test(`length cap: model and user of ${CAP} bytes are served, ${CAP + 1} bytes are a 400 naming the field`, async () => {
    const s = await srv();
    const ok = {
        [`user of ${CAP} bytes`]: { model: 'demo', user: 'u'.repeat(CAP) },
        [`user of ${CAP} bytes (HTTP provider)`]: { model: 'up', user: 'u'.repeat(CAP) },
        'an ordinary user': { model: 'up', user: 'user-1234@example.com' },
        [`a direct sim/ id of ${CAP} bytes`]: { model: 'sim/' + 'm'.repeat(CAP - 4) },
        'a direct id with . _ - : in it': { model: 'sim/my-model_v1.2:latest' },
    };
    const bad = {
        [`user of ${CAP + 1} bytes`]: ['user', { model: 'demo', user: 'u'.repeat(CAP + 1) }],
        [`a direct sim/ id of ${CAP + 1} bytes`]: ['model', { model: 'sim/' + 'm'.repeat(CAP - 3) }],
        [`a configured name + padding, ${CAP + 1} bytes`]: ['model', { model: 'demo' + 'x'.repeat(CAP - 3) }],
    };
    const problems = [];
    for (const [what, body] of Object.entries(ok)) {
        const r = await send(CHAT, { ...body, messages: MSGS }, { ms: 5000, s });
        if (r.status !== 200) problems.push(`${what}: ${r.failure || `status ${r.status}, want 200 (${r.text.slice(0, 160)})`}`);
        else validate('CreateChatCompletionResponse', r.json);
    }
    // The upstream got the accepted user unchanged.
    const seen = fake.requests.filter((rq) => rq.json && rq.json.user === 'user-1234@example.com');
    if (!seen.length) problems.push('the ordinary user never reached the upstream unchanged');
    for (const [what, [param, body]] of Object.entries(bad)) {
        const p = rejectionProblem(await send(CHAT, { ...body, messages: MSGS }, { s }), param);
        if (p) problems.push(`${what}: ${p}`);
    }
    assert(problems.length === 0, problems.join(' || '));
    assertAlive(s);
});

// ---------------------------------------------------------------- duplicate keys

const M = JSON.stringify(MSGS);
// Both values are valid each time: only the duplicate itself can make it a 400.
const DUPS = [
    ['model', CHAT, `{"model":"demo","model":"up","messages":${M}}`],
    ['stream', CHAT, `{"model":"demo","stream":false,"stream":true,"messages":${M}}`],
    ['stream_options', CHAT, `{"model":"demo","stream":true,"stream_options":{"include_usage":false},"stream_options":{"include_usage":true},"messages":${M}}`],
    ['messages', CHAT, `{"model":"demo","messages":${M},"messages":${M}}`],
    ['user', CHAT, `{"model":"demo","user":"alice","user":"bob","messages":${M}}`],
    ['model', EMB, '{"model":"emb","input":"hi","model":"up-emb"}'],
];
for (const [key, path, body] of DUPS) {
    test(`duplicate top-level "${key}" in ${path} -> 400 param "${key}"`, async () => {
        const s = await srv();
        const from = fake.requests.length;
        const p = rejectionProblem(await send(path, body, { s }), key);
        assert(!p, p);
        eq(fake.requests.length - from, 0, 'requests sent upstream');
        assertAlive(s);
    });
}

// ---------------------------------------------------------------- x-request-id

test('x-request-id: a value that is not 1-64 of [A-Za-z0-9._-] is replaced by a generated id (also in the access log); valid ones are echoed', async () => {
    const s = await srv();
    const base = await send(CHAT, { model: 'demo', messages: MSGS }, { ms: 5000, s });
    eq(base.status, 200, `status without an id (${base.failure || ''})`);
    const gen = base.headers.get('x-request-id');
    assert(ID_OK.test(gen || ''), `generated id ${show(gen)}`);
    // Echoed as sent.
    for (const id of ['id-' + 'A'.repeat(61), 'a.b_c-D9', '7']) {
        const r = await send(CHAT, { model: 'demo', messages: MSGS }, { headers: { 'x-request-id': id }, ms: 5000, s });
        eq(r.status, 200, `status with id ${show(id)} (${r.failure || ''})`);
        eq(r.headers.get('x-request-id'), id, 'a valid id is echoed');
    }
    const odd = ['r'.repeat(200), 'has space', 'x'.repeat(65), 'a/b', 'a"b', 'a:b', 'a,b', '<script>'];
    const got = new Map(); // sent value -> id baton answered with
    const problems = [];
    const check = (sent, id, what) => {
        if (!ID_OK.test(id || '')) problems.push(`${what} ${show(sent)}: answered with ${show(id)}`);
        else if (id === sent || id.includes(sent) || sent.includes(id)) problems.push(`${what} ${show(sent)}: echoed (${show(id)})`);
        else if (id.length !== gen.length) problems.push(`${what} ${show(sent)}: ${show(id)} does not look generated (like ${gen})`);
        else if (id === gen || [...got.values()].includes(id)) problems.push(`${what} ${show(sent)}: id ${id} given twice`);
        got.set(sent, id);
    };
    for (const id of odd) {
        const r = await send(CHAT, { model: 'demo', messages: MSGS }, { headers: { 'x-request-id': id }, ms: 5000, s });
        if (r.status !== 200) { problems.push(`${show(id)}: status ${r.status} ${r.failure || ''}`); continue; }
        check(id, r.headers.get('x-request-id'), 'x-request-id');
    }
    // On a rejected request too.
    const rb = await send(CHAT, { model: 'demo\r\nx-evil: 1', messages: MSGS }, { headers: { 'x-request-id': 'bad id on a 400' }, s });
    if (rb.failure) problems.push(`with a bad model: ${rb.failure}`);
    else check('bad id on a 400', rb.headers.get('x-request-id'), 'x-request-id on a bad request');
    // Bytes fetch will not send: UTF-8 and a tab inside the value.
    for (const raw of ['caf\u00e9-id', 'a\tb']) {
        const c = await rawConnect(s.port);
        try {
            const body = JSON.stringify({ model: 'demo', messages: MSGS });
            await c.write(Buffer.from(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nx-request-id: ${raw}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'utf8'));
            const [r] = await c.waitFor((buf) => { const p = parseResponses(buf).responses; return p.length ? p : null; }, PROMPT_MS);
            if (r.status !== 200 && r.status !== 400) problems.push(`raw ${show(raw)}: status ${r.status}`);
            check(Buffer.from(raw, 'utf8').toString('latin1'), r.headers['x-request-id'], 'raw x-request-id');
        } catch (e) { problems.push(`raw ${show(raw)}: ${e.message}`); } finally { c.close(); }
    }
    // The access log names each request by the id its client saw.
    const ids = [...got.values()].filter((id) => ID_OK.test(id || ''));
    try {
        await waitFor(() => { const t = readText(ACCESS); return ids.every((id) => t.includes(`"id":"${id}"`)); }, 3000, 'access records with the generated ids');
    } catch (e) { problems.push(e.message); }
    const recs = readText(ACCESS).split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return {}; } });
    for (const sent of got.keys()) if (recs.some((r) => r.id === sent)) problems.push(`access log id ${show(sent)}: logged as sent`);
    assert(problems.length === 0, problems.join(' || '));
    assertAlive(s);
});

// ---------------------------------------------------------------- under load

const reqText = (path, body) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
};
const nResponses = (n) => (buf) => { const p = parseResponses(buf); return p.responses.length >= n ? p.responses : null; };

test('12 bad requests held open on keep-alive sockets (4 never read) while 60 normal requests run: each bad one a 400 within 2 s, every normal one served, baton up', async () => {
    const s = await srv();
    const from = fake.requests.length;
    const bads = [
        ['model name+CR LF', 'model', CHAT, { model: `demo${BAD['CR LF']}`, messages: MSGS }],
        ['model sim/+CR LF', 'model', CHAT, { model: `sim/demo${BAD['CR LF']}`, messages: MSGS }],
        ['model sim/+CR LF, stream', 'model', CHAT, { model: `sim/demo${BAD['CR LF']}`, stream: true, messages: MSGS }],
        ['model fake/+LF', 'model', CHAT, { model: `fake/m1${BAD.LF}`, messages: MSGS }],
        ['model sim/+NUL, stream', 'model', CHAT, { model: `sim/demo${BAD.NUL}`, stream: true, messages: MSGS }],
        ['model sim/+DEL', 'model', CHAT, { model: `sim/demo${BAD['DEL \\u007f']}`, messages: MSGS }],
        ['model name+8 KB, stream', 'model', CHAT, { model: `demo${BAD['8 KB']}`, stream: true, messages: MSGS }],
        ['user+CR LF (up)', 'user', CHAT, { model: 'up', user: `u${BAD['CR LF']}`, messages: MSGS }],
        ['user+8 KB, stream', 'user', CHAT, { model: 'demo', user: `u${BAD['8 KB']}`, stream: true, messages: MSGS }],
        ['user+TAB', 'user', CHAT, { model: 'demo', user: `u${BAD.TAB}`, messages: MSGS }],
        ['duplicate model', 'model', CHAT, `{"model":"demo","model":"up","messages":${M}}`],
        ['embeddings model sim/+CR LF', 'model', EMB, { model: `sim/text-embedding-3-small${BAD['CR LF']}`, input: 'hi' }],
    ].map(([name, param, path, body], i) => ({ i, name, param, path, body, paused: i % 3 === 2 }));
    const conns = await Promise.all(bads.map(() => rawConnect(s.port)));
    const problems = [];
    try {
        // Send every bad request; the paused sockets are never read until the end.
        const watch = bads.map(async (bd, k) => {
            const c = conns[k];
            if (bd.paused) c.sock.pause();
            const t0 = Date.now();
            await c.write(reqText(bd.path, bd.body));
            if (bd.paused) return null;
            try { await c.waitFor(nResponses(1), PROMPT_MS); bd.ms = Date.now() - t0; } catch (e) { bd.late = e.message; }
            return null;
        });
        // Meanwhile 60 normal requests: plain to the sim and to the HTTP provider, streams.
        const normal = [];
        for (let i = 0; i < 60; i++) {
            if (i % 4 === 3) {
                normal.push(streamRaw(`${s.url}/chat/completions`, { model: 'demo', stream: true, messages: MSGS }, { timeout: 10000 })
                    .then((r) => (r.status === 200 && r.done && !r.error ? null : `stream ${i}: status ${r.status} done ${r.done} ${r.text || ''}`),
                        (e) => `stream ${i}: ${e.message}`));
            } else {
                const model = i % 4 === 1 ? 'up' : 'demo';
                normal.push(post(`${s.url}/chat/completions`, { model, messages: [{ role: 'user', content: `normal ${i}` }] }, { timeout: 10000 })
                    .then((r) => {
                        if (r.status !== 200) return `plain ${i} (${model}): status ${r.status} ${r.text.slice(0, 120)}`;
                        validate('CreateChatCompletionResponse', r.json);
                        return null;
                    }, (e) => `plain ${i} (${model}): ${e.message}${e.cause ? ` (${e.cause.code})` : ''}`));
            }
        }
        const failedNormal = (await Promise.all(normal)).filter(Boolean);
        if (failedNormal.length) problems.push(`${failedNormal.length} of 60 normal requests failed: ${failedNormal.slice(0, 3).join('; ')}`);
        await Promise.all(watch);
        // Now read the paused ones (their answers were due long ago).
        for (const [k, bd] of bads.entries()) {
            if (!bd.paused) continue;
            conns[k].sock.resume();
            try { await conns[k].waitFor(nResponses(1), 500); } catch (e) { bd.late = e.message; }
        }
        for (const [k, bd] of bads.entries()) {
            const what = `bad #${bd.i} (${bd.name}${bd.paused ? ', never read' : ''})`;
            if (bd.late) { problems.push(`${what}: no answer: ${bd.late}`); continue; }
            const [r] = parseResponses(conns[k].data()).responses;
            if (r.status !== 400) { problems.push(`${what}: status ${r.status}, want 400`); continue; }
            let e;
            try { e = checkError(JSON.parse(r.body)); } catch (x) { problems.push(`${what}: ${x.message}`); continue; }
            if (e.param !== bd.param) problems.push(`${what}: param ${JSON.stringify(e.param)}, want "${bd.param}"`);
            for (const [h, v] of Object.entries(r.headers)) if (/evil/i.test(v)) problems.push(`${what}: header ${h} carries the client's string`);
            if (bd.ms !== undefined && bd.ms > PROMPT_MS) problems.push(`${what}: answered after ${bd.ms} ms`);
        }
        // A keep-alive connection that got its 400 still serves a good request.
        for (const [k, bd] of bads.entries()) {
            const c = conns[k];
            if (c.isClosed() || bd.late) continue;
            await c.write(reqText(CHAT, { model: 'demo', messages: MSGS }));
            try {
                const rs = await c.waitFor((buf, closed) => nResponses(2)(buf) || (closed && []), 5000);
                if (rs.length >= 2 && rs[1].status !== 200) problems.push(`bad #${bd.i} (${bd.name}): the next request on its connection got ${rs[1].status}`);
            } catch (e) { problems.push(`bad #${bd.i} (${bd.name}): the next request on its connection: ${e.message}`); }
        }
    } finally { for (const c of conns) c.close(); }
    const leaks = upstreamLeaks(from);
    if (leaks.length) problems.push(`${leaks.length} upstream request(s) carried a bad string, e.g. ${leaks[0]}`);
    if (!alive(s)) problems.push(`baton died (signal ${s.proc.child.signalCode}, exit ${s.proc.child.exitCode})`);
    else {
        const live = await get(`${s.base}/health/live`, { timeout: 5000 }).catch((e) => ({ status: e.message }));
        if (live.status !== 200) problems.push(`/health/live: ${live.status}`);
    }
    assert(problems.length === 0, `${problems.length} problem(s): ${problems.join(' || ')}`);
    assertAlive(s);
}, { timeout: 30000 });

// ---------------------------------------------------------------- afterwards: metrics, logs

const CTRL = /[\u0000-\u0008\u000b-\u001f\u007f]/; // C0 except LF, and DEL
const CTRL_ANY = /[\u0000-\u001f\u007f]/;
const unescapeLabel = (v) => v.replace(/\\(.)/g, (_, ch) => (ch === 'n' ? '\n' : ch));

// Every bad string in every field once more, all at once, without judging the answers:
// so that the server scraped below has seen them even if an earlier case killed one.
async function badRound(s, names) {
    const targets = [
        ...CHAT_TARGETS.map(([, , make]) => [CHAT, (x) => ({ ...make(x), messages: MSGS })]),
        ...CHAT_TARGETS.map(([, , make]) => [CHAT, (x) => ({ ...make(x), stream: true, messages: MSGS })]),
        ...EMB_TARGETS.map(([, make]) => [EMB, (x) => ({ model: make(x), input: 'hi' })]),
    ];
    const all = [];
    for (const n of names) for (const [path, make] of targets) all.push(send(path, make(BAD[n]), { s }));
    return (await Promise.all(all)).length;
}

// The problems of one scrape: raw control characters, label values holding a bad
// string, a control character, more than CAP bytes, or (model, provider) not a config name.
function metricsProblems(text) {
    const problems = [];
    for (const [i, line] of text.split('\n').entries()) {
        if (CTRL.test(line)) problems.push(`line ${i + 1} holds a raw control character: ${show(line.slice(0, 160))}`);
        if (line.startsWith('#') || !line) continue;
        if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/.test(line)) { problems.push(`line ${i + 1} is not a sample: ${show(line.slice(0, 160))}`); continue; }
        for (const m of line.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
            const [k, v] = [m[1], unescapeLabel(m[2])];
            if (CTRL_ANY.test(v)) problems.push(`label ${k}=${show(v)} holds a control character`);
            if (/evil/i.test(v)) problems.push(`label ${k}=${show(v)} holds a client's bad string`);
            if (Buffer.byteLength(v) > CAP) problems.push(`label ${k} is ${Buffer.byteLength(v)} bytes: ${show(v)}`);
            if (k === 'model' && ![...MODELS, 'none', 'other'].includes(v)) problems.push(`label model=${show(v)} is not a configured model name`);
            if (k === 'provider' && ![...PROVIDERS, 'none', 'other'].includes(v)) problems.push(`label provider=${show(v)} is not a configured provider`);
            if (k === 'deployment' && !['none', 'other'].includes(v) && !PROVIDERS.includes(v.split('/')[0])) problems.push(`label deployment=${show(v)} names no configured provider`);
        }
    }
    const pt = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (!pt.error && pt.status !== 0) problems.push(`promtool: ${(pt.stdout + pt.stderr).slice(0, 300)}`);
    return problems;
}
const requestsTotal = (text) => text.split('\n').filter((l) => l.startsWith('baton_requests_total{'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);

test('GET /metrics afterwards: no control character and none of the bad strings in any label; model and provider labels are config names', async () => {
    const s = await srv();
    const problems = [];
    const scrape = async (when) => {
        const r = await get(`${s.base}/metrics`, { timeout: 5000 });
        eq(r.status, 200, `scrape ${when}`);
        problems.push(...metricsProblems(r.text).map((p) => `${when}: ${p}`));
        return r.text;
    };
    const before = requestsTotal(await scrape('before this round'));
    // First the strings without CR/LF, then those (on the unfixed code they hang or kill baton).
    const crlf = ['CR LF', 'LF'];
    const n1 = await badRound(s, Object.keys(BAD).filter((n) => !crlf.includes(n)));
    const mid = requestsTotal(await scrape('after NUL/SOH/DEL/TAB/8 KB'));
    if (mid - before < n1) problems.push(`only ${mid - before} of ${n1} bad requests counted in baton_requests_total`);
    await badRound(s, crlf);
    if (!alive(s)) problems.unshift(`baton died during the CR/LF round (signal ${s.proc.child.signalCode}): not scraped after it`);
    else await scrape('after CR/LF');
    const uniq = [...new Set(problems)];
    assert(uniq.length === 0, `${uniq.length} problem(s): ${uniq.slice(0, 12).join(' || ')}`);
});

test('the access log afterwards: every line is one JSON object (no raw CR, LF or other C0 character inside); stderr has no forged line and no CR', async () => {
    // Every request above was answered; give the last records a moment to land.
    await waitFor(() => readText(ACCESS).split('\n').filter(Boolean).length >= 50, 3000, 'access records');
    const text = readText(ACCESS);
    const problems = [];
    assert(text.endsWith('\n'), 'the access log ends mid-line');
    for (const [i, line] of text.split('\n').slice(0, -1).entries()) {
        // (A raw DEL is valid JSON and harmless in a line; C0 characters are neither.)
        if (/[\u0000-\u001f]/.test(line)) problems.push(`line ${i + 1} holds a raw control character: ${show(line.slice(0, 160))}`);
        let rec;
        try { rec = JSON.parse(line); } catch { problems.push(`line ${i + 1} is not JSON: ${show(line.slice(0, 160))}`); continue; }
        if (!rec || typeof rec !== 'object' || Array.isArray(rec)) { problems.push(`line ${i + 1} is not an object`); continue; }
        if (!ID_OK.test(String(rec.id))) problems.push(`line ${i + 1}: id ${show(rec.id)}`);
    }
    // The operational log (stderr, text lines): a bad string must not start a line of
    // its own (a forged entry) nor put a CR in it.
    for (const s of servers) {
        const err = s.proc.err();
        if (err.includes('\r')) problems.push(`stderr holds a CR: ${show(err.slice(Math.max(0, err.indexOf('\r') - 80), err.indexOf('\r') + 40))}`);
        for (const l of err.split('\n')) if (/^\s*(x-)?evil/i.test(l)) problems.push(`stderr has a forged line: ${show(l.slice(0, 120))}`);
    }
    assert(problems.length === 0, `${problems.length} problem(s): ${problems.slice(0, 10).join(' || ')}`);
});

test('baton stayed up all along (never restarted), alive, /health/live 200, no sanitizer report; no upstream request ever carried a bad string', async () => {
    const problems = [];
    for (const [i, s] of servers.entries()) {
        if (!alive(s)) problems.push(`baton #${i + 1} died (signal ${s.proc.child.signalCode}, exit ${s.proc.child.exitCode})`);
        const rep = sanitizerReport(s.proc.err());
        if (rep) problems.push(`baton #${i + 1}: ${rep}`);
    }
    if (servers.length > 1) problems.push(`baton was restarted ${servers.length - 1} time(s) after dying`);
    const s = await srv();
    const live = await get(`${s.base}/health/live`, { timeout: 5000 }).catch((e) => ({ status: e.message }));
    if (live.status !== 200) problems.push(`/health/live: ${live.status}`);
    const leaks = upstreamLeaks(0);
    if (leaks.length) problems.push(`${leaks.length} upstream request(s) carried a bad string, e.g. ${leaks[0]}`);
    assert(problems.length === 0, problems.join(' || '));
});

await run();
