// Hedging (models.NAME.hedge), counted, never timed: when the first attempt has
// no response head after `after`, a second starts on the next deployment; the
// first 2xx head wins and the other attempt is cancelled at once (the fake
// provider sees its connection closed; the in-flight gauge goes back to 0; a
// breaker of 1 failure stays closed, so a cancelled attempt is no failure).
// A hedge that fails early leaves the first attempt alone, retries come after
// both failed and count the hedge, the client's x-baton-timeout caps it all,
// and a stream whose first byte went out is never switched.
import { test, run, setup, assert, eq, startBaton, post, get, streamRaw, freePort, waitFor, metricSum } from './lib.mjs';
import { startFake, cannedChunks } from '../fake/fake_provider.mjs';

const fake = await setup(async () => startFake(await freePort()));
fake.handle((req, res, h) => {
    const model = req.json?.model;
    if (model === 'hang') return h.hang();
    // a stream: the head and two events at once, then silence past the hedge's
    // `after`, then the connection breaks
    if (model === 'midfail') return h.sse(cannedChunks('midfail'), { gapMs: 150, breakAfter: 2 });
    return h.json(200, '{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}');
});

// weight 1000000 puts the stalling deployment first (weighted round robin)
const b = await setup(() => startBaton(`
providers:
  ok: {type: sim, seed: 3}
  stall: {type: sim, faults: {no_answer: 1}, timeouts: {first_byte: 400ms}}
  f500: {type: sim, faults: {500: 1}}
  fake: {type: openai, base_url: "${'$'}{FAKE_URL}", api_key: "sk-hedge-fake"}
models:
  hedged:
    hedge: {after: 50ms}
    breaker: {failures: 1, cooldown: 10m}
    deployments: [{provider: stall, model: st, weight: 1000000}, {provider: ok, model: fast}]
  hedged-fake:
    hedge: {after: 50ms}
    deployments: [{provider: fake, model: hang, weight: 1000000}, {provider: ok, model: fast2}]
  quick:
    hedge: {after: 5s}
    deployments: [{provider: ok, model: q1}, {provider: ok, model: q2}]
  both-fail:
    hedge: {after: 50ms}
    retry: {attempts: 3, backoff: 1ms, max_backoff: 2ms}
    deployments: [{provider: stall, model: st3, weight: 1000000}, {provider: f500, model: h5}, {provider: ok, model: after}]
  budget-two:
    hedge: {after: 50ms}
    retry: {attempts: 2, backoff: 1ms, max_backoff: 2ms}
    deployments: [{provider: stall, model: st4, weight: 1000000}, {provider: f500, model: h6}, {provider: ok, model: never}]
  all-stall:
    hedge: {after: 50ms}
    deployments: [{provider: stall, model: st5}, {provider: stall, model: st6}]
  midfail:
    hedge: {after: 50ms}
    deployments: [{provider: fake, model: midfail, weight: 1000000}, {provider: ok, model: never2}]
`, { env: { FAKE_URL: fake.url } }));
const CHAT = `${b.url}/chat/completions`;
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });
const metrics = async () => (await get(`${b.base}/metrics`)).text;
const dep = (d) => ({ deployment: d });

test('a stalled first attempt: the hedge answers all 20, hedges won counted, the stalled calls cancelled and no failure', async () => {
    for (let i = 0; i < 20; i++) {
        const r = await post(CHAT, chat('hedged'));
        eq(r.status, 200, `request ${i}: ${r.text.slice(0, 200)}`);
        eq(r.headers.get('x-baton-deployment'), 'ok/fast', 'served by');
        eq(r.headers.get('x-baton-attempts'), '2', 'attempts (the hedge included)');
        eq(r.headers.get('x-baton-route'), 'hedged (weighted, hedge): stall/st=hedged_out, ok/fast=ok (hedge won)', 'x-baton-route');
    }
    const m = await metrics();
    eq(metricSum(m, 'baton_deployment_hedges_total', dep('ok/fast')), 20, 'hedges started');
    eq(metricSum(m, 'baton_deployment_hedges_won_total', dep('ok/fast')), 20, 'hedges won');
    eq(metricSum(m, 'baton_deployment_hedged_out_total', dep('stall/st')), 20, 'attempts hedged out');
    eq(metricSum(m, 'baton_deployment_in_flight', dep('stall/st')), 0, 'stalled calls still in flight');
    eq(metricSum(m, 'baton_deployment_attempts_ended_total', dep('stall/st')), 0, 'a cancelled attempt is no outcome');
    eq(metricSum(m, 'baton_deployment_breaker_open', dep('stall/st')), 0, 'breaker (failures: 1) opened by a cancelled attempt');
    eq(metricSum(m, 'baton_deployment_hedges_won_total', dep('stall/st')), 0, 'hedges won on the stalled one');
});

