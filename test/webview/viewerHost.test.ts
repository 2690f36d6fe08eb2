/**
 * The viewer's host side without VS Code: heatmap downsampling, result-cache keys,
 * the summary and module tree sent to the page, one tensor's stats, the scan, the
 * "Show as Text" document and its grammar, the protocol's request/response helper,
 * and the page's CSP. References are computed here from the definitions, in float64,
 * from values the test wrote itself.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModel } from '../../src/format/openModel';
import { disposeBackends } from '../../src/compute/backend';
import { HeatmapAccumulator, matrixShape } from '../../src/pipelines/viewer/heatmap';
import { ResultCache, resultKey, stampKey } from '../../src/pipelines/viewer/resultCache';
import { buildOutline, buildSummary, computeHeatmap, ModelService } from '../../src/pipelines/viewer/modelService';
import { summaryText } from '../../src/pipelines/viewer/summaryText';
import { webviewCsp, webviewHtml, MAPLIBRE_STYLE_ID } from '../../src/vscode/webviewHtml';
import { isToHostMessage, Requester, Responder, RemoteError, type ReplyFor, type RequestEventMessage, type ToHostMessage, type ToWebviewMessage } from '../../src/shared/protocol';
import { packStrings, tensorEntries, treeFromTable, tensorTable, treeTable, unpackStrings, type TreeNodeData } from '../../src/shared/protocol';
import { bf16Values, writeSafetensors, type T } from './safetensorsFile';

const dir = mkdtempSync(join(tmpdir(), 'tw-viewer-'));
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await disposeBackends();
});

// ---------------------------------------------------------------- heatmap

/** Reference: cell (i, j) covers rows [ceil(i·R/H), ceil((i+1)·R/H)) and likewise columns. */
function referenceHeatmap(values: Float64Array, rows: number, cols: number, H: number, W: number): { cells: Float64Array; bad: Uint8Array } {
  const cells = new Float64Array(H * W);
  const bad = new Uint8Array(H * W);
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) {
      for (let r = Math.ceil((i * rows) / H); r < Math.ceil(((i + 1) * rows) / H); r++) {
        for (let c = Math.ceil((j * cols) / W); c < Math.ceil(((j + 1) * cols) / W); c++) {
          const x = values[r * cols + c]!;
          if (!Number.isFinite(x)) bad[i * W + j] = 1;
          else cells[i * W + j] = Math.max(cells[i * W + j]!, Math.abs(x));
        }
      }
    }
  }
  return { cells, bad };
}

test('heatmap: each cell is the max |x| of its block, whatever the chunking', () => {
  const cases: [number, number, number][] = [
    [3, 5, 512],
    [7, 13, 4],
    [1000, 3, 512],
    [600, 700, 512],
    [100, 1030, 9],
  ];
  for (const [rows, cols, max] of cases) {
    const n = rows * cols;
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = Math.sin(i * 12.9898) * 43758.5453 - Math.floor(Math.sin(i * 12.9898) * 43758.5453) - 0.5;
    v[Math.floor(n / 3)] = NaN;
    v[n - 1] = -Infinity;
    v[5] = -7; // a single spike must survive downsampling
    const acc = new HeatmapAccumulator(rows, cols, max);
    // Chunks of odd sizes that split rows anywhere.
    for (let i = 0, k = 1; i < n; k = (k * 7 + 3) % 977) {
      const take = Math.min(n - i, k + 1);
      acc.push(v.subarray(i, i + take));
      i += take;
    }
    const img = acc.image();
    const H = Math.min(rows, max);
    const W = Math.min(cols, max);
    assert.deepEqual([img.height, img.width], [H, W]);
    const ref = referenceHeatmap(v, rows, cols, H, W);
    const scale = ref.cells.reduce((a, b) => Math.max(a, b), 0);
    assert.equal(img.scale, scale);
    assert.equal(scale, 7);
    for (let i = 0; i < H * W; i++) {
      assert.equal(img.nonFinite[i], ref.bad[i], `non-finite flag of cell ${i} (${rows}×${cols})`);
      assert.equal(img.pixels[i], Math.round((ref.cells[i]! / scale) * 255), `cell ${i} (${rows}×${cols} → ${H}×${W})`);
    }
  }
  assert.deepEqual(matrixShape([4, 3, 5]), { rows: 12, cols: 5 });
  assert.deepEqual(matrixShape([9]), { rows: 1, cols: 9 });
  assert.deepEqual(matrixShape([]), { rows: 1, cols: 1 });
});

