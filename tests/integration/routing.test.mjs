// Routing policies in the running gateway, counted, never timed: a breaker
// takes a failing deployment out after N failures in a row and no request is
// lost; round_robin spreads evenly; retry makes a flaky deployment answer every
// request and never retries a refused credential on the same deployment;
// fallback goes to other models only for the classes it lists; a config with
// strategy cost without prices is refused.
import { readFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test, run, setup, assert, eq, startBaton, post, get, runBaton, writeTemp, freePort, REPO } from './lib.mjs';
import { startFake } from '../fake/fake_provider.mjs';

const fake = await setup(async () => startFake(await freePort()));
fake.handle((req, res, h) => {
    const body = JSON.parse(req.body?.toString() || '{}');
    if (body.model === 'up-auth') return h.json(401, '{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}');
    if (body.model === 'up-small') return h.json(400, '{"error":{"message":"This model\'s maximum context length is 8192 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}');
    return h.json(200, '{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}');
});

const b = await setup(() => startBaton(`
providers:
  ok: {type: sim, seed: 2}
  f500: {type: sim, faults: {500: 1}}
  flaky: {type: sim, seed: 5, faults: {429: 0.1, 500: 0.1, 503: 0.05, reset_before: 0.05}}
  flaky30:
    type: sim
    seed: 9
    faults: {429: 0.08, 500: 0.08, 503: 0.05, reset_before: 0.05, no_answer: 0.04}
    timeouts: {first_byte: 300ms}
  fake: {type: openai, base_url: "${'$'}{FAKE_URL}", api_key: "sk-routing-fake"}
models:
  guarded:
    strategy: round_robin
    breaker: {failures: 2, cooldown: 10m}
    deployments:
      - {provider: f500, model: bad}
      - {provider: ok, model: good}
  spread:
    strategy: round_robin
    deployments:
      - {provider: ok, model: s1}
      - {provider: ok, model: s2}
      - {provider: ok, model: s3}
  unguarded:
    strategy: round_robin
    deployments:
      - {provider: f500, model: bad2}
      - {provider: ok, model: good2}
  pair:
    strategy: round_robin
    deployments: [{provider: flaky30, model: p1}, {provider: ok, model: p2}]
  weighted31:
    deployments: [{provider: ok, model: w3, weight: 3}, {provider: ok, model: w1, weight: 1}]
  flaky-retried: {provider: flaky, model: fl, retry: {attempts: 10, backoff: 1ms, max_backoff: 5ms}}
  flaky-once: {provider: flaky, model: fl2}
  always-500: {provider: f500, model: a5, retry: {attempts: 3, backoff: 1ms, max_backoff: 2ms}}
  refused:
    retry: {attempts: 4, backoff: 1ms, max_backoff: 2ms}
    deployments: [{provider: fake, model: up-auth}]
  refused-then-ok:
    strategy: round_robin
    retry: {attempts: 4, backoff: 1ms, max_backoff: 2ms}
    deployments: [{provider: fake, model: up-auth}, {provider: ok, model: after-auth}]
  broken-with-fallback: {provider: f500, model: b1, fallback: {models: [spare]}}
  spare: {provider: ok, model: spare-up}
  small: {provider: fake, model: up-small, fallback: {models: [large], on: [context_window]}}
  small-no-cw: {provider: fake, model: up-small, fallback: {models: [large], on: [server_error]}}
  large: {provider: ok, model: large-up}
  sticky:
    strategy: round_robin
    sticky: user
    deployments: [{provider: ok, model: k1}, {provider: ok, model: k2}, {provider: ok, model: k3}]
`, { env: { FAKE_URL: fake.url } }));
const CHAT = `${b.url}/chat/completions`;
const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] });

test('breaker: after 2 failures in a row the failing deployment is skipped; every request answered', async () => {
    let tried = 0;
    for (let i = 0; i < 20; i++) {
        const r = await post(CHAT, chat('guarded'));
        eq(r.status, 200, `request ${i}: ${r.text.slice(0, 200)}`);
        eq(r.headers.get('x-baton-deployment'), 'ok/good', 'served by');
        if (r.headers.get('x-baton-attempts') === '2') tried++;
    }
    eq(tried, 2, 'requests that met the failing deployment first (then its breaker opened)');
    const m = (await get(`${b.base}/metrics`)).text;
    assert(m.includes('baton_deployment_breaker_open{deployment="f500/bad"} 1'), 'metrics: the breaker is open');
    assert(m.includes('baton_deployment_breaker_open{deployment="ok/good"} 0'), 'metrics: the other is closed');
    assert(m.includes('baton_deployment_attempts_ended_total{deployment="f500/bad",class="server_error"} 2'), 'metrics: two server errors');
    assert(m.includes('baton_deployment_attempts_ended_total{deployment="ok/good",class="ok"} 20'), 'metrics: twenty successes');
    // the same sequence without a breaker meets it every other request
    let again = 0;
    for (let i = 0; i < 20; i++) {
        const r = await post(CHAT, chat('unguarded'));
        eq(r.status, 200, 'unguarded');
        if (r.headers.get('x-baton-attempts') === '2') again++;
    }
    // (each worker keeps its own rotation: about every other request, not exactly)
    assert(again >= 8 && again <= 12, `without a breaker about every other request met it: ${again} of 20`);
});

