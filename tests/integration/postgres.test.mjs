// The PostgreSQL store (store.postgres): a real server started from the Debian
// packages for this test. Schema created by baton; keys made through one
// instance's admin API work on another instance sharing the database within a
// second, revocation too; `baton keys` reaches the same database; keys survive
// a restart; a wrong address is a clear start-up error with the password masked.
import {
    test, run, setup, assert, eq, startBaton, post, get, client, runBaton, writeTemp, waitFor,
    startPostgres, spawnBaton, freePort, SLOW,
} from './lib.mjs';

const pg = await setup(() => startPostgres());
const MK = 'sk-master-pg-test';
const M = { authorization: `Bearer ${MK}` };
const cfg = (url) => `
auth: {master_key: "${MK}"}
store: {postgres: "${url}"}
providers:
  sim: {type: sim, seed: 3}
models:
  chat: {provider: sim, model: m1}
  other: {provider: sim, model: m2}
  priced: {provider: sim, model: p1, price: {input: 1000, output: 1000}}
`;
let a = await setup(() => startBaton(cfg(pg.url)));
const b = await setup(() => startBaton(cfg(pg.url)));
const status = async (base, key, model = 'chat') => {
    try {
        await client(base, { apiKey: key }).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
        return 200;
    } catch (e) { return e.status ?? String(e); }
};

test('a key created on one instance works on the other within a second; revoked, refused on both', async () => {
    const r = await post(`${a.base}/admin/keys`, { user: 'pat', models: ['chat'], rpm: 50 }, { headers: M });
    eq(r.status, 201, r.text);
    const { key, id } = r.json;
    eq(await status(a.url, key), 200, 'on the instance that made it');
    await waitFor(async () => (await status(b.url, key)) === 200, 1000 * SLOW, 'the other instance knows the key');
    eq(await status(b.url, key, 'other'), 403, 'its models apply there too');
    const g = await get(`${b.base}/admin/keys/${id}`, { headers: M });
    eq(g.status, 200, g.text);
    eq(g.json.user, 'pat');
    eq(g.json.rpm, 50);
    const d = await fetch(`${b.base}/admin/keys/${id}`, { method: 'DELETE', headers: M });
    eq(d.status, 200, 'revoked on b');
    await waitFor(async () => (await status(a.url, key)) === 401, 1000 * SLOW, 'a refuses the revoked key');
});

test('baton keys works against the same database, and a running server sees its key', async () => {
    const c = await runBaton(['keys', 'create', '-c', a.cfg, '--user', 'cli', '--rpm', '7']);
    eq(c.code, 0, c.err);
    const key = /sk-bt-[A-Za-z0-9_-]{43}/.exec(c.out)?.[0];
    assert(key, `no key printed: ${c.out}`);
    await waitFor(async () => (await status(a.url, key)) === 200, 1000 * SLOW, 'the server knows the CLI key');
    const l = await runBaton(['keys', 'list', '-c', a.cfg]);
    eq(l.code, 0, l.err);
    assert(l.out.includes('cli') && l.out.includes('pat'), l.out);
});

test('keys survive a restart; the schema is baton\'s own and versioned', async () => {
    const r = await post(`${a.base}/admin/keys`, { team: 'blue' }, { headers: M });
    eq(r.status, 201, r.text);
    await a.stop();
    a = await startBaton(cfg(pg.url));
    eq(await status(a.url, r.json.key), 200, 'after a restart');
    const ls = await get(`${a.base}/admin/keys`, { headers: M });
    assert(ls.json.data.some((k) => k.team === 'blue'), ls.text);
});

test('the ledger and budgets in PostgreSQL: usage from either instance, a budget spent across both', async () => {
    const r = await post(`${a.base}/admin/keys`, { user: 'led', budget_usd: 0.2, budget_period: 'day' }, { headers: M });
    eq(r.status, 201, r.text);
    const { key, id } = r.json;
    await waitFor(async () => (await status(b.url, key, 'priced')) === 200, 1000 * SLOW, 'b knows the key');
    let ok = 1, refused = 0;
    for (let i = 0; i < 40 && !refused; i++) {
        const s = await status(i % 2 ? a.url : b.url, key, 'priced');
        if (s === 200) ok++;
        else if (s === 429) refused++;
        else throw new Error(`status ${s}`);
        await new Promise((res) => setTimeout(res, 150)); // let each instance see the other's spend
    }
    eq(refused, 1, `the budget ran out (after ${ok} requests)`);
    assert(ok >= 2 && ok < 40, `${ok} requests admitted`);
    // every answered request of the key, from both instances (a's last ones are
    // written within its ledger_interval; b's are flushed by the query)
    let rows = [];
    await waitFor(async () => {
        const u = await get(`${b.base}/admin/usage?key=${id}`, { headers: M });
        eq(u.status, 200, u.text);
        rows = u.json.data;
        return rows.length === 1 && rows[0].requests === ok;
    }, 3000 * SLOW, `the ledger holds the ${ok} answered requests`);
    assert(Number(rows[0].cost_usd) >= 0.2, `cost ${rows[0].cost_usd}`);
    const g = await get(`${a.base}/admin/usage?group=key&since=2020-01-01`, { headers: M });
    assert(g.json.data.some((x) => x.key === id && x.requests >= 2), g.text);
});

test('baton check shows the store with the password masked; an unreachable server is a clear error', async () => {
    const secret = `postgresql://baton:hunter2@127.0.0.1:1/none`;
    const f = writeTemp('pg-bad.yaml', cfg(secret));
    const c = await runBaton(['check', '-c', f]);
    eq(c.code, 0, c.err);
    assert(/store: postgres postgresql:\/\/baton:\*\*\*@127\.0\.0\.1:1\/none/.test(c.out), c.out);
    assert(!c.out.includes('hunter2'), 'password shown');
    const p = spawnBaton(['serve', '-c', f, '--listen', `127.0.0.1:${await freePort()}`]);
    const { code } = await p.exited;
    eq(code, 1, 'serve exits');
    assert(/cannot open the store: postgresql:\/\/baton:\*\*\*@127\.0\.0\.1:1\/none: cannot connect/.test(p.err()), p.err());
    assert(!p.err().includes('hunter2'), 'password in the log');
    const bad = writeTemp('pg-scheme.yaml', cfg('mysql://x@y/z'));
    const k = await runBaton(['check', '-c', bad]);
    eq(k.code, 1, 'refused');
    assert(/store\.postgres must be a URI/.test(k.err), k.err);
});

await run();
