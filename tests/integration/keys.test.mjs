// Virtual keys (docs/governance.md): the admin API (create, list, get, patch,
// revoke), a key used with the official OpenAI SDK within what it is allowed,
// revocation and expiry (401), model rights (403), the key id in the access
// log, two instances on one store, `baton keys` from the command line while
// servers run, and keys surviving a restart.
import { join } from 'node:path';
import {
    test, run, setup, assert, eq, startBaton, post, get, http, sleep, client, runBaton, tmpDir,
    readText, waitFor, rejects, rawConnect, parseResponses, deepEq, SLOW,
} from './lib.mjs';

const MK = 'sk-master-keys-test';
const M = { authorization: `Bearer ${MK}` };
const DB = join(tmpDir(), 'keys.db');
const ACCESS = join(tmpDir(), 'keys-access.log');
const cfg = (access) => `
server: {workers: 2}
auth: {master_key: "${MK}"}
store: {sqlite: "${DB}"}
${access ? `log: {access: "${access}"}` : ''}
providers:
  sim: {type: sim, seed: 3}
  slowsim: {type: sim, seed: 4, ttft: 600ms}
models:
  chat: {provider: sim, model: m1}
  other: {provider: sim, model: m2}
  slow: {provider: slowsim, model: s1}
`;

let a = await setup(() => startBaton(cfg(ACCESS)));
const b = await setup(() => startBaton(cfg(null)));
const chat = (base, key, model = 'chat') =>
    client(base, { apiKey: key }).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
const status = async (base, key, model = 'chat') => {
    try { await chat(base, key, model); return 200; } catch (e) { return e.status ?? String(e); }
};
const createKey = async (base, body = {}) => {
    const r = await post(`${base}/admin/keys`, body, { headers: M });
    eq(r.status, 201, `POST /admin/keys status (${r.text})`);
    return r.json;
};

test('POST /admin/keys answers 201 with the key once; it works with the OpenAI SDK', async () => {
    const k = await createKey(a.base, { user: 'ann', team: 'red', rpm: 100, budget_usd: 5.25, metadata: { cc: 'x1' } });
    assert(/^sk-bt-[A-Za-z0-9_-]{43}$/.test(k.key), `key shape: ${k.key}`);
    assert(/^key_[0-9a-f]{16}$/.test(k.id), `id shape: ${k.id}`);
    eq(k.user, 'ann'); eq(k.team, 'red'); eq(k.rpm, 100); eq(k.budget_usd, 5.25);
    eq(k.budget_period, 'month'); eq(k.status, 'active'); deep(k.metadata, { cc: 'x1' });
    eq(k.key_prefix, k.key.slice(0, 12));
    const r = await chat(a.url, k.key);
    assert(r.choices[0].message.content.length > 0, 'a reply');
    // x-api-key works as for the master key
    const x = await post(`${a.url}/chat/completions`, { model: 'chat', messages: [{ role: 'user', content: 'hi' }] },
        { headers: { 'x-api-key': k.key } });
    eq(x.status, 200, 'x-api-key');
    // GET shows no key material
    const one = await get(`${a.base}/admin/keys/${k.id}`, { headers: M });
    eq(one.status, 200);
    eq(one.json.key, undefined, 'no key in GET');
    assert(!one.text.includes(k.key.slice(12)), 'no key material in GET');
    const list = await get(`${a.base}/admin/keys`, { headers: M });
    eq(list.status, 200);
    assert(list.json.data.some((e) => e.id === k.id), 'listed');
    assert(!list.text.includes(k.key.slice(12)), 'no key material in the list');
});

function deep(got, want, what = 'value') { eq(JSON.stringify(got), JSON.stringify(want), what); }

test('the access log names the key id', async () => {
    const k = await createKey(a.base, {});
    await chat(a.url, k.key);
    await waitFor(() => readText(ACCESS).split('\n').some((l) => l.includes(`"key_id":"${k.id}"`)), 2000 * SLOW, 'key_id in the access log');
});

