/**
 * `merge.gta`: one chunk of a task-vector merge on a CPU worker, from the inputs' raw
 * bytes: the rank histograms of |Δ| (the scans of ties' magnitude trim) or the merged,
 * encoded values. Elements whose |Δ| equals a window's boundary key are kept here and
 * listed with their inputs: which of them fall below the boundary depends on how many
 * came before in the tensor, which only the caller, seeing the chunks in order, knows.
 */
import { decodeToF32 } from '../../format/decode';
import type { DType } from '../../format/dtypes';
import { GpuUnsupportedError, type KernelDef } from '../kernel';
import { absDeltaKeys, encodeMerged, gtaCombine, type GtaParams } from './gta';

// 16 bits of the rank key a pass (see pipelines/mergeModels/select.ts).
const BINS = 1 << 16;

/** A model's rank window in the combine: keep every element, none, or those above a boundary key. */
export type GtaWindow = { readonly mode: 'all' | 'none' } | { readonly mode: 'key'; readonly key: number };

export interface GtaChunkArgs {
  readonly op: 'high' | 'low' | 'combine';
  /** Base first, then the operands; BF16, F16 or F32 (float32 decoding is exact for them). */
  readonly dtypes: readonly DType[];
  readonly bytes: readonly Uint8Array[];
  readonly count: number;
  readonly params: GtaParams;
  /** 'high'/'low': the operands whose |Δ| to count (and for 'low' the bin); 'combine': each operand's window. */
  readonly windows: readonly (GtaWindow | undefined)[];
  readonly bins?: readonly number[];
  readonly out: DType;
}

/** Elements equal to a window's boundary key: positions in the chunk, every input there, every operand's keep flag. */
export interface GtaTies {
  readonly at: Uint32Array;
  readonly values: Float32Array;
  readonly keep: Uint8Array;
}

export interface GtaChunkResult {
  readonly hist?: (Uint32Array | undefined)[];
  readonly bytes?: Uint8Array;
  readonly ties?: (GtaTies | undefined)[];
}

function decoded(args: GtaChunkArgs): Float32Array[] {
  return args.bytes.map((b, k) => {
    const out = new Float32Array(args.count);
    decodeToF32(args.dtypes[k], b, out, args.count);
    return out;
  });
}

function tiesOf(keys: Uint32Array, key: number, inputs: readonly Float32Array[], keep: readonly (Uint8Array | undefined)[]): GtaTies | undefined {
  // Key 0 means Δ is exactly 0 (decoded inputs are float32: a non-zero difference is at least 2^-149),
  // and a zero Δ adds the same nothing kept or dropped, so those need no decision.
  if (key === 0) return undefined;
  const at: number[] = [];
  for (let i = 0; i < keys.length; i++) if (keys[i] === key) at.push(i);
  if (at.length === 0) return undefined;
  const n = inputs.length;
  const values = new Float32Array(at.length * n);
  const flags = new Uint8Array(at.length * (n - 1));
  at.forEach((i, t) => {
    for (let k = 0; k < n; k++) values[t * n + k] = inputs[k][i];
    for (let j = 0; j < n - 1; j++) flags[t * (n - 1) + j] = keep[j] ? keep[j]![i] : 1;
  });
  return { at: Uint32Array.from(at), values, keep: flags };
}

export function gtaChunkCpu(args: GtaChunkArgs): GtaChunkResult {
  const inputs = decoded(args);
  const [base, ...models] = inputs;
  const count = args.count;
  const scratch = new Float32Array(count);
  if (args.op !== 'combine') {
    const hist = models.map((m, j) => {
      if (!args.windows[j]) return undefined;
      const keys = absDeltaKeys(m, base, count, scratch);
      const h = new Uint32Array(BINS);
      if (args.op === 'high') for (let i = 0; i < count; i++) h[keys[i] >>> 16]++;
      else {
        const bin = args.bins![j];
        for (let i = 0; i < count; i++) if (keys[i] >>> 16 === bin) h[keys[i] & 0xffff]++;
      }
      return h;
    });
    return { hist };
  }
  const keep: (Uint8Array | undefined)[] = args.windows.map((w) => (w ? new Uint8Array(count) : undefined));
  const keyed: (Uint32Array | undefined)[] = [];
  args.windows.forEach((w, j) => {
    const k = keep[j];
    if (!w || !k) return;
    if (w.mode !== 'key') return void k.fill(w.mode === 'all' ? 1 : 0);
    // Each operand's keys need their own buffer: the tie lists below read them after every window is classified.
    const keys = absDeltaKeys(models[j], base, count, new Float32Array(count));
    const key = w.key;
    for (let i = 0; i < count; i++) k[i] = keys[i] >= key ? 1 : 0;
    keyed[j] = keys;
  });
  const ties = args.windows.map((w, j) => (w?.mode === 'key' ? tiesOf(keyed[j]!, w.key, inputs, keep) : undefined));
  const out = new Float64Array(count);
  gtaCombine(args.params, base, models, count, keep, [], 0, out);
  return { bytes: encodeMerged(out, count, args.out), ties };
}

/** Whether the pooled kernel takes these inputs: float32-exact dtypes in, a float dtype out. */
export function gtaChunkTakes(dtypes: readonly DType[], out: DType): boolean {
  const narrow = (d: DType) => d === 'BF16' || d === 'F16' || d === 'F32';
  return dtypes.every(narrow) && (narrow(out) || out === 'F64');
}

export const gtaChunkKernel: KernelDef<GtaChunkArgs, GtaChunkResult> = {
  name: 'merge.gta',
  cpu: gtaChunkCpu,
  gpu: async () => {
    throw new GpuUnsupportedError('merge.gta runs on the CPU workers');
  },
  transfer: (a) => a.bytes.map((b) => b.buffer as ArrayBuffer),
};
