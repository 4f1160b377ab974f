// Rules and the learned router in the running gateway, through the official
// openai client: each request goes to the model its content calls for, the
// decision is in x-baton-route, `baton route explain` prints the same decision
// without a call, and `baton check` refuses broken rules with file:line:col.
import { readFileSync } from 'node:fs';
import { test, run, setup, assert, eq, startBaton, post, runBaton, writeTemp, client, routingRows } from './lib.mjs';

const S = 'strong-m', W = 'weak-m';
const rows = (n, seed) => routingRows(n, seed, S, W);

const router = writeTemp('rules-router.bin', '');
const trained = await setup(() => runBaton(['route', 'train', '--data', writeTemp('rules-train.jsonl', rows(300, 1)),
    '--strong', S, '--weak', W, '-o', router, '--strong-share', '0.35', '--bits', '12']));

const YAML = `
providers:
  sim: {type: sim, seed: 3}
models:
  big: {provider: sim, model: big-up}
  small: {provider: sim, model: small-up}
  solar: {provider: sim, model: solar-up}
  vision: {provider: sim, model: vision-up}
  auto:
    router: {file: ${router}, strong: big, weak: small, strong_share: 0.35}
  chat:
    rules:
      - when: {language: ko}
        model: solar
      - when: {images: true}
        model: vision
      - when: {tools: true}
        model: big
      - when: {regex: "(?i)\\\\bprove\\\\b"}
        model: big
      - when: {prompt_tokens: "> 2000"}
        model: big
      - when: {metadata: {tier: free}}
        model: small
      - when: {tags: [batch]}
        model: small
      - when: {user: [vip-1]}
        model: big
      - model: auto
`;
const b = await setup(() => startBaton(YAML));
const oa = client(b.url);
const user = (content, extra = {}) => ({ model: 'chat', messages: [{ role: 'user', content }], ...extra });

async function routed(body, opts) {
    const { data, response } = await oa.chat.completions.create(body, opts).withResponse();
    assert(data.choices?.length === 1, 'a completion came back');
    return { dep: response.headers.get('x-baton-deployment'), route: response.headers.get('x-baton-route') };
}

test('route train made the router file the config uses', async () => {
    eq(trained.code, 0, `train: ${trained.err.slice(0, 300)}`);
    assert(readFileSync(router).subarray(0, 8).toString() === 'BTROUTER', 'router file');
});

test('each rule sends its requests to its model; x-baton-route names the rule', async () => {
    const cases = [
        [user('안녕하세요, 오늘 서울 날씨는 어떤가요?'), 'sim/solar-up', 'chat: rule 1 -> solar (weighted): sim/solar-up=ok'],
        [user([{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }]),
            'sim/vision-up', 'chat: rule 2 -> vision'],
        [user('weather?', { tools: [{ type: 'function', function: { name: 'w', parameters: { type: 'object' } } }] }),
            'sim/big-up', 'chat: rule 3 -> big'],
        [user('Can you PROVE that there are infinitely many primes?'), 'sim/big-up', 'chat: rule 4 -> big'],
        [user('word '.repeat(2100)), 'sim/big-up', 'chat: rule 5 -> big'],
        [user('hi', { metadata: { tier: 'free' } }), 'sim/small-up', 'chat: rule 6 -> small'],
        [user('hi', { user: 'vip-1' }), 'sim/big-up', 'chat: rule 8 -> big'],
    ];
    for (const [body, dep, route] of cases) {
        const r = await routed(body);
        eq(r.dep, dep, `deployment for ${JSON.stringify(body).slice(0, 80)}`);
        assert(r.route.startsWith(route), `x-baton-route ${r.route} does not start with ${route}`);
    }
    // x-baton-tags from the client's header, x-baton-user as the end user
    const t = await routed(user('hi'), { headers: { 'x-baton-tags': 'nightly, batch' } });
    eq(t.dep, 'sim/small-up', 'tags');
    const u = await routed(user('hi'), { headers: { 'x-baton-user': 'vip-1' } });
    eq(u.dep, 'sim/big-up', 'x-baton-user');
});

