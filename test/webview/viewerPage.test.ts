/**
 * The viewer page in headless Chromium, under its real CSP, driven by a scripted
 * host (see harness.ts). What it checks: the tree renders and folds, a selected
 * tensor shows its stats, a histogram with one bar per bin and a heatmap, the scan
 * table streams, sorts and links into the tree, the error page renders, theme
 * variables apply, and nothing the page does violates the CSP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { ARTIFACTS, applyTheme, postToPage, sent, setReplies, type ReplyTable } from './harness';
import { pageSuite, viewerReplies, assertClean } from './pageSuite';
import { BINS, LOG_BINS, llamaSummary, scanRows } from './fixtures';
import { tensorEntries, tensorTable, treeFromTable, treeTable, type RequestEventMessage, type RequestMessage, type SummaryReplyMessage, type TreeNodeData } from '../../src/shared/protocol';
import { openModel } from '../../src/format/openModel';
import { disposeBackends } from '../../src/compute/backend';
import { ModelService } from '../../src/pipelines/viewer/modelService';
import { bf16Values, writeSafetensors, type T } from './safetensorsFile';

// The callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, getComputedStyle: any, DOMMatrix: any, performance: { now(): number; getEntriesByName(n: string): unknown[] }, requestAnimationFrame: any, Event: any;

const pages = pageSuite(disposeBackends);

const replies = (s: SummaryReplyMessage): ReplyTable => viewerReplies(s, 40);

async function rowLabels(page: Page): Promise<string[]> {
  return page.$$eval('#tree .tree-row:not([hidden])', (els) =>
    els
      .map((e) => ({ y: new DOMMatrix(getComputedStyle(e).transform).m42, text: `${'  '.repeat(Number(e.getAttribute('aria-level')) - 1)}${e.querySelector('.label')!.textContent}` }))
      .sort((a, b) => a.y - b.y)
      .map((e) => e.text),
  );
}

async function clickRow(page: Page, id: string): Promise<void> {
  await page.click(`#tree .tree-row[data-id="${id}"]`);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

test('the tree renders folded runs, and expanding and collapsing them works', async () => {
  const s = llamaSummary(4);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  assert.deepEqual(await rowLabels(page), ['model', 'lm_head', 'extra']);
  assert.match((await page.textContent('#total-params')) ?? '', /params/);
  const memHead = await page.$$eval('#memory-table th', (e) => e.map((x) => x.textContent));
  assert.deepEqual(memHead, ['memory at', 'FP32', 'BF16', 'FP8', 'Q8_0', 'Q4_0']);

  await clickRow(page, 'model');
  assert.deepEqual(await rowLabels(page), ['model', '  embed_tokens', '  layers ×4', '  norm', 'lm_head', 'extra']);
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.{0..3}"]', 'aria-expanded'), 'false');

  await clickRow(page, 'model.layers.{0..3}');
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.{0..3}"]', 'aria-expanded'), 'true');
  assert.deepEqual((await rowLabels(page)).slice(2, 7), ['  layers ×4', '    0', '    1', '    2', '    3']);
  await clickRow(page, 'model.layers.2');
  assert.deepEqual((await rowLabels(page)).slice(5, 10), ['    2', '      self_attn', '      mlp', '      input_layernorm', '      post_attention_layernorm']);
  await shot(page, 'tree-expanded');

  // Collapsing the run hides its blocks but remembers that block 2 was open.
  await clickRow(page, 'model.layers.{0..3}');
  assert.deepEqual(await rowLabels(page), ['model', '  embed_tokens', '  layers ×4', '  norm', 'lm_head', 'extra']);
  await clickRow(page, 'model.layers.{0..3}');
  assert.ok((await rowLabels(page)).includes('      self_attn'));

  // Keyboard: ArrowLeft on an open node collapses it.
  await page.focus('#tree');
  await clickRow(page, 'model.layers.{0..3}');
  await clickRow(page, 'model.layers.{0..3}');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.{0..3}"]', 'aria-expanded'), 'false');

  // The metadata table shows values as text, never as markup.
  assert.equal(await page.$$eval('#metadata-table b', (e) => e.length), 0);
  assert.ok((await page.textContent('#metadata-table'))!.includes('<b>not markup</b>'));
  await assertClean(page);
  await page.close();
});

test('the tree and the statistics never wait for Plotly: it loads after the tree is painted', async () => {
  const s = llamaSummary(4);
  const t = tensorEntries(s.tensors).find((x) => x.shape.length === 2)!;
  // plotly.js is held back until the test lets it through.
  let release: (() => Promise<void>) | undefined;
  const requested = new Promise<void>((resolve) => {
    void pages.openViewer(replies(s), {
      beforeLoad: (p) =>
        p.route('**/plotly.js', (route) => {
          release = () => route.continue();
          resolve();
        }),
    }).then((p) => (page = p));
  });
  let page: Page | undefined;
  await requested;
  while (!page) await new Promise((r) => setTimeout(r, 20));
  await page.waitForSelector('#tree .tree-row');
  // The request for Plotly came after the tree was on screen.
  const painted = await page.evaluate(() => performance.getEntriesByName('tw:tree-painted').length);
  assert.equal(painted, 1);
  await page.fill('#filter >> input', t.name);
  await clickRow(page, t.name);
  await page.waitForSelector('#stat-max');
  assert.equal(await page.getAttribute('#histogram', 'data-drawn'), null, 'no chart before Plotly arrives');
  await release!();
  await page.waitForSelector('#histogram[data-drawn]');
  assert.equal(await page.$$eval('#histogram .barlayer .point', (e) => e.length), BINS);
  await assertClean(page);
  await page.close();
});

