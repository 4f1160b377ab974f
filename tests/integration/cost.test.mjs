// Cost: a non-streamed reply carries x-baton-cost-usd, the exact decimal the
// access log records, computed from the usage in the reply and the configured
// price (cached prompt tokens and reasoning tokens priced apart, never twice); a
// stream's usage chunk carries cost_usd only with x-baton-include-cost: true; a
// reply without usage is priced from baton's own count and says so; strategy
// cost sends traffic to the cheapest deployment and is refused without prices.
import { readFileSync } from 'node:fs';
import { test, run, setup, assert, eq, startBaton, post, streamRaw, runBaton, writeTemp, tmpDir, freePort, waitFor, client } from './lib.mjs';
import { validate } from './schema.mjs';
import { startFake } from '../fake/fake_provider.mjs';

const fake = await setup(async () => startFake(await freePort()));
fake.handle((req, res, h) => {
    const body = JSON.parse(req.body?.toString() || '{}');
    if (body.model === 'no-usage')
        return h.json(200, '{"id":"x","object":"chat.completion","created":1,"model":"no-usage","choices":[{"index":0,"message":{"role":"assistant","content":"hello world","refusal":null},"logprobs":null,"finish_reason":"stop"}]}');
    return h.json(200, '{"id":"x","object":"chat.completion","created":1,"model":"details","choices":[{"index":0,"message":{"role":"assistant","content":"ok","refusal":null},"logprobs":null,"finish_reason":"stop"}],' +
        '"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":400},"completion_tokens_details":{"reasoning_tokens":200}}}');
});

const access = `${tmpDir()}/access.log`;
const b = await setup(() => startBaton(`
log: {access: "${access}"}
providers:
  sim: {type: sim}
  sim2: {type: sim, seed: 2}
  cut: {type: sim, faults: {reset_mid: 1}}
  f500: {type: sim, faults: {500: 1}}
  fake: {type: openai, base_url: "${'$'}{FAKE_URL}", api_key: "sk-cost-fake"}
models:
  demo: {provider: sim, price: {input: 0.15, output: 0.60}}
  free: {provider: sim}
  cut: {provider: cut, price: {input: 1, output: 2}}
  details: {provider: fake, price: {input: 2.5, cached_input: 1.25, output: 10, reasoning: 12}}
  no-usage: {provider: fake, model: no-usage, price: {input: 1, output: 2}}
  broken:
    strategy: cost
    breaker: {failures: 2, cooldown: 10m}
    deployments:
      - {provider: sim, model: dear, price: {input: 2.5, output: 10}}
      - {provider: f500, model: thrifty, price: {input: 0.15, output: 0.60}}
      - {provider: sim, model: middling, price: {input: 1, output: 4}}
  cheap:
    strategy: cost
    deployments:
      - {provider: sim, model: dear, price: {input: 2.5, output: 10}}
      - {provider: sim2, model: thrifty, price: {input: 0.15, output: 0.60}}
      - {provider: sim, model: middling, price: {input: 1, output: 4}}
`, { env: { FAKE_URL: fake.url } }));

const CHAT = `${b.url}/chat/completions`;
const user = (text, model = 'demo') => ({ model, messages: [{ role: 'user', content: text }] });

// Exact decimal arithmetic for the expectations: prices in micro-USD per million
// tokens, i.e. pico-USD per token, as BigInt; printed like baton prints USD.
const usd = (pico) => {
    const s = pico.toString().padStart(13, '0');
    const whole = s.slice(0, -12), frac = s.slice(-12).replace(/0+$/, '');
    return frac ? `${whole}.${frac}` : whole;
};
const micro = (x) => BigInt(Math.round(x * 1e6));

