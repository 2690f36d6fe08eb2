/**
 * The user journeys in a real VS Code: code-server with the packaged linux-x64 VSIX,
 * driven through headless chromium. Each step leaves a screenshot in .artifacts/e2e/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { writeModelFolders } from './ggufFolders';
import type { Browser, Page } from 'playwright-core';
import { writeSafetensors } from '../../src/format/writer';
import { writeLlama, writePeftAdapter } from '../fixtures/llama';
import { cleanTensorPickle, torchZip } from '../pickle/pickleBuilder';
import {
  CodeServer,
  INSTALL_TIMEOUT_MS,
  Shots,
  UI_TIMEOUT_MS,
  activeTabLabel,
  answerFileDialog,
  answerFolderDialog,
  buildVsix,
  cleanScratch,
  doubleClickInExplorer,
  explorerRow,
  frameWith,
  heapUsedBytes,
  headerShapes,
  headerTensorNames,
  launchBrowser,
  makeWorkspace,
  notification,
  journey,
  prerequisites,
  quickInput,
  ROOT,
  scratch,
  readTensorF64,
  readTensorBytes,
  runCommand,
  shardOf,
  type Workspace,
} from './harness';

// One journey drives a cold workbench: a few UI timeouts' worth.
const JOURNEY_TIMEOUT_MS = 4 * UI_TIMEOUT_MS;

describe('VS Code journeys (code-server + packaged VSIX)', () => {
  let skip: string | undefined;
  let server: CodeServer | undefined;
  let browser: Browser | undefined;
  let ws: Workspace;

  before(
    async () => {
      skip = prerequisites();
      if (skip) return;
      const { vsix } = buildVsix('journeys');
      ws = await makeWorkspace('journeys');
      await writeModelFolders(ws.dir, scratch('journeys'));
      server = CodeServer.start('journeys', { vsix });
      browser = await launchBrowser();
    },
    { timeout: INSTALL_TIMEOUT_MS },
  );

  after(async () => {
    await browser?.close();
    server?.stop();
    cleanScratch('journeys');
  });

  /** A fresh window on the workspace for each journey, so one journey's state cannot help another. */
  const run = (name: string, body: (page: Page, shots: Shots) => Promise<void>) => journey(browser!, server!.folderUrl(ws.dir), name, body);

  test('open: double-clicking a .safetensors file opens the custom editor', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    await run('open', async (page, shots) => {
      await shots.take(page, 'workbench');
      await doubleClickInExplorer(page, ws.model);
      const frame = await frameWith(page, '#totals');
      assert.equal(await activeTabLabel(page), basename(ws.model));
      const names = headerTensorNames(join(ws.dir, ws.model));
      assert.match((await frame.textContent('#totals')) ?? '', new RegExp(`(^|\\D)${names.length} tensors`));
      await shots.take(page, 'editor');
      // The numbered blocks fold into one row, `layers ×N`, N counted from the header here.
      const layers = new Set(names.map((n) => /\.layers\.(\d+)\./.exec(n)?.[1]).filter(Boolean)).size;
      await frame.click('#tree .tree-row[data-id="model"]');
      const fold = frame.locator('#tree .tree-row[data-id^="model.layers."]').first();
      await fold.waitFor({ timeout: UI_TIMEOUT_MS });
      assert.equal((await fold.locator('.label').textContent())?.trim(), `layers ×${layers}`);
      assert.equal(await fold.getAttribute('aria-expanded'), 'false');
      await shots.take(page, 'tree-folded');
      await fold.click();
      assert.equal(await fold.getAttribute('aria-expanded'), 'true');
      await shots.take(page, 'tree-expanded');
    });
  });

  test('inspect: selecting a tensor shows its statistics and a histogram; "Scan model" shows progress, then the table', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    await run('inspect', async (page, shots) => {
      await doubleClickInExplorer(page, ws.model);
      const frame = await frameWith(page, '#tree .tree-row');
      // The largest 2-D tensor of the file; its statistics are recomputed here in float64.
      const file = join(ws.dir, ws.model);
      const [name] = Object.entries(headerShapes(file))
        .filter(([, shape]) => shape.length === 2)
        .sort(([, a], [, b]) => b[0] * b[1] - a[0] * a[1])
        .map(([n]) => n);
      const { values } = readTensorF64(file, name);
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (const v of values) {
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
      }
      await frame.fill('#filter >> input', name);
      await frame.click(`#tree .tree-row[data-id="${name}"]`);
      // Bars of empty bins have no height, so wait for presence, not visibility.
      await frame.waitForSelector('#histogram .barlayer .point', { state: 'attached', timeout: UI_TIMEOUT_MS });
      assert.equal((await frame.textContent('#selected-name'))?.trim(), name);
      const num = async (id: string) => Number(((await frame.textContent(id)) ?? '').replace(/,/g, ''));
      assert.equal(await num('#stat-count'), values.length);
      // The page prints 6 significant digits.
      const close = (got: number, want: number) => Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want));
      assert.ok(close(await num('#stat-min'), min), `min ${await num('#stat-min')} vs ${min}`);
      assert.ok(close(await num('#stat-max'), max), `max ${await num('#stat-max')} vs ${max}`);
      assert.ok(Math.abs((await num('#stat-mean')) - sum / values.length) <= 1e-4 * Math.max(1e-3, Math.abs(max - min)), 'mean');
      assert.ok((await frame.$$('#histogram .barlayer .point')).length > 1, 'the histogram has bars');
      await shots.take(page, 'tensor-stats');

      await frame.click('#scan-model');
      await frame.waitForSelector('#scan-status', { timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'scan-progress');
      await frame.locator('#scan-status', { hasText: /^Scanned/ }).waitFor({ timeout: UI_TIMEOUT_MS });
      const rows = await frame.$$eval('#scan-table tbody tr', (e) => e.length);
      assert.equal(rows, headerTensorNames(file).length);
      await shots.take(page, 'scan-table');
    });
  });

  test('bad input: a corrupt file shows the error page, and the workbench still works', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    await run('bad-input', async (page, shots) => {
      await doubleClickInExplorer(page, ws.corrupt);
      const frame = await frameWith(page, '#error-page');
      await shots.take(page, 'error-page');
      // The sample's corrupt file announces 64 bytes of data and holds 16: the spec calls that truncated.
      assert.equal((await frame.textContent('#error-code'))?.trim(), 'error[truncated]');
      const message = (await frame.textContent('#error-message')) ?? '';
      assert.ok(message.includes(basename(ws.corrupt)), `the message names the file: ${message}`);
      const [tensor] = headerTensorNames(join(ws.dir, ws.corrupt));
      assert.ok(message.includes(tensor), `the message names the tensor ${tensor}: ${message}`);
      // Nothing else broke: a valid file still opens beside it.
      await doubleClickInExplorer(page, ws.model);
      await frameWith(page, '#totals');
      assert.equal(await activeTabLabel(page), basename(ws.model));
      await shots.take(page, 'valid-file-after-error');
    });
  });

  test('pickle: a PyTorch checkpoint whose pickle names os.system opens with the warning banner; nothing runs', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const canary = join(ws.dir, 'CANARY');
    const pkl = cleanTensorPickle('w', 4).str('x').global('posix', 'system').mark().str(`touch ${canary}`).tuple().reduce().op(0x73).stop().build();
    writeFileSync(join(ws.dir, 'evil.pt'), torchZip(pkl, { '0': new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) }));
    await run('pickle', async (page, shots) => {
      await doubleClickInExplorer(page, 'evil.pt');
      const frame = await frameWith(page, '#safety');
      const banner = (await frame.textContent('#safety')) ?? '';
      assert.match(banner, /This file calls 1 function that is not tensor rebuilds/);
      assert.match(banner, /posix\.system/);
      await frame.waitForSelector('#tree .tree-row[data-id="w"]', { timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'pickle-banner');
    });
    assert.equal(existsSync(canary), false, 'nothing in the pickle ran');
  });

  test('compare: "Compare Selected Checkpoints" lists changed tensors first; the Markdown export writes a file', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const shard = 'model-00002-of-00002.safetensors';
    const a = join(ws.dir, 'base', shard);
    const b = join(ws.dir, 'finetuned', shard);
    // Which tensors differ, found here by comparing their bytes.
    const changed = headerTensorNames(a).filter((n) => !Buffer.from(readTensorBytes(a, n)).equals(Buffer.from(readTensorBytes(b, n))));
    assert.ok(changed.length > 0, 'the sample fine-tune changes tensors in the second shard');
    const exported = join(ws.dir, 'diff.md');
    rmSync(exported, { force: true });
    await run('compare', async (page, shots) => {
      // Both folders open; the explorer lists base/ before finetuned/, so the shards are rows 0 and 1.
      for (const folder of ['base', 'finetuned']) {
        const row = explorerRow(page, folder).first();
        if ((await row.getAttribute('aria-expanded')) !== 'true') await row.click();
      }
      await explorerRow(page, shard).nth(1).waitFor({ timeout: UI_TIMEOUT_MS });
      // Ctrl+click adds rows without opening them; the folder clicked last leaves the selection again.
      await explorerRow(page, shard).first().click({ modifiers: ['Control'] });
      const second = explorerRow(page, shard).nth(1);
      await second.click({ modifiers: ['Control'] });
      await explorerRow(page, 'finetuned').first().click({ modifiers: ['Control'] });
      assert.equal(await page.locator('.explorer-folders-view .monaco-list-row.selected').count(), 2, 'two checkpoints selected');
      await shots.take(page, 'selected');
      await second.click({ button: 'right' });
      const item = page.locator('.monaco-menu .action-label', { hasText: 'Compare Selected Checkpoints' }).first();
      await item.click();
      // A click that lands while the menu is still laying out only focuses the item: Enter runs it.
      await page.waitForTimeout(1000);
      if (await item.isVisible()) await page.keyboard.press('Enter');
      const frame = await frameWith(page, '#tensors tbody tr', 3 * UI_TIMEOUT_MS);
      await shots.take(page, 'report');
      const rows = await frame.$$eval('#tensors tbody tr', (trs) => trs.map((tr) => ({ name: tr.getAttribute('data-name') ?? '', changed: tr.classList.contains('changed') })));
      // Changed tensors first, and exactly those.
      const firstIdentical = rows.findIndex((r) => !r.changed);
      const shown = firstIdentical < 0 ? rows : rows.slice(0, firstIdentical);
      assert.deepEqual(shown.map((r) => r.name).sort(), [...changed].sort());
      assert.ok(rows.slice(shown.length).every((r) => !r.changed), 'no changed tensor after an identical one');
      assert.match((await frame.textContent('#summary')) ?? '', new RegExp(`^${changed.length} of \\d+ compared tensors changed`));

      await frame.click('#export-markdown');
      await answerFileDialog(page, 'Export checkpoint diff as Markdown', exported);
      const end = Date.now() + UI_TIMEOUT_MS;
      while (!existsSync(exported) && Date.now() < end) await page.waitForTimeout(250);
      assert.ok(existsSync(exported), 'the Markdown export wrote no file');
      const md = readFileSync(exported, 'utf8');
      for (const n of changed) assert.ok(md.includes(n), `the export lists ${n}`);
      await shots.take(page, 'exported');
    });
  });
  test('quantize: "Quantize…" with Q8_0 previews, writes the output, and it opens in the viewer', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const input = join(ws.dir, ws.model);
    const output = join(ws.dir, 'single', 'model-q8_0.safetensors');
    rmSync(output, { force: true });
    await run('quantize', async (page, shots) => {
      await runCommand(page, 'Quantize…');
      await answerFileDialog(page, 'Quantize: model', input);
      // The preview: one row per scheme with its size and estimated error.
      const schemes = quickInput(page, 'size and estimated error per scheme');
      await schemes.waitFor({ state: 'visible', timeout: 3 * UI_TIMEOUT_MS });
      await schemes.locator('.quick-input-list .monaco-list-row', { hasText: 'q4_0' }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'preview');
      await schemes.locator('input').first().fill('q8_0');
      await schemes.locator('.quick-input-list .monaco-list-row', { hasText: 'bits/w' }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      const format = quickInput(page, 'output format');
      await format.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await format.locator('input').first().fill('safetensors');
      await format.locator('.quick-input-list .monaco-list-row', { hasText: 'safetensors' }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      await answerFileDialog(page, 'Quantize: output', output);
      const end = Date.now() + 3 * UI_TIMEOUT_MS;
      while (!existsSync(output) && Date.now() < end) await page.waitForTimeout(250);
      assert.ok(existsSync(output), `${output} was not written`);
      assert.deepEqual(readdirSync(join(ws.dir, 'single')).filter((n) => n.includes('.tmp')), [], 'no temporary file is left beside the output');
      // The report opens in its webview once the job is done: totals, one row per quantized tensor, the skipped ones with reasons.
      const report = await frameWith(page, '#quant-report');
      assert.match((await report.textContent('#quant-totals')) ?? '', /bits per weight/);
      assert.ok((await report.$$('#quant-tensors tbody tr')).length > 0, 'the report lists the quantized tensors');
      await shots.take(page, 'report');
      // Its button opens the Markdown rendering.
      await report.click('#open-markdown');
      await page.locator('.tabs-container .tab', { hasText: 'Preview' }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      const markdown = await frameWith(page, '.markdown-body table');
      assert.match((await markdown.textContent('.markdown-body h1')) ?? '', /Quantization report: q8_0/);
      await shots.take(page, 'report-markdown');
      // The Markdown is a read-only document: nothing asks to be saved when it closes.
      assert.equal(await page.locator('.tabs-container .tab.dirty').count(), 0, 'a tab is dirty after opening the report');
      // The output shows up in the explorer and opens in the viewer.
      await doubleClickInExplorer(page, 'single/model-q8_0.safetensors');
      const frame = await frameWith(page, '#totals');
      assert.match((await frame.textContent('#totals')) ?? '', new RegExp(`(^|\\D)${headerTensorNames(output).length} tensors`));
      await shots.take(page, 'output-opened');
    });

    // ggml Q8_0, decoded here from the spec: per 32 values one f16 scale d then 32 int8 q,
    // x ≈ d·q with d = max|x| / 127, so no value is off by more than d/2 (plus f16 slack).
    const [name] = Object.entries(headerShapes(input))
      .filter(([n, shape]) => shape.length === 2 && n.includes('q_proj'))
      .map(([n]) => n);
    const x = readTensorF64(input, name);
    const [rows, cols] = x.shape;
    assert.deepEqual(headerShapes(output)[name], [rows, (cols / 32) * 34]);
    const q = readTensorBytes(output, name);
    const f16 = (h: number) => {
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
      return h & 0x8000 ? -v : v;
    };
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < cols / 32; b++) {
        const at = r * (cols / 32) * 34 + b * 34;
        const d = f16(q[at] | (q[at + 1] << 8));
        let amax = 0;
        for (let k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(x.values[r * cols + b * 32 + k]));
        assert.ok(Math.abs(d - amax / 127) <= 2 ** -10 * (amax / 127) + 1e-12, `block (${r},${b}) scale ${d} vs ${amax / 127}`);
        for (let k = 0; k < 32; k++) {
          const qi = (q[at + 2 + k] << 24) >> 24;
          const want = x.values[r * cols + b * 32 + k];
          assert.ok(Math.abs(d * qi - want) <= d / 2 + 2 ** -10 * amax, `${name}[${r}, ${b * 32 + k}] = ${d * qi}, want ${want}`);
        }
      }
    }
  });
  /** Waits for `output`, then checks it equals the CLI's `convert hf-llama OUT --ftype F` byte for byte. */
  async function sameAsCli(page: Page, output: string, ftype: string): Promise<void> {
    const end = Date.now() + 3 * UI_TIMEOUT_MS;
    while (!existsSync(output) && Date.now() < end) await page.waitForTimeout(250);
    assert.ok(existsSync(output), `${output} was not written`);
    const cli = join(scratch('journeys'), `cli-${ftype}.gguf`);
    execFileSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'convert', join(ws.dir, 'hf-llama'), cli, '--ftype', ftype], { stdio: 'pipe' });
    // The job renames its temporary file into place: wait until the viewer could have read it whole.
    await notification(page, /Wrote .*\.gguf/, 3 * UI_TIMEOUT_MS);
    assert.ok(readFileSync(output).equals(readFileSync(cli)), `${output} differs from the CLI's ${ftype} file`);
  }

  test('quantize: "Quantize…" lists llama.cpp file types with size and error; Q4_K_M writes the CLI\u2019s GGUF, which opens', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const input = join(ws.dir, 'hf-llama', 'model.safetensors');
    const output = join(ws.dir, 'hf-llama-Q4_K_M.gguf');
    rmSync(output, { force: true });
    await run('quantize-ftype', async (page, shots) => {
      await runCommand(page, 'Quantize…');
      await answerFileDialog(page, 'Quantize: model', input);
      const pick = quickInput(page, 'size and estimated error per scheme');
      await pick.waitFor({ state: 'visible', timeout: 3 * UI_TIMEOUT_MS });
      // Both kinds in one list: the file type mixes and the single-type schemes.
      await pick.locator('.quick-input-list .monaco-list-row', { hasText: 'q4_0' }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await pick.locator('input').first().fill('Q4_K_M');
      const row = pick.locator('.quick-input-list .monaco-list-row', { hasText: 'Q4_K_M' }).first();
      await row.waitFor({ timeout: UI_TIMEOUT_MS });
      const text = (await row.textContent()) ?? '';
      assert.match(text, /\d+(\.\d+)? [KM]iB · \d\.\d\d bits\/w · SNR \d+\.\d dB/, `the Q4_K_M row: ${text}`);
      assert.match(text, /Q6_K/, 'its detail names the Q6_K tensors of the mix');
      await shots.take(page, 'file-types');
      await page.keyboard.press('Enter');
      await answerFileDialog(page, 'Quantize: output', output);
      await sameAsCli(page, output, 'Q4_K_M');
      const frame = await frameWith(page, '#gguf-bpw', 3 * UI_TIMEOUT_MS);
      assert.match((await frame.textContent('#gguf-mix')) ?? '', /Q4_K \d+%.*Q6_K \d+%|Q6_K \d+%.*Q4_K \d+%/);
      await shots.take(page, 'output-opened');
    });
  });

  test('convert: "Convert to GGUF…" from the explorer on a Hugging Face folder writes Q5_K_M as the CLI does; an unknown architecture is refused', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const output = join(ws.dir, 'hf-llama-Q5_K_M.gguf');
    rmSync(output, { force: true });
    await run('convert-gguf', async (page, shots) => {
      await runCommand(page, 'Convert to GGUF…');
      await answerFolderDialog(page, 'Convert to GGUF: a Hugging Face model folder', join(ws.dir, 'hf-unknown'));
      await notification(page, /falcon/i, 3 * UI_TIMEOUT_MS);
      await shots.take(page, 'refused');
      // The explorer offers it on folders holding config.json and safetensors only: not on the adapter's folder.
      await explorerRow(page, 'adapter').first().click({ button: 'right' });
      await page.locator('.monaco-menu .action-label').first().waitFor({ timeout: UI_TIMEOUT_MS });
      assert.equal(await page.locator('.monaco-menu .action-label', { hasText: 'Convert to GGUF…' }).count(), 0, 'the adapter folder offers Convert to GGUF…');
      await page.keyboard.press('Escape');
      await explorerRow(page, 'hf-llama').first().click({ button: 'right' });
      const item = page.locator('.monaco-menu .action-label', { hasText: 'Convert to GGUF…' }).first();
      await item.click();
      // A click that lands while the menu is still laying out only focuses the item: Enter runs it.
      await page.waitForTimeout(1000);
      if (await item.isVisible()) await page.keyboard.press('Enter');
      const pick = quickInput(page, 'size and estimated error per file type');
      await pick.waitFor({ state: 'visible', timeout: 3 * UI_TIMEOUT_MS });
      await pick.locator('input').first().fill('Q5_K_M');
      await pick.locator('.quick-input-list .monaco-list-row', { hasText: 'bits/w' }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      await answerFileDialog(page, 'Convert to GGUF: output', output);
      await sameAsCli(page, output, 'Q5_K_M');
      await frameWith(page, '#gguf-bpw', 3 * UI_TIMEOUT_MS);
      await shots.take(page, 'output-opened');
    });
    assert.equal(existsSync(join(ws.dir, 'hf-unknown-Q4_K_M.gguf')), false);
  });

  test('merge: "Merge LoRA Adapter…" writes the merged model, and it opens', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const index = join(ws.dir, 'base', 'model.safetensors.index.json');
    const adapter = join(ws.dir, 'adapter', 'adapter_model.safetensors');
    const output = join(ws.dir, 'merged.safetensors');
    rmSync(output, { force: true });
    await run('merge', async (page, shots) => {
      await runCommand(page, 'Merge LoRA Adapter…');
      await answerFileDialog(page, 'base model', index);
      await answerFileDialog(page, 'adapters', adapter);
      // The adapter's weight: 1, as trained.
      const weight = quickInput(page, 'Weight of');
      await weight.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      // The mapping preview: its first row is the action.
      const preview = quickInput(page, 'mapping');
      await preview.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await preview.locator('.quick-input-list .monaco-list-row', { hasText: /Merge \d+ tensor/ }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'mapping-preview');
      await page.keyboard.press('Enter');
      await answerFileDialog(page, 'output', output);
      const done = await notification(page, /^Merged \d+ tensor/, 3 * UI_TIMEOUT_MS);
      await shots.take(page, 'merged');
      assert.ok(existsSync(output), `${output} was not written (${done})`);
      assert.deepEqual(readdirSync(ws.dir).filter((n) => n.includes('.tmp')), [], 'no temporary file is left beside the output');

      // The merged file opens in the viewer with every tensor of the base.
      const baseNames = Object.keys(JSON.parse(readFileSync(index, 'utf8')).weight_map);
      await doubleClickInExplorer(page, 'merged.safetensors');
      const frame = await frameWith(page, '#totals');
      assert.match((await frame.textContent('#totals')) ?? '', new RegExp(`(^|\\D)${baseNames.length} tensors`));
      await shots.take(page, 'merged-opened');
    });

    // W' = W + (alpha / r) · B·A for a targeted weight, recomputed here in float64 from the
    // files; an untargeted weight is unchanged. BF16 output: within one rounding (2^-8 relative).
    const cfg = JSON.parse(readFileSync(join(ws.dir, 'adapter', 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number };
    const target = 'model.layers.0.self_attn.q_proj.weight';
    const W = readTensorF64(shardOf(index, target), target);
    const A = readTensorF64(adapter, `base_model.model.${target.replace(/\.weight$/, '')}.lora_A.weight`);
    const B = readTensorF64(adapter, `base_model.model.${target.replace(/\.weight$/, '')}.lora_B.weight`);
    const merged = readTensorF64(output, target);
    const [rows, cols] = W.shape;
    const r = A.shape[0];
    const scale = cfg.lora_alpha / cfg.r;
    let changed = 0;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += B.values[i * r + k] * A.values[k * cols + j];
        const want = W.values[i * cols + j] + scale * d;
        const got = merged.values[i * cols + j];
        assert.ok(Math.abs(got - want) <= 2 ** -8 * Math.abs(want) + 1e-30, `${target}[${i},${j}] = ${got}, want ${want}`);
        if (got !== W.values[i * cols + j]) changed++;
      }
    }
    assert.ok(changed > 0, 'the merge changed the targeted weight');
    const untouched = 'model.norm.weight';
    assert.deepEqual(readTensorF64(output, untouched).values, readTensorF64(shardOf(index, untouched), untouched).values);
  });
  test('merge models: "Merge Models…" builds a linear config in an editor; Run merge writes the model', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const input = join(ws.dir, 'hf-llama', 'model.safetensors');
    const output = join(ws.dir, 'hf-llama-linear');
    rmSync(output, { recursive: true, force: true });
    await run('merge-models', async (page, shots) => {
      await runCommand(page, 'Merge Models…');
      const first = quickInput(page, 'build a config');
      await first.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await first.locator('.quick-input-list .monaco-list-row', { hasText: 'New merge' }).first().click();
      const models = quickInput(page, 'the models to merge');
      await models.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      // A multi-select list: a click checks the row, Enter accepts.
      await models.locator('.quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: /^hf-llama$/ }) }).first().click();
      await page.keyboard.press('Enter');
      const method = quickInput(page, 'merge method');
      await method.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await method.locator('.quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: /^linear$/ }) }).first().click();
      // One model: its weight defaults to 1.
      const weight = quickInput(page, 'weight of hf-llama');
      await weight.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      await notification(page, 'config is in the editor', UI_TIMEOUT_MS);
      await shots.take(page, 'config-in-editor');
      await page.locator('.notification-list-item', { hasText: 'config is in the editor' }).locator('.monaco-button', { hasText: 'Run merge' }).first().click();
      await answerFileDialog(page, 'output folder', output);
      await notification(page, /Merge Models: linear, \d+ tensors/, 3 * UI_TIMEOUT_MS);
      await shots.take(page, 'merged');
    });
    // Weight 1, normalized, one model: the model itself, BF16 in and out.
    const merged = join(output, 'model.safetensors');
    assert.deepEqual(headerTensorNames(merged), headerTensorNames(input));
    for (const name of headerTensorNames(input)) assert.deepEqual(readTensorF64(merged, name).values, readTensorF64(input, name).values, name);
  });

  test('cancel: cancelling a long job leaves no output file', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    // Big enough that merging takes seconds (≈180 MB of BF16, every linear layer adapted at
    // rank 128), so that Cancel lands while the job runs.
    const dir = join(ws.dir, 'big');
    rmSync(dir, { recursive: true, force: true });
    const spec = { hidden: 768, intermediate: 2048, layers: 12, vocab: 8192, heads: 12, kvHeads: 4, dtype: 'BF16', seed: 3 } as const;
    await writeLlama(join(dir, 'base'), { ...spec, shards: 1 });
    await writePeftAdapter(join(dir, 'adapter'), { r: 128, alpha: 128, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], base: join(dir, 'base') });
    const output = join(dir, 'merged.safetensors');
    await run('cancel', async (page, shots) => {
      await runCommand(page, 'Merge LoRA Adapter…');
      await answerFileDialog(page, 'base model', join(dir, 'base', 'model.safetensors'));
      await answerFileDialog(page, 'adapters', join(dir, 'adapter', 'adapter_model.safetensors'));
      await quickInput(page, 'Weight of').waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      const preview = quickInput(page, 'mapping');
      await preview.locator('.quick-input-list .monaco-list-row', { hasText: /Merge \d+ tensor/ }).first().waitFor({ timeout: UI_TIMEOUT_MS });
      await page.keyboard.press('Enter');
      await answerFileDialog(page, 'output', output);
      const job = page.locator('.notification-toast', { hasText: 'Merging LoRA adapter' });
      await job.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'running');
      await job.hover();
      await job.locator('.monaco-button', { hasText: 'Cancel' }).click();
      await job.waitFor({ state: 'hidden', timeout: UI_TIMEOUT_MS });
      // The pipeline removes its temporary file when it sees the abort; give it a moment to unwind.
      const end = Date.now() + 10_000;
      while (readdirSync(dir).some((n) => n.includes('.tmp')) && Date.now() < end) await page.waitForTimeout(250);
      await shots.take(page, 'cancelled');
      assert.equal(await page.locator('.notification-list-item-message', { hasText: /^Merged \d+/ }).count(), 0, 'the merge finished before Cancel: make the model bigger');
      assert.ok(!existsSync(output), 'a cancelled merge left its output');
      assert.deepEqual(readdirSync(dir).sort(), ['adapter', 'base'], 'a cancelled merge left files behind');
    });
  });
  test('reload: when the open file changes on disk, the view reads it again and shows the new numbers', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const dir = join(ws.dir, 'reload');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'model.safetensors');
    // a.weight holds 0, 0.25, …, 15.75; the new version doubles it and adds a third tensor.
    const version = async (path: string, factor: number, extra: boolean) => {
      const a = new Float32Array(64).map((_, i) => (i / 4) * factor);
      const tensors = [
        { name: 'a.weight', dtype: 'F32' as const, shape: [8, 8], data: new Uint8Array(a.buffer) },
        { name: 'b.weight', dtype: 'F32' as const, shape: [4], data: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) },
      ];
      if (extra) tensors.push({ name: 'c.weight', dtype: 'F32' as const, shape: [2], data: new Uint8Array(new Float32Array([5, 6]).buffer) });
      await writeSafetensors(path, tensors);
    };
    await version(file, 1, false);
    await run('reload', async (page, shots) => {
      await doubleClickInExplorer(page, 'reload/model.safetensors');
      const frame = await frameWith(page, '#tree .tree-row');
      assert.match((await frame.textContent('#totals')) ?? '', /(^|\D)2 tensors/);
      await frame.fill('#filter >> input', 'a.weight');
      await frame.click('#tree .tree-row[data-id="a.weight"]');
      // The page prints 6 significant digits ("15.7500").
      const statMax = async (want: number) => {
        const end = Date.now() + UI_TIMEOUT_MS;
        for (;;) {
          const shown = await frame.textContent('#stat-max').catch(() => null);
          if (Number((shown ?? '').replace(/,/g, '')) === want) return;
          if (Date.now() > end) throw new Error(`#stat-max shows ${shown}, want ${want}`);
          await page.waitForTimeout(200);
        }
      };
      await statMax(15.75);
      await shots.take(page, 'before');
      // Overwritten in place, as a training script's save does: the same name, new bytes.
      const next = join(ws.dir, 'reload-next.safetensors');
      await version(next, 2, true);
      copyFileSync(next, file);
      rmSync(next);
      // The page reloads by itself: the new tensor count, and the selection's statistics recomputed.
      await frame.locator('#totals', { hasText: /(^|\D)3 tensors/ }).waitFor({ timeout: UI_TIMEOUT_MS });
      await statMax(31.5);
      assert.equal((await frame.textContent('#selected-name'))?.trim(), 'a.weight');
      await shots.take(page, 'after');
    });
  });

  test('memory: the webview holds bins and pixels, not tensors (its heap does not grow with the tensor)', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const dir = join(ws.dir, 'memory');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // 16 elements against 50 million (100 MB of BF16, 200 MB as f32): a page that kept the values
    // of the large one would grow by at least its size.
    const BIG = [10_000, 5_000] as const;
    const big = function* () {
      const chunk = new Uint16Array(1 << 20);
      let s = 7;
      for (let done = 0; done < BIG[0] * BIG[1]; done += chunk.length) {
        const n = Math.min(chunk.length, BIG[0] * BIG[1] - done);
        for (let i = 0; i < n; i++) {
          s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
          chunk[i] = 0x3c00 + (s >>> 23) - 256 + ((s & 1) << 15);
        }
        yield new Uint8Array(chunk.buffer, 0, n * 2);
      }
    };
    await writeSafetensors(join(dir, 'two.safetensors'), [
      { name: 'big', dtype: 'BF16', shape: [...BIG], data: big },
      { name: 'small', dtype: 'BF16', shape: [4, 4], data: new Uint8Array(32).fill(0x3f) },
    ]);
    await run('memory', async (page, shots) => {
      await doubleClickInExplorer(page, 'memory/two.safetensors');
      const frame = await frameWith(page, '#tree .tree-row');
      const select = async (name: string) => {
        await frame.click(`#tree .tree-row[data-id="${name}"]`);
        await frame.locator('#selected-name', { hasText: new RegExp(`^${name}$`) }).waitFor({ timeout: UI_TIMEOUT_MS });
        await frame.waitForSelector('#histogram .barlayer .point', { state: 'attached', timeout: UI_TIMEOUT_MS });
        await frame.waitForSelector('#heatmap-caption', { timeout: UI_TIMEOUT_MS });
      };
      await select('small');
      const before = await heapUsedBytes(page, frame);
      await select('big');
      await shots.take(page, 'big-selected');
      const withBig = await heapUsedBytes(page, frame);
      const grown = withBig - before;
      t.diagnostic(`webview heap: ${(before / 2 ** 20).toFixed(1)} MB with the 16-element tensor, ${(withBig / 2 ** 20).toFixed(1)} MB with the 50M-element one`);
      // A 512×512 heatmap and 128 bins are a few MB at most; the tensor itself would be ≥ 100 MB.
      assert.ok(grown < 24 * 2 ** 20, `the page grew by ${(grown / 2 ** 20).toFixed(1)} MB for a 50M-element tensor`);
      // The measure sees the page's own heap: 16 MB of numbers kept by the page show up in it.
      await frame.evaluate(() => {
        (globalThis as Record<string, unknown>).twProbe = Array.from({ length: 2_000_000 }, (_, i) => i + 0.5);
      });
      const probed = await heapUsedBytes(page, frame);
      await frame.evaluate(() => delete (globalThis as Record<string, unknown>).twProbe);
      assert.ok(probed - withBig > 12 * 2 ** 20, `16 MB kept by the page moved the measure by only ${((probed - withBig) / 2 ** 20).toFixed(1)} MB`);
    });
  });
});
