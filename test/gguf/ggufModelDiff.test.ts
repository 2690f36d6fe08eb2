import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openModel } from '../../src/format/openModel';
import { typeNameOf, type Model } from '../../src/format/model';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import { computeHeatmap, HeatmapAccumulator, matrixShape } from '../../src/pipelines/viewer/heatmap';
import { diff } from '../../src/pipelines/diff';
import { diffToText } from '../../src/pipelines/diffReport';
import { quantize } from '../../src/pipelines/quantize';
import { writeLlama } from '../fixtures/llama';

/**
 * What did quantization cost: a Llama-like safetensors model written as GGUF by our own
 * quantize (llama.cpp names, q/k rows in llama.cpp's order) diffs against the original as
 * identical when the values were kept (F32, F16), and with Q8_0's error when quantized; the
 * Q8_0 figures are held to gguf-py's dequantizer and a numpy inverse of the row order.
 */

let dir = '';
const spec = { hidden: 64, intermediate: 192, layers: 2, vocab: 128, heads: 4, kvHeads: 2 } as const;

async function withModels<T>(pa: string, pb: string, f: (a: Model, b: Model) => Promise<T>): Promise<T> {
  const a = await openModel(pa);
  const b = await openModel(pb);
  try {
    return await f(a, b);
  } finally {
    await a.close();
    await b.close();
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-gguf-diff-'));
  await writeLlama(join(dir, 'f32'), { ...spec, dtype: 'F32' });
  await writeLlama(join(dir, 'f16'), { ...spec, dtype: 'F16' });
  const ctx = { backend: 'cpu' as const };
  await quantize({ input: join(dir, 'f32'), output: join(dir, 'q8.gguf'), scheme: 'q8_0', ggufNames: 'llama' }, ctx);
  await quantize({ input: join(dir, 'f32'), output: join(dir, 'f32.gguf'), scheme: 'q8_0', ggufNames: 'llama', keep: ['*'] }, ctx);
  await quantize({ input: join(dir, 'f16'), output: join(dir, 'f16.gguf'), scheme: 'q8_0', ggufNames: 'llama', keep: ['*'] }, ctx);
});
after(() => rmSync(dir, { recursive: true, force: true }));

for (const kind of ['f32', 'f16'] as const) {
  test(`an unchanged model written as ${kind.toUpperCase()} GGUF with llama.cpp names diffs as identical`, async () => {
    await withModels(join(dir, kind, 'model.safetensors'), join(dir, `${kind}.gguf`), async (a, b) => {
      // The q/k rows really are stored in another order: a byte compare would see them differ.
      const hf = a.tensor('model.layers.0.self_attn.q_proj.weight')!;
      const cpp = b.tensor('blk.0.attn_q.weight')!;
      assert.equal(cpp.byteLength, hf.byteLength);
      const x = new Uint8Array(hf.byteLength);
      const y = new Uint8Array(cpp.byteLength);
      await a.read(hf, 0, x);
      await b.read(cpp, 0, y);
      assert.notDeepEqual(x, y);
      const r = await diff(a, b, { backend: 'cpu' });
      assert.deepEqual(r.added, []);
      assert.deepEqual(r.removed, []);
      assert.deepEqual(r.changed, []);
      assert.equal(r.summary.compared, a.tensors.length);
      assert.equal(r.summary.different, 0, JSON.stringify(r.tensors.filter((t) => !t.identical).map((t) => [t.name, t.relL2])));
      assert.ok(r.tensors.every((t) => t.relL2 === 0));
      assert.equal(r.tensors.find((t) => t.name === hf.name)?.nameB, 'blk.0.attn_q.weight');
      assert.match(r.naming ?? '', /llama\.cpp → HF.*q\/k rows/);
      assert.equal(r.summary.bitsPerWeightB, kind === 'f32' ? 32 : 16);
    });
  });
}

