import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { workgroupGrid } from '../gpu/device';
import { addSums, bytesPerInput, checkArgs, emptySums, type QuantizeArgs, type QuantizeResult } from './common';
import common from './quantCommon.wgsl';
import opening from './ggmlBlocks.wgsl';
import f16 from '../gpu/f16.wgsl';

// 64 invocations per workgroup: each does 1–2 blocks of serial work, so narrow groups keep every core busy.
const WG = 64;
const DTYPE_CODE = { BF16: 0, F16: 1, F32: 2 } as const;
/** Values per ggml block. */
const QK = 32;

export interface GgmlShaderSpec {
  readonly name: string;
  readonly shader: string;
  readonly blockBytes: number;
  /** Blocks per invocation: enough that one invocation writes whole 32-bit words. */
  readonly blocksPerGroup: number;
  /** The CPU twin, for the blocks the shader flags (values outside its exact range). */
  readonly cpu: (a: QuantizeArgs) => QuantizeResult;
}

/**
 * Runs one of the ggml block shaders. Blocks holding subnormals, values below 2^-96
 * or at/above 2^126 come back flagged and are redone here with the CPU twin, so the
 * bytes are the CPU's in every case.
 */
export async function ggmlBlocksGpu(ctx: GpuContext, a: QuantizeArgs, spec: GgmlShaderSpec): Promise<QuantizeResult> {
  checkArgs(spec.name, a, QK);
  const n = a.rows * a.cols;
  const nb = n / QK;
  const out = new Uint8Array(nb * spec.blockBytes);
  if (nb === 0) return { data: out, stats: emptySums() };
  const groups = Math.ceil(nb / spec.blocksPerGroup);
  const dstBytes = groups * spec.blocksPerGroup * spec.blockBytes;
  const maxBinding = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  if (a.src.byteLength > maxBinding || dstBytes > maxBinding) throw new GpuUnsupportedError(`${spec.name}: chunk larger than one storage binding`);
  const pipeline = ctx.pipeline(`quant.${spec.name}`, f16 + '\n' + common + '\n' + opening + '\n' + spec.shader, 'main', { WG, DTYPE: DTYPE_CODE[a.dtype], BLOCKS: spec.blocksPerGroup, BLOCK_BYTES: spec.blockBytes });
  const src = ctx.upload(a.src);
  const dst = ctx.buffer(dstBytes);
  const stats = ctx.buffer(groups * 5 * 4);
  const flags = ctx.buffer(groups * 4);
  const params = ctx.uniform(new Uint32Array([groups, nb, 0, 0]));
  let words: ArrayBuffer, st: Float32Array, fl: Uint32Array;
  try {
    ctx.dispatch(pipeline, [src, dst, stats, flags, params], workgroupGrid(Math.ceil(groups / WG), ctx.limits.maxComputeWorkgroupsPerDimension));
    [words, st, fl] = await Promise.all([
      ctx.read(dst, dstBytes),
      ctx.read(stats, groups * 20).then((b) => new Float32Array(b)),
      ctx.read(flags, groups * 4).then((b) => new Uint32Array(b)),
    ]);
  } finally {
    for (const b of [src, dst, stats, flags, params]) b.destroy();
  }
  out.set(new Uint8Array(words, 0, out.length));
  const sums = emptySums();
  let sumX2 = 0, sumY2 = 0, sumXY = 0, sumE2 = 0, maxErr = 0;
  for (let t = 0; t < groups; t++) {
    sumX2 += st[t * 5];
    sumY2 += st[t * 5 + 1];
    sumXY += st[t * 5 + 2];
    sumE2 += st[t * 5 + 3];
    if (st[t * 5 + 4] > maxErr) maxErr = st[t * 5 + 4];
  }
  Object.assign(sums, { n: 0, sumX2, sumY2, sumXY, sumE2, maxAbsErr: maxErr });
  const width = bytesPerInput(a.dtype);
  let redone = 0;
  for (let t = 0; t < groups; t++) {
    const f = fl[t];
    if (f === 0) continue;
    for (let k = 0; k < spec.blocksPerGroup; k++) {
      if (!(f & (1 << k))) continue;
      const blk = t * spec.blocksPerGroup + k;
      const r = spec.cpu({ src: a.src.subarray(blk * QK * width, (blk + 1) * QK * width), dtype: a.dtype, rows: 1, cols: QK });
      out.set(r.data, blk * spec.blockBytes);
      addSums(sums, r.stats);
      redone++;
    }
  }
  // The CPU-redone blocks counted their own n; the shader's blocks are the rest.
  sums.n += (nb - redone) * QK;
  return { data: out, stats: a.stats === false ? emptySums() : sums, hostRedone: redone };
}
