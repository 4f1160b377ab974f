// Every client API against every provider wire, through the official SDKs:
// the OpenAI and Anthropic SDKs against simulated providers speaking OpenAI's,
// Anthropic's and Gemini's wires (the simulator renders each wire; baton's
// adapters translate). For each pair: a reply, a stream (with usage), and a tool
// call; what the client gets validates against its API's official schema.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { test, run, setup, assert, eq, startBaton, client, freePort } from './lib.mjs';
import { startFake } from '../fake/fake_provider.mjs';
import { validate as validateOpenAI } from './schema.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const SPEC = process.env.BATON_ANTHROPIC_SPEC || resolve(here, '../../../shared/specs/anthropic-openapi.json');
const DOC_ID = 'https://baton.invalid/anthropic-openapi.json';
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: DOC_ID, components: JSON.parse(readFileSync(SPEC, 'utf8')).components });
function validateAnthropic(name, obj) {
    const v = ajv.getSchema(`${DOC_ID}#/components/schemas/${name}`);
    if (!v(obj)) throw new Error(`${name} schema: ${v.errors.slice(0, 3).map((e) => `${e.instancePath} ${e.message}`).join('; ')}; ${JSON.stringify(obj).slice(0, 300)}`);
}

// A fake Anthropic server: what an anthropic-type provider receives.
const fake = await setup(async () => startFake(await freePort()));
fake.handle((req, res, h) => h.json(200, JSON.stringify({ id: 'msg_fake', type: 'message', role: 'assistant',
    model: 'claude-fake', content: [{ type: 'text', text: 'hi' }], stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: 3, output_tokens: 1 } })));
const b = await setup(() => startBaton(`
providers:
  ant: {type: anthropic, base_url: "${fake.url.replace(/\/v1$/, '')}", api_key: "sk-ant-provider", anthropic_version: "2023-06-01"}
  so: {type: sim, seed: 11}
  sa: {type: sim, wire: anthropic, seed: 12}
  sg: {type: sim, wire: gemini, seed: 13}
models:
  m-openai: {provider: so, model: gpt-sim}
  m-anthropic: {provider: sa, model: claude-sim}
  m-gemini: {provider: sg, model: gemini-sim}
  m-fake-anthropic: {provider: ant, model: claude-fake}
  by-language:
    rules:
      - {when: {language: ko}, model: m-gemini}
      - {model: m-anthropic}
`));
const oa = client(b.url);
const an = new Anthropic({ baseURL: b.base, apiKey: 'unused', maxRetries: 0 });
const MODELS = ['m-openai', 'm-anthropic', 'm-gemini'];
const DEPLOYMENT = { 'm-openai': 'so/gpt-sim', 'm-anthropic': 'sa/claude-sim', 'm-gemini': 'sg/gemini-sim' };
const weather = { type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };

for (const model of MODELS) {
    test(`OpenAI SDK -> ${model}: reply, stream with usage, tool call`, async () => {
        const { data: r, response } = await oa.chat.completions.create({ model, max_tokens: 40,
            messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }] }).withResponse();
        validateOpenAI('CreateChatCompletionResponse', r);
        assert(r.choices[0].message.content.length > 0, 'text');
        assert(['stop', 'length'].includes(r.choices[0].finish_reason), r.choices[0].finish_reason);
        assert(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, JSON.stringify(r.usage));
        eq(response.headers.get('x-baton-deployment'), DEPLOYMENT[model], 'served by');
        const stream = await oa.chat.completions.create({ model, stream: true, stream_options: { include_usage: true },
            messages: [{ role: 'user', content: 'hello' }] });
        let text = '', usage = null, finish = null, chunks = 0;
        for await (const c of stream) {
            validateOpenAI('CreateChatCompletionStreamResponse', c);
            chunks++;
            text += c.choices[0]?.delta?.content || '';
            finish = c.choices[0]?.finish_reason || finish;
            if (c.usage) usage = c.usage;
        }
        assert(chunks > 2 && text.length > 0, `${chunks} chunks, text ${text.length}`);
        eq(finish, 'stop', 'finish_reason');
        assert(usage && usage.completion_tokens > 0, `usage: ${JSON.stringify(usage)}`);
        const t = await oa.chat.completions.create({ model, tools: [weather], tool_choice: 'required',
            messages: [{ role: 'user', content: 'weather in Seoul?' }] });
        validateOpenAI('CreateChatCompletionResponse', t);
        const call = t.choices[0].message.tool_calls?.[0];
        assert(call && call.function.name === 'get_weather', JSON.stringify(t.choices[0].message));
        assert(typeof JSON.parse(call.function.arguments) === 'object', call.function.arguments);
        eq(t.choices[0].finish_reason, 'tool_calls', 'finish_reason');
        // the streamed tool call's argument fragments reassemble into JSON
        const ts = await oa.chat.completions.create({ model, stream: true, tools: [weather], tool_choice: 'required',
            messages: [{ role: 'user', content: 'weather in Seoul?' }] });
        let args = '', name = '';
        for await (const c of ts) {
            for (const tc of c.choices[0]?.delta?.tool_calls || []) { args += tc.function?.arguments || ''; name ||= tc.function?.name || ''; }
        }
        eq(name, 'get_weather', 'streamed tool name');
        assert(typeof JSON.parse(args) === 'object', `streamed arguments: ${args}`);
    });

    test(`Anthropic SDK -> ${model}: reply, stream, tool use`, async () => {
        const m = await an.messages.create({ model, max_tokens: 64, system: 'Be brief.',
            messages: [{ role: 'user', content: 'hello' }] });
        validateAnthropic('Message', m);
        assert(m.content[0].type === 'text' && m.content[0].text.length > 0, JSON.stringify(m.content));
        assert(['end_turn', 'max_tokens'].includes(m.stop_reason), m.stop_reason);
        assert(m.usage.input_tokens > 0 && m.usage.output_tokens > 0, JSON.stringify(m.usage));
        const s = an.messages.stream({ model, max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] });
        const types = [];
        s.on('streamEvent', (ev) => { validateAnthropic('MessageStreamEvent', ev); types.push(ev.type); });
        const fin = await s.finalMessage();
        eq(types[0], 'message_start', 'first event');
        eq(types[types.length - 1], 'message_stop', 'last event');
        assert(fin.content[0].text.length > 0, 'streamed text');
        assert(fin.usage.output_tokens > 0, JSON.stringify(fin.usage));
        const tu = await an.messages.create({ model, max_tokens: 200, tool_choice: { type: 'any' },
            tools: [{ name: 'get_weather', description: 'Weather in a city', input_schema: weather.function.parameters }],
            messages: [{ role: 'user', content: 'weather in Seoul?' }] });
        validateAnthropic('Message', tu);
        const use = tu.content.find((c) => c.type === 'tool_use');
        assert(use && use.name === 'get_weather' && typeof use.input === 'object', JSON.stringify(tu.content));
        eq(tu.stop_reason, 'tool_use', 'stop_reason');
        // and the tool's result goes back on the next turn
        const next = await an.messages.create({ model, max_tokens: 64,
            tools: [{ name: 'get_weather', input_schema: weather.function.parameters }],
            messages: [{ role: 'user', content: 'weather in Seoul?' }, { role: 'assistant', content: tu.content },
                { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21C' }] }] });
        validateAnthropic('Message', next);
        assert(next.content.some((c) => c.type === 'text'), JSON.stringify(next.content));
    });
}

test('rules choose for both client APIs; x-baton-route says which', async () => {
    const { data: m, response } = await an.messages.create({ model: 'by-language', max_tokens: 32,
        messages: [{ role: 'user', content: '안녕하세요, 반갑습니다' }] }).withResponse();
    validateAnthropic('Message', m);
    eq(response.headers.get('x-baton-deployment'), 'sg/gemini-sim', 'Korean to Gemini');
    assert(response.headers.get('x-baton-route').startsWith('by-language: rule 1 -> m-gemini'), response.headers.get('x-baton-route'));
    const { response: r2 } = await oa.chat.completions.create({ model: 'by-language',
        messages: [{ role: 'user', content: 'hello there' }] }).withResponse();
    eq(r2.headers.get('x-baton-deployment'), 'sa/claude-sim', 'English to the default');
});

test('anthropic-version and anthropic-beta reach an anthropic provider as the client sent them; one credential, its own', async () => {
    fake.reset();
    const raw = await fetch(`${b.base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json',
        'x-api-key': 'client-key', 'anthropic-version': '2023-01-01', 'anthropic-beta': 'prompt-caching-2024-07-31' },
        body: JSON.stringify({ model: 'm-fake-anthropic', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }) });
    eq(raw.status, 200, await raw.text());
    const up = fake.requests[0];
    const names = up.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    eq(names.filter((n) => n === 'anthropic-version').length, 1, 'one anthropic-version');
    eq(up.headers['anthropic-version'], '2023-01-01', 'the client\'s version');
    eq(up.headers['anthropic-beta'], 'prompt-caching-2024-07-31', 'the beta');
    eq(up.headers['x-api-key'], 'sk-ant-provider', 'the provider\'s own key, never the client\'s');
    eq(names.filter((n) => ['x-api-key', 'authorization', 'api-key', 'x-goog-api-key'].includes(n)).length, 1, 'one credential header');
    // an OpenAI client's request gets the configured version
    fake.reset();
    await oa.chat.completions.create({ model: 'm-fake-anthropic', messages: [{ role: 'user', content: 'hi' }] });
    eq(fake.requests[0].headers['anthropic-version'], '2023-06-01', 'the configured version');
});

test('toward another API, a beta that changes the meaning is a 400 and one that does not is left out', async () => {
    const body = { model: 'm-openai', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
    const bad = await an.messages.create(body, { headers: { 'anthropic-beta': 'files-api-2025-04-14' } }).catch((e) => e);
    eq(bad.status, 400, `a meaning-changing beta: ${bad}`);
    assert(/anthropic-beta: files-api-2025-04-14/.test(bad.message), bad.message);
    eq(bad.error?.error?.type, 'invalid_request_error', JSON.stringify(bad.error));
    const ok = await an.messages.create(body, { headers: { 'anthropic-beta': 'prompt-caching-2024-07-31, output-128k-2025-02-19' } });
    validateAnthropic('Message', ok);
    // the same beta toward an anthropic provider passes through
    fake.reset();
    await an.messages.create({ ...body, model: 'm-fake-anthropic' }, { headers: { 'anthropic-beta': 'files-api-2025-04-14' } });
    eq(fake.requests[0].headers['anthropic-beta'], 'files-api-2025-04-14', 'passed on to Anthropic');
});

await run();