test('the Q8_0 GGUF shows the error gguf-py and numpy compute for it, tensor by tensor', async () => {
  const st = join(dir, 'f32', 'model.safetensors');
  const q8 = join(dir, 'q8.gguf');
  const py = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'ggufModel_diff_oracle.py'), st, q8, String(spec.heads), String(spec.kvHeads)], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(py.status, 0, py.stderr);
  const oracle = JSON.parse(py.stdout) as Record<string, { gguf: string; relL2: number; cosine: number; maxAbs: number; sumD2: number; sumA2: number; bytes: number }>;
  await withModels(st, q8, async (a, b) => {
    const r = await diff(a, b, { backend: 'cpu' });
    assert.equal(r.summary.compared, Object.keys(oracle).length);
    let quantized = 0;
    for (const t of r.tensors) {
      const o = oracle[t.name];
      assert.ok(o, t.name);
      assert.equal(t.nameB, o.gguf);
      if (t.dtypeB === 'Q8_0') {
        quantized++;
        assert.ok(t.decoded && !t.identical);
        // Q8_0: a few thousandths of the norm, up to about 1% where outlier channels widen a block's scale.
        assert.ok(t.relL2! > 1e-3 && t.relL2! < 3e-2, `${t.name}: relL2 ${t.relL2}`);
        assert.ok(Math.abs(t.relL2! - o.relL2) <= 1e-6 * o.relL2, `${t.name}: relL2 ${t.relL2} vs ${o.relL2}`);
        assert.ok(Math.abs(t.cosine! - o.cosine) <= 1e-9, `${t.name}: cosine ${t.cosine} vs ${o.cosine}`);
        assert.ok(Math.abs(t.maxAbsDiff - o.maxAbs) <= 1e-6 * o.maxAbs, `${t.name}: max ${t.maxAbsDiff} vs ${o.maxAbs}`);
        assert.ok(Math.abs(t.snrDb! + 20 * Math.log10(o.relL2)) < 1e-4);
      } else {
        assert.equal(o.relL2, 0, `${t.name} kept`);
        assert.equal(t.relL2, 0, `${t.name} kept`);
      }
    }
    assert.ok(quantized >= 7 * spec.layers, `${quantized} Q8_0 tensors`);
    const n = a.tensors.reduce((s, t) => s + t.numel, 0);
    const bytes = Object.values(oracle).reduce((s, o) => s + o.bytes, 0);
    assert.ok(Math.abs(r.summary.bitsPerWeightB - (8 * bytes) / n) < 1e-9);
    assert.equal(r.summary.bitsPerWeightA, 32);
    const d2 = Object.values(oracle).reduce((s, o) => s + o.sumD2, 0);
    const a2 = Object.values(oracle).filter((o) => o.sumD2 > 0).reduce((s, o) => s + o.sumA2, 0);
    assert.ok(Math.abs(r.summary.relL2! - Math.sqrt(d2 / a2)) <= 1e-6 * Math.sqrt(d2 / a2));
    const text = diffToText(r);
    assert.match(text, /bits per weight 32\.00 → \d\.\d\d: relL2 .*SNR \d+\.\d dB/);
    assert.match(text, /F32→Q8_0/);
  });
});

test('two GGUF files diff by value (Q8_0 against F32), and a GGUF against itself is identical', async () => {
  await withModels(join(dir, 'f32.gguf'), join(dir, 'q8.gguf'), async (a, b) => {
    const r = await diff(a, b, { backend: 'cpu' });
    assert.equal(r.naming, undefined);
    assert.ok(r.tensors.some((t) => t.dtypeB === 'Q8_0' && t.relL2! > 1e-3 && t.relL2! < 1e-2));
    assert.deepEqual(r.changed, []);
  });
  await withModels(join(dir, 'q8.gguf'), join(dir, 'q8.gguf'), async (a, b) => {
    const r = await diff(a, b, { backend: 'cpu' });
    assert.equal(r.summary.different, 0);
    assert.equal(r.summary.compared, a.tensors.length);
    assert.ok(readFileSync(join(dir, 'q8.gguf')).length > 0);
  });
});

test("the viewer's heatmap of a Q8_0 tensor is the heatmap of its dequantized values", async () => {
  const m = await openModel(join(dir, 'q8.gguf'));
  try {
    const t = m.tensor('blk.1.ffn_up.weight')!;
    assert.equal(typeNameOf(t), 'Q8_0');
    const img = await computeHeatmap(m, t, 64);
    const bytes = new Uint8Array(t.byteLength);
    await m.read(t, 0, bytes);
    const values = new Float32Array(t.numel);
    dequantize('Q8_0', bytes, values);
    const { rows, cols } = matrixShape(t.shape);
    const acc = new HeatmapAccumulator(rows, cols, 64);
    acc.push(values);
    const want = acc.image();
    assert.deepEqual([img.width, img.height, img.scale], [want.width, want.height, want.scale]);
    assert.deepEqual(img.pixels, want.pixels);
  } finally {
    await m.close();
  }
});
