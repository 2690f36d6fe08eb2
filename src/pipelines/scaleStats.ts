/**
 * The scales of one quantized tensor: for a ggml block type the `d` of every block (and `m`,
 * `dmin`, the K-quants' sub-block scales), for a quantized-safetensors scheme its scale and
 * zero-point parts. Streamed in bounded chunks through the model's ByteSource: a block type's
 * blocks are read (its scales sit inside them), a scheme's scale parts only.
 */
import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { BLOCK_SCALES } from '../compute/scales/blockScales';
import { emptySeries } from '../compute/scales/scaleStats.cpu';
import { LOG2_BINS_PER_OCTAVE, LOG2_LO, ZERO_LO, scaleStatsKernel, type ScaleSource, type SeriesPartial, type SeriesSpec } from '../compute/scales/scaleStats';
import { partFloats } from '../compute/dequant/partValues';
import { CancelledError, throwIfCancelled, type JobContext } from '../core/job';
import { ByteProgress, streamJobs } from '../core/stream';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import { FormatError } from '../format/errors';
import { partsOf, storageOf, typeNameOf, type Model, type TensorInfo } from '../format/model';
import type { StorageType, TensorPart } from '../format/storage';

/** One series of scales as the viewer and the CLI show it. */
export interface ScaleSeries {
  readonly name: string;
  readonly kind: 'scale' | 'zero';
  readonly count: number;
  readonly zeros: number;
  readonly nonFinite: number;
  readonly negative: number;
  /** Codes at their format's limits (E8M0 0 and 254/255, E4M3 448); absent where the format has no such rule. */
  readonly saturated?: { readonly low: number; readonly high: number; readonly rule: string };
  /** Over the finite values; NaN when there are none. */
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  /** Smallest and largest finite nonzero |value| (scales only; NaN for zero points or when none). */
  readonly absMin: number;
  readonly absMax: number;
  /**
   * Scales: bins of log₂|v|, `width` octaves wide, the first starting at log₂|v| = `lo`; zero
   * points: one bin per integer from `lo`. Only the bins from the first to the last occupied one.
   */
  readonly histogram: { readonly lo: number; readonly width: number; readonly counts: Float64Array };
}

export interface ScaleStatsReport {
  readonly name: string;
  /** The block type or scheme. */
  readonly storage: string;
  readonly series: readonly ScaleSeries[];
  /** NVFP4's one float32 global scale, as stored (its reciprocal for compressed-tensors). */
  readonly globalScale?: number;
  readonly backend: string;
  readonly seconds: number;
  readonly bytesRead: number;
}

export interface ScaleStatsOptions extends JobContext {
  /** Upper bound on one chunk read (whole blocks or elements; at least one); 4 MiB by default. */
  readonly chunkBytes?: number;
}

/** One stream of scales: where its bytes are, in what unit, and how they read. */
interface ScaleStream {
  readonly source: ScaleSource;
  /** A scheme's part, or the tensor's own blocks when absent. */
  readonly part?: TensorPart;
  readonly bytes: number;
  /** Bytes of one whole element (block, scale, word): chunks end on these. */
  readonly unit: number;
}

// 4 MiB chunks: small enough that the chunks in flight stay a few tens of MiB on any tensor,
// large enough that a worker round trip costs a few percent of counting one.
const CHUNK_BYTES = 4 << 20;

const scale = (name: string, dtype = ''): SeriesSpec => {
  // The 8-bit scale formats have codes at their limits worth counting: E8M0's 0 and 254/255, E4M3's 448.
  const saturation = dtype === 'F8_E8M0' ? 'e8m0' : dtype === 'F8_E4M3' ? 'e4m3' : undefined;
  return saturation ? { name, kind: 'scale', saturation } : { name, kind: 'scale' };
};
const zero = (name: string): SeriesSpec => ({ name, kind: 'zero' });

function bytesOf(dtype: string): number {
  return DTYPE_INFO[dtype as DType].bits / 8;
}

/** Whether the tensor's storage has scales this pipeline reads (a ggml block type or a scheme). */
export function hasScales(t: TensorInfo): boolean {
  const s = storageOf(t);
  return (s.kind === 'blocks' && BLOCK_SCALES[s.type] !== undefined) || (s.kind === 'scheme' && schemeStreams(t, s, undefined) !== undefined);
}

function param(s: Extract<StorageType, { kind: 'scheme' }>, key: string): number | string | undefined {
  return s.params?.[key];
}

