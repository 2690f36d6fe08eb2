import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { mergeModelsCommand } from '../../src/cli/mergeModels';
import { decodeToF64 } from '../../src/format/decode';
import { openModel } from '../../src/format/openModel';
import { mergeModels, MergeConfigError, MergeModelsError } from '../../src/pipelines/mergeModels/mergeModels';
import { layerT } from '../../src/pipelines/mergeModels/params';
import { writeFineTuned, writeLlama } from '../fixtures/llama';
import { gradientRef, gtaRef, linearRef, magnitudeRef, modelStockRef, outliersRef, slerpRef, type Arr } from './mergeModelsOracle';

const root = mkdtempSync(join(tmpdir(), 'tw-merge-models-'));
const base = join(root, 'base');
const ft = [1, 2, 3].map((i) => join(root, `ft${i}`));
after(() => rmSync(root, { recursive: true, force: true }));

before(async () => {
  // A tiny Llama (4 layers, BF16, two shards) and three fine-tunes of every layer's linear weights.
  await writeLlama(base, { dtype: 'BF16', shards: 2 });
  for (const [i, dir] of ft.entries()) await writeFineTuned(base, dir, { layersChanged: [0, 1, 2, 3], seed: 100 + i, deltaStd: 0.004 });
});

async function load(path: string): Promise<Map<string, { shape: readonly number[]; v: Arr }>> {
  const m = await openModel(path);
  const out = new Map<string, { shape: readonly number[]; v: Arr }>();
  try {
    for (const t of m.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await m.read(t, 0, bytes);
      const v = new Float64Array(t.numel);
      decodeToF64(t.dtype, bytes, v, t.numel);
      out.set(t.name, { shape: t.shape, v });
    }
  } finally {
    await m.close();
  }
  return out;
}

let n = 0;
// Chunks of 1000 values: tensors of the tiny model span many chunks, and rows (64 wide) straddle them.
async function run(yaml: string, seed?: number, chunkElements = 1000): Promise<string> {
  const cfg = join(root, `cfg${++n}.yml`);
  writeFileSync(cfg, yaml);
  const out = join(root, `out${n}`);
  await mergeModels({ config: cfg, output: out, seed, chunkElements });
  return out;
}

/** Every output value equals the float64 reference rounded to f32 (1 ulp of f32 allowed for the order of sums). */
function assertClose(got: Arr, want: Arr, name: string): void {
  let bad = 0;
  let first = '';
  for (let i = 0; i < want.length; i++) {
    const w = Math.fround(want[i]);
    if (Math.abs(got[i] - w) > Math.abs(w) * 2 ** -23 + 1e-30) {
      if (bad++ === 0) first = `[${i}] got ${got[i]} want ${w}`;
    }
  }
  assert.equal(bad, 0, `${name}: ${bad} of ${want.length} values off, first ${first}`);
}

const models = () => Promise.all([base, ...ft].map(load));
const delta = (x: Arr, b: Arr) => x.map((v, i) => v - b[i]);

