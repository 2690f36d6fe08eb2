/**
 * The quantization report page (webview/quantReport) in headless Chromium, under
 * its real shell and CSP: it asks the host for the report and renders the totals
 * and both tables with theme colours, breaks no policy, shows every string from
 * the report as text, and its button sends the one request the host handles.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, THEMES, pageErrors, sent, violations } from './harness';
import { pageSuite } from './pageSuite';
import { sampleReport } from '../quant/quantReportFixture';

// The callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, getComputedStyle: any, window: any;

const pages = pageSuite();

test('the report page: totals, per-tensor errors, skipped tensors with reasons, theme colours, no CSP violations, and the Markdown button', async () => {
  const r = sampleReport({ missing: ['tokenizer (out of scope)'] });
  const page = await pages.openPage('quantReport', { report: { body: { type: 'report', report: r } }, openMarkdown: { body: { type: 'done' } } }, { width: 1100, height: 520 });
  await page.waitForSelector('#quant-report');
  const totals = (await page.textContent('#quant-totals')) ?? '';
  for (const part of ['3.0 MiB → 1.6 MiB', '8.53 overall', 'SNR 41.3 dB', 'tokenizer (out of scope)']) assert.ok(totals.includes(part), `${part} in ${totals}`);
  const rows = await page.$$eval('#quant-tensors tbody tr', (e) => e.map((x) => Array.from(x.querySelectorAll('td'), (td: any) => td.textContent)));
  assert.deepEqual(rows, [['model.layers.0.self_attn.q_proj.weight', 'BF16 [64, 128]', '0.001200', '0.006900', '41.3', '0.999960', '16.0 KiB → 8.5 KiB']]);
  const skipped = await page.$$eval('#quant-skipped tbody tr', (e) => e.map((x) => Array.from(x.querySelectorAll('td'), (td: any) => td.textContent)));
  assert.deepEqual(skipped, [['model.norm.weight', 'BF16 [128]', 'kept', 'norm or bias']]);
  assert.equal(await page.textContent('h2:nth-of-type(2)'), 'Skipped tensors (1)');
  const colour = await page.evaluate(() => getComputedStyle(document.body).color);
  assert.equal(colour, 'rgb(204, 204, 204)', `body colour from --vscode-foreground (${THEMES['vscode-dark']['--vscode-foreground']})`);
  await page.screenshot({ path: join(ARTIFACTS, 'quant-report.png') });
  await page.click('#open-markdown');
  await page.waitForFunction(() => window.__host.sent.some((m: any) => m.type === 'request' && m.body.type === 'openMarkdown'));
  const bodies = (await sent(page)).filter((m) => m.type === 'request').map((m) => (m as { body: unknown }).body);
  assert.deepEqual(bodies, [{ type: 'report' }, { type: 'openMarkdown' }]);
  assert.deepEqual(await violations(page), [], 'no CSP violations');
  assert.deepEqual(pageErrors(page), []);
  await page.close();
});

test('every string from the report is text, never markup; a lossless tensor shows ∞ dB; a failed request shows its error in place', async () => {
  const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>';
  const r = sampleReport({
    input: evil,
    outputs: [evil],
    missing: [evil],
    tensors: [
      { name: evil, outputName: evil + '2', dtype: 'BF16', shape: [64, 128], action: 'quantized', scheme: 'q8_0', bytesBefore: 1, bytesAfter: 1, snrDb: Infinity },
      { name: evil, dtype: 'BF16', shape: [3], action: 'kept', reason: evil, bytesBefore: 1, bytesAfter: 1 },
    ],
  });
  const page = await pages.openPage('quantReport', { report: { body: { type: 'report', report: r } }, openMarkdown: { ok: false, error: { code: 'internal', message: 'no markdown preview' } } });
  await page.waitForSelector('#quant-report');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing from the report ran');
  assert.equal(await page.$$eval('#quant-report img, #quant-report script', (e) => e.length), 0);
  assert.equal(await page.textContent('#quant-skipped tbody td:nth-child(4)'), evil);
  assert.equal(await page.textContent('#quant-tensors tbody td:nth-child(5)'), '∞');
  await page.click('#open-markdown');
  await page.waitForFunction(() => document.getElementById('open-markdown-status').textContent.includes('no markdown preview'));
  assert.deepEqual(await violations(page), []);
  await page.close();

  const failed = await pages.openPage('quantReport', { report: { ok: false, error: { code: 'internal', message: 'the report is gone' } } });
  await failed.waitForSelector('#report-error');
  assert.equal(await failed.textContent('#report-error'), 'error[internal] the report is gone');
  await failed.close();
});

test('a file type\u2019s report: its name in the title, a type column per tensor, the total bits per weight', async () => {
  const r = sampleReport({
    scheme: 'q4_k',
    fileType: 'Q4_K_M',
    format: 'gguf',
    totals: { bytesBefore: 3 * 2 ** 20, bytesAfter: 0.9 * 2 ** 20, params: 1 << 20, quantizedParams: 1 << 20, bitsPerWeight: 4.87, quantizedBitsPerWeight: 4.83, rmse: 0.0121, maxAbsErr: 0.071, snrDb: 21.3, cosine: 0.9963 },
    tensors: [
      { name: 'blk.0.attn_q.weight', outputName: 'blk.0.attn_q.weight', dtype: 'BF16', shape: [256, 256], action: 'quantized', scheme: 'q4_k', bytesBefore: 131072, bytesAfter: 36864, rmse: 0.0125, maxAbsErr: 0.07, snrDb: 21.0, cosine: 0.9961 },
      { name: 'blk.0.attn_v.weight', outputName: 'blk.0.attn_v.weight', dtype: 'BF16', shape: [64, 256], action: 'quantized', scheme: 'q6_k', bytesBefore: 32768, bytesAfter: 13440, rmse: 0.0031, maxAbsErr: 0.012, snrDb: 33.1, cosine: 0.99976 },
      { name: 'blk.0.attn_norm.weight', outputName: 'blk.0.attn_norm.weight', dtype: 'F32', shape: [256], action: 'kept', reason: 'F32, not quantized', bytesBefore: 1024, bytesAfter: 1024 },
    ],
  });
  const page = await pages.openPage('quantReport', { report: { body: { type: 'report', report: r } }, openMarkdown: { body: { type: 'done' } } }, { width: 1100, height: 520 });
  await page.waitForSelector('#quant-report');
  assert.equal(await page.textContent('h1'), 'Quantization report: Q4_K_M (gguf)');
  const head = await page.$$eval('#quant-tensors thead th', (e) => e.map((x: any) => x.textContent));
  assert.deepEqual(head, ['tensor', 'dtype [shape]', 'type', 'RMSE', 'max |err|', 'SNR dB', 'cosine', 'size']);
  const rows = await page.$$eval('#quant-tensors tbody tr', (e) => e.map((x) => Array.from(x.querySelectorAll('td'), (td: any) => td.textContent)));
  assert.deepEqual(rows.map((x) => x.slice(0, 4)), [['blk.0.attn_q.weight', 'BF16 [256, 256]', 'q4_k', '0.012500'], ['blk.0.attn_v.weight', 'BF16 [64, 256]', 'q6_k', '0.003100']]);
  assert.ok(((await page.textContent('#quant-totals')) ?? '').includes('4.87 overall'));
  assert.deepEqual(await violations(page), []);
  assert.deepEqual(pageErrors(page), []);
  await page.close();
});
