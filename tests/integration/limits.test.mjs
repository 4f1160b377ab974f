// A model's and a deployment's own limits (`limits: {rpm, concurrency}`, per
// process): over a model's, 429 rate_limit_exceeded naming it; over a
// deployment's, the next deployment answers (nothing sent to the first).
import { test, run, setup, assert, eq, startBaton, post, sleep } from './lib.mjs';

const b = await setup(() => startBaton(`
server: {workers: 1}
providers:
  ok: {type: sim, seed: 2}
  slow: {type: sim, seed: 3, ttft: 600ms}
models:
  capped: {provider: slow, model: c1, limits: {concurrency: 1}}
  paced: {provider: ok, model: r1, limits: {rpm: 3}}
  spill:
    deployments:
      - {provider: slow, model: first, weight: 1000, limits: {concurrency: 1}}
      - {provider: slow, model: second}
`));
const CHAT = `${b.url}/chat/completions`;
const chat = (model) => post(CHAT, { model, messages: [{ role: 'user', content: 'hi' }] });
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

await run();
