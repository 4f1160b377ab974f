// baton serve in front of its built-in sim provider, driven with the official
// OpenAI SDK and fetch: endpoints, auth, headers, request errors, the request
// kinds of issue 9 (200 KB prompt, Korean, image parts, JSON schema, tools,
// embeddings), and the access log.
import Ajv2020 from 'ajv/dist/2020.js';
import {
    test, run, setup, assert, eq, deepEq, startBaton, client, post, get, http, rejects, waitFor,
    writeTemp, readText, PNG_1X1, streamRaw,
} from './lib.mjs';
import { validate, checkError } from './schema.mjs';

const KEY = 'sk-master-IT-0123456789abcdefSECRET';
const ACCESS = writeTemp('access.log', '');
const b = await setup(() => startBaton(`
server:
  listen: 127.0.0.1:$PORT
  max_body_bytes: 1048576
auth:
  master_key: \${BATON_IT_MASTER}
log:
  access: ${ACCESS}
providers:
  sim: {type: sim, seed: 42, embedding_dims: 24}
  nokey: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "\${BATON_IT_UNSET_KEY}"}
models:
  demo: {provider: sim}
  gpt-4o-mini: {provider: sim, model: gpt-4o-mini}
  emb: {provider: sim, model: text-embedding-3-small}
  needs-key: {provider: nokey, model: m1}
`, { env: { BATON_IT_MASTER: KEY, BATON_IT_UNSET_KEY: undefined } }));

const AUTH = { authorization: `Bearer ${KEY}` };
const CHAT = `${b.url}/chat/completions`;
const sdk = client(b.url, { apiKey: KEY });
const user = (content, model = 'demo') => ({ model, messages: [{ role: 'user', content }] });

// Common header checks for a response a deployment served.
function served(headers, deployment, attempts = '1') {
    assert(headers.get('x-request-id'), 'x-request-id missing');
    eq(headers.get('x-baton-deployment'), deployment, 'x-baton-deployment');
    eq(headers.get('x-baton-attempts'), attempts, 'x-baton-attempts');
}

test('health endpoints answer 200 without a key', async () => {
    for (const p of ['/health/live', '/health/ready']) {
        const r = await get(`${b.base}${p}`);
        eq(r.status, 200, `${p} status`);
        assert(r.headers.get('x-request-id'), `${p}: x-request-id missing`);
    }
});

test('/v1 without a key, or with a wrong one, is 401 in OpenAI error shape', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-key' }, { authorization: KEY }]) {
        for (const [m, url, body] of [['GET', `${b.url}/models`], ['POST', CHAT, user('hi')], ['POST', `${b.url}/embeddings`, { model: 'emb', input: 'x' }]]) {
            const r = await http(m, url, { headers, body });
            eq(r.status, 401, `${m} ${url} with ${JSON.stringify(headers)}`);
            checkError(r.json);
            assert(r.headers.get('x-request-id'), 'x-request-id missing on 401');
        }
    }
    const ok = await get(`${b.url}/models`, { headers: { 'x-api-key': KEY } });
    eq(ok.status, 200, 'x-api-key: KEY (documented alternative)');
    const e = await rejects(client(b.url, { apiKey: 'nope' }).models.list(), 'SDK with a wrong key');
    eq(e.status, 401, 'SDK error status');
});

test('GET /v1/models lists exactly the configured models', async () => {
    const r = await get(`${b.url}/models`, { headers: AUTH });
    eq(r.status, 200, 'status');
    validate('ListModelsResponse', r.json);
    eq(r.json.object, 'list', 'object');
    deepEq(r.json.data.map((m) => m.id).sort(), ['demo', 'emb', 'gpt-4o-mini', 'needs-key'], 'model ids');
    const page = await sdk.models.list();
    eq(page.data.length, 4, 'SDK models.list length');
});

test('unknown paths are 404 JSON in OpenAI error shape', async () => {
    for (const [m, p, h] of [['GET', '/nope', {}], ['GET', '/v1/nope', AUTH], ['POST', '/v1/completions-x', AUTH], ['GET', '/', {}]]) {
        const r = await http(m, `${b.base}${p}`, { headers: h, body: m === 'POST' ? {} : undefined });
        eq(r.status, 404, `${m} ${p}`);
        assert((r.headers.get('content-type') || '').includes('application/json'), `${p}: content-type ${r.headers.get('content-type')}`);
        checkError(r.json);
    }
});

