import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { diffCommand } from '../../src/cli/diff';
import { UsageError, type CommandIO } from '../../src/cli/command';
import { FormatError } from '../../src/format/errors';
import { decodeRef, encode, normals, rng, TempDir, writeModel } from './diffFixtures';

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  const io: CommandIO = { stdout, stderr: new PassThrough(), signal: new AbortController().signal };
  const code = await diffCommand.run(argv, io);
  return { code, out: Buffer.concat(chunks).toString('utf8') };
}

describe('tensor-workbench diff', () => {
  const dir = new TempDir();
  let a: string;
  let b: string;
  const va = normals(32 * 16, rng(3));
  const vb = Float64Array.from(va, (x, i) => (i % 4 === 0 ? x + 0.25 : x));
  before(async () => {
    a = await writeModel(dir.file('a.safetensors'), [
      { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [32, 16], values: va },
      { name: 'model.norm.weight', dtype: 'F32', shape: [16], values: va.slice(0, 16) },
      { name: 'old', dtype: 'F32', shape: [2], values: [1, 2] },
    ]);
    b = await writeModel(dir.file('b.safetensors'), [
      { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [32, 16], values: vb },
      { name: 'model.norm.weight', dtype: 'F32', shape: [4, 4], values: va.slice(0, 16) },
      { name: 'new', dtype: 'F32', shape: [2], values: [1, 2] },
    ]);
  });
  after(() => dir.dispose());

  it('prints the JSON document the issue specifies', async () => {
    const { code, out } = await run([a, b, '--json', '--rank', '--backend', 'cpu']);
    assert.equal(code, 0);
    const doc = JSON.parse(out);
    assert.deepEqual(doc.added, ['new']);
    assert.deepEqual(doc.removed, ['old']);
    assert.deepEqual(doc.changed, [{ name: 'model.norm.weight', shapeA: [16], shapeB: [4, 4], dtypeA: 'F32', dtypeB: 'F32' }]);
    assert.equal(doc.tensors.length, 1);
    const t = doc.tensors[0];
    for (const k of ['name', 'identical', 'relL2', 'cosine', 'maxAbsDiff', 'meanAbsDiff', 'changedFraction', 'rankEnergy']) assert.ok(k in t, k);
    // Oracle: the stored BF16 values in float64.
    const x = decodeRef('BF16', encode('BF16', va));
    const y = decodeRef('BF16', encode('BF16', vb));
    const dd = x.reduce((s, xi, i) => s + (y[i] - xi) ** 2, 0);
    const aa = x.reduce((s, xi) => s + xi * xi, 0);
    assert.ok(Math.abs(t.relL2 - Math.sqrt(dd / aa)) < 1e-9 * Math.sqrt(dd / aa));
    const changed = x.filter((xi, i) => xi !== y[i]).length;
    assert.equal(t.changedFraction, changed / x.length);
    assert.deepEqual(Object.keys(t.rankEnergy), ['1', '4', '16', '64']);
    assert.ok(Array.isArray(doc.layers) && doc.layers[0].group === 'layers.0');
    assert.ok(doc.seconds > 0);
    assert.equal(doc.bytesRead - (doc.rankBytesRead ?? 0), 2 * 32 * 16 * 2);
  });

  it('prints Markdown and terminal text naming the changed tensor', async () => {
    const md = await run([a, b, '--markdown', '--backend', 'cpu']);
    assert.match(md.out, /^## Checkpoint diff/);
    assert.match(md.out, /\| `model\.layers\.0\.mlp\.up_proj\.weight` \|/);
    assert.match(md.out, /1 of 1 compared tensors changed/);
    const text = await run([a, b, '--backend', 'cpu']);
    assert.match(text.out, /model\.layers\.0\.mlp\.up_proj\.weight\s+BF16\s+\d/);
    assert.match(text.out, /shape\/dtype changed: model\.norm\.weight: F32 \[16\] → F32 \[4, 4\]/);
  });

  it('fails on an invalid file with an error naming that file', async () => {
    const bad = dir.file('bad.safetensors');
    const bytes = readFileSync(b);
    writeFileSync(bad, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(run([a, bad, '--backend', 'cpu']), (e: unknown) => e instanceof FormatError && e.file === bad && e.message.includes(bad));
  });

  it('rejects contradictory or malformed options', async () => {
    await assert.rejects(run([a, b, '--json', '--markdown']), UsageError);
    await assert.rejects(run([a, b, '--map', 'nothing']), UsageError);
    await assert.rejects(run([a]), UsageError);
  });
});
