/**
 * The viewer's summary of a model: tensors as columns, totals by dtype, the
 * memory table and the folded module tree as columns. Built from the header only.
 */
import { typeNameOf, type Model, type TensorInfo } from '../../format/model';
import { estimateMemory } from '../memory';
import { buildModuleTree, type ModuleNode } from '../moduleTree';
import { TreeTableBuilder, tensorTable, type TreeTable } from '../../shared/columns';
import { ggufOf } from '../../format/gguf/ggufModel';
import { ggufSummary } from './ggufView';
import { quantizedSummary } from './quantizedSummary';
import type { DTypeTotal, ModelSummary } from './types';

/** C64 decodes to (real, imaginary) pairs: there is no single value to histogram or draw. */
export function isViewable(dtype: string): boolean {
  return dtype !== 'C64';
}


/**
 * Converts the folded module tree to the protocol's tree table. A fold (`{0..31}`)
 * becomes a `run` node whose children are its real members (`0` … `31`), each
 * with its real tensors: a fold's structure is that of every member, and a
 * tensor's name is its module path plus its own name, so each member's tensors
 * are found by rebuilding paths from the member's real prefix.
 */
export function treeTableOf(root: ModuleNode, indexOf: (fullName: string) => number | undefined, outline = false): TreeTable {
  const b = new TreeTableBuilder();
  const join = (a: string, c: string) => (a ? `${a}.${c}` : c);

  /** Emits `m`, seen at the real path `path` (for a fold's member: that member's path). */
  const module = (m: ModuleNode, parent: number, path: string, totals: { tensorCount: number; params: number; bytes: number }): void => {
    const me = b.add(parent, 'module', path, '', -1, totals.tensorCount, totals.params, totals.bytes);
    for (const c of m.children) {
      if (c.fold) run(c, me, path, `${c.name} ×${c.fold.count}`);
      else if (c.children.length === 1 && c.tensors.length === 0 && c.children[0]!.fold) {
        // A module whose only content is one fold shows as that run: `layers ×32`.
        const f = c.children[0]!;
        run(f, me, join(path, c.name), `${c.name} ×${f.fold!.count}`);
      } else module(c, me, join(path, c.name), c);
    }
    for (const t of m.tensors) {
      // Outside a fold (and in a fold's first member) the tree's own full name is this tensor's: no new string to hash.
      const full = t.fullName.length === path.length + t.name.length + (path ? 1 : 0) && t.fullName.startsWith(path) ? t.fullName : join(path, t.name);
      const index = indexOf(full);
      if (index !== undefined) b.add(me, 'tensor', full, '', index, 1, t.params, t.bytes);
    }
  };

  /** A fold under the real module path `parentPath`: one child per member, at the member's real path. */
  const run = (f: ModuleNode, parentIndex: number, parentPath: string, label: string): void => {
    const fold = f.fold!;
    const me = b.add(parentIndex, 'run', join(parentPath, f.name), label, -1, f.tensorCount, f.params, f.bytes);
    for (const member of fold.members) {
      const path = join(parentPath, member.slice(member.lastIndexOf('.') + 1));
      // An outline stops at the members: a folded run opens on its members, each still closed.
      if (outline) b.add(me, 'module', path, '', -1, fold.each.tensorCount, fold.each.params, fold.each.bytes);
      else module(f, me, path, fold.each);
    }
  };

  module(root, -1, '', root);
  return b.build();
}

function totalsOf(model: Model): Pick<ModelSummary, 'totals' | 'memory'> {
  const byDtype = new Map<string, { tensors: number; params: number; bytes: number }>();
  let params = 0;
  let bytes = 0;
  for (const t of model.tensors) {
    const type = typeNameOf(t);
    const d = byDtype.get(type) ?? { tensors: 0, params: 0, bytes: 0 };
    d.tensors++;
    d.params += t.numel;
    d.bytes += t.byteLength;
    byDtype.set(type, d);
    params += t.numel;
    bytes += t.byteLength;
  }
  const totals: DTypeTotal[] = [...byDtype]
    .map(([dtype, d]) => ({ dtype, ...d }))
    .sort((a, b) => b.bytes - a.bytes || a.dtype.localeCompare(b.dtype));
  return {
    totals: { tensors: model.tensors.length, params, bytes, byDtype: totals },
    memory: estimateMemory(params).map((m) => ({ format: m.format, bytes: m.bytes })),
  };
}

export function moduleTreeOf(model: Model): ModuleNode {
  return buildModuleTree(model.tensors.map((t) => ({ name: t.name, dtype: typeNameOf(t), shape: t.shape, byteLength: t.byteLength })));
}

/** The outline of a model (see SummaryRequestMessage.outline): its tensor table holds the outline's tensors only. */
export function buildOutline(model: Model, tree: ModuleNode = moduleTreeOf(model)): ModelSummary {
  const indexOf = new Map(model.tensors.map((t, i) => [t.name, i]));
  const shown: TensorInfo[] = [];
  const table = treeTableOf(
    tree,
    (name) => {
      const i = indexOf.get(name);
      if (i === undefined) return undefined;
      return shown.push(model.tensors[i]!) - 1;
    },
    true,
  );
  return {
    type: 'summary',
    outline: true,
    path: model.path,
    files: model.files.map((f) => ({ path: f.path, bytes: f.bytes, headerBytes: f.headerBytes })),
    tensors: tensorTable(shown, (t) => isViewable(t.dtype), typeNameOf),
    ...totalsOf(model),
    metadata: Object.entries(model.metadata),
    tree: table,
    ...provenanceOf(model),
    ...quantizedSummary(model, shown),
  };
}

/** The verdict and notes of formats that have them (pickles), a GGUF's own summary; nothing for the others. */
function provenanceOf(model: Model): Pick<ModelSummary, 'safety' | 'notes' | 'gguf'> {
  const g = ggufOf(model);
  return {
    ...(g ? { gguf: ggufSummary(g) } : {}),
    ...(model.safety ? { safety: { clean: model.safety.clean, text: model.safety.text, findings: model.safety.findings } } : {}),
    ...(model.notes?.length ? { notes: model.notes } : {}),
  };
}

export function buildSummary(model: Model, tree: ModuleNode = moduleTreeOf(model)): ModelSummary {
  const indexOf = new Map(model.tensors.map((t, i) => [t.name, i]));
  return {
    type: 'summary',
    path: model.path,
    files: model.files.map((f) => ({ path: f.path, bytes: f.bytes, headerBytes: f.headerBytes })),
    tensors: tensorTable(model.tensors, (t) => isViewable(t.dtype), typeNameOf),
    ...totalsOf(model),
    metadata: Object.entries(model.metadata),
    tree: treeTableOf(tree, (name) => indexOf.get(name)),
    ...provenanceOf(model),
    ...quantizedSummary(model, model.tensors),
  };
}

