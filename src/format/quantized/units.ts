import type { Model, TensorInfo } from '../model';
import { partsOf, storageOf } from '../model';
import { storageUnit } from '../storage';

/** The bytes of units [u0, u1) of a scheme tensor: its data part and every other part's matching bytes. */
export interface SchemeUnits {
  readonly data: Uint8Array;
  readonly more: Uint8Array[];
  /** Logical values these units hold (the last unit of a tensor may be short). */
  readonly count: number;
}

/** How many units a scheme tensor has (its last one may be short). */
export function unitCount(t: TensorInfo): number {
  return Math.ceil(t.numel / storageUnit(storageOf(t)).elements);
}

/**
 * Reads units [u0, u1) of `t`: each part's bytes per unit (`partUnitBytes`) say where its
 * share starts; a part with 0 per unit is read whole. Reads go through the model's sources.
 * `take` supplies the data part's buffer (a caller's recycled one); the others are new.
 */
export async function readSchemeUnits(model: Model, t: TensorInfo, u0: number, u1: number, take?: (length: number) => Uint8Array): Promise<SchemeUnits> {
  const s = storageOf(t);
  if (s.kind !== 'scheme' || !model.readPart) throw new Error(`tensor '${t.name}' is not a scheme tensor of a model that reads parts`);
  const unit = storageUnit(s);
  const parts = partsOf(t);
  const per = s.partUnitBytes ?? parts.map(() => 0);
  const bufs = await Promise.all(
    parts.map(async (p, k) => {
      const start = per[k] === 0 ? 0 : Math.min(u0 * per[k], p.byteLength);
      const end = per[k] === 0 ? p.byteLength : Math.min(u1 * per[k], p.byteLength);
      const b = k === 0 && take ? take(end - start) : new Uint8Array(end - start);
      await model.readPart!(t, p, start, b);
      return b;
    }),
  );
  const count = Math.min(u1 * unit.elements, t.numel) - u0 * unit.elements;
  return { data: bufs[0], more: bufs.slice(1), count };
}