test('a chart whose script cannot load says so in its place; the numbers still show', async () => {
  const s = llamaSummary(2);
  const t = tensorEntries(s.tensors).find((x) => x.shape.length === 2)!;
  const page = await pages.openViewer(replies(s), { beforeLoad: (p) => p.route('**/plotly.js', (route) => route.abort()) });
  await page.waitForSelector('#tree .tree-row');
  await page.fill('#filter >> input', t.name);
  await clickRow(page, t.name);
  await page.waitForSelector('#histogram.chart-error');
  assert.match((await page.textContent('#histogram')) ?? '', /could not be drawn: could not load .*plotly\.js/);
  assert.ok(Number((await page.textContent('#stat-count'))?.replace(/,/g, '')) > 0, 'the statistics are shown');
  await page.close();
});

/** The outline of a whole summary, as the host builds it: run members keep their rows, not their contents. */
function outlineOf(s: SummaryReplyMessage): SummaryReplyMessage {
  const ents = tensorEntries(s.tensors);
  const shown: typeof ents = [];
  const cut = (n: TreeNodeData, inRun: boolean): TreeNodeData => {
    const { children, tensor, ...rest } = n;
    if (tensor !== undefined) return { ...rest, tensor: shown.push(ents[tensor]!) - 1 };
    if (inRun) return rest;
    return children ? { ...rest, children: children.map((c) => cut(c, n.kind === 'run')) } : rest;
  };
  const root = cut(treeFromTable(s.tree, ents), false);
  return { ...s, outline: true, tensors: tensorTable(shown), tree: treeTable(root) };
}

test('the outline paints first; the whole summary then replaces it, keeping what was opened and typed', async () => {
  const whole = llamaSummary(4);
  const page = await pages.openViewer({ ...replies(whole), 'summary:outline': { body: outlineOf(whole) }, summary: { body: whole, delayMs: 1500 } });
  await page.waitForSelector('#root[data-summary="outline"] #tree .tree-row');
  await clickRow(page, 'model');
  await clickRow(page, 'model.layers.{0..3}');
  // The run's members are listed, closed and not yet expandable.
  assert.deepEqual((await rowLabels(page)).slice(2, 7), ['  layers ×4', '    0', '    1', '    2', '    3']);
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.1"]', 'aria-expanded'), null);
  await page.fill('#filter >> input', 'layer');
  await page.waitForSelector('#root[data-summary="whole"]');
  // The new field has the focus and the caret: the next keystroke goes on where the user was.
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'filter');
  await page.keyboard.type('s');
  assert.equal(await page.inputValue('#filter >> input'), 'layers');
  await page.fill('#filter >> input', '');
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.{0..3}"]', 'aria-expanded'), 'true');
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.1"]', 'aria-expanded'), 'false');
  await clickRow(page, 'model.layers.1');
  assert.ok((await rowLabels(page)).includes('      self_attn'));
  const asked = (await sent(page)).filter((m) => m.type === 'request' && m.body.type === 'summary').map((m) => (m.type === 'request' && m.body.type === 'summary' ? !!m.body.outline : null));
  assert.deepEqual(asked, [true, false]);
  await assertClean(page);
  await page.close();
});

