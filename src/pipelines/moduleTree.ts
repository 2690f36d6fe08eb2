import { DTYPE_INFO, type DType } from '../format/dtypes';
import { formatBytes, formatCount } from '../core/units';
import { escapeText } from '../format/escape';

/**
 * The module tree of a checkpoint, built from tensor names alone: the dotted
 * prefix of a name is its module path (`model.layers.3.mlp`), the last part is
 * the parameter (`weight`). Used by `inspect`'s text output and by the viewer.
 *
 * Folding: among the children of one module, consecutive numbered children
 * (`layers.0`, `layers.1`, …; MoE `experts.0`, …) whose subtrees have the same
 * structure (same relative tensor names, dtypes and shapes) collapse into one
 * node `{0..31}` ×32. A run breaks at a gap in the numbering or at a child
 * that differs (a wider first layer, a dense layer among MoE layers), so a
 * model with one odd layer shows `{0..14}`, `15`, `{16..31}`. Runs of one are
 * left as they are. Children fold before their parents, so experts fold inside
 * each layer and the layers still fold when every layer has the same experts.
 */

export interface ModuleTensor {
  /** The parameter's own name: `weight`, `bias`. */
  readonly name: string;
  /** The full tensor name (for a folded node: the first member's tensor). */
  readonly fullName: string;
  /** A dtype, or a block type (`Q4_K`). */
  readonly dtype: string;
  /** A quantized weight's scheme (`fp8-block`, `gptq` …), shown instead of its stored dtype. */
  readonly scheme?: string;
  readonly shape: readonly number[];
  readonly params: number;
  readonly bytes: number;
}

export interface ModuleFold {
  readonly count: number;
  readonly first: number;
  readonly last: number;
  /** `{0..31}` */
  readonly label: string;
  /** Full paths of the folded members, in order: `model.layers.0` … */
  readonly members: readonly string[];
  /** Totals of one member. */
  readonly each: { readonly tensorCount: number; readonly params: number; readonly bytes: number };
}

export interface ModuleNode {
  /** Path segment: `mlp`, `3`, or `{0..31}` for a fold. Empty for the root. */
  readonly name: string;
  /** Dotted path from the root: `model.layers.{0..31}.mlp`. Empty for the root. */
  readonly path: string;
  /** Submodules, in header order, numbered ones in numeric order. For a fold: one member's submodules. */
  readonly children: ModuleNode[];
  /** Tensors that sit directly on this module. For a fold: one member's. */
  readonly tensors: ModuleTensor[];
  /** Totals over the whole subtree, all folded members included. */
  readonly tensorCount: number;
  readonly params: number;
  readonly bytes: number;
  readonly fold?: ModuleFold;
}

export interface TreeTensorInput {
  readonly name: string;
  /** A dtype, or a block type (`Q4_K`, which then needs `byteLength`). */
  readonly dtype: string;
  readonly scheme?: string;
  readonly shape: readonly number[];
  readonly byteLength?: number;
}

interface Raw {
  name: string;
  /** Created on first child: most modules (q_proj, norm) are leaves, and 50,000-tensor headers make that matter. */
  children?: Map<string, Raw>;
  tensors: ModuleTensor[];
}

const NUMBER = /^(0|[1-9]\d*)$/;

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function joinPath(a: string, b: string): string {
  return a === '' ? b : `${a}.${b}`;
}

/** Numbered children sorted numerically in the slots numbered children occupy; named ones keep header order. */
function orderedChildren(raw: Raw): Raw[] {
  if (!raw.children) return [];
  const list = [...raw.children.values()];
  const numbered = list.filter((c) => NUMBER.test(c.name)).sort((a, b) => Number(a.name) - Number(b.name));
  let k = 0;
  return list.map((c) => (NUMBER.test(c.name) ? numbered[k++] : c));
}

/**
 * Same structure: the same tensor names, dtypes and shapes at the same relative
 * paths. Compared in place, without building keys: a 50,000-tensor header
 * compares each block once against the first of its run.
 */