test('round_robin spreads requests evenly over a group', async () => {
    const seen = {};
    for (let i = 0; i < 300; i++) {
        const r = await post(CHAT, chat('spread'));
        eq(r.status, 200, 'status');
        const d = r.headers.get('x-baton-deployment');
        seen[d] = (seen[d] || 0) + 1;
    }
    for (const d of ['ok/s1', 'ok/s2', 'ok/s3']) assert(Math.abs((seen[d] || 0) - 100) <= 3, `${d}: ${seen[d]} of 300 (${JSON.stringify(seen)})`);
});

test('one of two deployments failing 30% (429/500/503/reset/no answer) costs no request', async () => {
    let moved = 0;
    const classes = {};
    for (let i = 0; i < 300; i++) {
        const r = await post(CHAT, chat('pair'));
        eq(r.status, 200, `request ${i}: ${r.text.slice(0, 200)}`);
        if (r.headers.get('x-baton-attempts') === '2') {
            moved++;
            const c = /flaky30\/p1=(\w+)/.exec(r.headers.get('x-baton-route'))?.[1];
            classes[c] = (classes[c] || 0) + 1;
        }
    }
    // about 150 requests met the flaky one first and 30% of those failed over
    assert(moved >= 20 && moved <= 90, `${moved} of 300 moved to the other deployment`);
    for (const c of ['rate_limit', 'server_error', 'connection', 'timeout'])
        assert(classes[c] > 0, `no ${c} failure among the moved requests: ${JSON.stringify(classes)}`);
});

test('weighted 3:1 spreads 2000 requests within a few percent', async () => {
    const seen = {};
    for (let i = 0; i < 2000; i++) {
        const r = await post(CHAT, chat('weighted31'));
        eq(r.status, 200, 'status');
        const d = r.headers.get('x-baton-deployment');
        seen[d] = (seen[d] || 0) + 1;
    }
    assert(Math.abs((seen['ok/w3'] || 0) - 1500) <= 40, `3:1 over 2000: ${JSON.stringify(seen)}`);
});

test('retry: a deployment failing 30% (429/500/503/reset) answers all 200 requests; without retry some fail', async () => {
    let retried = 0;
    for (let i = 0; i < 200; i++) {
        const r = await post(CHAT, chat('flaky-retried'));
        eq(r.status, 200, `request ${i}: ${r.text.slice(0, 200)}`);
        if (Number(r.headers.get('x-baton-attempts')) > 1) retried++;
    }
    assert(retried > 20, `only ${retried} of 200 needed a retry: the faults did not happen`);
    let failed = 0;
    for (let i = 0; i < 200; i++) if ((await post(CHAT, chat('flaky-once'))).status !== 200) failed++;
    assert(failed > 20, `without retry only ${failed} of 200 failed`);
});

test('retry: attempts in all, then the error; a refused credential is not retried on the same deployment', async () => {
    const r = await post(CHAT, chat('always-500'));
    eq(r.status, 502, 'status');
    eq(r.headers.get('x-baton-attempts'), '3', 'attempts');
    fake.reset();
    const a = await post(CHAT, chat('refused'));
    eq(a.status, 502, 'refused alone');
    eq(a.json.error.code, 'upstream_auth', 'code');
    eq(a.headers.get('x-baton-route'), 'refused (weighted): fake/up-auth=auth', 'x-baton-route');
    eq(fake.requests.length, 1, 'requests the refusing deployment got');
    fake.reset();
    for (let i = 0; i < 2; i++) {
        const b2 = await post(CHAT, chat('refused-then-ok'));
        eq(b2.status, 200, 'the other deployment answers');
        eq(b2.headers.get('x-baton-deployment'), 'ok/after-auth', 'served by');
    }
    assert(fake.requests.length <= 2, `the refusing deployment was tried ${fake.requests.length} times for 2 requests`);
});

