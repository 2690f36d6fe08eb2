/**
 * The compact encodings the viewer's summary travels in: many strings as one
 * buffer (string columns), the tensor list as columns, and the module tree as
 * columns. A webview message carries typed arrays as binary and everything else as
 * JSON, through every hop between a remote extension host and the page: 50,000
 * tensors as objects (each with a name, a shape array and a tree path) cost the
 * structured clone most of a second there; as a few typed arrays and buffers they
 * cost a copy. The host packs with `tensorTable` / `treeTable`, the page unpacks
 * with `tensorEntries` / `treeFromTable`.
 *
 * This module must stay free of Node, DOM and `vscode` imports: it is compiled for both.
 */

export interface TensorEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Index into SummaryReplyMessage.files. */
  readonly file: number;
  readonly byteOffset: number;
  readonly byteLength: number;
  /** False when the viewer cannot decode this dtype to numbers; its metadata still shows. */
  readonly decodable: boolean;
}

/** A node of the module tree. Runs of numbered blocks (`layers ×32`) and MoE experts arrive folded. */
export interface TreeNodeData {
  /** What the row shows: `mlp`, `layers ×32`, `experts ×8`, `weight`. */
  readonly label: string;
  /** Dotted path of the module or tensor (`model.layers.{0..31}` for a run). */
  readonly path: string;
  /** `part`: a stored part of a quantized tensor, folded under it by the page (never in a TreeTable). */
  readonly kind: 'module' | 'run' | 'tensor' | 'part';
  /** For a tensor: its index in SummaryReplyMessage.tensors. */
  readonly tensor?: number;
  /** Number of tensors below this node (1 for a tensor). */
  readonly tensors: number;
  readonly params: number;
  readonly bytes: number;
  readonly children?: readonly TreeNodeData[];
}


/**
 * Many strings as one buffer plus the end of each, in UTF-16 code units of their
 * concatenation. A webview message carries typed arrays as binary and the rest as
 * JSON, through every hop between a remote extension host and the page: 50,000
 * tensor names and tree paths as arrays of strings cost most of a second there, as
 * one buffer they cost a copy.
 */
export interface StringColumn {
  /** The concatenation as UTF-8, or as UTF-16LE code units when it holds a lone surrogate (which UTF-8 cannot carry). */
  readonly bytes: Uint8Array;
  readonly utf16: boolean;
  readonly ends: Uint32Array;
}

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function packStrings(list: readonly string[]): StringColumn {
  const ends = new Uint32Array(list.length);
  let n = 0;
  for (let i = 0; i < list.length; i++) ends[i] = n += list[i]!.length;
  const text = list.join('');
  if (!LONE_SURROGATE.test(text)) return { bytes: new TextEncoder().encode(text), utf16: false, ends };
  const units = new Uint16Array(text.length);
  for (let i = 0; i < text.length; i++) units[i] = text.charCodeAt(i);
  return { bytes: new Uint8Array(units.buffer), utf16: true, ends };
}

export function unpackStrings(c: StringColumn): string[] {
  let text: string;
  if (!c.utf16) text = new TextDecoder().decode(c.bytes);
  else {
    // Exact for any code unit (a decoder would replace lone surrogates); in slices, to stay under argument limits.
    const units = new Uint16Array(c.bytes.buffer.slice(c.bytes.byteOffset, c.bytes.byteOffset + c.bytes.byteLength));
    const parts: string[] = [];
    for (let i = 0; i < units.length; i += 8192) parts.push(String.fromCharCode(...units.subarray(i, i + 8192)));
    text = parts.join('');
  }
  const out = new Array<string>(c.ends.length);
  let start = 0;
  for (let i = 0; i < c.ends.length; i++) {
    out[i] = text.slice(start, c.ends[i]);
    start = c.ends[i]!;
  }
  return out;
}

export interface TensorTable {
  readonly names: StringColumn;
  /** Distinct dtype names; `dtype[i]` indexes this list. */
  readonly dtypes: readonly string[];
  readonly dtype: Uint8Array;
  readonly rank: Uint8Array;
  /** Every tensor's shape, concatenated in tensor order (32-bit unless a dimension needs more). */
  readonly dims: Uint32Array | Float64Array;
  readonly file: Uint32Array;
  readonly byteOffset: Float64Array;
  readonly byteLength: Float64Array;
  readonly decodable: Uint8Array;
}

/**
 * The columns of `entries`; `decodable` overrides the entries' own flag and `typeOf` their
 * dtype (the host passes its tensor infos as they are, and names a block type `Q4_K`, not its bytes' U8).
 */
export function tensorTable<E extends Omit<TensorEntry, 'decodable'> & { decodable?: boolean }>(
  entries: readonly E[],
  isDecodable: (e: E) => boolean = (e) => e.decodable === true,
  typeOf: (e: E) => string = (e) => e.dtype,
): TensorTable {
  const n = entries.length;
  const dtypes: string[] = [];
  const dtypeIndex = new Map<string, number>();
  const dtype = new Uint8Array(n);
  const rank = new Uint8Array(n);
  let ndims = 0;
  let wide = false;
  for (const e of entries) {
    ndims += e.shape.length;
    for (const x of e.shape) if (x > 0xffffffff) wide = true;
  }
  const dims = wide ? new Float64Array(ndims) : new Uint32Array(ndims);
  const file = new Uint32Array(n);
  const byteOffset = new Float64Array(n);
  const byteLength = new Float64Array(n);
  const decodable = new Uint8Array(n);
  let d = 0;
  entries.forEach((e, i) => {
    const type = typeOf(e);
    let k = dtypeIndex.get(type);
    if (k === undefined) {
      k = dtypes.push(type) - 1;
      dtypeIndex.set(type, k);
    }
    dtype[i] = k;
    rank[i] = e.shape.length;
    for (const x of e.shape) dims[d++] = x;
    file[i] = e.file;
    byteOffset[i] = e.byteOffset;
    byteLength[i] = e.byteLength;
    decodable[i] = isDecodable(e) ? 1 : 0;
  });
  return { names: packStrings(entries.map((e) => e.name)), dtypes, dtype, rank, dims, file, byteOffset, byteLength, decodable };
}