test('the access log of the next request on the same connection has no key id', async () => {
    const k = await createKey(a.base, {});
    const body = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    const c = await rawConnect(a.port);
    const reqText = (key, id) => `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\n` +
        `x-request-id: ${id}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
    for (let i = 0; i < 3; i++) {
        await c.write(reqText(k.key, `kv-${i}`));
        await c.waitFor((buf) => parseResponses(buf).responses.length === 2 * i + 1);
        await c.write(reqText(MK, `km-${i}`));
        await c.waitFor((buf) => parseResponses(buf).responses.length === 2 * i + 2);
    }
    c.close();
    deepEq(parseResponses(c.data()).responses.map((r) => r.status), [200, 200, 200, 200, 200, 200], 'statuses on one connection');
    await waitFor(() => readText(ACCESS).includes('"id":"km-2"'), 2000 * SLOW, 'the lines');
    const lines = readText(ACCESS).split('\n').filter((l) => /"id":"k[vm]-/.test(l)).map((l) => JSON.parse(l));
    eq(lines.length, 6);
    for (const l of lines) eq(l.key_id, l.id.startsWith('kv-') ? k.id : undefined, `key_id of ${l.id}`);
});

test('rpm: over the limit in a minute is 429 rate_limit_exceeded with Retry-After', async () => {
    // keep the three requests inside one calendar minute
    const sec = new Date().getUTCSeconds();
    if (sec > 55) await sleep((61 - sec) * 1000);
    const k = await createKey(a.base, { rpm: 2 });
    const body = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };
    const h = { authorization: `Bearer ${k.key}` };
    eq((await post(`${a.url}/chat/completions`, body, { headers: h })).status, 200);
    eq((await post(`${a.url}/chat/completions`, body, { headers: h })).status, 200);
    const r = await post(`${a.url}/chat/completions`, body, { headers: h });
    eq(r.status, 429, r.text);
    eq(r.json.error.code, 'rate_limit_exceeded');
    const ra = Number(r.headers.get('retry-after'));
    assert(ra >= 1 && ra <= 60, `retry-after ${r.headers.get('retry-after')}`);
    // the counters are per key: another key and the master key pass
    eq(await status(a.url, MK), 200, 'master key');
    eq(await status(a.url, (await createKey(a.base, { rpm: 2 })).key), 200, 'another key');
}, { timeout: 30000 });

test('concurrency: requests beyond the limit in flight get 429; a slot comes back when one ends', async () => {
    const k = await createKey(a.base, { concurrency: 1 });
    const first = chat(a.url, k.key, 'slow');
    await sleep(150 * SLOW);
    const e = await rejects(chat(a.url, k.key, 'slow'));
    eq(e.status, 429); eq(e.code, 'rate_limit_exceeded');
    await first;
    eq(await status(a.url, k.key, 'slow'), 200, 'after the first ended');
    // an aborted request gives its slot back too
    const ac = new AbortController();
    const p = client(a.url, { apiKey: k.key }).chat.completions.create(
        { model: 'slow', messages: [{ role: 'user', content: 'hi' }] }, { signal: ac.signal }).catch(() => 'aborted');
    await sleep(150 * SLOW);
    ac.abort();
    eq(await p, 'aborted');
    await waitFor(async () => (await status(a.url, k.key, 'slow')) === 200, 3000 * SLOW, 'a slot after the abort');
}, { timeout: 30000 });

test('revoked: 401 within a second, on this instance and another one', async () => {
    const k = await createKey(a.base, {});
    eq(await status(a.url, k.key), 200, 'before revoke on A');
    await waitFor(async () => (await status(b.url, k.key)) === 200, 1000 * SLOW, 'new key works on B');
    const d = await http('DELETE', `${a.base}/admin/keys/${k.id}`, { headers: M });
    eq(d.status, 200); eq(d.json.status, 'revoked'); assert(d.json.revoked_at > 0, 'revoked_at');
    eq(await status(a.url, k.key), 401, 'after revoke on A, at once');
    const t0 = Date.now();
    await waitFor(async () => (await status(b.url, k.key)) === 401, 1000 * SLOW, 'revoked on B');
    assert(Date.now() - t0 <= 1000 * SLOW, 'within a second');
    const again = await get(`${a.base}/admin/keys/${k.id}`, { headers: M });
    eq(again.json.status, 'revoked');
    const p = await http('PATCH', `${a.base}/admin/keys/${k.id}`, { headers: M, body: { rpm: 1 } });
    eq(p.status, 409, 'PATCH of a revoked key');
});

test('a key limited to models is refused others (403 model_not_allowed); PATCH widens it', async () => {
    const k = await createKey(a.base, { models: ['chat'] });
    eq(await status(a.url, k.key, 'chat'), 200);
    const e = await rejects(chat(a.url, k.key, 'other'));
    eq(e.status, 403); eq(e.code, 'model_not_allowed');
    // its model list shows only what it may use
    const sdk = client(a.url, { apiKey: k.key });
    deep((await sdk.models.list()).data.map((m) => m.id), ['chat'], '/v1/models for the key');
    eq((await sdk.models.retrieve('chat')).id, 'chat');
    eq((await rejects(sdk.models.retrieve('other'))).status, 404, 'a model it may not use');
    eq((await rejects(sdk.models.retrieve('sim/m2'))).status, 404, 'a direct id it may not use');
    const all = (await client(a.url, { apiKey: MK }).models.list()).data.map((m) => m.id);
    assert(all.includes('other') && all.includes('slow'), `master key sees every model: ${all}`);
    const p = await http('PATCH', `${a.base}/admin/keys/${k.id}`, { headers: M, body: { models: ['chat', 'other'] } });
    eq(p.status, 200, p.text); deep(p.json.models, ['chat', 'other']);
    eq(await status(a.url, k.key, 'other'), 200, 'after PATCH');
});

test('an expired key gets 401', async () => {
    const k = await createKey(a.base, { expires_at: Math.floor(Date.now() / 1000) + 2 });
    eq(await status(a.url, k.key), 200, 'before expiry');
    await sleep(3000);
    const e = await rejects(chat(a.url, k.key));
    eq(e.status, 401);
    assert(/expired/.test(e.message), e.message);
    eq((await get(`${a.base}/admin/keys/${k.id}`, { headers: M })).json.status, 'expired');
}, { timeout: 20000 });

test('unknown keys 401; virtual keys get 403 on /admin; bad admin input 400/404/405', async () => {
    eq(await status(a.url, 'sk-bt-' + 'A'.repeat(43)), 401);
    const k = await createKey(a.base, {});
    const r = await get(`${a.base}/admin/keys`, { headers: { authorization: `Bearer ${k.key}` } });
    eq(r.status, 403); eq(r.json.error.code, 'admin_forbidden');
    eq((await get(`${a.base}/admin/keys`)).status, 401, 'no key');
    const count = async () => (await get(`${a.base}/admin/keys`, { headers: M })).json.data.length;
    const before = await count();
    const bad = ['{"rpm":0}', '{"nope":1}', '[1]', '{"budget_usd":1.0000001}', '{"budget_period":"year"}',
        '{"expires_at":"2001-01-01T00:00:00Z"}', '{"models":"chat"}', '{', '{"budget_usd":-1}', '{"rpm":-5}',
        '{"tpm":"many"}', '{"concurrency":1.5}', '{"user":"a\u0000b"}', '{"metadata":[1]}'];
    for (const body of bad) {
        const x = await post(`${a.base}/admin/keys`, body, { headers: M });
        eq(x.status, 400, `${body}: ${x.text}`);
        assert(x.json && x.json.error && x.json.error.message && x.json.error.type === 'invalid_request_error', `an OpenAI error object: ${x.text}`);
    }
    eq(await count(), before, 'no key was written by a refused request');
    // a refused PATCH changes nothing
    for (const body of ['{"budget_usd":-1}', '{"nope":1}', '{"rpm":"x"}']) {
        const x = await http('PATCH', `${a.base}/admin/keys/${k.id}`, { headers: M, body: JSON.parse(body) });
        eq(x.status, 400, `PATCH ${body}: ${x.text}`);
    }
    const same = await get(`${a.base}/admin/keys/${k.id}`, { headers: M });
    eq(same.json.budget_usd, null, 'budget unchanged'); eq(same.json.rpm, null, 'rpm unchanged');
    eq((await get(`${a.base}/admin/keys/key_0123456789abcdef`, { headers: M })).status, 404);
    eq((await get(`${a.base}/admin/keys/nonsense`, { headers: M })).status, 404);
    eq((await http('DELETE', `${a.base}/admin/keys/key_0123456789abcdef`, { headers: M })).status, 404);
    eq((await http('PUT', `${a.base}/admin/keys`, { headers: M, body: {} })).status, 405);
});

test('baton keys create / revoke from the command line take effect within a second', async () => {
    const c = await runBaton(['keys', 'create', '-c', a.cfg, '--user', 'cli', '--models', 'chat,other', '--rpm', '100', '--budget-usd', '5']);
    eq(c.code, 0, `exit code (${c.err})`);
    const k = JSON.parse(c.out);
    eq(k.user, 'cli'); eq(k.rpm, 100); eq(k.budget_usd, 5); deep(k.models, ['chat', 'other']);
    const t0 = Date.now();
    await waitFor(async () => (await status(a.url, k.key)) === 200, 1000 * SLOW, 'CLI key works on A');
    await waitFor(async () => (await status(b.url, k.key)) === 200, 1000 * SLOW, 'CLI key works on B');
    assert(Date.now() - t0 <= 1500 * SLOW, `took ${Date.now() - t0} ms`);
    const l = await runBaton(['keys', 'list', '-c', a.cfg]);
    eq(l.code, 0);
    assert(l.out.includes(k.id) && !l.out.includes(k.key.slice(12)), 'list shows the id, not the key');
    const u = await runBaton(['keys', 'update', '-c', a.cfg, k.id, '--rpm', '7', '--team', 'blue']);
    eq(u.code, 0, u.err);
    eq(JSON.parse(u.out).rpm, 7);
    const bad = await runBaton(['keys', 'create', '-c', a.cfg, '--rpm', 'many']);
    eq(bad.code, 2, 'a bad flag value'); assert(/--rpm/.test(bad.err), bad.err);
    const bad2 = await runBaton(['keys', 'create', '-c', a.cfg, '--budget-period', 'year']);
    eq(bad2.code, 1); assert(/budget_period/.test(bad2.err), bad2.err);
    const r = await runBaton(['keys', 'revoke', '-c', a.cfg, k.id]);
    eq(r.code, 0, r.err);
    await waitFor(async () => (await status(a.url, k.key)) === 401, 1000 * SLOW, 'revoked on A');
    await waitFor(async () => (await status(b.url, k.key)) === 401, 1000 * SLOW, 'revoked on B');
});

test('keys survive a restart', async () => {
    const k = await createKey(a.base, { models: ['chat'], team: 'keep' });
    await a.stop();
    await b.stop();
    a = await startBaton(cfg(null));
    eq(await status(a.url, k.key), 200, 'the key after a restart');
    eq(await status(a.url, k.key, 'other'), 403, 'its models after a restart');
    const one = await get(`${a.base}/admin/keys/${k.id}`, { headers: M });
    eq(one.json.team, 'keep');
    // the master key still works, and `baton check` names the store
    eq(await status(a.url, MK, 'other'), 200, 'master key');
    const ch = await runBaton(['check', '-c', a.cfg]);
    assert(ch.out.includes(`store: sqlite ${DB}`), ch.out);
});

await run();
