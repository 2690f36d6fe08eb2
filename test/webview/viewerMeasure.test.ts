/**
 * Figures for the viewer's host side, written to .artifacts/webview/host-metrics.json.
 * Nothing here asserts a time (speed is reported, not tested); the checks are on
 * what was measured: the model really has 50,000 tensors and 20 GB, the stats
 * really cover every element.
 *
 * The 20 GB checkpoint is a sparse file: only its header takes disk space.
 * The 50 M-element BF16 tensor (100 MB of real data) runs only with TW_VIEWER_MEASURE=1,
 * to keep the default test run light on a shared machine.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModel } from '../../src/format/openModel';
import { disposeBackends } from '../../src/compute/backend';
import { ModelService } from '../../src/pipelines/viewer/modelService';
import { tensorEntries, treeFromTable } from '../../src/shared/protocol';

const dir = mkdtempSync(join(tmpdir(), 'tw-measure-'));
const ARTIFACTS = join(__dirname, '..', '.artifacts', 'webview');
const metrics: Record<string, unknown> = {};
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await disposeBackends();
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, 'host-metrics.json'), JSON.stringify(metrics, null, 2));
  console.log('viewer host metrics', metrics);
});

/** Writes a header for `tensors` and extends the file to its full size without writing data. */
function sparseModel(path: string, tensors: { name: string; dtype: string; shape: number[]; bytes: number }[]): number {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes] };
    off += t.bytes;
  }
  let json = JSON.stringify(header);
  while (json.length % 8) json += ' ';
  const head = Buffer.from(json);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));
  const fd = openSync(path, 'w');
  writeSync(fd, len);
  writeSync(fd, head);
  ftruncateSync(fd, 8 + head.length + off);
  closeSync(fd);
  return 8 + head.length + off;
}

test('measure: open a 50,000-tensor, 20 GB checkpoint (header only) and build the summary and tree', async () => {
  const tensors: { name: string; dtype: string; shape: number[]; bytes: number }[] = [];
  const blocks = 5000; // 10 tensors a block → 50,000 tensors
  const per = Math.floor(20e9 / (blocks * 10) / 2 / 1024) * 1024; // BF16 elements per tensor for ~20 GB total
  const names = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'input_layernorm', 'post_attention_layernorm', 'rotary'];
  for (let b = 0; b < blocks; b++) for (const n of names) tensors.push({ name: `model.layers.${b}.${n}.weight`, dtype: 'BF16', shape: [per / 1024, 1024], bytes: per * 2 });
  const path = join(dir, 'big.safetensors');
  const size = sparseModel(path, tensors);
  const t0 = performance.now();
  const model = await openModel(path);
  const t1 = performance.now();
  const svc = new ModelService(model);
  const s = svc.summary();
  const t2 = performance.now();
  // What the page receives is structured-cloned by VS Code; measure that copy too.
  const cloned = structuredClone(s);
  const t3 = performance.now();
  const t4 = performance.now();
  const entries = tensorEntries(cloned.tensors);
  const tree = treeFromTable(cloned.tree, entries);
  const t5 = performance.now();
  assert.equal(entries.length, 50_000);
  assert.ok(size > 20e9 * 0.99, `file is ${size} bytes`);
  assert.equal(tree.children!.length, 1);
  Object.assign(metrics, {
    open50kTensors20GB: { tensors: entries.length, fileBytes: size, headerMs: +(t1 - t0).toFixed(1), summaryAndTreeMs: +(t2 - t1).toFixed(1), structuredCloneMs: +(t3 - t2).toFixed(1), pageSideRebuildMs: +(t5 - t4).toFixed(1) },
  });
  await model.close();
});

test('measure: stats + histogram of a 50 M-element BF16 tensor (TW_VIEWER_MEASURE=1)', { skip: process.env.TW_VIEWER_MEASURE !== '1' }, async () => {
  const n = 50_000_000;
  const path = join(dir, 'one.safetensors');
  const json = JSON.stringify({ w: { dtype: 'BF16', shape: [n / 5000, 5000], data_offsets: [0, n * 2] } }).padEnd(64, ' ');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(path, 'w');
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json));
  // Real, varied data in 8 MB pieces: BF16 bit patterns of a spread of values.
  const chunk = new Uint16Array(4 << 20);
  let s = 1;
  for (let done = 0; done < n; done += chunk.length) {
    for (let i = 0; i < chunk.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      chunk[i] = 0x3c00 + (s >>> 22) - 512 + ((s & 1) << 15);
    }
    writeSync(fd, chunk.subarray(0, Math.min(chunk.length, n - done)));
  }
  closeSync(fd);
  const model = await openModel(path);
  try {
    for (const backend of ['cpu'] as const) {
      const svc = new ModelService(model, { backend: () => backend });
      const t0 = performance.now();
      const r = await svc.tensorStats('w', 128);
      const t1 = performance.now();
      const again = await svc.tensorStats('w', 128);
      const t2 = performance.now();
      const h = await svc.heatmap('w', 512);
      const t3 = performance.now();
      assert.equal(r.stats.count, n);
      assert.equal(again, r);
      assert.equal(h.width * h.height, 512 * 512);
      metrics[`stats50M_BF16_${backend}`] = { firstMs: +(t1 - t0).toFixed(0), cachedMs: +(t2 - t1).toFixed(2), heatmapMs: +(t3 - t2).toFixed(0), device: r.backend };
    }
  } finally {
    await model.close();
  }
});