const accessLines = () => readFileSync(access, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const accessFor = async (id) => {
    let line;
    await waitFor(() => (line = accessLines().find((l) => l.id === id)), 5000, `access line ${id}`);
    return line;
};

test('a reply via the SDK carries x-baton-cost-usd: its usage at the configured price, as logged', async () => {
    const sdk = client(b.url);
    const { data, response } = await sdk.chat.completions.create(user('What does it cost?')).withResponse();
    validate('CreateChatCompletionResponse', data);
    const want = usd(BigInt(data.usage.prompt_tokens) * micro(0.15) + BigInt(data.usage.completion_tokens) * micro(0.60));
    eq(response.headers.get('x-baton-cost-usd'), want, 'x-baton-cost-usd');
    assert(/^\d+(\.\d*[1-9])?$/.test(want), `plain decimal: ${want}`);
    eq(response.headers.get('x-baton-cost-estimated'), null, 'not an estimate');
    const line = await accessFor(response.headers.get('x-request-id'));
    eq(String(line.cost_usd), want, 'the access log records the same cost');
    assert(!line.usage_estimated, 'access line: not estimated');
});

test('cached and reasoning tokens are priced apart, never counted twice', async () => {
    const r = await post(CHAT, user('hi', 'details'));
    eq(r.status, 200, 'status');
    // 600 uncached at 2.5, 400 cached at 1.25, 100 output at 10, 200 reasoning at 12
    const want = usd(600n * micro(2.5) + 400n * micro(1.25) + 100n * micro(10) + 200n * micro(12));
    eq(want, '0.0054', 'the expectation itself');
    eq(r.headers.get('x-baton-cost-usd'), want, 'x-baton-cost-usd');
});

test('a model without a price has no cost header', async () => {
    const r = await post(CHAT, user('hi', 'free'));
    eq(r.status, 200, 'status');
    eq(r.headers.get('x-baton-cost-usd'), null, 'no cost without a price');
    const line = await accessFor(r.headers.get('x-request-id'));
    eq(line.cost_usd, undefined, 'no cost_usd in the access line');
});

test('a reply without usage is priced from baton\'s own count, marked estimated', async () => {
    const r = await post(CHAT, user('hi', 'no-usage'));
    eq(r.status, 200, 'status');
    // o200k: "hi" 1 token + 3 per message + 3 priming = 7 prompt; "hello world" 2
    eq(r.headers.get('x-baton-cost-usd'), usd(7n * micro(1) + 2n * micro(2)), 'x-baton-cost-usd');
    eq(r.headers.get('x-baton-cost-estimated'), 'true', 'x-baton-cost-estimated');
    const line = await accessFor(r.headers.get('x-request-id'));
    eq(line.usage_estimated, true, 'access line: usage_estimated');
    eq(line.prompt_tokens, 7, 'estimated prompt tokens');
    eq(line.completion_tokens, 2, 'estimated completion tokens');
    eq(String(line.cost_usd), '0.000011', 'access line cost');
});

const streamBody = (model, usage = true) => ({ ...user('stream please', model), stream: true, ...(usage ? { stream_options: { include_usage: true } } : {}) });

test('a stream\'s usage chunk carries cost_usd only with x-baton-include-cost: true', async () => {
    const withCost = await streamRaw(CHAT, streamBody('demo'), { headers: { 'x-baton-include-cost': 'true' } });
    eq(withCost.status, 200, 'status');
    assert(withCost.done, 'stream ended with [DONE]');
    const chunks = withCost.events.filter((e) => e.json);
    const last = chunks[chunks.length - 1].json;
    assert(last.usage, 'final chunk has usage');
    for (const c of chunks) validate('CreateChatCompletionStreamResponse', c.json);
    const u = last.usage;
    const want = usd(BigInt(u.prompt_tokens) * micro(0.15) + BigInt(u.completion_tokens) * micro(0.60));
    const raw = chunks[chunks.length - 1].data;
    assert(raw.includes(`"cost_usd":${want}`), `cost_usd written as the plain decimal ${want}: ${raw}`);
    eq(chunks.filter((c) => 'cost_usd' in (c.json.usage || {})).length, 1, 'only the usage chunk has cost_usd');
    const line = await accessFor(withCost.headers.get('x-request-id'));
    eq(String(line.cost_usd), want, 'the access log has the same cost');

    const without = await streamRaw(CHAT, streamBody('demo'));
    const wl = without.events.filter((e) => e.json).pop().json;
    assert(wl.usage && !('cost_usd' in wl.usage), `no cost_usd without the header: ${JSON.stringify(wl.usage)}`);
    const off = await streamRaw(CHAT, streamBody('demo'), { headers: { 'x-baton-include-cost': 'false' } });
    assert(!('cost_usd' in off.events.filter((e) => e.json).pop().json.usage), 'false: no cost_usd');

    // without include_usage there is no usage chunk to carry it
    const noUsage = await streamRaw(CHAT, streamBody('demo', false), { headers: { 'x-baton-include-cost': 'true' } });
    assert(noUsage.done, 'stream ended');
    assert(noUsage.events.every((e) => !e.json || !e.json.usage), 'no usage chunk without include_usage');
    const nl = await accessFor(noUsage.headers.get('x-request-id'));
    assert(nl.cost_usd > 0, 'still logged');

    const bad = await post(CHAT, streamBody('demo'), { headers: { 'x-baton-include-cost': 'yes' } });
    eq(bad.status, 400, 'x-baton-include-cost must be true or false');
});

test('the SDK reads cost_usd from a streamed usage chunk', async () => {
    const sdk = client(b.url);
    const stream = await sdk.chat.completions.create({ ...streamBody('demo') }, { headers: { 'x-baton-include-cost': 'true' } });
    let usage;
    for await (const c of stream) if (c.usage) usage = c.usage;
    assert(usage, 'usage chunk');
    const want = usd(BigInt(usage.prompt_tokens) * micro(0.15) + BigInt(usage.completion_tokens) * micro(0.60));
    eq(usage.cost_usd, Number(want), 'cost_usd (the same decimal, read as a number)');
});

test('a stream cut short is logged with an estimated cost', async () => {
    const r = await streamRaw(CHAT, streamBody('cut'));
    assert(!r.done, 'the stream was cut');
    const line = await accessFor(r.headers.get('x-request-id'));
    eq(line.usage_estimated, true, 'usage_estimated');
    assert(line.prompt_tokens > 0 && line.completion_tokens > 0, `estimated counts: ${JSON.stringify(line)}`);
    eq(String(line.cost_usd), usd(BigInt(line.prompt_tokens) * micro(1) + BigInt(line.completion_tokens) * micro(2)), 'cost of the estimate');
});

test('strategy cost sends traffic to the cheapest deployment', async () => {
    const seen = {};
    for (let i = 0; i < 8; i++) {
        const r = await post(CHAT, user(`cheap ${i}`, 'cheap'));
        eq(r.status, 200, 'status');
        const d = r.headers.get('x-baton-deployment');
        seen[d] = (seen[d] || 0) + 1;
        assert(/^cheap \(cost\): /.test(r.headers.get('x-baton-route')), `route: ${r.headers.get('x-baton-route')}`);
    }
    eq(JSON.stringify(seen), JSON.stringify({ 'sim2/thrifty': 8 }), 'every request on the cheapest');
});

test('strategy cost with a breaker: the cheapest failing is skipped, the next cheapest goes first', async () => {
    const routes = [];
    for (let i = 0; i < 5; i++) {
        const r = await post(CHAT, user(`broken ${i}`, 'broken'));
        eq(r.status, 200, 'every request is answered');
        eq(r.headers.get('x-baton-deployment'), 'sim/middling', 'served by the next cheapest');
        routes.push(r.headers.get('x-baton-route'));
    }
    eq(routes[0], 'broken (cost): f500/thrifty=server_error, sim/middling=ok', 'first: cheapest tried, then the next');
    eq(routes[1], 'broken (cost): f500/thrifty=server_error, sim/middling=ok', 'second failure opens the breaker');
    for (const r of routes.slice(2)) eq(r, 'broken (cost): sim/middling=ok', 'breaker open: the cheapest is left out');
});

test('baton check refuses strategy cost without prices, naming the deployment, and accepts it with them', async () => {
    const bad = writeTemp('cost-bad.yaml', 'providers: {p: {type: sim}}\nmodels:\n  m:\n    strategy: cost\n    deployments:\n      - {provider: p, model: gpt-4o-mini}\n      - {provider: p, model: mine}\n');
    const r = await runBaton(['check', '-c', bad]);
    assert(r.code !== 0, 'check accepted strategy cost without a price');
    assert(/cost-bad\.yaml:7:9: error: model "m": strategy cost needs a price for every deployment, and deployment 2 \(p\/mine\) has none \(a sim provider's models have no shipped price\)/.test(r.err), `message: ${r.err}`);
    const good = writeTemp('cost-good.yaml', 'providers: {p: {type: sim}, o: {type: openai, base_url: "http://127.0.0.1:9/v1"}}\nmodels:\n  m:\n    strategy: cost\n    deployments:\n      - {provider: o, model: gpt-4o-mini}\n      - {provider: p, model: mine, price: {input: 0.1, output: 0.2}}\n');
    const ok = await runBaton(['check', '-c', good]);
    eq(ok.code, 0, `check: ${ok.err}`);
    assert(/m: price o\/gpt-4o-mini USD per million tokens: input 0.15, cached_input 0.075, .*\(shipped default of \d{4}-\d\d-\d\d\)/.test(ok.out), `shipped price shown: ${ok.out}`);
    assert(/m: price p\/mine USD per million tokens: input 0.1, .*output 0.2, reasoning 0.2 \(price\)/.test(ok.out), `configured price shown: ${ok.out}`);
    const neg = writeTemp('cost-neg.yaml', 'providers: {p: {type: sim}}\nmodels:\n  m: {provider: p, price: {input: -1, output: 2}}\n');
    const n = await runBaton(['check', '-c', neg]);
    assert(n.code !== 0 && /cost-neg\.yaml:3:35: error: model "m" price: input must be a plain decimal/.test(n.err), `negative price: ${n.err}`);
});

await run();
