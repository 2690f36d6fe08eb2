import type { TensorInfo } from '../format/model';

/**
 * A prefix difference between two checkpoints' names: A's `a` corresponds to B's
 * `b` (e.g. `''` ↔ `'base_model.model.'` for a PEFT-wrapped copy).
 */
export interface PrefixMapping {
  readonly a: string;
  readonly b: string;
}

export interface TensorMatch {
  readonly a: TensorInfo;
  readonly b: TensorInfo;
}

export interface Matching {
  /** The mapping applied (given, or detected when `auto`), or undefined when names matched as they are. */
  readonly mapping?: PrefixMapping & { readonly auto: boolean };
  readonly pairs: TensorMatch[];
  /** Only in B. */
  readonly added: TensorInfo[];
  /** Only in A. */
  readonly removed: TensorInfo[];
}

/**
 * Prefixes a name may carry: every dotted prefix that ends before the first
 * numeric segment (wrappers sit above `layers.N`, never inside it), so each name
 * proposes a handful of candidates rather than one per dot.
 */
function candidatePrefixes(name: string): string[] {
  const out = [''];
  let pos = 0;
  for (;;) {
    const dot = name.indexOf('.', pos);
    if (dot < 0) break;
    const seg = name.slice(pos, dot);
    if (/^\d+$/.test(seg)) break;
    out.push(name.slice(0, dot + 1));
    pos = dot + 1;
  }
  return out;
}

/**
 * The prefix pair under which the most names match, when it matches more than the
 * names as they are. Ties go to the shorter pair (the wrapper alone, not the
 * wrapper plus a common `model.`).
 */
export function detectPrefixMapping(namesA: readonly string[], namesB: readonly string[]): PrefixMapping | undefined {
  const setA = new Set(namesA);
  const exact = namesB.reduce((n, x) => n + (setA.has(x) ? 1 : 0), 0);
  // A mapping pairs each name of B at most once: none can beat every name matching as it is.
  if (exact === namesB.length) return undefined;
  // suffix → prefixes of A under which it appears
  const bySuffix = new Map<string, string[]>();
  for (const n of namesA) {
    for (const p of candidatePrefixes(n)) {
      const s = n.slice(p.length);
      if (!s) continue;
      let list = bySuffix.get(s);
      if (!list) bySuffix.set(s, (list = []));
      list.push(p);
    }
  }
  const counts = new Map<string, number>();
  for (const n of namesB) {
    for (const pb of candidatePrefixes(n)) {
      const list = bySuffix.get(n.slice(pb.length));
      if (!list) continue;
      for (const pa of list) {
        if (pa === pb) continue;
        const key = `${pa}\u0000${pb}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
  }
  let best: PrefixMapping | undefined;
  let bestCount = exact;
  for (const [key, c] of counts) {
    const [a, b] = key.split('\u0000');
    const better = c > bestCount || (c === bestCount && best !== undefined && a.length + b.length < best.a.length + best.b.length);
    if (better) {
      best = { a, b };
      bestCount = c;
    }
  }
  return best;
}

/**
 * Pairs the tensors of A and B by name, under `mapping` when given, else under a
 * detected prefix mapping. A name outside the mapping's prefix is matched as it is
 * (e.g. `lm_head.weight` beside `model.*`).
 */
export function matchTensors(a: readonly TensorInfo[], b: readonly TensorInfo[], mapping?: PrefixMapping): Matching {
  const auto = mapping === undefined;
  const m =
    mapping ??
    detectPrefixMapping(
      a.map((t) => t.name),
      b.map((t) => t.name),
    );
  const canonA = (n: string) => (m && n.startsWith(m.a) ? n.slice(m.a.length) : n);
  const canonB = (n: string) => (m && n.startsWith(m.b) ? n.slice(m.b.length) : n);
  const byB = new Map<string, TensorInfo>();
  for (const t of b) byB.set(canonB(t.name), t);
  const pairs: TensorMatch[] = [];
  const removed: TensorInfo[] = [];
  const used = new Set<TensorInfo>();
  for (const t of a) {
    const other = byB.get(canonA(t.name));
    if (other && !used.has(other)) {
      pairs.push({ a: t, b: other });
      used.add(other);
    } else {
      removed.push(t);
    }
  }
  const added = b.filter((t) => !used.has(t));
  return { mapping: m ? { ...m, auto } : undefined, pairs, added, removed };
}
