// Governance across instances (docs/governance.md): three `baton serve` on one
// real PostgreSQL (keys, budgets, the ledger) and one real redis-server (limits
// and budgets), driven with requests in flight at once over all three.
// A key's rpm holds exactly in all; a key's budget and a team's stop spending
// on every instance, overshooting by at most the requests in flight; the ledger in
// PostgreSQL sums to exactly what the clients were told; SIGTERM under load
// loses no record; SIGKILL loses at most the records of the last
// store.ledger_interval.
import { execFileSync } from 'node:child_process';
import {
    test, run, setup, assert, eq, startBaton, post, get, streamRaw, sleep, waitFor, killProc,
    startPostgres, startRedis, AssertionError, SLOW,
} from './lib.mjs';

const MK = 'sk-master-cluster-test';
const M = { authorization: `Bearer ${MK}` };
const pg = await setup(() => startPostgres());
const redis = await setup(() => startRedis());
// 24 output tokens at 1000 USD per million, and the prompt at 0.123457: about
// 0.024001 USD a request, with digits down to the pico-USD
const cfg = (extra = '') => `
server: {workers: 2}
auth: {master_key: "${MK}"}
store: {postgres: "${pg.url}", redis: "${redis.url}"${extra}}
providers:
  paid: {type: sim, seed: 8, reply_tokens: 24}
  slow: {type: sim, seed: 9, reply_tokens: 24, ttft: 150ms, tokens_per_sec: 40}
models:
  chat: {provider: paid, model: c1}
  priced: {provider: paid, model: p1, price: {input: 0.123457, output: 1000}}
  slow: {provider: slow, model: s1, price: {input: 0.123457, output: 1000}}
`;
let nodes = [];
for (let i = 0; i < 3; i++) nodes.push(await setup(() => startBaton(cfg())));

// ---------------------------------------------------------------- helpers

const PUSD = 10n ** 12n;
// "0.024001" -> 24001000000n pico-USD, exactly
function pusd(dec) {
    assert(/^\d+(\.\d{1,12})?$/.test(dec), `not a decimal: ${dec}`);
    const [i, f = ''] = dec.split('.');
    return BigInt(i) * PUSD + BigInt((f + '0'.repeat(12)).slice(0, 12));
}
const usd = (p) => `${p / PUSD}.${String(p % PUSD).padStart(12, '0')}`.replace(/\.?0+$/, '');
// One SQL query on the test's PostgreSQL: rows as arrays of strings.
const psql = (sql) => execFileSync('psql', [pg.url, '-X', '-At', '-F', '\t', '-c', sql], { encoding: 'utf8' })
    .split('\n').filter((l) => l !== '').map((l) => l.split('\t'));

