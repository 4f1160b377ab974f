// The usage ledger and key budgets (docs/governance.md): one ledger row per
// request, written in batches off the request path and every one flushed at
// SIGTERM; a key's budget enforced with the official OpenAI SDK (429
// insufficient_quota once what was spent reaches it, overshooting by at most
// one request), the 80% warning header, streams charged as they end (a cut
// stream for what was sent), spend surviving a restart and shared by two
// instances on one store.
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startFake, cannedChunks } from '../fake/fake_provider.mjs';
import {
    test, run, setup, assert, eq, startBaton, post, get, http, client, tmpDir, waitFor, sleep, runBaton, freePort, SLOW,
} from './lib.mjs';

const MK = 'sk-master-budget-test';
const M = { authorization: `Bearer ${MK}` };
const dbPath = (name) => join(tmpDir(), `${name}.db`);
const cfg = (db, store = '') => `
server: {workers: 2}
auth: {master_key: "${MK}"}
store: {sqlite: "${db}"${store}}
providers:
  sim: {type: sim, seed: 5}
  cut: {type: sim, seed: 6, faults: {reset_mid: 1}}
models:
  demo: {provider: sim, price: {input: 0.15, output: 0.60}}
  free: {provider: sim, model: f1}
  cut: {provider: cut, price: {input: 1, output: 2}}
  costly: {provider: sim, model: c1, price: {input: 0, output: 1000}}
  thrifty:
    rules:
      - when: {budget_left_below: 0.5}
        model: free
      - model: costly
`;

// The ledger read with Python's sqlite3 (python3 is a build dependency): rows as objects.
function rows(db, where = '1') {
    const py = 'import sqlite3, sys, json\n' +
        'c = sqlite3.connect(sys.argv[1]); c.row_factory = sqlite3.Row\n' +
        'print(json.dumps([dict(r) for r in c.execute("SELECT * FROM usage WHERE " + sys.argv[2] + " ORDER BY id")]))';
    return JSON.parse(execFileSync('python3', ['-c', py, db, where], { encoding: 'utf8' }));
}
const PUSD = 10n ** 12n;
// "0.00001455" -> 14550000n pico-USD, exactly
function pusd(dec) {
    const [i, f = ''] = dec.split('.');
    return BigInt(i) * PUSD + BigInt((f + '0'.repeat(12)).slice(0, 12));
}
const createKey = async (base, body) => {
    const r = await post(`${base}/admin/keys`, body, { headers: M });
    eq(r.status, 201, `POST /admin/keys (${r.text})`);
    return r.json;
};
const ask = (base, key, model = 'demo') =>
    client(`${base}/v1`, { apiKey: key }).chat.completions
        .create({ model, messages: [{ role: 'user', content: 'hi' }] }).withResponse();

test('every request is a ledger row, and SIGTERM writes every queued one', async () => {
    const db = dbPath('ledger');
    // a long interval and a large batch: nothing is written before the SIGTERM
    const b = await startBaton(cfg(db, ', ledger_interval: 30s, ledger_batch: 10000'));
    const k = await createKey(b.base, { user: 'ann', team: 'red' });
    const N = 40;
    let want = 0n;
    const jobs = [];
    for (let i = 0; i < N; i++) {
        const key = i % 2 ? k.key : MK;
        if (i % 4 === 3) {
            jobs.push((async () => {
                const s = await client(`${b.base}/v1`, { apiKey: key }).chat.completions.create({
                    model: 'demo', stream: true, messages: [{ role: 'user', content: 'hi' }],
                    stream_options: { include_usage: true },
                }, { headers: { 'x-baton-include-cost': 'true' } });
                let cost;
                for await (const c of s) if (c.usage) cost = String(c.usage.cost_usd);
                assert(cost, 'cost_usd on the usage chunk');
                return cost;
            })());
        } else {
            jobs.push(ask(b.base, key).then((r) => r.response.headers.get('x-baton-cost-usd')));
        }
    }
    for (const c of await Promise.all(jobs)) want += pusd(c);
    eq(rows(db).length, 0, 'nothing written before the interval');
    await b.stop(); // SIGTERM: drain, then the ledger's last batch
    const got = rows(db);
    eq(got.length, N, 'one row per request after SIGTERM');
    eq(got.reduce((s, r) => s + BigInt(r.cost_pusd), 0n), want, 'the rows cost what the replies said');
    const mine = got.filter((r) => r.key_id === k.id);
    eq(mine.length, N / 2, 'rows of the key');
    for (const r of mine) {
        eq(r.user, 'ann'); eq(r.team, 'red'); eq(r.model, 'demo');
        eq(r.provider, 'sim'); eq(r.provider_model, 'demo'); eq(r.status, 200);
        assert(r.input_tokens > 0 && r.output_tokens > 0, `tokens ${JSON.stringify(r)}`);
        eq(r.cost_known, 1); eq(r.estimated, 0);
    }
    eq(got.filter((r) => r.key_id === 'master').length, N / 2, 'rows of the master key');
}, { timeout: 60000 });