test('heatmap from a BF16 file: decoded chunk by chunk, same as the reference over the written values', async () => {
  const rows = 300;
  const cols = 700;
  const values = bf16Values(rows * cols, 3);
  values[123 * cols + 456] = 100; // exact in BF16
  const path = join(dir, 'heat.safetensors');
  writeSafetensors(path, [{ name: 'w', dtype: 'BF16', shape: [rows, cols], values }]);
  const model = await openModel(path);
  try {
    const img = await computeHeatmap(model, model.tensor('w')!, 512);
    assert.deepEqual([img.width, img.height, img.rows, img.cols], [512, 300, 300, 700]);
    const ref = referenceHeatmap(values, rows, cols, 300, 512);
    assert.equal(img.scale, 100);
    const want = Uint8Array.from(ref.cells, (c) => Math.round((c / 100) * 255));
    assert.deepEqual(img.pixels, want);
    // Cancelled before it starts: nothing is computed.
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(computeHeatmap(model, model.tensor('w')!, 512, ac.signal), (e: Error) => e.name === 'CancelledError' || e.name === 'AbortError');
  } finally {
    await model.close();
  }
});

// ------------------------------------------------------------------ cache

test('result keys change with the file’s size or mtime; the cache evicts the least recently used', () => {
  const a = stampKey([{ path: '/m.safetensors', bytes: 100, mtimeMs: 1 }]);
  const b = stampKey([{ path: '/m.safetensors', bytes: 100, mtimeMs: 2 }]);
  const c = stampKey([{ path: '/m.safetensors', bytes: 101, mtimeMs: 1 }]);
  assert.equal(new Set([a, b, c]).size, 3);
  assert.equal(resultKey(a, 'stats', { name: 'x', bins: 8 }), resultKey(a, 'stats', { bins: 8, name: 'x' }));
  assert.notEqual(resultKey(a, 'stats', { name: 'x', bins: 8 }), resultKey(a, 'stats', { name: 'x', bins: 9 }));
  assert.notEqual(resultKey(a, 'stats', { name: 'x' }), resultKey(b, 'stats', { name: 'x' }));
  const cache = new ResultCache<number>(2);
  cache.set('1', 1);
  cache.set('2', 2);
  assert.equal(cache.get('1'), 1); // 1 is now the most recent
  cache.set('3', 3);
  assert.equal(cache.get('2'), undefined);
  assert.equal(cache.get('1'), 1);
  assert.equal(cache.get('3'), 3);
});

// --------------------------------------------------------- summary & tree

function leaves(n: TreeNodeData, out: TreeNodeData[] = []): TreeNodeData[] {
  if (n.kind === 'tensor') out.push(n);
  n.children?.forEach((c) => leaves(c, out));
  return out;
}

function find(n: TreeNodeData, pred: (n: TreeNodeData) => boolean): TreeNodeData | undefined {
  if (pred(n)) return n;
  for (const c of n.children ?? []) {
    const f = find(c, pred);
    if (f) return f;
  }
  return undefined;
}

