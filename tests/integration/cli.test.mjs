// The command line: version, --help everywhere, `baton check` (the example
// file, masked secrets, file:line:column errors), and serve's refusal to run
// keyless on a non-loopback address.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import {
    test, run, assert, eq, deepEq, runBaton, spawnBaton, stopProc, writeTemp, freePort, REPO, SLOW, sleep,
} from './lib.mjs';

const CONFIGS = join(REPO, 'tests/integration/configs');
const cfg = (name) => join(CONFIGS, name);
const both = (r) => `${r.out}\n${r.err}`;
const UNSET = { OPENAI_API_KEY: undefined, DEEPSEEK_API_KEY: undefined, BATON_MASTER_KEY: undefined };
const SECRETS = {
    OPENAI_API_KEY: 'sk-proj-OPENAIsecretvalue0123456789abcdefXYZ',
    DEEPSEEK_API_KEY: 'sk-DEEPSEEKsecretvalue9876543210fedcbaQRS',
    BATON_MASTER_KEY: 'sk-baton-MASTERsecret-55555-66666-77777',
};

test('baton version prints a version and exits 0', async () => {
    const r = await runBaton(['version']);
    eq(r.code, 0, 'exit code');
    assert(/\d+\.\d+/.test(r.out), `no version number in stdout: ${JSON.stringify(r.out)}`);
});

for (const args of [['--help'], ['serve', '--help'], ['check', '--help'], ['sim', '--help'], ['version', '--help']]) {
    test(`baton ${args.join(' ')} exits 0 with usage text`, async () => {
        const r = await runBaton(args);
        eq(r.code, 0, `exit code (stderr: ${r.err.slice(0, 200)})`);
        assert(/usage/i.test(r.out), `no usage text on stdout: ${JSON.stringify(r.out.slice(0, 200))}`);
    });
}

test('an unknown command exits non-zero', async () => {
    const r = await runBaton(['no-such-command']);
    assert(r.code !== 0, `exit code 0 for an unknown command; out: ${both(r).slice(0, 200)}`);
});

test('check: the issue example passes with every key unset (warnings only)', async () => {
    const r = await runBaton(['check', '-c', cfg('issue9-example.yaml')], { env: UNSET });
    eq(r.code, 0, `exit code; output: ${both(r).slice(0, 600)}`);
    const o = both(r);
    assert(/warn/i.test(o), `expected warnings about unset keys; output: ${o.slice(0, 600)}`);
    assert(/OPENAI_API_KEY|openai/.test(r.err + r.out) && /DEEPSEEK_API_KEY|deepseek/.test(o),
        `warnings should name the providers/variables; output: ${o.slice(0, 600)}`);
    for (const m of ['gpt-4o-mini', 'deepseek-chat', 'chat', 'demo'])
        assert(r.out.includes(m), `model table on stdout lacks ${m}: ${r.out.slice(0, 600)}`);
});

test('check: the issue example with keys set masks every secret', async () => {
    const r = await runBaton(['check', '-c', cfg('issue9-example.yaml')], { env: SECRETS });
    eq(r.code, 0, `exit code; output: ${both(r).slice(0, 600)}`);
    const o = both(r);
    for (const [k, v] of Object.entries(SECRETS)) {
        assert(!o.includes(v), `${k} appears in full in check's output`);
        assert(!o.includes(v.slice(8, 24)), `${k} appears (a 16-char middle part) in check's output`);
    }
    for (const m of ['gpt-4o-mini', 'deepseek-chat', 'chat', 'demo'])
        assert(r.out.includes(m), `model table lacks ${m}: ${r.out.slice(0, 600)}`);
    assert(/openai\/gpt-4o-mini/.test(r.out) && /deepseek\/deepseek-chat/.test(r.out),
        `table should show deployments as provider/model: ${r.out.slice(0, 800)}`);
});

test('check: a literal api_key in the file is masked too', async () => {
    const key = 'sk-literal-KEY-abcdefghijklmnopqrstuvwxyz012345';
    const p = writeTemp('literal.yaml', `providers:\n  p1: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "${key}"}\nmodels:\n  m: {provider: p1, model: up-1}\n`);
    const r = await runBaton(['check', '-c', p]);
    eq(r.code, 0, `exit code; output: ${both(r).slice(0, 400)}`);
    assert(!both(r).includes(key) && !both(r).includes(key.slice(10, 30)), 'the literal key appears in check output');
    assert(r.out.includes('p1/up-1'), `table lacks p1/up-1: ${r.out.slice(0, 400)}`);
});

