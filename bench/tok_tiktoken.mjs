// bench/tok_tiktoken: npm tiktoken's encode (the WASM build of OpenAI's Rust
// core) on a text file, for both encodings, with the same repetitions and
// warm-up as bench/micro_tok.c, so bench/run.sh can report the ratio.
//   node bench/tok_tiktoken.mjs FILE   (TOK_REPS repetitions; default 50)
// prints one line per encoding:
//   tok_tiktoken enc=E file=F bytes=N tokens=T reps=R encode_mb_s=X encode_tok_s=Y
// Each repetition is timed in process CPU time (process.cpuUsage) and the fastest
// one is reported, as micro_tok.c does. The text is read once as a JS string (tiktoken's API takes strings); the
// measured work is encode() alone, including its UTF-8 copy into WASM memory.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { get_encoding } = require('tiktoken');

const file = process.argv[2];
if (!file) {
    console.error('usage: node bench/tok_tiktoken.mjs FILE');
    process.exit(2);
}
const reps = Number(process.env.TOK_REPS) > 0 ? Number(process.env.TOK_REPS) : 50;
const buf = readFileSync(file);
const text = buf.toString('utf8');
for (const name of ['cl100k_base', 'o200k_base']) {
    const enc = get_encoding(name);
    let tokens = 0;
    for (let w = 0; w < 3; w++) tokens = enc.encode(text, [], []).length;
    let secs = Infinity;
    for (let r = 0; r < reps; r++) {
        const c0 = process.cpuUsage();
        const n = enc.encode(text, [], []).length;
        const c = process.cpuUsage(c0);
        if (n !== tokens) throw new Error('inconsistent results');
        secs = Math.min(secs, (c.user + c.system) / 1e6);
    }
    console.log(`tok_tiktoken enc=${name} file=${basename(file)} bytes=${buf.length} tokens=${tokens} ` +
        `reps=${reps} encode_mb_s=${(buf.length / secs / 1e6).toFixed(1)} encode_tok_s=${(tokens / secs).toFixed(0)}`);
    enc.free();
}
