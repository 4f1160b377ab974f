// baton's HTTP/1.1 server over raw sockets: keep-alive, 100 pipelined requests
// answered in order on one connection, chunked request bodies, 431 for huge
// headers, 413 for huge bodies (by Content-Length and chunked).
import {
    test, run, setup, assert, eq, startBaton, rawConnect, parseResponses, sleep,
} from './lib.mjs';
import { checkError, validate } from './schema.mjs';

const b = await setup(() => startBaton(`
server:
  listen: 127.0.0.1:$PORT
  max_body_bytes: 1048576
providers:
  sim: {type: sim, seed: 2}
models:
  demo: {provider: sim}
`));
const chatBody = (i) => JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: `pipelined ${i}` }] });
const reqText = (method, path, { body = '', headers = {} } = {}) => {
    let h = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${b.port}\r\n`;
    for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`;
    if (body) h += `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
    return h + '\r\n' + body;
};
const nResponses = (n) => (buf) => { const p = parseResponses(buf); return p.responses.length >= n ? p.responses : null; };

test('keep-alive: three requests in turn on one connection', async () => {
    const c = await rawConnect(b.port);
    try {
        for (let i = 1; i <= 3; i++) {
            await c.write(reqText('POST', '/v1/chat/completions', { body: chatBody(i), headers: { 'x-request-id': `ka-${i}` } }));
            const rs = await c.waitFor(nResponses(i), 5000);
            eq(rs[i - 1].status, 200, `response ${i}`);
            eq(rs[i - 1].headers['x-request-id'], `ka-${i}`, 'x-request-id');
            validate('CreateChatCompletionResponse', JSON.parse(rs[i - 1].body));
        }
        assert(!c.isClosed(), 'connection closed after keep-alive requests');
    } finally { c.close(); }
});

test('100 pipelined requests on one connection are answered in order', async () => {
    const c = await rawConnect(b.port);
    try {
        let all = '';
        for (let i = 0; i < 100; i++) {
            const headers = { 'x-request-id': `pipe-${i}` };
            if (i % 3 === 0) all += reqText('GET', '/v1/models', { headers });
            else if (i % 3 === 1) all += reqText('POST', '/v1/chat/completions', { body: chatBody(i), headers });
            else all += reqText('GET', '/health/live', { headers });
        }
        await c.write(all); // one write: every request is queued before the first answer
        const rs = await c.waitFor(nResponses(100), 15000);
        eq(rs.length, 100, 'responses');
        for (let i = 0; i < 100; i++) {
            eq(rs[i].headers['x-request-id'], `pipe-${i}`, `response ${i} order`);
            eq(rs[i].status, 200, `response ${i} status`);
            if (i % 3 === 1) {
                const j = JSON.parse(rs[i].body);
                validate('CreateChatCompletionResponse', j);
            }
        }
        assert(!c.isClosed(), 'connection closed after the pipeline');
    } finally { c.close(); }
});

test('a chunked request body is accepted', async () => {
    const c = await rawConnect(b.port);
    try {
        const body = chatBody('chunked');
        const parts = [body.slice(0, 10), body.slice(10, 25), body.slice(25)];
        let t = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
        await c.write(t);
        for (const p of parts) { await c.write(`${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`); await sleep(20); }
        await c.write('0\r\n\r\n');
        const [r] = await c.waitFor(nResponses(1), 5000);
        eq(r.status, 200, `status (${r.body.toString().slice(0, 200)})`);
        validate('CreateChatCompletionResponse', JSON.parse(r.body));
    } finally { c.close(); }
});

test('huge headers are refused with 431', async () => {
    const c = await rawConnect(b.port);
    try {
        const big = 'a'.repeat(8000);
        let t = `GET /v1/models HTTP/1.1\r\nHost: x\r\n`;
        for (let i = 0; i < 20; i++) t += `x-big-${i}: ${big}\r\n`; // 160 KB of headers
        c.write(t + '\r\n').catch(() => {});
        const [r] = await c.waitFor(nResponses(1), 5000);
        eq(r.status, 431, 'status');
    } finally { c.close(); }
});

test('a body over max_body_bytes is refused with 413 from its Content-Length', async () => {
    const c = await rawConnect(b.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{"model":"demo",`);
        const [r] = await c.waitFor(nResponses(1), 5000);
        eq(r.status, 413, 'status');
        checkError(JSON.parse(r.body));
    } finally { c.close(); }
});

