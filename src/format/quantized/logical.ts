import { DTYPE_INFO } from '../dtypes';
import type { TensorInfo } from '../model';
import type { SchemeParams, StorageType, TensorPart } from '../storage';

/** One part of a logical tensor: its role in the scheme and the stored tensor that holds it. */
export interface PartOf {
  readonly role: string;
  readonly t: TensorInfo;
  /** Bytes of this part per unit of the data part; 0: the decoder takes the whole part. */
  readonly unitBytes: number;
}

/** A quantized weight as one logical tensor: `parts[0]` is its data part. */
export function logicalTensor(name: string, shape: readonly number[], scheme: string, parts: readonly PartOf[], unitElements: number, params: SchemeParams): TensorInfo {
  const data = parts[0].t;
  const storage: StorageType = {
    kind: 'scheme',
    scheme,
    parts: parts.map((p) => p.role),
    unit: { elements: unitElements, bytes: parts[0].unitBytes },
    params,
    partUnitBytes: parts.map((p) => p.unitBytes),
  };
  const tensorParts: TensorPart[] = parts.map((p) => ({ role: p.role, file: p.t.file, byteOffset: p.t.byteOffset, byteLength: p.t.byteLength }));
  return {
    name,
    dtype: 'U8',
    shape,
    numel: shape.reduce((a, b) => a * b, 1),
    file: data.file,
    byteOffset: data.byteOffset,
    byteLength: data.byteLength,
    storage,
    parts: tensorParts,
  };
}

/** Bytes of one element of a stored tensor. */
export function elementBytes(t: TensorInfo): number {
  return DTYPE_INFO[t.dtype].bits / 8;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