test('the filter accepts a substring or a /regex/ and opens matching subtrees', async () => {
  const s = llamaSummary(4);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  await page.fill('#filter >> input', 'down_proj');
  await page.waitForFunction(() => document.querySelector('#filter-note')!.textContent!.startsWith('4 of'));
  const labels = await rowLabels(page);
  assert.equal(labels.filter((l) => l.trim() === 'down_proj').length, 4);
  assert.ok(!labels.some((l) => l.trim() === 'q_proj'));

  await page.fill('#filter >> input', '/layers\\.[13]\\.self_attn\\.(q|k)_proj/');
  await page.waitForFunction(() => document.querySelector('#filter-note')!.textContent!.startsWith('4 of'));
  await page.fill('#filter >> input', '/[unclosed/');
  await page.waitForFunction(() => document.querySelector('#filter-note')!.classList.contains('invalid'));
  await page.fill('#filter >> input', '');
  assert.deepEqual(await rowLabels(page), ['model', 'lm_head', 'extra']);
  await assertClean(page);
  await page.close();
});

test('selecting a tensor shows its stats, a histogram with one bar per bin, top-k as (row, col) and a heatmap', async () => {
  const s = llamaSummary(2);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  await clickRow(page, 'model');
  await clickRow(page, 'model.embed_tokens');
  await clickRow(page, 'model.embed_tokens.weight');
  await page.waitForSelector('#histogram[data-drawn]');
  assert.equal(await page.textContent('#info-dtype'), 'BF16');
  assert.equal(await page.textContent('#info-shape'), '[256, 64]');
  assert.equal(await page.textContent('#stat-std'), '0.0213000');
  assert.equal(await page.textContent('#stat-nan'), '1');
  assert.equal(await page.textContent('#stat-sparsity'), `${((7 / (256 * 64)) * 100).toFixed(2)}%`);
  assert.equal(await page.$$eval('#histogram .barlayer .point', (e) => e.length), BINS);
  // Top-k index 1234 in a 256×64 matrix is row 19, column 18.
  assert.ok((await page.textContent('#topk-table'))!.includes('(19, 18)'));
  // Badges: non-finite values and |x| above F16's 65504.
  assert.deepEqual(await page.$$eval('#stats .badges vscode-badge', (e) => e.map((x) => x.getAttribute('data-badge'))), ['non-finite', 'f16-overflow']);

  // The log-magnitude switch redraws with the log histogram's bins.
  await page.click('#hist-magnitude');
  await page.waitForFunction((n) => document.querySelectorAll('#histogram .barlayer .point').length === n, LOG_BINS);
  await page.click('#hist-log-counts');
  await page.waitForFunction(() => document.querySelector('#histogram')!.dataset.mode === 'magnitude-log');
  assert.ok(await page.$('#histogram .yaxislayer-above .ytick'));

  await page.waitForSelector('#heatmap');
  const px = await page.$eval('#heatmap', (c: any) => {
    const ctx = c.getContext('2d')!;
    return { size: [c.width, c.height], bad: Array.from(ctx.getImageData(1, 0, 1, 1).data), low: Array.from(ctx.getImageData(0, 0, 1, 1).data), high: Array.from(ctx.getImageData(5, 3, 1, 1).data) };
  });
  assert.deepEqual(px.size, [6, 4]);
  assert.deepEqual(px.bad, [255, 0, 255, 255], 'non-finite cell in magenta');
  assert.deepEqual(px.low, [68, 1, 84, 255], 'pixel 0 at the dark end of the map');
  assert.deepEqual(px.high, [253, 231, 37, 255], 'pixel 255 at the bright end');
  await shot(page, 'tensor-selected-dark');

  // Exactly one stats and one heatmap request for this tensor, in that order.
  const reqs = (await sent(page)).filter((m): m is RequestMessage => m.type === 'request').map((m) => m.body.type);
  assert.deepEqual(reqs, ['summary', 'tensorStats', 'heatmap']);
  await assertClean(page);
  await page.close();
});