function sameStructure(a: Raw, b: Raw): boolean {
  if (a.tensors.length !== b.tensors.length || (a.children?.size ?? 0) !== (b.children?.size ?? 0)) return false;
  for (let i = 0; i < a.tensors.length; i++) {
    const ta = a.tensors[i];
    // Usually in the same order; names are unique within a module, so a lookup settles the rest.
    const tb = b.tensors[i].name === ta.name ? b.tensors[i] : b.tensors.find((x) => x.name === ta.name);
    if (!tb || tb.dtype !== ta.dtype || tb.shape.length !== ta.shape.length) return false;
    for (let d = 0; d < ta.shape.length; d++) if (tb.shape[d] !== ta.shape[d]) return false;
  }
  if (a.children) {
    for (const [k, ca] of a.children) {
      const cb = b.children!.get(k);
      if (!cb || !sameStructure(ca, cb)) return false;
    }
  }
  return true;
}

function finish(raw: Raw, path: string, fold: boolean): ModuleNode {
  const kids = orderedChildren(raw);
  const children: ModuleNode[] = [];
  let i = 0;
  while (i < kids.length) {
    const c = kids[i];
    if (!fold || !NUMBER.test(c.name)) {
      children.push(finish(c, joinPath(path, c.name), fold));
      i++;
      continue;
    }
    // Extend a run of consecutive numbers with the same structure.
    let j = i + 1;
    while (j < kids.length && NUMBER.test(kids[j].name) && Number(kids[j].name) === Number(kids[j - 1].name) + 1 && sameStructure(c, kids[j])) j++;
    if (j - i === 1) {
      children.push(finish(c, joinPath(path, c.name), fold));
      i++;
      continue;
    }
    const first = Number(c.name);
    const last = Number(kids[j - 1].name);
    const label = `{${first}..${last}}`;
    const rep = finish(c, joinPath(path, label), fold);
    const count = j - i;
    children.push({
      name: label,
      path: joinPath(path, label),
      children: rep.children,
      tensors: rep.tensors,
      tensorCount: rep.tensorCount * count,
      params: rep.params * count,
      bytes: rep.bytes * count,
      fold: {
        count,
        first,
        last,
        label,
        members: kids.slice(i, j).map((k) => joinPath(path, k.name)),
        each: { tensorCount: rep.tensorCount, params: rep.params, bytes: rep.bytes },
      },
    });
    i = j;
  }
  let tensorCount = raw.tensors.length;
  let params = 0;
  let bytes = 0;
  for (const t of raw.tensors) {
    params += t.params;
    bytes += t.bytes;
  }
  for (const c of children) {
    tensorCount += c.tensorCount;
    params += c.params;
    bytes += c.bytes;
  }
  return { name: raw.name, path, children, tensors: raw.tensors, tensorCount, params, bytes };
}

/** Builds the (folded, unless `fold: false`) module tree of a list of tensors. */
export function buildModuleTree(tensors: readonly TreeTensorInput[], opts: { fold?: boolean } = {}): ModuleNode {
  const root: Raw = { name: '', tensors: [] };
  // Header order keeps a module's tensors together, so each name mostly repeats the previous
  // one's path: resume from the deepest module the two share instead of walking from the root.
  let prev = '';
  const prevDots: number[] = []; // positions of the dots in `prev`
  const prevNodes: Raw[] = []; // prevNodes[k]: the module ending at prevDots[k]
  for (const t of tensors) {
    const name = t.name;
    let common = 0;
    const lim = Math.min(name.length, prev.length);
    while (common < lim && name.charCodeAt(common) === prev.charCodeAt(common)) common++;
    let k = 0;
    while (k < prevDots.length && prevDots[k] < common) k++;
    prevDots.length = k;
    prevNodes.length = k;
    let node = k > 0 ? prevNodes[k - 1] : root;
    let start = k > 0 ? prevDots[k - 1] + 1 : 0;
    for (let dot = name.indexOf('.', start); dot >= 0; dot = name.indexOf('.', start)) {
      const seg = name.slice(start, dot);
      const kids = (node.children ??= new Map());
      let next = kids.get(seg);
      if (!next) {
        next = { name: seg, tensors: [] };
        kids.set(seg, next);
      }
      node = next;
      start = dot + 1;
      prevDots.push(dot);
      prevNodes.push(node);
    }
    prev = name;
    const params = numelOf(t.shape);
    node.tensors.push({ name: name.slice(start), fullName: name, dtype: t.dtype, ...(t.scheme ? { scheme: t.scheme } : {}), shape: t.shape, params, bytes: t.byteLength ?? (params * (DTYPE_INFO[t.dtype as DType]?.bits ?? 0)) / 8 });
  }
  return finish(root, '', opts.fold ?? true);
}

