import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { loraCombineCommand } from '../../src/cli/loraCombine';
import { loraCombine, type CombineMethod } from '../../src/pipelines/loraCombine';
import { gen, product, readOut, valuesOf, writePeft, type T } from './mergeFixtures';

const root = mkdtempSync(join(tmpdir(), 'tw-lora-combine-'));
after(() => rmSync(root, { recursive: true, force: true }));
const P = 'base_model.model.layers.0.';
const MODULES = { q_proj: [12, 10], v_proj: [8, 10] } as const;

interface Spec {
  readonly r: number;
  readonly alpha: number;
  readonly rslora?: boolean;
  readonly modules: readonly (keyof typeof MODULES)[];
  readonly seed: number;
}

const specs: Record<string, Spec> = {
  x: { r: 4, alpha: 8, modules: ['q_proj', 'v_proj'], seed: 1 },
  y: { r: 2, alpha: 3, modules: ['q_proj'], seed: 2 },
  z: { r: 4, alpha: 16, modules: ['q_proj', 'v_proj'], seed: 3 },
  rs: { r: 4, alpha: 6, rslora: true, modules: ['q_proj', 'v_proj'], seed: 4 },
  rs2: { r: 2, alpha: 5, rslora: true, modules: ['q_proj', 'v_proj'], seed: 5 },
};
const factors = new Map<string, Map<string, { A: T; B: T }>>();
const dirs: Record<string, string> = {};

before(async () => {
  for (const [k, s] of Object.entries(specs)) {
    const mods = new Map<string, { A: T; B: T }>();
    const tensors: T[] = [];
    s.modules.forEach((m, i) => {
      const [out, inF] = MODULES[m];
      const A = gen(`${P}${m}.lora_A.weight`, 'F32', [s.r, inF], s.seed * 10 + i);
      const B = gen(`${P}${m}.lora_B.weight`, 'F32', [out, s.r], s.seed * 10 + i + 5);
      mods.set(m, { A, B });
      tensors.push(A, B);
    });
    factors.set(k, mods);
    dirs[k] = await writePeft(join(root, k), { config: { r: s.r, lora_alpha: s.alpha, use_rslora: s.rslora ?? false, target_modules: s.modules, task_type: null }, tensors });
  }
});

const scaleOf = (s: { r: number; alpha: number; rslora?: boolean }) => (s.rslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r);

/** Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ in float64, from the fixture's own factors. */
function want(inputs: readonly [string, number][], m: keyof typeof MODULES): Float64Array {
  const [out, inF] = MODULES[m];
  const sum = new Float64Array(out * inF);
  for (const [k, w] of inputs) {
    const f = factors.get(k)!.get(m);
    if (!f) continue;
    const d = product(f.B, f.A);
    for (let i = 0; i < sum.length; i++) sum[i] += w * scaleOf(specs[k]) * d.values[i];
  }
  return sum;
}

/** The output's product with the output's own scale, read from its config as PEFT would. */
function got(dir: string, m: string): Float64Array {
  const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
  const t = readOut(join(dir, 'adapter_model.safetensors')).tensors;
  const a = t.get(`${P}${m}.lora_A.weight`)!;
  const b = t.get(`${P}${m}.lora_B.weight`)!;
  const key = `layers.0.${m}`;
  const r: number = cfg.rank_pattern?.[key] ?? cfg.r;
  const alpha: number = cfg.alpha_pattern?.[key] ?? cfg.lora_alpha;
  assert.equal(a.shape[0], r, `${m}: A's rank is the config's`);
  const A: T = { name: 'A', dtype: 'F32', shape: a.shape, values: valuesOf(a) };
  const B: T = { name: 'B', dtype: 'F32', shape: b.shape, values: valuesOf(b) };
  const s = scaleOf({ r, alpha, rslora: cfg.use_rslora });
  return product(B, A).values.map((v) => v * s);
}

function assertNear(g: Float64Array, w: Float64Array, rel: number, what: string): void {
  const norm = Math.sqrt(w.reduce((s, v) => s + v * v, 0));
  let err = 0;
  for (let i = 0; i < w.length; i++) err += (g[i] - w[i]) ** 2;
  assert.ok(Math.sqrt(err) <= rel * norm, `${what}: ‖got − want‖ = ${Math.sqrt(err)} above ${rel}·${norm}`);
}

