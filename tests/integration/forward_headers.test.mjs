// providers.NAME.forward_headers against the fake provider (tests/fake), which
// records the header lines baton sent: the openai type's default list reaches the
// provider, unlisted headers do not, an explicit list replaces the default, `[]`
// forwards nothing, the client's credentials never go upstream (the provider sees
// baton's own key), and a value that cannot be forwarded safely (a line break, a
// tab, too long, too many) is a 400 naming the header before anything is sent.
import {
    test, run, setup, assert, eq, deepEq, startBaton, client, post, streamRaw, freePort,
    rawConnect, parseResponses, runBaton, writeTemp,
} from './lib.mjs';
import { startFake, cannedCompletion, cannedChunks } from '../fake/fake_provider.mjs';

const PROVIDER_KEY = 'sk-fake-provider-KEY-fwd-0123456789';
const MASTER = 'sk-master-forward-headers-abcdef';
const fake = await setup(async () => startFake(await freePort()));
const b = await setup(() => startBaton(`
auth:
  master_key: "${MASTER}"
providers:
  dflt: {type: openai, base_url: "${fake.url}", api_key: "${PROVIDER_KEY}"}
  listed:
    type: openai
    base_url: "${fake.url}"
    api_key: "${PROVIDER_KEY}"
    forward_headers: [X-Trace-Tag, openai-beta]
  nothing: {type: openai, base_url: "${fake.url}", api_key: "${PROVIDER_KEY}", forward_headers: []}
  sim: {type: sim}
models:
  dflt: {provider: dflt, model: up-dflt}
  listed: {provider: listed, model: up-listed}
  nothing: {provider: nothing, model: up-nothing}
  simmed: {provider: sim}
  nothing-then-dflt:
    deployments:
      - {provider: nothing, model: up-nothing}
      - {provider: dflt, model: up-dflt}
`));
const CHAT = `${b.url}/chat/completions`;
const body = (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] });

// What the client sends besides its key: the default list, a custom header, the
// SDKs' telemetry and encoding headers.
const EXTRA = {
    'OpenAI-Organization': 'org-fwd-test',
    'OpenAI-Project': 'proj_fwd_test',
    'OpenAI-Beta': 'assistants=v2',
    'Idempotency-Key': 'idem-7f3a-0001',
    'X-Trace-Tag': 'trace 42',
    'x-stainless-lang': 'js',
    'x-stainless-retry-count': '0',
    'accept-encoding': 'gzip, deflate',
    cookie: 'session=client-cookie-secret',
};

// The fake's record of the one request a client request caused, as a list of
// [lower-case name, value] and a name -> [values] map.
function received(rec) {
    const list = [];
    for (let i = 0; i < rec.rawHeaders.length; i += 2) list.push([rec.rawHeaders[i].toLowerCase(), rec.rawHeaders[i + 1]]);
    const map = {};
    for (const [k, v] of list) (map[k] ||= []).push(v);
    return { list, map };
}

async function sendOne(model, headers) {
    fake.reset();
    const r = await post(CHAT, body(model), { headers });
    eq(r.status, 200, `status (${r.text.slice(0, 300)})`);
    eq(fake.requests.length, 1, 'upstream requests');
    return received(fake.requests[0]);
}

const baseline = new Set(['host', 'content-type', 'accept', 'user-agent', 'authorization', 'content-length', 'connection']);

test('default list (type openai): the four headers arrive with their values; nothing else of the client\'s does', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    const { list, map } = await sendOne('dflt', { authorization: `Bearer ${MASTER}`, ...EXTRA });
    deepEq(map['openai-organization'], ['org-fwd-test'], 'OpenAI-Organization');
    deepEq(map['openai-project'], ['proj_fwd_test'], 'OpenAI-Project');
    deepEq(map['openai-beta'], ['assistants=v2'], 'OpenAI-Beta');
    deepEq(map['idempotency-key'], ['idem-7f3a-0001'], 'Idempotency-Key');
    const fwd = new Set(['openai-organization', 'openai-project', 'openai-beta', 'idempotency-key']);
    const others = list.map(([k]) => k).filter((k) => !baseline.has(k) && !fwd.has(k));
    deepEq(others, [], 'unlisted client headers that reached the provider');
    deepEq(map.authorization, [`Bearer ${PROVIDER_KEY}`], 'the provider sees baton\'s key, once');
    // sent under the listed spelling
    assert(list.some(([k]) => k === 'openai-organization') &&
        fake.requests[0].rawHeaders.includes('OpenAI-Organization'), `names as listed: ${fake.requests[0].rawHeaders}`);
});