export function tensorEntries(t: TensorTable): TensorEntry[] {
  const names = unpackStrings(t.names);
  const out: TensorEntry[] = new Array(names.length);
  let d = 0;
  for (let i = 0; i < names.length; i++) {
    const r = t.rank[i]!;
    const shape = new Array<number>(r);
    let numel = 1;
    for (let k = 0; k < r; k++) numel *= shape[k] = t.dims[d + k]!;
    d += r;
    out[i] = {
      name: names[i]!,
      dtype: t.dtypes[t.dtype[i]!]!,
      shape,
      numel,
      file: t.file[i]!,
      byteOffset: t.byteOffset[i]!,
      byteLength: t.byteLength[i]!,
      decodable: t.decodable[i] === 1,
    };
  }
  return out;
}

export const TREE_KINDS = ['module', 'run', 'tensor'] as const;

/**
 * The module tree as columns, in pre-order (a parent precedes its children). A
 * tensor node is only its parent, kind and tensor index: its path, label and sizes
 * are its tensor's (name, last dotted part, numel, byte length), which the tensor
 * table carries, so the columns of text and sizes hold the other nodes (modules and
 * runs, the "groups") only, in node order.
 */
export interface TreeTable {
  readonly parent: Int32Array;
  readonly kind: Uint8Array;
  /** Tensor index, or -1. */
  readonly tensor: Int32Array;
  /** A group's unique path (`model.layers.{0..31}` for a run). */
  readonly path: StringColumn;
  /** A group row's text when it is not the path's last dotted part (`layers ×32`), else ''. */
  readonly label: StringColumn;
  readonly tensors: Float64Array;
  readonly params: Float64Array;
  readonly bytes: Float64Array;
}

/** Builds a TreeTable node by node, parents first. */
export class TreeTableBuilder {
  private readonly parent: number[] = [];
  private readonly kind: number[] = [];
  private readonly tensor: number[] = [];
  private readonly path: string[] = [];
  private readonly label: string[] = [];
  private readonly tensors: number[] = [];
  private readonly params: number[] = [];
  private readonly bytes: number[] = [];

  /** Adds a node; a tensor node's path, label and sizes are its tensor's and are not stored. */
  add(parent: number, kind: (typeof TREE_KINDS)[number], path: string, label: string, tensor: number, tensors: number, params: number, bytes: number): number {
    this.parent.push(parent);
    this.kind.push(TREE_KINDS.indexOf(kind));
    const isTensor = kind === 'tensor' && tensor >= 0;
    this.tensor.push(isTensor ? tensor : -1);
    if (!isTensor) {
      this.path.push(path);
      this.label.push(label === '' || label === lastPart(path) ? '' : label);
      this.tensors.push(tensors);
      this.params.push(params);
      this.bytes.push(bytes);
    }
    return this.parent.length - 1;
  }

  build(): TreeTable {
    return {
      parent: Int32Array.from(this.parent),
      kind: Uint8Array.from(this.kind),
      tensor: Int32Array.from(this.tensor),
      path: packStrings(this.path),
      label: packStrings(this.label),
      tensors: Float64Array.from(this.tensors),
      params: Float64Array.from(this.params),
      bytes: Float64Array.from(this.bytes),
    };
  }
}

function lastPart(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1);
}

/** Flattens a tree of objects (pre-order). */
export function treeTable(root: TreeNodeData): TreeTable {
  const b = new TreeTableBuilder();
  const visit = (n: TreeNodeData, parent: number) => {
    if (n.kind === 'part') return; // the page's own rows, never sent
    const i = b.add(parent, n.kind, n.path, n.label, n.tensor ?? -1, n.tensors, n.params, n.bytes);
    for (const c of n.children ?? []) visit(c, i);
  };
  visit(root, -1);
  return b.build();
}

/**
 * Rebuilds the tree's objects on the receiving side (cheap: no structured clone
 * involved); `tensors` is the tensor table's rows, which describe the tensor nodes.
 */
export function treeFromTable(t: TreeTable, tensors: readonly Pick<TensorEntry, 'name' | 'numel' | 'byteLength'>[]): TreeNodeData {
  type Mutable = { -readonly [K in keyof TreeNodeData]: TreeNodeData[K] } & { children?: Mutable[] };
  const nodes: Mutable[] = new Array(t.parent.length);
  const paths = unpackStrings(t.path);
  const labels = unpackStrings(t.label);
  let g = 0;
  for (let i = 0; i < t.parent.length; i++) {
    const p = t.parent[i]!;
    const kind = TREE_KINDS[t.kind[i]!]!;
    const tensor = t.tensor[i]!;
    let node: Mutable;
    if (tensor >= 0) {
      const e = tensors[tensor]!;
      node = { label: lastPart(e.name), path: e.name, kind, tensor, tensors: 1, params: e.numel, bytes: e.byteLength };
    } else {
      const path = paths[g]!;
      node = { label: labels[g] || lastPart(path), path, kind, tensors: t.tensors[g]!, params: t.params[g]!, bytes: t.bytes[g]! };
      g++;
    }
    nodes[i] = node;
    if (p >= 0) (nodes[p]!.children ??= []).push(node);
  }
  return nodes[0]!;
}

/** A LoRA adapter file (PEFT or kohya), described from its header and config. */
