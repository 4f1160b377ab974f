// The provider adapters' golden files (tests/golden/, which
// tests/unit/test_provider_types.c holds the encoders and decoders to) against
// the official specs: every Anthropic request body baton must send validated as
// CreateMessageParams of Anthropic's OpenAPI document, every Anthropic stream
// event and reply the decoders are tested on as MessageStreamEvent, Message or
// ErrorResponse (so the fixtures are what Anthropic sends), and every Gemini
// request body against tests/golden/gemini/request.schema.json, a JSON schema
// derived by hand from Gemini's v1beta protos (the REST API has no OpenAPI
// document in /work/shared/specs).
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { test, run, REPO, assert } from './lib.mjs';

const SPEC = process.env.BATON_ANTHROPIC_SPEC ||
    resolve(REPO, '../shared/specs/anthropic-openapi.json');
const GOLDEN = join(REPO, 'tests/golden');
const DOC_ID = 'https://baton.invalid/anthropic-openapi.json';

let ajv = null;
function anthropic(name) {
    if (!ajv) {
        ajv = new Ajv2020({ strict: false, allErrors: true });
        addFormats(ajv);
        const doc = JSON.parse(readFileSync(SPEC, 'utf8'));
        ajv.addSchema({ $id: DOC_ID, components: doc.components });
    }
    const v = ajv.getSchema(`${DOC_ID}#/components/schemas/${name}`);
    if (!v) throw new Error(`no schema ${name}`);
    return v;
}

function check(v, obj, what) {
    if (v(obj)) return;
    const errs = v.errors.slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
    throw new Error(`${what}: ${errs}; body: ${JSON.stringify(obj).slice(0, 300)}`);
}

function files(dir, suffix) {
    const out = readdirSync(join(GOLDEN, dir)).filter((f) => f.endsWith(suffix)).sort();
    assert(out.length > 0, `no ${suffix} file in ${dir}`);
    return out.map((f) => [f, readFileSync(join(GOLDEN, dir, f), 'utf8')]);
}

test('Anthropic request bodies validate as CreateMessageParams', () => {
    const v = anthropic('CreateMessageParams');
    for (const [f, text] of files('anthropic/encode', '.expected.json')) check(v, JSON.parse(text), f);
});

test('a body missing max_tokens does not validate (the check can fail)', () => {
    const v = anthropic('CreateMessageParams');
    const [, text] = files('anthropic/encode', '.expected.json')[0];
    const body = JSON.parse(text);
    delete body.max_tokens;
    assert(!v(body), 'validated without max_tokens');
});

test('Anthropic stream fixtures are Anthropic stream events', () => {
    const ev = anthropic('MessageStreamEvent'), err = anthropic('ErrorResponse');
    for (const [f, text] of files('anthropic/events', '.sse')) {
        for (const block of text.split('\n\n')) {
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (!data) continue;
            const obj = JSON.parse(data.slice(6));
            if (obj.type === 'ping') continue;
            check(obj.type === 'error' ? err : ev, obj, `${f} ${obj.type}`);
        }
    }
});

test('Anthropic reply fixtures are Messages or errors', () => {
    const msg = anthropic('Message'), err = anthropic('ErrorResponse');
    for (const [f, text] of files('anthropic/events', '.json')) {
        const obj = JSON.parse(text);
        check(obj.type === 'error' ? err : msg, obj, f);
    }
});

test('Gemini request bodies validate against the schema derived from the protos', () => {
    const a = new Ajv2020({ strict: false, allErrors: true });
    const v = a.compile(JSON.parse(readFileSync(join(GOLDEN, 'gemini/request.schema.json'), 'utf8')));
    for (const [f, text] of files('gemini/encode', '.expected.json')) check(v, JSON.parse(text), f);
    assert(!v({ contents: [{ role: 'assistant', parts: [{ text: 'x' }] }] }), 'role assistant validated');
});

await run();
