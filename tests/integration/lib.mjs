// Shared pieces of baton's black-box integration tests (see docs/testing.md):
//  - a tiny sequential test harness: test(name, fn), run() prints `ok - name` /
//    `not ok - name: reason` and a final `N passed, N failed` line, exit 1 on failure;
//  - loopback ports from the documented range 20000-29999;
//  - temp config files, `baton sim` and `baton serve` processes that are always killed;
//  - HTTP helpers (fetch, raw sockets, SSE parsing) and the OpenAI SDK client.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import OpenAI from 'openai';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../..');
export const BATON = process.env.BATON_BIN || join(REPO, 'baton');
export const PORT_MIN = 20000;
export const PORT_MAX = 29999;
// ASan builds start and answer more slowly; timeouts scale with this.
export const SLOW = /asan/.test(BATON) || process.env.BATON_VALGRIND ? 3 : 1;

// ---------------------------------------------------------------- harness

const tests = [];
let only = process.env.TEST_ONLY ? new RegExp(process.env.TEST_ONLY) : null;

// Registers a test. fn may be async; opts.timeout in ms (default 20 s).
export function test(name, fn, opts = {}) {
    tests.push({ name, fn, timeout: (opts.timeout ?? 20000) * SLOW });
}

function withTimeout(p, ms, name) {
    let t;
    const timer = new Promise((_, rej) => {
        t = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms);
    });
    return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

// Runs the registered tests one after another, then stops everything started and
// exits (0 when all passed). Call once at the end of a test file.
export async function run() {
    let passed = 0, failed = 0;
    for (const t of tests) {
        if (only && !only.test(t.name)) continue;
        const t0 = Date.now();
        try {
            await withTimeout(Promise.resolve().then(t.fn), t.timeout, t.name);
            passed++;
            console.log(`ok - ${t.name} (${Date.now() - t0} ms)`);
        } catch (e) {
            failed++;
            let msg = (e && (e.stack && process.env.TEST_STACK ? e.stack : e.message)) || String(e);
            if (e && e.cause && e.cause.code) msg += ` (${e.cause.code})`;
            await sleep(20);
            const crashes = takeCrashes();
            if (crashes) msg += ` [${crashes}]`;
            console.log(`not ok - ${t.name}: ${msg.replace(/\s*\n\s*/g, ' | ')}`);
        }
    }
    await stopAll();
    // The processes themselves are checked too: under ASan/UBSan (make asan) a memory
    // error or leak only shows in the child's stderr and exit status.
    const bad = exitProblems();
    if (bad.length) { failed++; console.log(`not ok - baton processes exited cleanly: ${bad.join(' || ')}`); }
    else if (allProcs.length) { passed++; console.log(`ok - baton processes exited cleanly (${allProcs.length})`); }
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

// valgrind memcheck's error and definite-leak reports (lines start with ==PID==).
const VALGRIND_REPORT = /==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Process terminating|[\d,]+ bytes in [\d,]+ blocks are definitely lost)/;
const SANITIZER = new RegExp(`ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|${VALGRIND_REPORT.source}`);
// The interesting part of a process's stderr: a sanitizer report from the start of
// its line (with the first stack frames), else the tail.
function describeErr(err) {
    const m = SANITIZER.exec(err);
    if (!m) return `stderr tail: ${err.slice(-600)}`;
    const start = err.lastIndexOf('\n', m.index) + 1;
    return `sanitizer: ${err.slice(start, start + 900)}`;
}
// A sanitizer or valgrind report in a process's stderr text (its first lines), or
// null: for checking a server mid-file, before run()'s exit check.
export function sanitizerReport(err) {
    return SANITIZER.test(err) ? describeErr(err) : null;
}
function exitProblems() {
    const out = [];
    for (const p of allProcs) {
        const what = `baton ${p.args.slice(0, 3).join(' ')}`;
        const err = p.err();
        if (SANITIZER.test(err)) { out.push(`${what}: ${describeErr(err)}`); continue; }
        if (!p.result) continue;
        const { code, signal } = p.result;
        const server = p.args[0] === 'serve' || p.args[0] === 'sim';
        if (server && p.child.stopping && !p.killed && !(code === 0 || signal === 'SIGTERM'))
            out.push(`${what}: exit code ${code} signal ${signal} after SIGTERM; stderr tail: ${err.slice(-300)}`);
        if (signal && signal !== 'SIGTERM' && signal !== 'SIGKILL')
            out.push(`${what}: died of ${signal}; stderr tail: ${err.slice(-300)}`);
    }
    return out;
}

