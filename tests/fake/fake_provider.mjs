// A fake OpenAI-compatible provider for checks the simulator cannot do: it records
// exactly what baton sent upstream (method, path, raw header list, body bytes),
// counts the TCP connections baton opened, and answers however the test says
// (a canned body with vendor fields, a stream that breaks after a 200, silence).
//
// In a test (same process):
//   import { startFake } from '../fake/fake_provider.mjs';
//   const fake = await startFake(port);          // listens on 127.0.0.1:port
//   fake.handle((req, res, h) => h.json(200, body));
//   ... fake.requests[0].body (Buffer), fake.requests[0].headers (lower-case map),
//       fake.connections, fake.stop()
// Standalone (for poking at baton by hand):
//   node tests/fake/fake_provider.mjs --listen 127.0.0.1:PORT
//   GET /fake/requests lists what it received; chat requests get a canned reply.
import http from 'node:http';

// A chat completion with vendor fields an OpenAI-compatible server may add
// (DeepSeek's reasoning_content, an unknown top-level field) and unusual number
// spellings, to prove baton forwards the bytes as they are.
export function cannedCompletion(model = 'fake-model') {
    return '{"id":"chatcmpl-fake1","object":"chat.completion","created":1700000000,' +
        `"model":${JSON.stringify(model)},"system_fingerprint":"fp_fake",` +
        '"choices":[{"index":0,"message":{"role":"assistant","content":"fake says hi \\u00e9 한국어",' +
        '"reasoning_content":"thinking about it","refusal":null},"logprobs":null,"finish_reason":"stop"}],' +
        '"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12},' +
        '"x_vendor_extra":{"temperature_used":0.70,"list":[1,2.50,3e2]}}';
}

// The chunks of a streamed completion with reasoning_content deltas.
export function cannedChunks(model = 'fake-model', { usage = false } = {}) {
    const base = (choices, extra = '') => `{"id":"chatcmpl-fake2","object":"chat.completion.chunk","created":1700000000,"model":${JSON.stringify(model)}${extra},"choices":${choices}}`;
    const out = [
        base('[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":"hmm"},"logprobs":null,"finish_reason":null}]'),
        base('[{"index":0,"delta":{"reasoning_content":" let me think"},"logprobs":null,"finish_reason":null}]'),
        base('[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]'),
        base('[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]'),
        base('[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]'),
    ];
    if (usage) out.push(base('[]', ',"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}'));
    return out;
}

function helpers(req, res) {
    return {
        // Replies with `text` as the body, exactly.
        json(status, text, headers = {}) {
            const body = Buffer.from(typeof text === 'string' ? text : JSON.stringify(text));
            res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...headers });
            res.end(body);
        },
        // Streams SSE `data:` events (strings), `gapMs` apart, then [DONE] unless
        // `done: false`; with `breakAfter: N` destroys the socket after N events;
        // with `hold: true` the stream stays open (silent) after the last event.
        async sse(events, { gapMs = 5, done = true, breakAfter = -1, headers = {}, hold = false } = {}) {
            res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
            for (let i = 0; i < events.length; i++) {
                if (i === breakAfter) { res.socket?.destroy(); return; }
                if (res.destroyed || res.socket?.destroyed) return;
                res.write(`data: ${events[i]}\n\n`);
                if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
            }
            if (breakAfter >= events.length) { res.socket?.destroy(); return; }
            if (done) res.write('data: [DONE]\n\n');
            if (!hold) res.end();
        },
        // Never answers (the connection stays open until the peer closes it).
        hang() { /* nothing */ },
        // Replies with `body` (Buffer or string) byte for byte, with only the
        // headers given (no content-type is added), then ends the response.
        raw(status, body, headers = {}) {
            res.writeHead(status, headers);
            res.end(body);
        },
        // Sends `body` in pieces of `pieceBytes`, `gapMs` apart (one TCP segment
        // each: Nagle is off). Content-Length is announced unless `headers` give a
        // framing. With `hold: true` the response is left open after the last byte.
        // Resolves the number of bytes written (fewer when the peer went away).
        async drip(status, body, { gapMs = 1, pieceBytes = 1, headers = {}, hold = false } = {}) {
            const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
            const h = { 'content-type': 'application/json', ...headers };
            if (!Object.keys(h).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) h['content-length'] = buf.length;
            res.socket?.setNoDelay(true);
            res.writeHead(status, h);
            let sent = 0;
            while (sent < buf.length) {
                if (res.destroyed || res.socket?.destroyed) return sent;
                res.write(buf.subarray(sent, sent + pieceBytes));
                sent = Math.min(buf.length, sent + pieceBytes);
                await new Promise((r) => setTimeout(r, gapMs));
            }
            if (!hold) res.end();
            return sent;
        },
        // Writes `fill` bytes as fast as the peer reads them, up to `total`, after a
        // head announcing `contentLength` (default: total; null: none, so Node
        // chunks). Stops when the peer closes. Resolves the bytes written.
        async flood(status, { total, contentLength = total, headers = {}, fill = 0x30, prefix = '' } = {}) {
            const h = { 'content-type': 'application/json', ...headers };
            if (contentLength !== null) h['content-length'] = String(contentLength);
            res.writeHead(status, h);
            const piece = Buffer.alloc(256 * 1024, fill);
            let sent = 0;
            if (prefix) { res.write(prefix); sent += Buffer.byteLength(prefix); }
            while (sent < total) {
                if (res.destroyed || res.socket?.destroyed) break;
                const n = Math.min(piece.length, total - sent);
                const ok = res.write(n === piece.length ? piece : piece.subarray(0, n));
                sent += n;
                if (!ok) {
                    await new Promise((r) => {
                        const done = () => { res.off('drain', done); res.off('close', done); r(); };
                        res.on('drain', done); res.on('close', done);
                    });
                }
            }
            if (!res.destroyed) res.end();
            return sent;
        },
        // Closes the connection without a response.
        reset() { req.socket.destroy(); },
    };
}

