import type { GgmlTypeName } from '../../format/gguf/types';
import { dequantGpu } from '../dequant/dequant.gpu';
import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { workgroupGrid } from '../gpu/device';
import { elementCount, type DecodeArgs } from './decode';
import { isPatternDType, patternBits } from './patterns';
import body from './decode.wgsl';
import patterns from './patterns.wgsl';

// decode.wgsl reads elements with patterns.wgsl's `pattern`.
const shader = body + '\n' + patterns;

// 256 invocations per workgroup: the WebGPU default limit, and wide enough to hide memory latency.
const WG = 256;

/** Override constants per dtype: exponent/mantissa widths, bias and special-value encoding (see decode.wgsl). */
const FORMATS: Partial<Record<DecodeArgs['dtype'], { EXP_BITS: number; MAN_BITS: number; BIAS: number; SPECIAL: number }>> = {
  BF16: { EXP_BITS: 8, MAN_BITS: 7, BIAS: 127, SPECIAL: 4 },
  F16: { EXP_BITS: 5, MAN_BITS: 10, BIAS: 15, SPECIAL: 0 },
  F8_E5M2: { EXP_BITS: 5, MAN_BITS: 2, BIAS: 15, SPECIAL: 0 },
  F8_E4M3: { EXP_BITS: 4, MAN_BITS: 3, BIAS: 7, SPECIAL: 1 },
  F8_E4M3FNUZ: { EXP_BITS: 4, MAN_BITS: 3, BIAS: 8, SPECIAL: 2 },
  F8_E5M2FNUZ: { EXP_BITS: 5, MAN_BITS: 2, BIAS: 16, SPECIAL: 2 },
  F8_E8M0: { EXP_BITS: 8, MAN_BITS: 0, BIAS: 127, SPECIAL: 5 },
  F6_E2M3: { EXP_BITS: 2, MAN_BITS: 3, BIAS: 1, SPECIAL: 3 },
  F6_E3M2: { EXP_BITS: 3, MAN_BITS: 2, BIAS: 3, SPECIAL: 3 },
  F4: { EXP_BITS: 2, MAN_BITS: 1, BIAS: 1, SPECIAL: 3 },
};

/**
 * The GPU twin. Inputs larger than one storage binding are decoded in slices
 * whose output (4 bytes per element, the larger side) fits the binding limit.
 */
export async function decodeGpu(ctx: GpuContext, args: DecodeArgs): Promise<Float32Array> {
  const { dtype, bytes } = args;
  // ggml blocks go to the dequant kernel's GPU twin (it refuses the types it has no shader for); schemes have CPU decoders only.
  if (args.storage?.kind === 'blocks') return (await dequantGpu(ctx, { type: args.storage.type as GgmlTypeName, src: bytes })).values;
  if (args.storage && args.storage.kind !== 'dtype') throw new GpuUnsupportedError(`decode: no GPU path for ${args.storage.kind}`);
  const n = elementCount(args);
  if (dtype === 'F32') return new Float32Array(bytes.slice(0, n * 4).buffer);
  const fmt = FORMATS[dtype];
  if (!fmt || !isPatternDType(dtype)) throw new GpuUnsupportedError(`decode: no GPU path for ${dtype}`);
  const out = new Float32Array(n);
  if (n === 0) return out;
  const bits = patternBits(dtype);
  const pipeline = ctx.pipeline('decode', shader, 'main', { WG, BITS: bits, ...fmt });
  // Slice on 32-element boundaries so that every slice starts on a whole u32 word for every width.
  const maxOut = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const slice = Math.max(32, Math.floor(maxOut / 4 / 32) * 32);
  for (let first = 0; first < n; first += slice) {
    const count = Math.min(slice, n - first);
    const byteStart = (first * bits) / 8;
    const byteEnd = Math.min(bytes.length, Math.ceil(((first + count) * bits) / 8));
    const src = ctx.upload(bytes.subarray(byteStart, byteEnd));
    const dst = ctx.buffer(count * 4);
    const params = ctx.uniform(new Uint32Array([count, 0, 0, 0]));
    try {
      ctx.dispatch(pipeline, [src, dst, params], workgroupGrid(Math.ceil(count / WG), ctx.limits.maxComputeWorkgroupsPerDimension));
      out.set(new Float32Array(await ctx.read(dst, count * 4)), first);
    } finally {
      src.destroy();
      dst.destroy();
      params.destroy();
    }
  }
  return out;
}