const makeKey = async (base, body) => {
    const r = await post(`${base}/admin/keys`, body, { headers: M });
    eq(r.status, 201, r.text);
    return r.json;
};
// Waits until every instance's key table has the key (each polls the store);
// GET /v1/models is not counted against a key's limits.
const knownEverywhere = async (key, on = nodes) => {
    for (const n of on) {
        let ok = false;
        for (let i = 0; i < 60 * SLOW && !ok; i++) {
            ok = (await get(`${n.base}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status === 200;
            if (!ok) await sleep(50);
        }
        assert(ok, `${n.base} never knew the key`);
    }
};
// The requests of one calendar minute: starts right after a minute boundary when
// fewer than 15 s of this minute are left, so the count is not split in two.
const freshMinute = async () => { const s = new Date().getSeconds(); if (s > 45) await sleep((61 - s) * 1000); };

let nid = 0;
// One chat request with the client's own x-request-id. Streamed ones ask for
// usage and the cost in it. Returns {id, status, complete (the whole answer
// arrived), cost (decimal string or null), code, retryAfter, t (when it ended)}.
async function ask(base, key, { model = 'priced', stream = false, tag = 'r' } = {}) {
    const id = `${tag}-${++nid}`;
    const headers = { authorization: `Bearer ${key}`, 'x-request-id': id };
    const body = { model, messages: [{ role: 'user', content: `hello number ${nid}` }] };
    const out = { id, key, status: 0, complete: false, cost: null, code: null, retryAfter: null, t: 0 };
    try {
        if (stream) {
            const s = await streamRaw(`${base}/v1/chat/completions`,
                { ...body, stream: true, stream_options: { include_usage: true } },
                { headers: { ...headers, 'x-baton-include-cost': 'true' }, timeout: 15000 });
            out.status = s.status;
            if (s.status === 200) {
                eq(s.headers.get('x-request-id'), id, 'x-request-id');
                out.complete = s.done && !s.error && !s.readError;
                // the decimal as written, not as a float
                for (const ev of s.events) {
                    const m = /"cost_usd":([0-9.]+)/.exec(ev.data);
                    if (m) out.cost = m[1];
                }
                if (out.complete) assert(out.cost, `a streamed answer without cost_usd: ${s.events.at(-2)?.data}`);
            } else {
                out.code = s.json?.error?.code ?? null;
                out.retryAfter = s.headers.get('retry-after');
            }
        } else {
            const r = await post(`${base}/v1/chat/completions`, body, { headers });
            out.status = r.status;
            if (r.status === 200) {
                eq(r.headers.get('x-request-id'), id, 'x-request-id');
                out.complete = Array.isArray(r.json?.choices) && r.json.choices.length === 1;
                out.cost = r.headers.get('x-baton-cost-usd');
            } else {
                out.code = r.json?.error?.code ?? null;
                out.retryAfter = r.headers.get('retry-after');
            }
        }
    } catch (e) {
        if (e instanceof AssertionError) throw e;
        out.error = e.cause?.code || e.message; // the connection refused or cut
    }
    out.t = Date.now();
    return out;
}
// Runs `fn(i)` for i = 0.. with `width` calls in flight until `more(i)` says
// stop (checked before each call); returns every result in call order.
async function inFlight(width, more, fn) {
    const results = [];
    let i = 0;
    const lane = async () => {
        while (more(i)) {
            const k = i++;
            results[k] = await fn(k);
        }
    };
    await Promise.all(Array.from({ length: width }, lane));
    return results;
}
const sum = (rs) => rs.reduce((s, r) => s + pusd(r.cost), 0n);

// ---------------------------------------------------------------- tests

const seen = {}; // key id -> {requests, cost, ids, team}: what the clients were told, for the ledger test

test('rpm 100 over three instances sharing Redis: exactly 100 of 300 requests, 15 in flight', async () => {
    const k = await makeKey(nodes[0].base, { rpm: 100 });
    await knownEverywhere(k.key);
    await freshMinute();
    const rs = await inFlight(15, (i) => i < 300, (i) => ask(nodes[i % 3].base, k.key, { model: 'chat' }));
    const ok = rs.filter((r) => r.status === 200);
    const refused = rs.filter((r) => r.status === 429);
    eq(ok.length, 100, `admitted of 300 (by instance: ${[0, 1, 2].map((n) => rs.filter((r, i) => i % 3 === n && r.status === 200).length)})`);
    eq(refused.length, 200, `refused (other statuses: ${rs.filter((r) => r.status !== 200 && r.status !== 429).map((r) => r.status || r.error)})`);
    assert(ok.every((r) => r.complete), 'every admitted request answered in full');
    for (const r of refused) {
        eq(r.code, 'rate_limit_exceeded', `refusal ${r.id}`);
        const ra = Number(r.retryAfter);
        assert(Number.isInteger(ra) && ra >= 1 && ra <= 60, `Retry-After ${r.retryAfter}`);
    }
    // every instance refused some: the limit is one for all, not one each
    for (let n = 0; n < 3; n++) assert(rs.some((r, i) => i % 3 === n && r.status === 429), `instance ${n} refused none`);
    seen[k.id] = { requests: 100, cost: 0n, ids: ok.map((r) => r.id) };
}, { timeout: 40000 });

// Spends a budget of `budgetUsd` with C requests in flight, the i-th sent to
// instance i % 3 with key keys[i % keys.length], each lane until refused.
// Asserts every refusal is 429 insufficient_quota, what the clients were told
// (x-baton-cost-usd) reached the budget and passed it by at most C requests'
// cost, and that afterwards every instance refuses every key (streams too).
// Returns the answered requests.
async function spendAcross(keys, budgetUsd, what) {
    const C = 12;
    const budget = pusd(budgetUsd);
    // slow answers (about 0.75 s) keep C requests in flight when it runs out
    let stop = false;
    const rs = await inFlight(C, (i) => !stop && i < 400, async (i) => {
        const r = await ask(nodes[i % 3].base, keys[i % keys.length].key, { model: 'slow' });
        if (r.status !== 200) stop = true;
        return r;
    });
    const ok = rs.filter((r) => r.status === 200);
    const other = rs.filter((r) => r.status !== 200);
    assert(other.length >= 1 && other.length <= C, `refusals: ${other.length}`);
    for (const r of other) {
        eq(r.status, 429, `refusal ${r.id}: ${r.error || ''}`);
        eq(r.code, 'insufficient_quota', `refusal ${r.id}`);
    }
    assert(ok.every((r) => r.complete && r.cost), 'every 200 whole, with x-baton-cost-usd');
    const told = sum(ok);
    const maxCost = ok.reduce((m, r) => (pusd(r.cost) > m ? pusd(r.cost) : m), 0n);
    assert(told >= budget, `refused before the budget was spent: told ${usd(told)} of ${usd(budget)}`);
    const over = told - budget, bound = BigInt(C) * maxCost;
    assert(over <= bound,
        `overshoot ${usd(over)} USD over the bound ${C} x ${usd(maxCost)} = ${usd(bound)} (${ok.length} answered, told ${usd(told)})`);
    console.log(`# ${what} ${budgetUsd} USD: ${ok.length} answered, told ${usd(told)} USD, overshoot ${usd(over)} of bound ${usd(bound)}`);
    // from now on every instance refuses every key
    for (const n of nodes) {
        for (const k of keys) {
            for (let j = 0; j < 3; j++) {
                const r = await ask(n.base, k.key, { model: j ? 'priced' : 'slow', stream: j === 2 });
                eq(r.status, 429, `${n.base} after the stop`);
                eq(r.code, 'insufficient_quota', `${n.base} after the stop`);
            }
        }
    }
    return ok;
}

test('a key\'s budget over three instances: spending stops on all, overshoot below the requests in flight', async () => {
    const k = await makeKey(nodes[1].base, { budget_usd: 0.5, budget_period: 'day' });
    await knownEverywhere(k.key);
    const ok = await spendAcross([k], '0.5', 'key budget');
    seen[k.id] = { requests: ok.length, cost: sum(ok), ids: ok.map((r) => r.id) };
}, { timeout: 40000 });

test('a team\'s budget over three instances and three of its keys: the same', async () => {
    const put = await fetch(`${nodes[0].base}/admin/teams/blue`, {
        method: 'PUT', headers: { ...M, 'content-type': 'application/json' },
        body: JSON.stringify({ budget_usd: 0.3, budget_period: 'day' }) });
    eq(put.status, 200, 'PUT /admin/teams/blue');
    const keys = [];
    for (let i = 0; i < 3; i++) keys.push(await makeKey(nodes[i].base, { team: 'blue' }));
    for (const k of keys) await knownEverywhere(k.key);
    // the i-th request goes to instance i % 3 with key (i % 4 of three): every
    // key on every instance
    const ok = await spendAcross([...keys, keys[0]], '0.3', 'team budget');
    for (const k of keys) seen[k.id] = { requests: 0, cost: 0n, ids: [], team: 'blue' };
    for (const r of ok) {
        const k = keys.find((x) => r.key === x.key);
        seen[k.id].requests++; seen[k.id].cost += pusd(r.cost); seen[k.id].ids.push(r.id);
    }
}, { timeout: 40000 });

test('the ledger in PostgreSQL sums exactly to what the clients were told, streamed and not, after SIGTERM', async () => {
    const k = await makeKey(nodes[2].base, { user: 'led', team: 'cluster' });
    await knownEverywhere(k.key);
    const rs = await inFlight(12, (i) => i < 90, (i) => ask(nodes[i % 3].base, k.key, { stream: i % 2 === 0 }));
    for (const r of rs) eq(r.status, 200, `${r.id}: ${r.error || r.code}`);
    assert(rs.every((r) => r.complete && r.cost), 'every answer whole, with its cost');
    seen[k.id] = { requests: rs.length, cost: sum(rs), ids: rs.map((r) => r.id) };
    // SIGTERM all three: each drains, then writes the ledger records it still holds
    await Promise.all(nodes.map((n) => n.stop()));
    for (const [id, want] of Object.entries(seen)) {
        const [[n, c]] = psql(`SELECT count(*), coalesce(sum(cost_pusd), 0) FROM baton_usage WHERE key_id = '${id}'`);
        eq(Number(n), want.requests, `ledger rows of ${id}`);
        eq(BigInt(c), want.cost, `ledger cost of ${id} in pico-USD (told ${usd(want.cost)} USD, ledger ${usd(BigInt(c))})`);
        const ids = psql(`SELECT request_id FROM baton_usage WHERE key_id = '${id}'`).map((r) => r[0]).sort();
        eq(JSON.stringify(ids), JSON.stringify([...want.ids].sort()), `the request ids of ${id}`);
        // the daily spend budgets are read back from at start: the same sums
        const [[dn, dc]] = psql(`SELECT coalesce(sum(requests), 0), coalesce(sum(cost_pusd), 0) FROM baton_spend_daily WHERE key_id = '${id}'`);
        eq(`${dn} ${dc}`, `${want.requests} ${want.cost}`, `daily spend of ${id} (requests, pico-USD)`);
    }
    // and of the owners: the team of three keys, the team and user of one
    const teamKeys = Object.entries(seen).filter(([, w]) => w.team === 'blue').map(([, w]) => w);
    const owners = {
        'team:blue': teamKeys.reduce((a, w) => [a[0] + w.requests, a[1] + w.cost], [0, 0n]),
        'team:cluster': [90, seen[k.id].cost],
        'user:led': [90, seen[k.id].cost],
    };
    eq(teamKeys.length, 3, 'the keys of team blue');
    for (const [id, [n, c]] of Object.entries(owners)) {
        const [[dn, dc]] = psql(`SELECT coalesce(sum(requests), 0), coalesce(sum(cost_pusd), 0) FROM baton_spend_daily WHERE key_id = '${id}'`);
        eq(`${dn} ${dc}`, `${n} ${c}`, `daily spend of ${id} (requests, pico-USD)`);
    }
    const st = psql(`SELECT count(*) FROM baton_usage WHERE key_id = '${k.id}' AND status = 200 AND cost_known AND NOT estimated`);
    eq(Number(st[0][0]), 90, 'rows with status 200 and a reported usage');
    // the same through the admin API of a fresh instance
    nodes = [await startBaton(cfg())];
    const u = await get(`${nodes[0].base}/admin/usage?key=${k.id}`, { headers: M });
    eq(u.status, 200, u.text);
    eq(u.json.data[0].requests, 90, 'requests in /admin/usage');
    eq(pusd(u.json.data[0].cost_usd), seen[k.id].cost, `cost_usd in /admin/usage (${u.json.data[0].cost_usd})`);
    console.log(`# ledger: ${rs.length} requests, ${rs.filter((r, i) => i % 2 === 0).length} streamed, ${u.json.data[0].cost_usd} USD told and recorded`);
}, { timeout: 40000 });

test('SIGTERM under load: every request answered in full has exactly one ledger row', async () => {
    // a long interval and a large batch: the instance writes nothing before the SIGTERM
    const d = await startBaton(cfg(', ledger_interval: 30s, ledger_batch: 100000'));
    const k = await makeKey(d.base, { user: 'term' });
    // first 700 quick ones: the last write holds more than one statement's 500 rows
    const quick = await inFlight(24, (i) => i < 700, () => ask(d.base, k.key, { tag: 'term' }));
    eq(quick.filter((r) => r.complete).length, 700, 'quick ones answered');
    let exited = false;
    // 24 lanes: two in three slow streams (about 0.75 s each), the rest plain
    // requests; SIGTERM once the load runs, the lanes going on (refused) until
    // the instance is gone
    const lanes = inFlight(24, (i) => i < 5000 && !exited, async (i) => {
        const r = await ask(d.base, k.key, { model: i % 3 ? 'slow' : 'priced', stream: i % 3 !== 0, tag: 'term' });
        if (!r.complete) await sleep(20);
        return r;
    });
    await sleep(900 * SLOW);
    const termAt = Date.now();
    await d.stop(); // SIGTERM: drain, then the ledger's last records
    exited = true;
    const rs = [...quick, ...await lanes];
    const complete = rs.filter((r) => r.complete);
    const cut = rs.filter((r) => r.status === 200 && !r.complete);
    const afterTerm = complete.filter((r) => r.t > termAt);
    assert(complete.length >= 730, `answered in full: ${complete.length}`);
    assert(afterTerm.length >= 8, `answers that ended during the drain: ${afterTerm.length}`);
    eq(cut.length, 0, `answers cut short by the drain: ${cut.map((r) => r.id)}`);
    const rows = psql(`SELECT request_id, count(*), min(status) FROM baton_usage WHERE key_id = '${k.id}' GROUP BY request_id`);
    const byId = new Map(rows.map(([id, n, s]) => [id, { n: Number(n), status: Number(s) }]));
    const missing = complete.filter((r) => !byId.has(r.id)).map((r) => r.id);
    eq(missing.length, 0, `answered requests without a ledger row (of ${complete.length}): ${missing.slice(0, 10)}`);
    const twice = rows.filter(([, n]) => Number(n) !== 1).map(([id]) => id);
    eq(twice.length, 0, `request ids with more than one row: ${twice.slice(0, 10)}`);
    for (const r of complete) eq(byId.get(r.id).status, 200, `row status of ${r.id}`);
    // and no row for a request that got no answer: none was taken in and dropped
    const answered = new Set(complete.map((r) => r.id));
    const stray = rows.filter(([id]) => !answered.has(id))
        .map(([id]) => `${id} (${JSON.stringify(rs.find((r) => r.id === id) ?? 'never sent')})`);
    eq(stray.length, 0, `rows of requests not answered in full: ${stray.slice(0, 5)}`);
    const [[c]] = psql(`SELECT coalesce(sum(cost_pusd), 0) FROM baton_usage WHERE key_id = '${k.id}' AND status = 200`);
    eq(BigInt(c), sum(complete), 'the rows cost what the answers said');
    const [[dn, dc]] = psql(`SELECT sum(requests), sum(cost_pusd) FROM baton_spend_daily WHERE key_id IN ('${k.id}', 'user:term')`);
    eq(`${dn} ${dc}`, `${2 * complete.length} ${2n * sum(complete)}`, 'the daily spend of the key and its user');
    const statuses = {};
    for (const r of rs.filter((x) => !x.complete)) statuses[r.status || r.error] = (statuses[r.status || r.error] || 0) + 1;
    console.log(`# SIGTERM: ${rs.length} sent, ${complete.length} answered in full (${afterTerm.length} during the drain), ${rows.length} rows; not answered: ${JSON.stringify(statuses)}`);
}, { timeout: 40000 });

test('SIGKILL loses at most the records of the last ledger_interval', async () => {
    const interval = 1000, margin = 500 * SLOW;
    const e = await startBaton(cfg(`, ledger_interval: ${interval}ms, ledger_batch: 100000`));
    const k = await makeKey(e.base, { user: 'kill' });
    let killedAt = 0;
    // a steady stream: 4 lanes, each a request then a pause
    const t0 = Date.now();
    let n = 0;
    const lanes = inFlight(4, () => !killedAt, async () => {
        const r = await ask(e.base, k.key, { tag: 'kill' });
        if (r.complete) n++;
        await sleep(15);
        return r;
    });
    // at least 2.5 s and 150 answers of load, then a kill at any phase of the
    // writer's interval
    while (Date.now() - t0 < 2500 * SLOW || n < 150) await sleep(100);
    await sleep(Math.random() * interval);
    killedAt = Date.now();
    await killProc(e.proc, 'SIGKILL');
    const rs = await lanes;
    // a COMMIT the server got before the kill completes even so: read once the
    // killed connection's transaction is over
    await waitFor(() => psql(`SELECT count(*) FROM pg_stat_activity WHERE state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid()`)[0][0] === '0',
        5000 * SLOW, 'PostgreSQL done with the killed instance\'s transaction');
    const answered = rs.filter((r) => r.complete);
    const rows = psql(`SELECT request_id, ts_ms FROM baton_usage WHERE key_id = '${k.id}'`);
    const have = new Set(rows.map((r) => r[0]));
    const old = answered.filter((r) => r.t < killedAt - interval - margin);
    const lost = answered.filter((r) => !have.has(r.id));
    assert(old.length >= 40, `requests answered before the last interval: ${old.length}`);
    const oldLost = old.filter((r) => !have.has(r.id)).map((r) => `${r.id} (${killedAt - r.t} ms before)`);
    const newest = rows.reduce((m, r) => Math.max(m, Number(r[1])), 0);
    eq(oldLost.length, 0, `answered more than ${interval + margin} ms before the kill, not in the ledger: ${oldLost.slice(0, 10)} (the newest row ended ${killedAt - newest} ms before the kill; ${rows.length} rows; the instance's log: ${e.proc.err().split('\n').filter((l) => /warn|error/.test(l)).slice(0, 5)})`);
    const sent = new Set(rs.map((r) => r.id));
    for (const id of have) assert(sent.has(id), `a row of a request never sent: ${id}`);
    const ages = lost.map((r) => killedAt - r.t);
    console.log(`# SIGKILL: ${answered.length} answered, ${answered.length - lost.length} in the ledger, ${lost.length} lost (answered ${ages.length ? Math.min(...ages) : '-'}..${ages.length ? Math.max(...ages) : '-'} ms before the kill)`);
}, { timeout: 40000 });

await run();
