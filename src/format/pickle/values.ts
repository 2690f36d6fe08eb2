/**
 * The values a pickle can build, as plain data. Nothing here is ever called: a
 * global is only a (module, name) pair, and a call of anything not on the
 * allowlist stays an opaque `PyCall` that no reader trusts.
 */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyBytes
  | PyTuple
  | PyList
  | PyDict
  | PySet
  | PyGlobal
  | PyCall
  | PyObject
  | PyStorage
  | PyTensor;

export interface PyBytes {
  readonly kind: 'bytes';
  readonly bytes: Uint8Array;
}
export interface PyTuple {
  readonly kind: 'tuple';
  readonly items: readonly PyValue[];
}
export interface PyList {
  readonly kind: 'list';
  readonly items: PyValue[];
}
/** Keys keep their Python value; `index` finds string and integer keys without a scan. */
export interface PyDict {
  readonly kind: 'dict';
  readonly entries: [PyValue, PyValue][];
  /** True for collections.OrderedDict (shown as such; order is kept for both). */
  readonly ordered: boolean;
}
export interface PySet {
  readonly kind: 'set';
  readonly items: PyValue[];
  readonly frozen: boolean;
}
/** A reference to `module.name`, recorded where the pickle named it. */
export interface PyGlobal {
  readonly kind: 'global';
  readonly module: string;
  readonly name: string;
  /** Byte offset of the opcode that named it, within its pickle. */
  readonly offset: number;
}
/** A call that was not evaluated: a REDUCE, NEWOBJ, INST or OBJ of something not modelled. */
export interface PyCall {
  readonly kind: 'call';
  readonly callable: PyValue;
  readonly args: PyValue;
  /** BUILD states applied to the result (a `__setstate__` call in Python). */
  readonly state: PyValue[];
  readonly offset: number;
}
/** An object whose class is modelled but whose content is kept as data (e.g. argparse state). */
export interface PyObject {
  readonly kind: 'object';
  readonly cls: PyGlobal;
  readonly state: PyValue[];
}
/** A torch storage named by a persistent id: where its bytes are is the container's business. */
export interface PyStorage {
  readonly kind: 'storage';
  /** The storage's key: `data/<key>` in a zip, the legacy file's storage key. */
  readonly key: string;
  /** Element type from the storage class (FloatStorage → F32), or 'U8' for UntypedStorage. */
  readonly dtype: TorchDType;
  /** Storage size in its own elements, as the pickle declares it. */
  readonly numel: number;
  readonly location: string;
}
/** A tensor rebuilt by an allowlisted function: a strided view of a storage. */
export interface PyTensor {
  readonly kind: 'tensor';
  readonly storage: PyStorage;
  /** Element type: the storage's, or the explicit dtype of `_rebuild_tensor_v3` over an untyped storage. */
  readonly dtype: TorchDType;
  /** In elements of `dtype`. */
  readonly storageOffset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
  readonly parameter: boolean;
}

/** Element types of torch storages, named as in safetensors where safetensors has them. */
export type TorchDType =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL'
  | 'C64' | 'C128' | 'U16' | 'U32' | 'U64' | 'F8_E4M3' | 'F8_E5M2' | 'F8_E4M3FNUZ' | 'F8_E5M2FNUZ' | 'F8_E8M0'
  | 'QI8' | 'QU8' | 'QI32' | 'QU4x2' | 'QU2x4';

export const TORCH_DTYPE_BYTES: Readonly<Record<TorchDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
  C64: 8, C128: 16, U16: 2, U32: 4, U64: 8, F8_E4M3: 1, F8_E5M2: 1, F8_E4M3FNUZ: 1, F8_E5M2FNUZ: 1, F8_E8M0: 1,
  QI8: 1, QU8: 1, QI32: 4, QU4x2: 1, QU2x4: 1,
};

export const tuple = (items: readonly PyValue[]): PyTuple => ({ kind: 'tuple', items });

export function isKind<K extends Exclude<PyValue, null | boolean | number | bigint | string>['kind']>(
  v: PyValue | undefined,
  kind: K,
): v is Extract<PyValue, { kind: K }> {
  return typeof v === 'object' && v !== null && (v as { kind?: string }).kind === kind;
}

/** A Python int as a JS number when it is a safe integer, else undefined. */
export function asInt(v: PyValue | undefined): number | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return undefined;
}

/** The items of a tuple or list, else undefined. */
export function itemsOf(v: PyValue | undefined): readonly PyValue[] | undefined {
  return isKind(v, 'tuple') || isKind(v, 'list') ? v.items : undefined;
}
