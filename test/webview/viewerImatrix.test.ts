/**
 * A llama.cpp importance matrix in the viewer page (headless Chromium, real CSP), with the
 * host's real replies: the legacy file opened by the model layer, summarised, and its
 * statistics and heatmap computed by ModelService. The page lists every matrix of the
 * imatrix, and for one shows its count, mean and max, the hottest channels first and a
 * heatmap; the call counts and the dataset are in the metadata table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARTIFACTS, pageErrors, violations } from './harness';
import { pageSuite } from './pageSuite';
import { openModel } from '../../src/format/openModel';
import { disposeBackends } from '../../src/compute/backend';
import { ModelService } from '../../src/pipelines/viewer/modelService';

const dir = mkdtempSync(join(tmpdir(), 'tw-imatrix-page-'));
const pages = pageSuite(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});

/** The legacy layout: i32 n; per entry i32 len, name, i32 ncall, i32 nval, f32 values; i32 chunks, i32 len, dataset. */
function legacy(entries: ReadonlyArray<[string, number, Float32Array]>, chunks: number, dataset: string): Buffer {
  const parts: Buffer[] = [];
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  i32(entries.length);
  for (const [name, ncall, v] of entries) {
    i32(Buffer.byteLength(name));
    parts.push(Buffer.from(name));
    i32(ncall);
    i32(v.length);
    parts.push(Buffer.from(v.buffer));
  }
  i32(chunks);
  i32(Buffer.byteLength(dataset));
  parts.push(Buffer.from(dataset));
  return Buffer.concat(parts);
}

test('a legacy imatrix: every matrix listed; one shows count, mean, max, its hottest channels and a heatmap; call counts and dataset in the metadata', async () => {
  const values = (n: number, at: number) => Float32Array.from({ length: n }, (_, i) => (i === at ? 4200 : 2 + (i % 3)));
  const entries: Array<[string, number, Float32Array]> = [
    ['blk.0.attn_q.weight', 12, values(256, 17)],
    ['blk.0.ffn_down.weight', 12, values(320, 301)],
    ['blk.1.attn_q.weight', 12, values(256, 3)],
  ];
  const path = join(dir, 'imatrix.dat');
  writeFileSync(path, legacy(entries, 12, 'calibration.txt'));
  const model = await openModel(path);
  try {
    const svc = new ModelService(model, { backend: () => 'cpu' });
    const name = 'blk.0.ffn_down.weight';
    const page = await pages.openViewer({
      summary: { body: svc.summary() },
      [`tensorStats:${name}`]: { body: await svc.tensorStats(name, 128) },
      [`heatmap:${name}`]: { body: await svc.heatmap(name, 512) },
    });
    await page.waitForSelector('#tree .tree-row');
    const meta = (await page.textContent('#metadata-table')) ?? '';
    for (const part of ['imatrix.dataset', 'calibration.txt', 'imatrix.ncall.blk.0.ffn_down.weight', 'imatrix.chunk_count']) assert.ok(meta.includes(part), `${part} in the metadata table`);
    await page.fill('#filter >> input', 'attn_q');
    await page.waitForSelector('#tree .tree-row[data-id="blk.1.attn_q.weight"]');
    await page.fill('#filter >> input', name);
    await page.click(`#tree .tree-row[data-id="${name}"]`);
    await page.waitForSelector('#stat-max');
    assert.equal(await page.textContent('#info-shape'), '[1, 320]');
    assert.equal(await page.textContent('#stat-count'), '320');
    assert.equal(await page.textContent('#stat-max'), '4200.00');
    const mean = entries[1][2].reduce((a, b) => a + b, 0) / 320;
    assert.equal(await page.textContent('#stat-mean'), mean.toPrecision(6));
    const top = await page.$$eval('#topk-table tbody tr', (trs) => trs.slice(0, 1).map((tr) => Array.from(tr.querySelectorAll('td'), (td: any) => td.textContent)));
    assert.deepEqual(top[0].slice(1), ['301', '(0, 301)', '4200.00'], 'the hottest channel first');
    // A strip with a cell per channel: the hot one is the brightest.
    await page.waitForSelector('#heatmap');
    const strip = await page.$eval('#heatmap', (c: any) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, 1).data;
      let best = 0;
      for (let x = 0; x < c.width; x++) if (d[4 * x] + d[4 * x + 1] > d[4 * best] + d[4 * best + 1]) best = x;
      return { size: [c.width, c.height], best };
    });
    assert.deepEqual(strip, { size: [320, 1], best: 301 });
    await page.screenshot({ path: join(ARTIFACTS, 'imatrix-legacy.png') });
    assert.deepEqual(pageErrors(page), []);
    assert.deepEqual(await violations(page), []);
    await page.close();
  } finally {
    await model.close();
  }
});
