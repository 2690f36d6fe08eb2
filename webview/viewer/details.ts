/** The Details tab: a selected module's totals, or a selected tensor's description, statistics and heatmap. */
import { errorInfoOf, type TensorEntry, type TreeNodeData } from '../../src/shared/protocol';
import { clear, formatBytes, formatCount, formatNumber, h } from '../shared/dom';
import { HEATMAP_SIZE, HISTOGRAM_BINS, save, type Viewer } from './state';
import { bitsPerWeight, formatBpw } from './ggufView';
import { renderPartDetails, renderQuantDetails } from './quantized';
import { renderHeatmap, renderStats } from './statsView';
import type { TreeNode } from './tree';
import { table } from './widgets';

export function select(v: Viewer, n: TreeNode): void {
  if (!v.state.summary) return;
  save(v, { selected: n.path });
  v.state.selection?.abort();
  v.state.selection = new AbortController();
  const details = document.getElementById('details')!;
  clear(details);
  v.state.lastStats = undefined;
  if (n.tensor !== undefined) renderTensor(v, details, v.state.tensors[n.tensor]!, v.state.selection.signal, n.tensor);
  else if (!renderPartDetails(v, details, n)) renderModule(v, details, n);
  const tabs = document.getElementById('tabs') as HTMLElement & { selectedIndex: number };
  if (tabs.selectedIndex !== 0) tabs.selectedIndex = 0;
}

export function renderModule(v: Viewer, el: HTMLElement, d: TreeNodeData): void {
  const byDtype = new Map<string, { n: number; params: number; bytes: number }>();
  const walk = (x: TreeNodeData) => {
    if (x.tensor !== undefined) {
      const t = v.state.tensors[x.tensor]!;
      const e = byDtype.get(t.dtype) ?? { n: 0, params: 0, bytes: 0 };
      e.n++;
      e.params += t.numel;
      e.bytes += t.byteLength;
      byDtype.set(t.dtype, e);
    }
    x.children?.forEach(walk);
  };
  walk(d);
  el.append(
    h('h2', { id: 'selected-name' }, d.path || '(model)'),
    h('p', {}, `${d.kind === 'run' ? 'Folded run' : 'Module'}: ${formatCount(d.tensors)} tensors, ${formatCount(d.params)} params, ${formatBytes(d.bytes)}`),
    table('module-dtypes', ['dtype', 'tensors', 'params', 'bytes'], [...byDtype].map(([k, v]) => [k, formatCount(v.n), formatCount(v.params), formatBytes(v.bytes)])),
  );
}

export function renderTensor(v: Viewer, el: HTMLElement, t: TensorEntry, signal: AbortSignal, index = v.state.tensors.indexOf(t)): void {
  const file = v.state.summary!.files[t.file]!;
  const gguf = !!v.state.summary!.gguf;
  // A GGUF's offsets count from its data section (`headerBytes` is where it starts); safetensors' from after the 8-byte length and the header.
  const begin = gguf ? t.byteOffset - file.headerBytes : t.byteOffset - 8 - file.headerBytes;
  el.append(
    h('h2', { id: 'selected-name' }, t.name),
    h(
      'dl',
      { id: 'tensor-info', class: 'info' },
      h('dt', {}, gguf ? 'ggml type' : 'dtype'),
      h('dd', { id: 'info-dtype' }, t.dtype),
      gguf ? h('dt', {}, 'bits per weight') : null,
      gguf ? h('dd', { id: 'info-bpw' }, formatBpw(bitsPerWeight(t))) : null,
      h('dt', {}, 'shape'),
      h('dd', { id: 'info-shape' }, `[${t.shape.join(', ')}]`),
      h('dt', {}, 'elements'),
      h('dd', {}, formatNumber(t.numel)),
      h('dt', {}, 'bytes'),
      h('dd', { id: 'info-range' }, `${formatBytes(t.byteLength)} · ${gguf ? 'data offset' : 'data_offsets'} [${begin}, ${begin + t.byteLength}) · file bytes [${t.byteOffset}, ${t.byteOffset + t.byteLength})`),
      v.state.summary!.files.length > 1 ? h('dt', {}, 'shard') : null,
      v.state.summary!.files.length > 1 ? h('dd', {}, file.path.split(/[\\/]/).pop() ?? file.path) : null,
    ),
  );
  if (!t.decodable) {
    el.append(h('p', { id: 'not-decodable', class: 'notice' }, `Values of dtype ${t.dtype} cannot be decoded here; only the header's description is shown.`));
    return;
  }
  if (t.numel === 0) {
    el.append(h('p', { class: 'notice' }, 'This tensor is empty.'));
    return;
  }
  const statsEl = h('section', { id: 'stats', class: 'stats', 'aria-busy': 'true' }, h('p', { class: 'hint' }, 'Computing statistics…'));
  el.append(statsEl);
  const isMatrix = t.shape.length >= 2;
  const heatEl = isMatrix ? h('section', { id: 'heatmap-section', class: 'heatmap-section' }, h('p', { class: 'hint' }, 'Computing heatmap…')) : null;
  if (heatEl) el.append(heatEl);
  renderQuantDetails(v, el, t, index, signal);
  void v.requester
    .request({ type: 'tensorStats', name: t.name, bins: HISTOGRAM_BINS }, { signal })
    .then((r) => {
      if (signal.aborted) return;
      v.state.lastStats = r;
      renderStats(v, statsEl, t, r);
      // The heatmap is asked for after the stats, so the numbers the user asked for come first.
      if (heatEl) return v.requester.request({ type: 'heatmap', name: t.name, maxSize: HEATMAP_SIZE }, { signal }).then((img) => renderHeatmap(heatEl, img));
    })
    .catch((e) => {
      const info = errorInfoOf(e);
      if (info.code === 'cancelled') return;
      const target = v.state.lastStats ? heatEl! : statsEl;
      clear(target);
      target.removeAttribute('aria-busy');
      target.append(h('p', { class: 'inline-error', role: 'alert' }, `error[${info.code}] ${info.message}`));
    });
}

export function revealTensor(v: Viewer, name: string): void {
  if (!v.state.tree || !v.state.summary) return;
  const idx = v.state.tensors.findIndex((t) => t.name === name);
  if (idx < 0) return;
  v.state.tree.selectTensor(idx);
}