test('an undecodable dtype shows its metadata and asks for no statistics', async () => {
  const s = llamaSummary(1);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  await clickRow(page, 'extra');
  await clickRow(page, 'extra.scales');
  await page.waitForSelector('#not-decodable');
  assert.equal(await page.textContent('#info-dtype'), 'F8_E8M0');
  assert.ok(!(await sent(page)).some((m) => m.type === 'request' && m.body.type === 'tensorStats'));
  await assertClean(page);
  await page.close();
});

test('a failed stats request shows its error inline', async () => {
  const s = llamaSummary(1);
  const r = replies(s);
  r['tensorStats:lm_head.weight'] = { ok: false, error: { code: 'file_changed', message: "/m.safetensors: tensor 'lm_head.weight': the file changed on disk" } };
  const page = await pages.openViewer(r);
  await page.waitForSelector('#tree .tree-row');
  await clickRow(page, 'lm_head');
  await clickRow(page, 'lm_head.weight');
  await page.waitForSelector('#stats .inline-error');
  assert.match((await page.textContent('#stats .inline-error'))!, /error\[file_changed\].*lm_head\.weight/);
  await page.close();
});

test('an invalid file shows the error page with its code, message and a reopen button', async () => {
  const message = "/data/bad.safetensors: tensor 'w': the last tensor ends past the end of the file";
  const page = await pages.openViewer({
    summary: { ok: false, error: { code: 'truncated', message, file: '/data/bad.safetensors', tensor: 'w' } },
    reopenWithDefault: { body: { type: 'done' } },
  });
  await page.waitForSelector('#error-page');
  assert.equal(await page.textContent('#error-code'), 'error[truncated]');
  assert.equal(await page.textContent('#error-message'), message);
  await page.click('#reopen-default');
  await page.waitForFunction(() => (globalThis as any).__host.sent.some((m: { body?: { type: string } }) => m.body?.type === 'reopenWithDefault'));
  await shot(page, 'error-page');
  await assertClean(page);
  await page.close();
});

test('scan streams rows with progress, sorts, badges, links into the tree; cancel sends an abort', async () => {
  const s = llamaSummary(3);
  const rows = scanRows(s);
  const r = replies(s);
  const total = s.totals.bytes;
  r.scan = {
    events: [
      { type: 'progress', done: 0, total, unit: 'bytes' },
      { type: 'scanRows', rows: rows.slice(0, 10) },
      { type: 'progress', done: total / 2, total, unit: 'bytes' },
      { type: 'scanRows', rows: rows.slice(10) },
      { type: 'progress', done: total, total, unit: 'bytes' },
    ],
    eventDelayMs: 5,
    body: { type: 'scan', tensors: rows.length, seconds: 0.5, backend: 'cpu' },
  };
  const page = await pages.openViewer(r);
  await page.waitForSelector('#tree .tree-row');
  await page.click('#scan-model');
  await page.waitForFunction(() => document.querySelector('#scan-status')?.textContent?.startsWith('Scanned'));
  assert.equal(await page.$$eval('#scan-table tbody tr', (e) => e.length), rows.length);
  // Default sort: absMax, descending; tensor 3 has |x| = 1e6.
  assert.equal(await page.$eval('#scan-table tbody tr .tensor-link', (e) => e.textContent), rows[3]!.name);
  assert.deepEqual(await page.$$eval('#scan-table [data-badge]', (e) => e.map((x) => x.getAttribute('data-badge')).sort()), ['all-zero', 'f16-overflow', 'non-finite']);
  await page.click('#scan-table button[data-sort="nonFinite"]');
  assert.equal(await page.$eval('#scan-table tbody tr .tensor-link', (e) => e.textContent), rows[2]!.name);
  await page.click('#scan-table button[data-sort="sparsity"]');
  assert.equal(await page.$eval('#scan-table tbody tr .tensor-link', (e) => e.textContent), rows[5]!.name);
  // The undecodable tensor's row shows its error instead of numbers.
  assert.ok((await page.textContent('#scan-table'))!.includes('error[unsupported]'));
  await shot(page, 'scan-table');

  // A row is a link into the tree: it opens the ancestors and selects the tensor.
  await page.click(`#scan-table .tensor-link[data-tensor="${rows[5]!.name}"]`);
  await page.waitForSelector(`#tree .tree-row.selected[data-id="${rows[5]!.name}"]`);
  assert.equal(await page.textContent('#selected-name'), rows[5]!.name);

  // A scan that does not finish can be cancelled: the page sends an abort for its id.
  await setReplies(page, { ...r, scan: { events: [{ type: 'progress', done: 1, total, unit: 'bytes' }], hold: true } });
  await page.click('#scan-model');
  await page.waitForSelector('#scan-cancel');
  await page.waitForFunction(() => document.querySelector('#scan-status')?.textContent?.includes(' of '));
  await page.click('#scan-cancel');
  await page.waitForFunction(() => document.querySelector('#scan-status')?.textContent?.startsWith('Cancelled'));
  const msgs = await sent(page);
  const scanIds = msgs.filter((m): m is RequestMessage => m.type === 'request' && m.body.type === 'scan').map((m) => m.id);
  assert.ok(msgs.some((m) => m.type === 'abort' && m.id === scanIds[1]));
  await assertClean(page);
  await page.close();
});