let n = 0;
async function combine(method: CombineMethod, inputs: readonly [string, number][], rank?: number): Promise<string> {
  const output = join(root, `out${++n}`);
  await loraCombine({ inputs: inputs.map(([k, weight]) => ({ path: dirs[k], weight })), output, method, rank });
  return output;
}

// The outputs are F32 factors (rounded once from float64): products agree to about 1e-7 relative.
describe('lora-combine against float64 references', () => {
  it('cat: Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ exactly, for different ranks, alphas and a module only one adapter has', async () => {
    const inputs: [string, number][] = [['x', 0.7], ['y', -0.5], ['z', 0.25]];
    const out = await combine('cat', inputs);
    for (const m of ['q_proj', 'v_proj'] as const) assertNear(got(out, m), want(inputs, m), 1e-6, `cat ${m}`);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    const rankOf = (m: string): number => cfg.rank_pattern?.[`layers.0.${m}`] ?? cfg.r;
    assert.deepEqual([rankOf('q_proj'), rankOf('v_proj')], [4 + 2 + 4, 4 + 4]);
  });

  it('cat of rsLoRA adapters of different ranks: each √r scale, and the output read with its own √R rule', async () => {
    const inputs: [string, number][] = [['rs', 1], ['rs2', 0.5]];
    const out = await combine('cat', inputs);
    for (const m of ['q_proj', 'v_proj'] as const) assertNear(got(out, m), want(inputs, m), 1e-6, `cat rsLoRA ${m}`);
  });

  it('a single adapter at weight 1 comes back as itself: cat and linear the same factors, svd the same product', async () => {
    for (const k of ['x', 'rs']) {
      for (const method of ['cat', 'linear'] as const) {
        const out = await combine(method, [[k, 1]]);
        const src = readOut(join(dirs[k], 'adapter_model.safetensors')).tensors;
        const dst = readOut(join(out, 'adapter_model.safetensors')).tensors;
        for (const [name, t] of src) assert.deepEqual(dst.get(name)!.bytes, t.bytes, `${method} ${k} ${name}`);
        const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
        assert.deepEqual([cfg.r, cfg.lora_alpha, cfg.use_rslora], [specs[k].r, specs[k].alpha, specs[k].rslora ?? false]);
      }
      const out = await combine('svd', [[k, 1]]);
      for (const m of ['q_proj', 'v_proj'] as const) assertNear(got(out, m), want([[k, 1]], m), 1e-6, `svd ${k} ${m}`);
    }
  });

  it('svd at a rank that holds the sum is exact; below it, the best rank-k approximation (Eckart–Young error)', async () => {
    const inputs: [string, number][] = [['x', 0.7], ['z', -0.4]];
    const full = await combine('svd', inputs, 8);
    for (const m of ['q_proj', 'v_proj'] as const) assertNear(got(full, m), want(inputs, m), 1e-6, `svd 8 ${m}`);
    const low = await combine('svd', inputs, 3);
    // The error of the best rank-3 approximation is √(Σ of the squared singular values past the third),
    // computed here from the full-rank result's own factors by an independent route: ‖M‖² − ‖M₃‖² = ‖M − M₃‖².
    for (const m of ['q_proj', 'v_proj'] as const) {
      const w = want(inputs, m);
      const g = got(low, m);
      let cross = 0;
      let gg = 0;
      let ww = 0;
      for (let i = 0; i < w.length; i++) {
        cross += g[i] * (w[i] - g[i]);
        gg += g[i] * g[i];
        ww += w[i] * w[i];
      }
      // M₃ is an orthogonal projection of M: the residual is orthogonal to it, and it keeps most of ‖M‖.
      assert.ok(Math.abs(cross) <= 1e-5 * ww, `svd 3 ${m}: residual not orthogonal (${cross})`);
      assert.ok(gg < ww && gg > 0.3 * ww, `svd 3 ${m}: ‖M₃‖² ${gg} of ‖M‖² ${ww}`);
    }
  });

  it('linear: weighted sums of the factors as PEFT defines them (not the sum of products); refuses unequal ranks', async () => {
    const inputs: [string, number][] = [['x', 0.7], ['z', -0.4]];
    const out = await combine('linear', inputs);
    for (const m of ['q_proj', 'v_proj'] as const) {
      const [o, inF] = MODULES[m];
      const c = inputs.map(([k, w]) => (w * scaleOf(specs[k])) / scaleOf(specs.x));
      const A = new Float64Array(4 * inF);
      const B = new Float64Array(o * 4);
      inputs.forEach(([k], i) => {
        const f = factors.get(k)!.get(m)!;
        f.A.values.forEach((v, j) => (A[j] += Math.sign(c[i]) * Math.sqrt(Math.abs(c[i])) * v));
        f.B.values.forEach((v, j) => (B[j] += Math.sqrt(Math.abs(c[i])) * v));
      });
      const w = product({ name: 'B', dtype: 'F32', shape: [o, 4], values: B }, { name: 'A', dtype: 'F32', shape: [4, inF], values: A }).values.map((v) => v * scaleOf(specs.x));
      assertNear(got(out, m), w, 1e-6, `linear ${m}`);
    }
    await assert.rejects(combine('linear', [['x', 1], ['y', 1]]), /rank 2, not 4: --method linear needs equal ranks/);
  });

  it('refuses DoRA adapters when combining, and through the CLI prints one error line', async () => {
    const d = await writePeft(join(root, 'dora'), {
      config: { r: 2, lora_alpha: 2, use_dora: true, target_modules: ['q_proj'] },
      tensors: [gen(`${P}q_proj.lora_A.weight`, 'F32', [2, 10], 7), gen(`${P}q_proj.lora_B.weight`, 'F32', [12, 2], 8), gen(`${P}q_proj.lora_magnitude_vector`, 'F32', [12], 9)],
    });
    const stderr = new PassThrough();
    let text = '';
    stderr.on('data', (x) => (text += x));
    const code = await loraCombineCommand.run([`${d}:0.5`, `${dirs.x}:1`, join(root, 'dora-out'), '--method', 'cat'], { stdout: new PassThrough(), stderr, signal: new AbortController().signal }).catch((e: Error) => e);
    const msg = code instanceof Error ? code.message : text;
    assert.match(msg, /DoRA adapters cannot be combined exactly/);
  });
});

