// The provider adapters' golden files (tests/golden/, which
// tests/unit/test_provider_types.c holds the encoders and decoders to) against
// the official specs: every Anthropic request body baton must send validated as
// CreateMessageParams of Anthropic's OpenAPI document, every Anthropic stream
// event and reply the decoders are tested on as MessageStreamEvent, Message or
// ErrorResponse (so the fixtures are what Anthropic sends), and every Gemini
// request body against tests/golden/gemini/request.schema.json, a JSON schema
// derived by hand from Gemini's v1beta protos (the REST API has no OpenAPI
// document in /work/shared/specs). And what the simulator renders in Anthropic's
// wire (`type: sim, wire: anthropic`), dumped by the same unit test
// (BATON_PROVIDER_DUMP), against the same schemas.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { test, run, REPO, BATON, assert } from './lib.mjs';

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

// The simulator's replies, as test_provider_types renders them.
function simDumps() {
    const beside = join(dirname(BATON), 'tests', 'test_provider_types');
    const bin = existsSync(beside) ? beside : join(REPO, 'build', 'release', 'tests', 'test_provider_types');
    const dir = mkdtempSync(join(tmpdir(), 'baton-prov-'));
    try {
        execFileSync(bin, [], { cwd: REPO, env: { ...process.env, BATON_PROVIDER_DUMP: dir }, stdio: 'pipe' });
        return readdirSync(dir).filter((f) => f.startsWith('sim-sa-')).sort()
            .map((f) => [f, readFileSync(join(dir, f), 'utf8')]);
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

test('the simulator speaks Anthropic as the spec says (replies and stream events)', () => {
    const msg = anthropic('Message'), ev = anthropic('MessageStreamEvent');
    const dumps = simDumps();
    assert(dumps.length === 4, `expected 4 simulated Anthropic replies, got ${dumps.length}`);
    for (const [f, text] of dumps) {
        if (f.endsWith('.json')) { check(msg, JSON.parse(text), f); continue; }
        let n = 0;
        for (const block of text.split('\n\n')) {
            const lines = block.split('\n');
            const data = lines.find((l) => l.startsWith('data: '));
            const name = lines.find((l) => l.startsWith('event: '));
            if (!data) continue;
            const obj = JSON.parse(data.slice(6));
            assert(name === `event: ${obj.type}`, `${f}: event name ${name} for ${obj.type}`);
            check(ev, obj, `${f} ${obj.type}`);
            n++;
        }
        assert(n >= 5, `${f}: only ${n} events`);
    }
});

await run();
