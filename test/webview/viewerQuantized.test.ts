/**
 * Quantized models in the viewer page (headless Chromium, real CSP), with the replies a real
 * host computes (ModelService over generated files): the header states the scheme, config.json's
 * ignore list and where it disagrees with the tensors; a quantized tensor's row shows its scheme,
 * bits per weight and group, and folds its parts; its details show the scale statistics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { ARTIFACTS } from './harness';
import { pageSuite, assertClean } from './pageSuite';
import { openModel } from '../../src/format/openModel';
import { disposeBackends } from '../../src/compute/backend';
import { ModelService } from '../../src/pipelines/viewer/modelService';
import { quantFixtures, torchAvailable } from '../quantized/qstFixtures';

declare const window: any;

const pages = pageSuite(disposeBackends);
const skip = !torchAvailable() && 'python3 with torch is not installed';

const row = (id: string) => `#tree .tree-row[data-id="${id}"]`;

async function openPath(page: Page, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    await page.waitForSelector(row(id));
    if ((await page.getAttribute(row(id), 'aria-expanded')) !== 'true') await page.click(row(id));
  }
}

test('FP8 blocks: header with scheme, ignore list and the disagreement; parts folded under the weight; scale statistics', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-viewer-quant-'));
  try {
    cpSync(join(quantFixtures().dir, 'fp8_block', 'model.safetensors'), join(dir, 'model.safetensors'));
    // The config leaves lm_head and the down projection unquantized; the file stores the down projection as FP8 anyway.
    const config = { quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128], modules_to_not_convert: ['lm_head', 'model.layers.0.mlp.down_proj'] } };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const model = await openModel(join(dir, 'model.safetensors'));
    try {
      const svc = new ModelService(model, { backend: () => 'cpu' });
      const name = 'model.layers.0.self_attn.q_proj.weight';
      const scales = await svc.scaleStats(name);
      const page = await pages.openViewer({
        summary: { body: svc.summary() },
        [`tensorStats:${name}`]: { body: await svc.tensorStats(name, 128) },
        [`heatmap:${name}`]: { body: await svc.heatmap(name, 512) },
        [`scaleStats:${name}`]: { body: scales },
      });
      await page.waitForSelector('#quant-header');
      const head = (await page.textContent('#quant-schemes')) ?? '';
      assert.ok(head.includes('fp8-block ×2') && head.includes('quant_method fp8') && head.includes('group 128×128'), head);
      assert.equal(await page.textContent('#quant-ignore summary'), 'Left unquantized (modules_to_not_convert): 2 modules');
      assert.deepEqual(await page.$$eval('#quant-ignore li', (e) => e.map((x) => x.textContent)), ['lm_head', 'model.layers.0.mlp.down_proj']);
      const disagree = await page.$$eval('#quant-disagree li', (e) => e.map((x) => x.textContent ?? ''));
      assert.equal(disagree.length, 1, disagree.join('\n'));
      assert.match(disagree[0]!, /^model\.layers\.0\.mlp\.down_proj\.weight: .*modules_to_not_convert.*stored as fp8-block/);

      await openPath(page, ['model', 'model.layers', 'model.layers.0', 'model.layers.0.self_attn', 'model.layers.0.self_attn.q_proj']);
      // 256 × 384 FP8 values plus 2 × 3 float32 scales: (98304 + 24) × 8 / 98304 bits per weight.
      assert.equal(await page.textContent(`${row(name)} .meta`), 'fp8-block · 8.00 bpw · 128×128 block [256, 384]');
      await page.click(row(name));
      assert.equal(await page.getAttribute(row(name), 'aria-expanded'), 'true');
      assert.equal(await page.textContent(`${row(`${name}#scale_inv`)} .label`), 'scale_inv');
      assert.equal(await page.textContent(`${row(`${name}#weight`)} .meta`), '96.0 KiB');
      assert.equal(await page.textContent('#info-scheme'), 'fp8-block');
      assert.equal(await page.textContent('#info-bpw'), `${(((256 * 384 + 24) * 8) / (256 * 384)).toFixed(3)} (scales included)`);
      assert.deepEqual(await page.$$eval('#parts-table tbody tr td:first-child', (e) => e.map((x) => x.textContent)), ['weight', 'scale_inv']);

      await page.waitForSelector('#scales-section:not([aria-busy])');
      const series = scales.report.series;
      assert.deepEqual(await page.$$eval('#scales-section .scale-series', (e) => e.map((x) => x.getAttribute('data-series'))), series.map((s) => s.name));
      assert.equal(await page.textContent('#scale-series-0 [data-stat="count"]'), '6');
      assert.equal(await page.textContent('#scale-series-0 [data-stat="nonfinite"]'), '0');
      assert.equal(await page.$$eval('#scale-series-0 .scale-bar', (e) => e.length), series[0]!.histogram.counts.length);
      assert.equal(Number(await page.getAttribute('#scale-series-0 .scale-hist', 'data-bins')), series[0]!.histogram.counts.length);
      // Bars are as tall as their counts relative to the fullest bin (CSSOM heights, no inline style attribute).
      const heights = await page.$$eval('#scale-series-0 .scale-bar', (e) => e.map((x) => parseFloat((x as any).style.height)));
      const counts = Array.from(series[0]!.histogram.counts);
      const top = Math.max(...counts);
      heights.forEach((hgt, i) => assert.ok(Math.abs(hgt - (counts[i] ? Math.max(2, (counts[i]! / top) * 100) : 0)) < 1e-6, `bar ${i}`));
      await page.screenshot({ path: join(ARTIFACTS, 'quantized-fp8.png') });
      await (await page.$('#scales-section'))!.screenshot({ path: join(ARTIFACTS, 'quantized-fp8-scales.png') });

      // A part row: where its bytes are.
      await page.click(row(`${name}#scale_inv`));
      assert.equal(await page.textContent('#part-role'), 'scale_inv');
      assert.match((await page.textContent('#part-range')) ?? '', /^24 B · file bytes \[\d+, \d+\)$/);

      // A plain tensor has no scale section and asks for none.
      await openPath(page, ['model.layers.0.input_layernorm']);
      await page.click(row('model.layers.0.input_layernorm.weight'));
      await page.waitForSelector('#tensor-info');
      assert.equal(await page.$('#scales-section'), null);
      assert.equal(await page.$('#info-scheme'), null);
      const asked = await page.evaluate(() => (window as any).__host.sent.filter((m: any) => m.type === 'request' && m.body.type === 'scaleStats').map((m: any) => m.body.name));
      assert.deepEqual(asked, [name]);
      await assertClean(page);
      await page.close();
    } finally {
      await model.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GGUF K-quants: the row shows type, bits per weight and super-block; details show d, dmin and the sub-block scales', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-viewer-gguf-scales-'));
  try {
    const r = spawnSync('python3', [join(__dirname, '..', 'test', 'scales', 'scales_oracle.py'), 'gguf', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    type Want = Record<string, { series: Record<string, { count: number; nonFinite: number }> }>;
    const want: Want = JSON.parse(readFileSync(join(dir, 'scales.gguf.json'), 'utf8'));
    const model = await openModel(join(dir, 'scales.gguf'));
    try {
      const svc = new ModelService(model, { backend: () => 'cpu' });
      const name = 'raw_q4_k.weight';
      const page = await pages.openViewer({
        summary: { body: svc.summary() },
        [`tensorStats:${name}`]: { body: await svc.tensorStats(name, 128) },
        [`heatmap:${name}`]: { body: await svc.heatmap(name, 512) },
        [`scaleStats:${name}`]: { body: await svc.scaleStats(name) },
      });
      await page.waitForSelector('#tree .tree-row');
      assert.equal(await page.$('#quant-header'), null, 'no quantized-safetensors header for a GGUF');
      await openPath(page, ['raw_q4_k']);
      await page.waitForSelector(row(name));
      // 144 bytes per 256 values: 4.5 bits per weight.
      assert.equal(await page.textContent(`${row(name)} .meta`), 'Q4_K · 4.50 bpw · super-block 256 [48, 1024]');
      await page.click(row(name));
      assert.equal(await page.getAttribute(row(name), 'aria-expanded'), null, 'a block type has no parts to fold');
      await page.waitForSelector('#scales-section:not([aria-busy])');
      const shown = await page.$$eval('#scales-section .scale-series', (e) => e.map((x) => x.getAttribute('data-series')));
      assert.deepEqual(shown, Object.keys(want[name]!.series));
      for (let k = 0; k < shown.length; k++) {
        const w: { count: number; nonFinite: number } = want[name]!.series[shown[k]!]!;
        assert.equal(await page.textContent(`#scale-series-${k} [data-stat="count"]`), w.count.toLocaleString('en-US'));
        assert.equal(await page.textContent(`#scale-series-${k} [data-stat="nonfinite"]`), w.nonFinite.toLocaleString('en-US'));
      }
      // Random bytes hold NaN/Inf d values: the badge says so.
      assert.ok((await page.$$('#scales-section [data-badge="non-finite"]')).length > 0);
      await page.screenshot({ path: join(ARTIFACTS, 'quantized-gguf-q4k.png') });
      await (await page.$('#scales-section'))!.screenshot({ path: join(ARTIFACTS, 'quantized-gguf-q4k-scales.png') });
      await assertClean(page);
      await page.close();
    } finally {
      await model.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
