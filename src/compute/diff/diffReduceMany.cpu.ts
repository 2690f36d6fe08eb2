import { diffReduceCpu } from './diffReduce.cpu';
import { REDUCE_FIELDS, type DiffReduceManyArgs } from './diffReduceMany';

export function diffReduceManyCpu(args: DiffReduceManyArgs): Float64Array {
  const k = REDUCE_FIELDS.length;
  const out = new Float64Array(args.dtypes.length * k);
  for (let i = 0; i < args.dtypes.length; i++) {
    const a = args.a.subarray(args.atA[i], args.atA[i] + args.bytes[i]);
    const b = args.b.subarray(args.atB[i], args.atB[i] + args.bytes[i]);
    const r = diffReduceCpu({ dtype: args.dtypes[i], a, b });
    for (let f = 0; f < k; f++) out[i * k + f] = r[REDUCE_FIELDS[f]];
  }
  return out;
}