describe('merge-models methods against float64 references', () => {
  it('linear: weighted average, normalized', async () => {
    const out = await load(await run(`merge_method: linear\ndtype: float32\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: 0.5}\n  - model: ${ft[1]}\n    parameters: {weight: 0.3}\n  - model: ${ft[2]}\n    parameters: {weight: 0.25}\n`));
    const [, a, b, c] = await models();
    assert.equal(out.size, a.size);
    for (const [name, { v }] of out) assertClose(v, linearRef([a, b, c].map((m) => m.get(name)!.v), [0.5, 0.3, 0.25], true), name);
  });

  it('task_arithmetic: weighted task vectors onto the base, lambda, no normalization by default', async () => {
    const out = await load(await run(`merge_method: task_arithmetic\nbase_model: ${base}\ndtype: float32\nparameters: {lambda: 0.9}\nmodels:\n  - model: ${base}\n  - model: ${ft[0]}\n    parameters: {weight: 0.7}\n  - model: ${ft[1]}\n    parameters: {weight: 0.5}\n`));
    const [b, x, y] = await models();
    for (const [name, { v }] of out) {
      const b0 = b.get(name)!.v;
      assertClose(v, gtaRef(b0, [delta(x.get(name)!.v, b0), delta(y.get(name)!.v, b0)], { weights: [0.7, 0.5], consensus: false, normalize: false, lambda: 0.9 }), name);
    }
  });

  it('ties: magnitude trim by density (per tensor filters), sign election, disjoint mean; weights as a layer gradient', async () => {
    const yaml = `merge_method: ties\nbase_model: ${base}\ndtype: float32\nmodels:\n  - model: ${ft[0]}\n    parameters:\n      weight: [0.2, 1.0]\n      density: [{filter: mlp, value: 0.3}, {value: 0.6}]\n  - model: ${ft[1]}\n    parameters: {weight: 0.5, density: 0.5}\n  - model: ${ft[2]}\n    parameters: {weight: 0.8, density: 0.4}\n`;
    const out = await load(await run(yaml));
    const [b, x, y, z] = await models();
    let checkedTrim = 0;
    for (const [name, { v }] of out) {
      const t = layerT(name, 4);
      const b0 = b.get(name)!.v;
      const d0 = magnitudeRef(delta(x.get(name)!.v, b0), name.includes('mlp') ? 0.3 : 0.6);
      const ds = [d0, magnitudeRef(delta(y.get(name)!.v, b0), 0.5), magnitudeRef(delta(z.get(name)!.v, b0), 0.4)];
      if (d0.some((d) => d !== 0)) checkedTrim++;
      assertClose(v, gtaRef(b0, ds, { weights: [gradientRef([0.2, 1.0], t), 0.5, 0.8], consensus: true, normalize: true }), name);
    }
    assert.ok(checkedTrim >= 28, `only ${checkedTrim} tensors had a delta`);
  });

  it('breadcrumbs and breadcrumbs_ties: drop the largest gamma and the smallest of |Δ|', async () => {
    for (const method of ['breadcrumbs', 'breadcrumbs_ties']) {
      const out = await load(await run(`merge_method: ${method}\nbase_model: ${base}\ndtype: float32\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: 1.0, density: 0.8, gamma: 0.05}\n  - model: ${ft[1]}\n    parameters: {weight: 0.6, density: 0.7}\n`));
      const [b, x, y] = await models();
      for (const [name, { v }] of out) {
        const b0 = b.get(name)!.v;
        const ds = [outliersRef(delta(x.get(name)!.v, b0), 0.8, 0.05), outliersRef(delta(y.get(name)!.v, b0), 0.7, 0.01)];
        assertClose(v, gtaRef(b0, ds, { weights: [1, 0.6], consensus: method === 'breadcrumbs_ties', normalize: false }), `${method} ${name}`);
      }
    }
  });

  it('slerp: t by layer gradient and by tensor filter; colinear tensors fall back to linear', async () => {
    const yaml = `merge_method: slerp\nbase_model: ${base}\ndtype: float32\nparameters:\n  t:\n    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n    - value: 0.4\nmodels:\n  - model: ${base}\n  - model: ${ft[0]}\n`;
    const out = await load(await run(yaml));
    const [b, x] = await models();
    for (const [name, { v }] of out) {
      const t = name.includes('self_attn') ? gradientRef([0, 0.5, 0.3, 0.7, 1], layerT(name, 4)) : 0.4;
      assertClose(v, slerpRef(t, b.get(name)!.v, x.get(name)!.v), name);
    }
    // Embeddings are identical in both models: colinear, so (1 − t)·a + t·a = a.
    assertClose(out.get('model.embed_tokens.weight')!.v, b.get('model.embed_tokens.weight')!.v, 'embed');
  });

  it('model_stock: whole-tensor and filter-wise angles', async () => {
    for (const filterWise of [false, true]) {
      const out = await load(await run(`merge_method: model_stock\nbase_model: ${base}\ndtype: float32\nparameters: {filter_wise: ${filterWise}}\nmodels:\n  - model: ${base}\n  - model: ${ft[0]}\n  - model: ${ft[1]}\n  - model: ${ft[2]}\n`));
      const [b, x, y, z] = await models();
      for (const [name, { v, shape }] of out) {
        const rowLen = filterWise ? shape[shape.length - 1] : v.length;
        assertClose(v, modelStockRef(b.get(name)!.v, [x, y, z].map((m) => m.get(name)!.v), rowLen), `${filterWise} ${name}`);
      }
    }
  });
});

describe('merge-models DARE', () => {
  const dare = (method: string, density: number) => `merge_method: ${method}\nbase_model: ${base}\ndtype: float32\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: 1.0, density: ${density}}\n`;

  it('dare_linear keeps each element with probability density and rescales it by 1/density', async () => {
    const out = await load(await run(dare('dare_linear', 0.3), 7));
    const [b, x] = await models();
    let kept = 0;
    let total = 0;
    for (const [name, { v }] of out) {
      const b0 = b.get(name)!.v;
      const d = delta(x.get(name)!.v, b0);
      for (let i = 0; i < v.length; i++) {
        if (d[i] === 0) continue;
        total++;
        const keep = Math.fround(b0[i] + d[i] / 0.3);
        const drop = Math.fround(b0[i]);
        assert.ok(v[i] === keep || v[i] === drop, `${name}[${i}]: ${v[i]} is neither ${keep} nor ${drop}`);
        if (v[i] === keep && keep !== drop) kept++;
      }
    }
    // Binomial(total, 0.3): five standard deviations either side.
    const sd = Math.sqrt(total * 0.3 * 0.7);
    assert.ok(total > 100_000, `${total} changed elements`);
    assert.ok(Math.abs(kept - 0.3 * total) < 5 * sd, `kept ${kept} of ${total}, expected ${0.3 * total} ± ${5 * sd}`);
  });

  it('dare_ties: the same seed gives the same bytes, another seed other bytes', async () => {
    const yaml = `merge_method: dare_ties\nbase_model: ${base}\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: 1.0, density: 0.5}\n  - model: ${ft[1]}\n    parameters: {weight: 0.5, density: 0.6}\n`;
    const shards = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().map((f) => readFileSync(join(dir, f)));
    const a = shards(await run(yaml, 42));
    // Other chunk boundaries: each draw depends on the element's index, not on the chunk it is read in.
    const b = shards(await run(yaml, 42, 4096));
    const c = shards(await run(yaml, 43));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });
});