// Starts the fake on 127.0.0.1:port. Returns a handle (see the top of the file).
export function startFake(port, host = '127.0.0.1') {
    const state = {
        port, url: `http://${host}:${port}/v1`, requests: [], connections: 0, openSockets: new Set(),
        handler: (req, res, h) => {
            if (req.url.endsWith('/chat/completions')) h.json(200, cannedCompletion());
            else h.json(404, '{"error":{"message":"no such path on the fake","type":"invalid_request_error","param":null,"code":null}}');
        },
        handle(fn) { state.handler = fn; },
        reset() { state.requests.length = 0; },
        stop() {
            for (const s of state.openSockets) s.destroy();
            return new Promise((r) => server.close(() => r()));
        },
    };
    const server = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
        const parts = [];
        req.on('data', (d) => parts.push(d));
        req.on('end', () => {
            const body = Buffer.concat(parts);
            if (req.url === '/fake/requests') {
                const list = state.requests.map((r) => ({ ...r, body: r.body.toString('utf8') }));
                res.writeHead(200, { 'content-type': 'application/json' });
                res.end(JSON.stringify({ connections: state.connections, requests: list }));
                return;
            }
            const rec = {
                method: req.method, url: req.url, httpVersion: req.httpVersion,
                rawHeaders: req.rawHeaders, headers: req.headers, body,
                socketId: req.socket.fakeId, t: Date.now(),
            };
            state.requests.push(rec);
            let json;
            try { json = JSON.parse(body.toString('utf8')); } catch { /* not JSON */ }
            rec.json = json;
            try {
                const r = state.handler(rec, res, helpers(req, res));
                if (r && typeof r.catch === 'function') r.catch(() => res.socket?.destroy());
            } catch { res.socket?.destroy(); }
        });
    });
    server.on('connection', (s) => {
        state.connections++;
        s.fakeId = state.connections;
        state.openSockets.add(s);
        s.on('close', () => state.openSockets.delete(s));
    });
    return new Promise((resolve, reject) => {
        server.once('error', (e) => reject(new Error(`fake provider: cannot listen on ${host}:${port}: ${e.message}`)));
        server.listen({ host, port, exclusive: true }, () => resolve(state));
    });
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()) &&
    process.argv.includes('--listen')) {
    const addr = process.argv[process.argv.indexOf('--listen') + 1] || '127.0.0.1:8001';
    const i = addr.lastIndexOf(':');
    const f = await startFake(Number(addr.slice(i + 1)), addr.slice(0, i));
    console.log(`fake provider on ${f.url}`);
}
