// Reaching providers through a real forward proxy: tinyproxy (Debian) on loopback.
// https providers tunnel through it with CONNECT (tinyproxy's log shows each
// CONNECT) to nginx serving TLS in front of `baton sim`; NO_PROXY bypasses it;
// plain http goes through it as an absolute-form request; `proxy:` per provider
// overrides the environment (`none` turns it off); a proxy that requires
// credentials works with them in the URL and fails clearly without; a proxy
// that is down is named in the 502. Credentials never show in baton's logs or
// in `baton check`.
import {
    test, run, setup, assert, eq, startBaton, startSim, client, post, streamRaw, runBaton, freePort,
} from './lib.mjs';
import { have, makeCerts, startNginx, startTinyproxy } from './tls_env.mjs';

if (!have('nginx') || !have('openssl') || !have('tinyproxy')) {
    console.log('ok - skipped: nginx, openssl or tinyproxy is not installed');
    console.log('0 passed, 0 failed');
    process.exit(0);
}

const PASS = 's3cret-Pw';
const certs = await setup(() => makeCerts());
const sim = await setup(() => startSim(['--seed', '31']));
const ng = await setup(() => startNginx([
    { name: 'good', cert: certs.good, locations: `location /v1/ { proxy_pass http://127.0.0.1:${sim.port}; }` },
], 'nginx-proxytest'));
const open = await setup(() => startTinyproxy({ name: 'tp-open' }));
const authp = await setup(() => startTinyproxy({ name: 'tp-auth', auth: { user: 'baton', pass: PASS } }));
const deadPort = await setup(() => freePort()); // nobody listens there
const GOOD = ng.ports.good;
const CA = certs.ca;
const HTTPS_URL = `https://localhost:${GOOD}/v1`;
const HTTP_URL = `http://localhost:${sim.port}/v1`;

const yaml = `
providers:
  viaenv:    {type: openai, base_url: "${HTTPS_URL}", tls: {ca_file: "${CA}"}}
  plainenv:  {type: openai, base_url: "${HTTP_URL}"}
  direct:    {type: openai, base_url: "${HTTPS_URL}", tls: {ca_file: "${CA}"}, proxy: none}
  authok:    {type: openai, base_url: "${HTTPS_URL}", tls: {ca_file: "${CA}"}, proxy: "http://baton:${PASS}@127.0.0.1:${authp.port}"}
  authplain: {type: openai, base_url: "${HTTP_URL}", proxy: "http://baton:${PASS}@127.0.0.1:${authp.port}"}
  nocreds:   {type: openai, base_url: "${HTTPS_URL}", tls: {ca_file: "${CA}"}, proxy: "http://127.0.0.1:${authp.port}"}
  badcreds:  {type: openai, base_url: "${HTTPS_URL}", tls: {ca_file: "${CA}"}, proxy: "http://baton:wrong@127.0.0.1:${authp.port}"}
  down:      {type: openai, base_url: "${HTTPS_URL}", tls: {ca_file: "${CA}"}, proxy: "http://127.0.0.1:${deadPort}"}
models:
  viaenv: {provider: viaenv, model: m}
  plainenv: {provider: plainenv, model: m}
  direct: {provider: direct, model: m}
  authok: {provider: authok, model: m}
  authplain: {provider: authplain, model: m}
  nocreds: {provider: nocreds, model: m}
  badcreds: {provider: badcreds, model: m}
  down: {provider: down, model: m}
`;
const ENV = { HTTPS_PROXY: open.url, HTTP_PROXY: open.url, https_proxy: undefined, http_proxy: undefined, NO_PROXY: undefined, no_proxy: undefined };
const b = await setup(() => startBaton(yaml, { env: ENV }));
const bNo = await setup(() => startBaton(yaml, { env: { ...ENV, NO_PROXY: 'example.com, localhost' } }));
const CHAT = `${b.url}/chat/completions`;
const ask = (model, content = 'through the proxy', extra = {}) => ({ model, messages: [{ role: 'user', content }], ...extra });
const connects = (p) => p.requests(new RegExp(`CONNECT localhost:${GOOD} HTTP/1\\.1`));

test('https tunnels through tinyproxy with CONNECT (HTTPS_PROXY): chat, stream, SDK', async () => {
    const before = connects(open);
    const r = await post(CHAT, ask('viaenv'));
    eq(r.status, 200, `status (${r.text.slice(0, 300)})`);
    const raw = await streamRaw(CHAT, ask('viaenv', 'stream through', { stream: true }));
    assert(raw.done && !raw.error, `stream done ${raw.done} error ${JSON.stringify(raw.error)}`);
    const c = await client(b.url).chat.completions.create(ask('viaenv', 'sdk through'));
    assert(c.choices[0].message.content.length > 0, 'SDK reply');
    const n = connects(open) - before;
    assert(n >= 1 && n <= 3, `tinyproxy logged ${n} CONNECTs to localhost:${GOOD} for 3 requests (pooled tunnels expected)`);
});

