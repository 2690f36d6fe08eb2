import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeToF64 } from '../../src/format/decode';
import { openModel } from '../../src/format/openModel';
import { mergeModels, MergeConfigError, MergeModelsError } from '../../src/pipelines/mergeModels/mergeModels';
import { writeLlama } from '../fixtures/llama';
import { gradientRef, linearRef, slerpRef, type Arr } from './mergeModelsOracle';

const root = mkdtempSync(join(tmpdir(), 'tw-merge-slices-'));
// Three unrelated tiny Llamas (4 layers each, other seeds): every tensor differs between them, embeddings included.
const [a, b, c] = ['a', 'b', 'c'].map((n) => join(root, n));
after(() => rmSync(root, { recursive: true, force: true }));

before(async () => {
  await writeLlama(a, { dtype: 'BF16', seed: 11, shards: 2 });
  await writeLlama(b, { dtype: 'BF16', seed: 12 });
  await writeLlama(c, { dtype: 'BF16', seed: 13 });
});

type Tensors = Map<string, Arr>;

async function load(path: string): Promise<Tensors> {
  const m = await openModel(path);
  const out: Tensors = new Map();
  try {
    for (const t of m.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await m.read(t, 0, bytes);
      const v = new Float64Array(t.numel);
      decodeToF64(t.dtype, bytes, v, t.numel);
      out.set(t.name, v);
    }
  } finally {
    await m.close();
  }
  return out;
}

let n = 0;
async function run(yaml: string): Promise<string> {
  const cfg = join(root, `cfg${++n}.yml`);
  writeFileSync(cfg, yaml);
  const out = join(root, `out${n}`);
  await mergeModels({ config: cfg, output: out, chunkElements: 1000 });
  return out;
}

/** The name of output layer tensor `name` in the source, at layer `layer` (written here, not with the pipeline's helper). */
function at(name: string, layer: number): string {
  return name.replace(/^model\.layers\.\d+\./, `model.layers.${layer}.`);
}
function layerOfName(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : undefined;
}

function assertClose(got: Arr, want: Arr, name: string): void {
  let bad = 0;
  for (let i = 0; i < want.length; i++) if (Math.abs(got[i] - Math.fround(want[i])) > Math.abs(Math.fround(want[i])) * 2 ** -23 + 1e-30) bad++;
  assert.equal(bad, 0, `${name}: ${bad} of ${want.length} values off`);
}