test('a file changed on disk drops every result and reads the summary again', async () => {
  const s = llamaSummary(2);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  await clickRow(page, 'lm_head');
  await clickRow(page, 'lm_head.weight');
  await page.waitForSelector('#histogram[data-drawn]');
  const changed = llamaSummary(3);
  await setReplies(page, replies(changed));
  await postToPage(page, { type: 'fileChanged', deleted: false });
  await page.waitForFunction((n) => document.querySelector('#totals')?.textContent?.includes(`${n} tensors`), changed.totals.tensors);
  const msgs = await sent(page);
  assert.equal(msgs.filter((m) => m.type === 'request' && m.body.type === 'summary').length, 2);
  // Selection survives (by path); its numbers were requested again, not reused.
  await page.waitForSelector('#tree .tree-row.selected[data-id="lm_head.weight"]');
  await page.waitForSelector('#histogram[data-drawn]');
  assert.equal(msgs.filter((m) => m.type === 'request' && m.body.type === 'tensorStats').length, 2);
  await page.close();
});

test('theme variables apply: light, dark and high contrast change the computed colours', async () => {
  const s = llamaSummary(2);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  await clickRow(page, 'lm_head');
  await clickRow(page, 'lm_head.weight');
  await page.waitForSelector('#histogram[data-drawn]');
  const sample = () =>
    page.evaluate(() => ({
      body: getComputedStyle(document.body).color,
      bg: getComputedStyle(document.body).backgroundColor,
      selected: getComputedStyle(document.querySelector('#tree .tree-row.selected')!).backgroundColor,
      bar: getComputedStyle(document.querySelector('#histogram .barlayer .point path')!).fill,
      button: getComputedStyle(document.querySelector('#scan-model')!).getPropertyValue('color'),
    }));
  const seen: Record<string, Awaited<ReturnType<typeof sample>>> = {};
  for (const kind of ['vscode-light', 'vscode-dark', 'vscode-high-contrast'] as const) {
    await applyTheme(page, kind);
    await page.waitForTimeout(50);
    seen[kind] = await sample();
    await shot(page, `theme-${kind}`);
  }
  assert.equal(seen['vscode-light']!.bg, 'rgb(255, 255, 255)');
  assert.equal(seen['vscode-dark']!.bg, 'rgb(30, 30, 30)');
  assert.equal(seen['vscode-high-contrast']!.bg, 'rgb(0, 0, 0)');
  assert.equal(seen['vscode-light']!.body, 'rgb(97, 97, 97)');
  assert.equal(seen['vscode-dark']!.body, 'rgb(204, 204, 204)');
  assert.equal(seen['vscode-dark']!.selected, 'rgb(4, 57, 94)');
  assert.equal(seen['vscode-light']!.selected, 'rgb(0, 96, 192)');
  // The plot re-reads the theme: light's bar colour differs from dark's.
  assert.equal(seen['vscode-light']!.bar, 'rgb(26, 133, 255)');
  assert.equal(seen['vscode-dark']!.bar, 'rgb(55, 148, 255)');
  await assertClean(page);
  await page.close();
});

