// Every preset in examples/ (one per provider) passes `baton check`, with the
// keys it reads from the environment set and without them (then only warnings:
// a missing key is not an error until a request needs it), and names the
// provider type and base URL it says it does.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, run, assert, eq, runBaton, writeTemp, REPO } from './lib.mjs';

const dir = join(REPO, 'examples');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
const want = ['openai', 'anthropic', 'gemini', 'azure', 'deepseek', 'upstage', 'clova', 'groq',
    'together', 'mistral', 'ollama', 'vllm', 'llamacpp', 'quickstart'];

test('a preset for each provider the docs promise', async () => {
    for (const w of want) assert(files.includes(`${w}.yaml`), `examples/${w}.yaml is missing`);
});

test('each preset passes baton check, keys set or not', async () => {
    for (const f of files) {
        const text = readFileSync(join(dir, f), 'utf8');
        // the variables it reads (those with a value by default, ${VAR:-value}, stay unset)
        const vars = [...text.matchAll(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g)].filter((m) => !m[2]).map((m) => m[1]);
        const env = Object.fromEntries(vars.map((v) => [v, `test-${v.toLowerCase()}`]));
        const withKeys = await runBaton(['check', '-c', join(dir, f)], { env });
        eq(withKeys.code, 0, `${f}: ${withKeys.err}`);
        assert(/OK \(0 warnings\)/.test(withKeys.out + withKeys.err), `${f} with its keys set: ${withKeys.err}`);
        const unset = Object.fromEntries(vars.map((v) => [v, undefined]));
        const without = await runBaton(['check', '-c', join(dir, f)], { env: unset });
        eq(without.code, 0, `${f} without keys: ${without.err}`);
    }
});

test('every whole config in docs/governance.md passes baton check', async () => {
    const doc = readFileSync(join(REPO, 'docs/governance.md'), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]).filter((y) => y.includes('providers:'));
    assert(blocks.length >= 2, `${blocks.length} whole configs in docs/governance.md`);
    for (const [i, y] of blocks.entries()) {
        const f = writeTemp(`governance-doc-${i}.yaml`, y);
        const r = await runBaton(['check', '-c', f], { env: { BATON_MASTER_KEY: 'sk-m', OPENAI_API_KEY: 'sk-x' } });
        eq(r.code, 0, `example ${i + 1}: baton check: ${r.err}`);
        assert(/OK \(0 warnings\)/.test(r.out + r.err), `example ${i + 1}: ${r.err}`);
    }
    // the page's configs are the files in examples/
    for (const f of ['governance.yaml', 'cluster.yaml'])
        assert(blocks.includes(readFileSync(join(dir, f), 'utf8')), `docs/governance.md shows examples/${f} as it is`);
});

test('the presets reach the documented endpoints', async () => {
    const r = async (f) => (await runBaton(['check', '-c', join(dir, f)], { env: { AZURE_OPENAI_RESOURCE: 'acme' } })).out;
    assert(/anthropic\s+anthropic\s+https:\/\/api\.anthropic\.com/.test(await r('anthropic.yaml')), await r('anthropic.yaml'));
    assert(/gemini\s+gemini\s+https:\/\/generativelanguage\.googleapis\.com/.test(await r('gemini.yaml')), await r('gemini.yaml'));
    assert(/azure\s+azure\s+https:\/\/acme\.openai\.azure\.com/.test(await r('azure.yaml')), await r('azure.yaml'));
    assert(/clova\s+openai\s+https:\/\/clovastudio\.stream\.ntruss\.com\/v1\/openai/.test(await r('clova.yaml')), await r('clova.yaml'));
    assert(/upstage\s+openai\s+https:\/\/api\.upstage\.ai\/v1/.test(await r('upstage.yaml')), await r('upstage.yaml'));
});

await run();
