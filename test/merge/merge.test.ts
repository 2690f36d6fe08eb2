import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Backend } from '../../src/compute/kernel';
import { describeAdapter, patternKeyFor } from '../../src/pipelines/lora';
import { merge, MergeError, planMerge } from '../../src/pipelines/merge';
import { CancelledError } from '../../src/pipelines/job';
import { writeSharded } from '../../src/format/writer';
import { forEachBackend } from '../compute/backends';
import { addDelta, gen, numel, product, readOut, valuesOf, writePeft, writeTensors, type T } from './mergeFixtures';
import { encodeExact, maxUlpError, type FloatDType } from './oracle';

const root = mkdtempSync(join(tmpdir(), 'tw-merge-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => {
  const d = join(root, `${name}-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

const H = 16; // hidden size
const V = 24; // vocab

/** A two-layer Llama-like base: embeddings, q/v projections, a norm, and a head. */
function llamaBase(dtype: FloatDType, seed = 1): T[] {
  const out: T[] = [gen('model.embed_tokens.weight', dtype, [V, H], seed)];
  for (let l = 0; l < 2; l++) {
    out.push(gen(`model.layers.${l}.self_attn.q_proj.weight`, dtype, [H, H], seed + 10 + l));
    out.push(gen(`model.layers.${l}.self_attn.v_proj.weight`, dtype, [H / 2, H], seed + 20 + l));
    out.push(gen(`model.layers.${l}.input_layernorm.weight`, dtype, [H], seed + 30 + l));
  }
  out.push(gen('lm_head.weight', dtype, [V, H], seed + 40));
  return out;
}

function loraPair(module: string, out: number, inF: number, r: number, dtype: FloatDType, seed: number): [T, T] {
  return [gen(`base_model.model.${module}.lora_A.weight`, dtype, [r, inF], seed, 0.4), gen(`base_model.model.${module}.lora_B.weight`, dtype, [out, r], seed + 1, 0.3)];
}

function byName(ts: readonly T[]): Map<string, T> {
  return new Map(ts.map((t) => [t.name, t]));
}

/** Asserts every element of every expected tensor within 1 ulp of `outDtype` (or the tensor's own dtype). */
function assertClose(file: string, want: ReadonlyMap<string, { dtype: FloatDType; values: Float64Array }>): Record<string, string> {
  const got = readOut(file);
  for (const [name, w] of want) {
    const g = got.tensors.get(name);
    assert.ok(g, `missing ${name}`);
    assert.equal(g.dtype, w.dtype, `${name} dtype`);
    const { max, at } = maxUlpError(w.dtype, valuesOf(g), w.values);
    assert.ok(max <= 1, `${name}: ${max} ulp at ${at}`);
  }
  return got.metadata;
}

function assertUntouched(file: string, base: readonly T[], names: readonly string[]): void {
  const got = readOut(file);
  for (const t of base.filter((x) => names.includes(x.name))) {
    assert.deepEqual(got.tensors.get(t.name)!.bytes, encodeExact(t.dtype, t.values), `${t.name} must be copied byte for byte`);
  }
}

function leftovers(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.includes('.tmp-')) : [];
}

forEachBackend('merge', (backend: Backend) => {
  const ctx = { backend: backend.kind };

  for (const baseDtype of ['BF16', 'F16', 'F32'] as const) {
    for (const rslora of [false, true]) {
      it(`PEFT into a ${baseDtype} base${rslora ? ' (rsLoRA)' : ''}, with rank/alpha patterns: every element within 1 ulp of float64`, async () => {
        const dir = fresh('peft');
        const base = llamaBase(baseDtype);
        await writeTensors(join(dir, 'base.safetensors'), base, { format: 'pt' });
        const adDtype: FloatDType = baseDtype === 'F16' ? 'F16' : 'F32';
        const rOf = (m: string) => (m === 'model.layers.1.self_attn.q_proj' ? 2 : 4);
        const alphaOf = (m: string) => (m.endsWith('v_proj') ? 3 : 8);
        const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.v_proj'];
        const B = byName(base);
        const tensors: T[] = [];
        modules.forEach((m, i) => tensors.push(...loraPair(m, B.get(`${m}.weight`)!.shape[0], H, rOf(m), adDtype, 100 + 2 * i)));
        await writePeft(join(dir, 'adapter'), {
          config: {
            r: 4, lora_alpha: 8, use_rslora: rslora, target_modules: ['q_proj', 'v_proj'],
            // PEFT semantics: a key matches the module name or its tail after a dot.
            rank_pattern: { 'layers.1.self_attn.q_proj': 2 }, alpha_pattern: { v_proj: 3 },
          },
          tensors,
        });
        const r = await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'adapter') }], output: join(dir, 'out.safetensors') }, ctx);
        assert.equal(r.merged, 4);
        const T2 = byName(tensors);
        const want = new Map<string, { dtype: FloatDType; values: Float64Array }>();
        for (const m of modules) {
          const W = Float64Array.from(B.get(`${m}.weight`)!.values);
          const rank = rOf(m);
          const scale = rslora ? alphaOf(m) / Math.sqrt(rank) : alphaOf(m) / rank;
          addDelta(W, product(T2.get(`base_model.model.${m}.lora_B.weight`)!, T2.get(`base_model.model.${m}.lora_A.weight`)!), scale, false);
          want.set(`${m}.weight`, { dtype: baseDtype, values: W });
        }
        const meta = assertClose(join(dir, 'out.safetensors'), want);
        assertUntouched(join(dir, 'out.safetensors'), base, ['model.embed_tokens.weight', 'lm_head.weight', 'model.layers.0.input_layernorm.weight']);
        const rec = JSON.parse(meta['tensor_workbench.merge']);
        assert.equal(rec.adapters[0].modules, 4);
        assert.equal(meta.format, 'pt');
        assert.ok(/tensor-workbench/.test(rec.tool));
      });
    }
  }

  it('fan_in_fan_out (GPT-2 Conv1D weights stored [in, out]), BF16 adapter on an F32 base, --dtype bf16', async () => {
    const dir = fresh('fifo');
    const base = [gen('transformer.h.0.attn.c_attn.weight', 'F32', [H, 3 * H], 5), gen('transformer.h.0.ln_1.weight', 'F32', [H], 6)];
    await writeTensors(join(dir, 'base.safetensors'), base);
    const A = gen('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', 'BF16', [4, H], 7);
    const Bm = gen('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', 'BF16', [3 * H, 4], 8);
    await writePeft(join(dir, 'ad'), { config: { r: 4, lora_alpha: 16, fan_in_fan_out: true }, tensors: [A, Bm] });
    await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'ad') }], output: join(dir, 'o.safetensors'), dtype: 'BF16' }, ctx);
    const W = Float64Array.from(base[0].values);
    addDelta(W, product(Bm, A), 4, true);
    assertClose(join(dir, 'o.safetensors'), new Map([[base[0].name, { dtype: 'BF16', values: W }]]));
    // --dtype casts the untouched float tensors too.
    assert.equal(readOut(join(dir, 'o.safetensors')).tensors.get('transformer.h.0.ln_1.weight')!.dtype, 'BF16');
  });

  it('embedding LoRA (Δ = (B@A)ᵀ onto [vocab, hidden]) and modules_to_save replacing lm_head', async () => {
    const dir = fresh('emb');
    const base = llamaBase('BF16', 3);
    await writeTensors(join(dir, 'base.safetensors'), base);
    const eA = gen('base_model.model.model.embed_tokens.lora_embedding_A', 'F32', [4, V], 31);
    const eB = gen('base_model.model.model.embed_tokens.lora_embedding_B', 'F32', [H, 4], 32);
    const head = gen('base_model.model.lm_head.modules_to_save.default.weight', 'BF16', [V, H], 33);
    await writePeft(join(dir, 'ad'), { config: { r: 4, lora_alpha: 4, target_modules: ['embed_tokens'], modules_to_save: ['lm_head'] }, tensors: [eA, eB, head] });
    const r = await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'ad') }], output: join(dir, 'o.safetensors') }, ctx);
    assert.equal(r.replaced, 1);
    const W = Float64Array.from(base[0].values);
    addDelta(W, product(eB, eA), 1, true);
    assertClose(join(dir, 'o.safetensors'), new Map([[base[0].name, { dtype: 'BF16', values: W }]]));
    assert.deepEqual(readOut(join(dir, 'o.safetensors')).tensors.get('lm_head.weight')!.bytes, encodeExact('BF16', head.values));
  });

  it('DoRA: W′ = m ⊙ (W + ΔW) / ‖W + ΔW‖ per output row (linear) and per hidden column (embedding)', async () => {
    const dir = fresh('dora');
    const base = llamaBase('F32', 4);
    await writeTensors(join(dir, 'base.safetensors'), base);
    const [A, Bm] = loraPair('model.layers.0.self_attn.q_proj', H, H, 4, 'F32', 41);
    const mag = gen('base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', 'F32', [H], 43, 1);
    const eA = gen('base_model.model.model.embed_tokens.lora_embedding_A', 'F32', [2, V], 44);
    const eB = gen('base_model.model.model.embed_tokens.lora_embedding_B', 'F32', [H, 2], 45);
    const eMag = gen('base_model.model.model.embed_tokens.lora_magnitude_vector.weight', 'F32', [H], 46, 1);
    await writePeft(join(dir, 'ad'), { config: { r: 4, lora_alpha: 8, use_dora: true, rank_pattern: { embed_tokens: 2 } }, tensors: [A, Bm, mag, eA, eB, eMag] });
    await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'ad') }], output: join(dir, 'o.safetensors') }, ctx);
    const Bt = byName(base);
    const q = Float64Array.from(Bt.get('model.layers.0.self_attn.q_proj.weight')!.values);
    addDelta(q, product(Bm, A), 2, false);
    for (let o = 0; o < H; o++) {
      let s = 0;
      for (let i = 0; i < H; i++) s += q[o * H + i] ** 2;
      for (let i = 0; i < H; i++) q[o * H + i] *= mag.values[o] / Math.sqrt(s);
    }
    const e = Float64Array.from(Bt.get('model.embed_tokens.weight')!.values);
    addDelta(e, product(eB, eA), 8 / 2, true);
    for (let h = 0; h < H; h++) {
      let s = 0;
      for (let v = 0; v < V; v++) s += e[v * H + h] ** 2;
      for (let v = 0; v < V; v++) e[v * H + h] *= eMag.values[h] / Math.sqrt(s);
    }
    assertClose(join(dir, 'o.safetensors'), new Map([
      ['model.layers.0.self_attn.q_proj.weight', { dtype: 'F32', values: q }],
      ['model.embed_tokens.weight', { dtype: 'F32', values: e }],
    ]));
  });

  it('several adapters as a weighted sum (0.7·first − 0.3·second), F16 base, F32 output', async () => {
    const dir = fresh('multi');
    const base = llamaBase('F16', 5);
    await writeTensors(join(dir, 'base.safetensors'), base);
    const m = 'model.layers.0.self_attn.q_proj';
    const p1 = loraPair(m, H, H, 4, 'F16', 51);
    const p2 = loraPair(m, H, H, 8, 'F32', 53);
    const p3 = loraPair('model.layers.1.self_attn.v_proj', H / 2, H, 2, 'F32', 55);
    await writePeft(join(dir, 'a1'), { config: { r: 4, lora_alpha: 4 }, tensors: p1 });
    await writePeft(join(dir, 'a2'), { config: { r: 8, lora_alpha: 32, rank_pattern: { v_proj: 2 } }, tensors: [...p2, ...p3] });
    await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'a1'), weight: 0.7 }, { path: join(dir, 'a2'), weight: -0.3 }], output: join(dir, 'o.safetensors'), dtype: 'F32' }, ctx);
    const Bt = byName(base);
    const q = Float64Array.from(Bt.get(`${m}.weight`)!.values);
    addDelta(q, product(p1[1], p1[0]), 0.7 * 1, false);
    addDelta(q, product(p2[1], p2[0]), -0.3 * 4, false);
    const v = Float64Array.from(Bt.get('model.layers.1.self_attn.v_proj.weight')!.values);
    addDelta(v, product(p3[1], p3[0]), -0.3 * 16, false);
    assertClose(join(dir, 'o.safetensors'), new Map([
      [`${m}.weight`, { dtype: 'F32', values: q }],
      ['model.layers.1.self_attn.v_proj.weight', { dtype: 'F32', values: v }],
    ]));
  });

  it('lora_B.bias (PEFT lora_bias) adds scale·bias to the base bias', async () => {
    const dir = fresh('bias');
    const base = [gen('m.fc.weight', 'F32', [6, 5], 1), gen('m.fc.bias', 'BF16', [6], 2)];
    await writeTensors(join(dir, 'base.safetensors'), base);
    const A = gen('base_model.model.m.fc.lora_A.weight', 'F32', [2, 5], 3);
    const Bm = gen('base_model.model.m.fc.lora_B.weight', 'F32', [6, 2], 4);
    const bias = gen('base_model.model.m.fc.lora_B.bias', 'F32', [6], 5);
    await writePeft(join(dir, 'a'), { config: { r: 2, lora_alpha: 3, lora_bias: true }, tensors: [A, Bm, bias] });
    await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'a'), weight: 2 }], output: join(dir, 'o.safetensors') }, ctx);
    const W = Float64Array.from(base[0].values);
    addDelta(W, product(Bm, A), 2 * 1.5, false);
    const b = base[1].values.map((x, i) => x + 2 * 1.5 * bias.values[i]);
    assertClose(join(dir, 'o.safetensors'), new Map([
      ['m.fc.weight', { dtype: 'F32', values: W }],
      ['m.fc.bias', { dtype: 'BF16', values: b }],
    ]));
  });

  it('conv DoRA (norm over in×kh×kw per output channel) and diffusers-style dotted keys; inputs stay byte-identical', async () => {
    const dir = fresh('convdora');
    const base = [gen('unet.conv_in.weight', 'F32', [4, 3, 3, 3], 1), gen('unet.mid.to_q.weight', 'BF16', [6, 6], 2)];
    await writeTensors(join(dir, 'base.safetensors'), base);
    const A = gen('base_model.model.unet.conv_in.lora_A.weight', 'F32', [2, 3, 3, 3], 3);
    const Bm = gen('base_model.model.unet.conv_in.lora_B.weight', 'F32', [4, 2, 1, 1], 4);
    const mag = gen('base_model.model.unet.conv_in.lora_magnitude_vector', 'F32', [4], 5, 1);
    await writePeft(join(dir, 'a'), { config: { r: 2, lora_alpha: 2, use_dora: true }, tensors: [A, Bm, mag] });
    // A diffusers file: dotted module names with a component prefix the base lacks (`unet.` is kept here, so exact).
    const dA = gen('unet.mid.to_q.lora.down.weight', 'F32', [1, 6], 6);
    const dB = gen('unet.mid.to_q.lora.up.weight', 'F32', [6, 1], 7);
    await writeTensors(join(dir, 'd.safetensors'), [dA, dB]);
    const inputs = [join(dir, 'base.safetensors'), join(dir, 'a', 'adapter_model.safetensors'), join(dir, 'd.safetensors')];
    const before = inputs.map((p) => readFileSync(p));
    await merge({ base: inputs[0], adapters: [{ path: join(dir, 'a') }, { path: join(dir, 'd.safetensors') }], output: join(dir, 'o.safetensors') }, ctx);
    inputs.forEach((p, i) => assert.deepEqual(readFileSync(p), before[i], `${p} must not change`));
    const W = Float64Array.from(base[0].values);
    addDelta(W, product(Bm, A), 1, false);
    const per = 27;
    for (let o = 0; o < 4; o++) {
      let s = 0;
      for (let i = 0; i < per; i++) s += W[o * per + i] ** 2;
      for (let i = 0; i < per; i++) W[o * per + i] *= mag.values[o] / Math.sqrt(s);
    }
    const Q = Float64Array.from(base[1].values);
    addDelta(Q, product(dB, dA), 1, false);
    assertClose(join(dir, 'o.safetensors'), new Map([
      ['unet.conv_in.weight', { dtype: 'F32', values: W }],
      ['unet.mid.to_q.weight', { dtype: 'BF16', values: Q }],
    ]));
  });

  it('--subtract computes W − ΔW', async () => {
    const dir = fresh('sub');
    const base = llamaBase('BF16', 6);
    await writeTensors(join(dir, 'base.safetensors'), base);
    const m = 'model.layers.1.self_attn.q_proj';
    const p = loraPair(m, H, H, 4, 'F32', 61);
    await writePeft(join(dir, 'a'), { config: { r: 4, lora_alpha: 8 }, tensors: p });
    await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'a') }], output: join(dir, 'o.safetensors'), subtract: true }, ctx);
    const q = Float64Array.from(byName(base).get(`${m}.weight`)!.values);
    addDelta(q, product(p[1], p[0]), -2, false);
    assertClose(join(dir, 'o.safetensors'), new Map([[`${m}.weight`, { dtype: 'BF16', values: q }]]));
  });

  it('kohya: names with underscores resolve against the real modules; alpha given, 0 and missing; 1×1 and 3×3 conv LoRA', async () => {
    const dir = fresh('kohya');
    const base: T[] = [
      gen('text_model.encoder.layers.0.self_attn.q_proj.weight', 'F16', [H, H], 71),
      gen('down_blocks.0.attentions.0.proj_in.weight', 'F16', [8, 6, 1, 1], 72),
      gen('down_blocks.0.resnets.0.conv1.weight', 'F16', [8, 6, 3, 3], 73),
      gen('down_blocks.0.resnets.0.conv1.bias', 'F16', [8], 74),
    ];
    const sd = 'text_encoder.';
    // The base is a combined checkpoint: the text encoder lives under `text_encoder.`.
    base[0] = { ...base[0], name: sd + base[0].name };
    await writeTensors(join(dir, 'base.safetensors'), base);
    const q = { down: gen('lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', 'F16', [4, H], 75), up: gen('lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight', 'F16', [H, 4], 76) };
    const pi = { down: gen('lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', 'F32', [2, 6, 1, 1], 77), up: gen('lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', 'F32', [8, 2, 1, 1], 78) };
    const c1 = { down: gen('lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight', 'F32', [3, 6, 3, 3], 79), up: gen('lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight', 'F32', [8, 3, 1, 1], 80) };
    const alpha = (name: string, v: number): T => ({ name, dtype: 'F32', shape: [], values: Float64Array.of(v) });
    await writeTensors(join(dir, 'lora.safetensors'), [
      q.down, q.up, alpha('lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha', 2),
      pi.down, pi.up, alpha('lora_unet_down_blocks_0_attentions_0_proj_in.alpha', 0),
      c1.down, c1.up,
    ]);
    await merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'lora.safetensors'), weight: 0.5 }], output: join(dir, 'o.safetensors') }, ctx);
    const W0 = Float64Array.from(base[0].values);
    addDelta(W0, product(q.up, q.down), 0.5 * (2 / 4), false);
    const W1 = Float64Array.from(base[1].values);
    addDelta(W1, product(pi.up, pi.down), 0.5 * 1, false);
    const W2 = Float64Array.from(base[2].values);
    addDelta(W2, product(c1.up, c1.down), 0.5 * 1, false);
    assertClose(join(dir, 'o.safetensors'), new Map([
      [base[0].name, { dtype: 'F16', values: W0 }],
      [base[1].name, { dtype: 'F16', values: W1 }],
      [base[2].name, { dtype: 'F16', values: W2 }],
    ]));
    assertUntouched(join(dir, 'o.safetensors'), base, ['down_blocks.0.resnets.0.conv1.bias']);
  });

  it('a sharded base gives a sharded folder with its index, config and tokenizer files', async () => {
    const dir = fresh('shard');
    const base = llamaBase('BF16', 8);
    mkdirSync(join(dir, 'base'));
    await writeSharded(join(dir, 'base'), base.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: encodeExact(t.dtype, t.values) })), { shardCount: 2 });
    writeFileSync(join(dir, 'base', 'config.json'), '{"model_type":"llama"}');
    writeFileSync(join(dir, 'base', 'tokenizer.json'), '{}');
    const m = 'model.layers.0.self_attn.v_proj';
    const p = loraPair(m, H / 2, H, 4, 'F32', 81);
    await writePeft(join(dir, 'a'), { config: { r: 4, lora_alpha: 4 }, tensors: p });
    const r = await merge({ base: join(dir, 'base'), adapters: [{ path: join(dir, 'a') }], output: join(dir, 'out') }, ctx);
    const names = readdirSync(join(dir, 'out')).sort();
    assert.deepEqual(names, ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json']);
    assert.ok(r.index);
    const index = JSON.parse(readFileSync(join(dir, 'out', 'model.safetensors.index.json'), 'utf8'));
    const shard = index.weight_map[`${m}.weight`];
    const v = Float64Array.from(byName(base).get(`${m}.weight`)!.values);
    addDelta(v, product(p[1], p[0]), 1, false);
    assertClose(join(dir, 'out', shard), new Map([[`${m}.weight`, { dtype: 'BF16', values: v }]]));
  });
});

describe('merge refusals write nothing', () => {
  async function setup(extra: T[], baseExtra: T[] = []): Promise<{ dir: string; base: string; adapter: string }> {
    const dir = fresh('refuse');
    const base = [...llamaBase('BF16', 9), ...baseExtra];
    await writeTensors(join(dir, 'base.safetensors'), base);
    const p = loraPair('model.layers.0.self_attn.q_proj', H, H, 4, 'F32', 91);
    await writePeft(join(dir, 'a'), { config: { r: 4, lora_alpha: 8 }, tensors: [...p, ...extra] });
    return { dir, base: join(dir, 'base.safetensors'), adapter: join(dir, 'a') };
  }

  it('an adapter key with no base tensor stops the merge with the list of unmatched keys', async () => {
    const s = await setup(loraPair('model.layers.0.mlp.gate_proj', H, H, 4, 'F32', 92));
    const out = join(s.dir, 'out');
    await assert.rejects(merge({ base: s.base, adapters: [{ path: s.adapter }], output: out }, { backend: 'cpu' }), (e: unknown) => {
      assert.ok(e instanceof MergeError);
      assert.deepEqual(e.unmatched.map((u) => u.key).sort(), ['base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight', 'base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight']);
      return true;
    });
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(s.dir), []);
    // --allow-unmatched merges the rest.
    const r = await merge({ base: s.base, adapters: [{ path: s.adapter }], output: join(s.dir, 'o.safetensors'), allowUnmatched: true }, { backend: 'cpu' });
    assert.equal(r.merged, 1);
    assert.equal(r.unmatched.length, 2);
  });

  it('a shape mismatch is refused, naming the tensor and both shapes', async () => {
    const s = await setup(loraPair('model.layers.1.self_attn.v_proj', H, H, 4, 'F32', 93));
    const out = join(s.dir, 'o.safetensors');
    await assert.rejects(merge({ base: s.base, adapters: [{ path: s.adapter }], output: out }, { backend: 'cpu' }), (e: unknown) => {
      assert.ok(e instanceof MergeError);
      assert.ok(e.unmatched.every((u) => /shape mismatch.*v_proj\.weight.*\[8,16\]/.test(u.reason)), JSON.stringify(e.unmatched));
      return true;
    });
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(s.dir), []);
  });

  it('an ambiguous kohya name is refused with every candidate', async () => {
    const dir = fresh('ambig');
    await writeTensors(join(dir, 'base.safetensors'), [gen('a_b.c.weight', 'F32', [4, 4], 1), gen('a.b_c.weight', 'F32', [4, 4], 2)]);
    await writeTensors(join(dir, 'l.safetensors'), [gen('lora_unet_a_b_c.lora_down.weight', 'F32', [1, 4], 3), gen('lora_unet_a_b_c.lora_up.weight', 'F32', [4, 1], 4)]);
    const out = join(dir, 'o.safetensors');
    await assert.rejects(merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'l.safetensors') }], output: out }, { backend: 'cpu' }), (e: unknown) => {
      assert.ok(e instanceof MergeError);
      assert.deepEqual([...(e.unmatched[0].candidates ?? [])].sort(), ['a.b_c', 'a_b.c']);
      return true;
    });
    assert.equal(existsSync(out), false);
  });

  it('a non-finite result is an error naming the tensor, and the output is removed', async () => {
    const dir = fresh('inf');
    await writeTensors(join(dir, 'base.safetensors'), [gen('w.weight', 'F16', [4, 4], 1), gen('x.weight', 'F16', [4, 4], 2)]);
    const big: T = { name: 'base_model.model.w.lora_B.weight', dtype: 'F32', shape: [4, 1], values: Float64Array.of(1e5, 1e5, 1e5, 1e5) };
    const a: T = { name: 'base_model.model.w.lora_A.weight', dtype: 'F32', shape: [1, 4], values: Float64Array.of(1, 1, 1, 1) };
    await writePeft(join(dir, 'a'), { config: { r: 1, lora_alpha: 1 }, tensors: [a, big] });
    const out = join(dir, 'out');
    await assert.rejects(merge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'a') }], output: out }, { backend: 'cpu' }), /tensor 'w\.weight'.*not finite/);
    assert.equal(existsSync(out), false);
  });

  it('cancelling leaves nothing behind', async () => {
    const s = await setup([]);
    const out = join(s.dir, 'out');
    const ac = new AbortController();
    const p = merge({ base: s.base, adapters: [{ path: s.adapter }], output: out }, { backend: 'cpu', signal: ac.signal, progress: () => ac.abort() });
    await assert.rejects(p, (e: unknown) => e instanceof CancelledError);
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(s.dir), []);
  });

  it('the output may not overwrite an input', async () => {
    const s = await setup([]);
    await assert.rejects(merge({ base: s.base, adapters: [{ path: s.adapter }], output: s.base }, { backend: 'cpu' }), (e: Error & { code?: string }) => e.code === 'output_is_input');
  });
});

describe('adapter mapping', () => {
  it('rank/alpha pattern keys match like PEFT: whole name or a tail after a dot, regex allowed, first key wins', () => {
    assert.equal(patternKeyFor(['q_proj'], 'model.layers.0.self_attn.q_proj'), 'q_proj');
    assert.equal(patternKeyFor(['proj'], 'model.layers.0.self_attn.q_proj'), undefined);
    assert.equal(patternKeyFor(['layers.1.self_attn.q_proj'], 'model.layers.11.self_attn.q_proj'), undefined);
    assert.equal(patternKeyFor(['layers\\.1\\d\\..*q_proj'], 'model.layers.12.self_attn.q_proj'), 'layers\\.1\\d\\..*q_proj');
    assert.equal(patternKeyFor(['^model.layers.0.self_attn.q_proj'], 'model.layers.0.self_attn.q_proj'), '^model.layers.0.self_attn.q_proj');
    assert.equal(patternKeyFor(['^self_attn.q_proj'], 'model.layers.0.self_attn.q_proj'), undefined);
    assert.equal(patternKeyFor(['v_proj', 'q_proj', 'self_attn.q_proj'], 'model.layers.0.self_attn.q_proj'), 'q_proj');
  });

  it('describes an adapter without a base: format, ranks, alphas, scales, targets', async () => {
    const dir = fresh('describe');
    await writePeft(join(dir, 'a'), {
      config: { r: 4, lora_alpha: 8, rank_pattern: { v_proj: 2 }, modules_to_save: ['lm_head'] },
      tensors: [...loraPair('model.layers.0.self_attn.q_proj', H, H, 4, 'F32', 1), ...loraPair('model.layers.0.self_attn.v_proj', H / 2, H, 2, 'F32', 3), gen('base_model.model.lm_head.weight', 'F32', [V, H], 5)],
    });
    const d = await describeAdapter(join(dir, 'a'));
    assert.equal(d.format, 'peft');
    assert.deepEqual(d.targets, ['q_proj', 'v_proj']);
    assert.deepEqual(d.ranks, [2, 4]);
    assert.deepEqual(d.scales, [2, 4]);
    assert.deepEqual(d.replacements, ['lm_head.weight']);
    await writeTensors(join(dir, 'k.safetensors'), [
      gen('lora_unet_mid_block_attentions_0_to_k.lora_down.weight', 'F32', [8, 4], 1),
      gen('lora_unet_mid_block_attentions_0_to_k.lora_up.weight', 'F32', [4, 8], 2),
      { name: 'lora_unet_mid_block_attentions_0_to_k.alpha', dtype: 'F32', shape: [], values: Float64Array.of(4) },
    ]);
    const k = await describeAdapter(join(dir, 'k.safetensors'));
    assert.equal(k.format, 'kohya');
    assert.deepEqual([k.ranks, k.alphas, k.scales, k.targets], [[8], [4], [0.5], ['to_k']]);
  });

  it('the preview lists r, alpha and scale per matched module', async () => {
    const dir = fresh('plan');
    await writeTensors(join(dir, 'base.safetensors'), llamaBase('BF16'));
    await writePeft(join(dir, 'a'), { config: { r: 4, lora_alpha: 8, use_rslora: true }, tensors: loraPair('model.layers.0.self_attn.q_proj', H, H, 4, 'F32', 1) });
    const plan = await planMerge({ base: join(dir, 'base.safetensors'), adapters: [{ path: join(dir, 'a') }] });
    try {
      assert.deepEqual(plan.summaries[0].modules, [{ name: 'model.layers.0.self_attn.q_proj', target: 'model.layers.0.self_attn.q_proj.weight', rank: 4, alpha: 8, scale: 4, dora: false }]);
      assert.equal(plan.unmatched.length, 0);
    } finally {
      await plan.close();
    }
  });
});

void numel;
