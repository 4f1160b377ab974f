// store.ledger_retention (docs/governance.md): ledger rows older than the
// retention are deleted by the ledger writer at start (and hourly), on SQLite
// and on PostgreSQL; newer rows and reports of them stay; a retention shorter
// than a month is refused by `baton check` (budgets read the month's spend).
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import {
    test, run, setup, assert, eq, startBaton, get, client, tmpDir, waitFor, runBaton, writeTemp,
    startPostgres, SLOW,
} from './lib.mjs';

const MK = 'sk-master-retention';
const M = { authorization: `Bearer ${MK}` };
const DAY = 86400000;
const cfg = (store) => `
auth: {master_key: "${MK}"}
store: {${store}}
providers:
  sim: {type: sim, seed: 5}
models:
  chat: {provider: sim, model: m1}
`;
const chat = (url) => client(url, { apiKey: MK }).chat.completions
    .create({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
const total = async (base) => {
    const u = await get(`${base}/admin/usage`, { headers: M });
    eq(u.status, 200, u.text);
    return u.json.data[0]?.requests ?? 0;
};
// ages in days of the rows put in by hand, and how many of them a 31-day retention keeps
const AGES = [400, 120, 40, 32, 20, 1];
const KEPT = AGES.filter((d) => d < 31).length;
const oldRows = (now) => AGES.map((d, i) => ({ ts: now - d * DAY, id: `old-${i}` }));

function sqlite(db, sql) {
    const py = 'import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n' +
        'r = c.execute(sys.argv[2]).fetchall()\nc.commit()\nprint(r[0][0] if r else "")';
    return execFileSync('python3', ['-c', py, db, sql], { encoding: 'utf8' }).trim();
}
const psql = (url, sql) => execFileSync('psql', [url, '-qtAc', sql], { encoding: 'utf8' }).trim();

test('baton check: a retention under a month is refused (budgets), a valid one shown, none means forever', async () => {
    const bad = await runBaton(['check', '-c', writeTemp('r-bad.yaml', cfg('ledger_retention: 30d'))]);
    eq(bad.code, 1, 'refused');
    assert(/store\.ledger_retention must be from 31d to 36500d: budgets/.test(bad.err), bad.err);
    const ok = await runBaton(['check', '-c', writeTemp('r-ok.yaml', cfg('ledger_retention: 90d'))]);
    eq(ok.code, 0, ok.err);
    assert(/\nledger: written every 1000 ms or 500 records, records kept 90 days \(store.ledger_retention\)\n/.test(ok.out), ok.out);
    const none = await runBaton(['check', '-c', writeTemp('r-none.yaml', cfg(`sqlite: "${join(tmpDir(), 'n.db')}"`))]);
    eq(none.code, 0, none.err);
    assert(/\nledger: written every \d+ ms or \d+ records, records kept forever\n/.test(none.out), none.out);
});

test('SQLite: rows older than the retention are deleted at start, newer ones stay', async () => {
    const db = join(tmpDir(), 'ret.db');
    let a = await startBaton(cfg(`sqlite: "${db}"`)); // makes the schema
    await chat(a.url);
    await a.stop();
    const now = Date.now();
    sqlite(db, `INSERT INTO usage (ts_ms, request_id, key_id, user, team, model, provider, provider_model, ` +
        `input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_pusd, ` +
        `cost_known, estimated, status) VALUES ` + oldRows(now).map((r) =>
        `(${r.ts}, '${r.id}', 'master', '', '', 'chat', 'sim', 'm1', 1, 0, 0, 1, 0, 0, 0, 0, 200)`).join(', '));
    eq(sqlite(db, 'SELECT count(*) FROM usage'), String(AGES.length + 1));
    a = await startBaton(cfg(`sqlite: "${db}", ledger_retention: 31d`));
    await waitFor(async () => sqlite(db, 'SELECT count(*) FROM usage') === String(KEPT + 1), 5000 * SLOW,
        'the old rows deleted');
    eq(sqlite(db, `SELECT count(*) FROM usage WHERE ts_ms < ${now - 31 * DAY}`), '0');
    eq(await total(a.base), KEPT + 1, 'the report counts what is left');
    await chat(a.url);
    await waitFor(async () => (await total(a.base)) === KEPT + 2, 3000 * SLOW, 'new records still written');
    await a.stop();
});

test('PostgreSQL: the same', async () => {
    const pg = await setup(() => startPostgres());
    let a = await startBaton(cfg(`postgres: "${pg.url}"`));
    await chat(a.url);
    await a.stop();
    const now = Date.now();
    psql(pg.url, `INSERT INTO baton_usage (ts_ms, request_id, key_id, owner_user, team, model, provider, ` +
        `provider_model, input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, ` +
        `cost_pusd, cost_known, estimated, status) VALUES ` + oldRows(now).map((r) =>
        `(${r.ts}, '${r.id}', 'master', '', '', 'chat', 'sim', 'm1', 1, 0, 0, 1, 0, 0, false, false, 200)`).join(', '));
    eq(psql(pg.url, 'SELECT count(*) FROM baton_usage'), String(AGES.length + 1));
    a = await startBaton(cfg(`postgres: "${pg.url}", ledger_retention: 31d`));
    await waitFor(async () => psql(pg.url, 'SELECT count(*) FROM baton_usage') === String(KEPT + 1),
        5000 * SLOW, 'the old rows deleted');
    eq(await total(a.base), KEPT + 1, 'the report counts what is left');
    await a.stop();
    pg.stop();
});

await run();
