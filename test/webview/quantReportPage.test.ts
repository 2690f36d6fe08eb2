/**
 * The quantization report panel's page in headless Chromium, under its own CSP:
 * it renders the totals and both tables with theme colours, breaks no policy, and
 * its one button sends the one message the host handles.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { ARTIFACTS, THEMES, applyTheme, launch } from './harness';
import { quantReportHtml } from '../../src/vscode/quantReportHtml';
import { sampleReport } from '../quant/quantReportFixture';

// The callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, getComputedStyle: any, window: any;

let browser: Browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

const STUB = `(() => {
  const host = { sent: [], violations: [] };
  window.__host = host;
  document.addEventListener('securitypolicyviolation', (e) => host.violations.push(e.violatedDirective + ' ' + (e.sample || '')));
  window.acquireVsCodeApi = () => ({ postMessage(m) { host.sent.push(m); }, getState() {}, setState() {} });
})();`;

test('the report page: totals, per-tensor errors, skipped tensors with reasons, theme colours, no CSP violations, and the Markdown button', async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 520 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript({ content: STUB });
  await applyTheme(page, 'vscode-dark', false);
  const r = sampleReport({ missing: ['tokenizer (out of scope)'] });
  // Served from a URL, as a webview is loaded, so the init scripts (host stub, theme) run first.
  const html = quantReportHtml(r, { nonce: 'testNonce0123456789abcdefABCDEF0', title: 'Quantization report' });
  await page.route('http://report.test/', (route) => route.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.goto('http://report.test/');
  await page.waitForSelector('#quant-report');
  const totals = (await page.textContent('#quant-totals')) ?? '';
  for (const part of ['3.0 MiB → 1.6 MiB', '8.53 overall', 'SNR 41.3 dB', 'tokenizer (out of scope)']) assert.ok(totals.includes(part), `${part} in ${totals}`);
  const rows = await page.$$eval('#quant-tensors tbody tr', (e) => e.map((x) => Array.from(x.querySelectorAll('td'), (td: any) => td.textContent)));
  assert.deepEqual(rows, [['model.layers.0.self_attn.q_proj.weight', 'BF16 [64, 128]', '0.001200', '0.006900', '41.3', '0.999960', '16.0 KiB → 8.5 KiB']]);
  const skipped = await page.$$eval('#quant-skipped tbody tr', (e) => e.map((x) => Array.from(x.querySelectorAll('td'), (td: any) => td.textContent)));
  assert.deepEqual(skipped, [['model.norm.weight', 'BF16 [128]', 'kept', 'norm or bias']]);
  const colour = await page.evaluate(() => getComputedStyle(document.body).color);
  assert.equal(colour, 'rgb(204, 204, 204)', `body colour from --vscode-foreground (${THEMES['vscode-dark']['--vscode-foreground']})`);
  await page.screenshot({ path: join(ARTIFACTS, 'quant-report.png') });
  await page.click('#open-markdown');
  assert.deepEqual(await page.evaluate(() => window.__host.sent as unknown[]), [{ type: 'openMarkdown' }]);
  assert.deepEqual(await page.evaluate(() => window.__host.violations as string[]), [], 'no CSP violations');
  assert.deepEqual(errors, []);
  await page.close();
});