test('the OpenAI SDK\'s organization and project options (and per-request headers) reach the provider', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    fake.reset();
    const { default: OpenAI } = await import('openai');
    const c = new OpenAI({ baseURL: b.url, apiKey: MASTER, organization: 'org-sdk', project: 'proj-sdk', maxRetries: 0 });
    await c.chat.completions.create(body('dflt'), { headers: { 'Idempotency-Key': 'idem-sdk-1', 'OpenAI-Beta': 'sdk-beta' } });
    const { map } = received(fake.requests[0]);
    deepEq([map['openai-organization'], map['openai-project'], map['idempotency-key'], map['openai-beta']],
        [['org-sdk'], ['proj-sdk'], ['idem-sdk-1'], ['sdk-beta']], 'forwarded SDK headers');
    assert(!Object.keys(map).some((k) => k.startsWith('x-stainless')), `x-stainless-* forwarded: ${Object.keys(map)}`);
    deepEq(map.authorization, [`Bearer ${PROVIDER_KEY}`], 'authorization');
});

test('an explicit list replaces the default (names compared case-insensitively)', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-listed')));
    const { list, map } = await sendOne('listed', { authorization: `Bearer ${MASTER}`, ...EXTRA });
    deepEq(map['x-trace-tag'], ['trace 42'], 'X-Trace-Tag');
    deepEq(map['openai-beta'], ['assistants=v2'], 'OpenAI-Beta (listed as openai-beta)');
    const others = list.map(([k]) => k).filter((k) => !baseline.has(k) && k !== 'x-trace-tag' && k !== 'openai-beta');
    deepEq(others, [], 'headers outside the explicit list (the default\'s OpenAI-Organization included)');
    assert(fake.requests[0].rawHeaders.includes('X-Trace-Tag'), 'sent under the listed spelling');
});

test('forward_headers: [] forwards nothing', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-nothing')));
    const { list } = await sendOne('nothing', { authorization: `Bearer ${MASTER}`, ...EXTRA });
    deepEq(list.map(([k]) => k).filter((k) => !baseline.has(k)), [], 'client headers forwarded');
});

test('a header repeated by the client is forwarded as often as it came, in order', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    fake.reset();
    const conn = await rawConnect(b.port);
    const payload = JSON.stringify(body('dflt'));
    await conn.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MASTER}\r\n` +
        'OpenAI-Beta: one\r\nopenai-beta: two\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${payload.length}\r\nConnection: close\r\n\r\n${payload}`);
    const { responses } = parseResponses(await conn.waitFor((buf) => parseResponses(buf).responses.length && buf));
    conn.close();
    eq(responses[0].status, 200, 'status');
    deepEq(received(fake.requests[0]).map['openai-beta'], ['one', 'two'], 'OpenAI-Beta lines');
});

