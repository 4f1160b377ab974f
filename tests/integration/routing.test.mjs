// Routing policies in the running gateway, counted, never timed: a breaker
// takes a failing deployment out after N failures in a row and no request is
// lost; round_robin spreads evenly; a config with strategy cost is refused.
import { test, run, setup, assert, eq, startBaton, post, runBaton, writeTemp } from './lib.mjs';

const b = await setup(() => startBaton(`
providers:
  ok: {type: sim, seed: 2}
  f500: {type: sim, faults: {500: 1}}
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
`));
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

test('strategy cost is refused with a clear message; an unknown strategy names the choices', async () => {
    const f = writeTemp('cost.yaml', 'providers: {p: {type: sim}}\nmodels:\n  m: {strategy: cost, provider: p}\n');
    const r = await runBaton(['check', '-c', f]);
    assert(r.code !== 0, 'check accepted strategy cost');
    assert(/cost:? .*prices|strategy cost needs/.test(r.err + r.out), `message: ${r.err}`);
    const g = writeTemp('bad.yaml', 'providers: {p: {type: sim}}\nmodels:\n  m: {strategy: fastest, provider: p}\n');
    const r2 = await runBaton(['check', '-c', g]);
    assert(r2.code !== 0 && /expected one of: weighted, round_robin, least_busy, latency/.test(r2.err + r2.out), `message: ${r2.err}`);
});

await run();
