import type { KernelDef } from '../kernel';
import type { DiffDType } from './decodeChunk';
import { diffReduceManyCpu } from './diffReduceMany.cpu';
import { diffReduceManyGpu } from './diffReduceMany.gpu';

/**
 * Many small tensor pairs in one task, each reduced as `diff.reduce` reduces one chunk pair.
 * Item i is `bytes[i]` bytes at `atA[i]` in `a` and at `atB[i]` in `b`, of `dtypes[i]`. Offsets
 * and results travel as typed arrays: thousands of per-pair objects (arguments, results and
 * the views handed back) cost more to clone and collect than their arithmetic.
 */
export interface DiffReduceManyArgs {
  readonly a: Uint8Array;
  readonly b: Uint8Array;
  readonly dtypes: readonly DiffDType[];
  readonly atA: Float64Array;
  readonly atB: Float64Array;
  readonly bytes: Float64Array;
}

/** Per item, in this order, the fields of its `DiffReduceResult` (the chunks handed back excepted). */
export const REDUCE_FIELDS = ['n', 'sumA2', 'sumB2', 'dot', 'sumD2', 'sumAbsD', 'maxAbs', 'maxIndex', 'nDiff'] as const;

export const diffReduceManyKernel: KernelDef<DiffReduceManyArgs, Float64Array> = {
  name: 'diff.reduceMany',
  cpu: diffReduceManyCpu,
  gpu: diffReduceManyGpu,
  // Moved, not copied, when each side is a whole buffer of its own (a batch's fresh read).
  transfer: (x) => [x.a, x.b].filter((v, i, all) => v.byteOffset === 0 && v.byteLength === v.buffer.byteLength && all.indexOf(v) === i).map((v) => v.buffer as ArrayBuffer),
};