test('client credentials never reach the provider: authorization, x-api-key, api-key, cookie', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    // the master key as x-api-key (how curl and older Anthropic SDKs send it), then
    // as a Bearer beside someone else's x-api-key
    for (const auth of [{ 'x-api-key': MASTER, 'api-key': 'azure-style-key-XYZ' }, { authorization: `Bearer ${MASTER}`, 'x-api-key': 'sk-client-x-api-key-XYZ', 'api-key': 'azure-style-key-XYZ' }]) {
        fake.reset();
        const r = await post(CHAT, body('dflt'), { headers: { ...auth, ...EXTRA } });
        eq(r.status, 200, `status (${r.text.slice(0, 200)})`);
        eq(fake.requests.length, 1, 'upstream requests');
        for (const rec of fake.requests) {
            const { map } = received(rec);
            deepEq(map.authorization, [`Bearer ${PROVIDER_KEY}`], 'authorization upstream');
            eq(map['x-api-key'], undefined, 'x-api-key upstream');
            eq(map['api-key'], undefined, 'api-key upstream');
            eq(map.cookie, undefined, 'cookie upstream');
            const all = JSON.stringify(rec.rawHeaders);
            for (const secret of [MASTER, 'client-x-api-key', 'azure-style-key', 'client-cookie-secret'])
                assert(!all.includes(secret), `${secret} reached the provider: ${all}`);
        }
    }
});

test('a stream forwards the same headers', async () => {
    fake.handle((req, res, h) => h.sse(cannedChunks('up-dflt', { usage: true })));
    fake.reset();
    const raw = await streamRaw(CHAT, { ...body('dflt'), stream: true }, { headers: { authorization: `Bearer ${MASTER}`, ...EXTRA } });
    eq(raw.status, 200, 'status');
    const { map } = received(fake.requests[0]);
    deepEq(map['openai-beta'], ['assistants=v2'], 'OpenAI-Beta');
    eq(map['x-trace-tag'], undefined, 'X-Trace-Tag (not in the default list)');
});