test('ledger_batch records are written at once; ledger_interval bounds the wait', async () => {
    const db = dbPath('batch');
    const b = await startBaton(cfg(db, ', ledger_interval: 60s, ledger_batch: 5'));
    for (let i = 0; i < 4; i++) await ask(b.base, MK);
    await sleep(300 * SLOW);
    eq(rows(db).length, 0, 'four of a batch of five wait');
    await ask(b.base, MK);
    await waitFor(() => rows(db).length === 5, 2000 * SLOW, 'the fifth starts the write');
    await b.stop();
    const db2 = dbPath('interval');
    const c = await startBaton(cfg(db2, ', ledger_interval: 200ms'));
    const t0 = Date.now();
    await ask(c.base, MK);
    await waitFor(() => rows(db2).length === 1, 3000 * SLOW, 'written after the interval');
    assert(Date.now() - t0 < 2000 * SLOW, 'within the interval');
    await c.stop();
}, { timeout: 30000 });

test('a key over its budget gets 429 insufficient_quota; overshoot at most one request; warning past 80%', async () => {
    const db = dbPath('budget');
    const b = await startBaton(cfg(db));
    const budget = pusd('0.0001');
    const k = await createKey(b.base, { budget_usd: 0.0001, budget_period: 'day' });
    let spent = 0n, ok = 0, maxCost = 0n, warned = 0;
    for (let i = 0; i < 30; i++) {
        let r;
        try { r = await ask(b.base, k.key); } catch (e) {
            eq(e.status, 429, `refused: ${e.message}`);
            eq(e.error?.type ?? e.type, 'insufficient_quota', 'type');
            eq(e.code, 'insufficient_quota', 'code');
            assert(/budget of 0\.0001 USD for the day/.test(e.message) && /resets at \d{4}-\d\d-\d\dT00:00:00Z/.test(e.message), e.message);
            break;
        }
        const w = r.response.headers.get('x-baton-budget-warning');
        // the warning reflects what was spent before this request
        if (spent * 5n >= budget * 4n) {
            assert(w && /^\d+% of 0\.0001 USD day budget used$/.test(w), `warning at ${spent}: ${w}`);
            warned++;
        } else {
            eq(w, null, `no warning at ${spent}`);
        }
        const c = pusd(r.response.headers.get('x-baton-cost-usd'));
        spent += c; ok++;
        if (c > maxCost) maxCost = c;
    }
    assert(ok > 1 && ok < 30, `requests before the refusal: ${ok}`);
    assert(spent >= budget, `refused only once spent (${spent}) reached the budget`);
    assert(spent - budget < maxCost, `overshoot ${spent - budget} below one request (${maxCost})`);
    assert(warned >= 1, 'the warning header was seen');
    // another key and the master key still pass
    await ask(b.base, MK);
    await ask(b.base, (await createKey(b.base, { budget_usd: 1 })).key);
    // SIGTERM, restart: the spend comes back from the ledger
    await b.stop();
    const b2 = await startBaton(cfg(db));
    const e = await ask(b2.base, k.key).then(() => null, (x) => x);
    assert(e, 'still refused after a restart');
    eq(e.status, 429); eq(e.code, 'insufficient_quota');
    // raising the budget lets it through at once
    const r = await fetch(`${b2.base}/admin/keys/${k.id}`, {
        method: 'PATCH', headers: { ...M, 'content-type': 'application/json' }, body: JSON.stringify({ budget_usd: 1 }),
    });
    eq(r.status, 200);
    await ask(b2.base, k.key);
    await b2.stop();
}, { timeout: 60000 });

