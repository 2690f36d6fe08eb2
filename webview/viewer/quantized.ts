/**
 * Quantized tensors on the page: each one's scheme, bits per weight and group size in the tree
 * and the details, its parts folded under it, the header's scheme line and ignore list, and
 * (scalesView.ts) the statistics of its scales. Everything comes from the summary's columns.
 */
import { quantEntries, type QuantEntry, type QuantHeader, type QuantPart, type SummaryReplyMessage, type TensorEntry, type TreeNodeData } from '../../src/shared/protocol';
import { formatBytes, formatCount, h } from '../shared/dom';
import { renderScales } from './scalesView';
import type { Viewer } from './state';
import { table } from './widgets';

/** The ignore list shows this many entries; the rest are counted (a config can name every layer). */
const IGNORE_SHOWN = 50;

const entriesBySummary = new WeakMap<SummaryReplyMessage, Map<number, QuantEntry>>();
/** A part row of the tree: the tensor it belongs to and the part. */
const partOf = new WeakMap<TreeNodeData, { readonly entry: QuantEntry; readonly part: QuantPart }>();

/** The quantized entries of the summary shown, by tensor index (unpacked once per summary). */
export function quantOf(v: Viewer): Map<number, QuantEntry> {
  const s = v.state.summary;
  if (!s) return new Map();
  let m = entriesBySummary.get(s);
  if (!m) {
    m = new Map(s.quantized ? quantEntries(s.quantized).map((e) => [e.tensor, e]) : []);
    entriesBySummary.set(s, m);
  }
  return m;
}

/** Folds each scheme tensor's parts under its row: the tree opens a tensor on them like a module. */
export function attachParts(v: Viewer, root: TreeNodeData): void {
  const q = quantOf(v);
  if (q.size === 0) return;
  type Mutable = { children?: TreeNodeData[] };
  const walk = (n: TreeNodeData) => {
    const e = n.tensor !== undefined ? q.get(n.tensor) : undefined;
    if (e && e.parts.length > 1) {
      (n as Mutable).children = e.parts.map((part) => {
        const child: TreeNodeData = { label: part.role, path: `${n.path}#${part.role}`, kind: 'part', tensors: 0, params: 0, bytes: part.byteLength };
        partOf.set(child, { entry: e, part });
        return child;
      });
      return;
    }
    n.children?.forEach(walk);
  };
  walk(root);
}

const bpw = (e: QuantEntry) => `${e.bitsPerWeight.toFixed(e.bitsPerWeight >= 10 ? 1 : 2)} bpw`;

/** The tree row's right-hand text for a quantized tensor or a part; undefined for anything else. */
export function describeQuant(v: Viewer, d: TreeNodeData): string | undefined {
  const p = partOf.get(d);
  if (p) return formatBytes(p.part.byteLength);
  const e = d.tensor !== undefined ? quantOf(v).get(d.tensor) : undefined;
  if (!e) return undefined;
  const t = v.state.tensors[d.tensor!]!;
  return `${e.scheme} · ${bpw(e)} · ${e.group} [${t.shape.join(', ')}]`;
}

/** The scheme's rows in the tensor's description, its parts, and the scale statistics below. */
export function renderQuantDetails(v: Viewer, el: HTMLElement, t: TensorEntry, index: number, signal: AbortSignal): void {
  const e = quantOf(v).get(index);
  if (!e) return;
  const info = el.querySelector('#tensor-info');
  // A GGUF's details already state its ggml type and bits per weight; a scheme's add both here.
  const stated = info?.querySelector('#info-bpw');
  info?.append(
    ...(stated
      ? []
      : [h('dt', {}, 'scheme'), h('dd', { id: 'info-scheme' }, e.scheme), h('dt', {}, 'bits/weight'), h('dd', { id: 'info-bpw' }, `${e.bitsPerWeight.toFixed(3)} (scales included)`)]),
    h('dt', {}, 'group'),
    h('dd', { id: 'info-group' }, e.group),
  );
  if (e.parts.length > 1) {
    const files = v.state.summary!.files;
    el.append(
      h('h3', {}, 'Parts'),
      table(
        'parts-table',
        ['part', 'bytes', 'file bytes', ...(files.length > 1 ? ['shard'] : [])],
        e.parts.map((p) => [p.role, formatBytes(p.byteLength), `[${p.byteOffset}, ${p.byteOffset + p.byteLength})`, ...(files.length > 1 ? [baseName(files[p.file]!.path)] : [])]),
      ),
    );
  }
  if (t.numel > 0) renderScales(v, el, t, signal);
}

function baseName(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

/** A part row selected: what it is and where its bytes are. */
export function renderPartDetails(v: Viewer, el: HTMLElement, d: TreeNodeData): boolean {
  const p = partOf.get(d);
  if (!p) return false;
  const t = v.state.tensors[p.entry.tensor]!;
  const file = v.state.summary!.files[p.part.file]!;
  el.append(
    h('h2', { id: 'selected-name' }, `${t.name} · ${p.part.role}`),
    h(
      'dl',
      { id: 'part-info', class: 'info' },
      h('dt', {}, 'part of'),
      h('dd', {}, `${t.name} (${p.entry.scheme}, ${bpw(p.entry)}, ${p.entry.group})`),
      h('dt', {}, 'role'),
      h('dd', { id: 'part-role' }, p.part.role),
      h('dt', {}, 'bytes'),
      h('dd', { id: 'part-range' }, `${formatBytes(p.part.byteLength)} · file bytes [${p.part.byteOffset}, ${p.part.byteOffset + p.part.byteLength})`),
      h('dt', {}, 'file'),
      h('dd', {}, baseName(file.path)),
    ),
    h('p', { class: 'hint' }, 'Select the tensor for the statistics of its dequantized values and of its scales.'),
  );
  return true;
}

/** The header's lines for a quantized-safetensors model. */
export function quantHeaderView(q: QuantHeader): HTMLElement {
  const declared = [q.method && `quant_method ${q.method}`, q.format, q.bits !== undefined && `${q.bits} bits`, q.group && `group ${q.group}`].filter(Boolean).join(' · ');
  const schemes = q.schemes.map((s) => `${s.scheme} ×${formatCount(s.tensors)}`).join(', ');
  const shown = q.ignore.slice(0, IGNORE_SHOWN);
  return h(
    'div',
    { id: 'quant-header', class: 'quant-header' },
    h('p', { id: 'quant-schemes' }, h('strong', {}, 'Quantized: '), schemes || 'no quantized weight recognised', declared ? ` · config.json: ${declared}` : ''),
    q.ignore.length
      ? h(
          'details',
          { id: 'quant-ignore', class: 'quant-ignore' },
          h('summary', {}, `Left unquantized (${q.ignoreKey}): ${formatCount(q.ignore.length)} module${q.ignore.length === 1 ? '' : 's'}`),
          h('ul', {}, ...shown.map((m) => h('li', {}, m)), q.ignore.length > shown.length ? h('li', {}, `… ${q.ignore.length - shown.length} more`) : null),
        )
      : null,
    q.disagreements.length
      ? h(
          'div',
          { id: 'quant-disagree', class: 'quant-disagree', role: 'status' },
          h('strong', {}, 'config.json and the tensors disagree; the tensors are shown as stored:'),
          h('ul', {}, ...q.disagreements.map((x) => h('li', {}, x))),
        )
      : null,
  );
}