// Runs file-level setup code (starting servers) before the tests are declared.
// When it throws, the file reports `not ok - setup: reason` and `0 passed, 1 failed`
// and exits: nothing can be tested without its servers.
export async function setup(fn) {
    try {
        return await fn();
    } catch (e) {
        console.log(`not ok - setup: ${String(e && e.message || e).replace(/\s*\n\s*/g, ' | ')}`);
        await stopAll();
        console.log('0 passed, 1 failed');
        process.exit(1);
    }
}

// ---------------------------------------------------------------- assertions

export class AssertionError extends Error {}
export function assert(cond, msg) {
    if (!cond) throw new AssertionError(msg || 'assertion failed');
}
const show = (v) => {
    const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 300 ? s.slice(0, 300) + '...' : s;
};
export function eq(got, want, what = 'value') {
    if (got !== want) throw new AssertionError(`${what}: expected ${show(want)}, got ${show(got)}`);
}
export function deepEq(got, want, what = 'value') {
    const a = JSON.stringify(got), b = JSON.stringify(want);
    if (a !== b) throw new AssertionError(`${what}: expected ${show(want)}, got ${show(got)}`);
}
// Awaits p and returns the error it rejects with; fails when it resolves.
export async function rejects(p, what = 'call') {
    try {
        const v = await p;
        throw new AssertionError(`${what}: expected an error, got success: ${show(v)}`);
    } catch (e) {
        if (e instanceof AssertionError) throw e;
        return e;
    }
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() (may be async) until it returns a truthy value or ms pass.
export async function waitFor(fn, ms, what = 'condition', every = 25) {
    const end = Date.now() + ms;
    let last;
    for (;;) {
        try { last = await fn(); if (last) return last; } catch (e) { last = e; }
        if (Date.now() > end) throw new AssertionError(`${what} not reached within ${ms} ms (last: ${last instanceof Error ? last.message : show(last)})`);
        await sleep(every);
    }
}

// ---------------------------------------------------------------- ports

const usedPorts = new Set();
function probe(port) {
    return new Promise((res) => {
        const s = net.createServer();
        s.once('error', () => res(false));
        s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => res(true)));
    });
}
// Returns a loopback port in 20000-29999 that is free right now. Tries a few
// random ones; throws (naming the range) when they are all taken.
export async function freePort() {
    for (let i = 0; i < 40; i++) {
        const p = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN + 1));
        if (usedPorts.has(p)) continue;
        if (await probe(p)) { usedPorts.add(p); return p; }
    }
    throw new Error(`no free loopback port found in ${PORT_MIN}-${PORT_MAX} after 40 tries: is the range in use?`);
}

// ---------------------------------------------------------------- temp files

let tmpRoot = null;
export function tmpDir() {
    if (!tmpRoot) tmpRoot = mkdtempSync(join(tmpdir(), 'baton-it-'));
    return tmpRoot;
}
let nfile = 0;
// Writes text to a new file in the test temp dir; returns its path.
export function writeTemp(name, text) {
    const p = join(tmpDir(), `${++nfile}-${name}`);
    writeFileSync(p, text);
    return p;
}

// ---------------------------------------------------------------- processes

const children = new Set();
const allProcs = []; // every spawned process: {args, child, err(), result, killed}
const unexpectedExits = [];
// Text describing baton processes that died on their own since the last call.
function takeCrashes() {
    const out = unexpectedExits.splice(0)
        .map((e) => `baton ${e.args[0]} exited by itself (code ${e.code}, signal ${e.signal}); ${describeErr(e.err())}`);
    return out.join(' || ');
}

function killChild(c, sig = 'SIGKILL') {
    try { if (c.exitCode === null && c.signalCode === null) c.kill(sig); } catch { /* gone */ }
}
function cleanupSync() {
    for (const c of children) killChild(c);
    children.clear();
    if (tmpRoot && !process.env.TEST_KEEP) { try { rmSync(tmpRoot, { recursive: true, force: true }); } catch { /* */ } }
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => { cleanupSync(); process.exit(130); });
}
process.on('uncaughtException', (e) => {
    console.log(`not ok - uncaught exception: ${e && e.stack ? e.stack.replace(/\n/g, ' | ') : e}`);
    cleanupSync();
    console.log('0 passed, 1 failed');
    process.exit(1);
});
process.on('unhandledRejection', (e) => {
    // A stray rejection from an aborted stream is not a test result; report it.
    console.error(`(unhandled rejection: ${e && e.message ? e.message : e})`);
});

