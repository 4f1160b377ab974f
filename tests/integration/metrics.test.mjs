// GET /metrics: Prometheus text that promtool accepts, scraped under load; the
// counters add up to the requests sent; metrics.require_key puts it behind the
// master key; no secret appears in it.
import { spawnSync } from 'node:child_process';
import {
    test, run, setup, assert, eq, startBaton, post, get, streamRaw,
    metricSum,
} from './lib.mjs';

const b = await setup(() => startBaton(`
auth: {master_key: "mk-metrics-secret"}
metrics: {require_key: false}
providers:
  sim: {type: sim, seed: 4}
  f500: {type: sim, faults: {500: 1}}
  keyed: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "sk-provider-secret-xyz"}
models:
  demo: {provider: sim}
  broken: {provider: f500}
  refused: {provider: keyed}
`));
const H = { authorization: 'Bearer mk-metrics-secret' };
const chat = (model, stream = false) => ({ model, stream, messages: [{ role: 'user', content: 'hi' }] });

function promtool(text) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (r.error) throw new Error(`promtool not runnable: ${r.error.message}`);
    return r;
}

test('a scrape under load passes promtool, and the counters add up to the requests sent', async () => {
    const sent = { ok: 0, stream: 0, broken: 0, refused: 0, unknown: 0 };
    let scrapes = [];
    const work = [];
    for (let i = 0; i < 40; i++) {
        work.push(post(`${b.url}/chat/completions`, chat('demo'), { headers: H }).then((r) => { eq(r.status, 200, 'demo'); sent.ok++; }));
        if (i % 4 === 0) work.push(streamRaw(`${b.url}/chat/completions`, chat('demo', true), { headers: H }).then((r) => { assert(r.done, 'stream done'); sent.stream++; }));
        if (i % 5 === 0) work.push(post(`${b.url}/chat/completions`, chat('broken'), { headers: H }).then((r) => { eq(r.status, 502, 'broken'); sent.broken++; }));
        if (i % 10 === 0) work.push(post(`${b.url}/chat/completions`, chat('refused'), { headers: H }).then((r) => { eq(r.status, 502, 'refused'); sent.refused++; }));
        if (i % 8 === 0) work.push(post(`${b.url}/chat/completions`, chat('nope'), { headers: H }).then((r) => { eq(r.status, 404, 'unknown'); sent.unknown++; }));
        if (i % 10 === 5) work.push(get(`${b.base}/metrics`).then((r) => { eq(r.status, 200, 'scrape'); scrapes.push(r.text); }));
    }
    await Promise.all(work);
    for (const t of scrapes) {
        const r = promtool(t);
        eq(r.status, 0, `promtool under load: ${r.stdout} ${r.stderr}`);
    }
    const r = await get(`${b.base}/metrics`);
    eq(r.status, 200, 'final scrape');
    assert((r.headers.get('content-type') || '').startsWith('text/plain'), 'content type');
    const p = promtool(r.text);
    eq(p.status, 0, `promtool: ${p.stdout} ${p.stderr}`);
    const t = r.text;
    eq(metricSum(t, 'baton_requests_total', { model: 'demo', status: '200' }), sent.ok + sent.stream, 'demo 200s');
    eq(metricSum(t, 'baton_requests_total', { model: 'broken', status: '502' }), sent.broken, 'broken 502s');
    eq(metricSum(t, 'baton_requests_total', { model: 'refused', status: '502' }), sent.refused, 'refused 502s');
    eq(metricSum(t, 'baton_requests_total', { status: '404' }), sent.unknown, '404s');
    eq(metricSum(t, 'baton_request_duration_seconds_count', { model: 'demo' }), sent.ok + sent.stream, 'latency histogram count');
    eq(metricSum(t, 'baton_time_to_first_token_seconds_count', { model: 'demo' }), sent.stream, 'ttft histogram count (streams)');
    assert(metricSum(t, 'baton_tokens_total', { model: 'demo', direction: 'out' }) > 0, 'output tokens counted');
    eq(metricSum(t, 'baton_upstream_errors_total', { provider: 'f500', class: '5xx' }), sent.broken, 'upstream 5xx errors');
    eq(metricSum(t, 'baton_upstream_errors_total', { provider: 'keyed', class: 'refused' }), sent.refused, 'upstream refused errors');
    eq(metricSum(t, 'baton_requests_in_flight'), 0, 'in flight after the load');
    assert(/# TYPE baton_time_to_first_token_seconds histogram/.test(t), 'ttft histogram family');
    assert(/baton_build_info\{version="[^"]+"\} 1/.test(t), 'build info');
    assert(!t.includes('mk-metrics-secret') && !t.includes('sk-provider-secret'), 'no secret in metrics');
}, { timeout: 60000 });

test('metrics.require_key: true puts /metrics behind the master key (after a reload)', async () => {
    const { readFileSync, writeFileSync } = await import('node:fs');
    writeFileSync(b.cfg, readFileSync(b.cfg, 'utf8').replace('require_key: false', 'require_key: true'));
    b.proc.child.kill('SIGHUP');
    let r;
    for (let i = 0; i < 100; i++) {
        r = await get(`${b.base}/metrics`);
        if (r.status === 401) break;
        await new Promise((res) => setTimeout(res, 20));
    }
    eq(r.status, 401, 'without the key');
    r = await get(`${b.base}/metrics`, { headers: H });
    eq(r.status, 200, 'with the key');
    assert(metricSum(r.text, 'baton_config_reloads_total', { result: 'success' }) >= 1, 'the reload is counted');
});

await run();
