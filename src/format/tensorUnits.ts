import { partsOf, storageOf, type Model, type TensorInfo } from './model';
import { readSchemeUnits } from './quantized/units';
import { storageUnit, storedBytes } from './storage';

/**
 * The bytes of a run of whole storage units of any tensor: a plain dtype's elements, a
 * block type's blocks, or a scheme's units with every part's matching bytes. This is the
 * one place that knows how a storage's values are laid out in its parts; the decoded
 * value stream (src/compute/decode/tensorValues.ts) reads through it for every pipeline.
 */
export interface UnitBytes {
  /** Bytes of the data part. */
  readonly data: Uint8Array;
  /** The other parts' bytes for the same units (a scheme's scales), data excluded. */
  readonly more: readonly Uint8Array[];
  /** Logical values these units hold (a tensor's last unit may be short). */
  readonly count: number;
}

/** Values in one unit: a chunk of decoded values starts and ends on a multiple of this (or at the end). */
export function unitElementsOf(t: TensorInfo): number {
  return storageUnit(storageOf(t)).elements;
}

/**
 * Reads values [e0, e1) of `t` as whole units: `e0` must be a multiple of the unit's values, and
 * `e1` one too unless it is the tensor's end. Plain and block tensors read one range of their
 * data; schemes read each part's share of the units (`readSchemeUnits`).
 */
export async function readUnitBytes(model: Model, t: TensorInfo, e0: number, e1: number, signal?: AbortSignal): Promise<UnitBytes> {
  const s = storageOf(t);
  const per = storageUnit(s).elements;
  if (!Number.isInteger(e0) || e0 < 0 || e1 > t.numel || e1 < e0 || e0 % per !== 0 || (e1 % per !== 0 && e1 !== t.numel)) {
    throw new RangeError(`values ${e0}..${e1} of '${t.name}' are not whole ${per}-value units of its ${t.numel}`);
  }
  if (s.kind === 'scheme') {
    signal?.throwIfAborted();
    const u = await readSchemeUnits(model, t, e0 / per, Math.ceil(e1 / per));
    return { data: u.data, more: u.more, count: u.count };
  }
  const start = storedBytes(s, e0);
  // A short last unit (an odd count of F4 values) still ends on the tensor's last byte.
  const end = e1 === t.numel ? partsOf(t)[0].byteLength : storedBytes(s, e1);
  const data = new Uint8Array(end - start);
  if (data.length > 0) await model.read(t, start, data, signal);
  return { data, more: [], count: e1 - e0 };
}
