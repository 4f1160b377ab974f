// `baton tokens` against npm tiktoken (the WASM build of OpenAI's Rust core):
// for both encodings, the token ids of a corpus of varied texts, of the repo's own
// docs and sources, and of ~2,000 seeded random strings must be identical. Texts go
// to one `baton tokens --jsonl` process per batch (one JSON string per line in, one
// id array per line out). Also the plain count / --ids / --model / stdin-less paths.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { test, run, assert, eq, runBaton, writeTemp, REPO } from './lib.mjs';

const require = createRequire(import.meta.url);
const { get_encoding } = require('tiktoken');

const ENCODINGS = ['cl100k_base', 'o200k_base'];

// ---------------------------------------------------------------- corpus

const CORPUS = [
    '', ' ', '  ', '\n', '\r\n', '\t', 'a', 'A', '1', "'", "'s",
    'Hello, world! This is a test of the tokenizer.',
    'The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.',
    "I'm sure you'll see they've done it; we'd say it's John's. I'M SURE YOU'LL SEE THEY'VE DONE IT, WE'D SAY IT'S.",
    "Don'T, CAN'T, won'T, y'ALL, 'Re 'VE 'Ll 'D 'M 'S 'T '' ''s 'x 'sa",
    'function add(a, b) {\n    return a + b; // sum\n}\n\nconst x = add(1, 2);\n',
    '#include <stdio.h>\nint main(void)\n{\n\tprintf("%d\\n", 42);\n\treturn 0;\n}\n',
    'def f(x):\n    if x > 10:\n        return [i**2 for i in range(x)]\n    return None\n',
    '{"model":"gpt-4o","messages":[{"role":"user","content":"Hi!"}],"stream":true,"max_tokens":128}',
    '{\n  "a": [1, 2, 3],\n  "b": {"c": null, "d": true, "e": -1.5e+10}\n}\n',
    '안녕하세요. 저는 한국어를 공부하고 있습니다. 토크나이저가 잘 작동하나요?',
    '日本語のテキストです。カタカナとひらがな、そして漢字。ラーメンを食べたい！',
    '这是一个中文句子，用于测试分词器。我们需要确保结果完全一致。',
    '😀 😃 😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇰🇷🇯🇵 🤷‍♀️ 1️⃣ #️⃣',
    'e\u0301 a\u0300\u0301 n\u0303 Z\u0351\u0352\u0357\u0358 café naïve Ångström',
    'مرحبا بالعالم. هذا نص عربي ١٢٣٤٥٦',
    'שלום עולם. זה טקסט בעברית 123',
    'हिन्दी में पाठ। क्षत्रिय',
    'Ελληνικά κείμενα ΑΒΓ αβγ. Русский текст ПРИВЕТ мир.',
    '∀x ∈ ℝ: x² ≥ 0, ∑ᵢ aᵢ ≤ ∞, √2 ≈ 1.414, ½ ¾ ⅔, Ⅻ ⅻ, ①②③, π≠3',
    'ǅemal ǈubljana ǋ ʰʲ ˈsɪli ー々〆',
    '   leading spaces\n\n\n   \n\t\t\ttabs\r\n\r\n  \u00a0nbsp\u3000ideographic\u2028line\u0085nel  ',
    'trailing spaces   ', 'trailing newline spaces \n   ', '\n\n\n', '  \n', ' \n ', 'a  b   c    d',
    '1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 0x1F 2024-06-01 ١٢٣٤ １２３４ ²³¹',
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
    '<|endoftext|> <|fim_prefix|> <|endofprompt|> special tokens are plain text here',
    'https://example.com/path/to/file.html?query=1&b=2#frag /usr/bin/env //comment ///\n/\n',
    'ABCdef GHIjkl mnoPQR HTTPServer XMLHttpRequest camelCaseWord snake_case_word SCREAMING_CASE',
    'x'.repeat(5000),
    'ab '.repeat(2000),
    ('Lorem ipsum dolor sit amet, consectetur adipiscing elit. ').repeat(40),
    'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
];

function repoTexts() {
    const out = [];
    const add = (p) => { if (existsSync(p)) out.push(readFileSync(p, 'utf8')); };
    add(join(REPO, 'README.md'));
    for (const d of ['docs', 'docs/internals']) {
        const dir = join(REPO, d);
        if (!existsSync(dir)) continue;
        for (const f of readdirSync(dir).sort()) if (f.endsWith('.md')) add(join(dir, f));
    }
    for (const f of ['src/main.c', 'src/json/json.c', 'src/tok/tok.c', 'src/core/buf.c', 'src/http/server.c'])
        add(join(REPO, f));
    return out;
}

