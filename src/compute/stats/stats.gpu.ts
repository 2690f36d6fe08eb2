import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { isPatternDType, patternBits, patternTable, type PatternDType } from '../decode/patterns';
import { hotTable, patternOf, thresholdOf } from './stats.cpu';
import { TopKeeper } from './statsWide.cpu';
import { compareTop, sparseTable, type BinsResult, type StatsArgs, type StatsBinsArgs, type StatsResult, type StatsScanArgs, type TopEntry, type WideScan } from './stats';
import body from './stats.wgsl';
import patterns from '../decode/patterns.wgsl';
import wideShader from './statsWide.wgsl';

// stats.wgsl reads elements with patterns.wgsl's `pattern`.
const shader = body + '\n' + patterns;

// 256 invocations: the WebGPU default limit for a workgroup.
const WG = 256;
// 512 × 256 invocations keep a large GPU busy on this memory-bound pass; more groups only add
// per-group setup (SwiftShader took 4× longer with 4096 groups), each invocation strides instead.
const MAX_GROUPS = 512;
// Slots for indices tied at the top-k threshold; beyond that the host finds the first ones itself.
const EQUAL_CAP = 4096;

/**
 * The GPU twin. Dtypes of 16 bits or fewer: a pattern histogram with atomics, then
 * a pass that collects the indices of the top-k candidates the histogram points at.
 * F32: both phases in statsWide.wgsl. F64 and the 32/64-bit integers take the CPU
 * twin (GpuUnsupportedError): WGSL has no f64 or i64.
 */
export async function statsGpu(ctx: GpuContext, args: StatsArgs): Promise<StatsResult> {
  const { dtype } = args;
  if (args.storage) throw new GpuUnsupportedError(`stats: units of ${args.storage.kind === 'blocks' ? args.storage.type : args.storage.scheme} are decoded on the CPU`);
  if (dtype === 'F32') return args.phase === 'scan' ? scanF32(ctx, args) : binF32(ctx, args);
  if (!isPatternDType(dtype) || args.phase !== 'scan') throw new GpuUnsupportedError(`stats: no GPU path for ${dtype}`);
  const bytes = args.bytes;
  const bits = patternBits(dtype);
  const n = args.count;
  const size = 1 << bits;
  if ((n * bits) / 8 > ctx.limits.maxStorageBufferBindingSize) throw new GpuUnsupportedError('stats: slice larger than one storage binding');
  if (n === 0) return { kind: 'patterns', patterns: new Uint32Array(0), counts: new Uint32Array(0), top: [] };
  const constants = { WG, BITS: bits };
  const groups = Math.min(MAX_GROUPS, Math.ceil(n / WG));
  const src = ctx.upload(bytes.subarray(0, Math.ceil((n * bits) / 8)));
  const histBuf = ctx.buffer(size * 4);
  const params = ctx.uniform(new Uint32Array([n, args.topK, EQUAL_CAP, 0]));
  const created = [src, histBuf, params];
  try {
    ctx.dispatch(ctx.pipeline('stats', shader, bits <= 8 ? 'count_small' : 'count', constants), [src, histBuf, params], [groups]);
    const hist = new Uint32Array(await ctx.read(histBuf, size * 4));
    const top = await collectTop(ctx, dtype, bytes, n, args.first, args.topK, hist, src, groups, created);
    return { kind: 'patterns', ...sparseTable(hist), top };
  } finally {
    for (const b of created) b.destroy();
  }
}

async function collectTop(
  ctx: GpuContext,
  dtype: PatternDType,
  bytes: Uint8Array,
  n: number,
  first: number,
  topK: number,
  hist: Uint32Array,
  src: GPUBuffer,
  groups: number,
  created: GPUBuffer[],
): Promise<TopEntry[]> {
  const t = thresholdOf(dtype, hist, topK);
  if (!t) return [];
  const hot = hotTable(dtype, t.threshold);
  // How many values tie at the threshold, known exactly from the table: past EQUAL_CAP the GPU
  // leaves them alone (one contended counter would serialise the pass) and the host finds the first ones.
  let ties = 0;
  for (let p = 0; p < hot.length; p++) if (hot[p] === 1) ties += hist[p];
  const equalCap = ties <= EQUAL_CAP ? EQUAL_CAP : 0;
  const hotBuf = ctx.upload(new Uint32Array(hot));
  const out = ctx.buffer((2 + topK + EQUAL_CAP) * 4);
  const collectParams = ctx.uniform(new Uint32Array([n, topK, equalCap, 0]));
  created.push(hotBuf, out, collectParams);
  ctx.dispatch(ctx.pipeline('stats', shader, 'collect', { WG, BITS: patternBits(dtype) }), [src, out, collectParams, hotBuf], [groups]);
  const words = new Uint32Array(await ctx.read(out));
  const [greaterFound, equalFound] = words;
  const table = patternTable(dtype);
  const bits = patternBits(dtype);
  const mask = (1 << bits) - 1;
  const entry = (i: number): TopEntry => ({ index: first + i, value: table[patternOf(bytes, i, bits, mask)] });
  const result: TopEntry[] = [];
  for (let s = 0; s < Math.min(greaterFound, topK); s++) result.push(entry(words[2 + s]));
  const need = topK - t.greater;
  if (equalCap > 0) {
    const eq = Array.from(words.subarray(2 + topK, 2 + topK + equalFound)).sort((a, b) => a - b);
    for (const i of eq.slice(0, need)) result.push(entry(i));
  } else {
    // More ties than slots (an all-zero slice, a coarse F4 tensor): the first `need`
    // in index order are found early in a host scan that stops there.
    for (let i = 0, found = 0; i < n && found < need; i++) {
      if (hot[patternOf(bytes, i, bits, mask)] === 1) {
        result.push(entry(i));
        found++;
      }
    }
  }
  return result.sort(compareTop).slice(0, topK);
}