// Stops a process: SIGTERM, then SIGKILL after a grace period.
export async function stopProc(p, graceMs = 3000 * SLOW) {
    if (!p || !p.child) return;
    const c = p.child;
    if (c.exitCode !== null || c.signalCode !== null) { children.delete(c); return; }
    const done = new Promise((r) => c.once('exit', r));
    c.stopping = true;
    killChild(c, 'SIGTERM');
    const t = setTimeout(() => {
        const rec = allProcs.find((r) => r.child === c);
        if (rec) rec.killed = true; // did not stop within the grace period: not judged
        killChild(c, 'SIGKILL');
    }, graceMs);
    await done;
    clearTimeout(t);
    children.delete(c);
}
// Kills a process with `sig` (SIGKILL: a crash) as a test's own act: its exit is
// neither reported as a crash nor judged by the clean-exit check. Resolves when gone.
export async function killProc(p, sig = 'SIGKILL') {
    const c = p.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const done = new Promise((r) => c.once('exit', r));
    c.stopping = true;
    const rec = allProcs.find((r) => r.child === c);
    if (rec) rec.killed = true;
    killChild(c, sig);
    await done;
    children.delete(c);
}
export async function stopAll() {
    await Promise.all([...children].map((c) => stopProc({ child: c })));
}

const OUT_CAP = 1 << 20;
// Spawns the baton binary with args; output is kept (capped) in .out/.err.
// Returns {child, args, out(), err(), exited (promise of {code, signal})}.
export function spawnBaton(args, { env = {}, cwd = REPO } = {}) {
    // env values of undefined remove a variable from the child's environment.
    const childEnv = { ...process.env, ...env };
    for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k];
    // ---- valgrind (make valgrind): BATON_VALGRIND=1 runs every baton under memcheck;
    // a report in stderr counts like a sanitizer report (VALGRIND_REPORT above), and
    // --error-exitcode makes a leak or error also show as exit code 99.
    const [cmd, argv] = process.env.BATON_VALGRIND
        ? ['valgrind', ['--leak-check=full', '--errors-for-leak-kinds=definite', '--error-exitcode=99', '-q', BATON, ...args]]
        : [BATON, args];
    // ---- end valgrind
    const child = spawn(cmd, argv, { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '', err = '';
    child.stdout.on('data', (d) => { if (out.length < OUT_CAP) out += d; });
    child.stderr.on('data', (d) => { if (err.length < OUT_CAP) err += d; });
    const rec = { args, child, err: () => err, result: null, killed: false, ready: false };
    allProcs.push(rec);
    const exited = new Promise((r) => child.once('exit', (code, signal) => {
        rec.result = { code, signal };
        // Exits we did not ask for (crashes) are reported with the next failing test.
        if (!child.stopping && rec.ready) unexpectedExits.push({ args, code, signal, err: () => err });
        children.delete(child);
        r({ code, signal });
    }));
    child.once('error', (e) => { err += `spawn error: ${e.message}\n`; });
    return { child, args, out: () => out, err: () => err, exited };
}

// Runs baton to completion (for check/version/--help). Resolves {code, out, err}.
export async function runBaton(args, { env = {}, timeout = 10000 } = {}) {
    const p = spawnBaton(args, { env });
    const t = setTimeout(() => killChild(p.child), timeout * SLOW);
    const { code, signal } = await p.exited;
    clearTimeout(t);
    return { code, signal, out: p.out(), err: p.err() };
}

// Waits until `url` answers with HTTP status `want` (or any status when want is 0),
// failing early with the process's stderr when it exits.
async function waitHttp(proc, url, want, ms) {
    const end = Date.now() + ms;
    let exited = null;
    proc.exited.then((e) => { exited = e; });
    let last = 'no answer';
    while (Date.now() < end) {
        if (exited) break;
        try {
            const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
            await r.arrayBuffer();
            if (!want || r.status === want) { const rec = allProcs.find((x) => x.child === proc.child); if (rec) rec.ready = true; return; }
            last = `status ${r.status}`;
        } catch (e) { last = e.cause?.code || e.message; }
        await sleep(30);
    }
    await sleep(50);
    const why = exited ? `exited (code ${exited.code}, signal ${exited.signal})` : `not ready after ${ms} ms (${last})`;
    throw new Error(`baton ${proc.args.join(' ')} ${why}; stderr: ${proc.err().slice(-1500)}`);
}

// Starts `baton sim --listen 127.0.0.1:P` (extra args e.g. ['--seed','7','--ttft','200ms']).
// Returns {port, base: 'http://127.0.0.1:P', url: base+'/v1', proc, stats(), stop()}.
export async function startSim(extra = []) {
    const port = await freePort();
    const proc = spawnBaton(['sim', '--listen', `127.0.0.1:${port}`, ...extra]);
    const base = `http://127.0.0.1:${port}`;
    await waitHttp(proc, `${base}/sim/stats`, 200, 10000 * SLOW);
    return {
        port, base, url: `${base}/v1`, proc,
        stats: async () => (await fetch(`${base}/sim/stats`)).json(),
        stop: () => stopProc(proc),
    };
}

// Starts `baton serve -c CFG --listen 127.0.0.1:P`. `yamlText` may contain `$PORT`
// (replaced by the chosen port). Options: env (extra environment), listen (false to
// leave the config's own address). Returns {port, base, url, cfg, proc, stop()}.
export async function startBaton(yamlText, { env = {}, listenFlag = true } = {}) {
    const port = await freePort();
    const cfg = writeTemp('baton.yaml', yamlText.replaceAll('$PORT', String(port)));
    const args = ['serve', '-c', cfg];
    if (listenFlag) args.push('--listen', `127.0.0.1:${port}`);
    const proc = spawnBaton(args, { env });
    const base = `http://127.0.0.1:${port}`;
    await waitHttp(proc, `${base}/health/ready`, 200, 10000 * SLOW);
    return { port, base, url: `${base}/v1`, cfg, proc, stop: () => stopProc(proc) };
}

// ---------------------------------------------------------------- HTTP

// fetch wrapper: returns {status, headers (Headers), text, json (or undefined), ms}.
export async function http(method, url, { headers = {}, body, timeout = 15000 } = {}) {
    const t0 = Date.now();
    const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeout * SLOW) };
    if (body !== undefined) {
        init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
        if (!Object.keys(init.headers).some((k) => k.toLowerCase() === 'content-type'))
            init.headers['content-type'] = 'application/json';
    }
    const r = await fetch(url, init);
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, headers: r.headers, text, json, ms: Date.now() - t0 };
}
export const post = (url, body, opts = {}) => http('POST', url, { ...opts, body });
export const get = (url, opts = {}) => http('GET', url, opts);