test('plain chat via the SDK validates; headers name the deployment', async () => {
    const { data, response } = await sdk.chat.completions.create(user('Say something')).withResponse();
    validate('CreateChatCompletionResponse', data);
    assert(data.choices[0].message.content.length > 0, 'empty content');
    eq(data.choices[0].finish_reason, 'stop', 'finish_reason');
    served(response.headers, 'sim/demo');
});

// What every kind of response must carry, served or not.
const EVERY = [
    ['GET', '/health/live', {}], ['GET', '/health/ready', {}], ['GET', '/v1/models', AUTH],
    ['GET', '/v1/models', {}], ['GET', '/nope', {}], ['POST', '/v1/chat/completions', AUTH, user('x', 'no-such-model')],
    ['POST', '/v1/chat/completions', AUTH, '{bad json'], ['POST', '/v1/chat/completions', AUTH, user('x')],
    ['POST', '/v1/embeddings', AUTH, { model: 'emb', input: 'x' }], ['POST', '/v1/chat/completions', AUTH, user('x', 'needs-key')],
];

test('every response carries x-request-id and x-baton-deployment', async () => {
    for (const [m, p, h, body] of EVERY) {
        const r = await http(m, `${b.base}${p}`, { headers: h, body });
        assert(r.headers.get('x-request-id'), `${m} ${p} -> ${r.status}: x-request-id missing`);
        assert(r.headers.get('x-baton-deployment'), `${m} ${p} -> ${r.status}: x-baton-deployment missing`);
    }
});

test('every response carries x-baton-attempts', async () => {
    const missing = [];
    for (const [m, p, h, body] of EVERY) {
        const r = await http(m, `${b.base}${p}`, { headers: h, body });
        if (r.headers.get('x-baton-attempts') === null) missing.push(`${m} ${p} -> ${r.status}`);
    }
    assert(missing.length === 0, `x-baton-attempts missing on: ${missing.join(', ')}`);
});

test('x-request-id sent by the client is echoed', async () => {
    const r = await post(CHAT, user('echo'), { headers: { ...AUTH, 'x-request-id': 'it-req-echo-123' } });
    eq(r.status, 200, 'status');
    eq(r.headers.get('x-request-id'), 'it-req-echo-123', 'x-request-id');
    const r2 = await post(CHAT, { model: 'no-such' }, { headers: { ...AUTH, 'x-request-id': 'it-req-echo-err' } });
    eq(r2.headers.get('x-request-id'), 'it-req-echo-err', 'x-request-id on an error');
    const a = await post(CHAT, user('gen'), { headers: AUTH });
    const c = await post(CHAT, user('gen'), { headers: AUTH });
    assert(a.headers.get('x-request-id') !== c.headers.get('x-request-id'), 'generated request ids repeat');
});

test('provider/model addresses a provider directly; model ids may contain slashes', async () => {
    const r = await post(CHAT, user('direct', 'sim/some-model'), { headers: AUTH });
    eq(r.status, 200, `status (${r.text.slice(0, 200)})`);
    validate('CreateChatCompletionResponse', r.json);
    served(r.headers, 'sim/some-model');
    const r2 = await post(CHAT, user('direct', 'sim/org/model-x'), { headers: AUTH });
    eq(r2.status, 200, 'status with a slash in the model id');
    served(r2.headers, 'sim/org/model-x');
});

test('unknown model is 404 model_not_found (also an unknown provider prefix)', async () => {
    for (const model of ['no-such-model', 'nosuchprovider/x']) {
        const r = await post(CHAT, user('x', model), { headers: AUTH });
        eq(r.status, 404, `status for ${model}`);
        eq(checkError(r.json).code, 'model_not_found', 'error.code');
    }
    const e = await rejects(sdk.chat.completions.create(user('x', 'no-such-model')), 'SDK unknown model');
    eq(e.status, 404, 'SDK status');
});

test('bad JSON and missing fields are 400', async () => {
    const cases = [
        ['bad JSON', '{"model": "demo", "messages": [', CHAT],
        ['not an object', '[1,2]', CHAT],
        ['missing model', JSON.stringify({ messages: [{ role: 'user', content: 'x' }] }), CHAT],
        ['missing messages', JSON.stringify({ model: 'demo' }), CHAT],
        ['empty body', '', CHAT],
        ['embeddings without input', JSON.stringify({ model: 'emb' }), `${b.url}/embeddings`],
        ['embeddings bad JSON', '{"model":', `${b.url}/embeddings`],
    ];
    for (const [what, body, url] of cases) {
        const r = await post(url, body, { headers: AUTH });
        eq(r.status, 400, what);
        checkError(r.json);
    }
});