test('summary: every tensor appears once in the tree, runs and MoE experts fold and expand to their real tensors', async () => {
  const tensors: T[] = [];
  const small = (name: string, shape: number[], dtype: T['dtype'] = 'BF16') => tensors.push({ name, dtype, shape, values: bf16Values(shape.reduce((a, b) => a * b, 1) * (dtype === 'C64' ? 2 : 1), tensors.length) });
  small('model.embed_tokens.weight', [16, 8]);
  for (let l = 0; l < 6; l++) {
    small(`model.layers.${l}.self_attn.q_proj.weight`, [8, 8]);
    small(`model.layers.${l}.input_layernorm.weight`, [8], 'F32');
    for (let e = 0; e < 4; e++) small(`model.layers.${l}.mlp.experts.${e}.w1.weight`, [4, 8]);
    small(`model.layers.${l}.mlp.gate.weight`, [4, 8]);
  }
  small('model.norm.weight', [8], 'F32');
  small('lm_head.weight', [16, 8]);
  small('extra.complex', [2], 'C64');
  const path = join(dir, 'moe.safetensors');
  writeSafetensors(path, tensors, { format: 'pt', 'a key': 'a "quoted"\nvalue' });
  const model = await openModel(path);
  try {
    const s = buildSummary(model);
    // What the page does with the reply after the structured clone.
    const ents = tensorEntries(structuredClone(s.tensors));
    const tree = treeFromTable(structuredClone(s.tree), ents);
    assert.equal(ents.length, tensors.length);
    // Both column encodings round-trip.
    assert.deepEqual(tensorEntries(tensorTable(ents)), ents);
    assert.deepEqual(treeFromTable(treeTable(tree), ents), tree);
    assert.deepEqual(ents.map((e) => [e.name, e.dtype, e.shape]), tensors.map((t) => [t.name, t.dtype, t.shape]));
    // Every tensor exactly once, by index, with its own name as path.
    const ls = leaves(tree);
    assert.equal(ls.length, tensors.length);
    assert.deepEqual(ls.map((l) => l.tensor).sort((a, b) => a! - b!), tensors.map((_, i) => i));
    for (const l of ls) assert.equal(l.path, ents[l.tensor!]!.name);
    // Unique ids for the page's expansion state.
    const ids: string[] = [];
    const walk = (n: TreeNodeData) => {
      ids.push(n.path);
      n.children?.forEach(walk);
    };
    walk(tree);
    assert.equal(new Set(ids).size, ids.length);
    const run = find(tree, (n) => n.kind === 'run' && n.label.startsWith('layers'));
    assert.ok(run, 'layers fold into a run');
    assert.equal(run.label, 'layers ×6');
    assert.deepEqual(run.children!.map((c) => c.label), ['0', '1', '2', '3', '4', '5']);
    assert.equal(run.tensors, 6 * 7);
    const experts = find(run.children![4]!, (n) => n.kind === 'run' && n.label.startsWith('experts'));
    assert.ok(experts, 'experts fold inside each layer');
    assert.equal(experts.label, 'experts ×4');
    assert.deepEqual(leaves(experts).map((l) => l.path), [0, 1, 2, 3].map((e) => `model.layers.4.mlp.experts.${e}.w1.weight`));
    // Totals by dtype against a sum over what was written.
    const want = new Map<string, { n: number; p: number }>();
    for (const t of tensors) {
      const p = t.shape.reduce((a, b) => a * b, 1);
      const w = want.get(t.dtype) ?? { n: 0, p: 0 };
      want.set(t.dtype, { n: w.n + 1, p: w.p + p });
    }
    for (const d of s.totals.byDtype) assert.deepEqual([d.tensors, d.params], [want.get(d.dtype)!.n, want.get(d.dtype)!.p]);
    const params = [...want.values()].reduce((a, w) => a + w.p, 0);
    assert.deepEqual(
      s.memory.map((m) => [m.format, m.bytes]),
      [
        ['FP32', params * 4],
        ['BF16', params * 2],
        ['FP8', params],
        ['Q8_0', Math.ceil((params * 34) / 32)],
        ['Q4_0', Math.ceil((params * 18) / 32)],
      ],
    );
    assert.equal(ents.find((t) => t.name === 'extra.complex')!.decodable, false);

    // Show as Text: one line per tensor that the grammar's tensor rule recognises.
    const text = summaryText(s);
    const grammar = JSON.parse(readFileSync(join(__dirname, '..', 'syntaxes', 'safetensors-summary.tmLanguage.json'), 'utf8'));
    const tensorRule = new RegExp(grammar.repository.tensor.begin);
    const numberRule = new RegExp(grammar.repository.numbers.match, 'g');
    const metaRule = new RegExp(grammar.repository.metadata.match);
    for (const t of ents) {
      const line = text.split('\n').find((l) => l.startsWith(`  ${t.name}  `));
      assert.ok(line, t.name);
      const m = tensorRule.exec(line);
      assert.ok(m, line);
      assert.deepEqual([m[1], m[2]], [t.name, t.dtype]);
      assert.ok(line.includes(`[${t.shape.join(', ')}]`));
      assert.ok((line.match(numberRule) ?? []).length >= t.shape.length + 2);
    }
    // Metadata is quoted, so a newline in a value cannot start a fake section.
    const metaLine = text.split('\n').find((l) => l.includes('"a key"'))!;
    assert.ok(metaRule.test(metaLine), metaLine);
    assert.equal(JSON.parse(metaLine.split(' = ')[1]!), 'a "quoted"\nvalue');
  } finally {
    await model.close();
  }
});

