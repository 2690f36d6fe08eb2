/**
 * GGUF in a real VS Code (code-server with the packaged linux-x64 VSIX): a Q8_0 GGUF that our
 * quantizer writes from a generated Llama opens in the viewer, and a quantized tensor shows
 * its type, bits per weight and statistics; "Compare Checkpoints…" pairs the safetensors
 * model with its GGUF under llama.cpp's names. The oracle is gguf-py (Python), which reads
 * and dequantizes the file independently of the extension.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';

// Callbacks passed to frame.waitForFunction run in the page; the node type-check has no DOM lib.
declare const document: { querySelectorAll(s: string): { length: number } };
import { PRESETS, writeLlama } from '../fixtures/llama';
import {
  CodeServer,
  INSTALL_TIMEOUT_MS,
  ROOT,
  UI_TIMEOUT_MS,
  answerFileDialog,
  buildVsix,
  cleanScratch,
  doubleClickInExplorer,
  frameWith,
  headerTensorNames,
  journey,
  launchBrowser,
  prerequisites,
  runCommand,
  scratch,
  type Shots,
} from './harness';

const JOURNEY_TIMEOUT_MS = 4 * UI_TIMEOUT_MS;
const GGUF = 'tiny-q8_0.gguf';

interface OracleTensor {
  readonly name: string;
  readonly type: string;
  readonly elements: number;
  readonly bytes: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

/** gguf-py's view of the file: each tensor's type, size and dequantized min/max/mean, and the metadata's scalars. */
function ggufPy(path: string): { tensors: OracleTensor[]; meta: Record<string, unknown> } {
  const script = `
import json, sys, gguf, numpy as np
r = gguf.GGUFReader(sys.argv[1])
ts = []
for t in r.tensors:
    v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
    ts.append(dict(name=t.name, type=t.tensor_type.name, elements=int(t.n_elements), bytes=int(t.n_bytes), min=float(v.min()), max=float(v.max()), mean=float(v.mean())))
meta = {}
for k, f in r.fields.items():
    if len(f.types) == 1 and f.types[0] != gguf.GGUFValueType.STRING and f.types[0] != gguf.GGUFValueType.ARRAY:
        meta[k] = f.parts[f.data[0]].tolist()[0]
print(json.dumps(dict(tensors=ts, meta=meta)))
`;
  const r = spawnSync('python3', ['-c', script, path], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`gguf-py could not read ${path}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** llama.cpp's names for Hugging Face Llama tensors (convert_hf_to_gguf's table), written out here. */
function llamaCppName(hf: string): string {
  const fixed: Record<string, string> = { 'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
  if (fixed[hf]) return fixed[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
  const parts: Record<string, string> = {
    'self_attn.q_proj': 'attn_q',
    'self_attn.k_proj': 'attn_k',
    'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output',
    'mlp.gate_proj': 'ffn_gate',
    'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down',
    input_layernorm: 'attn_norm',
    post_attention_layernorm: 'ffn_norm',
  };
  if (!m || !parts[m[2]]) throw new Error(`no llama.cpp name for ${hf}`);
  return `blk.${m[1]}.${parts[m[2]]}.weight`;
}

describe('VS Code journeys: GGUF (code-server + packaged VSIX)', () => {
  let skip: string | undefined;
  let server: CodeServer | undefined;
  let browser: Browser | undefined;
  let dir: string;
  let oracle: ReturnType<typeof ggufPy>;

  before(
    async () => {
      skip = prerequisites();
      if (skip) return;
      const { vsix } = buildVsix('gguf');
      dir = join(scratch('gguf'), 'workspace');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      await writeLlama(join(dir, 'hf'), { ...PRESETS.tiny, shards: 1 });
      const q = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'quantize', join(dir, 'hf'), join(dir, GGUF), '--scheme', 'q8_0', '--format', 'gguf', '--gguf-names', 'llama'], { encoding: 'utf8' });
      if (q.status !== 0) throw new Error(`quantize exited ${q.status}: ${q.stderr}`);
      oracle = ggufPy(join(dir, GGUF));
      server = CodeServer.start('gguf', { vsix });
      browser = await launchBrowser();
    },
    { timeout: INSTALL_TIMEOUT_MS },
  );

  after(async () => {
    await browser?.close();
    server?.stop();
    cleanScratch('gguf');
  });

  const run = (name: string, body: (page: Page, shots: Shots) => Promise<void>) => journey(browser!, server!.folderUrl(dir), name, body);

  test('gguf: a .gguf opens in the viewer; a Q8_0 tensor shows its type, bits per weight and statistics', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const name = 'blk.0.attn_q.weight';
    const want = oracle.tensors.find((x) => x.name === name)!;
    assert.equal(want.type, 'Q8_0', 'the quantizer wrote the attention weights as Q8_0');
    const params = oracle.tensors.reduce((a, x) => a + x.elements, 0);
    const bytes = oracle.tensors.reduce((a, x) => a + x.bytes, 0);
    await run('gguf', async (page, shots) => {
      await doubleClickInExplorer(page, GGUF);
      const frame = await frameWith(page, '#gguf-bpw');
      // The header: bits per weight over every tensor, and the type mix naming Q8_0.
      assert.equal((await frame.textContent('#gguf-bpw'))?.trim(), `${((bytes * 8) / params).toFixed(2)} bits/weight`);
      assert.match((await frame.textContent('#gguf-mix')) ?? '', /^Q8_0 \d+%, BF16 \d+%$/);
      // The Model tab: the architecture's hyperparameters, read by gguf-py too.
      await frame.waitForSelector('#gguf-hparams', { timeout: UI_TIMEOUT_MS });
      const rows = await frame.$$eval('#gguf-hparams tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())));
      assert.deepEqual(rows.find((r) => r[2] === 'llama.block_count'), ['layers', String(oracle.meta['llama.block_count']), 'llama.block_count']);
      await shots.take(page, 'model-tab');
      // The blk.N blocks fold like layers.
      assert.equal((await frame.textContent('#tree .tree-row[data-id^="blk."] .label'))?.trim(), `blk ×${oracle.meta['llama.block_count']}`);
      await frame.fill('#filter >> input', name);
      await frame.click(`#tree .tree-row[data-id="${name}"]`);
      await frame.waitForSelector('#stat-count', { timeout: UI_TIMEOUT_MS });
      assert.equal((await frame.textContent('#selected-name'))?.trim(), name);
      assert.equal((await frame.textContent('#info-dtype'))?.trim(), 'Q8_0');
      // Q8_0: 34 bytes per 32 values.
      assert.equal((await frame.textContent('#info-bpw'))?.trim(), '8.50');
      const num = async (id: string) => Number(((await frame.textContent(id)) ?? '').replace(/,/g, ''));
      assert.equal(await num('#stat-count'), want.elements);
      // The page prints 6 significant digits; the values are gguf-py's dequantization.
      const close = (got: number, v: number) => Math.abs(got - v) <= 1e-5 * Math.max(1, Math.abs(v));
      assert.ok(close(await num('#stat-min'), want.min), `min ${await num('#stat-min')} vs ${want.min}`);
      assert.ok(close(await num('#stat-max'), want.max), `max ${await num('#stat-max')} vs ${want.max}`);
      assert.ok(Math.abs((await num('#stat-mean')) - want.mean) <= 1e-4 * Math.max(1e-3, want.max - want.min), `mean ${await num('#stat-mean')} vs ${want.mean}`);
      await frame.waitForSelector('#histogram .barlayer .point', { state: 'attached', timeout: UI_TIMEOUT_MS });
      await frame.waitForSelector('#heatmap-caption', { timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'q8_0-tensor');
    });
  });

  test('compare: "Compare Checkpoints…" pairs a safetensors model with its GGUF by llama.cpp names; the quantized tensors are the changed ones', { timeout: JOURNEY_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const st = join(dir, 'hf', 'model.safetensors');
    const hf = headerTensorNames(st);
    const type = new Map(oracle.tensors.map((x) => [x.name, x.type]));
    assert.deepEqual(hf.map(llamaCppName).sort(), [...type.keys()].sort(), 'the GGUF holds every tensor under its llama.cpp name');
    await run('compare-gguf', async (page, shots) => {
      await runCommand(page, 'Compare Checkpoints…');
      await answerFileDialog(page, 'Compare checkpoints: A', st);
      await answerFileDialog(page, 'Compare checkpoints: B', join(dir, GGUF));
      const frame = await frameWith(page, '#tensors tbody tr', 3 * UI_TIMEOUT_MS);
      await shots.take(page, 'report');
      // Changed tensors show first, alone: the quantized ones.
      const changedRows = await frame.$$eval('#tensors tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-name') ?? ''));
      // Every pair, identical ones too.
      await frame.uncheck('#changed-only');
      await frame.waitForFunction((n) => document.querySelectorAll('#tensors tbody tr').length === n, hf.length, { timeout: UI_TIMEOUT_MS });
      await shots.take(page, 'all-pairs');
      const rows = await frame.$$eval('#tensors tbody tr', (trs) => trs.map((tr) => ({ a: tr.getAttribute('data-name') ?? '', b: tr.getAttribute('data-name-b') ?? '', changed: tr.classList.contains('changed') })));
      // One row per tensor, each HF name beside its llama.cpp name.
      assert.deepEqual(rows.map((r) => [r.a, r.b]).sort(), hf.map((n) => [n, llamaCppName(n)]).sort());
      assert.match((await frame.textContent('#run-info')) ?? '', /Names matched as llama\.cpp/);
      // Quantizing changed exactly the tensors stored as Q8_0; those kept in BF16 (norms, rows that are no
      // whole number of blocks) compare as identical, q and k rows included, read back in HF's order.
      const quantized = hf.filter((n) => type.get(llamaCppName(n)) === 'Q8_0').sort();
      assert.deepEqual(rows.filter((r) => r.changed).map((r) => r.a).sort(), quantized);
      assert.deepEqual([...changedRows].sort(), quantized);
      assert.ok(quantized.length > 0 && quantized.length < hf.length);
      const text = (await frame.textContent(`#tensors tr[data-name="model.layers.0.self_attn.q_proj.weight"]`)) ?? '';
      assert.ok(text.includes('→ blk.0.attn_q.weight'), `the row shows B's name: ${text}`);
    });
  });
});
