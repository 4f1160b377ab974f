// Limits shared through Redis (store.redis): two instances on one key store and
// one real redis-server (the Debian package) allow a key's rpm and concurrency
// once in all, not once each; without Redis each instance counts its own (the
// limit doubles); store.redis_unavailable decides what happens when Redis is
// down: open (each instance's own counters) or closed (503).
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { test, run, setup, assert, eq, startBaton, post, get, client, waitFor, metricSum, tmpDir, startRedis, sleep, SLOW } from './lib.mjs';

const MK = 'sk-master-redis-test';
const M = { authorization: `Bearer ${MK}` };
const redis = await setup(() => startRedis());
const cfg = (db, extra = '') => `
server: {workers: 2}
auth: {master_key: "${MK}"}
store: {sqlite: "${join(tmpDir(), db)}"${extra}}
providers:
  sim: {type: sim, seed: 3}
  slow: {type: sim, seed: 4, ttft: 800ms}
  f500: {type: sim, faults: {500: 1}}
  paid: {type: sim, seed: 8, reply_tokens: 24}
  short: {type: sim, seed: 9, reply_tokens: 10}
models:
  brief: {provider: short, model: b1}
  paced: {provider: sim, model: pr, limits: {rpm: 3}}
  spill:
    deployments:
      - {provider: slow, model: first, weight: 1000000, limits: {concurrency: 1}}
      - {provider: sim, model: second}
  priced: {provider: paid, model: p1, price: {input: 0, output: 1000}}
  chat: {provider: sim, model: m1}
  slow: {provider: slow, model: s1}
  guarded:
    strategy: round_robin
    breaker: {failures: 2, cooldown: 10m}
    deployments: [{provider: f500, model: bad}, {provider: sim, model: good}]
`;
// 3 s before an admission counts Redis as down: a loaded test machine (ASan,
// two cores) must not turn a slow answer into the per-process fallback
const shared = `, redis: "${redis.url}", redis_timeout: 3s`;
const a = await setup(() => startBaton(cfg('r.db', shared)));
const b = await setup(() => startBaton(cfg('r.db', shared)));
const c = await setup(() => startBaton(cfg('solo.db')));
const d = await setup(() => startBaton(cfg('solo.db')));