// Parses an SSE byte stream into events as they arrive:
// yields {data (string), json (parsed or undefined), t (ms since start)}.
export async function* sse(body, t0 = Date.now()) {
    const dec = new TextDecoder();
    let buf = '';
    let data = [];
    for await (const chunk of body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.search(/\r?\n/)) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + (buf[i] === '\r' ? 2 : 1));
            if (line === '') {
                if (data.length) {
                    const d = data.join('\n');
                    let json;
                    try { json = JSON.parse(d); } catch { /* [DONE] or broken */ }
                    yield { data: d, json, t: Date.now() - t0 };
                }
                data = [];
            } else if (line.startsWith('data:')) {
                data.push(line.slice(5).replace(/^ /, ''));
            } // event:, id:, comments are ignored like the OpenAI SDK does
        }
    }
    if (data.length) yield { data: data.join('\n'), json: undefined, t: Date.now() - t0, partial: true };
}

// POSTs a streaming request and collects its events. Returns {status, headers,
// events: [...], done (saw [DONE]), error (first event with an `error` key),
// readError (the body read failed)}.
export async function streamRaw(url, body, { headers = {}, timeout = 20000, onEvent } = {}) {
    const t0 = Date.now();
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error('stream timed out')), timeout * SLOW);
    try {
        const r = await fetch(url, {
            method: 'POST', signal: ac.signal,
            headers: { 'content-type': 'application/json', ...headers },
            body: typeof body === 'string' ? body : JSON.stringify(body),
        });
        const res = { status: r.status, headers: r.headers, events: [], done: false, error: null, readError: null, text: null };
        if (!(r.headers.get('content-type') || '').includes('text/event-stream')) {
            res.text = await r.text();
            try { res.json = JSON.parse(res.text); } catch { /* */ }
            return res;
        }
        try {
            for await (const ev of sse(r.body, t0)) {
                if (res.done) { res.afterDone = (res.afterDone || 0) + 1; continue; }
                res.events.push(ev);
                if (onEvent) onEvent(ev, ac);
                if (ev.data === '[DONE]') res.done = true;
                else if (ev.json && ev.json.error && !res.error) res.error = ev.json.error;
            }
        } catch (e) { res.readError = e; }
        return res;
    } finally { clearTimeout(timer); }
}

