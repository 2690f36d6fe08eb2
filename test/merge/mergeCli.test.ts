import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { mergeCommand, parseAdapterArg } from '../../src/cli/merge';
import { disposeBackends } from '../../src/compute/backend';
import { gen, readOut, valuesOf, writePeft, writeTensors, addDelta, product } from './mergeFixtures';
import { maxUlpError } from './oracle';

const root = mkdtempSync(join(tmpdir(), 'tw-merge-cli-'));
after(async () => {
  rmSync(root, { recursive: true, force: true });
  await disposeBackends();
});

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const code = await mergeCommand.run(argv, { stdout, stderr, signal: new AbortController().signal });
  return { code, out, err };
}

describe('merge CLI', () => {
  it('parses ADAPTER[:WEIGHT], leaving non-numeric suffixes to the path', () => {
    assert.deepEqual(parseAdapterArg('a/b:0.5'), { path: 'a/b', weight: 0.5 });
    assert.deepEqual(parseAdapterArg('a/b:-1e-1'), { path: 'a/b', weight: -0.1 });
    assert.deepEqual(parseAdapterArg('C:\\x\\lora.safetensors'), { path: 'C:\\x\\lora.safetensors' });
    assert.deepEqual(parseAdapterArg('plain'), { path: 'plain' });
  });

  it('merges with a weight and --json, and refuses unmatched keys with exit 2 and nothing written', async () => {
    const base = [gen('m.q.weight', 'BF16', [8, 8], 1), gen('m.k.weight', 'BF16', [8, 8], 2)];
    await writeTensors(join(root, 'base.safetensors'), base);
    const A = gen('base_model.model.m.q.lora_A.weight', 'F32', [2, 8], 3);
    const B = gen('base_model.model.m.q.lora_B.weight', 'F32', [8, 2], 4);
    await writePeft(join(root, 'ad'), { config: { r: 2, lora_alpha: 4 }, tensors: [A, B] });
    const ok = await run([join(root, 'base.safetensors'), `${join(root, 'ad')}:0.25`, join(root, 'o.safetensors'), '--json', '--backend', 'cpu']);
    assert.equal(ok.code, 0, ok.err);
    const j = JSON.parse(ok.out);
    assert.equal(j.merged, 1);
    assert.equal(j.adapters[0].weight, 0.25);
    const W = Float64Array.from(base[0].values);
    addDelta(W, product(B, A), 0.25 * 2, false);
    assert.ok(maxUlpError('BF16', valuesOf(readOut(join(root, 'o.safetensors')).tensors.get('m.q.weight')!), W).max <= 1);

    const dry = await run([join(root, 'base.safetensors'), join(root, 'ad'), join(root, 'x.safetensors'), '--dry-run']);
    assert.equal(dry.code, 0);
    assert.match(dry.out, /m\.q\.weight {2}r=2 alpha=4 scale=2/);
    assert.equal(existsSync(join(root, 'x.safetensors')), false);

    await writePeft(join(root, 'bad'), { config: { r: 2, lora_alpha: 4 }, tensors: [{ ...A, name: 'base_model.model.m.nope.lora_A.weight' }, { ...B, name: 'base_model.model.m.nope.lora_B.weight' }] });
    const bad = await run([join(root, 'base.safetensors'), join(root, 'bad'), join(root, 'y.safetensors')]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^error\[merge\]: 2 adapter key\(s\) do not map.*m\.nope\.lora_A\.weight/);
    assert.equal(existsSync(join(root, 'y.safetensors')), false);
  });
});
