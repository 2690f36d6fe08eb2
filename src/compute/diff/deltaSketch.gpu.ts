import { workgroupGrid } from '../gpu/device';
import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { diffElementBytes } from './decodeChunk';
import type { DeltaSketchArgs, DeltaSketchResult } from './deltaSketch';
import body from './deltaSketch.wgsl';
import elements from './diffElements.wgsl';

// deltaSketch.wgsl reads A and B through diffElements.wgsl.
const code = elements + '\n' + body;

/** WG in deltaSketch.wgsl. */
const WG = 64;
const DTYPE_CODE = { F32: 0, F16: 1, BF16: 2 } as const;

export async function deltaSketchGpu(ctx: GpuContext, args: DeltaSketchArgs): Promise<DeltaSketchResult> {
  const { rows, cols, k } = args;
  const bytes = rows * cols * diffElementBytes(args.dtype);
  // Flat indices are u32 in the shader, and each operand must fit one binding.
  if (bytes > ctx.limits.maxStorageBufferBindingSize || rows * cols >= 2 ** 32 - 1 || cols * k * 4 > ctx.limits.maxStorageBufferBindingSize) {
    throw new GpuUnsupportedError(`block of ${bytes} bytes exceeds one storage binding`);
  }
  const constants = { DTYPE: DTYPE_CODE[args.dtype] };
  const grid = (outputs: number) => workgroupGrid(Math.max(1, Math.ceil(outputs / WG)), ctx.limits.maxComputeWorkgroupsPerDimension);
  const fwdGrid = grid(rows * k);
  const pf = ctx.uniform(new Uint32Array([rows, cols, k, fwdGrid[0]]));
  const abuf = ctx.upload(args.a);
  const bbuf = ctx.upload(args.b);
  const xbuf = ctx.upload(args.x.subarray(0, cols * k));
  const ybuf = ctx.buffer(rows * k * 4);
  const owned = [pf, abuf, bbuf, xbuf, ybuf];
  try {
    ctx.dispatch(ctx.pipeline('diff.sketch', code, 'forward', constants), [pf, abuf, bbuf, xbuf, ybuf], fwdGrid);
    let zRead: Promise<ArrayBuffer> | undefined;
    if (args.back) {
      const backGrid = grid(cols * k);
      const pb = ctx.uniform(new Uint32Array([rows, cols, k, backGrid[0]]));
      const zbuf = ctx.buffer(cols * k * 4);
      owned.push(pb, zbuf);
      ctx.dispatch(ctx.pipeline('diff.sketch', code, 'back', constants), [pb, abuf, bbuf, ybuf, zbuf], backGrid);
      zRead = ctx.read(zbuf, cols * k * 4);
    }
    const [y, z] = await Promise.all([ctx.read(ybuf, rows * k * 4), zRead]);
    const into = (out: Float32Array | undefined, data: ArrayBuffer) => {
      if (!out || out.byteLength !== data.byteLength) return new Float32Array(data);
      out.set(new Float32Array(data));
      return out;
    };
    return { y: into(args.yOut, y), z: z ? into(args.zOut, z) : undefined, chunks: [args.a, args.b], x: args.x };
  } finally {
    for (const b of owned) b.destroy();
  }
}