describe('lora-combine against PEFT add_weighted_adapter', () => {
  const peft = (method: string, rank: number, inputs: readonly [string, number][]): Record<string, number[][]> | undefined => {
    const script = join(__dirname, '..', 'test', 'merge', 'lora_combine_oracle.py');
    const r = spawnSync('python3', [script, method, String(rank), ...inputs.map(([k, w]) => `${dirs[k]}:${w}`)], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) return undefined;
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  const flat = (x: number[][]) => Float64Array.from(x.flat());

  it('cat and svd without rsLoRA: the same product as PEFT', async (t) => {
    const inputs: [string, number][] = [['x', 0.7], ['z', 0.5]];
    const cat = peft('cat', 0, inputs);
    if (!cat) return t.skip('python3 with peft and torch is not available');
    const ours = await combine('cat', inputs);
    for (const m of ['q_proj', 'v_proj']) assertNear(got(ours, m), flat(cat[`layers.0.${m}`]), 1e-6, `cat ${m}`);
    const svd = peft('svd', 3, inputs)!;
    const ourSvd = await combine('svd', inputs, 3);
    for (const m of ['q_proj', 'v_proj']) assertNear(got(ourSvd, m), flat(svd[`layers.0.${m}`]), 1e-6, `svd ${m}`);
  });

  it('cat with rsLoRA: PEFT sets lora_alpha = r and keeps use_rslora, so its product is √R too large; ours is Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ', async (t) => {
    const inputs: [string, number][] = [['rs', 1], ['rs2', 0.5]];
    const cat = peft('cat', 0, inputs);
    if (!cat) return t.skip('python3 with peft and torch is not available');
    const ours = await combine('cat', inputs);
    for (const m of ['q_proj', 'v_proj'] as const) {
      const w = want(inputs, m);
      assertNear(got(ours, m), w, 1e-6, `ours ${m}`);
      // R = 4 + 2: PEFT's new scaling is R/√R = √6 where 1 was meant.
      assertNear(flat(cat[`layers.0.${m}`]), w.map((v) => v * Math.sqrt(6)), 1e-9, `PEFT ${m}`);
    }
  });
});
