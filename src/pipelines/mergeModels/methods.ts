/**
 * The merge methods, each a unit that declares its parameters and turns one tensor's
 * parameter values into a kernel: zero or more scans over the tensor (norms, rank
 * histograms), then a combine of each chunk. Kernels see only float values of chunks,
 * in order; loading, decoding and writing are the driver's (mergeModels.ts). All
 * arithmetic is float64, rounded once to the output dtype.
 */
import { ParamError, type ParamDef } from './params';
import { RankWindow } from './select';
import { absDeltaKeys, gtaCombine, streamKey, type GtaParams, type Sparsify, type Vec } from '../../compute/merge/gta';

export type { Vec, Sparsify } from '../../compute/merge/gta';
export { streamKey, uniform } from '../../compute/merge/gta';

/** One chunk of a tensor in every model: `base` (methods that take one) and the method's operands. */
export interface ChunkInputs {
  readonly base?: Vec;
  readonly models: readonly Vec[];
}

/** A pass over the whole tensor, chunk by chunk in order, before the combine. */
export interface Scan {
  visit(x: ChunkInputs, count: number): void;
  done(): void;
}

export interface TensorKernel {
  readonly scans: readonly Scan[];
  /** Writes `count` merged values; called for the chunks in order, after every scan. */
  combine(x: ChunkInputs, count: number, out: Float64Array): void;
}

export interface KernelContext {
  readonly tensor: string;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly global: Readonly<Record<string, number | boolean>>;
  /** Per operand (the non-base models, or every model for methods without a base), in config order. */
  readonly perModel: readonly Readonly<Record<string, number | boolean>>[];
  /** Each operand's position in the config's `models` list (it seeds DARE's draws). */
  readonly modelIndex: readonly number[];
  readonly seed: number;
}

export interface MergeMethod {
  readonly name: string;
  /** 'required': operands are the models other than `base_model`; 'none': every model is an operand. */
  readonly base: 'required' | 'none';
  readonly globalParams: readonly ParamDef[];
  readonly modelParams: readonly ParamDef[];
  /** Problems with the model list (counts, the base's presence), for the config check. */
  checkModels(models: readonly string[], base: string | undefined): string[];
  kernel(ctx: KernelContext): TensorKernel;
  /** Task-vector methods: their sparsification and sign election (the pooled driver's fast path reads them). */
  readonly gta?: { readonly sparsify: Sparsify; readonly consensus: boolean };
}

const weight: ParamDef = { name: 'weight', kind: 'number', required: true };
const density: ParamDef = { name: 'density', kind: 'number', default: 1 };
const lambda: ParamDef = { name: 'lambda', kind: 'number', default: 1 };
const int8Mask: ParamDef = { name: 'int8_mask', kind: 'boolean', default: false };

function needBase(min: number): MergeMethod['checkModels'] {
  return (models, base) => {
    if (base === undefined) return ['base_model: required by this method'];
    const others = models.filter((m) => m !== base).length;
    return others < min ? [`models: needs at least ${min} model(s) besides base_model, got ${others}`] : [];
  };
}

function linearKernel(ctx: KernelContext): TensorKernel {
  const w = ctx.perModel.map((p) => p.weight as number);
  const sum = w.reduce((a, b) => a + b, 0);
  const normalize = ctx.global.normalize as boolean;
  if (normalize && sum === 0) throw new ParamError(`linear: the weights for '${ctx.tensor}' sum to 0, so normalize cannot divide by them`);
  return {
    scans: [],
    combine(x, count, out) {
      for (let i = 0; i < count; i++) {
        let s = 0;
        for (let j = 0; j < w.length; j++) s += w[j] * x.models[j][i];
        out[i] = normalize ? s / sum : s;
      }
    },
  };
}


/**
 * The ranks of |Δ| each model keeps: magnitude keeps the top ⌊density·n⌋; outliers
 * (breadcrumbs) drops the top ⌊gamma·n⌋ and the bottom of what is left beyond
 * ⌊density·n⌋. Where gamma·n rounds to 0 the window runs to the end (mergekit's
 * slice `[n_bot:-0]` would keep nothing, which is not the method's meaning).
 */
function rankWindows(ctx: KernelContext, sparsify: Sparsify, dens: readonly number[]): (RankWindow | undefined)[] {
  return ctx.perModel.map((p, j) => {
    if (dens[j] >= 1 || (sparsify !== 'magnitude' && sparsify !== 'outliers')) return undefined;
    const numel = ctx.numel;
    if (sparsify === 'magnitude') return new RankWindow(numel, numel - Math.floor(dens[j] * numel), numel);
    const target = Math.floor(numel * dens[j]);
    let top = Math.floor(numel * (p.gamma as number));
    let bottom = numel - target - top;
    if (bottom < 0) {
      top += bottom;
      bottom = 0;
    }
    return new RankWindow(numel, bottom, numel - top);
  });
}

