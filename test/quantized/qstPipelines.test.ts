// Quantize and merge take quantized safetensors (every scheme) and GGUF blocks through their
// decoded values. The references are independent of our decoder: each case's values come from
// the reference dequantizers of make_quantized_fixtures.py (Transformers' own for FP8 blocks and
// MXFP4), and quantizing a model made of those float32 values must give the same bytes; a LoRA
// merged into an FP8-block base equals a float64 merge of those values, rounded to BF16.
// Refusals (a quantized part the reader left as stored, requantizing a GGUF block type without
// --allow-requantize) write nothing and print one error line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { decodedModel } from '../../src/pipelines/decodedModel';
import { FormatError } from '../../src/format/errors';
import { writeSafetensors, type TensorSource } from '../../src/format/writer';
import { merge } from '../../src/pipelines/merge';
import { mergeModels } from '../../src/pipelines/mergeModels/mergeModels';
import { quantize } from '../../src/pipelines/quantize';
import { gen, writePeft, product, addDelta } from '../merge/mergeFixtures';
import { encodeExact, quantize as quantizeTo, ulp } from '../merge/oracle';
import { CASES, expectedOf, f32File, quantFixtures, torchAvailable } from './qstFixtures';

after(() => disposeBackends());

const skip = !torchAvailable() && 'python3 with torch is not installed';
const SCHEME_CASES = CASES.filter((c) => c !== 'unrecognised');
const CLI = join(__dirname, 'cli.js');

interface Stored {
  readonly dtype: string;
  readonly shape: number[];
  readonly bytes: Uint8Array;
}

/** The tensors of a .safetensors file as the spec lays them out (a reader of its own, not ours). */
function readSafetensors(path: string): Map<string, Stored> {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, Stored>();
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    out.set(k, { dtype: v.dtype, shape: v.shape, bytes: new Uint8Array(b.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1])) });
  }
  return out;
}