// ------------------------------------------------------------ stats & scan

function reference(values: Float64Array) {
  const finite = [...values].filter(Number.isFinite);
  const mean = finite.reduce((a, b) => a + b, 0) / finite.length;
  const std = Math.sqrt(finite.reduce((a, b) => a + (b - mean) ** 2, 0) / finite.length);
  return {
    count: values.length,
    finite: finite.length,
    nan: [...values].filter(Number.isNaN).length,
    zeros: finite.filter((x) => x === 0).length,
    min: Math.min(...finite),
    max: Math.max(...finite),
    absMax: Math.max(...finite.map(Math.abs)),
    mean,
    std,
  };
}

test('tensor stats: the service’s reply matches a float64 reference, is cached per file version, and a changed file gives new numbers', async () => {
  const path = join(dir, 'stats.safetensors');
  const w = bf16Values(64 * 48, 11);
  w[17] = NaN;
  w[18] = 0;
  const z = new Float64Array(40);
  const big = Float64Array.from({ length: 32 }, (_, i) => (i === 3 ? 1e5 : i));
  writeSafetensors(path, [
    { name: 'w', dtype: 'F32', shape: [64, 48], values: w },
    { name: 'zeros', dtype: 'BF16', shape: [40], values: z },
    { name: 'big', dtype: 'F32', shape: [4, 8], values: big },
    { name: 'cplx', dtype: 'C64', shape: [3], values: new Float64Array(6) },
  ]);
  utimesSync(path, 1_000_000, 1_000_000);
  const model = await openModel(path);
  const svc = new ModelService(model, { backend: () => 'cpu' });
  try {
    const r = await svc.tensorStats('w', 32);
    const ref = reference(w);
    const s = r.stats;
    assert.deepEqual([s.count, s.finite, s.nan, s.zeros], [ref.count, ref.finite, ref.nan, ref.zeros]);
    assert.deepEqual([s.min, s.max, s.absMax], [ref.min, ref.max, ref.absMax]);
    assert.ok(Math.abs(s.mean - ref.mean) <= 1e-9 * Math.max(1, Math.abs(ref.mean)), `mean ${s.mean} vs ${ref.mean}`);
    assert.ok(Math.abs(s.std - ref.std) <= 1e-9 * ref.std, `std ${s.std} vs ${ref.std}`);
    assert.ok(s.histogram.counts instanceof Float64Array, 'bins travel as a typed array');
    assert.equal(s.histogram.counts.length, 32);
    assert.equal(s.histogram.counts.reduce((a, b) => a + b, 0), ref.finite);
    assert.equal(s.topK[0]!.value, w.reduce((a, x) => (Number.isFinite(x) && Math.abs(x) > Math.abs(a) ? x : a), 0));
    assert.equal(await svc.tensorStats('w', 32), r, 'second request is served from the cache');
    assert.notEqual(await svc.tensorStats('w', 16), r, 'other bins are another result');
    await assert.rejects(svc.tensorStats('nope', 32), (e: Error & { code?: string }) => e.code === 'not_found' && e.message.includes('nope'));
    await assert.rejects(svc.tensorStats('cplx', 32), (e: Error & { code?: string }) => e.code === 'unsupported');

    // Scan: a row per tensor, badges from the definitions, monotone byte progress ending at the total.
    const events: RequestEventMessage[] = [];
    const done = await svc.scan(16, (e) => events.push(e));
    assert.equal(done.tensors, 4);
    const rows = events.flatMap((e) => (e.type === 'scanRows' ? e.rows : []));
    assert.deepEqual(rows.map((x) => x.name).sort(), ['big', 'cplx', 'w', 'zeros']);
    const by = Object.fromEntries(rows.map((x) => [x.name, x]));
    assert.deepEqual(by.w!.badges, ['non-finite']);
    assert.deepEqual(by.zeros!.badges, ['all-zero']);
    assert.equal(by.zeros!.sparsity, 1);
    assert.deepEqual(by.big!.badges, ['f16-overflow']);
    assert.equal(by.cplx!.error?.code, 'unsupported');
    const progress = events.filter((e) => e.type === 'progress');
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]!.done >= progress[i - 1]!.done);
    assert.equal(progress.at(-1)!.done, model.tensors.reduce((a, t) => a + t.byteLength, 0));
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(svc.scan(16, () => undefined, ac.signal), (e: Error) => e.name === 'CancelledError');
  } finally {
    await model.close();
  }

  // The file changes on disk: a new service (as the document makes after a change) sees new numbers.
  const w2 = w.map((x, i) => (i === 0 ? 50 : x));
  writeSafetensors(path, [
    { name: 'w', dtype: 'F32', shape: [64, 48], values: w2 },
    { name: 'zeros', dtype: 'BF16', shape: [40], values: z },
    { name: 'big', dtype: 'F32', shape: [4, 8], values: big },
    { name: 'cplx', dtype: 'C64', shape: [3], values: new Float64Array(6) },
  ]);
  utimesSync(path, 2_000_000, 2_000_000);
  const model2 = await openModel(path);
  try {
    const r2 = await new ModelService(model2, { backend: () => 'cpu' }).tensorStats('w', 32);
    assert.equal(r2.stats.max, 50);
  } finally {
    await model2.close();
  }
});