/** One tensor's task-vector parameters and rank windows, for the in-thread kernel and the pooled one. */
export interface GtaSpec {
  readonly params: GtaParams;
  readonly windows: readonly (RankWindow | undefined)[];
}

export function gtaSpec(ctx: KernelContext, sparsify: Sparsify, consensus: boolean): GtaSpec {
  const dens = ctx.perModel.map((p) => (p.density as number | undefined) ?? 1);
  for (const d of dens) if (!(d >= 0)) throw new ParamError(`density ${d} for '${ctx.tensor}' is negative`);
  const params: GtaParams = {
    weights: ctx.perModel.map((p) => p.weight as number),
    dens,
    sparsify,
    consensus,
    normalize: ctx.global.normalize as boolean,
    lambda: ctx.global.lambda as number,
    rescale: ctx.global.rescale !== false,
  };
  return { params, windows: rankWindows(ctx, sparsify, dens) };
}

/** Task vectors Δⱼ = modelⱼ − base: sparsified, weighted, optionally sign-elected, summed onto the base. */
function taskArithmeticKernel(ctx: KernelContext, sparsify: Sparsify, consensus: boolean): TensorKernel {
  const { params, windows } = gtaSpec(ctx, sparsify, consensus);
  const ranked = windows.some((r) => r !== undefined);
  // Per chunk: |Δ| as float32 (their bits are the rank keys) and the keep flags.
  let abs = new Float32Array(0);
  let keep: (Uint8Array | undefined)[] = [];
  let capacity = 0;
  const keysOf = (x: ChunkInputs, j: number, count: number): Uint32Array => {
    if (abs.length < count) abs = new Float32Array(count);
    return absDeltaKeys(x.models[j], x.base!, count, abs);
  };
  const scans: Scan[] = ranked
    ? [
        { visit: (x, c) => windows.forEach((r, j) => r?.countHigh(keysOf(x, j, c))), done: () => windows.forEach((r) => r?.endHigh()) },
        { visit: (x, c) => windows.forEach((r, j) => r?.countLow(keysOf(x, j, c))), done: () => windows.forEach((r) => r?.endLow()) },
      ]
    : [];
  const draws = sparsify === 'random' ? ctx.modelIndex.map((mi) => streamKey(ctx.seed, ctx.tensor, mi)) : [];
  let offset = 0;
  return {
    scans,
    combine(x, count, out) {
      if (capacity < count) {
        capacity = count;
        keep = windows.map((r) => (r ? new Uint8Array(count) : undefined));
      }
      windows.forEach((r, j) => r?.classify(keysOf(x, j, count), keep[j]!));
      gtaCombine(params, x.base!, x.models, count, keep, draws, offset, out);
      offset += count;
    },
  };
}

// mergekit's constants: above this |cos| the two tensors are treated as colinear, and linear interpolation is used.
const DOT_THRESHOLD = 0.9995;
// Norms at or below this are not normalised (mergekit's eps).
const SLERP_EPS = 1e-8;

function slerpKernel(ctx: KernelContext): TensorKernel {
  const t = ctx.global.t as number;
  let dot = 0;
  let n0 = 0;
  let n1 = 0;
  let s0 = 1 - t;
  let s1 = t;
  return {
    scans: [
      {
        visit(x, count) {
          const a = x.base!;
          const b = x.models[0];
          for (let i = 0; i < count; i++) {
            dot += a[i] * b[i];
            n0 += a[i] * a[i];
            n1 += b[i] * b[i];
          }
        },
        done() {
          const l0 = Math.sqrt(n0);
          const l1 = Math.sqrt(n1);
          const cos = dot / ((l0 > SLERP_EPS ? l0 : 1) * (l1 > SLERP_EPS ? l1 : 1));
          if (Math.abs(cos) > DOT_THRESHOLD) return;
          const theta = Math.acos(cos);
          const sin = Math.sin(theta);
          s0 = Math.sin(theta - theta * t) / sin;
          s1 = Math.sin(theta * t) / sin;
        },
      },
    ],
    combine(x, count, out) {
      const a = x.base!;
      const b = x.models[0];
      for (let i = 0; i < count; i++) out[i] = s0 * a[i] + s1 * b[i];
    },
  };
}

// mergekit's floor on the product of two offsets' norms, so that zero offsets give cos 0, not NaN.
const STOCK_MIN_NORM = 1e-6;