// ------------------------------------------------------------------ F32

// Candidate slots for the F32 top-k; past it the host screens the slice itself.
const WIDE_CAP = 4096;
// |x| buckets: the top 16 bits of the magnitude.
const BUCKETS = 65536;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0];
}

function fromBits(b: number): number {
  u32[0] = b;
  return f32[0];
}

/** The next f32 above the f32 `x` (finite). */
function nextUp(x: number): number {
  if (x === 0) return fromBits(1);
  const b = bitsOf(x);
  return fromBits(x > 0 ? b + 1 : b - 1);
}

/** The smallest f32 ≥ t: for f32 x, x ≥ t ⟺ x ≥ ceil32(t), and x < t ⟺ x < ceil32(t). */
function ceil32(t: number): number {
  const f = Math.fround(t);
  return f < t ? nextUp(f) : f;
}

/** The smallest f32 > t: for f32 x, x > t ⟺ x ≥ above32(t). */
function above32(t: number): number {
  if (!Number.isFinite(t)) return t;
  const f = Math.fround(t);
  return f > t ? f : nextUp(f);
}

/** The largest f32 < t: for f32 x, x < t ⟺ x ≤ below32(t). */
function below32(t: number): number {
  return -above32(-t);
}

function params(words: { count: number; cap?: number; bucket?: number; bins?: number; mean?: number; near?: number; hi?: number; lo?: number }): ArrayBufferView {
  const buf = new ArrayBuffer(32);
  const u = new Uint32Array(buf, 0, 4);
  const f = new Float32Array(buf, 16, 4);
  u.set([words.count, words.cap ?? 0, words.bucket ?? 0, words.bins ?? 0]);
  f.set([words.mean ?? 0, words.near ?? 0, words.hi ?? 0, words.lo ?? 0]);
  return new Uint32Array(buf);
}

function floatsOf(bytes: Uint8Array, n: number): Float32Array {
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Float32Array(b.buffer, b.byteOffset, n);
}

function checkSize(ctx: GpuContext, n: number): void {
  if (n * 4 > ctx.limits.maxStorageBufferBindingSize) throw new GpuUnsupportedError('stats: slice larger than one storage binding');
}

async function scanF32(ctx: GpuContext, args: StatsScanArgs): Promise<WideScan> {
  const n = args.count;
  checkSize(ctx, n);
  const empty: WideScan = { kind: 'wide', finite: 0, nan: 0, posInf: 0, negInf: 0, zeros: 0, min: Infinity, max: -Infinity, minAbsNonzero: Infinity, sum: 0, m2: 0, top: [] };
  if (n === 0) return empty;
  const bytes = args.bytes;
  const groups = Math.min(MAX_GROUPS, Math.ceil(n / WG));
  const init = new Uint32Array(8 + BUCKETS);
  init[5] = 0xffffffff;
  init[7] = 0xffffffff;
  const src = ctx.upload(bytes.subarray(0, n * 4));
  const acc = ctx.upload(init);
  const partials = ctx.buffer(groups * 4);
  const created = [src, acc, partials];
  try {
    const constants = { WG };
    const p1 = ctx.uniform(params({ count: n }));
    created.push(p1);
    ctx.dispatch(ctx.pipeline('statsWide', wideShader, 'scan', constants), [src, acc, p1, partials], [groups]);
    const a = new Uint32Array(await ctx.read(acc));
    const sums = new Float32Array(await ctx.read(partials, groups * 4));
    const finite = a[4];
    let sum = 0;
    for (const x of sums) sum += x;
    const key = (k: number): number => fromBits(k & 0x80000000 ? k & 0x7fffffff : ~k >>> 0) + 0;
    const out: WideScan = {
      ...empty,
      nan: a[0],
      posInf: a[1],
      negInf: a[2],
      zeros: a[3],
      finite,
      sum,
      min: finite ? key(a[5]) : Infinity,
      max: finite ? key(a[6]) : -Infinity,
      minAbsNonzero: a[7] === 0xffffffff ? Infinity : fromBits(a[7]),
    };
    if (finite === 0) return out;
    // Squared deviations about the f32-rounded mean m', corrected to the mean m: Σ(x−m)² = Σ(x−m')² − n(m−m')².
    const mean = sum / finite;
    const m32 = Math.fround(mean);
    const p2 = ctx.uniform(params({ count: n, mean: m32 }));
    const partials2 = ctx.buffer(groups * 4);
    created.push(p2, partials2);
    ctx.dispatch(ctx.pipeline('statsWide', wideShader, 'm2', constants), [src, undefined, p2, partials2], [groups]);
    let m2 = 0;
    for (const x of new Float32Array(await ctx.read(partials2, groups * 4))) m2 += x;
    m2 = Math.max(0, m2 - finite * (mean - m32) ** 2);
    const top = await topF32(ctx, args, bytes, a.subarray(8), src, groups, created);
    return { ...out, m2, top };
  } finally {
    for (const b of created) b.destroy();
  }
}

