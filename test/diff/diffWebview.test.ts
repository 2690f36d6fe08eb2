import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { diff, type DiffReport } from '../../src/pipelines/diff';
import { webviewHtml } from '../../src/vscode/webviewHtml';
import { disposeBackends } from '../../src/compute/backend';
import { normals, openFile, rng, TempDir, writeModel, type TestTensor } from './diffFixtures';

// Callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, window: any;

/** Bundles are flat in dist/, so the webview build is beside this test file. */
const WEBVIEW_DIR = join(__dirname, 'webview');
const NONCE = 'diffNonce0123456789abcdefABCDEF0';
const MIME: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

/** The host side, scripted: records what the page sends and whether CSP blocked anything. */
const MOCK_HOST = `(() => {
  const state = { sent: [], violations: [], saved: undefined };
  window.__host = state;
  window.acquireVsCodeApi = () => ({
    postMessage: (m) => state.sent.push(JSON.parse(JSON.stringify(m))),
    getState: () => state.saved,
    setState: (s) => { state.saved = s; },
  });
  document.addEventListener('securitypolicyviolation', (e) => state.violations.push(e.violatedDirective + ' ' + e.blockedURI));
})();`;

/** A real report: three layers, the upper two changed (one by a rank-2 Δ), one tensor added, one reshaped. */
async function makeReport(dir: TempDir): Promise<DiffReport> {
  const r = rng(4);
  const ta: TestTensor[] = [];
  const tb: TestTensor[] = [];
  for (let l = 0; l < 3; l++) {
    const name = `model.layers.${l}.self_attn.q_proj.weight`;
    const va = normals(24 * 20, r);
    const u = normals(48, r);
    const v = normals(40, r);
    const vb = l === 0 ? va : Float64Array.from(va, (x, i) => x + (l === 2 ? 0.3 : 0.05) * (u[Math.floor(i / 20)] * v[i % 20] + u[24 + Math.floor(i / 20)] * v[20 + (i % 20)]));
    ta.push({ name, dtype: 'F32', shape: [24, 20], values: va });
    tb.push({ name, dtype: 'F32', shape: [24, 20], values: vb });
  }
  ta.push({ name: 'model.norm.weight', dtype: 'F32', shape: [20], values: normals(20, r) });
  tb.push({ name: 'model.norm.weight', dtype: 'F32', shape: [4, 5], values: normals(20, r) });
  tb.push({ name: 'model.extra.weight', dtype: 'F32', shape: [3], values: [1, 2, 3] });
  const a = await openFile(await writeModel(dir.file('a.safetensors'), ta));
  const b = await openFile(await writeModel(dir.file('b.safetensors'), tb));
  try {
    return await diff(a, b, { backend: 'cpu', rank: true });
  } finally {
    await a.close();
    await b.close();
    await disposeBackends();
  }
}