test('measure: 50,000 tensors render, expand and filter (figures in .artifacts/webview/metrics.json)', async () => {
  const blocks = 5555; // 9 tensors per block + 4 others: 49,999 tensors
  const s = llamaSummary(blocks);
  const page = await pages.openViewer({ summary: { body: s } });
  const t0 = Date.now();
  await page.waitForSelector('#tree .tree-row');
  const firstRender = Date.now() - t0;
  const m = await page.evaluate(async (blocks) => {
    const time = async (f: () => void) => {
      const a = performance.now();
      f();
      await new Promise((r) => requestAnimationFrame(() => r(0)));
      return performance.now() - a;
    };
    const row = (id: string) => document.querySelector(`#tree .tree-row[data-id="${id}"]`);
    const expandModel = await time(() => row('model').click());
    const expandRun = await time(() => row(`model.layers.{0..${blocks - 1}}`).click());
    const input = document.querySelector('#filter');
    const setFilter = (v: string) => {
      input.value = v;
      input.dispatchEvent(new Event('input'));
    };
    const filterSubstring = await time(() => setFilter('mlp.down_proj'));
    const matchesSubstring = document.querySelector('#filter-note')!.textContent;
    const filterRegex = await time(() => setFilter('/layers\\.\\d*7\\.self_attn\\.q_proj/'));
    const matchesRegex = document.querySelector('#filter-note')!.textContent;
    const filterAll = await time(() => setFilter('weight'));
    const tree = document.querySelector('#tree');
    const scrollToEnd = await time(() => {
      tree.scrollTop = tree.scrollHeight;
      tree.dispatchEvent(new Event('scroll'));
    });
    const domRows = document.querySelectorAll('#tree .tree-row').length;
    const clearFilter = await time(() => setFilter(''));
    // A reload as after a change on disk: request, reply (not cloned here), decode the columns, build and draw the tree.
    const r0 = performance.now();
    (globalThis as any).__host.post({ type: 'fileChanged', deleted: false });
    await new Promise((res) => {
      const poll = () => (document.querySelector('#tree .tree-row') ? res(0) : requestAnimationFrame(poll));
      poll();
    });
    const reloadToTreeMs = performance.now() - r0;
    const marks = Object.fromEntries(
      (performance as any)
        .getEntriesByType('measure')
        .filter((e: any) => e.name.startsWith('tw:'))
        .map((e: any) => [e.name, +e.duration.toFixed(1)]),
    );
    return {
      reloadToTreeMs,
      reloadBreakdownMs: marks, expandModel, expandRun, filterSubstring, matchesSubstring, filterRegex, matchesRegex, filterAll, scrollToEnd, domRows, clearFilter };
  }, blocks);
  const metrics = { tensors: s.totals.tensors, firstRenderMsIncludingPageLoad: firstRender, ...m };
  writeFileSync(join(ARTIFACTS, 'metrics.json'), JSON.stringify(metrics, null, 2));
  console.log('webview 50k metrics', metrics);
  // Not a timing assertion: virtualization must keep the DOM small whatever the row count.
  assert.ok(m.domRows < 200, `rows in the DOM: ${m.domRows}`);
  await shot(page, 'tree-50k-filtered-cleared');
  await assertClean(page);
  await page.close();
});