/**
 * The top-k from the |x| bucket table: the bucket where the k-th largest lies,
 * then the indices of every finite value in it or above (their number is known
 * exactly), ranked on the host from the exact values.
 */
async function topF32(ctx: GpuContext, args: StatsScanArgs, bytes: Uint8Array, buckets: Uint32Array, src: GPUBuffer, groups: number, created: GPUBuffer[]): Promise<TopEntry[]> {
  const k = args.topK;
  if (k <= 0) return [];
  let bucket = 0;
  let seen = 0;
  for (let b = BUCKETS - 1; b >= 0; b--) {
    seen += buckets[b];
    if (seen >= k) {
      bucket = b;
      break;
    }
  }
  const values = floatsOf(bytes, args.count);
  if (seen > WIDE_CAP) {
    // Too many candidates tie in one bucket (a constant tensor): rank on the host.
    const keep = new TopKeeper(k);
    for (let i = 0; i < values.length; i++) {
      const x = values[i];
      if (Number.isFinite(x) && Math.abs(x) > keep.threshold) keep.offer(args.first + i, x);
    }
    return keep.result();
  }
  const out = ctx.buffer((1 + WIDE_CAP) * 4);
  const p = ctx.uniform(params({ count: args.count, cap: WIDE_CAP, bucket }));
  created.push(out, p);
  ctx.dispatch(ctx.pipeline('statsWide', wideShader, 'collect', { WG }), [src, out, p], [groups]);
  const words = new Uint32Array(await ctx.read(out));
  const found = Math.min(words[0], WIDE_CAP);
  const entries: TopEntry[] = [];
  for (let s = 0; s < found; s++) entries.push({ index: args.first + words[1 + s], value: values[words[1 + s]] });
  return entries.sort(compareTop).slice(0, k);
}

async function binF32(ctx: GpuContext, args: StatsBinsArgs): Promise<BinsResult> {
  const n = args.count;
  checkSize(ctx, n);
  const bins = args.edges.length - 1;
  const result: BinsResult = { kind: 'bins', hist: new Uint32Array(bins), logHist: new Uint32Array(bins), nearZero: 0, outliers: 0 };
  if (n === 0) return result;
  const bytes = args.bytes;
  const groups = Math.min(MAX_GROUPS, Math.ceil(n / WG));
  const edges = new Float32Array(2 * (bins + 1));
  for (let i = 0; i <= bins; i++) {
    edges[i] = ceil32(args.edges[i]);
    edges[bins + 1 + i] = ceil32(args.logEdges[i]);
  }
  const src = ctx.upload(bytes.subarray(0, n * 4));
  const edgeBuf = ctx.upload(edges);
  const acc = ctx.buffer((2 * bins + 2) * 4);
  const p = ctx.uniform(
    params({ count: n, bins, near: ceil32(args.nearZeroBelow), hi: above32(args.mean + args.outlierBeyond), lo: below32(args.mean - args.outlierBeyond) }),
  );
  try {
    ctx.dispatch(ctx.pipeline('statsWide', wideShader, 'bins', { WG }), [src, acc, p, undefined, edgeBuf], [groups]);
    const a = new Uint32Array(await ctx.read(acc));
    return { kind: 'bins', hist: a.slice(0, bins), logHist: a.slice(bins, 2 * bins), nearZero: a[2 * bins], outliers: a[2 * bins + 1] };
  } finally {
    for (const b of [src, edgeBuf, acc, p]) b.destroy();
  }
}
