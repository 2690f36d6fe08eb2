/**
 * Small base / fine-tune pairs for the LoRA extraction tests: deltas made from known
 * factors (exactly low-rank) or with a slowly decaying spectrum (dense), stored in
 * F32, plus the float64 helpers the tests compare with and the Python oracle runner.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { gen, numel, readOut, valuesOf, writeTensors, type T } from '../merge/mergeFixtures';
import { normal, quantize, rng } from '../merge/oracle';

export const ORACLE = join(__dirname, '..', 'test', 'lora', 'lora_oracle.py');

/** (n × m)·(m × p) in float64. */
export function mul(x: ArrayLike<number>, y: ArrayLike<number>, n: number, m: number, p: number): Float64Array {
  const out = new Float64Array(n * p);
  for (let i = 0; i < n; i++) for (let k = 0; k < m; k++) {
    const xv = x[i * m + k];
    for (let j = 0; j < p; j++) out[i * p + j] += xv * y[k * p + j];
  }
  return out;
}

/** `base` with Δ added, rounded to F32 as a fine-tune stores it. */
export function plus(base: T, delta: Float64Array): T {
  return { ...base, values: Float64Array.from(base.values, (v, i) => quantize('F32', v + delta[i])) };
}

/** N(0, std) factors B [out, r] and A [r, in]. */
export function factors(out: number, inp: number, r: number, seed: number, std = 0.3): { b: Float64Array; a: Float64Array } {
  const g = rng(seed);
  return { b: Float64Array.from({ length: out * r }, () => normal(g) * std), a: Float64Array.from({ length: r * inp }, () => normal(g) * std) };
}

/** A full-rank Δ whose i-th singular value falls like 1 / (1 + i): G1 · diag · G2, scaled to entries of about `std`. */
export function denseDelta(rows: number, cols: number, seed: number, std = 0.01): Float64Array {
  const n = Math.min(rows, cols);
  const g = rng(seed);
  const g1 = Float64Array.from({ length: rows * n }, () => normal(g));
  const g2 = Float64Array.from({ length: n * cols }, () => normal(g) / Math.sqrt(n));
  for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) g1[r * n + i] *= std / (1 + i) * 3;
  return mul(g1, g2, rows, n, cols);
}

export { gen, numel, readOut, valuesOf, writeTensors, type T };

export function pythonHas(modules: string): boolean {
  return spawnSync('python3', ['-c', `import ${modules}`], { encoding: 'utf8' }).status === 0;
}

export function oracle(...args: string[]): unknown {
  const r = spawnSync('python3', [ORACLE, ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`oracle ${args[0]} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** B·A of one module of a written adapter, with the config's scale, in float64. */
export function adapterProduct(dir: string, module: string): { values: Float64Array; rank: number; out: number; in: number } {
  const { tensors } = readOut(join(dir, 'adapter_model.safetensors'));
  const a = tensors.get(`base_model.model.${module}.lora_A.weight`)!;
  const b = tensors.get(`base_model.model.${module}.lora_B.weight`)!;
  const [r, inp] = a.shape;
  const out = b.shape[0];
  return { values: mul(valuesOf(b), valuesOf(a), out, r, inp), rank: r, out, in: inp };
}

/** max |x − y| over max |y|. */
export function relMax(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < y.length; i++) {
    d = Math.max(d, Math.abs(x[i] - y[i]));
    m = Math.max(m, Math.abs(y[i]));
  }
  return d / m;
}
