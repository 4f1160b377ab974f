// `baton route train` and `baton route eval` end to end on a small synthetic slice:
// training writes a router file (progress on stderr), eval prints APGR / CPT with
// the random baseline and --scores lines, bad inputs are refused with a message.
import { readFileSync } from 'node:fs';
import { test, run, assert, eq, runBaton, writeTemp, routingRows } from './lib.mjs';

const S = 'strong-m', W = 'weak-m';

const rows = (n, seed) => routingRows(n, seed, S, W);

const train = writeTemp('train.jsonl', rows(300, 1));
const dev = writeTemp('dev.jsonl', rows(120, 2));
const router = writeTemp('router.bin', '');

test('route train writes a router file and reports progress on stderr', async () => {
    const r = await runBaton(['route', 'train', '--data', train, '--strong', S, '--weak', W,
        '-o', router, '--strong-share', '0.35']);
    eq(r.code, 0, `exit code (stderr: ${r.err.slice(0, 300)})`);
    assert(/cross-validated APGR 0\.\d+/.test(r.err), `no CV figure on stderr: ${r.err}`);
    assert(readFileSync(router).subarray(0, 8).toString() === 'BTROUTER', 'router file header');
});

test('route eval prints APGR, CPT(50%), CPT(80%) beside random, and --scores lines', async () => {
    const scores = writeTemp('scores.jsonl', '');
    const r = await runBaton(['route', 'eval', '--data', dev, '--router', router, '--strong', S,
        '--weak', W, '--scores', scores]);
    eq(r.code, 0, `exit code (stderr: ${r.err.slice(0, 300)})`);
    const apgr = Number((/^APGR (\S+)/m.exec(r.out) || [])[1]);
    assert(apgr > 0.7, `APGR ${apgr} on a separable set; out: ${r.out}`);
    assert(/random: 0\.5000 expected/.test(r.out), `no random baseline: ${r.out}`);
    assert(/^CPT\(50%\) 0\.\d+/m.test(r.out) && /^CPT\(80%\) 0\.\d+/m.test(r.out), r.out);
    const lines = readFileSync(scores, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    eq(lines.length, 120, 'score lines');
    eq(lines[0].id, 'r2-0', 'first id');
    assert(lines.every((l) => typeof l.score === 'number'), 'numeric scores');
});

test('route eval refuses a damaged router file with a message, never a crash', async () => {
    const bytes = readFileSync(router);
    bytes[bytes.length - 20] ^= 0x55;
    const bad = writeTemp('bad.bin', bytes);
    const r = await runBaton(['route', 'eval', '--data', dev, '--router', bad, '--strong', S, '--weak', W]);
    eq(r.code, 1, 'exit code');
    assert(/checksum/.test(r.err), `stderr: ${r.err}`);
    const junk = writeTemp('junk.bin', 'hello');
    const r2 = await runBaton(['route', 'eval', '--data', dev, '--router', junk, '--strong', S, '--weak', W]);
    eq(r2.code, 1, 'exit code');
    assert(/not a baton router file/.test(r2.err), `stderr: ${r2.err}`);
});

test('route train refuses a line without the weak model score, naming the line', async () => {
    const p = writeTemp('short.jsonl', rows(3, 3) + JSON.stringify({ id: 'x', prompt: 'p', scores: { [S]: 1 } }) + '\n');
    const r = await runBaton(['route', 'train', '--data', p, '--strong', S, '--weak', W, '-o', writeTemp('o.bin', '')]);
    eq(r.code, 1, 'exit code');
    assert(/short\.jsonl:4: no numeric score for the weak model/.test(r.err), `stderr: ${r.err}`);
});

test('route without a subcommand, or train without --data, exits 2 with usage', async () => {
    const r = await runBaton(['route']);
    eq(r.code, 2, 'exit code');
    assert(/usage: baton route train/.test(r.err), r.err);
    const r2 = await runBaton(['route', 'train', '--strong', S]);
    eq(r2.code, 2, 'exit code');
    const r3 = await runBaton(['route', '--help']);
    eq(r3.code, 0, 'exit code');
});

await run();
