// Whole-model statistics of a quantized-safetensors model hold a few slices, not the model: each
// slice's bytes are let go once its statistics are folded (they once piled up to the file's size).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { stats } from '../../src/pipelines/stats';

const dir = mkdtempSync(join(tmpdir(), 'tw-qst-mem-'));
after(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});

// 24 FP8 weights of 2048×2048 with 128×128 block scales: 96 MiB of codes.
const SIDE = 2048;
const TENSORS = 24;

function writeModel(path: string): void {
  const header: Record<string, unknown> = {};
  const scaleBytes = (SIDE / 128) * (SIDE / 128) * 4;
  let off = 0;
  for (let i = 0; i < TENSORS; i++) {
    header[`layers.${i}.weight`] = { dtype: 'F8_E4M3', shape: [SIDE, SIDE], data_offsets: [off, off + SIDE * SIDE] };
    off += SIDE * SIDE;
    header[`layers.${i}.weight_scale_inv`] = { dtype: 'F32', shape: [SIDE / 128, SIDE / 128], data_offsets: [off, off + scaleBytes] };
    off += scaleBytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const h = Buffer.from(json);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const codes = Buffer.alloc(SIDE * SIDE);
  // Finite E4M3 codes of both signs (0x7F and 0xFF are NaN).
  for (let k = 0; k < codes.length; k++) codes[k] = (k * 37) % 0x7f | (k & 1 ? 0x80 : 0);
  const scales = Buffer.from(new Float32Array((SIDE / 128) ** 2).fill(0.01).buffer);
  const parts: Buffer[] = [len, h];
  for (let i = 0; i < TENSORS; i++) parts.push(codes, scales);
  writeFileSync(path, Buffer.concat(parts));
}

it('stats of an FP8-block model keeps its ArrayBuffers to a few slices', async () => {
  const path = join(dir, 'fp8.safetensors');
  writeModel(path);
  const model = await openModel(path);
  let peak = 0;
  const base = process.memoryUsage().arrayBuffers;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - base)), 5);
  try {
    const r = await stats(model, { backend: 'cpu', histograms: false, topK: 0 });
    assert.equal(r.tensors.length, TENSORS);
    assert.ok(r.tensors.every((t) => t.count === SIDE * SIDE && t.nan === 0));
  } finally {
    clearInterval(timer);
    await model.close();
  }
  // The model's codes are 96 MiB (kept slices once held twice that). What a run holds is a few
  // slices in flight and the statistics' 8 MiB buffer pool: about 40 MiB measured.
  assert.ok(peak < 80 * 2 ** 20, `ArrayBuffers peaked ${(peak / 2 ** 20).toFixed(1)} MiB above the start`);
});