test('streams are charged as they end; a stream cut short is charged for what was sent', async () => {
    const db = dbPath('streams');
    const b = await startBaton(cfg(db));
    const k = await createKey(b.base, { budget_usd: 0.00005 });
    const oa = client(`${b.base}/v1`, { apiKey: k.key });
    let n = 0, refused = null;
    for (let i = 0; i < 30 && !refused; i++) {
        try {
            const s = await oa.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'hi' }] });
            for await (const _ of s) { /* read to the end */ }
            n++;
        } catch (e) { refused = e; }
    }
    assert(refused, 'a stream was refused');
    eq(refused.status, 429); eq(refused.code, 'insufficient_quota');
    assert(n >= 1, `streams before: ${n}`);
    // a cut stream: estimated from the events sent, charged, recorded
    const k2 = await createKey(b.base, { budget_usd: 5 });
    try {
        const s = await client(`${b.base}/v1`, { apiKey: k2.key }).chat.completions.create({
            model: 'cut', stream: true, messages: [{ role: 'user', content: 'hi' }] });
        for await (const _ of s) { /* until it breaks */ }
    } catch { /* the error event */ }
    await waitFor(() => rows(db, `key_id = '${k2.id}'`).length === 1, 3000 * SLOW, 'the cut stream recorded');
    const [r] = rows(db, `key_id = '${k2.id}'`);
    eq(r.estimated, 1, 'estimated');
    assert(r.output_tokens > 0 && BigInt(r.cost_pusd) > 0n, `charged ${JSON.stringify(r)}`);
    await b.stop();
}, { timeout: 60000 });

test('two instances on one store: one sees the other\'s spend within about a second', async () => {
    const db = dbPath('shared');
    const a = await startBaton(cfg(db, ', ledger_interval: 200ms'));
    const b = await startBaton(cfg(db, ', ledger_interval: 200ms'));
    const k = await createKey(a.base, { budget_usd: 0.00003 });
    await waitFor(async () => (await ask(b.base, k.key).then(() => true, () => false)), 2000 * SLOW, 'b knows the key');
    // spend it on a
    for (let i = 0; i < 10; i++) if (!(await ask(a.base, k.key).then(() => true, () => false))) break;
    await waitFor(async () => (await ask(b.base, k.key).then(() => false, (e) => e.status === 429)),
        3000 * SLOW, 'b refuses the key too');
    await a.stop(); await b.stop();
}, { timeout: 30000 });