test('NO_PROXY exempts the host: no CONNECT, same answers', async () => {
    const before = connects(open);
    for (let i = 0; i < 3; i++) {
        const r = await post(`${bNo.url}/chat/completions`, ask('viaenv', `bypass ${i}`));
        eq(r.status, 200, `status (${r.text.slice(0, 300)})`);
    }
    eq(connects(open), before, 'CONNECTs logged while NO_PROXY names the host');
});

test('plain http goes through the proxy as an absolute-form request (HTTP_PROXY)', async () => {
    const re = new RegExp(`POST http://localhost:${sim.port}/v1/chat/completions HTTP/1\\.1`);
    const before = open.requests(re);
    const r = await post(CHAT, ask('plainenv'));
    eq(r.status, 200, `status (${r.text.slice(0, 300)})`);
    eq(open.requests(re) - before, 1, 'absolute-form requests in tinyproxy log');
    const bypass = await post(`${bNo.url}/chat/completions`, ask('plainenv'));
    eq(bypass.status, 200, 'NO_PROXY for plain http');
    eq(open.requests(re) - before, 1, 'NO_PROXY request went through the proxy');
});

test('proxy: none overrides the environment', async () => {
    const before = connects(open);
    const r = await post(CHAT, ask('direct'));
    eq(r.status, 200, `status (${r.text.slice(0, 300)})`);
    eq(connects(open), before, 'CONNECTs for a provider with proxy: none');
});

test('a proxy with BasicAuth: credentials in the URL work, https and http', async () => {
    const before = connects(authp);
    const r = await post(CHAT, ask('authok'));
    eq(r.status, 200, `status (${r.text.slice(0, 300)})`);
    assert(connects(authp) - before >= 1, 'no CONNECT in the auth proxy log');
    const p = await post(CHAT, ask('authplain'));
    eq(p.status, 200, `plain through the auth proxy (${p.text.slice(0, 300)})`);
});

test('without (or with wrong) credentials: 502 naming the provider, the proxy and its 407/401', async () => {
    for (const model of ['nocreds', 'badcreds']) {
        const r = await post(CHAT, ask(model));
        eq(r.status, 502, `${model} status (${r.text.slice(0, 300)})`);
        const msg = r.json?.error?.message || '';
        assert(msg.includes(`provider ${model}`), `no provider name: ${msg}`);
        // tinyproxy answers a missing Proxy-Authorization with 407, a wrong one with 401.
        assert((model === 'nocreds' ? /proxy refused CONNECT: 407 / : /proxy refused CONNECT: 40[17] /).test(msg), `no 407: ${msg}`);
        assert(msg.includes(`127.0.0.1:${authp.port}`), `proxy not named: ${msg}`);
        assert(!msg.includes('wrong') && !msg.includes(PASS), `credentials in the message: ${msg}`);
    }
});

test('a proxy that is down: 502 naming the proxy', async () => {
    const r = await post(CHAT, ask('down'));
    eq(r.status, 502, `status (${r.text.slice(0, 300)})`);
    const msg = r.json?.error?.message || '';
    assert(msg.includes('provider down') && msg.includes(`proxy 127.0.0.1:${deadPort}`) && /refused/.test(msg), `message: ${msg}`);
});

test('proxy credentials never appear in logs or baton check output', async () => {
    const b64 = Buffer.from(`baton:${PASS}`).toString('base64');
    for (const [what, text] of [['baton stderr', b.proc.err() + b.proc.out()], ['baton (NO_PROXY) stderr', bNo.proc.err()]]) {
        assert(!text.includes(PASS) && !text.includes(b64), `${what} contains the proxy password`);
    }
    const chk = await runBaton(['check', '-c', b.cfg], { env: { ...ENV, HTTPS_PROXY: `http://envuser:env-Secret9@127.0.0.1:${open.port}` } });
    eq(chk.code, 0, `check exit (${chk.err})`);
    const all = chk.out + chk.err;
    for (const secret of [PASS, b64, 'env-Secret9', 'wrong']) assert(!all.includes(secret), `check output contains "${secret}"`);
    assert(all.includes(`authok: proxy http://***@127.0.0.1:${authp.port} (from proxy)`), `check does not show the masked proxy: ${chk.out}`);
    assert(all.includes(`viaenv: proxy http://***@127.0.0.1:${open.port} (from HTTPS_PROXY)`), `check does not show the env proxy: ${chk.out}`);
    assert(!/direct: proxy/.test(all), 'proxy: none shows a proxy');
    // A proxy URL baton cannot use is an error at the provider, credentials masked.
    const bad = await runBaton(['check', '-c', b.cfg], { env: { ...ENV, HTTPS_PROXY: 'socks5://u:sockpw@127.0.0.1:1080' } });
    eq(bad.code, 1, 'check exit with a socks proxy in HTTPS_PROXY');
    assert(/error: provider "viaenv": HTTPS_PROXY from the environment is not a usable proxy: only http:\/\//.test(bad.err), bad.err);
    assert(!bad.err.includes('sockpw'), 'socks credentials shown');
});

await run();
