import { workgroupGrid } from '../gpu/device';
import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { ggmlTypeByName, type GgmlTypeName } from '../../format/gguf/types';
import { dequantize } from './dequant.cpu';
import type { DequantArgs, DequantResult } from './dequant';
import shader from './dequant.wgsl';
import f16 from '../gpu/f16.wgsl';

// One block per invocation, 64 to a workgroup: enough groups to fill a GPU from a 1 MiB chunk.
const WG = 64;
/** The types the shader decodes; the others run on the CPU twin. */
const GPU_TYPES: ReadonlySet<GgmlTypeName> = new Set(['Q8_0', 'Q4_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K']);

/** The GPU twin of `dequantCpu`: bit-identical; flagged blocks (inf/NaN scales) are redone on the host. */
export async function dequantGpu(ctx: GpuContext, a: DequantArgs): Promise<DequantResult> {
  if (!GPU_TYPES.has(a.type)) throw new GpuUnsupportedError(`${a.type}: no GPU dequantizer`);
  const info = ggmlTypeByName(a.type);
  if (a.src.length % info.typeSize !== 0) throw new RangeError(`${a.type}: ${a.src.length} bytes is not a whole number of blocks`);
  const blocks = a.src.length / info.typeSize;
  const values = new Float32Array(blocks * info.blockSize);
  if (blocks === 0) return { values };
  const maxBinding = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  if (values.byteLength > maxBinding) throw new GpuUnsupportedError(`${a.type}: chunk larger than one storage binding`);
  const pipeline = ctx.pipeline(`dequant.${a.type}`, f16 + '\n' + shader, 'main', { WG, TYPE: info.id });
  const src = ctx.upload(a.src);
  const dst = ctx.buffer(values.byteLength);
  const flags = ctx.buffer(blocks * 4);
  const params = ctx.uniform(new Uint32Array([blocks, 0, 0, 0]));
  try {
    ctx.dispatch(pipeline, [src, dst, flags, params], workgroupGrid(Math.ceil(blocks / WG), ctx.limits.maxComputeWorkgroupsPerDimension));
    const [out, fl] = await Promise.all([ctx.read(dst, values.byteLength), ctx.read(flags, blocks * 4)]);
    values.set(new Float32Array(out));
    const flagged = new Uint32Array(fl);
    for (let b = 0; b < blocks; b++) {
      if (flagged[b]) dequantize(a.type, a.src.subarray(b * info.typeSize, (b + 1) * info.typeSize), values.subarray(b * info.blockSize, (b + 1) * info.blockSize));
    }
  } finally {
    for (const b of [src, dst, flags, params]) b.destroy();
  }
  return { values };
}