// An OpenAI SDK client for a base URL (".../v1"); no retries unless asked, so a
// test sees each status baton sends.
export function client(baseURL, { apiKey = 'unused', maxRetries = 0, timeout = 20000 } = {}) {
    return new OpenAI({ baseURL, apiKey, maxRetries, timeout: timeout * SLOW });
}

// ---------------------------------------------------------------- raw sockets

// Opens a TCP connection to 127.0.0.1:port. Returns {sock, data() (Buffer so far),
// closed (promise), waitFor(pred, ms)}.
export function rawConnect(port) {
    return new Promise((resolveConn, rejectConn) => {
        const sock = net.connect({ host: '127.0.0.1', port });
        let buf = Buffer.alloc(0);
        let closed = false, error = null;
        const waiters = new Set();
        const poke = () => { for (const w of waiters) w(); };
        sock.on('data', (d) => { buf = Buffer.concat([buf, d]); poke(); });
        sock.on('error', (e) => { error = e; });
        const closedP = new Promise((r) => sock.on('close', () => { closed = true; poke(); r(); }));
        sock.once('connect', () => resolveConn({
            sock,
            data: () => buf,
            isClosed: () => closed,
            error: () => error,
            closed: closedP,
            write: (b) => new Promise((r) => { if (closed) return r(false); sock.write(b, (e) => r(!e)); }),
            waitFor(pred, ms = 5000) {
                return new Promise((res, rej) => {
                    const check = () => {
                        let v;
                        try { v = pred(buf, closed); } catch (e) { cleanup(); rej(e); return; }
                        if (v) { cleanup(); res(v); } else if (closed) { cleanup(); rej(new Error(`connection closed after ${buf.length} bytes: ${show(buf.toString('latin1').slice(0, 300))}`)); }
                    };
                    const t = setTimeout(() => { cleanup(); rej(new Error(`no expected data within ${ms} ms; got ${buf.length} bytes: ${show(buf.toString('latin1').slice(0, 300))}`)); }, ms * SLOW);
                    const cleanup = () => { clearTimeout(t); waiters.delete(check); };
                    waiters.add(check);
                    check();
                });
            },
            close: () => { sock.destroy(); },
        }));
        sock.once('error', rejectConn);
    });
}

// Parses as many complete HTTP/1.1 responses as `buf` holds (Content-Length,
// chunked, or neither for bodiless statuses). Returns {responses:[{status, headers
// (lowercase names), body (Buffer)}], rest (Buffer)}.
export function parseResponses(buf) {
    const responses = [];
    let off = 0;
    for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n', off);
        if (headEnd < 0) break;
        const head = buf.subarray(off, headEnd).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
        if (!m) throw new Error(`bad status line: ${show(head[0])}`);
        const headers = {};
        for (const l of head.slice(1)) {
            const i = l.indexOf(':');
            const k = l.slice(0, i).trim().toLowerCase(), v = l.slice(i + 1).trim();
            headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
        }
        const status = Number(m[1]);
        let p = headEnd + 4, body;
        if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
            const parts = [];
            let ok = false;
            for (;;) {
                const le = buf.indexOf('\r\n', p);
                if (le < 0) break;
                const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
                if (Number.isNaN(size)) throw new Error('bad chunk size');
                if (size === 0) {
                    const end = buf.indexOf('\r\n\r\n', le);
                    if (end < 0) break;
                    p = end + 4; ok = true; break;
                }
                if (buf.length < le + 2 + size + 2) break;
                parts.push(buf.subarray(le + 2, le + 2 + size));
                p = le + 2 + size + 2;
            }
            if (!ok) break;
            body = Buffer.concat(parts);
        } else if (headers['content-length'] !== undefined) {
            const n = Number(headers['content-length']);
            if (buf.length < p + n) break;
            body = buf.subarray(p, p + n);
            p += n;
        } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
            body = Buffer.alloc(0);
        } else {
            break; // body until close: not complete yet
        }
        responses.push({ status, headers, body });
        off = p;
    }
    return { responses, rest: buf.subarray(off) };
}

// ---------------------------------------------------------------- misc

// A 1x1 transparent PNG as a data URL (for image-part requests).
export const PNG_1X1 = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

// Sums the samples of metric `name` in a Prometheus text whose labels include
// every pair in `want`.
export function metricSum(text, name, want = {}) {
    let total = 0;
    for (const line of text.split('\n')) {
        if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
        const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
        if (Object.entries(want).every(([k, v]) => labels[k] === v)) total += Number(line.split(' ').pop());
    }
    return total;
}