test('a provider whose api_key is unset answers 503 naming the provider', async () => {
    const r = await post(CHAT, user('x', 'needs-key'), { headers: AUTH });
    eq(r.status, 503, `status (${r.text.slice(0, 200)})`);
    const e = checkError(r.json);
    assert(e.message.includes('nokey'), `message should name provider nokey: ${e.message}`);
    // The rest still serves.
    eq((await post(CHAT, user('x'), { headers: AUTH })).status, 200, 'demo still serves');
});

test('a 200 KB prompt works', async () => {
    const big = 'lorem ipsum dolor sit amet '.repeat(Math.ceil(200 * 1024 / 27));
    assert(big.length >= 200 * 1024, 'prompt size');
    const data = await sdk.chat.completions.create(user(big));
    validate('CreateChatCompletionResponse', data);
    assert(data.usage.prompt_tokens > 1000, `prompt_tokens ${data.usage.prompt_tokens} for a 200 KB prompt`);
});

test('Korean text round-trips as intact UTF-8', async () => {
    const ko = '안녕하세요! 서울의 날씨는 어떤가요? 한국어로 답해 주세요. 🙂';
    const r = await fetch(CHAT, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(user(ko)) });
    eq(r.status, 200, 'status');
    const bytes = new Uint8Array(await r.arrayBuffer());
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); // throws on bad UTF-8
    const j = JSON.parse(text);
    validate('CreateChatCompletionResponse', j);
    assert(!j.choices[0].message.content.includes('\uFFFD'), 'replacement character in reply');
    // Streamed, multi-byte characters must not be split into broken pieces either.
    const s = await streamRaw(CHAT, { ...user(ko), stream: true }, { headers: AUTH });
    assert(s.done, 'stream did not finish');
    const joined = s.events.filter((e) => e.json).map((e) => e.json.choices[0]?.delta?.content || '').join('');
    assert(!joined.includes('\uFFFD'), 'replacement character in streamed reply');
});

test('image parts (data URL) are accepted', async () => {
    const data = await sdk.chat.completions.create({
        model: 'demo',
        messages: [{ role: 'user', content: [
            { type: 'text', text: 'What is in this image?' },
            { type: 'image_url', image_url: { url: PNG_1X1, detail: 'low' } },
        ] }],
    });
    validate('CreateChatCompletionResponse', data);
    assert(data.choices[0].message.content.length > 0, 'empty content');
});

test('json_schema response_format returns JSON that fits the schema', async () => {
    const schema = {
        type: 'object',
        properties: {
            name: { type: 'string' },
            age: { type: 'integer' },
            tags: { type: 'array', items: { type: 'string' } },
            address: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
        },
        required: ['name', 'age', 'tags', 'address'],
        additionalProperties: false,
    };
    const data = await sdk.chat.completions.create({
        ...user('Describe a person'),
        response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
    });
    validate('CreateChatCompletionResponse', data);
    const obj = JSON.parse(data.choices[0].message.content);
    const ok = new Ajv2020({ strict: false }).compile(schema)(obj);
    assert(ok, `content does not fit the schema: ${data.choices[0].message.content}`);
});

const TOOLS = [{
    type: 'function',
    function: {
        name: 'get_weather', description: 'Weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city'] },
    },
}];

test('tools: a tool call with JSON arguments', async () => {
    const data = await sdk.chat.completions.create({ ...user('Weather in Seoul?'), tools: TOOLS });
    validate('CreateChatCompletionResponse', data);
    const ch = data.choices[0];
    eq(ch.finish_reason, 'tool_calls', 'finish_reason');
    const call = ch.message.tool_calls?.[0];
    assert(call, 'no tool_calls');
    eq(call.function.name, 'get_weather', 'function name');
    const args = JSON.parse(call.function.arguments);
    assert(typeof args.city === 'string', `arguments lack city: ${call.function.arguments}`);
});