test('a chunked body that grows over max_body_bytes is refused with 413', async () => {
    const c = await rawConnect(b.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const chunk = 'x'.repeat(64 * 1024);
        for (let i = 0; i < 24 && c.data().length === 0 && !c.isClosed(); i++)
            await c.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        const [r] = await c.waitFor(nResponses(1), 5000);
        eq(r.status, 413, 'status');
    } finally { c.close(); }
});

test('a body just under the limit is read (not a 413)', async () => {
    const c = await rawConnect(b.port);
    try {
        const filler = 'y'.repeat(1048576 - 200);
        const body = JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: filler }] });
        assert(Buffer.byteLength(body) < 1048576, 'body size');
        await c.write(reqText('POST', '/v1/chat/completions', { body }));
        const [r] = await c.waitFor(nResponses(1), 10000);
        eq(r.status, 200, 'status');
    } finally { c.close(); }
});

test('HTTP/1.0 without keep-alive gets its answer and the connection closes', async () => {
    const c = await rawConnect(b.port);
    try {
        await c.write('GET /health/live HTTP/1.0\r\n\r\n');
        await c.waitFor((buf, closed) => closed, 5000);
        const t = c.data().toString('latin1');
        assert(/^HTTP\/1\.[01] 200/.test(t), `response: ${t.slice(0, 100)}`);
    } finally { c.close(); }
});

// A second server with small limits and short timeouts.
const t = await setup(() => startBaton(`
server:
  max_connections: 12
  header_timeout: 500ms
  idle_timeout: 800ms
providers:
  sim: {type: sim}
models:
  demo: {provider: sim}
`));

test('header_timeout: a head that never completes gets 408 (or a close) in time', async () => {
    const c = await rawConnect(t.port);
    try {
        const t0 = Date.now();
        await c.write('GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ');
        await c.waitFor((buf, closed) => parseResponses(buf).responses.length > 0 || closed, 3000);
        const ms = Date.now() - t0;
        const rs = parseResponses(c.data()).responses;
        if (rs.length) eq(rs[0].status, 408, 'status');
        assert(ms >= 400 && ms <= 2500, `ended after ${ms} ms for a 500ms header_timeout`);
    } finally { c.close(); }
});

test('idle_timeout: an idle keep-alive connection is closed in time', async () => {
    const c = await rawConnect(t.port);
    try {
        await c.write('GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n');
        await c.waitFor(nResponses(1), 3000);
        const t0 = Date.now();
        await c.waitFor((buf, closed) => closed, 3000);
        const ms = Date.now() - t0;
        assert(ms >= 500 && ms <= 2500, `closed after ${ms} ms for an 800ms idle_timeout`);
    } finally { c.close(); }
});

test('max_connections: connections past the limit are refused, and served again once others close', async () => {
    const conns = [];
    let refusedAt = -1;
    try {
        for (let i = 0; i < 20 && refusedAt < 0; i++) {
            const c = await rawConnect(t.port);
            conns.push(c);
            await c.write(`GET /health/live HTTP/1.1\r\nHost: x\r\nx-request-id: lim-${i}\r\n\r\n`);
            await c.waitFor((buf, closed) => parseResponses(buf).responses.length > 0 || closed, 3000);
            const rs = parseResponses(c.data()).responses;
            if (!rs.length || rs[0].status !== 200) {
                refusedAt = i;
                if (rs.length) eq(rs[0].status, 503, 'status past the limit');
            }
        }
        // The harness's own readiness check may hold a pooled connection or two.
        assert(refusedAt >= 9 && refusedAt <= 12, `refused at connection #${refusedAt + 1} with max_connections 12`);
        for (const c of conns) c.close();
        await sleep(200);
        const c = await rawConnect(t.port);
        conns.push(c);
        await c.write('GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n');
        const [r] = await c.waitFor(nResponses(1), 3000);
        eq(r.status, 200, 'served again after connections closed');
    } finally { for (const c of conns) c.close(); }
});

await run();