/** The scale and zero-point parts of a scheme tensor; undefined for a scheme without scales. */
function schemeStreams(t: TensorInfo, s: Extract<StorageType, { kind: 'scheme' }>, global: number | undefined): ScaleStream[] | undefined {
  const parts = partsOf(t);
  const part = (role: string) => parts[s.parts.indexOf(role)];
  const floats = (p: TensorPart | undefined, dtype: string, extra: { multiply?: number; divide?: number } = {}): ScaleStream[] =>
    p ? [{ source: { kind: 'floats', dtype, series: scale(p.role, dtype), ...extra }, part: p, bytes: p.byteLength, unit: bytesOf(dtype) }] : [];
  const scaleDtype = String(param(s, 'scaleDtype') ?? '');
  const bits = Number(param(s, 'bits'));
  switch (s.scheme) {
    case 'fp8-tensor':
    case 'fp8-channel':
    case 'fp8-group':
    case 'fp8-block':
    case 'int8-scaled': {
      const z = parts[2];
      const zDtype = String(param(s, 'zeroDtype') ?? '');
      const zs: ScaleStream[] = z ? [{ source: { kind: 'ints', dtype: zDtype, series: zero(z.role) }, part: z, bytes: z.byteLength, unit: bytesOf(zDtype) }] : [];
      return [...floats(parts[1], scaleDtype), ...zs];
    }
    case 'mxfp4':
      return floats(part('scales'), 'F8_E8M0');
    case 'nvfp4': {
      const g = global ?? 1;
      return floats(parts[1], 'F8_E4M3', param(s, 'global') === 'reciprocal' ? { divide: g } : { multiply: g });
    }
    case 'int-packed': {
      const z = part('zero_point');
      const rows = t.shape[0] ?? 0;
      const groups = Math.ceil(Number(param(s, 'cols')) / Number(param(s, 'groupSize')));
      const zs: ScaleStream[] = z ? [{ source: { kind: 'packed', bits, add: 0, sub: 1 << (bits - 1), series: zero(z.role), rows: { rows, groups } }, part: z, bytes: z.byteLength, unit: 4 }] : [];
      return [...floats(part('scale'), scaleDtype), ...zs];
    }
    case 'gptq':
    case 'awq': {
      const z = part('qzeros');
      const zs: ScaleStream[] = z ? [{ source: { kind: 'packed', bits, add: Number(param(s, 'zeroOffset') ?? 0), sub: 0, series: zero(z.role) }, part: z, bytes: z.byteLength, unit: 4 }] : [];
      return [...floats(part('scales'), scaleDtype), ...zs];
    }
    default:
      return undefined;
  }
}

/** NVFP4's global scale: one float32 part, read first because every block scale is relative to it. */
async function globalScaleOf(model: Model, t: TensorInfo, s: StorageType): Promise<number | undefined> {
  if (s.kind !== 'scheme' || s.scheme !== 'nvfp4' || !model.readPart) return undefined;
  const p = partsOf(t)[2];
  const dtype = String(param(s, 'globalDtype') ?? 'F32');
  const b = new Uint8Array(bytesOf(dtype));
  await model.readPart(t, p, 0, b);
  return partFloats(b, dtype)[0];
}

interface Chunk {
  readonly stream: number;
  readonly offset: number;
  readonly length: number;
}

function chunksOf(streams: readonly ScaleStream[], chunkBytes: number): Chunk[] {
  const out: Chunk[] = [];
  streams.forEach((s, k) => {
    const per = Math.max(1, Math.floor(chunkBytes / s.unit)) * s.unit;
    const whole = Math.floor(s.bytes / s.unit) * s.unit;
    for (let o = 0; o < whole; o += per) out.push({ stream: k, offset: o, length: Math.min(per, whole - o) });
  });
  return out;
}

function fold(into: SeriesPartial, r: SeriesPartial): void {
  into.count += r.count;
  into.zeros += r.zeros;
  into.nonFinite += r.nonFinite;
  into.negative += r.negative;
  into.saturatedLow += r.saturatedLow;
  into.saturatedHigh += r.saturatedHigh;
  into.min = Math.min(into.min, r.min);
  into.max = Math.max(into.max, r.max);
  into.sum += r.sum;
  into.absMin = Math.min(into.absMin, r.absMin);
  into.absMax = Math.max(into.absMax, r.absMax);
  for (let i = 0; i < r.hist.length; i++) into.hist[i] += r.hist[i];
}

