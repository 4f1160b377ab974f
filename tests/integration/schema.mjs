// Validates JSON bodies against OpenAI's OpenAPI document (../shared/specs/openai-openapi.yaml
// beside the repository, as in CI). OpenAPI 3.1 schemas are JSON Schema 2020-12, so Ajv's
// 2020 build compiles them; `nullable: true` (an OpenAPI 3.0 leftover that the file still
// uses) is rewritten into a `null` type first, and OpenAPI-only formats are accepted as-is.
//   import { validate, checkError } from './schema.mjs';
//   validate('CreateChatCompletionResponse', body)  -> throws with Ajv's errors when invalid
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const here = dirname(fileURLToPath(import.meta.url));
export const SPEC_PATH = process.env.BATON_OPENAI_SPEC ||
    resolve(here, '../../../shared/specs/openai-openapi.yaml');
const DOC_ID = 'https://baton.invalid/openai-openapi.json';

// OpenAPI 3.0 `nullable: true` -> JSON Schema: widen `type`, add null to `enum`, or wrap.
function fixNullable(node) {
    if (Array.isArray(node)) { node.forEach(fixNullable); return; }
    if (!node || typeof node !== 'object') return;
    for (const v of Object.values(node)) fixNullable(v);
    if (node.nullable !== true) { delete node.nullable; return; }
    delete node.nullable;
    if (Array.isArray(node.enum) && !node.enum.includes(null)) node.enum.push(null);
    if (typeof node.type === 'string') node.type = [node.type, 'null'];
    else if (Array.isArray(node.type)) { if (!node.type.includes('null')) node.type.push('null'); }
    else if (node.type === undefined) {
        // No type to widen (a $ref, allOf, ...): move everything into anyOf [it, null].
        const inner = { ...node };
        for (const k of Object.keys(node)) delete node[k];
        if (inner.description) node.description = inner.description;
        node.anyOf = [inner, { type: 'null' }];
    }
}

let ajv = null;
const compiled = new Map();

function load() {
    if (ajv) return ajv;
    let text;
    try { text = readFileSync(SPEC_PATH, 'utf8'); }
    catch (e) { throw new Error(`schema: cannot read the OpenAI spec at ${SPEC_PATH}: ${e.message}`); }
    // Parsing 3 MB of YAML takes seconds; every test file needs it, so the parsed and
    // rewritten components are cached as JSON in the temp dir, keyed by the file's hash.
    const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
    const cache = join(tmpdir(), `baton-openai-components-${hash}.json`);
    let components;
    try { components = JSON.parse(readFileSync(cache, 'utf8')); } catch { components = null; }
    if (!components) {
        components = YAML.parse(text, { maxAliasCount: -1 }).components;
        fixNullable(components);
        try {
            const tmp = `${cache}.${process.pid}`;
            writeFileSync(tmp, JSON.stringify(components));
            renameSync(tmp, cache);
        } catch { /* no cache: fine */ }
    }
    ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    addFormats(ajv);
    for (const f of ['unixtime', 'binary', 'png', 'double', 'float', 'int64', 'int32', ''])
        ajv.addFormat(f, true);
    ajv.addSchema({ $id: DOC_ID, components });
    return ajv;
}

// Returns null when `obj` validates against components.schemas[name], else a short text.
export function check(name, obj) {
    const a = load();
    let v = compiled.get(name);
    if (!v) {
        v = a.getSchema(`${DOC_ID}#/components/schemas/${name}`);
        if (!v) throw new Error(`schema: no component schema named ${name}`);
        compiled.set(name, v);
    }
    if (v(obj)) return null;
    return v.errors.slice(0, 5)
        .map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ' ' + JSON.stringify(e.params) : ''}`)
        .join('; ');
}

// Throws when `obj` does not validate against components.schemas[name].
export function validate(name, obj) {
    const err = check(name, obj);
    if (err) throw new Error(`${name} schema: ${err}; body: ${JSON.stringify(obj).slice(0, 400)}`);
    return obj;
}

// Throws unless `body` is an OpenAI error object {error:{message,type,param,code}}
// (message a non-empty string, type a string, param and code present: string or null).
export function checkError(body) {
    const where = () => JSON.stringify(body).slice(0, 300);
    if (!body || typeof body !== 'object' || !body.error || typeof body.error !== 'object')
        throw new Error(`not an OpenAI error object: ${where()}`);
    const e = body.error;
    if (typeof e.message !== 'string' || e.message.length === 0)
        throw new Error(`error.message missing or empty: ${where()}`);
    if (typeof e.type !== 'string' || e.type.length === 0)
        throw new Error(`error.type missing: ${where()}`);
    for (const k of ['param', 'code']) {
        if (!(k in e)) throw new Error(`error.${k} missing: ${where()}`);
        if (e[k] !== null && typeof e[k] !== 'string' && typeof e[k] !== 'number')
            throw new Error(`error.${k} must be string or null: ${where()}`);
    }
    return e;
}
