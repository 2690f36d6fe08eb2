/**
 * Every kernel the CPU worker can run, by name. The worker imports this table to
 * find CPU twins; the GPU side gets the same `KernelDef` object from the caller.
 *
 * HOW TO ADD A KERNEL (say `absmax`, in a folder you own such as src/compute/diff/):
 *   1. absmax.wgsl    WGSL with tunables as `override` constants (`override WG: u32 = 256u;`),
 *                     inputs as `array<u32>` words when the dtype is narrower than 32 bits.
 *   2. absmax.gpu.ts  `export async function absmaxGpu(ctx: GpuContext, args: AbsmaxArgs): Promise<R>`:
 *                     `ctx.pipeline('absmax', shader, 'main', { WG })` (cached by key + constants),
 *                     `ctx.upload(bytes)` / `ctx.buffer(size)` / `ctx.uniform(words)`,
 *                     `ctx.dispatch(p, [bufs in @binding order; undefined for a number the entry point skips],
 *                                   workgroupGrid(groups, ctx.limits.maxComputeWorkgroupsPerDimension))`,
 *                     `await ctx.read(buf)`, then `destroy()` what you created.
 *                     Slice inputs above `ctx.limits.maxStorageBufferBindingSize`.
 *                     Throw `GpuUnsupportedError` for inputs the GPU cannot do (F64): the CPU twin runs instead.
 *   3. absmax.cpu.ts  `export function absmaxCpu(args: AbsmaxArgs): R` — pure, no I/O on the host thread,
 *                     same result (integers exactly, floats within a tolerance you state per dtype).
 *   4. absmax.ts      `export const absmaxKernel: KernelDef<AbsmaxArgs, R> = { name: 'absmax', cpu: absmaxCpu,
 *                     gpu: absmaxGpu, transfer: (a) => [] }` (`transfer` only for buffers the caller gives up).
 *   5. One line below: `absmax: absmaxKernel,` (the key must equal `name`).
 *   6. Run it from a pipeline: `const b = await getBackend(ctx.backend); await b.run(absmaxKernel, args, ctx.signal)`.
 *   7. Test: one table of cases, run on both backends with `forEachBackend` from test/compute/backends.ts:
 *        forEachBackend('absmax', (backend) => {
 *          for (const c of CASES) it(c.name, async () => {
 *            const got = await backend().run(absmaxKernel, c.args);
 *            assert.ok(Math.abs(got - reference64(c)) <= TOL[c.dtype]);   // an independent f64 oracle
 *          });
 *        });
 *      With CI=true a machine without a WebGPU adapter FAILS the webgpu suite instead of skipping it.
 * Arguments and results must be structured-cloneable: they cross a worker boundary on the CPU backend.
 * A device error (lost device, validation error) is not the kernel's to handle: the backend marks the
 * device broken, reruns that call on the CPU twin, and tells the user once (`onGpuFallback`).
 */
import { decodeKernel } from './decode/decode';
import { dequantKernel } from './dequant/dequant';
import { deltaSketchKernel } from './diff/deltaSketch';
import { diffReduceKernel } from './diff/diffReduce';
import { matmulKernel } from './matmul/matmul';
import { fp8BlockKernel, mxfp4QuantKernel } from './quant/blockScaled';
import { fp8E4m3Kernel } from './quant/fp8E4m3';
import { int8ChannelKernel } from './quant/int8Channel';
import { q4_0Kernel } from './quant/q4_0';
import { q4_1Kernel } from './quant/q4_1';
import { q8_0Kernel } from './quant/q8_0';
import { KQUANT_KERNELS } from './quant/kquant';
import type { KernelDef } from './kernel';
import { scaleStatsKernel } from './scales/scaleStats';
import { statsKernel } from './stats/stats';
import { statsSmallKernel } from './stats/statsSmall';
import { diffReduceManyKernel } from './diff/diffReduceMany';
import { gtaChunkKernel } from './merge/gtaChunk';

export const KERNELS: Record<string, KernelDef<any, any>> = {
  decode: decodeKernel,
  dequant: dequantKernel,
  stats: statsKernel,
  'stats.small': statsSmallKernel,
  'diff.reduce': diffReduceKernel,
  'diff.reduceMany': diffReduceManyKernel,
  'diff.sketch': deltaSketchKernel,
  matmul: matmulKernel,
  'quant.q8_0': q8_0Kernel,
  'quant.q4_0': q4_0Kernel,
  'quant.q4_1': q4_1Kernel,
  'quant.int8-channel': int8ChannelKernel,
  'quant.fp8-e4m3': fp8E4m3Kernel,
  'quant.fp8-block': fp8BlockKernel,
  'quant.mxfp4': mxfp4QuantKernel,
  ...KQUANT_KERNELS,
  scales: scaleStatsKernel,
  'merge.gta': gtaChunkKernel,
};
