import type { GpuContext } from '../kernel';
import { diffReduceGpu } from './diffReduce.gpu';
import { REDUCE_FIELDS, type DiffReduceManyArgs } from './diffReduceMany';

/** Each pair on the device in turn, exactly as `diff.reduce` would reduce it alone. */
export async function diffReduceManyGpu(ctx: GpuContext, args: DiffReduceManyArgs): Promise<Float64Array> {
  const k = REDUCE_FIELDS.length;
  const out = new Float64Array(args.dtypes.length * k);
  for (let i = 0; i < args.dtypes.length; i++) {
    const a = args.a.subarray(args.atA[i], args.atA[i] + args.bytes[i]);
    const b = args.b.subarray(args.atB[i], args.atB[i] + args.bytes[i]);
    const r = await diffReduceGpu(ctx, { dtype: args.dtypes[i], a, b });
    for (let f = 0; f < k; f++) out[i * k + f] = r[REDUCE_FIELDS[f]];
  }
  return out;
}