test('GET /admin/usage and baton usage sum the ledger by key, team, user, model, deployment and day', async () => {
    const db = dbPath('usage');
    const b = await startBaton(cfg(db, ', ledger_interval: 30s'));
    const k1 = await createKey(b.base, { user: 'ann', team: 'red' });
    const k2 = await createKey(b.base, { user: 'bob', team: 'red' });
    const cost = { [k1.id]: 0n, [k2.id]: 0n, master: 0n };
    const jobs = [[k1, 'demo'], [k1, 'demo'], [k1, 'free'], [k2, 'demo'], [null, 'demo']];
    for (const [k, model] of jobs) {
        const r = await ask(b.base, k ? k.key : MK, model);
        cost[k ? k.id : 'master'] += pusd(r.response.headers.get('x-baton-cost-usd') ?? '0');
    }
    // records still queued (a 30 s interval) are written before the report
    const all = await get(`${b.base}/admin/usage`, { headers: M });
    eq(all.status, 200, all.text);
    eq(all.json.object, 'list'); eq(all.json.group, null); eq(all.json.data.length, 1);
    eq(all.json.data[0].requests, 5);
    eq(pusd(all.json.data[0].cost_usd), cost[k1.id] + cost[k2.id] + cost.master, 'total cost, exact');
    eq(typeof all.json.data[0].cost_usd, 'string', 'cost_usd is a decimal string');
    const byKey = await get(`${b.base}/admin/usage?group=key`, { headers: M });
    const row = (j, f, v) => j.data.find((r) => r[f] === v);
    eq(row(byKey.json, 'key', k1.id).requests, 3);
    eq(pusd(row(byKey.json, 'key', k1.id).cost_usd), cost[k1.id]);
    eq(row(byKey.json, 'key', 'master').requests, 1);
    const team = await get(`${b.base}/admin/usage?team=red&group=user`, { headers: M });
    eq(team.json.data.map((r) => `${r.user}:${r.requests}`).join(','), 'ann:3,bob:1');
    const dep = await get(`${b.base}/admin/usage?key=${k1.id}&group=deployment`, { headers: M });
    eq(dep.json.data.map((r) => `${r.deployment}:${r.requests}`).join(','), 'sim/demo:2,sim/f1:1');
    const model = await get(`${b.base}/admin/usage?group=model&model=free`, { headers: M });
    eq(model.json.data.length, 1); eq(model.json.data[0].model, 'free');
    const today = new Date().toISOString().slice(0, 10);
    const day = await get(`${b.base}/admin/usage?group=day&since=${today}`, { headers: M });
    eq(day.json.data.length, 1); eq(day.json.data[0].day, today); eq(day.json.data[0].requests, 5);
    const later = await get(`${b.base}/admin/usage?since=2999-01-01`, { headers: M });
    eq(later.json.data.length, 0, 'nothing since a future date');
    for (const q of ['group=week', 'since=2026-02-30', 'since=yesterday', 'color=red', 'key=']) {
        const r = await get(`${b.base}/admin/usage?${q}`, { headers: M });
        eq(r.status, 400, `${q}: ${r.text}`); eq(r.json.error.code, 'invalid_usage_query');
    }
    eq((await get(`${b.base}/admin/usage`, { headers: { authorization: `Bearer ${k1.key}` } })).status, 403, 'a virtual key');
    eq((await post(`${b.base}/admin/usage`, {}, { headers: M })).status, 405);
    // the command line reads the same file
    await b.stop();
    const t = await runBaton(['usage', '-c', b.cfg, '--by', 'key']);
    eq(t.code, 0, t.err);
    const lines = t.out.trim().split('\n');
    assert(/^KEY\s+REQUESTS\s+INPUT\s+CACHED\s+OUTPUT\s+REASONING\s+COST_USD$/.test(lines[0]), lines[0]);
    const mine = lines.find((l) => l.startsWith(k1.id)).split(/\s+/);
    eq(mine[1], '3'); eq(pusd(mine[6]), cost[k1.id]);
    const j = await runBaton(['usage', '-c', b.cfg, '--by', 'team', '--since', today, '--json']);
    eq(j.code, 0, j.err);
    eq(JSON.parse(j.out).data.find((r) => r.team === 'red').requests, 4);
    const bad = await runBaton(['usage', '-c', b.cfg, '--by', 'week']);
    eq(bad.code, 2); assert(/--by must be one of/.test(bad.err), bad.err);
}, { timeout: 30000 });

