import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { workgroupGrid } from '../gpu/device';
import { addSums, bytesPerInput, checkArgs, emptySums, type QuantizeArgs, type QuantizeResult } from './common';
import common from './quantCommon.wgsl';
import shader from './rowScaled.wgsl';
import f16 from '../gpu/f16.wgsl';

// 256 invocations per row: the WebGPU default limit, and a power of two for the reduction.
const WG = 256;
const DTYPE_CODE = { BF16: 0, F16: 1, F32: 2 } as const;

/**
 * Per-row int8 (mode 0) or F8_E4M3 (mode 1) on the GPU. Rows whose absMax is below
 * 2^-70 (but not zero) or at/above 2^126 come back flagged and are redone with the
 * CPU twin. Rows must hold a multiple of 4 values (whole output words).
 */
export async function rowScaledGpu(ctx: GpuContext, a: QuantizeArgs, mode: 0 | 1, cpu: (a: QuantizeArgs) => QuantizeResult): Promise<QuantizeResult> {
  const name = mode === 0 ? 'int8-channel' : 'fp8-e4m3';
  checkArgs(name, a, 1);
  const { rows, cols } = a;
  if (cols % 4 !== 0) throw new GpuUnsupportedError(`${name}: row length ${cols} is not a multiple of 4`);
  const maxBinding = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  if (a.src.byteLength > maxBinding) throw new GpuUnsupportedError(`${name}: chunk larger than one storage binding`);
  const data = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  if (rows * cols === 0) return { data, scales, stats: emptySums() };
  const pipeline = ctx.pipeline(`quant.rowScaled`, f16 + '\n' + common + '\n' + shader, 'main', { WG, MODE: mode, DTYPE: DTYPE_CODE[a.dtype] });
  const src = ctx.upload(a.src);
  const dst = ctx.buffer(rows * cols);
  const sc = ctx.buffer(rows * 4);
  const stats = ctx.buffer(rows * 20);
  const flags = ctx.buffer(rows * 4);
  const params = ctx.uniform(new Uint32Array([rows, cols, 0, 0]));
  let out: ArrayBuffer, scb: ArrayBuffer, st: Float32Array, fl: Uint32Array;
  try {
    ctx.dispatch(pipeline, [src, dst, sc, stats, flags, params], workgroupGrid(rows, ctx.limits.maxComputeWorkgroupsPerDimension));
    [out, scb, st, fl] = await Promise.all([
      ctx.read(dst, rows * cols),
      ctx.read(sc, rows * 4),
      ctx.read(stats, rows * 20).then((b) => new Float32Array(b)),
      ctx.read(flags, rows * 4).then((b) => new Uint32Array(b)),
    ]);
  } finally {
    for (const b of [src, dst, sc, stats, flags, params]) b.destroy();
  }
  data.set(new Uint8Array(out, 0, rows * cols));
  scales.set(new Float32Array(scb, 0, rows));
  const sums = emptySums();
  const width = bytesPerInput(a.dtype);
  let redone = 0;
  for (let r = 0; r < rows; r++) {
    if (fl[r]) {
      const res = cpu({ src: a.src.subarray(r * cols * width, (r + 1) * cols * width), dtype: a.dtype, rows: 1, cols });
      data.set(res.data, r * cols);
      scales[r] = res.scales![0];
      addSums(sums, res.stats);
      redone++;
      continue;
    }
    sums.sumX2 += st[r * 5];
    sums.sumY2 += st[r * 5 + 1];
    sums.sumXY += st[r * 5 + 2];
    sums.sumE2 += st[r * 5 + 3];
    if (st[r * 5 + 4] > sums.maxAbsErr) sums.maxAbsErr = st[r * 5 + 4];
  }
  sums.n += (rows - redone) * cols;
  return { data, scales, stats: a.stats === false ? emptySums() : sums, hostRedone: redone };
}
