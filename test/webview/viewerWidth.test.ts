/**
 * The viewer at any width: in a narrow editor (a split, or the secondary side bar
 * open) and a wide one, in light, dark and high-contrast themes, no value of the
 * totals, the dtype and memory tables, the tensor's description, its statistics or
 * its top |x| is clipped. A value counts as clipped when its text overflows its
 * own cell (scrollWidth > clientWidth), or when its box lies outside an ancestor
 * that hides overflow, or outside the viewport. Inside an ancestor that scrolls,
 * it is reachable, so that ancestor's box is checked instead.
 * Screenshots of every width and theme go to .artifacts/webview/width-*.png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { ARTIFACTS, applyTheme, pageErrors, violations, type ReplyTable, type ThemeKind } from './harness';
import { pageSuite } from './pageSuite';
import { heatmapReply, llamaSummary, statsReply } from './fixtures';
import { ggufSummary } from './ggufFixtures';
import type { SummaryReplyMessage } from '../../src/shared/protocol';

// The callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, getComputedStyle: any, window: any, ShadowRoot: any;

const pages = pageSuite();

/** A 70B-sized model's numbers: the longest values each cell shows in practice. */
function bigSummary(): SummaryReplyMessage {
  const s = llamaSummary(2);
  const scale = 2 ** 30;
  return {
    ...s,
    totals: { ...s.totals, params: s.totals.params * scale, bytes: s.totals.bytes * scale, byDtype: s.totals.byDtype.map((d) => ({ ...d, params: d.params * scale, bytes: d.bytes * scale })) },
    memory: s.memory.map((m) => ({ ...m, bytes: m.bytes * scale })),
  };
}

function replies(s: SummaryReplyMessage): ReplyTable {
  const name = 'model.embed_tokens.weight';
  const r = statsReply(name, [128256, 8192]);
  const count = 128256 * 8192;
  // Long values: ten-digit counts, negative numbers in exponent form, a negative zero mean.
  const stats = { ...r.stats, count, finite: count - 3, zeros: 987654321, nearZero: 987654321, outliers: 123456789, min: -0.000012345678, max: 123456.789, absMax: 123456.789, mean: -0.000001234567, std: 0.0000987654 };
  return { summary: { body: s }, [`tensorStats:${name}`]: { body: { ...r, stats } }, [`heatmap:${name}`]: { body: heatmapReply(name) } };
}

/** The values that are clipped, each as `selector "text": why`. */
const SELECTORS = ['.totals-line span', '#dtype-table th', '#dtype-table td', '#memory-table th', '#memory-table td', '#tensor-info dt', '#tensor-info dd', '#stats .stat-grid dt', '#stats .stat-grid dd', '#topk-table th', '#topk-table td'];

async function clipped(page: Page, selectors: readonly string[] = SELECTORS): Promise<string[]> {
  return page.evaluate((selectors) => {
    // The composed parent: through slots and out of shadow roots, as boxes nest on screen.
    const parentOf = (e: any) => e.assignedSlot ?? e.parentElement ?? (e.getRootNode() instanceof ShadowRoot ? e.getRootNode().host : null);
    const out: string[] = [];
    for (const sel of selectors) {
      for (const e of document.querySelectorAll(sel)) {
        // Not rendered (in a tab that is not shown): nothing of it is on screen to be clipped.
        if (e.getClientRects().length === 0) continue;
        const what = `${sel} "${e.textContent.trim()}"`;
        if (e.scrollWidth > e.clientWidth + 1) out.push(`${what}: overflows its cell (${e.scrollWidth} > ${e.clientWidth})`);
        let box = e.getBoundingClientRect();
        for (let a = parentOf(e); a && a !== document.documentElement; a = parentOf(a)) {
          const o = getComputedStyle(a).overflowX;
          if (o === 'visible') continue;
          const r = a.getBoundingClientRect();
          if (o === 'auto' || o === 'scroll') box = r;
          else if (box.left < r.left - 1 || box.right > r.right + 1) {
            out.push(`${what}: outside ${a.tagName.toLowerCase()}#${a.id}.${a.className} (${Math.round(box.left)}..${Math.round(box.right)} vs ${Math.round(r.left)}..${Math.round(r.right)})`);
            break;
          }
        }
        if (box.right > window.innerWidth + 1 || box.left < -1) out.push(`${what}: outside the viewport (${Math.round(box.right)} > ${window.innerWidth})`);
      }
    }
    return out;
  }, selectors);
}