test('check: an unknown key is an error at file:3:3', async () => {
    const r = await runBaton(['check', '-c', cfg('bad-unknown-key.yaml')]);
    assert(r.code !== 0, 'exit code 0 for an unknown key');
    const o = both(r);
    assert(/bad-unknown-key\.yaml:3:3:/.test(o), `expected "bad-unknown-key.yaml:3:3:" in: ${o.slice(0, 400)}`);
    assert(o.includes('listne'), `message should name the unknown key: ${o.slice(0, 400)}`);
});

test('check: broken YAML is an error with file:line:column', async () => {
    const r = await runBaton(['check', '-c', cfg('bad-yaml.yaml')]);
    assert(r.code !== 0, 'exit code 0 for broken YAML');
    assert(/bad-yaml\.yaml:\d+:\d+:/.test(both(r)), `no file:line:column in: ${both(r).slice(0, 400)}`);
});

test('check: a model naming an unknown provider is an error at its line', async () => {
    const r = await runBaton(['check', '-c', cfg('bad-unknown-provider.yaml')]);
    assert(r.code !== 0, 'exit code 0 for an unknown provider');
    const o = both(r);
    assert(/bad-unknown-provider\.yaml:5:\d+:/.test(o), `expected bad-unknown-provider.yaml:5:COL: in: ${o.slice(0, 400)}`);
    assert(o.includes('nope'), `message should name the provider: ${o.slice(0, 400)}`);
});

test('check: an unknown provider type is an error at its line', async () => {
    const r = await runBaton(['check', '-c', cfg('bad-unknown-type.yaml')]);
    assert(r.code !== 0, 'exit code 0 for an unknown provider type');
    assert(/bad-unknown-type\.yaml:3:\d+:/.test(both(r)), `expected bad-unknown-type.yaml:3:COL: in: ${both(r).slice(0, 400)}`);
});

test('check: ${VAR:-default} and ${VAR} expand inside scalars', async () => {
    const p = writeTemp('expand.yaml', [
        'server:',
        '  listen: "${BATON_IT_LISTEN:-127.0.0.1:4321}"',
        'providers:',
        '  s: {type: sim}',
        'models:',
        '  m1: {provider: s, model: "${BATON_IT_UP:-up-default}"}',
        '  m2: {provider: s, model: "${BATON_IT_MODEL}"}',
        '',
    ].join('\n'));
    const r = await runBaton(['check', '-c', p], { env: { BATON_IT_MODEL: 'expanded-name', BATON_IT_LISTEN: undefined, BATON_IT_UP: undefined } });
    eq(r.code, 0, `exit code; output: ${both(r).slice(0, 400)}`);
    assert(r.out.includes('s/up-default'), `expected deployment s/up-default in: ${r.out.slice(0, 400)}`);
    assert(r.out.includes('s/expanded-name'), `expected deployment s/expanded-name in: ${r.out.slice(0, 400)}`);
});

test('check: a missing file is an error', async () => {
    const r = await runBaton(['check', '-c', '/nonexistent/baton-it.yaml']);
    assert(r.code !== 0, 'exit code 0 for a missing file');
    assert(both(r).includes('/nonexistent/baton-it.yaml'), `message should name the file: ${both(r).slice(0, 300)}`);
});

// Starts serve and expects it to exit non-zero within a few seconds.
async function expectRefusal(args, env = {}) {
    const p = spawnBaton(args, { env });
    const res = await Promise.race([p.exited, sleep(5000 * SLOW).then(() => null)]);
    if (!res) {
        await stopProc(p);
        throw new Error(`baton ${args.join(' ')} kept running (expected it to refuse to start); stderr: ${p.err().slice(0, 300)}`);
    }
    assert(res.code !== 0, `exit code 0; stderr: ${p.err().slice(0, 300)}`);
    assert(p.err().trim().length > 0, 'no message on stderr');
    return p.err();
}