test('tpm: the prompt and max_tokens are taken at admit, corrected to the usage at the end', async () => {
    const sec = new Date().getUTCSeconds();
    if (sec > 50) await sleep((61 - sec) * 1000); // keep the requests inside one calendar minute
    const db = dbPath('tpm');
    const b = await startBaton(cfg(db));
    const k = await createKey(b.base, { tpm: 100 });
    const oa = client(`${b.base}/v1`, { apiKey: k.key });
    const one = () => oa.chat.completions.create({ model: 'demo', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    // each estimate is over 50 (50 + the prompt): without the correction the second would not fit
    const r1 = await one();
    const r2 = await one();
    assert(r1.usage.total_tokens + r2.usage.total_tokens <= 50, `usage ${r1.usage.total_tokens} + ${r2.usage.total_tokens}`);
    const e = await one().then(() => null, (x) => x);
    assert(e, 'the third does not fit');
    eq(e.status, 429); eq(e.code, 'rate_limit_exceeded');
    assert(/tokens per minute/.test(e.message), e.message);
    const ra = Number(e.headers.get('retry-after'));
    assert(ra >= 1 && ra <= 60, `retry-after ${ra}`);
    // a request that fails gives its estimate back: another key is unaffected meanwhile
    await ask(b.base, MK);
    await b.stop();
}, { timeout: 30000 });

test('/admin/teams and /admin/users: a budget shared by the keys of a team or a user', async () => {
    const db = dbPath('owners');
    const b = await startBaton(cfg(db));
    let base = b.base;
    const put = (path, body) => fetch(`${base}${path}`, {
        method: 'PUT', headers: { ...M, 'content-type': 'application/json' }, body: JSON.stringify(body) })
        .then(async (r) => ({ status: r.status, json: await r.json() }));
    const t = await put('/admin/teams/red%20team', { budget_usd: 0.00004, budget_period: 'week' });
    eq(t.status, 200, JSON.stringify(t.json));
    eq(t.json.object, 'team'); eq(t.json.name, 'red team'); eq(t.json.budget_usd, 0.00004);
    eq(t.json.budget_period, 'week'); eq(t.json.spent_usd, '0');
    const k1 = await createKey(b.base, { team: 'red team' });
    const k2 = await createKey(b.base, { team: 'red team', user: 'cy' });
    const other = await createKey(b.base, { team: 'blue' });
    // the two keys spend one budget between them
    let spent = 0n, refused = null;
    for (let i = 0; i < 20 && !refused; i++) {
        try {
            const r = await ask(b.base, (i % 2 ? k2 : k1).key);
            spent += pusd(r.response.headers.get('x-baton-cost-usd'));
        } catch (e) { refused = e; }
    }
    assert(refused, 'refused once the team spent its budget');
    eq(refused.status, 429); eq(refused.code, 'insufficient_quota');
    assert(/The team 'red team' of this API key has used its budget of 0\.00004 USD for the week/.test(refused.message), refused.message);
    assert(spent >= pusd('0.00004'), `spent ${spent}`);
    await ask(b.base, other.key); // another team is not held
    const list = await get(`${b.base}/admin/teams`, { headers: M });
    eq(list.json.data.length, 1); eq(pusd(list.json.data[0].spent_usd), spent, 'spent_usd');
    // a user's budget: cy is refused once the user's own budget is spent (the team's raised)
    eq((await put('/admin/teams/red%20team', { budget_usd: 100 })).json.budget_period, 'week', 'PUT keeps what it does not give');
    const u = await put('/admin/users/cy', { budget_usd: 0 });
    eq(u.json.object, 'user'); eq(u.json.budget_period, 'month');
    const e = await ask(b.base, k2.key).then(() => null, (x) => x);
    assert(e && /The user 'cy'/.test(e.message), e && e.message);
    await ask(b.base, k1.key); // k1 has no user: it passes
    // refusals: fields other than the budget's, bad names, unknown owners, methods
    const bad = await put('/admin/teams/x', { models: ['demo'] });
    eq(bad.status, 400); eq(bad.json.error.code, 'invalid_owner_field');
    eq((await put('/admin/teams/x', { budget_usd: -1 })).status, 400);
    eq((await put('/admin/teams/a%0Ab', { budget_usd: 1 })).status, 400, 'a control character');
    eq((await get(`${b.base}/admin/users/nobody`, { headers: M })).status, 404);
    // POST creates one, in the shape of a key's fields: the name as `name` or `team` (`user`)
    const made = await post(`${b.base}/admin/teams`, { name: 'ops', budget_usd: 2.5, rpm: 5 }, { headers: M });
    eq(made.status, 201, made.text);
    eq(made.json.object, 'team'); eq(made.json.name, 'ops'); eq(made.json.budget_usd, 2.5);
    eq(made.json.budget_period, 'month'); eq(made.json.rpm, 5);
    const twice = await post(`${b.base}/admin/teams`, { team: 'ops' }, { headers: M });
    eq(twice.status, 409, twice.text); eq(twice.json.error.code, 'owner_exists');
    eq((await get(`${b.base}/admin/teams/ops`, { headers: M })).json.rpm, 5, 'the 409 changed nothing');
    const u2 = await post(`${b.base}/admin/users`, { user: 'zed', tpm: 1000 }, { headers: M });
    eq(u2.status, 201, u2.text); eq(u2.json.object, 'user'); eq(u2.json.tpm, 1000);
    for (const body of [{}, { budget_usd: 1 }, { name: 'x', models: ['a'] }, { name: 'x', budget_usd: -1 }, { name: '' }])
        eq((await post(`${b.base}/admin/teams`, body, { headers: M })).status, 400, JSON.stringify(body));
    eq((await http('PUT', `${b.base}/admin/teams`, { headers: M, body: {} })).status, 405);
    eq((await get(`${b.base}/admin/teams`, { headers: { authorization: `Bearer ${k1.key}` } })).status, 403);
    // DELETE removes the budget: cy passes again; restart keeps the team's
    const d = await fetch(`${b.base}/admin/users/cy`, { method: 'DELETE', headers: M });
    eq(d.status, 200);
    await ask(b.base, k2.key);
    await b.stop();
    const b2 = await startBaton(cfg(db));
    base = b2.base;
    const again = await get(`${b2.base}/admin/teams/red%20team`, { headers: M });
    eq(again.json.budget_usd, 100);
    assert(pusd(again.json.spent_usd) > spent, `the team's spend after a restart: ${again.json.spent_usd}`);
    // limits of their own: a team's rpm and concurrency held across its keys
    const sec = new Date().getUTCSeconds();
    if (sec > 55) await sleep((61 - sec) * 1000);
    const lim = await put('/admin/teams/green', { rpm: 2 });
    eq(lim.json.rpm, 2); eq(lim.json.tpm, null); eq(lim.json.concurrency, null);
    const g1 = await createKey(b2.base, { team: 'green' });
    const g2 = await createKey(b2.base, { team: 'green' });
    await ask(b2.base, g1.key);
    await ask(b2.base, g2.key);
    const over = await ask(b2.base, g1.key).then(() => null, (x) => x);
    assert(over, 'the team\'s third request in a minute');
    eq(over.status, 429); eq(over.code, 'rate_limit_exceeded');
    assert(/The team 'green' of this API key is over its requests per minute/.test(over.message), over.message);
    assert(Number(over.headers.get('retry-after')) >= 1, 'retry-after');
    await b2.stop();
}, { timeout: 30000 });

test('a stream is charged before its end marker reaches the client (the provider holding the connection after it)', async () => {
    const fake = await startFake(await freePort());
    // usage 9 + 4 tokens at 1000 USD per million: 0.013 USD, over a 0.01 budget
    fake.handle((req, res, h) => h.sse(cannedChunks('held', { usage: true }), { gapMs: 1, hold: true }));
    const db = dbPath('held');
    const b = await startBaton(`
auth: {master_key: "${MK}"}
store: {sqlite: "${db}"}
providers:
  fake: {type: openai, base_url: "${fake.url}", api_key: "sk-held-fake"}
models:
  held: {provider: fake, price: {input: 1000, output: 1000}}
`);
    const k = await createKey(b.base, { budget_usd: 0.01 });
    const ac = new AbortController();
    const r = await fetch(`${b.base}/v1/chat/completions`, {
        method: 'POST', signal: ac.signal,
        headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'held', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    eq(r.status, 200);
    const reader = r.body.getReader();
    let text = '';
    while (!text.includes('data: [DONE]')) {
        const { value, done } = await reader.read();
        assert(!done, 'the stream ended before [DONE]');
        text += new TextDecoder().decode(value);
    }
    // the upstream is still open: the stream has not ended, yet the cost is charged
    const next = await post(`${b.base}/v1/chat/completions`, { model: 'held', messages: [{ role: 'user', content: 'hi' }] },
        { headers: { authorization: `Bearer ${k.key}` } });
    eq(next.status, 429, next.text);
    eq(next.json.error.code, 'insufficient_quota');
    eq(next.json.error.type, 'insufficient_quota');
    eq(next.headers.get('x-should-retry'), 'false', 'SDKs are told not to retry');
    eq(next.headers.get('retry-after'), null, 'no Retry-After');
    ac.abort();
    await b.stop();
    await fake.stop();
}, { timeout: 30000 });

test('a rule with budget_left_below sends a key near its budget to a cheaper model', async () => {
    const b = await startBaton(cfg(dbPath('thrifty')));
    // 24 output tokens at 1000 USD per million: 0.024 USD a request on `costly`
    const k = await createKey(b.base, { budget_usd: 0.1, budget_period: 'day' });
    const served = [];
    for (let i = 0; i < 6; i++) {
        const { response } = await ask(b.base, k.key, 'thrifty');
        served.push(response.headers.get('x-baton-deployment'));
        assert(/^thrifty: rule [12] -> /.test(response.headers.get('x-baton-route')), response.headers.get('x-baton-route'));
    }
    // 0, 0.024 and 0.048 spent leave over half; from 0.072 on less than half is left
    eq(served.join(','), 'sim/c1,sim/c1,sim/c1,sim/f1,sim/f1,sim/f1', 'served by');
    const master = await post(`${b.url}/chat/completions`, { model: 'thrifty', messages: [{ role: 'user', content: 'x' }] },
        { headers: M });
    eq(master.headers.get('x-baton-deployment'), 'sim/c1', 'no budget: the default rule');
    await b.stop();
});

await run();