// Sends a raw request whose head has `extraLines` (already CRLF-terminated) and
// returns the parsed response.
async function rawPost(model, extraLines) {
    const payload = JSON.stringify(body(model));
    const conn = await rawConnect(b.port);
    await conn.write(Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MASTER}\r\n${extraLines}` +
        `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n${payload}`, 'latin1'));
    const buf = await conn.waitFor((d) => parseResponses(d).responses.length && d);
    conn.close();
    const res = parseResponses(buf).responses[0];
    let json;
    try { json = JSON.parse(res.body.toString('utf8')); } catch { /* not JSON */ }
    return { ...res, json };
}

function isOpenAIError(json, status) {
    assert(json && json.error && typeof json.error.message === 'string' && 'type' in json.error &&
        'param' in json.error && 'code' in json.error, `error shape: ${JSON.stringify(json)}`);
    eq(json.error.type, 'invalid_request_error', `type for ${status}`);
}

test('a CR/LF in a forwarded value (an obs-folded line) is a 400 naming the header; nothing is sent', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    fake.reset();
    // obs-fold: the parser hands the value over with its CRLF inside
    const r = await rawPost('dflt', 'OpenAI-Beta: a\r\n x-injected: 1\r\n');
    eq(r.status, 400, `status (${r.body.toString().slice(0, 300)})`);
    isOpenAIError(r.json, 400);
    assert(r.json.error.message.includes('OpenAI-Beta'), `message names the header: ${r.json.error.message}`);
    eq(r.json.error.code, 'invalid_header_value', 'code');
    eq(r.headers['x-baton-attempts'], '0', 'x-baton-attempts');
    // a bare CR inside a value: the HTTP parser refuses it already
    const r2 = await rawPost('dflt', 'OpenAI-Beta: a\rb\r\n');
    eq(r2.status, 400, 'status for a bare CR');
    isOpenAIError(r2.json, 400);
    eq(fake.requests.length, 0, 'requests that reached the provider');
});

test('a tab or a value over 1024 bytes is a 400; 1024 bytes pass', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    fake.reset();
    const tab = await rawPost('dflt', 'Idempotency-Key: a\tb\r\n');
    eq(tab.status, 400, 'status for a tab');
    assert(tab.json.error.message.includes('Idempotency-Key'), `message: ${tab.json.error.message}`);
    const long = await post(CHAT, body('dflt'), { headers: { authorization: `Bearer ${MASTER}`, 'OpenAI-Project': 'p'.repeat(1025) } });
    eq(long.status, 400, 'status for 1025 bytes');
    isOpenAIError(long.json, 400);
    assert(/OpenAI-Project.*1024/.test(long.json.error.message), `message: ${long.json.error.message}`);
    eq(fake.requests.length, 0, 'requests that reached the provider');
    const ok = await sendOne('dflt', { authorization: `Bearer ${MASTER}`, 'OpenAI-Project': 'p'.repeat(1024) });
    eq(ok.map['openai-project'][0].length, 1024, 'forwarded length');
});

test('at most 16 forwarded lines: 16 pass, 17 are a 400', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-dflt')));
    fake.reset();
    const lines = (n) => Array.from({ length: n }, (_, i) => `OpenAI-Beta: f${i}\r\n`).join('');
    const r = await rawPost('dflt', lines(17));
    eq(r.status, 400, 'status for 17');
    isOpenAIError(r.json, 400);
    eq(r.json.error.code, 'too_many_forwarded_headers', 'code');
    eq(fake.requests.length, 0, 'requests that reached the provider');
    const r16 = await rawPost('dflt', lines(16));
    eq(r16.status, 200, 'status for 16');
    eq(received(fake.requests[0]).map['openai-beta'].length, 16, 'lines forwarded');
});

test('unsafe values in headers no candidate forwards are not looked at', async () => {
    fake.handle((req, res, h) => h.json(200, cannedCompletion('up-nothing')));
    fake.reset();
    const r = await rawPost('nothing', 'OpenAI-Beta: a\r\n folded\r\nX-Other: a\tb\r\n');
    eq(r.status, 200, `status (${r.body.toString().slice(0, 200)})`);
    eq(received(fake.requests[0]).map['openai-beta'], undefined, 'OpenAI-Beta upstream');
});

test('the check covers every candidate: a fallback that would forward refuses up front', async () => {
    fake.reset();
    const r = await rawPost('nothing-then-dflt', 'OpenAI-Beta: a\tb\r\n');
    eq(r.status, 400, 'status');
    eq(fake.requests.length, 0, 'requests that reached the provider');
});

test('the simulator ignores forwarded headers', async () => {
    const r = await post(CHAT, body('simmed'), { headers: { authorization: `Bearer ${MASTER}`, ...EXTRA } });
    eq(r.status, 200, `status (${r.text.slice(0, 200)})`);
    const d = await client(b.url, { apiKey: MASTER }).chat.completions.create(body('simmed'), { headers: { 'OpenAI-Beta': 'x' } });
    assert(d.choices[0].message.content.length > 0, 'sim reply');
});

test('baton check shows each list and refuses credentials with file:line:column', async () => {
    const ok = await runBaton(['check', '-c', b.cfg]);
    eq(ok.code, 0, `check exit code: ${ok.err}`);
    assert(ok.out.includes('dflt: forwards client headers OpenAI-Organization, OpenAI-Project, OpenAI-Beta, Idempotency-Key (the default for its type)'), `check output: ${ok.out}`);
    assert(ok.out.includes('listed: forwards client headers X-Trace-Tag, openai-beta (forward_headers)'), `check output: ${ok.out}`);
    assert(ok.out.includes('nothing: forwards no client headers (forward_headers)'), `check output: ${ok.out}`);
    const bad = writeTemp('fwd-bad.yaml', 'providers:\n  p:\n    type: openai\n    forward_headers: [OpenAI-Beta, Authorization, X-Api-Key, Host, "X-Stainless-*"]\nmodels:\n  m: {provider: p}\n');
    const r = await runBaton(['check', '-c', bad]);
    eq(r.code === 0, false, 'check refuses the file');
    for (const [col, name] of [[36, 'Authorization'], [51, 'X-Api-Key'], [62, 'Host']])
        assert(r.err.includes(`fwd-bad.yaml:4:${col}: error: provider "p": forward_headers: ${name} is never forwarded`), `error for ${name} at 4:${col}: ${r.err}`);
    assert(r.err.includes('fwd-bad.yaml:4:68: error:') && r.err.includes('not patterns'), `pattern refused: ${r.err}`);
});

await run();
