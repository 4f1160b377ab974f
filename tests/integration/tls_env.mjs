// Real servers for the TLS and proxy tests (tls.test.mjs, proxy.test.mjs): a test
// CA and certificates made with `openssl` in the test's temp dir, nginx (Debian)
// serving TLS in front of `baton sim`, tinyproxy (Debian) as a forward proxy.
// Everything listens on 127.0.0.1 in 20000-29999; every process started here is
// killed when the test process exits.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { freePort, sleep, tmpDir } from './lib.mjs';

const mine = new Set();
// SIGTERM, not SIGKILL: nginx's master must live to stop its workers (a killed
// master leaves them running). The handlers of all three exit on SIGTERM.
process.on('exit', () => { for (const c of mine) { try { c.kill('SIGTERM'); } catch { /* gone */ } } });

export function have(cmd) {
    return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

// Waits until 127.0.0.1:port accepts a TCP connection.
export async function waitPort(port, ms, proc, what) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (proc && proc.exitCode !== null) break;
        const ok = await new Promise((r) => {
            const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); r(true); });
            s.on('error', () => r(false));
        });
        if (ok) return;
        await sleep(30);
    }
    throw new Error(`${what} did not listen on ${port} within ${ms} ms${proc && proc.stderrText ? `: ${proc.stderrText()}` : ''}`);
}

function startProc(cmd, args, what) {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    mine.add(child);
    let err = '';
    child.stderr.on('data', (d) => { if (err.length < 65536) err += d; });
    child.stderrText = () => err.slice(-1500);
    child.on('exit', () => mine.delete(child));
    child.stopProc = async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await done;
        clearTimeout(t);
    };
    child.what = what;
    return child;
}

// Makes a CA and, signed by it, `good` (DNS:localhost only, so 127.0.0.1 is a
// hostname mismatch) and `expired` (January 2020). Returns their paths.
export function makeCerts() {
    const dir = join(tmpDir(), 'pki');
    mkdirSync(join(dir, 'ca', 'new'), { recursive: true });
    const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
        '-subj', '/CN=baton test CA', '-addext', 'basicConstraints=critical,CA:true',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'good.key', '-out', 'good.csr', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost']);
    run(['x509', '-req', '-in', 'good.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'good.pem',
        '-days', '2', '-copy_extensions', 'copy']);
    writeFileSync(join(dir, 'ca', 'index.txt'), '');
    writeFileSync(join(dir, 'ca', 'serial'), '1000\n');
    writeFileSync(join(dir, 'ca.cnf'), `[ ca ]
default_ca = test_ca
[ test_ca ]
database = ${dir}/ca/index.txt
new_certs_dir = ${dir}/ca/new
serial = ${dir}/ca/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
`);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'expired.key', '-out', 'expired.csr', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost']);
    run(['ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', 'expired.csr',
        '-out', 'expired.pem', '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-notext']);
    return {
        dir, ca: join(dir, 'ca.pem'),
        good: { cert: join(dir, 'good.pem'), key: join(dir, 'good.key') },
        expired: { cert: join(dir, 'expired.pem'), key: join(dir, 'expired.key') },
    };
}

// Starts nginx with one `server` per entry of `servers`: {name, cert: {cert,key} |
// null (plain http), extra: 'directives', locations: 'location blocks'}. Each
// server gets a free port, available in the text as $PORT_<name>. Returns {ports,
// dir, proc, accessLog(), stop()}. The access log line is "$server_port
// $connection $request_uri $status".
export async function startNginx(servers, name = 'nginx') {
    const dir = join(tmpDir(), name);
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const ports = {};
    for (const s of servers) ports[s.name] = await freePort();
    const sub = (t) => t.replace(/\$PORT_(\w+)/g, (_, n) => String(ports[n]));
    const blocks = servers.map((s) => `
    server {
        listen 127.0.0.1:${ports[s.name]}${s.cert ? ' ssl' : ''};
        ${s.cert ? `ssl_certificate ${s.cert.cert};\n        ssl_certificate_key ${s.cert.key};` : ''}
        ${sub(s.extra || '')}
        ${sub(s.locations || '')}
    }`).join('\n');
    const conf = `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
    log_format conn '$server_port $connection $request_uri $status';
    access_log ${dir}/access.log conn;
    client_body_temp_path ${dir}/tmp/body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;
    default_type application/json;
    keepalive_requests 100000;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_read_timeout 120s;
${blocks}
}
`;
    writeFileSync(join(dir, 'nginx.conf'), conf);
    const proc = startProc('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], 'nginx');
    for (const s of servers) await waitPort(ports[s.name], 10000, proc, 'nginx');
    return {
        ports, dir, proc,
        accessLog: () => (existsSync(join(dir, 'access.log')) ? readFileSync(join(dir, 'access.log'), 'utf8') : ''),
        stop: () => proc.stopProc(),
    };
}

// Starts tinyproxy in the foreground on a free port; `auth` = {user, pass} turns
// on BasicAuth. Returns {port, url, log() (its log file: "Request (file
// descriptor N): CONNECT host:port HTTP/1.1" lines), connects() (count of
// CONNECT requests so far), stop()}.
export async function startTinyproxy({ auth = null, name = 'tinyproxy' } = {}) {
    const dir = join(tmpDir(), name);
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const logf = join(dir, 'tinyproxy.log');
    writeFileSync(join(dir, 'tinyproxy.conf'), `Port ${port}
Listen 127.0.0.1
Timeout 60
LogFile "${logf}"
LogLevel Connect
PidFile "${dir}/tinyproxy.pid"
MaxClients 200
Allow 127.0.0.1
DisableViaHeader Yes
${auth ? `BasicAuth ${auth.user} ${auth.pass}` : ''}
`);
    const proc = startProc('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], 'tinyproxy');
    await waitPort(port, 10000, proc, 'tinyproxy');
    const log = () => (existsSync(logf) ? readFileSync(logf, 'utf8') : '');
    return {
        port, url: `http://127.0.0.1:${port}`, proc, log,
        requests: (re) => log().split('\n').filter((l) => /Request \(file descriptor/.test(l) && re.test(l)).length,
        stop: () => proc.stopProc(),
    };
}

// A loopback listener whose accept queue is full: further SYNs are dropped, so a
// connect to it hangs until the client's own timeout. Needs python3 (listen(0)
// and no accept() cannot be had from node). Returns {port, stop()} or null.
export async function startBlackhole() {
    if (!have('python3')) return null;
    const port = await freePort();
    const code = `
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", ${port})); s.listen(0)
fill = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", ${port}))
    except BlockingIOError: pass
    fill.append(c)
time.sleep(0.2)
sys.stderr.write("ready\\n"); sys.stderr.flush()
time.sleep(600)
`;
    const proc = startProc('python3', ['-c', code], 'python3 blackhole');
    const end = Date.now() + 5000;
    while (!/ready/.test(proc.stderrText()) && Date.now() < end && proc.exitCode === null) await sleep(20);
    if (!/ready/.test(proc.stderrText())) { await proc.stopProc(); return null; }
    return { port, stop: () => proc.stopProc() };
}