describe('diff report webview (Chromium)', () => {
  let server: Server;
  let origin: string;
  let browser: Browser;
  let page: Page;
  let report: DiffReport;
  const dir = new TempDir();

  before(async () => {
    report = await makeReport(dir);
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/index.html') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(webviewHtml({ scriptUri: `${origin}/diff.js`, styleUri: `${origin}/diff.css`, plotlyUri: `${origin}/plotly.js`, cspSource: origin, nonce: NONCE, title: 'diff' }));
        return;
      }
      readFile(join(WEBVIEW_DIR, url.pathname.slice(1)))
        .then((b) => {
          res.writeHead(200, { 'content-type': MIME[extname(url.pathname)] ?? 'application/octet-stream' });
          res.end(b);
        })
        .catch(() => {
          res.writeHead(404);
          res.end();
        });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', chromiumSandbox: false, args: ['--disable-gpu', '--no-first-run'] });
    page = await browser.newPage();
    await page.addInitScript({ content: MOCK_HOST });
    await page.goto(`${origin}/index.html`);
    await page.waitForFunction(() => window.__host.sent.some((m: any) => m.type === 'ready'));
    await page.evaluate((r: unknown) => window.postMessage({ type: 'report', report: r, rankPending: false }, '*'), JSON.parse(JSON.stringify(report)));
    await page.waitForSelector('#tensors tbody tr');
  });

  after(async () => {
    await browser?.close();
    await new Promise<void>((r) => server?.close(() => r()));
    dir.dispose();
  });

  const rowNames = () => page.$$eval('#tensors tbody tr', (rows: any[]) => rows.map((r) => r.dataset.name));

  it('lists changed tensors first, by relL2, and hides identical ones by default', async () => {
    const changed = report.tensors.filter((t) => !t.identical).sort((x, y) => (y.relL2 ?? 0) - (x.relL2 ?? 0));
    assert.deepEqual(await rowNames(), changed.map((t) => t.name));
    assert.equal(changed[0].name, 'model.layers.2.self_attn.q_proj.weight');
    await page.click('#changed-only');
    assert.deepEqual(await rowNames(), [...changed.map((t) => t.name), 'model.layers.0.self_attn.q_proj.weight']);
    await page.click('#changed-only');
  });

  it('filters by name and sorts by a clicked column', async () => {
    await page.fill('#filter', 'layers.1');
    assert.deepEqual(await rowNames(), ['model.layers.1.self_attn.q_proj.weight']);
    await page.fill('#filter', '');
    await page.click('th[data-key="relL2"]');
    const asc = await rowNames();
    await page.click('th[data-key="relL2"]');
    assert.deepEqual(await rowNames(), [...asc].reverse());
  });

  it('draws the per-layer chart and the rank-energy curve of the selected tensor', async () => {
    await page.waitForSelector('#layers[data-drawn="3"]');
    await page.click('#tensors tr[data-name="model.layers.1.self_attn.q_proj.weight"]');
    const t = report.tensors.find((x) => x.name === 'model.layers.1.self_attn.q_proj.weight')!;
    await page.waitForSelector(`#energy[data-drawn="${t.singularValues!.length}"]`);
    // A rank-2 change: the energy table cell shows all of it by rank 4.
    const cell = await page.$eval('#tensors tr[data-name="model.layers.1.self_attn.q_proj.weight"] td:last-child', (td: any) => td.textContent);
    assert.match(cell, /^\d+% \/ 100% \/ 100% \/ 100%$/);
  });

  it('asks the host for the Δ histogram of the selected tensor and draws the reply', async () => {
    const req = await page.waitForFunction(() => window.__host.sent.filter((m: any) => m.type === 'request' && m.body.type === 'histogram').pop());
    const { id, body: m } = (await req.jsonValue()) as { id: number; body: { name: string; bins: number } };
    assert.equal(m.name, 'model.layers.1.self_attn.q_proj.weight');
    assert.ok(m.bins > 0);
    await page.evaluate((x: any) => window.postMessage({ type: 'reply', id: x.id, ok: true, body: { type: 'histogram', name: x.name, lo: -1, hi: 1, counts: new Uint32Array(x.bins).fill(3) } }, '*'), { id, ...m });
    await page.waitForSelector(`#histogram[data-drawn="${m.bins}"]`);
  });

  it('aborts the Δ histogram of the previous selection, and shows a failed one’s error in its place', async () => {
    const histogramRequests = () => page.evaluate(() => window.__host.sent.filter((m: any) => m.type === 'request' && m.body.type === 'histogram'));
    const before = (await histogramRequests()).length;
    await page.click('#tensors tr[data-name="model.layers.2.self_attn.q_proj.weight"]');
    await page.click('#tensors tr[data-name="model.layers.1.self_attn.q_proj.weight"]');
    const reqs = await histogramRequests();
    assert.equal(reqs.length, before + 2);
    const [first, second] = reqs.slice(before) as { id: number; body: { name: string } }[];
    assert.equal(first!.body.name, 'model.layers.2.self_attn.q_proj.weight');
    assert.ok(await page.evaluate((id: number) => window.__host.sent.some((m: any) => m.type === 'abort' && m.id === id), first!.id), 'the first request was aborted');
    await page.evaluate((id: number) => window.postMessage({ type: 'reply', id, ok: false, error: { code: 'not_found', message: 'no tensor in both models' } }, '*'), second!.id);
    await page.waitForSelector('#histogram .error');
    assert.equal(await page.$eval('#histogram .error', (e: any) => e.textContent), 'error[not_found] no tensor in both models');
  });

  it('lists added and reshaped tensors and exports on request, with no CSP violation', async () => {
    assert.match(await page.$eval('#added', (d: any) => d.textContent), /model\.extra\.weight/);
    assert.match(await page.$eval('#shape-or-dtype-changed', (d: any) => d.textContent), /model\.norm\.weight: F32 \[20\] → F32 \[4, 5\]/);
    await page.click('#export-markdown');
    await page.click('#export-json');
    const sent = await page.evaluate(() => window.__host.sent.filter((m: any) => m.type === 'request' && m.body.type === 'export').map((m: any) => m.body.format));
    assert.deepEqual(sent, ['markdown', 'json']);
    assert.deepEqual(await page.evaluate(() => window.__host.violations), []);
  });
});