test('replays real host replies: a written model summarised, scanned and drawn by ModelService', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-page-'));
  const path = join(dir, 'real.safetensors');
  const tensors: T[] = [];
  for (let l = 0; l < 3; l++) tensors.push({ name: `model.layers.${l}.mlp.up.weight`, dtype: 'BF16', shape: [32, 48], values: bf16Values(32 * 48, l + 1) });
  const head = bf16Values(16 * 8, 9);
  head[5] = NaN;
  tensors.push({ name: 'lm_head.weight', dtype: 'F32', shape: [16, 8], values: head });
  tensors.push({ name: 'cplx', dtype: 'C64', shape: [2], values: new Float64Array(4) });
  writeSafetensors(path, tensors, { format: 'pt' });
  const model = await openModel(path);
  try {
    const svc = new ModelService(model, { backend: () => 'cpu' });
    const name = 'model.layers.1.mlp.up.weight';
    // The page asks for 128 bins and a 512 heatmap; record the host's answers to exactly that.
    const stats = await svc.tensorStats(name, 128);
    const heat = await svc.heatmap(name, 512);
    const rowsEvents: RequestEventMessage[] = [];
    const scanDone = await svc.scan(128, (e) => rowsEvents.push(e));
    const page = await pages.openViewer({
      summary: { body: svc.summary() },
      [`tensorStats:${name}`]: { body: stats },
      [`heatmap:${name}`]: { body: heat },
      scan: { events: rowsEvents, body: scanDone },
    });
    await page.waitForSelector('#tree .tree-row');
    for (const id of ['model', 'model.layers.{0..2}', 'model.layers.1', 'model.layers.1.mlp', 'model.layers.1.mlp.up', name]) await clickRow(page, id);
    await page.waitForSelector('#histogram[data-drawn]');
    await page.waitForSelector('#heatmap');
    const nonEmpty = Array.from(stats.stats.histogram.counts).filter((c) => c > 0).length;
    const bars = await page.$$eval('#histogram .barlayer .point', (e) => e.length);
    // Plotly draws a bar element per bin; empty bins have zero height.
    assert.equal(bars, stats.stats.histogram.counts.length, `bars (${nonEmpty} non-empty bins)`);
    assert.equal(await page.textContent('#stat-count'), (32 * 48).toLocaleString('en-US'));
    assert.deepEqual(await page.$eval('#heatmap', (c: any) => [c.width, c.height]), [48, 32]);
    await page.click('#scan-model');
    await page.waitForFunction(() => document.querySelector('#scan-status')?.textContent?.startsWith('Scanned'));
    assert.equal(await page.$$eval('#scan-table tbody tr', (e) => e.length), tensors.length);
    assert.deepEqual(await page.$$eval('#scan-table [data-badge]', (e) => e.map((x) => x.getAttribute('data-badge'))), ['non-finite']);
    await shot(page, 'real-host-replies');
    await assertClean(page);
    await page.close();
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an adapter shows its rank, alpha, scale and targets; the quantization preview shows a row per scheme', async () => {
  const s = { ...llamaSummary(1), adapter: { format: 'peft', modules: 24, targets: ['q_proj', 'v_proj'], ranks: [8], alphas: [16], scales: [2], useRslora: false, dora: false } };
  const r = replies(s);
  r.quantPreview = {
    body: {
      type: 'quantPreview',
      bytesBefore: 1 << 20,
      params: 1 << 19,
      sampleFraction: 0.01,
      seconds: 0.4,
      rows: [
        { scheme: 'q8_0', description: 'ggml Q8_0', bytesAfter: 557056, bitsPerWeight: 8.5, quantizedTensors: 7, keptTensors: 2, rmse: 0.0012, snrDb: 41.3, cosine: 0.99996 },
        { scheme: 'q4_0', description: 'ggml Q4_0', bytesAfter: 294912, bitsPerWeight: 4.5, quantizedTensors: 7, keptTensors: 2, rmse: 0.019, snrDb: 17.8, cosine: 0.9917 },
        { scheme: 'int8-channel', description: 'int8 per row', bytesAfter: 528384, bitsPerWeight: 8.06, quantizedTensors: 7, keptTensors: 2, rmse: 0.0016, snrDb: 38.9, cosine: 0.99993 },
        { scheme: 'q4_1', description: 'ggml Q4_1', bytesAfter: 327680, bitsPerWeight: 5, quantizedTensors: 7, keptTensors: 2 },
      ],
    },
  };
  const page = await pages.openViewer(r);
  await page.waitForSelector('#adapter-info');
  const text = (await page.textContent('#adapter-info')) ?? '';
  for (const part of ['LoRA adapter (peft)', 'rank 8 ·', 'alpha 16 ·', 'scale 2 ·', 'targets q_proj, v_proj']) assert.ok(text.includes(part), `${part} in ${text}`);
  await page.click('#quant-preview');
  await page.waitForSelector('#quant-table');
  const rows = await page.$$eval('#quant-table tbody tr', (e) => e.map((x) => Array.from(x.querySelectorAll('td'), (td: any) => td.textContent)));
  assert.deepEqual(rows.map((x) => x[0]), ['q8_0', 'q4_0', 'int8-channel', 'q4_1']);
  assert.equal(rows[0]![4], '41.3');
  assert.equal(rows[3]![3], '—', 'no estimate when nothing was sampled');
  // The chart: one labelled marker per scheme with an estimate (q4_1 has none), placed by bits/weight and SNR.
  await page.waitForSelector('#quant-chart[data-drawn]');
  assert.equal(await page.$$eval('#quant-chart .scatterlayer .point', (e) => e.length), 3);
  const labels = await page.$$eval('#quant-chart .scatterlayer .textpoint text', (e) => e.map((t) => t.textContent));
  assert.deepEqual(labels, ['q8_0', 'q4_0', 'int8-channel']);
  const xy = await page.$$eval('#quant-chart .scatterlayer .point', (e) =>
    e.map((p) => {
      const b = p.getBoundingClientRect();
      return { x: b.x, y: b.y };
    }),
  );
  assert.ok(xy[1]!.x < xy[2]!.x && xy[2]!.x < xy[0]!.x, 'x grows with bits per weight');
  assert.ok(xy[0]!.y < xy[2]!.y && xy[2]!.y < xy[1]!.y, 'higher SNR is higher up');
  const colours = await page.evaluate(() => {
    // The browser's own conversion of the theme's hex colour, to compare with Plotly's rgb().
    const probe = document.createElement('span');
    probe.style.color = getComputedStyle(document.body).getPropertyValue('--vscode-charts-blue').trim();
    document.body.append(probe);
    const theme = getComputedStyle(probe).color;
    probe.remove();
    return { marker: getComputedStyle(document.querySelector('#quant-chart .scatterlayer .point')!).fill, theme };
  });
  assert.equal(colours.marker, colours.theme, 'markers take --vscode-charts-blue');
  await page.locator('#quant-chart').scrollIntoViewIfNeeded();
  await shot(page, 'quant-preview-chart');
  await shot(page, 'adapter-and-quant-preview');
  await assertClean(page);
  await page.close();
});

