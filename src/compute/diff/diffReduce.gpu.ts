import { workgroupGrid } from '../gpu/device';
import { GpuUnsupportedError, type GpuContext } from '../kernel';
import { diffElementBytes } from './decodeChunk';
import { histScale, type DiffReduceArgs, type DiffReduceResult } from './diffReduce';
import body from './diffReduce.wgsl';
import elements from './diffElements.wgsl';

// diffReduce.wgsl reads A and B through diffElements.wgsl.
const code = elements + '\n' + body;

/** Elements per workgroup: WG × PER_THREAD in diffReduce.wgsl. */
const ELEMENTS_PER_GROUP = 256 * 16;
/** Words per workgroup partial: PARTIAL_WORDS in diffReduce.wgsl. */
const PARTIAL_WORDS = 8;
const DTYPE_CODE = { F32: 0, F16: 1, BF16: 2 } as const;

export async function diffReduceGpu(ctx: GpuContext, args: DiffReduceArgs): Promise<DiffReduceResult> {
  const n = Math.floor(args.a.byteLength / diffElementBytes(args.dtype));
  // Element indices are u32 in the shader, and each input must fit one binding.
  if (args.a.byteLength > ctx.limits.maxStorageBufferBindingSize || n >= 2 ** 32 - 1) {
    throw new GpuUnsupportedError(`chunk of ${args.a.byteLength} bytes exceeds one storage binding`);
  }
  const groups = Math.max(1, Math.ceil(n / ELEMENTS_PER_GROUP));
  const [nx, ny] = workgroupGrid(groups, ctx.limits.maxComputeWorkgroupsPerDimension);
  const bins = args.hist?.bins ?? 0;
  const params = new ArrayBuffer(32);
  const u = new Uint32Array(params);
  const f = new Float32Array(params);
  u[0] = n;
  u[1] = args.b ? 1 : 0;
  u[2] = bins;
  u[3] = nx;
  f[4] = args.hist ? args.hist.lo : 0;
  f[5] = args.hist ? histScale(args.hist) : 0;
  const pbuf = ctx.uniform(u);
  const abuf = ctx.upload(args.a);
  const bbuf = args.b ? ctx.upload(args.b) : abuf;
  const out = ctx.buffer(nx * ny * PARTIAL_WORDS * 4);
  const hbuf = ctx.buffer(Math.max(1, bins) * 4);
  try {
    const pipeline = ctx.pipeline('diff.reduce', code, 'main', { DTYPE: DTYPE_CODE[args.dtype] });
    ctx.dispatch(pipeline, [pbuf, abuf, bbuf, out, hbuf], [nx, ny]);
    const [raw, hraw] = await Promise.all([ctx.read(out, groups * PARTIAL_WORDS * 4), bins > 0 ? ctx.read(hbuf, bins * 4) : undefined]);
    const words = new Uint32Array(raw);
    const vals = new Float32Array(raw);
    let saa = 0;
    let sbb = 0;
    let sab = 0;
    let sdd = 0;
    let sad = 0;
    let maxAbs = 0;
    let maxIndex = -1;
    let nDiff = 0;
    for (let g = 0; g < groups; g++) {
      const o = g * PARTIAL_WORDS;
      saa += vals[o];
      sbb += vals[o + 1];
      sab += vals[o + 2];
      sdd += vals[o + 3];
      sad += vals[o + 4];
      nDiff += words[o + 7];
      // Groups cover increasing index ranges, so strict > keeps the lowest index on ties.
      if (vals[o + 5] > maxAbs) {
        maxAbs = vals[o + 5];
        maxIndex = words[o + 6];
      }
    }
    return { n, sumA2: saa, sumB2: sbb, dot: sab, sumD2: sdd, sumAbsD: sad, maxAbs, maxIndex, nDiff, hist: hraw ? new Uint32Array(hraw) : undefined, chunks: args.b ? [args.a, args.b] : [args.a] };
  } finally {
    pbuf.destroy();
    abuf.destroy();
    if (bbuf !== abuf) bbuf.destroy();
    out.destroy();
    hbuf.destroy();
  }
}