describe('merge-models slices', () => {
  it('passthrough stacks layer ranges of two models, renumbered; embeddings from the first slice, norm and lm_head from the last', async () => {
    const out = await run(`merge_method: passthrough\nslices:\n  - sources:\n      - model: ${a}\n        layer_range: [0, 3]\n  - sources:\n      - model: ${b}\n        layer_range: [1, 4]\n`);
    const [got, ma, mb] = [await load(out), await load(a), await load(b)];
    const perLayer = [...ma.keys()].filter((k) => layerOfName(k) === 0).length;
    const outside = [...ma.keys()].filter((k) => layerOfName(k) === undefined);
    assert.equal(got.size, outside.length + 6 * perLayer);
    let checked = 0;
    for (const [name, v] of got) {
      const l = layerOfName(name);
      // BF16 in, BF16 out, scale 1: bytes copied exactly.
      if (l === undefined) assert.deepEqual(v, (name.includes('embed') ? ma : mb).get(name), name);
      else assert.deepEqual(v, l < 3 ? ma.get(at(name, l)) : mb.get(at(name, l - 3 + 1)), name);
      checked++;
    }
    assert.equal(checked, got.size);
    assert.notDeepEqual(ma.get('model.norm.weight'), mb.get('model.norm.weight'));
    assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers, 6);
  });

  it('per-slice linear merges with source and slice parameters, against float64', async () => {
    const yaml = `merge_method: linear\ndtype: float32\nparameters: {weight: 1}\nslices:\n  - sources:\n      - model: ${a}\n        layer_range: [0, 2]\n        parameters: {weight: 0.3}\n      - model: ${b}\n        layer_range: [2, 4]\n        parameters: {weight: 0.7}\n  - sources:\n      - model: ${c}\n        layer_range: [1, 4]\n      - model: ${a}\n        layer_range: [0, 3]\n    parameters: {weight: [0.2, 0.9]}\n`;
    const out = await run(yaml);
    const [got, ma, mb, mc] = [await load(out), await load(a), await load(b), await load(c)];
    assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers, 5);
    for (const [name, v] of got) {
      const l = layerOfName(name);
      if (l === undefined && name.includes('embed')) assertClose(v, linearRef([ma.get(name)!, mb.get(name)!], [0.3, 0.7], true), name);
      else if (l === undefined) {
        const w = gradientRef([0.2, 0.9], 1);
        assertClose(v, linearRef([mc.get(name)!, ma.get(name)!], [w, w], true), name);
      } else if (l < 2) assertClose(v, linearRef([ma.get(at(name, l))!, mb.get(at(name, l + 2))!], [0.3, 0.7], true), name);
      else {
        // The gradient runs over the output's 5 layers.
        const w = gradientRef([0.2, 0.9], l / 4);
        assertClose(v, linearRef([mc.get(at(name, l - 2 + 1))!, ma.get(at(name, l - 2))!], [w, w], true), name);
      }
    }
  });

  it('slerp per slice, the base a source of each, t by the output layer', async () => {
    const yaml = `merge_method: slerp\nbase_model: ${a}\ndtype: float32\nparameters:\n  t: [0, 1]\nslices:\n  - sources:\n      - model: ${b}\n        layer_range: [2, 4]\n      - model: ${a}\n        layer_range: [0, 2]\n`;
    const out = await run(yaml);
    const [got, ma, mb] = [await load(out), await load(a), await load(b)];
    assert.equal(got.size, [...ma.keys()].filter((k) => (layerOfName(k) ?? 0) < 2).length);
    for (const [name, v] of got) {
      const l = layerOfName(name);
      const t = l === undefined ? (name.includes('embed') ? 0 : 1) : l;
      assertClose(v, slerpRef(t, ma.get(name)!, mb.get(l === undefined ? name : at(name, l + 2))!), name);
    }
  });

  it('refuses ranges of different lengths and a range past the last layer, writing nothing', async () => {
    const cfg = join(root, 'bad-len.yml');
    writeFileSync(cfg, `merge_method: linear\nslices:\n  - sources:\n      - model: ${a}\n        layer_range: [0, 2]\n        parameters: {weight: 1}\n      - model: ${b}\n        layer_range: [0, 3]\n        parameters: {weight: 1}\n`);
    const out1 = join(root, 'never1');
    await assert.rejects(mergeModels({ config: cfg, output: out1 }), (e: unknown) => e instanceof MergeConfigError && e.problems.some((p) => p.startsWith('slices[0]: every source') && p.includes('[0, 3]')));
    assert.equal(existsSync(out1), false);
    const cfg2 = join(root, 'bad-range.yml');
    writeFileSync(cfg2, `merge_method: passthrough\nslices:\n  - sources:\n      - model: ${a}\n        layer_range: [0, 2]\n  - sources:\n      - model: ${b}\n        layer_range: [2, 6]\n`);
    const out2 = join(root, 'never2');
    await assert.rejects(mergeModels({ config: cfg2, output: out2 }), (e: unknown) => e instanceof MergeModelsError && e.problems.some((p) => p.includes('slices[1].sources[0].layer_range: [2, 6] goes past the 4 layers')));
    assert.equal(existsSync(out2), false);
    const cfg3 = join(root, 'bad-pass.yml');
    writeFileSync(cfg3, `merge_method: passthrough\nslices:\n  - sources:\n      - model: ${a}\n        layer_range: [0, 2]\n      - model: ${b}\n        layer_range: [0, 2]\n`);
    await assert.rejects(mergeModels({ config: cfg3, output: out2 }), (e: unknown) => e instanceof MergeConfigError && e.problems.some((p) => p.includes('passthrough takes exactly one model')));
    assert.equal(existsSync(out2), false);
  });
});