test('the loser is cancelled at once: the provider sees its connection closed', async () => {
    fake.reset();
    for (let i = 0; i < 5; i++) {
        const r = await post(CHAT, chat('hedged-fake'));
        eq(r.status, 200, `request ${i}`);
        eq(r.headers.get('x-baton-deployment'), 'ok/fast2', 'served by');
    }
    eq(fake.requests.length, 5, 'requests the hanging deployment got');
    // each hanging request's connection is closed by baton (the provider's
    // first_byte timeout is 120 s: only the cancel closes it this soon)
    await waitFor(() => fake.openSockets.size === 0, 3000, 'the hanging connections closed');
    eq(metricSum(await metrics(), 'baton_deployment_in_flight', dep('fake/hang')), 0, 'in flight');
});

test('a first attempt that answers before `after` is not hedged', async () => {
    const before = metricSum(await metrics(), 'baton_deployment_hedges_total');
    for (let i = 0; i < 10; i++) {
        const r = await post(CHAT, chat('quick'));
        eq(r.status, 200, 'status');
        eq(r.headers.get('x-baton-attempts'), '1', 'attempts');
        assert(!/hedge/.test(r.headers.get('x-baton-route').split(':').slice(1).join(':')), `route: ${r.headers.get('x-baton-route')}`);
    }
    eq(metricSum(await metrics(), 'baton_deployment_hedges_total'), before, 'hedges started');
});

test('a stream hedges on the response head: the hedge streams the whole reply', async () => {
    const r = await streamRaw(CHAT, chat('hedged', { stream: true }));
    eq(r.status, 200, 'status');
    assert(r.done && !r.error && !r.readError, `stream complete: ${JSON.stringify(r.error)}`);
    assert(r.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length > 0, 'content events');
    eq(r.headers.get('x-baton-deployment'), 'ok/fast', 'served by');
    eq(r.headers.get('x-baton-route'), 'hedged (weighted, hedge): stall/st=hedged_out, ok/fast=ok (hedge won)', 'x-baton-route');
});

test('the hedge fails early: the first attempt goes on alone; retries come after both failed and count the hedge', async () => {
    const r = await post(CHAT, chat('both-fail'));
    eq(r.status, 200, `status: ${r.text.slice(0, 200)}`);
    eq(r.headers.get('x-baton-deployment'), 'ok/after', 'served by the retry');
    eq(r.headers.get('x-baton-attempts'), '3', 'attempts');
    eq(r.headers.get('x-baton-route'), 'both-fail (weighted, hedge): f500/h5=server_error, stall/st3=timeout, ok/after=ok', 'x-baton-route');
    const two = await post(CHAT, chat('budget-two'));
    eq(two.status, 504, `the first attempt's timeout is the answer: ${two.text.slice(0, 200)}`);
    eq(two.headers.get('x-baton-attempts'), '2', 'attempts: retry.attempts 2 spent by the attempt and its hedge');
    eq(two.headers.get('x-baton-route'), 'budget-two (weighted, hedge): f500/h6=server_error, stall/st4=timeout', 'x-baton-route');
});

test("the client's x-baton-timeout caps the attempt and its hedge", async () => {
    const t0 = Date.now();
    const r = await post(CHAT, chat('all-stall'), { headers: { 'x-baton-timeout': '200ms' } });
    eq(r.status, 504, 'status');
    eq(r.headers.get('x-baton-attempts'), '2', 'attempts');
    assert(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    await waitFor(async () => metricSum(await metrics(), 'baton_deployment_in_flight', dep('stall/st6')) === 0 &&
        metricSum(await metrics(), 'baton_deployment_in_flight', dep('stall/st5')) === 0, 2000, 'nothing left in flight');
});

test('a stream whose first byte went out is never switched: it ends with an error event', async () => {
    fake.reset();
    const before = metricSum(await metrics(), 'baton_deployment_hedges_total');
    const r = await streamRaw(CHAT, chat('midfail', { stream: true }));
    eq(r.status, 200, 'status');
    assert(!r.done, 'a clean end marker after a broken stream');
    assert(r.error, 'an error event');
    eq(r.headers.get('x-baton-attempts'), '1', 'attempts');
    eq(r.headers.get('x-baton-deployment'), 'fake/midfail', 'served by');
    eq(fake.requests.length, 1, 'requests to the provider');
    eq(metricSum(await metrics(), 'baton_deployment_hedges_total'), before, 'hedges started');
});

await run();
