import { open } from 'node:fs/promises';
import { FormatError } from '../../format/errors';
import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { isPatternDType, patternBits, patternTable, type PatternDType } from '../decode/patterns';
import { hotTable, patternOf, thresholdOf } from './stats.cpu';
import { compareTop, sparseTable, type StatsArgs, type StatsResult, type StatsSource, type TopEntry } from './stats';
import shader from './stats.wgsl';

// 256 invocations: the WebGPU default limit for a workgroup.
const WG = 256;
// 512 × 256 invocations keep a large GPU busy on this memory-bound pass; more groups only add
// per-group setup (SwiftShader took 4× longer with 4096 groups), each invocation strides instead.
const MAX_GROUPS = 512;
// Slots for indices tied at the top-k threshold; beyond that the host finds the first ones itself.
const EQUAL_CAP = 4096;

async function readSource(src: StatsSource): Promise<Uint8Array> {
  if ('bytes' in src) return src.bytes;
  const { path, offset, length } = src.file;
  const out = new Uint8Array(length);
  const fh = await open(path, 'r');
  try {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(out, done, length - done, offset + done);
      if (bytesRead === 0) throw new FormatError('file_changed', `the file ended at byte ${offset + done}, before the tensor data`, path);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
}

/**
 * The GPU twin: a pattern histogram with atomics, then a second pass that
 * collects the indices of the top-k candidates the histogram points at. Wider
 * dtypes (F32, F64, 32/64-bit integers) take the CPU twin (GpuUnsupportedError).
 */
export async function statsGpu(ctx: GpuContext, args: StatsArgs): Promise<StatsResult> {
  const { dtype } = args;
  if (!isPatternDType(dtype) || args.phase !== 'scan') throw new GpuUnsupportedError(`stats: no GPU path for ${dtype}`);
  const bytes = await readSource(args.src);
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
