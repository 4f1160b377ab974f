// The golden pairs (tests/golden/pairs/, which tests/unit/test_pairs.c holds
// baton's code to) against the official specs: every body a provider must
// receive (upstream.json) and every request a client sends (request.json)
// validated as its API's request, every provider stream event and reply the
// cases replay (provider.sse, provider.json, provider.err) as its API's
// events, replies and errors, and everything the client must receive
// (client.sse event by event, client.json, the body in error.json) as its
// API's. OpenAI: CreateChatCompletionRequest / CreateChatCompletionResponse /
// CreateChatCompletionStreamResponse of OpenAI's OpenAPI document (an error
// object through checkError); Anthropic: CreateMessageParams / Message /
// MessageStreamEvent / ErrorResponse of Anthropic's; Gemini requests:
// tests/golden/gemini/request.schema.json (derived from the v1beta protos,
// which define no JSON schema for replies).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { test, run, REPO, assert } from './lib.mjs';
import { check as openaiCheck, checkError } from './schema.mjs';

const PAIRS = join(REPO, 'tests/golden/pairs');
const ANTHROPIC_SPEC = process.env.BATON_ANTHROPIC_SPEC ||
    resolve(REPO, '../shared/specs/anthropic-openapi.json');
const DOC_ID = 'https://baton.invalid/anthropic-openapi.json';

let ajv = null, gemini = null;
function anthropicCheck(name, obj) {
    if (!ajv) {
        ajv = new Ajv2020({ strict: false, allErrors: true });
        addFormats(ajv);
        const doc = JSON.parse(readFileSync(ANTHROPIC_SPEC, 'utf8'));
        ajv.addSchema({ $id: DOC_ID, components: doc.components });
    }
    const v = ajv.getSchema(`${DOC_ID}#/components/schemas/${name}`);
    if (!v) throw new Error(`no schema ${name}`);
    if (v(obj)) return null;
    return v.errors.slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
}
function geminiCheck(obj) {
    if (!gemini) {
        const a = new Ajv2020({ strict: false, allErrors: true });
        gemini = a.compile(JSON.parse(readFileSync(join(REPO, 'tests/golden/gemini/request.schema.json'), 'utf8')));
    }
    if (gemini(obj)) return null;
    return gemini.errors.slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
}

const api = (side) => (side === 'azure' ? 'openai' : side);

// One JSON value as `name` of API `which` ('openai', 'anthropic', 'gemini');
// `kind` is request, reply, event or error.
function validate(which, kind, obj, what) {
    let err;
    if (which === 'openai') {
        if (kind === 'error' || (kind === 'event' && obj.error)) {
            try { checkError(obj); err = null; } catch (e) { err = e.message; }
        } else {
            err = openaiCheck({ request: 'CreateChatCompletionRequest', reply: 'CreateChatCompletionResponse',
                event: 'CreateChatCompletionStreamResponse' }[kind], obj);
        }
    } else if (which === 'anthropic') {
        err = anthropicCheck(kind === 'error' || obj.type === 'error' ? 'ErrorResponse'
            : { request: 'CreateMessageParams', reply: 'Message', event: 'MessageStreamEvent' }[kind], obj);
    } else {
        if (kind !== 'request') return 0; // no reply schema for Gemini
        err = geminiCheck(obj);
    }
    if (err) throw new Error(`${what}: ${err}; body: ${JSON.stringify(obj).slice(0, 300)}`);
    return 1;
}

// The events of an SSE text: [{name, data}] (data joined, as the parser does).
function events(text) {
    const out = [];
    for (const block of text.replace(/\r\n/g, '\n').split('\n\n')) {
        const lines = block.split('\n');
        const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
        if (!data.length) continue;
        const name = lines.find((l) => l.startsWith('event:'));
        out.push({ name: name ? name.slice(6).trim() : '', data: data.join('\n') });
    }
    return out;
}

function validateStream(which, text, what) {
    let n = 0;
    for (const ev of events(text)) {
        if (ev.data === '[DONE]') { assert(which === 'openai', `${what}: [DONE] outside OpenAI`); continue; }
        const obj = JSON.parse(ev.data);
        if (which === 'anthropic') {
            assert(ev.name === obj.type, `${what}: event name ${ev.name} for ${obj.type}`);
            if (obj.type === 'ping') continue;
        }
        n += validate(which, 'event', obj, `${what} ${ev.name || 'data'}`);
    }
    return n;
}

function cases() {
    const out = [];
    for (const pair of readdirSync(PAIRS).sort()) {
        const pdir = join(PAIRS, pair);
        if (!statSync(pdir).isDirectory()) continue;
        const [client, wire] = pair.split('-to-');
        for (const name of readdirSync(pdir).sort()) {
            const dir = join(pdir, name);
            if (!statSync(dir).isDirectory()) continue;
            const file = (f) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : null);
            out.push({ id: `${pair}/${name}`, client, wire: api(wire), file });
        }
    }
    assert(out.length >= 40, `only ${out.length} golden pairs`);
    return out;
}

test('requests the clients send and bodies the providers receive validate as their API\'s requests', () => {
    let n = 0;
    for (const c of cases()) {
        const up = c.file('upstream.json');
        if (!up) continue; // refused before any provider call (the request may be invalid on purpose)
        n += validate(c.client, 'request', JSON.parse(c.file('request.json')), `${c.id} request.json`);
        n += validate(c.wire, 'request', JSON.parse(up), `${c.id} upstream.json`);
    }
    assert(n >= 80, `only ${n} requests validated`);
});

test('provider streams, replies and errors are what their API sends', () => {
    let n = 0;
    for (const c of cases()) {
        const sse = c.file('provider.sse'), reply = c.file('provider.json'), err = c.file('provider.err');
        if (sse) n += validateStream(c.wire, sse, `${c.id} provider.sse`);
        if (reply) n += validate(c.wire, 'reply', JSON.parse(reply), `${c.id} provider.json`);
        if (err && c.wire !== 'gemini') {
            const body = err.slice(err.indexOf('\n') + 1);
            n += validate(c.wire, 'error', JSON.parse(body), `${c.id} provider.err`);
        }
    }
    assert(n >= 150, `only ${n} provider bodies validated`);
});

test('what every client receives validates as its API\'s stream events, replies and errors', () => {
    let n = 0;
    for (const c of cases()) {
        const sse = c.file('client.sse'), reply = c.file('client.json'), err = c.file('error.json');
        if (sse) n += validateStream(c.client, sse, `${c.id} client.sse`);
        if (reply) n += validate(c.client, 'reply', JSON.parse(reply), `${c.id} client.json`);
        if (err) n += validate(c.client, 'error', JSON.parse(err).body, `${c.id} error.json`);
    }
    assert(n >= 150, `only ${n} client bodies validated`);
});

test('the checks can fail: a stream event without choices, a Message without content', () => {
    const c = cases().find((x) => x.id === 'anthropic-to-openai/text-stream-cached-usage');
    const ev = JSON.parse(events(c.file('provider.sse'))[0].data);
    delete ev.choices;
    assert(openaiCheck('CreateChatCompletionStreamResponse', ev), 'validated without choices');
    const m = JSON.parse(cases().find((x) => x.id === 'anthropic-to-anthropic/tools-reply').file('client.json'));
    delete m.content;
    assert(anthropicCheck('Message', m), 'validated without content');
});

await run();
