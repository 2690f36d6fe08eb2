// lora-resize: a PEFT adapter brought to a lower rank by the exact SVD of each
// module's product scale·B·A, which has rank ≤ r: with B = Q_b·R_b and Aᵀ = Q_a·R_a
// (thin QR), scale·B·A = Q_b·(scale·R_b·R_aᵀ)·Q_aᵀ, so the r × r SVD of the middle
// factor gives the whole SVD and the out × in product is never formed. Keeping the
// top singular values is the best approximation at the new rank (Eckart–Young).
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { throwIfCancelled, type JobContext } from '../core/job';
import { FormatError } from '../format/errors';
import { openAdapter, readValues, type AdapterModule } from './lora';
import { orthonormalizeColumns } from './diffLinalg';
import { matMul } from './deltaSvd';
import { rankForEnergy, type RankChoice } from './loraRank';
import { svdSmall } from './svdSmall';
import { writePeftAdapter, type LoraFactors } from './loraWrite';

export interface LoraResizeArgs {
  readonly adapter: string;
  readonly outDir: string;
  /** The new rank (modules already at or below it keep theirs); with `energy`, the largest allowed. */
  readonly rank?: number;
  /** Per module, the smallest rank keeping this share of ‖scale·B·A‖²_F. */
  readonly energy?: number;
}

export interface ResizedModule extends RankChoice {
  readonly module: string;
  readonly oldRank: number;
  readonly alpha: number;
}

export interface LoraResizeResult {
  readonly files: string[];
  readonly modules: ResizedModule[];
  readonly seconds: number;
}

function transposeOf(x: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
  return t;
}

/** Thin QR of an n × r matrix: Q with orthonormal (or zero) columns and R = QᵀM, so that M = Q·R. */
function thinQr(m: Float64Array, n: number, r: number): { q: Float64Array; r: Float64Array } {
  const q = orthonormalizeColumns(m, n, r);
  return { q, r: matMul(transposeOf(q, n, r), m, r, n, r) };
}

function refuse(path: string, m: AdapterModule, why: string): never {
  throw new FormatError('unsupported', `LoRA module '${m.name}': ${why}; nothing was written`, path, m.down.name);
}

/** The resized factors of one module: B' = Q_b·U·√(σ/s') and A' = √(σ/s')·(Q_a·V)ᵀ, s' the new scale at the same alpha. */
async function resizeModule(a: Awaited<ReturnType<typeof openAdapter>>, m: AdapterModule, args: LoraResizeArgs, rsLora: boolean): Promise<{ factors: LoraFactors; report: ResizedModule }> {
  const r = m.rank;
  const [, inF] = m.down.shape;
  const outF = m.up.shape[0];
  const av = await readValues(a.model, m.down); // r × in
  const bv = await readValues(a.model, m.up); // out × r
  const qb = thinQr(bv, outF, r);
  const qa = thinQr(transposeOf(av, r, inF), inF, r);
  // C = scale·R_b·R_aᵀ (r × r) = U·diag(σ)·Vᵀ.
  const c = matMul(qb.r, transposeOf(qa.r, r, r), r, r, r).map((x) => x * m.scale);
  const svd = svdSmall(c, r);
  const total = svd.sigma.reduce((s, x) => s + x * x, 0);
  const choice = rankForEnergy(svd.sigma, total, Math.min(args.rank ?? r, r), args.energy, r, true);
  const k = choice.rank;
  const newScale = m.alpha / (rsLora ? Math.sqrt(k) : k);
  const left = matMul(qb.q, svd.u, outF, r, r); // out × r
  const right = matMul(qa.q, svd.v, inF, r, r); // in × r
  const fa = new Float32Array(k * inF);
  const fb = new Float32Array(outF * k);
  for (let j = 0; j < k; j++) {
    const s = Math.sqrt(svd.sigma[j] / newScale);
    for (let o = 0; o < outF; o++) fb[o * k + j] = left[o * r + j] * s;
    for (let i = 0; i < inF; i++) fa[j * inF + i] = right[i * r + j] * s;
  }
  return {
    factors: { module: m.name, rank: k, alpha: m.alpha, outFeatures: outF, inFeatures: inF, a: fa, b: fb },
    report: { module: m.name, oldRank: r, alpha: m.alpha, ...choice },
  };
}

export async function loraResize(args: LoraResizeArgs, ctx: JobContext = {}): Promise<LoraResizeResult> {
  if (args.rank === undefined && args.energy === undefined) throw new RangeError('give a rank or an energy share');
  const t0 = performance.now();
  const a = await openAdapter(args.adapter);
  try {
    if (a.format !== 'peft' || !a.config) throw new FormatError('unsupported', 'lora-resize reads and writes PEFT adapters (adapter_config.json + adapter_model.safetensors)', args.adapter);
    if (a.replacements.length > 0) throw new FormatError('unsupported', `the adapter carries whole tensors (modules_to_save: ${a.replacements[0].name}); nothing was written`, args.adapter);
    if (a.unknown.length > 0) throw new FormatError('unsupported', `key '${a.unknown[0].key}': ${a.unknown[0].reason}; nothing was written`, args.adapter);
    for (const m of a.modules) {
      if (m.magnitude) refuse(a.file, m, 'DoRA: its magnitude vector normalises W + s·B·A column by column, so a lower-rank product changes the merged weights beyond the truncation; resize the merged model instead');
      if (m.kind !== 'linear' || m.down.shape.length !== 2) refuse(a.file, m, `${m.kind === 'linear' ? 'convolution' : m.kind} modules are not resized`);
    }
    const rsLora = a.config.useRslora === true;
    const factors: LoraFactors[] = [];
    const modules: ResizedModule[] = [];
    for (const [i, m] of a.modules.entries()) {
      throwIfCancelled(ctx.signal);
      ctx.progress?.({ done: i, total: a.modules.length, unit: 'tensors', message: `SVD of ${m.name}` });
      const r = await resizeModule(a, m, args, rsLora);
      factors.push(r.factors);
      modules.push(r.report);
    }
    const cfgPath = join(dirname(a.file), 'adapter_config.json');
    const files = await writePeftAdapter(args.outDir, factors, [a.file, cfgPath, args.adapter], {
      signal: ctx.signal,
      notice: ctx.notice,
      useRslora: rsLora,
      baseConfig: JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>,
    });
    return { files, modules, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await a.model.close();
  }
}
