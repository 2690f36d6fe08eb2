// The health scan's checks of quantized weights' scales and indices, on files that carry each fault.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { writeSafetensors, type TensorSource } from '../../src/format/writer';
import { renderStatsText } from '../../src/cli/stats';
import { stats } from '../../src/pipelines/stats';

function f32(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
function i32(values: number[]): Uint8Array {
  return new Uint8Array(Int32Array.from(values).buffer);
}

/** An FP8 weight with 128 × 128 block scales, one NaN and one 0; MXFP4 blocks with each E8M0 limit; a GPTQ layer whose g_idx points past its groups. */
function faultyTensors(): TensorSource[] {
  const fp8 = new Uint8Array(256 * 256).fill(0x38); // E4M3 1.0
  const blocks = new Uint8Array(8 * 4 * 16).fill(0x21); // codes 1 and 2: 0.5 and 1
  const scales = new Uint8Array(8 * 4).fill(127);
  scales[3] = 0xff;
  scales[4] = 0;
  scales[5] = 0;
  scales[9] = 0xfe;
  const gIdx: number[] = Array.from({ length: 256 }, (_, i) => (i < 128 ? 0 : 1));
  gIdx[200] = 2;
  gIdx[201] = -1;
  return [
    { name: 'a.weight', dtype: 'F8_E4M3', shape: [256, 256], data: fp8 },
    { name: 'a.weight_scale_inv', dtype: 'F32', shape: [2, 2], data: f32([0.5, NaN, 0, 0.25]) },
    { name: 'b.w_blocks', dtype: 'U8', shape: [8, 4, 16], data: blocks },
    { name: 'b.w_scales', dtype: 'U8', shape: [8, 4], data: scales },
    { name: 'c.qweight', dtype: 'I32', shape: [32, 64], data: i32(new Array(32 * 64).fill(0x76543210)) },
    { name: 'c.qzeros', dtype: 'I32', shape: [2, 8], data: i32(new Array(16).fill(0x77777777)) },
    { name: 'c.scales', dtype: 'F16', shape: [2, 64], data: new Uint8Array(new Uint16Array(128).fill(0x2000).buffer) },
    { name: 'c.g_idx', dtype: 'I32', shape: [256], data: i32(gIdx) },
    // A healthy FP8 weight: no finding.
    { name: 'd.weight', dtype: 'F8_E4M3', shape: [128, 128], data: fp8.subarray(0, 128 * 128) },
    { name: 'd.weight_scale_inv', dtype: 'F32', shape: [1, 1], data: f32([2]) },
  ];
}

describe('scheme checks in the health scan', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-scheme-checks-'));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await disposeBackends();
  });

  it('reports NaN and zero scales, E8M0 limits and g_idx outside the groups, per tensor, and nothing for a healthy weight', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, faultyTensors());
    const m = await openModel(path);
    try {
      const r = await stats(m, { backend: 'cpu' });
      const found = (r.health.schemeFindings ?? []).map((f) => `${f.tensor} ${f.scheme} ${f.check} ${f.count}`).sort();
      assert.deepEqual(found, [
        'a.weight fp8-block nan-scales 1',
        'a.weight fp8-block zero-scales 1',
        'b.w mxfp4 e8m0-max 1',
        'b.w mxfp4 e8m0-min 2',
        'b.w mxfp4 nan-scales 1',
        'c.weight gptq codes-out-of-range 2',
      ]);
      // The values agree: the NaN scale's block is NaN, the zero scale's block zeros.
      const a = r.tensors.find((t) => t.name === 'a.weight')!;
      assert.equal(a.nan, 128 * 128);
      assert.equal(a.zeros, 128 * 128);
      const text = renderStatsText(r);
      assert.match(text, /6 scale findings/);
      assert.match(text, /a\.weight \(fp8-block\): 1 scales are NaN or ±Inf/);
    } finally {
      await m.close();
    }
  });

  it('counts a scale that every slice receives whole once per tensor', async () => {
    const path = join(dir, 'tensor-scale.safetensors');
    // 4 MiB of FP8 under one per-tensor scale of 0: read in several slices, one finding of 1.
    const rows = 2048;
    await writeSafetensors(path, [
      { name: 'e.weight', dtype: 'F8_E4M3', shape: [rows, 2048], data: new Uint8Array(rows * 2048).fill(0x38) },
      { name: 'e.weight_scale', dtype: 'F32', shape: [1], data: f32([0]) },
    ]);
    const m = await openModel(path);
    try {
      const r = await stats(m, { backend: 'cpu', histograms: false, topK: 0 });
      assert.deepEqual(r.health.schemeFindings?.map((f) => [f.check, f.count]), [['zero-scales', 1]]);
      assert.equal(r.tensors[0].zeros, rows * 2048);
    } finally {
      await m.close();
    }
  });
});