// Seeded PRNG (mulberry32) so failures are reproducible.
function prng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

// Character pools (assigned code points only, so Unicode-version differences
// between tiktoken's tables and ours cannot show up as noise).
const range = (a, b) => { const r = []; for (let c = a; c <= b; c++) r.push(String.fromCodePoint(c)); return r; };
const POOLS = [
    range(0x61, 0x7a), range(0x41, 0x5a), range(0x30, 0x39), [...'!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'],
    [' ', ' ', ' ', '  ', '\t', '\n', '\r\n', '\r', '\n\n', ' \n', '\u00a0', '\u3000', '\u2028', '\u0085', '\u000b', '\u000c'],
    ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'", "'x"],
    range(0xc0, 0xff), range(0x100, 0x17f), range(0x391, 0x3a9), range(0x3b1, 0x3c9), range(0x410, 0x44f),
    range(0x300, 0x36f), range(0x5d0, 0x5ea), range(0x627, 0x64a), range(0x660, 0x669), range(0x905, 0x939),
    range(0x93e, 0x94d), range(0x3041, 0x3096), range(0x30a1, 0x30fa), ['ー', '々', 'ʰ', 'ˈ', 'ǅ', 'ǈ', 'ǋ', 'ᾈ'],
    range(0x4e00, 0x4fff), range(0xac00, 0xad00), range(0xff10, 0xff19), ['²', '³', '¹', '¼', '½', 'Ⅻ', 'ⅻ', '①', '⑳'],
    range(0x1f600, 0x1f64f), ['\u200d', '\ufe0f', '👨‍👩‍👧', '🏽', '🇰', '🇷'], range(0x2200, 0x22ff), range(0x2190, 0x21ff),
    ['\u0000', '\u0001', '\u001f', '\u007f', '\ufffd', '\u00ad', '\u200b'],
];

function randomTexts(count, seed) {
    const rnd = prng(seed);
    const pick = (a) => a[Math.floor(rnd() * a.length)];
    const out = [];
    for (let i = 0; i < count; i++) {
        // Each text favours a few pools, so runs of one class (words, numbers,
        // whitespace) form as well as class changes at every character.
        const fav = [pick(POOLS), pick(POOLS), pick(POOLS)];
        const len = 1 + Math.floor(rnd() * rnd() * 120);
        let s = '';
        for (let k = 0; k < len; k++) s += pick(rnd() < 0.8 ? pick(fav) : pick(POOLS));
        out.push(s);
    }
    return out;
}

// ---------------------------------------------------------------- helpers

// Runs `baton tokens --jsonl` over texts in batches; returns one id array per text.
async function batonIds(encoding, texts) {
    const results = [];
    let batch = [], size = 0;
    const flush = async () => {
        if (!batch.length) return;
        const file = writeTemp(`tok-${encoding}-${results.length}.jsonl`, batch.map((t) => JSON.stringify(t)).join('\n') + '\n');
        const r = await runBaton(['tokens', '--jsonl', '--encoding', encoding, file], { timeout: 60000 });
        eq(r.code, 0, `baton tokens --jsonl exit code (stderr: ${r.err.slice(0, 300)})`);
        const lines = r.out.split('\n');
        if (lines[lines.length - 1] === '') lines.pop();
        eq(lines.length, batch.length, 'output lines (one per input text)');
        for (const l of lines) results.push(JSON.parse(l));
        batch = []; size = 0;
    };
    for (const t of texts) {
        // Output is capped at 1 MiB per process by lib.mjs: keep batches small.
        if (size + t.length > 60000) await flush();
        batch.push(t);
        size += t.length;
    }
    await flush();
    return results;
}

function compare(encoding, texts, got) {
    const enc = get_encoding(encoding);
    try {
        let bad = 0, first = '';
        for (let i = 0; i < texts.length; i++) {
            const want = Array.from(enc.encode_ordinary(texts[i]));
            const g = got[i];
            if (g.length !== want.length || g.some((v, k) => v !== want[k])) {
                if (!bad) {
                    let k = 0;
                    while (k < g.length && g[k] === want[k]) k++;
                    first = `text #${i} ${JSON.stringify(texts[i].slice(0, 80))}: first difference at id ${k}: baton [${g.slice(k, k + 6)}] tiktoken [${want.slice(k, k + 6)}]`;
                }
                bad++;
            }
        }
        assert(bad === 0, `${bad}/${texts.length} texts differ from tiktoken; ${first}`);
    } finally {
        enc.free();
    }
}