// ------------------------------------------------------------------ protocol

test('protocol: replies, streamed events, errors as replies, aborts', async () => {
  let toHost: (m: ToHostMessage) => void = () => undefined;
  let release: () => void = () => undefined;
  const seenSignals: AbortSignal[] = [];
  const requester = new Requester((m) => toHost(structuredClone(m)));
  const responder = new Responder(
    (m: ToWebviewMessage) => requester.handle(structuredClone(m)),
    {
      summary: async () => {
        throw Object.assign(new Error("/x.safetensors: tensor 'a': truncated"), { code: 'truncated' });
      },
      tensorStats: async (r, ctx) => {
        ctx.emit({ type: 'progress', done: 1, total: 2, unit: 'bytes' });
        return { type: 'tensorStats', backend: 'cpu', seconds: 0, stats: { name: r.name } as ReplyFor['tensorStats']['stats'] };
      },
      heatmap: async (_r, ctx) => {
        seenSignals.push(ctx.signal);
        await new Promise<void>((res) => {
          release = res;
          ctx.signal.addEventListener('abort', () => res());
        });
        return { type: 'heatmap', name: 'x', width: 1, height: 1, rows: 1, cols: 1, pixels: new Uint8Array(1), nonFinite: new Uint8Array(1), scale: 0 };
      },
      ggufArray: async (r) => ({ type: 'ggufArray', key: r.key, start: r.start, total: 0, items: [] }),
      scan: async () => ({ type: 'scan', tensors: 0, seconds: 0, backend: 'cpu' }),
      scaleStats: async () => {
        throw Object.assign(new Error('no scales'), { code: 'unsupported' });
      },
      quantPreview: async () => ({ type: 'quantPreview', bytesBefore: 0, params: 0, sampleFraction: 0, seconds: 0, rows: [] }),
      reopenWithDefault: async () => ({ type: 'done' }),
      showAsText: async () => ({ type: 'done' }),
    },
    (e) => ({ code: (e as { code?: string }).code ?? 'internal', message: (e as Error).message }),
  );
  toHost = (m) => void responder.handle(m);

  const events: RequestEventMessage[] = [];
  const r = await requester.request({ type: 'tensorStats', name: 'w', bins: 4 }, { onEvent: (e) => events.push(e) });
  assert.equal(r.stats.name, 'w');
  assert.deepEqual(events, [{ type: 'progress', done: 1, total: 2, unit: 'bytes' }]);

  await assert.rejects(requester.request({ type: 'summary' }), (e: unknown) => e instanceof RemoteError && e.info.code === 'truncated' && e.message.includes("tensor 'a'"));

  const ac = new AbortController();
  const pending = requester.request({ type: 'heatmap', name: 'x', maxSize: 8 }, { signal: ac.signal });
  await new Promise((r) => setImmediate(r));
  ac.abort();
  await assert.rejects(pending, (e: unknown) => e instanceof RemoteError && e.cancelled);
  assert.equal(seenSignals[0]!.aborted, true, 'the host-side signal was aborted');
  release();

  // The host checks the shape of what the page sends before acting on it.
  assert.equal(isToHostMessage({ type: 'request', id: 1, body: { type: 'summary' } }), true);
  assert.equal(isToHostMessage({ type: 'request', id: '1', body: { type: 'summary' } }), false);
  assert.equal(isToHostMessage({ type: 'request', id: 1 }), false);
  assert.equal(isToHostMessage({ type: 'abort', id: 3 }), true);
  assert.equal(isToHostMessage(null), false);
  assert.equal(isToHostMessage({ type: 'reply', id: 1, ok: true }), false);

  // A message type the host does not know gets an error reply, not silence.
  const replies: ToWebviewMessage[] = [];
  const bare = new Responder((m) => replies.push(m), {} as never, (e) => ({ code: (e as { code?: string }).code ?? 'internal', message: String(e) }));
  await bare.handle({ type: 'request', id: 9, body: { type: 'nonsense' } as never });
  assert.deepEqual(replies.map((m) => m.type === 'reply' && !m.ok && [m.id, m.error.code]), [[9, 'unknown_request']]);
});

