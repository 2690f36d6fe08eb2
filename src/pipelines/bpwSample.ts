import type { Backend } from '../compute/kernel';
import type { QuantInputDType } from '../compute/quant/common';
import { SCHEMES } from '../compute/quant/schemes';
import { dequantize } from '../compute/dequant/dequant.cpu';
import { throttle, throwIfCancelled, type JobContext } from '../core/job';
import { decodeToF32 } from '../format/decode';
import { FormatError } from '../format/errors';
import type { GgmlTypeName } from '../format/gguf/types';
import type { Imatrix } from '../format/imatrix';
import type { BpwCandidate, BpwTensor } from './bpwPlan';
import { rowWeightsFor, schemeOf } from './ggufQuantStream';
import type { ChosenType, FtypeTensor } from './llamaFtype';

/**
 * The error estimates a `--target-bpw` plan rests on: a deterministic sample of whole rows
 * (or 256-aligned row segments of long rows) of each tensor, quantized to every candidate
 * type with the tensor's importance weights, as the real run would, and compared with the
 * input. The error is Σ w·(x − q(x))², w the imatrix value of the column (1 without one),
 * scaled from the sample to the whole tensor, so that tensors compare by their share of the
 * model's (importance-weighted) error.
 */

// Sampled values per tensor: 64 Ki pin the relative error of a type to a few percent, and
// seven candidates of that many take milliseconds; a tensor with fewer is read whole.
const SAMPLE_VALUES = 1 << 16;
// A sampled segment is at most this long: long rows (an embedding's 150 k columns) are read in pieces.
const SEGMENT_VALUES = 4096;

/** The types a budget chooses among, by row length: K-quants where 256 divides it, 32-value blocks otherwise. */
const K_CANDIDATES: readonly ChosenType[] = ['Q2_K', 'Q3_K', 'IQ4_XS', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_0'];
const BLOCK32_CANDIDATES: readonly ChosenType[] = ['Q4_0', 'IQ4_NL', 'Q5_0', 'Q5_1', 'Q8_0'];

export interface SampleTensor extends FtypeTensor {
  /** Reads `into.length` bytes of the tensor's data from `offset`. */
  readonly read: (offset: number, into: Uint8Array) => Promise<void>;
}

const esizeOf = (t: ChosenType): number => (t === 'F32' ? 4 : 2);

/** Rows spread evenly over the tensor, and one segment start shared by all (importance weights are per column). */
function segments(name: string, rows: number, cols: number, grain: number): { rowsAt: number[]; col: number; len: number } {
  const len = Math.min(cols, Math.floor(SEGMENT_VALUES / grain) * grain);
  const count = Math.min(rows, Math.max(1, Math.floor(SAMPLE_VALUES / len)));
  const rowsAt = Array.from({ length: count }, (_, k) => Math.min(rows - 1, Math.floor(((k + 0.5) * rows) / count)));
  const slots = Math.floor((cols - len) / grain) + 1;
  let h = 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x9e3779b1) >>> 0;
  return { rowsAt, col: (h % slots) * grain, len };
}

interface Acc {
  sse: Float64Array;
  signal: number;
  n: number;
}

/** Quantizes one group of segments (all of one expert) to every candidate and adds the weighted errors. */
async function addGroup(
  t: SampleTensor, types: readonly ChosenType[], raw: Uint8Array, rows: number, len: number,
  w: Float32Array | undefined, neutral: number, acc: Acc, backend: Backend, signal?: AbortSignal,
): Promise<void> {
  const dtype = t.type as QuantInputDType;
  const x = new Float32Array(rows * len);
  decodeToF32(t.type as 'F32', raw, x, x.length);
  for (let i = 0; i < x.length; i++) {
    const wi = w ? w[i % len] : neutral;
    acc.signal += wi * x[i] * x[i];
  }
  acc.n += x.length;
  await Promise.all(
    types.map(async (type, k) => {
      const r = await backend.run(SCHEMES[schemeOf(type)!].kernel, { src: raw, dtype, rows, cols: len, stats: false, imatrix: w }, signal);
      const y = new Float32Array(x.length);
      dequantize(type as GgmlTypeName, r.data, y);
      let s = 0;
      for (let i = 0; i < x.length; i++) {
        const d = x[i] - y[i];
        s += (w ? w[i % len] : neutral) * d * d;
      }
      acc.sse[k] += s;
    }),
  );
}

