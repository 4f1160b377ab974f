// A model's and a deployment's own limits (`limits: {rpm, tpm, concurrency}`,
// per process): over a model's, 429 rate_limit_exceeded naming it; over a
// deployment's, the next deployment answers (nothing sent to the first). Tokens
// per minute take each request's estimate (prompt + max_tokens) and correct it
// to the usage when it ends; a hedge attempt counts against its deployment's
// limits like any attempt.
import { test, run, setup, assert, eq, startBaton, post, sleep } from './lib.mjs';

const b = await setup(() => startBaton(`
server: {workers: 1}
providers:
  ok: {type: sim, seed: 2}
  slow: {type: sim, seed: 3, ttft: 600ms}
  short: {type: sim, seed: 5, reply_tokens: 10}
  late: {type: sim, seed: 6, ttft: 1s}
models:
  metered: {provider: short, model: t1, limits: {tpm: 175}}
  spill-tokens:
    deployments:
      - {provider: short, model: tfirst, weight: 1000000, limits: {tpm: 175}}
      - {provider: short, model: tsecond}
  hedged:
    hedge: {after: 100ms}
    deployments:
      - {provider: late, model: h1, weight: 1000000}
      - {provider: late, model: h2, limits: {concurrency: 1}}
  capped: {provider: slow, model: c1, limits: {concurrency: 1}}
  paced: {provider: ok, model: r1, limits: {rpm: 3}}
  spill:
    deployments:
      - {provider: slow, model: first, weight: 1000, limits: {concurrency: 1}}
      - {provider: slow, model: second}
`));
const CHAT = `${b.url}/chat/completions`;
const chat = (model, extra = {}) => post(CHAT, { model, messages: [{ role: 'user', content: 'hi' }], ...extra });
const freshMinute = async () => { const s = new Date().getSeconds(); if (s > 50) await sleep((61 - s) * 1000); };

test('a model\'s concurrency: a second request while one runs is a 429 naming the model; free again after', async () => {
    const first = chat('capped');
    await sleep(150);
    const second = await chat('capped');
    eq(second.status, 429, second.text);
    eq(second.json.error.code, 'rate_limit_exceeded', second.text);
    assert(/The model 'capped'/.test(second.json.error.message), second.text);
    assert(Number(second.headers.get('retry-after')) >= 1, 'retry-after');
    eq((await first).status, 200, 'the first');
    eq((await chat('capped')).status, 200, 'after it ended');
});

test('a model\'s rpm: the fourth request of a minute is a 429', async () => {
    await freshMinute();
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await chat('paced')).status);
    eq(got.join(','), '200,200,200,429,429', 'statuses');
});

test('a deployment\'s concurrency: the next deployment answers, the first is not tried', async () => {
    const one = chat('spill');
    await sleep(150);
    const two = await chat('spill');
    eq(two.status, 200, two.text);
    eq(two.headers.get('x-baton-deployment'), 'slow/second', 'spilled to the second');
    assert(/slow\/first=rate_limit, slow\/second=ok/.test(two.headers.get('x-baton-route')), two.headers.get('x-baton-route'));
    const r1 = await one;
    eq(r1.headers.get('x-baton-deployment'), 'slow/first', 'the first took the first request');
    // once it ended, the first takes requests again
    eq((await chat('spill')).headers.get('x-baton-deployment'), 'slow/first', 'free again');
});

// One request: 'hi' counts 7 prompt tokens as OpenAI counts a message, so
// max_tokens 150 makes an estimate of 157 (of 175); the simulator reports a
// usage of 11 (1 + 10 reply tokens). Corrected, the minute holds 11 after the
// first, so the second fits (168), and 22 after it, so the third does not (179).
// Without the correction the second would not fit (314).
test('a model\'s tpm: the estimate taken at admit, corrected to the usage; over it a 429 naming the model', async () => {
    await freshMinute();
    const got = [];
    let last;
    for (let i = 0; i < 3; i++) { last = await chat('metered', { max_tokens: 150 }); got.push(last.status); }
    eq(got.join(','), '200,200,429', 'statuses');
    eq(last.json.error.code, 'rate_limit_exceeded', last.text);
    assert(/The model 'metered' is over its tokens per minute/.test(last.json.error.message), last.text);
    const ra = Number(last.headers.get('retry-after'));
    assert(ra >= 1 && ra <= 60, `Retry-After ${ra}`);
    // a small request still fits: the minute holds 22 of 175
    eq((await chat('metered', { max_tokens: 5 })).status, 200, 'a request within what is left');
});

test('a deployment\'s tpm: corrected after each request; past it the next deployment answers', async () => {
    await freshMinute();
    const deps = [];
    for (let i = 0; i < 3; i++) {
        const r = await chat('spill-tokens', { max_tokens: 150 });
        eq(r.status, 200, r.text);
        deps.push(r.headers.get('x-baton-deployment'));
        if (i === 2) assert(/short\/tfirst=rate_limit, short\/tsecond=ok/.test(r.headers.get('x-baton-route')), r.headers.get('x-baton-route'));
    }
    eq(deps.join(','), 'short/tfirst,short/tfirst,short/tsecond', 'deployments');
});

test('a hedge counts against its deployment\'s concurrency: a second request finds the slot taken and does not hedge', async () => {
    const first = chat('hedged');
    await sleep(300);
    const second = await chat('hedged');
    const r1 = await first;
    eq(r1.status, 200, r1.text);
    eq(second.status, 200, second.text);
    // the first request hedged to h2 (holding its one slot until h1 answered)
    assert(/late\/h1=hedged_out|late\/h2=hedged_out/.test(r1.headers.get('x-baton-route')), `first: ${r1.headers.get('x-baton-route')}`);
    // the second's hedge would have needed that slot
    assert(/late\/h2=not_hedged_over_concurrency/.test(second.headers.get('x-baton-route')), `second: ${second.headers.get('x-baton-route')}`);
    // the slot comes back when the first's hedge ends: a third request hedges again
    const third = await chat('hedged');
    assert(/hedged_out/.test(third.headers.get('x-baton-route')) && !/not_hedged/.test(third.headers.get('x-baton-route')), `third: ${third.headers.get('x-baton-route')}`);
});

await run();