/** Visits every node, depth first, with its depth (root = 0). */
export function walkModuleTree(root: ModuleNode, visit: (n: ModuleNode, depth: number) => void, depth = 0): void {
  visit(root, depth);
  for (const c of root.children) walkModuleTree(c, visit, depth + 1);
}

export interface RenderOptions {
  /** Stop after this many lines (a tree of unfoldable names can be huge); default 400. */
  readonly maxLines?: number;
}

// Enough for any folded transformer and a screenful of anything else; the JSON output has everything.
const DEFAULT_MAX_LINES = 400;

function tensorLabel(t: ModuleTensor): string {
  return `${t.scheme ?? t.dtype} [${t.shape.join(', ')}]`;
}

/**
 * Renders the tree as indented text:
 *   model.layers.{0..31} ×32   each 9 tensors, 202M params, 386 MiB
 * A module whose only content is one fold is shown on one line with it, and
 * a module holding a single tensor and nothing else is shown as `q_proj.weight`.
 */
export function renderModuleTree(root: ModuleNode, opts: RenderOptions = {}): string {
  const max = opts.maxLines ?? DEFAULT_MAX_LINES;
  const lines: string[] = [];
  let truncated = 0;
  const emit = (prefix: string, label: string, info: string) => {
    if (lines.length >= max) {
      truncated++;
      return;
    }
    // Labels are built from tensor names, which come from the file.
    lines.push(`${prefix}${escapeText(label)}${info ? '  ' + info : ''}`);
  };
  const summary = (n: ModuleNode) => `${n.tensorCount} tensors, ${formatCount(n.params)} params, ${formatBytes(n.bytes)}`;

  const visit = (n: ModuleNode, prefix: string, childPrefix: string, nameSoFar: string) => {
    // Merge a module whose only content is a single fold: `layers` + `{0..31}` → `layers.{0..31} ×32`.
    if (n.tensors.length === 0 && n.children.length === 1 && n.children[0].fold) {
      const f = n.children[0];
      visit(f, prefix, childPrefix, `${nameSoFar}${n.name}.`);
      return;
    }
    // A leaf module with exactly one tensor: `q_proj.weight  BF16 [2048, 2048]`.
    if (n.children.length === 0 && n.tensors.length === 1 && !n.fold) {
      const t = n.tensors[0];
      emit(prefix, `${nameSoFar}${n.name}.${t.name}`, tensorLabel(t));
      return;
    }
    const label = `${nameSoFar}${n.name}${n.fold ? ` ×${n.fold.count}` : ''}`;
    const info = n.fold ? `each ${n.fold.each.tensorCount} tensors, ${formatCount(n.fold.each.params)} params, ${formatBytes(n.fold.each.bytes)}` : summary(n);
    emit(prefix, label, info);
    const items: (() => void)[] = [];
    const total = n.tensors.length + n.children.length;
    let k = 0;
    for (const t of n.tensors) {
      const last = ++k === total;
      items.push(() => emit(childPrefix + (last ? '└─ ' : '├─ '), t.name, tensorLabel(t)));
    }
    for (const c of n.children) {
      const last = ++k === total;
      items.push(() => visit(c, childPrefix + (last ? '└─ ' : '├─ '), childPrefix + (last ? '   ' : '│  '), ''));
    }
    for (const f of items) f();
  };

  if (root.name === '') {
    emit('', '(model)', summary(root));
    const total = root.tensors.length + root.children.length;
    let k = 0;
    for (const t of root.tensors) emit(++k === total ? '└─ ' : '├─ ', t.name, tensorLabel(t));
    for (const c of root.children) {
      const last = ++k === total;
      visit(c, last ? '└─ ' : '├─ ', last ? '   ' : '│  ', '');
    }
  } else visit(root, '', '', '');
  if (truncated > 0) lines.push(`… ${truncated} more lines (use --json for everything)`);
  return lines.join('\n') + '\n';
}