function modelStockKernel(ctx: KernelContext): TensorKernel {
  const n = ctx.perModel.length;
  const filterWise = ctx.global.filter_wise as boolean;
  // Filter-wise: one angle per row (the last dimension); else one for the whole tensor.
  const rowLen = filterWise ? (ctx.shape.length > 0 ? ctx.shape[ctx.shape.length - 1] : 1) : Math.max(1, ctx.numel);
  const rows = Math.max(1, Math.ceil(ctx.numel / Math.max(1, rowLen)));
  const norms = Array.from({ length: n }, () => new Float64Array(rows));
  const pairs: [number, number][] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) pairs.push([i, j]);
  const dots = pairs.map(() => new Float64Array(rows));
  const ts = new Float64Array(rows);
  let offset = 0;
  return {
    scans: [
      {
        visit(x, count) {
          const b = x.base!;
          for (let i = 0; i < count; i++) {
            const row = Math.floor((offset + i) / rowLen);
            for (let j = 0; j < n; j++) {
              const d = x.models[j][i] - b[i];
              norms[j][row] += d * d;
            }
            pairs.forEach(([p, q], k) => (dots[k][row] += (x.models[p][i] - b[i]) * (x.models[q][i] - b[i])));
          }
          offset += count;
        },
        done() {
          for (let r = 0; r < rows; r++) {
            let cos = 0;
            pairs.forEach(([p, q], k) => {
              const c = dots[k][r] / Math.max(Math.sqrt(norms[p][r]) * Math.sqrt(norms[q][r]), STOCK_MIN_NORM);
              cos += Math.min(1, Math.max(-1, c));
            });
            cos /= pairs.length;
            ts[r] = (n * cos) / (1 + (n - 1) * cos);
          }
          offset = 0;
        },
      },
    ],
    combine(x, count, out) {
      const b = x.base!;
      for (let i = 0; i < count; i++) {
        const t = ts[Math.floor((offset + i) / rowLen)];
        let avg = 0;
        for (let j = 0; j < n; j++) avg += x.models[j][i];
        out[i] = t * (avg / n) + (1 - t) * b[i];
      }
      offset += count;
    },
  };
}

function gta(name: string, sparsify: Sparsify, consensus: boolean, normalize: boolean): MergeMethod {
  const modelParams: ParamDef[] = [weight];
  if (sparsify) modelParams.push(density);
  if (sparsify === 'outliers') modelParams.push({ name: 'gamma', kind: 'number', default: 0.01 });
  const globalParams: ParamDef[] = [{ name: 'normalize', kind: 'boolean', default: normalize }, lambda, int8Mask];
  if (sparsify === 'random') globalParams.push({ name: 'rescale', kind: 'boolean', default: true });
  return { name, base: 'required', globalParams, modelParams, checkModels: needBase(1), kernel: (ctx) => taskArithmeticKernel(ctx, sparsify, consensus), gta: { sparsify, consensus } };
}

export const METHODS = {
  linear: {
    name: 'linear',
    base: 'none',
    globalParams: [{ name: 'normalize', kind: 'boolean', default: true }],
    modelParams: [weight],
    checkModels: (models) => (models.length < 1 ? ['models: needs at least one model'] : []),
    kernel: linearKernel,
  },
  task_arithmetic: gta('task_arithmetic', undefined, false, false),
  ties: gta('ties', 'magnitude', true, true),
  dare_linear: gta('dare_linear', 'random', false, false),
  dare_ties: gta('dare_ties', 'random', true, false),
  breadcrumbs: gta('breadcrumbs', 'outliers', false, false),
  breadcrumbs_ties: gta('breadcrumbs_ties', 'outliers', true, false),
  slerp: {
    name: 'slerp',
    base: 'required',
    globalParams: [{ name: 't', kind: 'number', required: true }],
    modelParams: [],
    checkModels: (models, base) => (base === undefined ? ['base_model: required by slerp'] : models.length !== 2 || !models.includes(base) ? ['models: slerp takes exactly two models, one of them base_model'] : []),
    kernel: slerpKernel,
  },
  model_stock: {
    name: 'model_stock',
    base: 'required',
    globalParams: [{ name: 'filter_wise', kind: 'boolean', default: false }],
    modelParams: [],
    checkModels: needBase(2),
    kernel: modelStockKernel,
  },
  // The frankenmerge case: each tensor copied from its one source (scaled), as slices stack layers of several models.
  passthrough: {
    name: 'passthrough',
    base: 'none',
    globalParams: [],
    modelParams: [{ name: 'scale', kind: 'number', default: 1 }],
    checkModels: (models) => (models.length !== 1 ? [`models: passthrough takes exactly one model (per slice), got ${models.length}`] : []),
    kernel: (ctx) => {
      const scale = ctx.perModel[0].scale as number;
      return {
        scans: [],
        combine(x, count, out) {
          for (let i = 0; i < count; i++) out[i] = scale * x.models[0][i];
        },
      };
    },
  },
} satisfies Record<string, MergeMethod>;

export type MethodName = keyof typeof METHODS;
