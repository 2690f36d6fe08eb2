// PyTorch checkpoints written by real torch, read without executing them: every tensor's
// bytes must equal what torch.load(weights_only=True) gives back (its contiguous bytes,
// hashed by the generator), and `convert` must write the same bytes to safetensors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModel } from '../../src/format/openModel';
import type { Model } from '../../src/format/model';
import { TorchModel } from '../../src/format/pickle/torchModel';
import { expectedOf, FIXTURES, torchAvailable, torchFixtures } from './torchFixtures';
import { PRESETS, writeLlama } from '../fixtures/llama';
import { writeTorchZip } from '../fixtures/torchZip';

const CLI = join(__dirname, 'cli.js');
const have = torchAvailable();

async function digest(m: Model, name: string): Promise<string> {
  const t = m.tensor(name);
  assert.ok(t, `tensor '${name}' is missing`);
  const h = createHash('sha256');
  for await (const c of m.chunks(t, { chunkBytes: 64 })) h.update(c);
  return h.digest('hex');
}

for (const f of FIXTURES) {
  test(`torch ${f}: every tensor's dtype, shape and bytes equal torch.load's`, { skip: !have && 'python3 with torch is not installed' }, async () => {
    const path = join(torchFixtures(), f);
    const exp = expectedOf(path);
    const m = await openModel(path);
    try {
      assert.ok(m instanceof TorchModel);
      assert.equal(m.safety?.clean, true);
      const aliases = m.torch.aliases;
      for (const [name, e] of Object.entries(exp)) {
        const kept = aliases.get(name) ?? name;
        const t = m.tensor(kept);
        assert.ok(t, `${f}: '${name}' missing`);
        assert.equal(t.dtype, e.dtype, `${f}: '${name}' dtype`);
        assert.deepEqual([...t.shape], e.shape, `${f}: '${name}' shape`);
        assert.equal(await digest(m, kept), e.sha256, `${f}: '${name}' bytes`);
      }
      assert.equal(m.tensors.length + aliases.size, Object.keys(exp).length, `${f}: tensor count`);
    } finally {
      await m.close();
    }
  });
}

test('torch views.pt: the tied name is an alias, the transposed and strided views are gathered', { skip: !have && 'python3 with torch is not installed' }, async () => {
  const m = (await openModel(join(torchFixtures(), 'views.pt'))) as TorchModel;
  try {
    assert.equal(m.torch.aliases.get('tied'), 'base');
    assert.ok(m.notes.some((n) => n.includes("'tied' is the same tensor as 'base'")));
    // A partial read of a gathered view: bytes 8..16 of transposed are elements 2 and 3 of its first row.
    const t = m.tensor('transposed')!;
    const part = new Uint8Array(8);
    await m.read(t, 8, part);
    const base = m.tensor('base')!;
    const all = new Uint8Array(base.byteLength);
    await m.read(base, 0, all);
    const f = new Float32Array(all.buffer);
    const got = new Float32Array(part.buffer);
    assert.deepEqual([...got], [f[2 * 6 + 0], f[3 * 6 + 0]]);
  } finally {
    await m.close();
  }
});

test('torch lightning.ckpt: tensors under state_dict, the rest summarised', { skip: !have && 'python3 with torch is not installed' }, async () => {
  const m = (await openModel(join(torchFixtures(), 'lightning.ckpt'))) as TorchModel;
  try {
    assert.equal(m.torch.layout.root, 'state_dict');
    assert.deepEqual(m.tensors.map((t) => t.name), ['model.layers.0.weight', 'model.layers.1.weight', 'model.layers.2.weight']);
    assert.ok(m.notes.some((n) => n.startsWith('other entry optimizer_states: optimizer state')));
    assert.ok(m.notes.some((n) => n === 'other entry epoch: 3'));
  } finally {
    await m.close();
  }
});

test('CLI convert model.bin → safetensors writes torch.load\'s bytes, aliases once; scan exits 0', { skip: !have && 'python3 with torch is not installed' }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tw-torch-out-'));
  for (const f of ['every_dtype.pt', 'views_legacy.pt', 'pytorch_model.bin']) {
    const src = join(torchFixtures(), f);
    const dst = join(out, f + '.safetensors');
    const r = spawnSync(process.execPath, [CLI, 'convert', src, dst], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /dtypes kept/);
    const m = await openModel(dst);
    try {
      assert.equal(m.metadata.format, 'pt');
      const exp = expectedOf(src);
      for (const t of m.tensors) assert.equal(await digest(m, t.name), exp[t.name].sha256, `${f}: '${t.name}'`);
      if (f === 'pytorch_model.bin') {
        assert.equal(m.tensor('lm_head.weight'), undefined);
        assert.match(r.stdout, /'lm_head.weight' is the same tensor as 'model.embed_tokens.weight'/);
      }
    } finally {
      await m.close();
    }
  }
  const s = spawnSync(process.execPath, [CLI, 'scan', ...FIXTURES.map((f) => join(torchFixtures(), f)), '--json'], { encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  const results = JSON.parse(s.stdout) as { verdict: { clean: boolean } }[];
  assert.equal(results.length, FIXTURES.length);
  assert.ok(results.every((r) => r.verdict.clean));
});

test('torch sharded pytorch_model.bin.index.json opens as one model, from the index or the folder', { skip: !have && 'python3 with torch is not installed' }, async () => {
  const dir = join(torchFixtures(), 'sharded');
  const exp = expectedOf(join(dir, 'pytorch_model.bin.index.json'));
  for (const path of [join(dir, 'pytorch_model.bin.index.json'), dir]) {
    const m = await openModel(path);
    try {
      assert.equal(m.files.length, 2);
      assert.deepEqual(m.tensors.map((t) => t.name), Object.keys(exp));
      for (const [name, e] of Object.entries(exp)) assert.equal(await digest(m, name), e.sha256, name);
      assert.equal(m.safety?.clean, true);
    } finally {
      await m.close();
    }
  }
});

test('the zip fixture writer makes files torch.load reads: the bench workload is a real checkpoint', { skip: !have && 'python3 with torch is not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-torchzip-'));
  await writeLlama(dir, PRESETS.tiny);
  const src = await openModel(dir);
  const bin = join(dir, 'pytorch_model.bin');
  try {
    await writeTorchZip(bin, src);
  } finally {
    await src.close();
  }
  const py = `import torch, hashlib, json, sys
sd = torch.load(sys.argv[1], weights_only=True)
print(json.dumps({k: hashlib.sha256(v.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest() for k, v in sd.items()}))`;
  const r = spawnSync('python3', ['-c', py, bin], { encoding: 'utf8', maxBuffer: 16 << 20 });
  assert.equal(r.status, 0, r.stderr);
  const want = JSON.parse(r.stdout) as Record<string, string>;
  const m = await openModel(bin);
  try {
    assert.deepEqual(m.tensors.map((t) => t.name), Object.keys(want));
    for (const t of m.tensors) assert.equal(await digest(m, t.name), want[t.name], t.name);
  } finally {
    await m.close();
  }
});