// ----------------------------------------------------------------------- CSP

test('shapes cross as 32-bit dims unless one needs more, and come back exactly either way', () => {
  const row = (name: string, shape: number[]) => ({ name, dtype: 'BF16', shape, numel: shape.reduce((a, b) => a * b, 1), file: 0, byteOffset: 0, byteLength: 2 * shape.reduce((a, b) => a * b, 1), decodable: true });
  const narrow = [row('a', [4096, 11008]), row('b', [])];
  assert.ok(tensorTable(narrow).dims instanceof Uint32Array);
  assert.deepEqual(tensorEntries(structuredClone(tensorTable(narrow))), narrow);
  const wide = [row('a', [2 ** 33]), row('b', [3, 5])];
  assert.ok(tensorTable(wide).dims instanceof Float64Array);
  assert.deepEqual(tensorEntries(structuredClone(tensorTable(wide))), wide);
});

test('outline: the whole tree down to the members of folded runs, with exactly the tensors it shows', async () => {
  const tensors: T[] = [];
  const small = (name: string, shape: number[]) => tensors.push({ name, dtype: 'BF16', shape, values: bf16Values(shape.reduce((a, b) => a * b, 1), tensors.length) });
  small('model.embed_tokens.weight', [16, 8]);
  for (let l = 0; l < 5; l++) {
    small(`model.layers.${l}.self_attn.q_proj.weight`, [8, 8]);
    for (let e = 0; e < 3; e++) small(`model.layers.${l}.mlp.experts.${e}.w1.weight`, [4, 8]);
  }
  small('model.norm.weight', [8]);
  small('lm_head.weight', [16, 8]);
  const path = join(dir, 'outline.safetensors');
  writeSafetensors(path, tensors, { format: 'pt' });
  const model = await openModel(path);
  try {
    const whole = buildSummary(model);
    const outline = buildOutline(model);
    assert.equal(outline.outline, true);
    assert.equal(whole.outline, undefined);
    assert.deepEqual(outline.totals, whole.totals);
    assert.deepEqual(outline.memory, whole.memory);
    const wEnts = tensorEntries(whole.tensors);
    const oEnts = tensorEntries(structuredClone(outline.tensors));
    const wTree = treeFromTable(whole.tree, wEnts);
    const oTree = treeFromTable(structuredClone(outline.tree), oEnts);
    // The expected outline, derived from the whole tree: a run's members keep their rows, not their contents.
    // Tensor indices differ (each tree indexes its own table): compare without them, then check each one.
    const cut = (n: TreeNodeData, inRun: boolean): TreeNodeData => {
      const { children, tensor: _index, ...rest } = n;
      if (inRun) return rest;
      return children ? { ...rest, children: children.map((c) => cut(c, n.kind === 'run')) } : rest;
    };
    assert.deepEqual(cut(oTree, false), cut(wTree, false));
    const shownLeaves = leaves(oTree);
    for (const l of shownLeaves) assert.deepEqual(oEnts[l.tensor!], wEnts.find((e) => e.name === l.path));
    assert.equal(shownLeaves.length, oEnts.length);
    // Only what the outline shows, outside the runs: the embedding, the final norm and the head.
    assert.deepEqual(oEnts.map((e) => e.name).sort(), ['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight']);
    const run = find(oTree, (n) => n.kind === 'run')!;
    assert.deepEqual(run.children!.map((c) => c.path), [0, 1, 2, 3, 4].map((l) => `model.layers.${l}`));
  } finally {
    await model.close();
  }
});