test('state survives the panel being hidden: open nodes, selection and histogram mode come back from getState', async () => {
  const s = llamaSummary(3);
  const first = await pages.openViewer(replies(s));
  await first.waitForSelector('#tree .tree-row');
  await clickRow(first, 'model');
  await clickRow(first, 'model.layers.{0..2}');
  await clickRow(first, 'model.layers.1');
  await clickRow(first, 'model.layers.1.mlp');
  await clickRow(first, 'model.layers.1.mlp.up_proj');
  await clickRow(first, 'model.layers.1.mlp.up_proj.weight');
  await first.waitForSelector('#histogram[data-drawn]');
  await first.click('#hist-log-counts');
  await first.waitForFunction(() => document.querySelector('#histogram')?.dataset.drawn === 'value-log');
  const state = await first.evaluate(() => (globalThis as any).__host.state);
  await first.close();

  // A new page (VS Code recreates the webview when it is shown again) with only that state.
  const page = await pages.openViewer(replies(s), { state });
  await page.waitForSelector('#tree .tree-row.selected[data-id="model.layers.1.mlp.up_proj.weight"]');
  await page.waitForFunction(() => document.querySelector('#histogram')?.dataset.drawn === 'value-log');
  assert.equal(await page.getAttribute('#tree .tree-row[data-id="model.layers.{0..2}"]', 'aria-expanded'), 'true');
  assert.equal(await page.$eval('#hist-log-counts', (e: any) => e.checked), true);
  await assertClean(page);
  await page.close();
});

test('a pickle with findings shows the verdict banner with each finding; a clean one says so; text stays text', async () => {
  const unsafe = {
    ...llamaSummary(1),
    safety: { clean: false, text: 'calls 2 functions that are not tensor rebuilds, some of which can run code', findings: ['dangerous: posix.system (archive/data.pkl, byte 120)', 'unknown: <img src=x onerror=alert(1)>.x (byte 7)'] },
    notes: ["'lm_head.weight' is the same tensor as 'model.embed_tokens.weight' (shared storage); it is kept once"],
  };
  let page = await pages.openViewer(replies(unsafe));
  await page.waitForSelector('#safety.unsafe');
  const text = (await page.textContent('#safety')) ?? '';
  assert.match(text, /This file calls 2 functions that are not tensor rebuilds/);
  assert.match(text, /read without executing anything/);
  assert.equal(await page.locator('#safety li').count(), 2);
  assert.ok(text.includes('<img src=x onerror=alert(1)>'), 'a hostile name shows as text');
  assert.equal(await page.locator('#safety img').count(), 0);
  assert.match((await page.textContent('#notes')) ?? '', /kept once/);
  await shot(page, 'pickle-unsafe-banner');
  await page.close();
  page = await pages.openViewer(replies({ ...llamaSummary(1), safety: { clean: true, text: 'Only tensor data' } }));
  await page.waitForSelector('#safety.clean');
  assert.match((await page.textContent('#safety')) ?? '', /^Only tensor data · read without executing anything$/);
  await page.close();
});
