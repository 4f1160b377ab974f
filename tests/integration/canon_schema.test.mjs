// The OpenAI codecs of the canonical model (src/api/openai_encode.c,
// src/api/openai_chat.c) against OpenAI's own OpenAPI document: the unit test
// binary test_canon writes every stream, reply and accepted request fixture it
// makes (BATON_CANON_DUMP=DIR), and each is validated here with Ajv
// (schema.mjs): chunks as CreateChatCompletionStreamResponse, replies as
// CreateChatCompletionResponse, errors as OpenAI error objects, requests as
// CreateChatCompletionRequest. The unit tests check the same outputs as a
// strict client would; this checks every member's type against the spec.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test, run, BATON, REPO } from './lib.mjs';
import { validate, checkError } from './schema.mjs';

// The unit tests of the build that made BATON_BIN (build/<x>/baton -> build/<x>/tests).
function unitBinary() {
    const beside = join(dirname(BATON), 'tests', 'test_canon');
    return existsSync(beside) ? beside : join(REPO, 'build', 'release', 'tests', 'test_canon');
}

let dir = null;
function dumped(ext) {
    if (!dir) {
        dir = mkdtempSync(join(tmpdir(), 'baton-canon-'));
        execFileSync(unitBinary(), [], { env: { ...process.env, BATON_CANON_DUMP: dir }, stdio: 'pipe' });
        process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    }
    const files = readdirSync(dir).filter((f) => f.endsWith(`.${ext}`)).sort();
    if (!files.length) throw new Error(`test_canon wrote no .${ext} file`);
    return files.map((f) => [f, readFileSync(join(dir, f), 'utf8')]);
}

// The data of each SSE event (the encoder writes `data: ...\n\n` only).
function events(text) {
    const out = [];
    for (const block of text.split('\n\n')) {
        if (!block) continue;
        if (!block.startsWith('data: ')) throw new Error(`not a data event: ${block.slice(0, 80)}`);
        out.push(block.slice(6));
    }
    return out;
}

test('every chunk the stream encoder writes validates against the spec', () => {
    let chunks = 0, errors = 0;
    for (const [name, text] of dumped('sse')) {
        const evs = events(text);
        evs.forEach((data, i) => {
            if (data === '[DONE]') {
                if (i !== evs.length - 1) throw new Error(`${name}: [DONE] is not last`);
                return;
            }
            const body = JSON.parse(data);
            try {
                if ('error' in body) {
                    checkError(body);
                    errors++;
                    if (i !== evs.length - 1) throw new Error('an event after the error');
                } else {
                    validate('CreateChatCompletionStreamResponse', body);
                    chunks++;
                }
            } catch (e) {
                throw new Error(`${name} event ${i}: ${e.message}`);
            }
        });
    }
    if (chunks < 50 || errors < 5) throw new Error(`only ${chunks} chunks and ${errors} errors checked`);
});

test('every reply the aggregator writes validates against the spec', () => {
    for (const [name, text] of dumped('reply.json')) {
        const body = JSON.parse(text);
        try {
            if ('error' in body) checkError(body);
            else validate('CreateChatCompletionResponse', body);
        } catch (e) {
            throw new Error(`${name}: ${e.message}`);
        }
    }
});

test('the request fixtures the decoder accepts are valid requests', () => {
    for (const [name, text] of dumped('request.json')) {
        try {
            validate('CreateChatCompletionRequest', JSON.parse(text));
        } catch (e) {
            throw new Error(`${name}: ${e.message}`);
        }
    }
});

await run();