test('the learned router sends hard prompts strong and easy ones weak, with score and threshold', async () => {
    const hard = await routed(user('Solve for x: 37x + 12 = 419. Show the steps.'));
    eq(hard.dep, 'sim/big-up', 'hard prompt');
    assert(/^chat: rule 9 -> auto: router -?\d\.\d{3} > -?\d\.\d{3} strong -> big \(weighted\)/.test(hard.route), hard.route);
    const easy = await routed(user('Which city is the capital of region 7?\nA. North\nB. South\nC. East\nD. West\nAnswer:'));
    eq(easy.dep, 'sim/small-up', 'easy prompt');
    assert(/router -?\d\.\d{3} <= -?\d\.\d{3} weak -> small/.test(easy.route), easy.route);
    // over many prompts of the training distribution, about the share asked goes strong
    const lines = rows(200, 9).trim().split('\n').map((l) => JSON.parse(l).prompt);
    let strong = 0;
    for (const p of lines) if ((await routed(user(p))).dep === 'sim/big-up') strong++;
    assert(strong >= 50 && strong <= 90, `${strong} of 200 went strong; asked 35%`);
});

test('a stream is routed the same way', async () => {
    const stream = await oa.chat.completions.create(user('안녕하세요, 반갑습니다', { stream: true }));
    let text = '', model = '';
    for await (const c of stream) { text += c.choices[0]?.delta?.content || ''; model = c.model || model; }
    assert(text.length > 0, 'streamed text');
    const r = await post(`${b.url}/chat/completions`, user('안녕하세요', { stream: true }));
    eq(r.headers.get('x-baton-deployment'), 'sim/solar-up', 'stream deployment');
});

test('a request the rules cannot read gets a 400 in OpenAI shape, not a crash', async () => {
    const r = await post(`${b.url}/chat/completions`, { model: 'chat', messages: [{ role: 'user', content: 5 }] });
    eq(r.status, 400, r.text);
    assert(r.json?.error?.type === 'invalid_request_error', r.text);
});

test('baton route explain prints the decision without a call', async () => {
    const req = writeTemp('explain.json', JSON.stringify(user('Please prove it')));
    const r = await runBaton(['route', 'explain', '-c', b.cfg, req]);
    eq(r.code, 0, r.err);
    assert(/chat: rule 1 \(language ko \(share >= 0\.30\)\): no/.test(r.out), r.out);
    assert(/chat: rule 4 \(regex .*\): match/.test(r.out), r.out);
    assert(/model: big, strategy weighted, 1 deployment/.test(r.out), r.out);
    assert(/1\. sim\/big-up/.test(r.out), r.out);
    const t = await runBaton(['route', 'explain', '-c', b.cfg, '-H', 'x-baton-tags: batch', writeTemp('e2.json', JSON.stringify(user('hi')))]);
    assert(/rule 7 \(tags batch\): match/.test(t.out), t.out);
    const easy = await runBaton(['route', 'explain', '-c', b.cfg, writeTemp('e3.json', JSON.stringify(user('Which city is the capital of region 3?\nA. North\nB. South\nAnswer:')))]);
    assert(/auto: router score -?\d\.\d{4}, threshold -?\d\.\d{4}: weak \(small\)/.test(easy.out), easy.out);
    const bad = await runBaton(['route', 'explain', '-c', b.cfg, writeTemp('e4.json', '{"model":"nope","messages":[{"role":"user","content":"x"}]}')]);
    eq(bad.code, 1, 'unknown model');
    assert(/404/.test(bad.err), bad.err);
    const usage = await runBaton(['route', 'explain', req]);
    eq(usage.code, 2, 'no -c');
});

test('baton check shows the rules and router, and refuses a bad regex at its line and column', async () => {
    const ok = await runBaton(['check', '-c', b.cfg]);
    eq(ok.code, 0, ok.err);
    assert(/rule 4: regex \/\(\?i\)\\bprove\\b\/ -> big/.test(ok.out), ok.out);
    assert(/auto\s+router .*: strong big, weak small, threshold -?\d\.\d{4} \(strong share 0\.35\)/.test(ok.out), ok.out);
    const bad = writeTemp('bad-rules.yaml', 'providers: {sim: {type: sim}}\nmodels:\n  a: {provider: sim}\n  r:\n    rules:\n      - {when: {regex: "x[" }, model: a}\n      - {model: a}\n');
    const r = await runBaton(['check', '-c', bad]);
    eq(r.code, 1, 'refused');
    assert(/bad-rules\.yaml:6:24: .*regex "x\[" does not compile/.test(r.err), r.err);
});

await run();