// ---------------------------------------------------------------- tests

const RANDOM = randomTexts(2000, 20240601);
let compared = 0;

for (const encoding of ENCODINGS) {
    test(`${encoding}: hand-picked corpus matches tiktoken id for id`, async () => {
        compare(encoding, CORPUS, await batonIds(encoding, CORPUS));
        compared += CORPUS.length;
    }, { timeout: 60000 });
    test(`${encoding}: the repo's docs and sources match tiktoken`, async () => {
        const texts = repoTexts();
        assert(texts.length >= 5, `only ${texts.length} repo files found`);
        compare(encoding, texts, await batonIds(encoding, texts));
        compared += texts.length;
    }, { timeout: 120000 });
    test(`${encoding}: ${RANDOM.length} seeded random strings match tiktoken`, async () => {
        compare(encoding, RANDOM, await batonIds(encoding, RANDOM));
        compared += RANDOM.length;
    }, { timeout: 120000 });
}

test('plain count equals the number of ids; --model picks the encoding', async () => {
    const text = "Hello, world! It's 2024.\n안녕하세요 😀\n";
    const f = writeTemp('tok-plain.txt', text);
    for (const [args, encoding] of [[['--encoding', 'cl100k_base'], 'cl100k_base'], [['--model', 'gpt-4'], 'cl100k_base'],
        [['--model', 'gpt-4o-mini'], 'o200k_base'], [[], 'o200k_base'], [['--model', 'openai/gpt-3.5-turbo'], 'cl100k_base']]) {
        const enc = get_encoding(encoding);
        const want = Array.from(enc.encode_ordinary(text));
        enc.free();
        const c = await runBaton(['tokens', ...args, f]);
        eq(c.code, 0, `exit code of tokens ${args.join(' ')} (stderr ${c.err.slice(0, 200)})`);
        eq(c.out.trim(), String(want.length), `count for ${args.join(' ') || 'default'}`);
        const r = await runBaton(['tokens', '--ids', ...args, f]);
        eq(r.code, 0, 'exit code of --ids');
        eq(r.out.trim(), want.join(' '), `ids for ${args.join(' ') || 'default'}`);
    }
});

test('invalid UTF-8 bytes are counted, not rejected', async () => {
    const f = writeTemp('tok-bad.bin', '');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(f, Buffer.from([0x61, 0xff, 0xfe, 0x20, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0x0a]));
    const r = await runBaton(['tokens', '--ids', f]);
    eq(r.code, 0, `exit code (stderr ${r.err.slice(0, 200)})`);
    const ids = r.out.trim().split(' ').map(Number);
    assert(ids.length >= 5 && ids.every((x) => Number.isInteger(x) && x >= 0), `ids: ${r.out}`);
});

test('bad arguments: unknown encoding, missing file, bad --jsonl line', async () => {
    const r1 = await runBaton(['tokens', '--encoding', 'p50k_base', '/dev/null']);
    assert(r1.code === 2 && /encoding/.test(r1.err), `unknown encoding: code ${r1.code} ${r1.err}`);
    const r2 = await runBaton(['tokens', '/nonexistent/baton-tok.txt']);
    assert(r2.code !== 0 && r2.err.includes('/nonexistent/baton-tok.txt'), `missing file: code ${r2.code} ${r2.err}`);
    const f = writeTemp('tok-badline.jsonl', '"ok"\n{"not":"a string"}\n');
    const r3 = await runBaton(['tokens', '--jsonl', f]);
    assert(r3.code !== 0 && /line 2/.test(r3.err), `bad jsonl: code ${r3.code} ${r3.err}`);
    const r4 = await runBaton(['tokens', '--help']);
    assert(r4.code === 0 && /usage/.test(r4.out), 'tokens --help');
});

test('texts compared with tiktoken (summary)', async () => {
    assert(compared >= 2 * (RANDOM.length + CORPUS.length), `only ${compared} texts were compared`);
    console.log(`# ${compared} texts compared with tiktoken across ${ENCODINGS.length} encodings`);
});

await run();