test('serve: no master key on 0.0.0.0 without allow_anonymous refuses to start', async () => {
    const port = await freePort();
    const p = writeTemp('anon.yaml', `server:\n  listen: "0.0.0.0:${port}"\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    const err = await expectRefusal(['serve', '-c', p], { BATON_MASTER_KEY: undefined });
    assert(/anonymous|master_key|loopback/i.test(err), `message should explain (master_key / allow_anonymous / loopback): ${err.slice(0, 300)}`);
});

test('serve: --listen 0.0.0.0 without a key refuses too; an empty ${VAR} key counts as none', async () => {
    const port = await freePort();
    const p = writeTemp('anon2.yaml', `server:\n  listen: 127.0.0.1:${port}\nauth:\n  master_key: \${BATON_IT_EMPTY_KEY}\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    await expectRefusal(['serve', '-c', p, '--listen', `0.0.0.0:${port}`], { BATON_IT_EMPTY_KEY: '' });
});

test('serve: without a master key it serves on loopback and says so at startup', async () => {
    const port = await freePort();
    const p = writeTemp('loop.yaml', `server:\n  listen: 127.0.0.1:${port}\nauth:\n  master_key: \${BATON_IT_EMPTY_KEY:-}\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    const proc = spawnBaton(['serve', '-c', p], { env: { BATON_IT_EMPTY_KEY: undefined } });
    try {
        let status = 0;
        for (let i = 0; i < 100 && status !== 200; i++) {
            await sleep(50);
            status = await fetch(`http://127.0.0.1:${port}/v1/models`).then((r) => r.status, () => 0);
        }
        eq(status, 200, '/v1/models without a key on loopback');
        assert(/master.?key|without (a )?key|authentication/i.test(proc.err()), `no startup notice about serving without a key: ${proc.err().slice(0, 300)}`);
    } finally { await stopProc(proc); }
});

test('serve: an invalid config exits non-zero with file:line:column', async () => {
    const err = await expectRefusal(['serve', '-c', cfg('bad-unknown-key.yaml')]);
    assert(/bad-unknown-key\.yaml:3:3:/.test(err), `expected file:3:3: in stderr: ${err.slice(0, 300)}`);
});

// ---- check and serve judge a file the same way; --listen is parsed like server.listen

// The lines of stderr that are diagnostics (`file: error: ...`, `file:L:C: error: ...`).
const diagLines = (text) => text.split('\n').filter((l) => /: (error|warning): /.test(l));

test('serve: --listen localhost:PORT is accepted like server.listen: localhost:PORT', async () => {
    const port = await freePort();
    const p = writeTemp('lh.yaml', 'providers:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n');
    const proc = spawnBaton(['serve', '-c', p, '--listen', `localhost:${port}`]);
    try {
        let status = 0;
        for (let i = 0; i < 100 && status !== 200 && proc.child.exitCode === null; i++) {
            await sleep(50);
            status = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status, () => 0);
        }
        eq(status, 200, `/health/ready on --listen localhost:${port} (stderr: ${proc.err().slice(0, 300)})`);
    } finally { await stopProc(proc); }
    const r = await runBaton(['check', '-c', p, '--listen', `localhost:${port}`]);
    eq(r.code, 0, `check --listen localhost exit code; output: ${both(r).slice(0, 300)}`);
    assert(r.out.includes(`listen 127.0.0.1:${port}`), `check shows the address in use: ${r.out.slice(-300)}`);
});

test('serve and check: --listen foo:1 says the host is not an address, with server.listen\'s words', async () => {
    const p = writeTemp('foo.yaml', 'providers:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n');
    const err = await expectRefusal(['serve', '-c', p, '--listen', 'foo:1']);
    assert(!/refusing to serve/.test(err), `talks about the master key instead of the address: ${err.slice(0, 300)}`);
    assert(err.includes('--listen: "foo" is not an IP address (use an IPv4 address, [IPv6] in brackets, or localhost; names are not resolved)'),
        `message: ${err.slice(0, 400)}`);
    const inFile = writeTemp('foo2.yaml', 'server:\n  listen: foo:1\n');
    const r = await runBaton(['check', '-c', inFile]);
    eq(r.code, 1, 'check exit code for server.listen: foo:1');
    assert(r.err.includes('server.listen: "foo" is not an IP address (use an IPv4 address, [IPv6] in brackets, or localhost; names are not resolved)'),
        `check message: ${r.err.slice(0, 400)}`);
    const r2 = await runBaton(['check', '-c', p, '--listen', 'foo:1']);
    eq(r2.code, 1, 'check --listen foo:1 exit code');
    deepEq(diagLines(r2.err), diagLines(err), 'check and serve print the same diagnostics');
});

