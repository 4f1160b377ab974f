// The admin API never blocks a worker on the store (docs/internals/store.md):
// with one worker and PostgreSQL stalled (every process of the server stopped
// with SIGSTOP), an admin call waits on the store thread while /v1 requests on
// the same worker are answered at once; the call completes when the server is
// back, or answers 504 store_timeout after store.admin_timeout; a client that
// leaves meanwhile, or a drain, is handled cleanly.
import {
    test, run, setup, assert, eq, startBaton, post, get, http, client, rawConnect, sleep, waitFor,
    startPostgres, SLOW,
} from './lib.mjs';

const pg = await setup(() => startPostgres());
const MK = 'sk-master-admin-store';
const M = { authorization: `Bearer ${MK}` };
const cfg = (timeout) => `
auth: {master_key: "${MK}"}
server: {workers: 1}
store: {postgres: "${pg.url}", admin_timeout: ${timeout}}
providers:
  sim: {type: sim, seed: 5}
models:
  chat: {provider: sim, model: m1}
`;
const chat = async (base, key = MK) => {
    try {
        await client(base, { apiKey: key }).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
        return 200;
    } catch (e) { return e.status ?? String(e); }
};
const timed = async (fn) => { const t0 = Date.now(); const v = await fn(); return [v, Date.now() - t0]; };

// Stalls PostgreSQL for the body; resumed however it ends.
async function stalled(fn) {
    pg.stall();
    try { return await fn(); } finally { pg.resume(); }
}

test('a stalled store does not block the worker: /v1 answers while an admin write waits, which lands when the store is back', async () => {
    const a = await startBaton(cfg(`${20 * SLOW}s`));
    let pending, t0;
    await stalled(async () => {
        t0 = Date.now();
        pending = post(`${a.base}/admin/keys`, { user: 'stalled' }, { headers: M, timeout: 30000 });
        await sleep(300);
        for (let i = 0; i < 3; i++) {
            const [st, ms] = await timed(() => chat(a.url));
            eq(st, 200, 'a chat completion while the admin call waits');
            assert(ms < 1000 * SLOW, `the chat completion took ${ms} ms`);
        }
        const h = await get(`${a.base}/health/ready`);
        eq(h.status, 200, 'health');
        await sleep(500);
    });
    const r = await pending;
    eq(r.status, 201, r.text);
    assert(Date.now() - t0 >= 800, 'the admin call waited for the store');
    eq(await chat(a.url, r.json.key), 200, 'the new key works at once');
    await a.stop();
});

test('a store that does not answer within store.admin_timeout: 504 store_timeout (OpenAI error), usage reports too; serving goes on', async () => {
    const a = await startBaton(cfg('1s'));
    await stalled(async () => {
        const [r, ms] = await timed(() => post(`${a.base}/admin/keys`, { user: 'late' }, { headers: M }));
        eq(r.status, 504, r.text);
        eq(r.json?.error?.code, 'store_timeout', r.text);
        assert(typeof r.json.error.message === 'string' && /store\.admin_timeout/.test(r.json.error.message), r.text);
        assert(ms >= 900 && ms < 4000 * SLOW, `answered after ${ms} ms`);
        const u = await get(`${a.base}/admin/usage?group=key`, { headers: M });
        eq(u.status, 504, u.text);
        const t = await get(`${a.base}/admin/teams`, { headers: M });
        eq(t.status, 504, t.text);
        eq(await chat(a.url), 200, 'a chat completion meanwhile');
    });
    // the write that timed out lands once the store answers (the message says so)
    await waitFor(async () => {
        const l = await get(`${a.base}/admin/keys`, { headers: M });
        return l.status === 200 && l.json.data.some((k) => k.user === 'late');
    }, 5000 * SLOW, 'the late write landed');
    const u = await get(`${a.base}/admin/usage`, { headers: M });
    eq(u.status, 200, u.text);
    await a.stop();
});

test('clients that leave while their admin call waits: nothing is answered to them, the server serves on', async () => {
    const a = await startBaton(cfg(`${20 * SLOW}s`));
    await stalled(async () => {
        const body = JSON.stringify({ user: 'gone' });
        const reqs = [
            `POST /admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MK}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
            `GET /admin/usage?group=day HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MK}\r\n\r\n`,
            `PUT /admin/teams/red HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MK}\r\nContent-Length: 17\r\n\r\n{"budget_usd": 5}`,
            `GET /admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MK}\r\n\r\n`,
        ];
        const socks = [];
        for (const r of reqs) {
            const s = await rawConnect(a.port);
            await s.write(r);
            socks.push(s);
        }
        await sleep(300);
        for (const s of socks) { eq(s.data().length, 0, 'nothing answered yet'); s.close(); }
        await sleep(100);
        eq(await chat(a.url), 200, 'a chat completion after they left');
    });
    await waitFor(async () => {
        const l = await get(`${a.base}/admin/keys`, { headers: M });
        return l.status === 200 && l.json.data.some((k) => k.user === 'gone');
    }, 5000 * SLOW, 'the write of the client that left landed');
    const t = await get(`${a.base}/admin/teams/red`, { headers: M });
    eq(t.status, 200, t.text);
    eq(await chat(a.url), 200, 'serving goes on');
    await a.stop();
});

test('SIGTERM while an admin call waits: the drain answers it once the store is back, then baton exits cleanly', async () => {
    const a = await startBaton(cfg(`${20 * SLOW}s`));
    let pending, stopping;
    await stalled(async () => {
        pending = http('PATCH', `${a.base}/admin/users/ann`, { headers: M, body: { rpm: 9 }, timeout: 30000 });
        await sleep(300);
        stopping = a.proc.exited;
        a.proc.child.stopping = true;
        a.proc.child.kill('SIGTERM');
        await sleep(500);
    });
    const r = await pending;
    eq(r.status, 200, r.text);
    eq(r.json.rpm, 9, r.text);
    const { code, signal } = await stopping;
    eq(code, 0, `exit (signal ${signal}); stderr: ${a.proc.err().slice(-500)}`);
});

test('SIGTERM after an admin call timed out: its job, back after the worker is gone, is dropped; baton exits cleanly', async () => {
    const a = await startBaton(cfg('1s'));
    let stopping;
    await stalled(async () => {
        const r = await post(`${a.base}/admin/keys`, { user: 'orphan' }, { headers: M });
        eq(r.status, 504, r.text);
        stopping = a.proc.exited;
        a.proc.child.stopping = true;
        a.proc.child.kill('SIGTERM');
        await sleep(500); // the worker drains and closes while the job still waits
    });
    const { code, signal } = await stopping;
    eq(code, 0, `exit (signal ${signal}); stderr: ${a.proc.err().slice(-500)}`);
});

await run();
