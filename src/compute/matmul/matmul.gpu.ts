import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { workgroupGrid } from '../gpu/device';
import { checkMatmulArgs, IN_BYTES, OUT_BYTES, storedCols, type MatmulArgs, type MatmulResult } from './matmul';
import shader from './matmul.wgsl';
import f16 from '../gpu/f16.wgsl';

// 64 invocations per workgroup: each runs a rank-long loop of ~30 flops per element, so
// occupancy, not width, hides latency; 64 is a multiple of every vendor's SIMD width.
const WG = 64;
// A tile's output is at most this many bytes, below SwiftShader's 128 MiB binding limit with room
// to spare, so that one tile's buffers (base, output, staging copy) stay a bounded allocation.
const MAX_TILE_BYTES = 64 << 20;

const BASE_CODE = { F32: 1, BF16: 2, F16: 3 } as const;
const OUT_CODE = { F32: 1, BF16: 2, F16: 3, PAIR: 4 } as const;

/**
 * The GPU twin: splits the slice into tiles whose buffers fit one storage
 * binding, and runs one dispatch per tile. `b` travels as two f32 arrays, the
 * float64 value's nearest f32 and the remainder.
 */
export async function matmulGpu(ctx: GpuContext, args: MatmulArgs): Promise<MatmulResult> {
  checkMatmulArgs(args);
  const { rank, a, b, base, baseDtype, out } = args;
  const cols = storedCols(args);
  const count = args.rows * cols;
  const result = new Uint8Array(count * OUT_BYTES[out]);
  if (count === 0) return { bytes: result, nonFinite: 0, firstNonFinite: -1 };

  const limit = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize, MAX_TILE_BYTES);
  if (a.byteLength > limit || b.length * 4 > limit || rank === 0) {
    throw new GpuUnsupportedError(`matmul: rank-${rank} factors exceed one storage binding`);
  }
  const bHi = new Float32Array(b.length);
  const bLo = new Float32Array(b.length);
  for (let i = 0; i < b.length; i++) {
    bHi[i] = b[i];
    bLo[i] = b[i] - bHi[i];
  }
  // Tiles hold an even element count so that 16-bit outputs fill whole words.
  const perTile = Math.max(2, Math.floor(limit / OUT_BYTES[out] / 2) * 2);
  const pipeline = ctx.pipeline('matmul', f16 + '\n' + shader, 'main', {
    WG,
    BASE: base && baseDtype ? BASE_CODE[baseDtype] : 0,
    OUT: OUT_CODE[out],
    TRANSPOSE: args.transpose ? 1 : 0,
  });
  const aBuf = ctx.upload(a);
  const hiBuf = ctx.upload(bHi);
  const loBuf = ctx.upload(bLo);
  const owned: GPUBuffer[] = [aBuf, hiBuf, loBuf];
  let nonFinite = 0;
  let firstNonFinite = -1;
  try {
    const firstStored = args.rowStart * cols;
    for (let t0 = 0; t0 < count; t0 += perTile) {
      const n = Math.min(perTile, count - t0);
      const eb = base && baseDtype ? IN_BYTES[baseDtype] : 0;
      const baseBuf = base && baseDtype ? ctx.upload(base.subarray(t0 * eb, (t0 + n) * eb)) : ctx.buffer(4);
      const outBytes = n * OUT_BYTES[out];
      const dst = ctx.buffer(outBytes);
      const flags = ctx.upload(new Uint32Array([0, 0xffffffff]));
      // 0x3f800000 is 1.0f: the shader's `one`, opaque to its compiler.
      const params = ctx.uniform(new Uint32Array([n, firstStored + t0, cols, rank, args.inFeatures, 0x3f800000, 0, 0]));
      try {
        const groups = Math.ceil(Math.ceil(n / 2) / WG);
        const [gx, gy] = workgroupGrid(groups, ctx.limits.maxComputeWorkgroupsPerDimension);
        ctx.dispatch(pipeline, [params, baseBuf, aBuf, hiBuf, loBuf, dst, flags], [gx, gy]);
        const [data, flagData] = await Promise.all([ctx.read(dst, outBytes), ctx.read(flags, 8)]);
        result.set(new Uint8Array(data), t0 * OUT_BYTES[out]);
        const f = new Uint32Array(flagData);
        if (f[0] > 0) {
          if (nonFinite === 0) firstNonFinite = t0 + f[1];
          nonFinite += f[0];
        }
      } finally {
        for (const x of [baseBuf, dst, flags, params]) x.destroy();
      }
    }
  } finally {
    for (const x of owned) x.destroy();
  }
  return { bytes: result, nonFinite, firstNonFinite };
}