/** One tensor's candidates and their estimated errors. */
async function sampleTensor(t: SampleTensor, im: Imatrix | undefined, neutral: number, file: string, backend: Backend, signal?: AbortSignal): Promise<BpwTensor> {
  const cols = t.ne[0];
  const rowsPerExpert = t.ne[1] ?? 1;
  const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
  const numel = cols * rows;
  const grain = cols % 256 === 0 ? 256 : 32;
  const weights = rowWeightsFor(im, t.name, t.ne, 'Q4_K', file);
  // llama.cpp's weighted Q4_0 search is not among ours: with weights, Q4_0 is no candidate.
  const types = (grain === 256 ? K_CANDIDATES : BLOCK32_CANDIDATES).filter((c) => !(weights && (c === 'Q4_0' || c === 'Q4_1')));
  const { rowsAt, col, len } = segments(t.name, rows, cols, grain);
  const es = esizeOf(t.type);
  const acc: Acc = { sse: new Float64Array(types.length), signal: 0, n: 0 };
  // Rows of one expert share its weights: one kernel call per expert's rows.
  for (let a = 0; a < rowsAt.length; ) {
    throwIfCancelled(signal);
    const e = Math.floor(rowsAt[a] / rowsPerExpert);
    let b = a;
    while (b < rowsAt.length && Math.floor(rowsAt[b] / rowsPerExpert) === e) b++;
    const raw = new Uint8Array((b - a) * len * es);
    for (let k = a; k < b; k++) await t.read((rowsAt[k] * cols + col) * es, raw.subarray((k - a) * len * es, (k - a + 1) * len * es));
    const w = weights ? weights.imatrix.slice(e * cols + col, e * cols + col + len) : undefined;
    await addGroup(t, types, raw, b - a, len, w, neutral, acc, backend, signal);
    a = b;
  }
  const scale = numel / acc.n;
  const candidates: BpwCandidate[] = types.map((type, k) => ({ type, sse: acc.sse[k] * scale }));
  return { name: t.name, numel, signal: acc.signal * scale, candidates };
}

/** The mean importance over every imatrix value: the weight of a tensor the imatrix does not list. */
function neutralWeight(im: Imatrix | undefined): number {
  if (!im) return 1;
  let s = 0;
  let n = 0;
  for (const v of im.entries.values()) for (let i = 0; i < v.length; i++) (s += v[i]), n++;
  return n ? s / n : 1;
}

/**
 * The budget's input for every tensor: fixed ones with their type, the others with their
 * sampled candidates. Inputs must be F32, F16 or BF16 (llama-quantize's starting points).
 */
export async function sampleBpw(
  tensors: readonly SampleTensor[], fixed: ReadonlyMap<string, { type: ChosenType; why: string }>, im: Imatrix | undefined, file: string,
  backend: Backend, ctx: JobContext = {},
): Promise<BpwTensor[]> {
  const neutral = neutralWeight(im);
  const report = throttle(ctx.progress);
  const out: BpwTensor[] = [];
  let done = 0;
  for (const t of tensors) {
    const f = fixed.get(t.name);
    const numel = t.ne.reduce((a, b) => a * b, 1);
    if (f) out.push({ name: t.name, numel, signal: 0, candidates: [], fixed: f.type, why: f.why });
    else {
      if (t.type !== 'F32' && t.type !== 'F16' && t.type !== 'BF16') throw new FormatError('unsupported', `requantizing from ${t.type} is not supported (start from the F16, BF16 or F32 GGUF)`, file, t.name);
      out.push(await sampleTensor(t, im, neutral, file, backend, ctx.signal));
    }
    report({ done: ++done, total: tensors.length, unit: 'tensors', message: t.name });
  }
  return out;
}
