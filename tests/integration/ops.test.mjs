// Operations: reload under load (SIGHUP, alternating configs, a broken file),
// graceful drain on SIGTERM (under load every accepted request is answered in
// full; a slow stream finishes with [DONE], new connections are refused, exit 0),
// and POST /admin/reload behind the master key.
import { writeFileSync, copyFileSync, readFileSync, unlinkSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import {
    test, run, setup, assert, eq, startBaton, streamRaw, post, get, sleep, writeTemp, SLOW, REPO,
} from './lib.mjs';

// Puts `src` in place of the config file in one step (a copy, then a rename), so a
// reload never reads a file half written: on a loaded machine a SIGHUP sent for an
// earlier copy can still be reading when the next one starts.
function replaceConfig(src, dst) {
    copyFileSync(src, `${dst}.next`);
    renameSync(`${dst}.next`, dst);
}

const cfgA = (port) => `
server: {listen: "127.0.0.1:${port}", workers: 2}
auth: {master_key: "mk-ops"}
providers:
  alpha: {type: sim, seed: 1}
  slow: {type: sim, seed: 2, ttft: 100ms, tokens_per_sec: 20, reply_tokens: 20}
models:
  m: {provider: alpha, model: one}
  slow: {provider: slow}
`;
const cfgB = (port) => `
server: {listen: "127.0.0.1:${port}", workers: 2}
auth: {master_key: "mk-ops"}
providers:
  beta: {type: sim, seed: 9}
  slow: {type: sim, seed: 2, ttft: 100ms, tokens_per_sec: 20, reply_tokens: 20}
models:
  m: {provider: beta, model: two}
  slow: {provider: slow}
`;

const b = await setup(() => startBaton(cfgA('$PORT'), { listenFlag: false }));
const H = { authorization: 'Bearer mk-ops' };
const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
const cfgTextA = cfgA(b.port), cfgTextB = cfgB(b.port);
const pathA = writeTemp('a.yaml', cfgTextA), pathB = writeTemp('b.yaml', cfgTextB);
const broken = writeTemp('broken.yaml', cfgTextA + 'models: [\n');

// Keeps `n` request loops busy until stop() and counts results by deployment.
function load(n) {
    let stop = false;
    const seen = {}, failures = [];
    let total = 0;
    const loops = Array.from({ length: n }, async () => {
        while (!stop) {
            try {
                const r = await post(`${b.url}/chat/completions`, body, { headers: H });
                total++;
                if (r.status !== 200) failures.push(`status ${r.status}: ${r.text.slice(0, 200)}`);
                else {
                    const d = r.headers.get('x-baton-deployment');
                    seen[d] = (seen[d] || 0) + 1;
                }
            } catch (e) { total++; failures.push(e.message); }
        }
    });
    return { seen, failures, total: () => total, stop: async () => { stop = true; await Promise.all(loops); } };
}

async function deployment() {
    const r = await post(`${b.url}/chat/completions`, body, { headers: H });
    eq(r.status, 200, 'status');
    return r.headers.get('x-baton-deployment');
}

test('SIGHUP ten times under load, alternating two configs: zero failed requests, the model table switches', async () => {
    const l = load(8);
    for (let i = 0; i < 10; i++) {
        replaceConfig(i % 2 === 0 ? pathB : pathA, b.cfg);
        b.proc.child.kill('SIGHUP');
        const want = i % 2 === 0 ? 'beta/two' : 'alpha/one';
        const end = Date.now() + 3000 * SLOW;
        let got;
        while (Date.now() < end && (got = await deployment()) !== want) await sleep(10);
        eq(got, want, `deployment after reload ${i + 1}`);
        await sleep(100);
    }
    await l.stop();
    assert(l.failures.length === 0, `${l.failures.length} of ${l.total()} requests failed: ${l.failures.slice(0, 3).join('; ')}`);
    assert(l.total() > 50, `only ${l.total()} requests ran`);
    assert(l.seen['alpha/one'] > 0 && l.seen['beta/two'] > 0, `both tables served: ${JSON.stringify(l.seen)}`);
}, { timeout: 60000 });

test('a broken file under load is refused with file:line:column and the old config keeps serving', async () => {
    replaceConfig(pathA, b.cfg);
    b.proc.child.kill('SIGHUP');
    const end = Date.now() + 3000 * SLOW;
    while (Date.now() < end && (await deployment()) !== 'alpha/one') await sleep(10);
    const l = load(6);
    replaceConfig(broken, b.cfg);
    b.proc.child.kill('SIGHUP');
    await sleep(500);
    await l.stop();
    eq(l.failures.length, 0, 'failed requests');
    eq(await deployment(), 'alpha/one', 'deployment after the refused reload');
    const err = b.proc.err();
    assert(/baton\.yaml:\d+:\d+: error: /.test(err), `log names file:line:column: ${err.slice(-400)}`);
    assert(/reload refused/.test(err), 'log says the reload was refused');
});

test('POST /admin/reload needs the master key and reports the result', async () => {
    let r = await post(`${b.base}/admin/reload`, '');
    eq(r.status, 401, 'status without key');
    eq(typeof r.json.error.message, 'string', 'error shape');
    r = await post(`${b.base}/admin/reload`, '', { headers: H });
    eq(r.status, 422, 'status with a broken file');
    assert(/baton\.yaml:\d+:\d+:/.test(r.json.error.message), `message has file:line:col: ${r.json.error.message}`);
    replaceConfig(pathB, b.cfg);
    r = await post(`${b.base}/admin/reload`, '', { headers: H });
    eq(r.status, 200, 'status after fixing the file');
    eq(r.json.status, 'reloaded', 'body');
    eq(await deployment(), 'beta/two', 'new table in use');
});

test('POST /admin/reload takes the key as x-api-key too, as docs/operations.md says', async () => {
    replaceConfig(pathB, b.cfg);
    let r = await post(`${b.base}/admin/reload`, '', { headers: { 'x-api-key': 'mk-ops' } });
    eq(r.status, 200, 'status with x-api-key');
    r = await post(`${b.base}/admin/reload`, '', { headers: { 'x-api-key': 'wrong' } });
    eq(r.status, 401, 'status with a wrong x-api-key');
    const ops = readFileSync(join(REPO, 'docs/operations.md'), 'utf8');
    const admin = ops.slice(ops.indexOf('## Admin API'), ops.indexOf('## Metrics'));
    assert(admin.includes('`x-api-key: KEY`') && admin.includes('`Authorization: Bearer KEY`'),
        `the Admin API section names both headers: ${admin.slice(0, 400)}`);
});

test('a reload that drops the master key while the address in use is 0.0.0.0 is refused', async () => {
    // The file moves to loopback and loses its key; the process still listens
    // on every address (a changed listen needs a restart), so the key stays.
    const yaml = (listen, key) => `
server: {listen: "${listen}", workers: 1}
${key ? 'auth: {master_key: "mk-anon"}' : ''}
providers:
  s: {type: sim}
models:
  m: {provider: s}
`;
    const c = await startBaton(yaml('0.0.0.0:$PORT', true), { listenFlag: false });
    try {
        writeFileSync(c.cfg, yaml(`127.0.0.1:${c.port}`, false));
        c.proc.child.kill('SIGHUP');
        const end = Date.now() + 3000 * SLOW;
        while (Date.now() < end && !/reload refused/.test(c.proc.err())) await sleep(20);
        const err = c.proc.err();
        assert(/the address in use: refusing to serve on 0\.0\.0\.0 without a master key/.test(err), `log: ${err.slice(-500)}`);
        assert(/reload refused/.test(err), `log says the reload was refused: ${err.slice(-300)}`);
        let r = await post(`${c.url}/chat/completions`, body);
        eq(r.status, 401, 'a request without the key after the refused reload');
        r = await post(`${c.base}/admin/reload`, '', { headers: { authorization: 'Bearer mk-anon' } });
        eq(r.status, 422, 'POST /admin/reload refuses too');
        assert(/refusing to serve on 0\.0\.0\.0 without a master key/.test(r.json.error.message), `message: ${r.json.error.message}`);
    } finally { await c.stop(); }
});

test('the server.listen warning compares with the address in use, not the previous file', async () => {
    const yaml = (port) => `
server: {listen: "127.0.0.1:${port}", workers: 1}
providers:
  s: {type: sim}
models:
  m: {provider: s}
`;
    const c = await startBaton(yaml('$PORT'), { listenFlag: false });
    const other = c.port === 29999 ? 29998 : c.port + 1;
    const count = (re) => (c.proc.err().match(re) || []).length;
    // Reloads with the file's listen set to `port`; returns the warnings it added.
    async function reloadWith(port) {
        const before = count(/server\.listen changed/g), done = count(/configuration reloaded/g);
        writeFileSync(c.cfg, yaml(port));
        c.proc.child.kill('SIGHUP');
        const end = Date.now() + 3000 * SLOW;
        while (Date.now() < end && count(/configuration reloaded/g) === done) await sleep(20);
        eq(count(/configuration reloaded/g), done + 1, 'reload done');
        return count(/server\.listen changed/g) - before;
    }
    try {
        eq(await reloadWith(other), 1, 'warnings after changing listen');
        const want = `reload: server.listen changed to 127.0.0.1:${other}; baton keeps listening on 127.0.0.1:${c.port} until a restart`;
        assert(c.proc.err().includes(want), `warning text: ${c.proc.err().slice(-400)}`);
        eq(await reloadWith(c.port), 0, 'warnings after restoring listen to the address in use');
        eq(await reloadWith(c.port), 0, 'warnings after another reload with the address in use');
        eq(await reloadWith(other), 1, 'warnings after changing it again');
    } finally { await c.stop(); }
});

test('a reload error with no line (the file gone) is logged and answered without a 0:0 position', async () => {
    const c = await startBaton(`
auth: {master_key: "mk-gone"}
providers:
  s: {type: sim}
models:
  m: {provider: s}
`);
    try {
        unlinkSync(c.cfg);
        const r = await post(`${c.base}/admin/reload`, '', { headers: { authorization: 'Bearer mk-gone' } });
        eq(r.status, 422, 'status');
        eq(r.json.error.message, `${c.cfg}: cannot open: No such file or directory`, 'message');
        const end = Date.now() + 2000 * SLOW;
        while (Date.now() < end && !/reload refused/.test(c.proc.err())) await sleep(20);
        assert(c.proc.err().includes(`${c.cfg}: error: cannot open: No such file or directory`), `log: ${c.proc.err().slice(-300)}`);
        assert(!/:0:0:/.test(c.proc.err()), `a 0:0 position in the log: ${c.proc.err().slice(-300)}`);
    } finally { await c.stop(); }
});

test('SIGTERM under load: every request accepted before it is answered in full, exit 0', async () => {
    const c = await startBaton(`
server: {workers: 2, drain_timeout: 30s}
providers:
  slow: {type: sim, seed: 3, ttft: 400ms, tokens_per_sec: 40, reply_tokens: 12}
models:
  slow: {provider: slow}
`);
    const N = 120;
    const msg = [{ role: 'user', content: 'drain me' }];
    let finishedEarly = 0, signalled = false;
    const reqs = Array.from({ length: N }, (_, i) => {
        const p = i % 2
            ? streamRaw(`${c.url}/chat/completions`, { model: 'slow', stream: true, messages: msg }, { timeout: 30000 })
            : post(`${c.url}/chat/completions`, { model: 'slow', messages: msg }, { timeout: 30000 });
        return p.then((r) => { if (!signalled) finishedEarly++; return r; });
    });
    // Every request is sent and accepted well within the simulator's 400 ms to
    // first token; then the signal.
    await sleep(150);
    signalled = true;
    c.proc.child.kill('SIGTERM');
    const res = await Promise.all(reqs);
    assert(finishedEarly < N, 'every request had finished before SIGTERM: nothing was in flight');
    res.forEach((r, i) => {
        eq(r.status, 200, `request ${i} status (${(r.text || JSON.stringify(r.error) || '').slice(0, 200)})`);
        if (i % 2) {
            assert(r.done && !r.error, `stream ${i} ended with [DONE] and no error (events ${r.events.length}, error ${JSON.stringify(r.error)})`);
            assert(r.events.length >= 10, `stream ${i} arrived whole (${r.events.length} events)`);
        } else {
            assert(r.json?.choices?.[0]?.message?.content, `request ${i} has its answer`);
        }
    });
    const { code, signal } = await c.proc.exited;
    eq(code, 0, `exit code (signal ${signal})`);
    console.log(`# ${N} requests in flight at SIGTERM (${finishedEarly} had finished before it): all answered in full`);
}, { timeout: 60000 });

test('SIGTERM during a slow stream: the stream ends with [DONE], new connections are refused, exit 0', async () => {
    let signalled = false;
    const streamP = streamRaw(`${b.url}/chat/completions`,
        { model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] },
        {
            headers: H,
            onEvent: () => { if (!signalled) { signalled = true; b.proc.child.kill('SIGTERM'); } },
        });
    const res = await streamP;
    assert(signalled, 'the stream started before SIGTERM');
    eq(res.status, 200, 'status');
    assert(res.done, `stream ended with [DONE] (events: ${res.events.length}, error: ${JSON.stringify(res.error)})`);
    assert(!res.error, 'no error event');
    assert(res.events.length > 15, `the whole reply arrived (${res.events.length} events)`);
    let refused = false;
    try { await get(`${b.base}/health/live`, { timeout: 2000 }); } catch { refused = true; }
    assert(refused, 'a new connection after drain is refused');
    const { code, signal } = await b.proc.exited;
    eq(code, 0, `exit code (signal ${signal})`);
}, { timeout: 30000 });

await run();