// Runs check and serve on the same file and flags; both must refuse with the
// same diagnostics. Returns them.
async function sameRefusal(file, flags = []) {
    const r = await runBaton(['check', '-c', file, ...flags], { env: { BATON_MASTER_KEY: undefined } });
    eq(r.code, 1, `check exit code (serve refuses this file); output: ${both(r).slice(0, 400)}`);
    const err = await expectRefusal(['serve', '-c', file, ...flags], { BATON_MASTER_KEY: undefined });
    const a = diagLines(r.err), b = diagLines(err);
    assert(a.length > 0, `check printed no diagnostic: ${r.err.slice(0, 300)}`);
    deepEq(a, b, 'check and serve print the same diagnostics');
    return a;
}

test('check refuses what serve refuses: 0.0.0.0 without a master key (file and --listen)', async () => {
    const p = writeTemp('open.yaml', 'server:\n  listen: 0.0.0.0:27990\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n');
    const d = await sameRefusal(p);
    assert(/open\.yaml:2:11: error: server\.listen: refusing to serve on 0\.0\.0\.0 without a master key/.test(d[0]), `diagnostic: ${d[0]}`);
    const port = await freePort();
    const q = writeTemp('loop.yaml', `server:\n  listen: 127.0.0.1:${port}\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    const d2 = await sameRefusal(q, ['--listen', `0.0.0.0:${port}`]);
    assert(/error: --listen: refusing to serve on 0\.0\.0\.0 without a master key/.test(d2[0]), `diagnostic: ${d2[0]}`);
    const anon = writeTemp('anon-ok.yaml', 'server:\n  listen: 0.0.0.0:27990\nauth:\n  allow_anonymous: true\n');
    const r = await runBaton(['check', '-c', anon]);
    eq(r.code, 0, `allow_anonymous: check passes; output: ${both(r).slice(0, 300)}`);
    assert(/warning: .*anyone who reaches 0\.0\.0\.0/.test(r.err), `allow_anonymous warns: ${r.err.slice(0, 300)}`);
});

test('check refuses what serve refuses: a log file it cannot open', async () => {
    const p = writeTemp('log.yaml', 'log:\n  file: /nonexistent-baton-dir/baton.log\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n');
    const d = await sameRefusal(p);
    assert(/log\.yaml:2:9: error: log\.file: cannot create \/nonexistent-baton-dir\/baton\.log/.test(d[0]), `diagnostic: ${d[0]}`);
    const q = writeTemp('access.yaml', `log:\n  access: ${REPO}\n`);
    const d2 = await sameRefusal(q);
    assert(/error: log\.access: .* is a directory/.test(d2[0]), `diagnostic: ${d2[0]}`);
});

// ---- two instances on one address

// Waits until a serve process logs that it listens (or exits); returns true when it listens.
async function listening(proc, ms = 5000 * SLOW) {
    const end = Date.now() + ms;
    while (Date.now() < end && proc.child.exitCode === null && !/baton listening on/.test(proc.err())) await sleep(25);
    return /baton listening on/.test(proc.err()) && proc.child.exitCode === null;
}

test('serve: a second instance on the same address exits 1 with "address already in use"', async () => {
    const port = await freePort();
    const p = writeTemp('twice.yaml', `server:\n  listen: 127.0.0.1:${port}\n  workers: 2\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    const first = spawnBaton(['serve', '-c', p]);
    try {
        assert(await listening(first), `the first instance did not start: ${first.err().slice(0, 300)}`);
        const second = spawnBaton(['serve', '-c', p]);
        const res = await Promise.race([second.exited, sleep(5000 * SLOW).then(() => null)]);
        if (!res) await stopProc(second);
        assert(res, `the second instance kept running on 127.0.0.1:${port}: ${second.err().slice(0, 400)}`);
        eq(res.code, 1, `second instance's exit code (stderr: ${second.err().slice(0, 300)})`);
        assert(second.err().includes(`cannot listen on 127.0.0.1:${port}: address already in use`), `message: ${second.err().slice(0, 400)}`);
        assert(/server\.reuse_port: true or pass --reuse-port/.test(second.err()), `message names the opt-in: ${second.err().slice(0, 400)}`);
        // The first one still serves, both workers included (many connections).
        const st = await Promise.all(Array.from({ length: 20 }, () => fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status, () => 0)));
        assert(st.every((x) => x === 200), `the first instance answers: ${st}`);
    } finally { await stopProc(first); }
});