test('fallback: another model answers a failure of a listed class, never one that is not listed', async () => {
    const r = await post(CHAT, chat('broken-with-fallback'));
    eq(r.status, 200, `status: ${r.text.slice(0, 200)}`);
    eq(r.headers.get('x-baton-deployment'), 'ok/spare-up', 'served by the fallback');
    eq(r.headers.get('x-baton-attempts'), '2', 'attempts');
    eq(r.headers.get('x-baton-route'), 'broken-with-fallback (weighted, fallback): f500/b1=server_error, ok/spare-up=ok', 'x-baton-route');
    const cw = await post(CHAT, chat('small'));
    eq(cw.status, 200, 'context_window listed: the larger model answers');
    eq(cw.headers.get('x-baton-deployment'), 'ok/large-up', 'served by');
    const no = await post(CHAT, chat('small-no-cw'));
    eq(no.status, 400, 'context_window not listed: the provider\'s 400 goes to the client');
    eq(no.json.error.code, 'context_length_exceeded', 'code');
    eq(no.headers.get('x-baton-attempts'), '1', 'attempts');
});

test('strategy cost without prices is refused with a clear message; an unknown strategy names the choices', async () => {
    const f = writeTemp('cost.yaml', 'providers: {p: {type: sim}}\nmodels:\n  m: {strategy: cost, provider: p}\n');
    const r = await runBaton(['check', '-c', f]);
    assert(r.code !== 0, 'check accepted strategy cost');
    assert(/cost:? .*prices|strategy cost needs/.test(r.err + r.out), `message: ${r.err}`);
    const g = writeTemp('bad.yaml', 'providers: {p: {type: sim}}\nmodels:\n  m: {strategy: fastest, provider: p}\n');
    const r2 = await runBaton(['check', '-c', g]);
    assert(r2.code !== 0 && /expected one of: weighted, round_robin, least_busy, latency/.test(r2.err + r2.out), `message: ${r2.err}`);
});

test('sticky: user keeps one end user on one deployment (body user or x-baton-user); others still rotate', async () => {
    const where = async (extra, headers = {}) =>
        (await post(CHAT, { ...chat('sticky'), ...extra }, { headers })).headers.get('x-baton-deployment');
    const users = {};
    for (const u of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) {
        const first = await where({ user: u });
        for (let i = 0; i < 6; i++) eq(await where({ user: u }), first, `${u}'s deployment, request ${i}`);
        eq(await where({}, { 'x-baton-user': u }), first, `${u} by x-baton-user`);
        users[first] = (users[first] || 0) + 1;
    }
    assert(Object.keys(users).length >= 2, `six users all on one deployment: ${JSON.stringify(users)}`);
    const seen = new Set();
    for (let i = 0; i < 6; i++) seen.add(await where({}));
    eq(seen.size, 3, 'without a user the group rotates');
    const bad = await post(CHAT, chat('sticky'), { headers: { 'x-baton-user': 'a\tb' } });
    eq(bad.status, 400, 'a tab (a control character) in x-baton-user');
});

test('every whole config in docs/routing.md passes baton check', async () => {
    const doc = readFileSync(join(REPO, 'docs/routing.md'), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]).filter((y) => y.includes('providers:'));
    assert(blocks.length >= 2, `${blocks.length} yaml examples in docs/routing.md`);
    for (const [i, y] of blocks.entries()) {
        const f = writeTemp(`routing-doc-${i}.yaml`, y);
        // a router file the example names, trained on a few rows beside it
        for (const m of y.matchAll(/router: \{file: (\S+),/g)) {
            const rows = Array.from({ length: 40 }, (_, k) => JSON.stringify({ id: `d${k}`, prompt: k % 2 ? `Prove lemma ${k}` : `Hello ${k}`, scores: { s: 1, w: k % 2 ? 0 : 1 } })).join('\n');
            const out = join(dirname(f), m[1]);
            mkdirSync(dirname(out), { recursive: true });
            const t = await runBaton(['route', 'train', '--data', writeTemp('doc-rows.jsonl', rows), '--strong', 's', '--weak', 'w', '-o', out, '--bits', '10', '--folds', '4']);
            eq(t.code, 0, `route train: ${t.err}`);
        }
        const r = await runBaton(['check', '-c', f], { env: { OPENAI_API_KEY: 'sk-x', DEEPSEEK_API_KEY: 'sk-y', UPSTAGE_API_KEY: 'up-z' } });
        eq(r.code, 0, `example ${i + 1}: baton check: ${r.err}`);
    }
});

await run();