describe('merge-models on the worker pool', () => {
  // BF16 differences repeat (|Δ| takes few distinct values near a boundary), so the trims' boundary
  // keys are shared by many elements across chunks: the pooled path must settle them in tensor order.
  for (const [method, dtype] of [['ties', 'bfloat16'], ['ties', 'float16'], ['task_arithmetic', 'bfloat16'], ['ties', 'float32']] as const) {
    it(`${method} to ${dtype}: the same bytes as the in-thread kernel, for chunks of 1000 and of 333`, async () => {
      const d = (x: string) => (method === 'ties' ? `, density: ${x}` : '');
      const yaml = `merge_method: ${method}\nbase_model: ${base}\ndtype: ${dtype}\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: 0.7${d('0.35')}}\n  - model: ${ft[1]}\n    parameters: {weight: -0.4${d('0.6')}}\n  - model: ${ft[2]}\n    parameters: {weight: 0.5${d('[0.0, 1.0]')}}\n`;
      for (const chunkElements of [1000, 333]) {
        const cfg = join(root, `cfg${++n}.yml`);
        writeFileSync(cfg, yaml);
        const [a, b] = [join(root, `pooled${n}.safetensors`), join(root, `thread${n}.safetensors`)];
        await mergeModels({ config: cfg, output: a, chunkElements });
        await mergeModels({ config: cfg, output: b, chunkElements, inThread: true });
        assert.ok(readFileSync(a).equals(readFileSync(b)), `${method} ${dtype} chunks ${chunkElements}: the two paths differ`);
      }
    });
  }
});

describe('merge-models output and refusals', () => {
  it('writes BF16 shards like the base, with its config, through the CLI', async () => {
    const cfg = join(root, 'cli.yml');
    writeFileSync(cfg, `merge_method: task_arithmetic\nbase_model: ${base}\ntokenizer_source: base\ndtype: bfloat16\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: 1.0}\n`);
    const out = join(root, 'cli-out');
    const stdout = new PassThrough();
    let text = '';
    stdout.on('data', (d) => (text += d));
    const code = await mergeModelsCommand.run([cfg, out], { stdout, stderr: new PassThrough(), signal: new AbortController().signal });
    assert.equal(code, 0, text);
    assert.deepEqual(readdirSync(out).sort(), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    // Weight 1, one model: base + (ft − base) is ft exactly (BF16 in, f64 arithmetic, BF16 out).
    const [got, want] = [await load(out), await load(ft[0])];
    for (const [name, { v }] of want) assert.deepEqual(got.get(name)!.v, v, name);
  });

  it('refuses models whose tensors or shapes differ, listing them, and writes nothing', async () => {
    const odd = join(root, 'odd');
    await writeLlama(odd, { dtype: 'BF16', intermediate: 160, layers: 3 });
    const cfg = join(root, 'bad.yml');
    writeFileSync(cfg, `merge_method: ties\nbase_model: ${base}\nmodels:\n  - model: ${odd}\n    parameters: {weight: 1, density: 0.5}\n`);
    const out = join(root, 'bad-out');
    await assert.rejects(mergeModels({ config: cfg, output: out }), (e: unknown) => {
      assert.ok(e instanceof MergeModelsError);
      assert.ok(e.problems.some((p) => p.includes("tensor 'model.layers.3.self_attn.q_proj.weight': missing")), e.problems.join('\n'));
      assert.ok(e.problems.some((p) => /tensor 'model\.layers\.0\.mlp\.up_proj\.weight': shape \[160, 64\], but \[172, 64\]/.test(p)), e.problems.join('\n'));
      return true;
    });
    assert.equal(existsSync(out), false);
  });

  it('reports every config problem, one per line', async () => {
    const cfg = join(root, 'cfg-bad.yml');
    writeFileSync(cfg, `merge_method: ties\ndtype: int8\nslices: []\nmodels:\n  - model: ${ft[0]}\n    parameters: {weight: abc, densty: 0.5}\n  - model: ${ft[1]}\n`);
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (d) => (err += d));
    const code = await mergeModelsCommand.run([cfg, join(root, 'never')], { stdout: new PassThrough(), stderr, signal: new AbortController().signal });
    assert.equal(code, 2);
    const lines = err.trim().split('\n');
    for (const want of ['models / slices: give exactly one', 'slices: expected a list', 'densty: not a parameter', 'base_model: required', 'dtype: expected bfloat16', 'models[1].parameters.weight: required']) {
      assert.ok(lines.some((l) => l.startsWith('error[merge_config]: ') && l.includes(want)), `no line with '${want}' in:\n${err}`);
    }
    assert.equal(existsSync(join(root, 'never')), false);
    await assert.rejects(mergeModels({ config: cfg, output: join(root, 'never') }), MergeConfigError);
  });
});