const makeKey = async (base, body) => {
    const r = await post(`${base}/admin/keys`, body, { headers: M });
    eq(r.status, 201, r.text);
    return r.json.key;
};
const status = async (base, key, model = 'chat') => {
    try {
        await client(`${base}/v1`, { apiKey: key }).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
        return 200;
    } catch (e) { return e.status ?? String(e); }
};
// Waits until the other instance's key table has the key (it polls the store);
// GET /v1/models is not counted against a key's limits.
const known = async (base, key) => {
    for (let i = 0; i < 40 * SLOW; i++) {
        if ((await get(`${base}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status === 200) return;
        await sleep(50);
    }
    throw new Error('the other instance never knew the key');
};
// The requests of one calendar minute: starts right after a minute boundary when
// fewer than 15 s of this minute are left, so the count is not split in two.
const freshMinute = async () => { const s = new Date().getSeconds(); if (s > 45) await sleep((61 - s) * 1000); };

test('rpm across two instances sharing Redis: the limit once in all', async () => {
    const key = await makeKey(a.base, { rpm: 6 });
    await known(b.base, key);
    await freshMinute();
    const got = { 200: 0, 429: 0 };
    for (let i = 0; i < 14; i++) {
        const s = await status(i % 2 ? b.base : a.base, key);
        got[s] = (got[s] || 0) + 1;
    }
    eq(got[200], 6, `admitted of 14 over two instances: ${JSON.stringify(got)}`);
    eq(got[429], 8, 'refused');
    const r = await post(`${a.base}/v1/chat/completions`, { model: 'chat', messages: [{ role: 'user', content: 'x' }] },
        { headers: { authorization: `Bearer ${key}` } });
    eq(r.status, 429, 'over');
    eq(r.json?.error?.code, 'rate_limit_exceeded', r.text);
    const ra = Number(r.headers.get('retry-after'));
    assert(ra >= 1 && ra <= 60, `Retry-After ${ra}`);
});

test('without Redis each instance counts its own: the same key gets twice the rpm', async () => {
    const key = await makeKey(c.base, { rpm: 6 });
    await known(d.base, key);
    await freshMinute();
    let ok = 0;
    for (let i = 0; i < 14; i++) if ((await status(i % 2 ? d.base : c.base, key)) === 200) ok++;
    eq(ok, 12, 'six per instance');
});

test('concurrency across two instances: one request in flight in all, the slot given back after', async () => {
    const key = await makeKey(a.base, { concurrency: 1 });
    await known(b.base, key);
    const first = status(a.base, key, 'slow');
    await sleep(200 * SLOW);
    eq(await status(b.base, key, 'slow'), 429, 'a second one on the other instance while the first runs');
    eq(await first, 200, 'the first');
    eq(await status(b.base, key, 'slow'), 200, 'after it ended, the slot is free again');
});

const breakerOpen = async (base) => /baton_deployment_breaker_open\{deployment="f500\/bad"\} 1/.test((await get(`${base}/metrics`)).text);
const chatAs = (base, model) => post(`${base}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'x' }] },
    { headers: { authorization: `Bearer ${MK}` } });

test('a breaker that opens on one instance opens on the others sharing Redis, not on an unshared one', async () => {
    for (let i = 0; i < 6 && !(await breakerOpen(a.base)); i++) eq((await chatAs(a.base, 'guarded')).status, 200, 'answered by the other deployment');
    assert(await breakerOpen(a.base), 'the breaker opened on a');
    await waitFor(() => breakerOpen(b.base), 2000 * SLOW, 'b takes the open breaker from Redis');
    for (let i = 0; i < 6; i++) {
        const r = await chatAs(b.base, 'guarded');
        eq(r.status, 200, 'status');
        eq(r.headers.get('x-baton-attempts'), '1', 'b never tries the broken deployment');
        eq(r.headers.get('x-baton-deployment'), 'sim/good', 'served by');
    }
    const m = (await get(`${b.base}/metrics`)).text;
    eq(metricSum(m, 'baton_deployment_attempts_total', { deployment: 'f500/bad' }), 0, 'attempts at the broken deployment on b');
    // without Redis, another instance learns nothing
    for (let i = 0; i < 6 && !(await breakerOpen(c.base)); i++) await chatAs(c.base, 'guarded');
    assert(await breakerOpen(c.base), 'the breaker opened on c');
    await new Promise((r) => setTimeout(r, 600));
    assert(!(await breakerOpen(d.base)), 'd (no Redis) does not share c\'s breaker');
});

test('a key\'s budget across two instances sharing Redis: spent once in all, no overshoot', async () => {
    // 24 output tokens at 1000 USD per million: 0.024 USD a request; 0.1 USD admits 5
    const key = await makeKey(a.base, { budget_usd: 0.1, budget_period: 'day' });
    await known(b.base, key);
    const got = [];
    for (let i = 0; i < 10; i++) {
        const r = await post(`${(i % 2 ? b : a).base}/v1/chat/completions`, { model: 'priced', messages: [{ role: 'user', content: 'hi' }] },
            { headers: { authorization: `Bearer ${key}` } });
        got.push(r.status);
        if (r.status === 429) {
            eq(r.json?.error?.code, 'insufficient_quota', r.text);
            eq(r.headers.get('x-should-retry'), 'false', 'x-should-retry');
        } else {
            eq(r.headers.get('x-baton-cost-usd'), '0.024', 'cost');
        }
    }
    eq(got.filter((s) => s === 200).length, 5, `admitted over both instances: ${got.join(',')}`);
    eq(got.slice(5).every((s) => s === 429), true, `then refused: ${got.join(',')}`);
});

const putOwner = async (base, path, body) => {
    const r = await fetch(`${base}/admin/${path}`, { method: 'PUT', headers: { ...M, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    eq(r.status, 200, await r.text());
};
const ask = (base, key, model = 'chat', extra = {}) => post(`${base}/v1/chat/completions`,
    { model, messages: [{ role: 'user', content: 'hi' }], ...extra }, { headers: { authorization: `Bearer ${key}` } });

test('a team\'s rpm across two instances sharing Redis: its keys together get it once in all', async () => {
    await putOwner(a.base, 'teams/crew', { rpm: 5 });
    const k1 = await makeKey(a.base, { team: 'crew' });
    const k2 = await makeKey(a.base, { team: 'crew' });
    await known(b.base, k1); await known(b.base, k2);
    await sleep(1200 * SLOW); // the team's limits reach b's key table with its next refresh
    await freshMinute();
    const got = [];
    let over;
    for (let i = 0; i < 12; i++) {
        const r = await ask(i % 2 ? b.base : a.base, i % 3 ? k1 : k2);
        got.push(r.status);
        if (r.status === 429) over = r;
    }
    eq(got.filter((x) => x === 200).length, 5, `admitted over two instances and two keys: ${got.join(',')}`);
    eq(over.json.error.code, 'rate_limit_exceeded', over.text);
    assert(/The team 'crew' of this API key is over its requests per minute \(rpm\) across all instances/.test(over.json.error.message), over.text);
    assert(Number(over.headers.get('retry-after')) >= 1, 'Retry-After');
});

// 'hi' counts 7 prompt tokens; max_tokens 150 makes an estimate of 157 (of 175);
// the usage is 11. Shared and corrected in Redis, two requests fit, on two
// instances, and the third does not (22 + 157); each instance alone would take two.
test('a key\'s tpm across two instances sharing Redis: estimated at admit, corrected at the end', async () => {
    const key = await makeKey(a.base, { tpm: 175 });
    await known(b.base, key);
    await freshMinute();
    const got = [];
    let last;
    for (let i = 0; i < 4; i++) { last = await ask(i % 2 ? b.base : a.base, key, 'brief', { max_tokens: 150 }); got.push(last.status); }
    eq(got.join(','), '200,200,429,429', 'statuses');
    assert(/This API key is over its tokens per minute \(tpm\) across all instances/.test(last.json.error.message), last.text);
    eq((await ask(b.base, key, 'brief', { max_tokens: 5 })).status, 200, 'a request within what is left');
});

test('a user\'s budget across two instances sharing Redis: spent once in all, no overshoot', async () => {
    // 0.024 USD a request; 0.1 USD admits 5, over two keys of the user and two instances
    await putOwner(a.base, 'users/dana', { budget_usd: 0.1, budget_period: 'day' });
    const k1 = await makeKey(a.base, { user: 'dana' });
    const k2 = await makeKey(a.base, { user: 'dana' });
    await known(b.base, k1); await known(b.base, k2);
    await sleep(1200 * SLOW);
    const got = [];
    let refused;
    for (let i = 0; i < 10; i++) {
        const r = await ask(i % 2 ? b.base : a.base, i % 3 ? k1 : k2, 'priced');
        got.push(r.status);
        if (r.status === 429 && !refused) refused = r;
    }
    eq(got.filter((x) => x === 200).length, 5, `admitted: ${got.join(',')}`);
    eq(got.slice(5).every((x) => x === 429), true, `then refused: ${got.join(',')}`);
    eq(refused.json.error.code, 'insufficient_quota', refused.text);
    assert(/The user 'dana' of this API key has used its budget of 0\.1 USD for the day/.test(refused.json.error.message), refused.text);
});

test('a model\'s rpm across two instances sharing Redis: once in all (the master key too); each its own without', async () => {
    await freshMinute();
    const shared = [], solo = [];
    let over;
    for (let i = 0; i < 8; i++) {
        const r = await ask(i % 2 ? b.base : a.base, MK, 'paced');
        shared.push(r.status);
        if (r.status === 429) over = r;
        solo.push((await ask(i % 2 ? d.base : c.base, MK, 'paced')).status);
    }
    eq(shared.filter((x) => x === 200).length, 3, `with Redis: ${shared.join(',')}`);
    eq(solo.filter((x) => x === 200).length, 6, `without: ${solo.join(',')}`);
    eq(over.json.error.code, 'rate_limit_exceeded', over.text);
    assert(/The model 'paced' is over its requests per minute \(rpm\) across all instances/.test(over.json.error.message), over.text);
});

test('a deployment\'s concurrency across two instances sharing Redis: the other instance spills to the next deployment', async () => {
    const dep = (r) => r.headers.get('x-baton-deployment');
    const one = ask(a.base, MK, 'spill');
    await sleep(300);
    const two = await ask(b.base, MK, 'spill');
    eq(two.status, 200, two.text);
    eq(dep(two), 'sim/second', 'b found the first deployment\'s one slot taken on a');
    assert(/slow\/first=rate_limit, sim\/second=ok/.test(two.headers.get('x-baton-route')), two.headers.get('x-baton-route'));
    eq(dep(await one), 'slow/first', 'a took it');
    eq(dep(await ask(b.base, MK, 'spill')), 'slow/first', 'free again once a\'s attempt ended');
    // without Redis each instance has its own slot
    const three = ask(c.base, MK, 'spill');
    await sleep(300);
    eq(dep(await ask(d.base, MK, 'spill')), 'slow/first', 'd counts its own');
    eq(dep(await three), 'slow/first', 'c too');
});

// The scripts are called by SHA-1 (EVALSHA), loaded when a connection is made;
// a Redis whose script cache was flushed answers NOSCRIPT, and baton sends the
// call again whole: nothing is lost, neither an admission nor a charge.
test('a flushed script cache: admissions and charges still count (the call sent again whole)', async () => {
    const flush = () => execFileSync('redis-cli', ['-p', String(redis.port), 'SCRIPT', 'FLUSH']);
    // 0.024 USD a request; 0.05 admits 3 (0, 0.024, 0.048 spent before each)
    const key = await makeKey(a.base, { budget_usd: 0.05, budget_period: 'day' });
    await known(b.base, key);
    const got = [];
    for (let i = 0; i < 5; i++) {
        flush();
        got.push((await ask(i % 2 ? b.base : a.base, key, 'priced')).status);
    }
    eq(got.join(','), '200,200,200,429,429', 'statuses');
});

test('Redis down: open falls back to each instance\'s own counters, closed answers 503', async () => {
    const open = await setup(() => startBaton(cfg('down.db', ', redis: "redis://127.0.0.1:1/0"')));
    const closed = await setup(() => startBaton(cfg('down.db', ', redis: "redis://127.0.0.1:1/0", redis_unavailable: closed')));
    const key = await makeKey(open.base, { rpm: 2 });
    await known(closed.base, key);
    await freshMinute();
    const o = [];
    for (let i = 0; i < 3; i++) o.push(await status(open.base, key));
    eq(o.join(','), '200,200,429', 'open: this process counts');
    const r = await post(`${closed.base}/v1/chat/completions`, { model: 'chat', messages: [{ role: 'user', content: 'x' }] },
        { headers: { authorization: `Bearer ${key}` } });
    eq(r.status, 503, `closed: ${r.text}`);
    eq(r.json?.error?.code, 'limits_unavailable', r.text);
    // a key without limits never needs Redis
    const free = await makeKey(open.base, {});
    await known(closed.base, free);
    eq(await status(closed.base, free), 200, 'no limits: served even when closed');
    // a deployment's limits: open counts them here; closed skips the deployment
    eq((await ask(open.base, MK, 'spill')).headers.get('x-baton-deployment'), 'slow/first', 'open: the first deployment');
    const sk = await ask(closed.base, MK, 'spill');
    eq(sk.headers.get('x-baton-deployment'), 'sim/second', `closed: the next one (${sk.headers.get('x-baton-route')})`);
    await open.stop();
    await closed.stop();
});

await run();