/** A plain model of a case: each quantized weight as the reference dequantizer's float32 values, every other tensor as stored. */
async function referenceModel(caseDir: string, out: string): Promise<void> {
  const want = expectedOf(caseDir);
  const stored = readSafetensors(join(caseDir, 'model.safetensors'));
  const sources: TensorSource[] = [];
  for (const [name, e] of Object.entries(want.logical)) {
    const v = f32File(join(caseDir, e.ref));
    sources.push({ name, dtype: 'F32', shape: e.shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
  }
  for (const name of want.raw) {
    const t = stored.get(name)!;
    sources.push({ name, dtype: t.dtype as never, shape: t.shape, data: t.bytes });
  }
  mkdirSync(out, { recursive: true });
  await writeSafetensors(join(out, 'model.safetensors'), sources);
}

function scratch(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

for (const name of SCHEME_CASES) {
  test(`${name}: quantize --scheme q8_0 gives the bytes of quantizing the reference dequantizer's values`, { skip }, async () => {
    const dir = join(quantFixtures().dir, name);
    const work = scratch('tw-qpipe-');
    const ref = join(work, 'ref');
    await referenceModel(dir, ref);
    const ours = join(work, 'ours');
    const theirs = join(work, 'theirs');
    const want = expectedOf(dir);
    const r = await quantize({ input: dir, output: ours, scheme: 'q8_0', format: 'safetensors' }, { backend: 'cpu' });
    await quantize({ input: ref, output: theirs, scheme: 'q8_0', format: 'safetensors' }, { backend: 'cpu' });
    const a = readSafetensors(join(ours, 'model.safetensors'));
    const b = readSafetensors(join(theirs, 'model.safetensors'));
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [k, t] of a) {
      assert.equal(t.dtype, b.get(k)!.dtype, k);
      assert.deepEqual(t.shape, b.get(k)!.shape, k);
      assert.ok(Buffer.from(t.bytes).equals(Buffer.from(b.get(k)!.bytes)), `${name} ${k}: bytes differ`);
    }
    for (const [tname, e] of Object.entries(want.logical)) assert.equal(r.tensors.find((t) => t.name === tname)?.from, e.scheme, tname);
    // Where a quantized weight has rows of whole 32-value blocks and finite values, it was quantized (not only kept).
    if (Object.values(want.logical).some((e) => e.shape.length === 2 && e.shape[1] % 32 === 0 && e.stats.finite === e.stats.count)) {
      assert.ok(r.tensors.some((t) => t.action === 'quantized' && t.from !== undefined), `${name}: some quantized input was quantized`);
    }
    if (existsSync(join(dir, 'config.json'))) {
      const cfg = JSON.parse(readFileSync(join(ours, 'config.json'), 'utf8')) as { quantization_config: { quant_method: string } };
      assert.equal(cfg.quantization_config.quant_method, 'ggml', 'the input scheme\'s quantization_config is replaced');
    }
  });
}

test('a LoRA merged into an FP8-block base equals a float64 merge of the reference values, rounded to BF16; config.json loses quantization_config', { skip }, async () => {
  const dir = join(quantFixtures().dir, 'fp8_block');
  const want = expectedOf(dir);
  const target = 'model.layers.0.self_attn.q_proj.weight';
  const [rows, cols] = want.logical[target].shape;
  const work = scratch('tw-qmerge-');
  const r = 4;
  const A = gen(`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, 'F32', [r, cols], 7, 0.05);
  const B = gen(`base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight`, 'F32', [rows, r], 8, 0.05);
  const adapter = await writePeft(join(work, 'adapter'), { config: { r, lora_alpha: 8, target_modules: ['q_proj'] }, tensors: [A, B] });
  const out = join(work, 'merged');
  const res = await merge({ base: dir, adapters: [{ path: adapter }], output: out }, { backend: 'cpu' });
  assert.deepEqual(res.dequantized.map((d) => [d.from, d.dtype]), Object.keys(want.logical).map(() => ['fp8-block', 'BF16']));
  const got = readSafetensors(join(out, readdirSync(out).find((f) => f.endsWith('.safetensors'))!));
  // float64: W (the reference dequantizer's values) + (alpha / r)·B@A, rounded to BF16 by RNE.
  const w = Float64Array.from(f32File(join(dir, want.logical[target].ref)));
  addDelta(w, product(B, A), 8 / r, false);
  const t = got.get(target)!;
  assert.equal(t.dtype, 'BF16');
  const bits = new Uint16Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.length / 2);
  let worst = 0;
  for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(bits[i] - bf16Rne(w[i])));
  assert.equal(worst, 0, 'every merged value is the float64 sum rounded to BF16');
  // The untouched FP8 weight: the reference values rounded to BF16.
  const down = 'model.layers.0.mlp.down_proj.weight';
  const dv = f32File(join(dir, want.logical[down].ref));
  const db = got.get(down)!;
  assert.equal(db.dtype, 'BF16');
  const dbits = new Uint16Array(db.bytes.buffer, db.bytes.byteOffset, db.bytes.length / 2);
  for (let i = 0; i < dv.length; i++) assert.equal(dbits[i], bf16Rne(dv[i]), `${down}[${i}]`);
  assert.ok(![...got.keys()].some((k) => k.endsWith('_scale_inv')), 'no scale part is written');
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  const { quantization_config: _, ...rest } = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(cfg, rest);
});

/** BF16 bits of a float64 value by round-to-nearest-even, from the two BF16 values around it (oracle.ts's exact arithmetic). */
function bf16Rne(x: number): number {
  const lo = quantizeTo('BF16', x);
  const step = ulp('BF16', lo === 0 ? x : lo) * Math.sign(x);
  const hi = lo + step;
  const bits = (v: number) => new Uint16Array(encodeExact('BF16', [v]).buffer)[0];
  const dl = Math.abs(x - lo);
  const dh = Math.abs(hi - x);
  if (dl !== dh) return bits(dl < dh ? lo : hi);
  return bits(lo) & 1 ? bits(hi) : bits(lo);
}

/** A folder whose FP8 weight has a scale that fits no block: the reader leaves both parts as stored. */
function rawPartModel(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('python3', ['-c', `
import torch, sys
from safetensors.torch import save_file
g = torch.Generator().manual_seed(3)
save_file({"x.weight": torch.randn(64, 64, generator=g).to(torch.float8_e4m3fn), "x.weight_scale_inv": torch.ones(100, 100)}, sys.argv[1])
`, join(dir, 'model.safetensors')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return dir;
}

test('a quantized part left as stored is refused as undecodable, by quantize and merge, and nothing is written', { skip }, async () => {
  const work = scratch('tw-qraw-');
  const dir = rawPartModel(join(work, 'raw'));
  const out = join(work, 'out');
  await assert.rejects(quantize({ input: dir, output: out, scheme: 'q8_0', format: 'safetensors' }, { backend: 'cpu' }), (e: unknown) => e instanceof FormatError && e.code === 'undecodable' && e.tensor === 'x.weight');
  assert.equal(existsSync(out), false);
  const A = gen('base_model.model.x.lora_A.weight', 'F32', [2, 64], 1, 0.1);
  const B = gen('base_model.model.x.lora_B.weight', 'F32', [64, 2], 2, 0.1);
  const adapter = await writePeft(join(work, 'adapter'), { config: { r: 2, lora_alpha: 2, target_modules: ['x'] }, tensors: [A, B] });
  await assert.rejects(merge({ base: dir, adapters: [{ path: adapter }], output: out }, { backend: 'cpu' }), (e: unknown) => e instanceof FormatError && e.code === 'undecodable');
  assert.equal(existsSync(out), false);
  const cli = spawnSync(process.execPath, [CLI, 'quantize', dir, out, '--scheme', 'q8_0'], { encoding: 'utf8' });
  assert.equal(cli.status, 2);
  const lines = cli.stderr.trim().split('\n').filter((l) => l.startsWith('error'));
  assert.equal(lines.length, 1, cli.stderr);
  assert.match(lines[0], /^error\[undecodable\]: .*model\.safetensors: tensor 'x\.weight': a quantized part left as stored \(scale shape \[100,100\] fits no block size of \[64, 64\]\): its values cannot be decoded, so it cannot be quantized$/);
  assert.equal(existsSync(out), false);
});

test('a GGUF in a block type is requantized only with --allow-requantize; without it nothing is written', { skip }, async () => {
  const dir = join(quantFixtures().dir, 'fp8_block');
  const work = scratch('tw-qreq-');
  const q8 = join(work, 'q8.gguf');
  await quantize({ input: dir, output: q8, scheme: 'q8_0' }, { backend: 'cpu' });
  const out = join(work, 'q4.gguf');
  const cli = spawnSync(process.execPath, [CLI, 'quantize', q8, out, '--scheme', 'q4_0'], { encoding: 'utf8' });
  assert.equal(cli.status, 2);
  assert.match(cli.stderr, /^error\[requantize\]: .*q8\.gguf: tensor 'model\.layers\.0\.self_attn\.q_proj\.weight': stored as Q8_0: .*--allow-requantize/m);
  assert.equal(existsSync(out), false);
  assert.deepEqual(readdirSync(work).sort(), ['q8.gguf']);
  const ok = spawnSync(process.execPath, [CLI, 'quantize', q8, out, '--scheme', 'q4_0', '--allow-requantize', '--json'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  const rep = JSON.parse(ok.stdout) as { tensors: Array<{ name: string; action: string; from?: string }> };
  assert.deepEqual(rep.tensors.filter((t) => t.action === 'quantized').map((t) => [t.name, t.from]), [['model.layers.0.self_attn.q_proj.weight', 'Q8_0']]);
});

test('the merge CLI says that a quantized base is written dequantized in BF16', { skip }, async () => {
  const dir = join(quantFixtures().dir, 'fp8_block');
  const [rows, cols] = expectedOf(dir).logical['model.layers.0.self_attn.q_proj.weight'].shape;
  const work = scratch('tw-qmcli-');
  const A = gen('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'F32', [2, cols], 1, 0.1);
  const B = gen('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', 'F32', [rows, 2], 2, 0.1);
  const adapter = await writePeft(join(work, 'adapter'), { config: { r: 2, lora_alpha: 2, target_modules: ['q_proj'] }, tensors: [A, B] });
  const r = spawnSync(process.execPath, [CLI, 'merge', dir, adapter, join(work, 'out')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /note: 2 quantized base tensors \(fp8-block\) were dequantized and written as BF16, not re-quantized; config\.json has no quantization_config/);
});

test('the decoded view reads any byte range of a quantized weight as the reference float32 values, in chunks or at random offsets', { skip }, async () => {
  for (const name of ['fp8_block', 'gptq', 'nvfp4_ct']) {
    const dir = join(quantFixtures().dir, name);
    const want = expectedOf(dir);
    const view = decodedModel(await openModel(dir), await getBackend('cpu'));
    try {
      for (const [tname, e] of Object.entries(want.logical)) {
        const ref = f32File(join(dir, e.ref));
        const refBytes = new Uint8Array(ref.buffer, ref.byteOffset, ref.byteLength);
        const t = view.tensor(tname)!;
        assert.equal(t.dtype, 'F32');
        assert.equal(view.storedOf(tname)?.storage?.kind, 'scheme');
        // Chunks of an odd number of elements: runs are read across their ends.
        const joined = new Uint8Array(t.byteLength);
        let at = 0;
        for await (const c of view.chunks(t, { chunkBytes: 4 * 1001 })) {
          joined.set(c, at);
          at += c.length;
        }
        assert.equal(at, t.byteLength);
        assert.ok(Buffer.from(joined).equals(Buffer.from(refBytes)), `${name} ${tname}: chunks`);
        let seed = 11;
        for (let k = 0; k < 20; k++) {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          const off = (seed % (t.numel - 1)) * 4;
          const len = Math.min(t.byteLength - off, 4 * (1 + (seed % 700)));
          const into = new Uint8Array(len);
          await view.read(t, off, into);
          assert.ok(Buffer.from(into).equals(Buffer.from(refBytes.subarray(off, off + len))), `${name} ${tname}: bytes ${off}..${off + len}`);
        }
      }
    } finally {
      await view.close();
    }
  }
});

test('a linear model merge of an FP8-block model with its reference float32 values writes those values in BF16, without quantization_config', { skip }, async () => {
  const dir = join(quantFixtures().dir, 'fp8_block');
  const want = expectedOf(dir);
  const work = scratch('tw-qmm-');
  const ref = join(work, 'ref');
  await referenceModel(dir, ref);
  const cfg = join(work, 'merge.yml');
  writeFileSync(cfg, `merge_method: linear\nmodels:\n  - model: ${dir}\n    parameters: {weight: 0.5}\n  - model: ${ref}\n    parameters: {weight: 0.5}\n`);
  const out = join(work, 'out');
  await mergeModels({ config: cfg, output: out });
  const got = readSafetensors(join(out, readdirSync(out).find((f) => f.endsWith('.safetensors'))!));
  for (const [tname, e] of Object.entries(want.logical)) {
    const v = f32File(join(dir, e.ref));
    const g = got.get(tname)!;
    assert.equal(g.dtype, 'BF16', tname);
    const bits = new Uint16Array(g.bytes.buffer, g.bytes.byteOffset, g.bytes.length / 2);
    // The merge sums from +0, so a -0 comes back as +0: zeros compare by value.
    for (let i = 0; i < v.length; i++) if ((bits[i] & 0x7fff) !== 0 || v[i] !== 0) assert.equal(bits[i], bf16Rne(v[i]), `${tname}[${i}]`);
  }
  assert.ok(![...got.keys()].some((k) => k.endsWith('_scale_inv')));
  const outCfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal('quantization_config' in outCfg, false);
  assert.equal(outCfg.model_type, 'fixture');
});