/** The folded counts as the report shows them: NaN for a statistic of nothing, the occupied bins only. */
export function summarizeSeries(p: SeriesPartial): ScaleSeries {
  const finite = p.count - p.nonFinite;
  let a = 0;
  let b = p.hist.length - 1;
  while (a <= b && p.hist[a] === 0) a++;
  while (b >= a && p.hist[b] === 0) b--;
  const isZero = p.spec.kind === 'zero';
  return {
    name: p.spec.name,
    kind: p.spec.kind,
    count: p.count,
    zeros: p.zeros,
    nonFinite: p.nonFinite,
    negative: p.negative,
    ...(p.spec.saturation ? { saturated: { low: p.saturatedLow, high: p.saturatedHigh, rule: p.spec.saturation } } : {}),
    min: finite ? p.min : NaN,
    max: finite ? p.max : NaN,
    mean: finite ? p.sum / finite : NaN,
    absMin: !isZero && p.absMin !== Infinity ? p.absMin : NaN,
    absMax: !isZero && p.absMin !== Infinity ? p.absMax : NaN,
    histogram: {
      lo: isZero ? ZERO_LO + Math.min(a, p.hist.length) : LOG2_LO + a / LOG2_BINS_PER_OCTAVE,
      width: isZero ? 1 : 1 / LOG2_BINS_PER_OCTAVE,
      counts: a <= b ? p.hist.slice(a, b + 1) : new Float64Array(0),
    },
  };
}

/**
 * Counts the scales of `tensor` (see ScaleStatsReport): each chunk is read through the model
 * and counted on the backend's workers, and the chunks fold in order. A tensor whose storage
 * has no scales is `unsupported`.
 */
export async function scaleStats(model: Model, tensor: string | TensorInfo, ctx: ScaleStatsOptions = {}): Promise<ScaleStatsReport> {
  const started = performance.now();
  const t = typeof tensor === 'string' ? model.tensor(tensor) : tensor;
  if (!t) throw new FormatError('not_found', 'no such tensor', model.path, String(tensor));
  const s = storageOf(t);
  const global = await globalScaleOf(model, t, s);
  const streams: ScaleStream[] | undefined =
    s.kind === 'blocks' && BLOCK_SCALES[s.type]
      ? [{ source: { kind: 'blocks', type: s.type, blockBytes: s.blockBytes }, bytes: t.byteLength, unit: s.blockBytes }]
      : s.kind === 'scheme'
        ? schemeStreams(t, s, global)
        : undefined;
  if (!streams) throw new FormatError('unsupported', `${typeNameOf(t)} stores no scales`, model.path, t.name);
  if (streams.some((x) => x.part) && !model.readPart) throw new FormatError('unsupported', 'this model cannot read the parts of its tensors', model.path, t.name);
  throwIfCancelled(ctx.signal);
  const backend = await getBackend(ctx.backend ?? 'auto');
  const progress = new ByteProgress(streams.reduce((a, x) => a + x.bytes, 0), ctx.progress);
  const series: SeriesPartial[][] = streams.map((x) => (x.source.kind === 'blocks' ? BLOCK_SCALES[x.source.type].series : [x.source.series]).map(emptySeries));
  const jobs = chunksOf(streams, ctx.chunkBytes ?? CHUNK_BYTES);
  try {
    const steps = {
      read: async (c: Chunk, signal: AbortSignal) => {
        const b = new Uint8Array(c.length);
        const st = streams[c.stream];
        if (st.part) await model.readPart!(t, st.part, c.offset, b);
        else await model.read(t, c.offset, b, signal);
        return b;
      },
      run: async (c: Chunk, bytes: Uint8Array, signal: AbortSignal) => {
        const st = streams[c.stream];
        return { c, r: await backend.run(scaleStatsKernel, { source: st.source, bytes, first: c.offset / st.unit }, signal) };
      },
    };
    for await (const { c, r } of streamJobs(jobs, steps, { inFlight: backend.kind === 'cpu' ? 2 * cpuPoolSize() : 2, signal: ctx.signal })) {
      r.series.forEach((p, k) => fold(series[c.stream][k], p));
      progress.add(c.length, t.name);
    }
  } catch (e) {
    if (ctx.signal?.aborted) throw new CancelledError();
    throw e;
  }
  progress.finish();
  return {
    name: t.name,
    storage: typeNameOf(t),
    series: series.flat().map(summarizeSeries),
    ...(global !== undefined ? { globalScale: global } : {}),
    backend: backend.description,
    seconds: (performance.now() - started) / 1000,
    bytesRead: progress.done,
  };
}
