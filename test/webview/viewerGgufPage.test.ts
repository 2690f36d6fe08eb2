/**
 * A GGUF in the viewer page, in headless Chromium under the real CSP, driven by a scripted
 * host: the header's bits per weight and type mix, the Model tab (architecture table,
 * tokenizer summary, the chat template highlighted and escaped, other keys), paging through
 * a 150,000-entry array, `blk ×N` folded, and a quantized tensor's type, bits per weight,
 * statistics and the place left for its block scales.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { ARTIFACTS, applyTheme, sent, setReplies, type ReplyTable } from './harness';
import { pageSuite, viewerReplies, assertClean } from './pageSuite';
import { TEMPLATE, VOCAB, ggufSummary, tokenPage } from './ggufFixtures';
import { jinjaTokens, tensorEntries, type RequestMessage, type SummaryReplyMessage } from '../../src/shared/protocol';

// The callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, getComputedStyle: any;

const pages = pageSuite();

const replies = (s: SummaryReplyMessage): ReplyTable => ({ ...viewerReplies(s), ggufArray: { body: tokenPage(0, 100) } });

const cells = (page: Page, sel: string) => page.$$eval(`${sel} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())));

test('a GGUF opens on its Model tab: bits per weight and type mix, the architecture table, the tokenizer, the other keys', async () => {
  const s = ggufSummary(4);
  const g = s.gguf!;
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#gguf-template');
  // The header: the file's bits per weight (bytes × 8 / params) and its parameters by type.
  assert.equal((await page.textContent('#gguf-bpw'))?.trim(), `${((s.totals.bytes * 8) / s.totals.params).toFixed(2)} bits/weight`);
  // Whole percents, one decimal under 1%.
  const mix = g.typeMix.map((m) => `${m.type} ${m.share >= 0.01 ? Math.round(m.share * 100) : (m.share * 100).toFixed(1)}%`).join(', ');
  assert.equal((await page.textContent('#gguf-mix'))?.trim(), mix);
  assert.match(mix, /^Q6_K \d+%, Q4_K \d+%, F32 0\.\d%$/);
  // The Model tab is the one shown.
  assert.equal(await page.$eval('#tabs', (t) => t.selectedIndex), 3);
  assert.ok(await page.isVisible('#gguf-hparams'));
  assert.deepEqual(await cells(page, '#gguf-hparams'), g.hparams.map((r) => [r.label, r.text, r.key]));
  // The tokenizer as a summary: model, pre-tokenizer, vocabulary size, merges; special tokens with their text.
  assert.equal(await page.textContent('#tok-model'), 'gpt2');
  assert.equal(await page.textContent('#tok-pre'), 'llama-bpe');
  assert.equal(await page.textContent('#tok-vocab'), '150,000 tokens');
  assert.equal(await page.textContent('#tok-merges'), 'present (280,147)');
  assert.deepEqual(await cells(page, '#gguf-special'), [
    ['BOS', '128000', '"<|begin_of_text|>"'],
    ['EOS', '128009', '"<|eot_id|>"'],
    ['PAD', '200000', '(not in the vocabulary)'],
  ]);
  // Every other key, values as text: markup in a value stays text.
  const keys = await cells(page, '#gguf-keys-table');
  assert.deepEqual(keys.map((r) => r[0]), g.keys.map((k) => k.key));
  assert.equal(keys.find((r) => r[0] === 'general.name')![2], 'Tiny <b>Llama</b>');
  assert.equal(await page.$$eval('#gguf b', (e) => e.length), 0);
  // The notes the model layer writes for inspect are the Model tab here; the string metadata table too.
  assert.equal(await page.$('#notes'), null);
  assert.equal(await page.$('#metadata'), null);
  await page.screenshot({ path: join(ARTIFACTS, 'gguf-model-tab.png'), fullPage: true });
  await assertClean(page);
  await page.close();
});

test('the chat template is highlighted token by token and escaped: its markup never becomes elements', async () => {
  const s = ggufSummary(2);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#gguf-template');
  // The text shown is the template, character for character.
  assert.equal(await page.$eval('#gguf-template', (e) => e.textContent), TEMPLATE);
  assert.equal(await page.$$eval('#gguf script, #gguf img, #gguf b', (e) => e.length), 0);
  // One span per non-text token, in order, with its kind.
  const spans = await page.$$eval('#gguf-template span', (els) => els.map((e) => [e.className, e.textContent]));
  const want = jinjaTokens(TEMPLATE)
    .filter((t) => t.kind !== 'text')
    .map((t) => [`j-${t.kind}`, t.text]);
  assert.deepEqual(spans, want);
  const kinds = new Set(spans.map(([c]) => c));
  for (const k of ['j-tag', 'j-expr', 'j-comment', 'j-keyword', 'j-string', 'j-name']) assert.ok(kinds.has(k), `a ${k} span`);
  // Colours come from the theme: keywords differ from plain text, and follow a theme change.
  const colours = () => page.evaluate(() => ({
    keyword: getComputedStyle(document.querySelector('#gguf-template .j-keyword')).color,
    comment: getComputedStyle(document.querySelector('#gguf-template .j-comment')).color,
    text: getComputedStyle(document.querySelector('#gguf-template')).color,
  }));
  const dark = await colours();
  assert.notEqual(dark.keyword, dark.text);
  assert.notEqual(dark.comment, dark.keyword);
  await applyTheme(page, 'vscode-light');
  const light = await colours();
  assert.notEqual(light.keyword, dark.keyword, 'the keyword colour follows the theme');
  await assertClean(page);
  await page.close();
});

test('a 150,000-entry array is a count until expanded, then pages in through ggufArray requests', async () => {
  const s = ggufSummary(2);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#gguf-keys-table');
  const button = '#gguf-keys-table .array-more[data-key="tokenizer.ggml.tokens"]';
  assert.equal((await page.textContent(button))?.trim(), `Show items (${VOCAB.toLocaleString('en-US')})`);
  assert.equal(await page.$$eval('.array-items li', (e) => e.length), 0, 'nothing listed before it is asked for');
  const asked = async () => (await sent(page)).filter((m): m is RequestMessage<{ type: 'ggufArray'; key: string; start: number; count: number }> => m.type === 'request' && m.body.type === 'ggufArray').map((m) => m.body);
  assert.deepEqual(await asked(), []);
  await page.click(button);
  await page.waitForFunction(() => document.querySelectorAll('.array-items li').length === 100);
  assert.deepEqual(await asked(), [{ type: 'ggufArray', key: 'tokenizer.ggml.tokens', start: 0, count: 100 }]);
  const first = await page.$$eval('.array-items li', (e) => e.slice(0, 2).map((li) => [li.getAttribute('value'), li.textContent]));
  assert.deepEqual(first, [['0', '"tok0"'], ['1', '"tok1"']]);
  await setReplies(page, { ...replies(s), ggufArray: { body: tokenPage(100, 100) } });
  await page.click(button);
  await page.waitForFunction(() => document.querySelectorAll('.array-items li').length === 200);
  assert.deepEqual((await asked())[1], { type: 'ggufArray', key: 'tokenizer.ggml.tokens', start: 100, count: 100 });
  assert.deepEqual(await page.$eval('.array-items li:nth-child(101)', (li) => [li.getAttribute('value'), li.textContent]), ['100', '"tok100"']);
  assert.equal((await page.textContent('.array-status'))?.trim(), `200 of ${VOCAB.toLocaleString('en-US')} shown`);
  // A failed page says so where it was asked for, and can be asked again.
  await setReplies(page, { ...replies(s), ggufArray: { ok: false, error: { code: 'truncated', message: 'the file ended' } } });
  await page.click(button);
  await page.waitForSelector('.array-status.inline-error');
  assert.match((await page.textContent('.array-status')) ?? '', /error\[truncated\] the file ended/);
  assert.equal(await page.$eval(button, (b) => b.hasAttribute('disabled')), false);
  await assertClean(page);
  await page.close();
});

test('blk.N folds; a Q4_K tensor shows its type and bits per weight in the tree and the details, and its statistics', async () => {
  const s = ggufSummary(4);
  const page = await pages.openViewer(replies(s));
  await page.waitForSelector('#tree .tree-row');
  const labels = await page.$$eval('#tree .tree-row:not([hidden]) .label', (e) => e.map((x) => x.textContent));
  assert.deepEqual(labels, ['token_embd', 'blk ×4', 'output_norm']);
  await page.click('#tree .tree-row[data-id="blk.{0..3}"]');
  await page.click('#tree .tree-row[data-id="blk.1"]');
  await page.click('#tree .tree-row[data-id="blk.1.attn_q"]');
  await page.click('#tree .tree-row[data-id="blk.1.ffn_down"]');
  const meta = (id: string) => page.$eval(`#tree .tree-row[data-id="${id}"] .meta`, (e) => e.textContent);
  // Q4_K: 144 bytes per 256 values is 4.5 bits; Q6_K: 210 per 256 is 6.5625.
  assert.equal(await meta('blk.1.attn_q.weight'), 'Q4_K · 4.50 bpw [256, 256]');
  assert.equal(await meta('blk.1.ffn_down.weight'), 'Q6_K · 6.56 bpw [256, 512]');
  await page.click('#tree .tree-row[data-id="blk.1.attn_q.weight"]');
  await page.waitForSelector('#stat-count');
  assert.equal(await page.$eval('#tabs', (t) => t.selectedIndex), 0, 'selecting a tensor shows its details');
  assert.equal(await page.textContent('#info-dtype'), 'Q4_K');
  assert.equal(await page.textContent('#info-bpw'), '4.50');
  const t = tensorEntries(s.tensors).find((x) => x.name === 'blk.1.attn_q.weight')!;
  assert.match((await page.textContent('#info-range')) ?? '', new RegExp(`data offset \\[${t.byteOffset - 4096}, ${t.byteOffset - 4096 + t.byteLength}\\)`));
  assert.equal(await page.textContent('#stat-count'), (256 * 256).toLocaleString('en-US'));
  await page.waitForSelector('#heatmap');
  // This hand-made summary has no quantized table; viewerQuantized.test.ts shows the scales of a real Q4_K file.
  await page.screenshot({ path: join(ARTIFACTS, 'gguf-q4k-tensor.png'), fullPage: true });
  // A plain F32 tensor has no block scales.
  await page.click('#tree .tree-row[data-id="blk.1.attn_norm"]');
  await page.click('#tree .tree-row[data-id="blk.1.attn_norm.weight"]');
  await page.waitForSelector('#stat-count');
  assert.equal(await page.textContent('#info-dtype'), 'F32');
  assert.equal(await page.textContent('#info-bpw'), '32');
  assert.equal(await page.$('#scales-section'), null);
  await assertClean(page);
  await page.close();
});
