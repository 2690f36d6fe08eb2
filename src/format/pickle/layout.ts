import type { Finding } from './globals';
import type { TorchCheckpoint } from './torch';
import { isKind, TORCH_DTYPE_BYTES, type PyTensor, type PyValue } from './values';

/**
 * What a checkpoint holds, named: the model's tensors (by dotted path, under the
 * state dict when the file wraps one, as Lightning and training scripts do), the
 * other entries summarised (epoch, hyper-parameters, optimizer state), and the verdict.
 */

/** Nesting deeper than this is not a state dict; a crafted file must not exhaust the stack. */
const MAX_DEPTH = 64;
/** Containers visited at most: bounds the walk of a file whose objects share references. */
const MAX_NODES = 5_000_000;
/** Keys under which training scripts keep the model's weights, tried in this order. */
const STATE_KEYS = ['state_dict', 'model_state_dict', 'model', 'module', 'net', 'params', 'weights'];

export interface NamedTensor {
  readonly name: string;
  readonly tensor: PyTensor;
  /** Row-major with no gaps: its bytes are one range of the storage. */
  readonly contiguous: boolean;
}

export interface CheckpointLayout {
  /** The model's tensors, in pickle order. */
  readonly tensors: readonly NamedTensor[];
  /** The key the model's tensors were found under ('' for the top level). */
  readonly root: string;
  /** Top-level entries besides the model's tensors, one line each. */
  readonly other: readonly string[];
  /** Tensors outside the model (optimizer state…), counted. */
  readonly otherTensors: number;
}

export interface Verdict {
  readonly clean: boolean;
  /** "Only tensor data", or "calls N functions that are not tensor rebuilds". */
  readonly text: string;
  readonly findings: readonly Finding[];
}

export function verdictOf(ckpt: Pick<TorchCheckpoint, 'findings'>): Verdict {
  const f = ckpt.findings;
  if (f.length === 0) return { clean: true, text: 'Only tensor data', findings: f };
  const names = new Set(f.map((x) => `${x.module}.${x.name}`));
  const dangerous = f.some((x) => x.severity === 'dangerous');
  const text = `calls ${names.size} function${names.size === 1 ? '' : 's'} that ${names.size === 1 ? 'is' : 'are'} not tensor rebuilds${dangerous ? ', some of which can run code' : ''}`;
  return { clean: false, text, findings: f };
}

export function isContiguous(t: Pick<PyTensor, 'shape' | 'stride'>): boolean {
  let expect = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    if (t.shape[i] === 0) return true;
    if (t.shape[i] !== 1 && t.stride[i] !== expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

function keyText(k: PyValue): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return String(k);
  return `<${k === null ? 'None' : (k as { kind: string }).kind}>`;
}

interface Walk {
  nodes: number;
  readonly seen: Set<object>;
  readonly out: NamedTensor[];
}

function walk(v: PyValue, path: string, depth: number, w: Walk): void {
  if (typeof v !== 'object' || v === null) return;
  if (isKind(v, 'tensor')) {
    w.out.push({ name: path, tensor: v, contiguous: isContiguous(v) });
    return;
  }
  if (depth >= MAX_DEPTH || ++w.nodes > MAX_NODES || w.seen.has(v)) return;
  w.seen.add(v);
  const join = (k: string) => (path === '' ? k : `${path}.${k}`);
  if (isKind(v, 'dict')) for (const [k, x] of v.entries) walk(x, join(keyText(k)), depth + 1, w);
  else if (isKind(v, 'list') || isKind(v, 'tuple')) v.items.forEach((x, i) => walk(x, join(String(i)), depth + 1, w));
  else if (isKind(v, 'call') || isKind(v, 'object')) v.state.forEach((x) => walk(x, path, depth + 1, w));
}

function tensorsUnder(v: PyValue, prefix: string): NamedTensor[] {
  const w: Walk = { nodes: 0, seen: new Set(), out: [] };
  walk(v, prefix, 0, w);
  return w.out;
}

function summary(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (typeof v !== 'object') return String(v);
  switch (v.kind) {
    case 'dict': {
      const n = tensorsUnder(v, '').length;
      return `dict of ${v.entries.length} entr${v.entries.length === 1 ? 'y' : 'ies'}${n ? `, ${n} tensors` : ''}`;
    }
    case 'list':
    case 'tuple': {
      const n = tensorsUnder(v, '').length;
      return `${v.kind} of ${v.items.length}${n ? `, ${n} tensors` : ''}`;
    }
    case 'tensor':
      return `tensor ${v.dtype} [${v.shape.join(', ')}]`;
    case 'call':
      return `an object built by ${isKind(v.callable, 'global') ? `${v.callable.module}.${v.callable.name}` : 'a call'} (not rebuilt)`;
    default:
      return v.kind;
  }
}

/** Finds the model's tensors and names them. */
export function layoutOf(root: PyValue): CheckpointLayout {
  if (isKind(root, 'dict')) {
    for (const key of STATE_KEYS) {
      const entry = root.entries.find(([k]) => k === key);
      if (!entry || !isKind(entry[1], 'dict')) continue;
      const tensors = tensorsUnder(entry[1], '');
      if (tensors.length === 0) continue;
      const other: string[] = [];
      let otherTensors = 0;
      for (const [k, v] of root.entries) {
        if (k === key) continue;
        const kt = keyText(k);
        otherTensors += tensorsUnder(v, '').length;
        other.push(`${kt}: ${/optim/i.test(kt) ? 'optimizer state, ' : ''}${summary(v)}`);
      }
      return { tensors, root: key, other, otherTensors };
    }
  }
  const tensors = tensorsUnder(root, '');
  return { tensors, root: '', other: tensors.length === 0 ? [summary(root)] : [], otherTensors: 0 };
}

/** Largest element offset a view touches, +1: must not exceed the storage's element count. */
export function viewExtent(t: PyTensor): number {
  if (t.shape.some((d) => d === 0)) return t.storageOffset;
  let last = t.storageOffset;
  for (let i = 0; i < t.shape.length; i++) last += (t.shape[i] - 1) * t.stride[i];
  return last + 1;
}

export function elementBytes(t: PyTensor): number {
  return TORCH_DTYPE_BYTES[t.dtype];
}