for (const width of [600, 900, 1600]) {
  test(`at ${width} px, in every theme, no statistic, table cell or total is clipped`, async () => {
    const page = await pages.openViewer(replies(bigSummary()), { width, height: 900 });
    await page.waitForSelector('#tree .tree-row');
    await page.click('#tree .tree-row[data-id="model"]');
    await page.click('#tree .tree-row[data-id="model.embed_tokens"]');
    await page.click('#tree .tree-row[data-id="model.embed_tokens.weight"]');
    await page.waitForSelector('#stat-mean');
    await page.waitForSelector('#heatmap');
    for (const kind of ['vscode-light', 'vscode-dark', 'vscode-high-contrast'] as ThemeKind[]) {
      await applyTheme(page, kind);
      await page.waitForTimeout(50);
      await page.screenshot({ path: join(ARTIFACTS, `width-${width}-${kind}.png`), fullPage: true });
      assert.deepEqual(await clipped(page), [], `${kind} at ${width} px`);
    }
    assert.deepEqual(pageErrors(page), []);
    assert.deepEqual(await violations(page), []);
    await page.close();
  });
}

// A GGUF's own parts: the header's bits per weight and type mix, the Model tab's tables and
// template, and a quantized tensor's type and bits per weight.
const GGUF_SELECTORS = [
  ...SELECTORS,
  '#gguf-hparams th',
  '#gguf-hparams td',
  '#gguf-tokenizer dt',
  '#gguf-tokenizer dd',
  '#gguf-special td',
  '#gguf-template',
  '#gguf-keys-table td',
];

for (const width of [600, 1600]) {
  test(`a GGUF at ${width} px, in every theme: the type mix, the Model tab and a Q4_K tensor's details are not clipped`, async () => {
    const s = ggufSummary(4);
    const name = 'blk.1.attn_q.weight';
    const replies: ReplyTable = { summary: { body: s }, [`tensorStats:${name}`]: { body: statsReply(name, [256, 256]) }, [`heatmap:${name}`]: { body: heatmapReply(name) } };
    const page = await pages.openViewer(replies, { width, height: 900 });
    await page.waitForSelector('#gguf-template');
    for (const kind of ['vscode-light', 'vscode-dark', 'vscode-high-contrast'] as ThemeKind[]) {
      await applyTheme(page, kind);
      await page.waitForTimeout(50);
      await page.screenshot({ path: join(ARTIFACTS, `width-gguf-model-${width}-${kind}.png`), fullPage: true });
      assert.deepEqual(await clipped(page, GGUF_SELECTORS), [], `Model tab, ${kind} at ${width} px`);
    }
    await page.click('#tree .tree-row[data-id="blk.{0..3}"]');
    await page.click('#tree .tree-row[data-id="blk.1"]');
    await page.click('#tree .tree-row[data-id="blk.1.attn_q"]');
    await page.click(`#tree .tree-row[data-id="${name}"]`);
    await page.waitForSelector('#stat-mean');
    await page.waitForSelector('#info-bpw');
    for (const kind of ['vscode-light', 'vscode-dark', 'vscode-high-contrast'] as ThemeKind[]) {
      await applyTheme(page, kind);
      await page.waitForTimeout(50);
      await page.screenshot({ path: join(ARTIFACTS, `width-gguf-tensor-${width}-${kind}.png`), fullPage: true });
      assert.deepEqual(await clipped(page, GGUF_SELECTORS), [], `tensor details, ${kind} at ${width} px`);
    }
    assert.deepEqual(pageErrors(page), []);
    assert.deepEqual(await violations(page), []);
    await page.close();
  });
}
