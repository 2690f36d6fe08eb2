import { hfLlamaName, LLAMA_FAMILY, ropeHeadKey } from '../format/gguf/names';
import type { Model, TensorInfo } from '../format/model';
import { matchTensors, type Matching, type PrefixMapping } from './diffMatch';
import { ropePermutation } from './quantizeChunks';

/**
 * Pairing a Hugging Face checkpoint with a llama.cpp-named one (`blk.N.attn_q.weight` beside
 * `model.layers.N.self_attn.q_proj.weight`): names are mapped through llama.cpp's table, and
 * the q and k weights, whose rows llama.cpp's converter reorders for its rotary layout, are
 * read back in HF's row order, so that an unchanged model compares as identical.
 */

/** Rows of a tensor read in another order: HF row `g·groupRows + l` is stored row `g·groupRows + inv[l]`. */
export interface RowOrder {
  readonly groupRows: number;
  readonly inv: Int32Array;
}

export interface NamedMatching extends Matching {
  /** Set when names were mapped between conventions: `llama.cpp → HF (B)` says which side. */
  readonly naming?: string;
  /** The tensors read in another row order, by the original TensorInfo. */
  readonly rowOrders: ReadonlyMap<TensorInfo, RowOrder>;
}

const LLAMA_CPP = /^blk\.\d+\./;
const HF_LAYERS = /(^|\.)layers\.\d+\./;

function isLlamaCppNamed(m: Model): boolean {
  return m.tensors.some((t) => LLAMA_CPP.test(t.name)) && !m.tensors.some((t) => HF_LAYERS.test(t.name));
}

function isHfNamed(m: Model): boolean {
  return m.tensors.some((t) => HF_LAYERS.test(t.name));
}

/** The inverse of llama.cpp's q/k row order for `t`, or undefined when its rows stay as they are. */
function rowOrderOf(m: Model, t: TensorInfo, arch: string): RowOrder | undefined {
  const key = ropeHeadKey(t.name, arch);
  if (!key || t.shape.length !== 2) return undefined;
  const heads = Number(m.metadata[key] ?? (key.endsWith('_kv') ? m.metadata[`${arch}.attention.head_count`] : undefined));
  const rows = t.shape[0];
  if (!Number.isInteger(heads) || heads <= 0 || rows % heads !== 0 || (rows / heads) % 2 !== 0) return undefined;
  const groupRows = rows / heads;
  const perm = ropePermutation(groupRows);
  const inv = new Int32Array(groupRows);
  for (let k = 0; k < groupRows; k++) inv[perm[k]] = k;
  return { groupRows, inv };
}

/** Like `matchTensors`, mapping llama.cpp names to HF ones first when one side uses each. */
export function matchModels(a: Model, b: Model, mapping?: PrefixMapping): NamedMatching {
  const side = isHfNamed(a) && isLlamaCppNamed(b) ? 'B' : isHfNamed(b) && isLlamaCppNamed(a) ? 'A' : undefined;
  if (!side) return { ...matchTensors(a.tensors, b.tensors, mapping), rowOrders: new Map() };
  const cpp = side === 'B' ? b : a;
  const arch = cpp.metadata['general.architecture'] ?? 'llama';
  const original = new Map<TensorInfo, TensorInfo>();
  const rowOrders = new Map<TensorInfo, RowOrder>();
  const renamed = cpp.tensors.map((t) => {
    const hf = hfLlamaName(t.name);
    if (hf === undefined) return t;
    const view = { ...t, name: hf };
    original.set(view, t);
    const order = LLAMA_FAMILY.includes(arch) ? rowOrderOf(cpp, t, arch) : undefined;
    if (order) rowOrders.set(t, order);
    return view;
  });
  const back = (t: TensorInfo) => original.get(t) ?? t;
  const m = side === 'B' ? matchTensors(a.tensors, renamed, mapping) : matchTensors(renamed, b.tensors, mapping);
  return {
    mapping: m.mapping,
    pairs: m.pairs.map((p) => ({ a: back(p.a), b: back(p.b) })),
    added: m.added.map(back),
    removed: m.removed.map(back),
    naming: `llama.cpp → HF names (${side})${rowOrders.size ? `, q/k rows in HF order` : ''}`,
    rowOrders,
  };
}