test('embeddings: SDK default (base64, decoded) and float give the same vectors (embedding_dims 24)', async () => {
    const { data: viaSdk, response } = await sdk.embeddings.create({ model: 'emb', input: ['alpha', 'beta'] }).withResponse();
    served(response.headers, 'sim/text-embedding-3-small');
    eq(viaSdk.data.length, 2, 'vectors');
    const r = await post(`${b.url}/embeddings`, { model: 'emb', input: ['alpha', 'beta'], encoding_format: 'float' }, { headers: AUTH });
    eq(r.status, 200, 'status');
    validate('CreateEmbeddingResponse', r.json);
    for (let i = 0; i < 2; i++) {
        const a = viaSdk.data[i].embedding, f = r.json.data[i].embedding;
        assert(Array.isArray(a) && a.length === 24, `SDK vector ${i} length ${a && a.length} (expected 24)`);
        eq(f.length, 24, `float vector ${i} length`);
        eq(r.json.data[i].index, i, 'index');
        for (let k = 0; k < 24; k++) assert(Math.abs(a[k] - f[k]) < 1e-6, `vector ${i}[${k}]: ${a[k]} vs ${f[k]}`);
    }
    const raw = await post(`${b.url}/embeddings`, { model: 'emb', input: 'alpha', encoding_format: 'base64' }, { headers: AUTH });
    eq(typeof raw.json.data[0].embedding, 'string', 'base64 embedding is a string');
    eq(Buffer.from(raw.json.data[0].embedding, 'base64').length, 96, 'base64 bytes = 24 float32');
    const d8 = await post(`${b.url}/embeddings`, { model: 'emb', input: 'alpha', encoding_format: 'float', dimensions: 8 }, { headers: AUTH });
    eq(d8.status, 200, 'status with dimensions');
    eq(d8.json.data[0].embedding.length, 8, 'vector length with dimensions: 8');
});

test('access log: one JSON line per request with ids, model, deployment, status, times, tokens; no keys', async () => {
    const wrong = 'Bearer wrong-key-ACCESSLOG-SECRET-999';
    await post(CHAT, user('log me'), { headers: { ...AUTH, 'x-request-id': 'it-log-plain' } });
    const s = await streamRaw(CHAT, { ...user('log my stream'), stream: true }, { headers: { ...AUTH, 'x-request-id': 'it-log-stream' } });
    assert(s.done, 'stream did not finish');
    await post(CHAT, user('x', 'no-such-model'), { headers: { ...AUTH, 'x-request-id': 'it-log-404' } });
    await post(CHAT, user('x'), { headers: { authorization: wrong, 'x-request-id': 'it-log-401' } });
    const lines = await waitFor(() => {
        const ls = readText(ACCESS).split('\n').filter(Boolean);
        const ids = ls.map((l) => { try { return JSON.parse(l).id; } catch { return null; } });
        return ['it-log-plain', 'it-log-stream', 'it-log-404', 'it-log-401'].every((i) => ids.includes(i)) && ls;
    }, 3000, 'access log lines for 4 requests');
    const recs = lines.map((l, i) => { try { return JSON.parse(l); } catch { throw new Error(`access log line ${i + 1} is not JSON: ${l.slice(0, 200)}`); } });
    const by = (id) => recs.filter((r) => r.id === id);
    eq(by('it-log-plain').length, 1, 'lines for one plain request');
    const p = by('it-log-plain')[0], st = by('it-log-stream')[0];
    eq(p.model, 'demo', 'model'); eq(p.deployment, 'sim/demo', 'deployment'); eq(p.status, 200, 'status');
    assert(typeof p.latency_ms === 'number' && p.latency_ms >= 0, `latency_ms ${p.latency_ms}`);
    assert(p.prompt_tokens > 0 && p.completion_tokens > 0, `tokens ${p.prompt_tokens}/${p.completion_tokens}`);
    eq(st.status, 200, 'stream status');
    assert(typeof st.ttft_ms === 'number' && st.ttft_ms >= 0 && st.ttft_ms <= st.latency_ms, `stream ttft_ms ${st.ttft_ms} latency ${st.latency_ms}`);
    assert(st.prompt_tokens > 0 && st.completion_tokens > 0, `stream tokens ${st.prompt_tokens}/${st.completion_tokens} (usage must be captured from the stream)`);
    eq(by('it-log-404')[0].status, 404, '404 logged');
    eq(by('it-log-401')[0].status, 401, '401 logged');
    const all = readText(ACCESS);
    assert(!all.includes(KEY) && !all.includes(KEY.slice(10)), 'master key in the access log');
    assert(!all.includes('ACCESSLOG-SECRET'), "the client's wrong key is in the access log");
});

await run();