test('serve: with server.reuse_port on the first and --reuse-port on the second, both run', async () => {
    const port = await freePort();
    const p = writeTemp('share.yaml', `server:\n  listen: 127.0.0.1:${port}\n  workers: 2\n  reuse_port: true\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    const q = writeTemp('share2.yaml', `server:\n  listen: 127.0.0.1:${port}\n  workers: 2\nproviders:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n`);
    const first = spawnBaton(['serve', '-c', p]);
    const second = spawnBaton(['serve', '-c', q, '--reuse-port']);
    try {
        assert(await listening(first), `the first instance did not start: ${first.err().slice(0, 300)}`);
        assert(await listening(second), `the second instance did not start: ${second.err().slice(0, 300)}`);
        await sleep(200);
        assert(first.child.exitCode === null && second.child.exitCode === null, 'both still run');
        // A swap: the old one drains away, the new one keeps answering.
        await stopProc(first);
        const st = await Promise.all(Array.from({ length: 10 }, () => fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status, () => 0)));
        assert(st.every((x) => x === 200), `the second instance answers alone: ${st}`);
        const r = await runBaton(['check', '-c', q, '--reuse-port']);
        assert(r.out.includes('reuse_port true'), `check shows the flag: ${r.out.slice(-300)}`);
    } finally { await stopProc(first); await stopProc(second); }
});

// ---- docs/config.md against the keys the parser accepts

test('docs/config.md documents every key baton check accepts', async () => {
    const docs = readFileSync(join(REPO, 'docs/config.md'), 'utf8');
    // An unknown key in each place makes check list the keys that place accepts.
    const probes = {
        'top level': 'nope: 1\n',
        server: 'server: {nope: 1}\n',
        auth: 'auth: {nope: 1}\n',
        metrics: 'metrics: {nope: 1}\n',
        store: 'store: {nope: 1}\n',
        log: 'log: {nope: 1}\n',
        provider: 'providers: {p: {type: sim, nope: 1}}\n',
        timeouts: 'providers: {p: {type: sim, timeouts: {nope: 1}}}\n',
        faults: 'providers: {p: {type: sim, faults: {nope: 1}}}\n',
        tls: 'providers: {p: {type: openai, tls: {nope: 1}}}\n',
        model: 'providers: {p: {type: sim}}\nmodels: {m: {provider: p, nope: 1}}\n',
        deployment: 'providers: {p: {type: sim}}\nmodels: {m: {deployments: [{provider: p, nope: 1}]}}\n',
        price: 'providers: {p: {type: sim}}\nmodels: {m: {provider: p, price: {nope: 1}}}\n',
    };
    const missing = [];
    for (const [where, yaml] of Object.entries(probes)) {
        const r = await runBaton(['check', '-c', writeTemp('keys.yaml', yaml)]);
        const m = /\(expected one of: ([^)]*)\)/.exec(r.err);
        assert(m, `${where}: no key list in: ${r.err.slice(0, 300)}`);
        for (const key of m[1].split(', ')) {
            // `key`, or with its parents or children: `deployments[].weight`, `tls.verify`
            const esc = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
            if (!new RegExp(`\`([\\w\\[\\]]+\\.)?${esc}(\\.\\w+)?\``).test(docs)) missing.push(`${where}: ${key}`);
        }
    }
    deepEq(missing, [], 'keys missing from docs/config.md');
});

await run();