test('string columns cross as bytes and come back exactly, lone surrogates included', () => {
  const plain = ['model.layers.0.self_attn.q_proj.weight', '', 'lm_head.weight', 'é', '層.重み', 'emoji 🙂 pair'];
  const p = packStrings(plain);
  assert.equal(p.utf16, false);
  assert.deepEqual(unpackStrings(structuredClone(p)), plain);
  // The UTF-8 bytes are the concatenation's, as an independent encoder writes them.
  assert.deepEqual(Buffer.from(p.bytes), Buffer.from(plain.join(''), 'utf8'));
  // A JSON header may name a tensor with an escaped lone surrogate; UTF-8 cannot carry it, UTF-16 can.
  const odd = ['a', JSON.parse('"x\\ud800y"') as string, JSON.parse('"\\udc00"') as string, 'b'];
  const q = packStrings(odd);
  assert.equal(q.utf16, true);
  assert.deepEqual(unpackStrings(structuredClone(q)), odd);
  assert.deepEqual(unpackStrings(packStrings([])), []);
});

test('the page’s CSP: no inline or eval, scripts and styles by nonce, and the MapLibre style id matches the bundled Plotly', () => {
  const csp = webviewCsp('https://webview.example', 'N0NCE');
  assert.match(csp, /^default-src 'none'/);
  assert.ok(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval'));
  assert.match(csp, /script-src 'nonce-N0NCE'/);
  const html = webviewHtml({ scriptUri: 'https://webview.example/v.js', styleUri: 'https://webview.example/v.css', plotlyUri: 'https://webview.example/p.js', cspSource: 'https://webview.example', nonce: 'N0NCE', title: '<x>' });
  assert.ok(html.includes('<script nonce="N0NCE" src="https://webview.example/v.js" data-plotly="https://webview.example/p.js">'));
  assert.ok(html.includes('<title>&lt;x&gt;</title>'));
  const plotly = readFileSync(join(__dirname, '..', 'node_modules', 'plotly.js-dist-min', 'plotly.min.js'), 'utf8');
  assert.ok(plotly.includes(`getElementById("${MAPLIBRE_STYLE_ID}")`), 'Plotly still guards its MapLibre CSS with this id');
  assert.ok(plotly.includes('plotly.js-style-'), 'Plotly still looks its style element up by id');
});

test('an adapter file is described (kohya: rank from the shapes, scale = alpha / rank); a plain model is not', async () => {
  const path = join(dir, 'adapter.safetensors');
  const stem = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
  writeSafetensors(path, [
    { name: `${stem}.alpha`, dtype: 'F32', shape: [], values: Float64Array.of(8) },
    { name: `${stem}.lora_down.weight`, dtype: 'F32', shape: [4, 16], values: bf16Values(64, 1) },
    { name: `${stem}.lora_up.weight`, dtype: 'F32', shape: [16, 4], values: bf16Values(64, 2) },
  ]);
  const model = await openModel(path);
  try {
    const a = await new ModelService(model, { local: true }).adapter();
    assert.ok(a, 'described');
    assert.equal(a.format, 'kohya');
    assert.deepEqual([a.modules, a.ranks, a.alphas, a.scales], [1, [4], [8], [2]]);
    // Not on local disk: no description (the adapter reader needs the file system).
    assert.equal(await new ModelService(model, { local: false }).adapter(), undefined);
  } finally {
    await model.close();
  }
  const plain = join(dir, 'plain.safetensors');
  writeSafetensors(plain, [{ name: 'w', dtype: 'F32', shape: [2], values: Float64Array.of(1, 2) }]);
  const m2 = await openModel(plain);
  try {
    assert.equal(await new ModelService(m2, { local: true }).adapter(), undefined);
  } finally {
    await m2.close();
  }
});

test('a PyTorch checkpoint whose pickle names os.system: the summary carries the verdict, the findings and the reader notes', async () => {
  const { cleanTensorPickle, torchZip } = await import('../pickle/pickleBuilder');
  const { writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'tw-host-pt-'));
  const path = join(dir, 'evil.pt');
  const pkl = cleanTensorPickle('w', 4).str('x').global('posix', 'system').mark().str('touch /nonexistent/canary').tuple().reduce().op(0x73).stop().build();
  writeFileSync(path, torchZip(pkl, { '0': new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) }));
  const model = await openModel(path);
  try {
    const s = buildSummary(model);
    assert.equal(s.safety?.clean, false);
    assert.match(s.safety?.text ?? '', /calls 1 function that is not tensor rebuilds, some of which can run code/);
    assert.equal(s.safety?.findings?.length, 1);
    assert.match(s.safety!.findings![0], /^dangerous: posix\.system \(archive\/data\.pkl, byte \d+\)$/);
    assert.ok(s.notes?.some((n) => n.startsWith('PyTorch zip checkpoint')));
    const stats = await new ModelService(model, { backend: () => 'cpu' }).tensorStats('w', 8);
    assert.equal(stats.stats.max, 4);
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