export function readText(p) { return existsSync(p) ? readFileSync(p, 'utf8') : ''; }

// JSONL rows for `baton route train|eval`: prompts with a math shape need the
// strong model (the weak one mostly fails them), short multiple-choice trivia
// does not. Deterministic for a seed.
export function routingRows(n, seed, strong = 'strong-m', weak = 'weak-m') {
    const out = [];
    let x = seed;
    const rnd = () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let i = 0; i < n; i++) {
        const hard = rnd() < 0.35;
        const prompt = hard
            ? `Solve for x: ${Math.floor(rnd() * 90 + 10)}x + ${i} = ${Math.floor(rnd() * 500)}. Show the steps.`
            : `Which city is the capital of region ${i}?\nA. North\nB. South\nC. East\nD. West\nAnswer:`;
        const s = rnd() < 0.9 ? 1 : 0;
        const w = hard ? (rnd() < 0.2 ? 1 : 0) : s;
        out.push(JSON.stringify({ id: `r${seed}-${i}`, prompt, scores: { [strong]: s, [weak]: w } }));
    }
    return out.join('\n') + '\n';
}

// ---------------------------------------------------------------- PostgreSQL

// Starts a throwaway PostgreSQL cluster from the Debian packages: initdb into a
// fresh directory under the test temp dir (owned by the postgres user, since
// PostgreSQL refuses to run as root), listening on 127.0.0.1:PORT with trust
// authentication. Returns {url, port, stop(), stall(), resume()}; stopped at
// exit too.
export async function startPostgres() {
    const bin = '/usr/lib/postgresql/15/bin';
    const dir = mkdtempSync(join(tmpdir(), 'baton-pg-'));
    const port = await freePort();
    const asPg = (args) => {
        const uid = process.getuid?.();
        const cmd = uid === 0 ? ['runuser', ['-u', 'postgres', '--', ...args]] : [args[0], args.slice(1)];
        const r = spawnSync(cmd[0], cmd[1], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr || r.error}`);
    };
    if (process.getuid?.() === 0) spawnSync('chown', ['postgres:postgres', dir]);
    asPg([`${bin}/initdb`, '-D', `${dir}/data`, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    asPg([`${bin}/pg_ctl`, '-D', `${dir}/data`, '-l', `${dir}/log`, '-w', '-t', '30', '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
    // Every process of the cluster: the postmaster (first line of its pid file)
    // and its children (backends, writer, ...).
    const pids = () => {
        const main = Number(readFileSync(`${dir}/data/postmaster.pid`, 'utf8').split('\n')[0]);
        const kids = spawnSync('pgrep', ['-P', String(main)], { encoding: 'utf8' }).stdout;
        return [main, ...kids.split('\n').filter(Boolean).map(Number)];
    };
    let stalled = false;
    // stall(): the server stops answering (SIGSTOP to every process of it): a
    // client's query waits, its connection stays open. resume(): SIGCONT.
    const signalAll = (sig) => { for (const pid of pids()) { try { process.kill(pid, sig); } catch { /* gone */ } } };
    const stall = () => { stalled = true; signalAll('SIGSTOP'); };
    const resume = () => { if (stalled) signalAll('SIGCONT'); stalled = false; };
    const stop = () => {
        try { resume(); } catch { /* gone */ }
        try { asPg([`${bin}/pg_ctl`, '-D', `${dir}/data`, '-m', 'immediate', 'stop']); } catch { /* gone */ }
        try { rmSync(dir, { recursive: true, force: true }); } catch { /* */ }
    };
    process.on('exit', stop);
    return { url: `postgresql://postgres@127.0.0.1:${port}/postgres`, port, stop, stall, resume };
}

// ---------------------------------------------------------------- Redis

// Starts redis-server (the Debian package) on a free loopback port, no
// persistence. Returns {url, port, proc, stop()}; killed at exit too.
export async function startRedis() {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
    children.add(child);
    const deadline = Date.now() + 10000;
    for (;;) {
        const ok = await new Promise((res) => {
            const s = net.connect(port, '127.0.0.1', () => { s.end(); res(true); });
            s.on('error', () => res(false));
        });
        if (ok) break;
        if (Date.now() > deadline) throw new Error('redis-server did not start');
        await new Promise((r) => setTimeout(r, 50));
    }
    const stop = async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await done;
        children.delete(child);
    };
    return { url: `redis://127.0.0.1:${port}/0`, port, child, stop };
}
