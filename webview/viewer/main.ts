/**
 * The checkpoint viewer's page. It only displays: every number comes from the
 * host through the protocol in src/shared/protocol.ts (summaries, histogram bins,
 * downsampled heatmap pixels), and no tensor data ever reaches this page.
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import '@vscode-elements/elements/dist/vscode-tabs/index.js';
import '@vscode-elements/elements/dist/vscode-tab-header/index.js';
import '@vscode-elements/elements/dist/vscode-tab-panel/index.js';
import '@vscode-elements/elements/dist/vscode-badge/index.js';
import '@vscode-elements/elements/dist/vscode-progress-bar/index.js';
import '@vscode-elements/elements/dist/vscode-checkbox/index.js';
import './viewer.css';
import {
  Requester,
  RemoteError,
  tensorEntries,
  treeFromTable,
  type AdapterInfo,
  type ErrorInfo,
  type HeatmapReplyMessage,
  type QuantPreviewRow,
  type ScanRow,
  type SummaryReplyMessage,
  type TensorEntry,
  type TensorStatsReplyMessage,
  type ToWebviewMessage,
  type TreeNodeData,
} from '../../src/shared/protocol';
import { loadPlotly } from '../shared/plotly';
import { drawHistogram, type HistogramView } from './histogram';
import { drawQuantChart } from './quantChart';
import { TreeView, type TreeNode } from './tree';
import { h, formatBytes, formatCount, formatNumber, clear } from '../shared/dom';

interface VsCodeApi {
  postMessage(m: unknown): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

/** What survives the panel being hidden (no retainContextWhenHidden): view choices, never numbers. */
interface SavedState {
  filter: string;
  expanded: string[];
  selected?: string;
  scrollTop: number;
  histLogCounts: boolean;
  histMagnitude: boolean;
  tab: number;
}

/** Histogram bins requested from the host: enough to show shape, few enough to send as one small array. */
const HISTOGRAM_BINS = 128;
/** Heatmap side requested; the host caps it at 512 as well. */
const HEATMAP_SIZE = 512;
/** Scan rows shown at once: sorting keeps the interesting ones on top, and 500 rows render in a frame. */
const SCAN_ROWS_SHOWN = 500;

// Marks for the measurements (bench viewer.vscode): when this script started running.
performance.mark('tw:script-start');
const vscode = acquireVsCodeApi();
const requester = new Requester((m) => vscode.postMessage(m));
const saved: SavedState = {
  filter: '',
  expanded: [],
  scrollTop: 0,
  histLogCounts: false,
  histMagnitude: false,
  tab: 0,
  ...((vscode.getState() as Partial<SavedState> | undefined) ?? {}),
};
function save(patch: Partial<SavedState>): void {
  Object.assign(saved, patch);
  vscode.setState(saved);
}

const root = document.getElementById('root')!;
let summary: SummaryReplyMessage | undefined;
/** The summary's tensor columns as objects, rebuilt here rather than structured-cloned. */
let tensors: TensorEntry[] = [];
let tree: TreeView | undefined;
/** Aborts the requests of the current selection when another is made. */
let selection: AbortController | undefined;
let scan: { ctl: AbortController; rows: ScanRow[]; sortKey: ScanSortKey; done: boolean } | undefined;
let lastStats: TensorStatsReplyMessage | undefined;

window.addEventListener('message', (ev: MessageEvent<ToWebviewMessage>) => {
  const m = ev.data;
  if (requester.handle(m)) return;
  if (m.type === 'fileChanged') void reload(m.deleted);
});

// -------------------------------------------------------------------- loading

// Each load (the first, and one per reload) numbers itself: replies to an older one are dropped.
let loadGeneration = 0;

/**
 * Asks for the outline first (small, ready early), paints it, then swaps in the
 * whole summary, keeping what the user opened, filtered or selected meanwhile.
 */
async function load(): Promise<void> {
  const generation = ++loadGeneration;
  root.dataset.state = 'loading';
  let first: SummaryReplyMessage;
  try {
    performance.mark('tw:summary-request');
    first = await requester.request({ type: 'summary', outline: true });
    // Marks for the measurements (bench viewer.vscode, the page tests).
    performance.mark('tw:summary');
    if (generation !== loadGeneration) return;
    tensors = tensorEntries(first.tensors);
    performance.measure('tw:decode-tensors', 'tw:summary');
  } catch (e) {
    if (generation === loadGeneration) showErrorPage(errorInfo(e));
    return;
  }
  summary = first;
  performance.mark('tw:render-start');
  renderViewer(first);
  performance.measure('tw:render', 'tw:render-start');
  // The frame after the one that lays out and paints the tree: when the user sees it.
  requestAnimationFrame(() => requestAnimationFrame(() => performance.mark('tw:tree-painted')));
  // Charts come next: fetch Plotly once the tree is complete, so the first click finds it ready
  // (not sooner: its 4.8 MB would share the way in with the whole summary).
  const preloadCharts = () => requestAnimationFrame(() => void loadPlotly().catch(() => undefined));
  if (!first.outline) {
    preloadCharts();
    return;
  }
  let whole: SummaryReplyMessage;
  try {
    whole = await requester.request({ type: 'summary' });
  } catch (e) {
    if (generation === loadGeneration) showErrorPage(errorInfo(e));
    return;
  }
  if (generation !== loadGeneration) return;
  if (tree) save({ scrollTop: tree.scrollTop, expanded: [...tree.expanded] });
  summary = whole;
  tensors = tensorEntries(whole.tensors);
  renderViewer(whole);
  performance.mark('tw:whole');
  preloadCharts();
}

async function reload(deleted: boolean): Promise<void> {
  requester.cancelAll();
  selection?.abort();
  scan?.ctl.abort();
  scan = undefined;
  quantRunning?.abort();
  lastStats = undefined;
  summary = undefined;
  if (tree) save({ scrollTop: tree.scrollTop, expanded: [...tree.expanded] });
  tree = undefined;
  clear(root);
  root.append(h('p', { class: 'loading' }, deleted ? 'The file was deleted.' : 'The file changed on disk; reading it again…'));
  if (!deleted) await load();
}

function errorInfo(e: unknown): ErrorInfo {
  if (e instanceof RemoteError) return e.info;
  return { code: 'internal', message: e instanceof Error ? e.message : String(e) };
}

function showErrorPage(err: ErrorInfo): void {
  root.dataset.state = 'error';
  clear(root);
  const reopen = h('vscode-button', { id: 'reopen-default' }, 'Reopen with Default Editor');
  reopen.addEventListener('click', () => void requester.request({ type: 'reopenWithDefault' }).catch(() => undefined));
  root.append(
    h(
      'section',
      { id: 'error-page', class: 'error-page', role: 'alert' },
      h('h1', {}, 'This file cannot be opened as a safetensors model'),
      h('p', {}, h('code', { id: 'error-code', class: 'error-code' }, `error[${err.code}]`)),
      h('p', { id: 'error-message', class: 'error-message' }, err.message),
      err.file ? h('p', { class: 'error-where' }, 'File: ', h('code', {}, err.file)) : null,
      err.tensor ? h('p', { class: 'error-where' }, 'Tensor: ', h('code', {}, err.tensor)) : null,
      h('div', { class: 'error-actions' }, reopen),
    ),
  );
}

// ------------------------------------------------------------------ layout

function renderViewer(s: SummaryReplyMessage): void {
  root.dataset.state = 'ready';
  // `outline` while only the outline is shown (tests and measurements wait for `whole`).
  root.dataset.summary = s.outline ? 'outline' : 'whole';
  clear(root);
  const filter = h('vscode-textfield', { id: 'filter', placeholder: 'Filter tensors: text or /regex/', value: saved.filter }) as HTMLElement & { value: string };
  const filterNote = h('div', { id: 'filter-note', class: 'filter-note' });
  const treeHost = h('div', { id: 'tree', class: 'tree', role: 'tree', tabindex: '0', 'aria-label': 'Tensors by module' });
  const left = h(
    'div',
    { id: 'left', class: 'pane left' },
    renderTotals(s),
    h('div', { class: 'filter-row' }, filter),
    filterNote,
    treeHost,
    renderMetadata(s),
  );
  const details = h('div', { id: 'details', class: 'details' }, h('p', { class: 'hint' }, 'Select a tensor or a module.'));
  const scanPanel = h('div', { id: 'scan-panel', class: 'scan-panel' }, h('p', { class: 'hint' }, 'Scan computes statistics for every tensor.'));
  const quantPanel = h('div', { id: 'quant-panel', class: 'quant-panel' }, h('p', { class: 'hint' }, 'The preview estimates size and error of each scheme from at most 1% of each tensor.'));
  const tabs = h(
    'vscode-tabs',
    { id: 'tabs', 'selected-index': String(saved.tab) },
    h('vscode-tab-header', { slot: 'header', id: 'tab-details' }, 'Details'),
    h('vscode-tab-panel', {}, details),
    h('vscode-tab-header', { slot: 'header', id: 'tab-scan' }, 'Scan'),
    h('vscode-tab-panel', {}, scanPanel),
    h('vscode-tab-header', { slot: 'header', id: 'tab-quant' }, 'Quantization'),
    h('vscode-tab-panel', {}, quantPanel),
  );
  tabs.addEventListener('vsc-tabs-select', (e) => save({ tab: (e as CustomEvent<{ selectedIndex: number }>).detail.selectedIndex }));
  const scanButton = h('vscode-button', { id: 'scan-model' }, 'Scan model');
  scanButton.addEventListener('click', () => startScan());
  const quantButton = h('vscode-button', { id: 'quant-preview', secondary: '' }, 'Quantization preview');
  quantButton.addEventListener('click', () => startQuantPreview());
  const textButton = h('vscode-button', { id: 'show-text', secondary: '' }, 'Show as Text');
  textButton.addEventListener('click', () => void requester.request({ type: 'showAsText' }).catch(() => undefined));
  const right = h('div', { id: 'right', class: 'pane right' }, h('div', { class: 'toolbar' }, scanButton, quantButton, textButton), tabs);
  root.append(h('div', { class: 'layout' }, left, right));

  performance.mark('tw:tree-start');
  const treeRoot = treeFromTable(s.tree, tensors);
  performance.measure('tw:build-tree', 'tw:tree-start');
  tree = new TreeView(treeHost, treeRoot, {
    describe,
    onSelect: (n) => select(n),
    onToggle: () => save({ expanded: [...(tree?.expanded ?? [])] }),
    onScroll: (top) => save({ scrollTop: top }),
  });
  tree.setExpanded(new Set(saved.expanded));
  const applyFilter = () => {
    const text = filter.value;
    save({ filter: text });
    const r = tree!.setFilter(text);
    filterNote.textContent = r.error ? `Invalid regex: ${r.error}` : text ? `${formatCount(r.matches)} of ${formatCount(tensors.length)} tensors` : '';
    filterNote.classList.toggle('invalid', !!r.error);
  };
  filter.addEventListener('input', applyFilter);
  if (saved.filter) applyFilter();
  tree.scrollTop = saved.scrollTop;
  // Restored or reloaded: select again, which asks the host for fresh numbers (its cache makes that cheap).
  if (saved.selected) tree.selectPath(saved.selected, true);
}

function renderTotals(s: SummaryReplyMessage): HTMLElement {
  const name = s.path.split(/[\\/]/).pop() ?? s.path;
  return h(
    'header',
    { id: 'totals', class: 'totals' },
    h('h1', { title: s.path }, name),
    h(
      'div',
      { class: 'totals-line' },
      h('span', { id: 'total-params' }, `${formatCount(s.totals.params)} params`),
      h('span', {}, `${formatCount(s.totals.tensors)} tensors`),
      h('span', { id: 'total-bytes' }, formatBytes(s.totals.bytes)),
      s.files.length > 1 ? h('span', {}, `${s.files.length} shards`) : null,
    ),
    s.adapter ? adapterLine(s.adapter) : null,
    table(
      'dtype-table',
      ['dtype', 'tensors', 'params', 'bytes'],
      s.totals.byDtype.map((d) => [d.dtype, formatCount(d.tensors), formatCount(d.params), formatBytes(d.bytes)]),
    ),
    table(
      'memory-table',
      ['memory at', ...s.memory.map((m) => m.format)],
      [['', ...s.memory.map((m) => formatBytes(m.bytes))]],
    ),
  );
}

function adapterLine(a: AdapterInfo): HTMLElement {
  const list = (xs: readonly number[]) => xs.map((x) => (Number.isInteger(x) ? String(x) : fmt(x))).join(', ');
  return h(
    'p',
    { id: 'adapter-info', class: 'adapter' },
    h('strong', {}, `LoRA adapter (${a.format})`),
    ` · ${formatNumber(a.modules)} modules · rank ${list(a.ranks)} · alpha ${list(a.alphas)} · scale ${list(a.scales)}${a.useRslora ? ' · rsLoRA' : ''}${a.dora ? ' · DoRA' : ''} · targets ${a.targets.join(', ')}`,
  );
}

function renderMetadata(s: SummaryReplyMessage): HTMLElement {
  return h(
    'details',
    { id: 'metadata', class: 'metadata', open: s.metadata.length > 0 && s.metadata.length <= 8 ? '' : null },
    h('summary', {}, `Metadata (${s.metadata.length})`),
    s.metadata.length ? table('metadata-table', ['key', 'value'], s.metadata.map(([k, v]) => [k, v])) : h('p', { class: 'hint' }, 'No __metadata__.'),
  );
}

/**
 * A plain table: vscode-table lays columns out only with fixed `columns` widths and
 * hides its header at small sizes, which suits neither the short totals tables nor
 * metadata of unknown width. Theme colours come from the same variables.
 */
function table(id: string, head: string[], rows: (string | Node)[][]): HTMLElement {
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { id, class: 'grid' },
      h('thead', {}, h('tr', {}, ...head.map((c) => h('th', {}, c)))),
      h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))),
    ),
  );
}

// ----------------------------------------------------------------- the tree

function describe(d: TreeNodeData): string {
  const t = d.tensor !== undefined ? tensors[d.tensor] : undefined;
  if (t) return `${t.dtype} [${t.shape.join(', ')}]`;
  return `${formatCount(d.params)} · ${d.tensors === 1 ? '1 tensor' : `${formatCount(d.tensors)} tensors`}`;
}

// -------------------------------------------------------------- selection

function select(n: TreeNode): void {
  if (!summary) return;
  save({ selected: n.path });
  selection?.abort();
  selection = new AbortController();
  const details = document.getElementById('details')!;
  clear(details);
  lastStats = undefined;
  if (n.tensor !== undefined) renderTensor(details, tensors[n.tensor]!, selection.signal);
  else renderModule(details, n);
  const tabs = document.getElementById('tabs') as HTMLElement & { selectedIndex: number };
  if (tabs.selectedIndex !== 0) tabs.selectedIndex = 0;
}

function renderModule(el: HTMLElement, d: TreeNodeData): void {
  const byDtype = new Map<string, { n: number; params: number; bytes: number }>();
  const walk = (x: TreeNodeData) => {
    if (x.tensor !== undefined) {
      const t = tensors[x.tensor]!;
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

function renderTensor(el: HTMLElement, t: TensorEntry, signal: AbortSignal): void {
  const file = summary!.files[t.file]!;
  const begin = t.byteOffset - 8 - file.headerBytes;
  el.append(
    h('h2', { id: 'selected-name' }, t.name),
    h(
      'dl',
      { id: 'tensor-info', class: 'info' },
      h('dt', {}, 'dtype'),
      h('dd', { id: 'info-dtype' }, t.dtype),
      h('dt', {}, 'shape'),
      h('dd', { id: 'info-shape' }, `[${t.shape.join(', ')}]`),
      h('dt', {}, 'elements'),
      h('dd', {}, formatNumber(t.numel)),
      h('dt', {}, 'bytes'),
      h('dd', { id: 'info-range' }, `${formatBytes(t.byteLength)} · data_offsets [${begin}, ${begin + t.byteLength}) · file bytes [${t.byteOffset}, ${t.byteOffset + t.byteLength})`),
      summary!.files.length > 1 ? h('dt', {}, 'shard') : null,
      summary!.files.length > 1 ? h('dd', {}, file.path.split(/[\\/]/).pop() ?? file.path) : null,
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
  void requester
    .request({ type: 'tensorStats', name: t.name, bins: HISTOGRAM_BINS }, { signal })
    .then((r) => {
      if (signal.aborted) return;
      lastStats = r;
      renderStats(statsEl, t, r);
      // The heatmap is asked for after the stats, so the numbers the user asked for come first.
      if (heatEl) return requester.request({ type: 'heatmap', name: t.name, maxSize: HEATMAP_SIZE }, { signal }).then((img) => renderHeatmap(heatEl, img));
    })
    .catch((e) => {
      const info = errorInfo(e);
      if (info.code === 'cancelled') return;
      const target = lastStats ? heatEl! : statsEl;
      clear(target);
      target.removeAttribute('aria-busy');
      target.append(h('p', { class: 'inline-error', role: 'alert' }, `error[${info.code}] ${info.message}`));
    });
}

function renderStats(el: HTMLElement, t: TensorEntry, r: TensorStatsReplyMessage): void {
  const s = r.stats;
  clear(el);
  el.removeAttribute('aria-busy');
  const sparsity = s.count ? s.zeros / s.count : 0;
  const cells: [string, string, string][] = [
    ['count', formatNumber(s.count), 'stat-count'],
    ['finite', formatNumber(s.finite), 'stat-finite'],
    ['NaN', formatNumber(s.nan), 'stat-nan'],
    ['+Inf', formatNumber(s.posInf), 'stat-posinf'],
    ['−Inf', formatNumber(s.negInf), 'stat-neginf'],
    ['zeros', formatNumber(s.zeros), 'stat-zeros'],
    ['sparsity', `${(sparsity * 100).toFixed(2)}%`, 'stat-sparsity'],
    ['near zero', formatNumber(s.nearZero), 'stat-nearzero'],
    ['min', fmt(s.min), 'stat-min'],
    ['max', fmt(s.max), 'stat-max'],
    ['abs max', fmt(s.absMax), 'stat-absmax'],
    ['mean', fmt(s.mean), 'stat-mean'],
    ['std', fmt(s.std), 'stat-std'],
    ['outliers', formatNumber(s.outliers), 'stat-outliers'],
  ];
  const grid = h('dl', { class: 'stat-grid' }, ...cells.map(([k, v, id]) => h('div', { class: 'stat' }, h('dt', {}, k), h('dd', { id }, v))));
  const badges = h('div', { class: 'badges' }, ...healthBadges(s.nan + s.posInf + s.negInf, s.zeros === s.count, s.absMax, t.dtype).map(badge));

  const logCounts = h('vscode-checkbox', { id: 'hist-log-counts', label: 'Log counts', checked: saved.histLogCounts ? '' : null }) as HTMLElement & { checked: boolean };
  const magnitude = h('vscode-checkbox', { id: 'hist-magnitude', label: 'log₁₀|x| histogram', checked: saved.histMagnitude ? '' : null }) as HTMLElement & { checked: boolean };
  const plot = h('div', { id: 'histogram', class: 'histogram', role: 'img' });
  const view = (): HistogramView => ({ logCounts: saved.histLogCounts, magnitude: saved.histMagnitude });
  const redraw = () => drawHistogram(plot, s, view());
  logCounts.addEventListener('change', () => {
    save({ histLogCounts: logCounts.checked });
    redraw();
  });
  magnitude.addEventListener('change', () => {
    save({ histMagnitude: magnitude.checked });
    redraw();
  });

  const cols = t.shape.length >= 2 ? t.shape[t.shape.length - 1]! : 0;
  const topRows = s.topK.map((k, i) => {
    const where = cols ? `(${Math.floor(k.index / cols)}, ${k.index % cols})` : `${k.index}`;
    return [String(i + 1), formatNumber(k.index), where, fmt(k.value)];
  });
  el.append(
    badges,
    grid,
    h('p', { class: 'hint' }, `${r.backend}, ${(r.seconds * 1000).toFixed(0)} ms`),
    h('div', { class: 'hist-controls' }, logCounts, magnitude),
    plot,
    h('h3', {}, 'Top |x|'),
    table('topk-table', ['#', 'index', cols ? '(row, col)' : 'position', 'value'], topRows),
  );
  redraw();
}

function renderHeatmap(el: HTMLElement, img: HeatmapReplyMessage): void {
  clear(el);
  const canvas = h('canvas', { id: 'heatmap', class: 'heatmap', width: String(img.width), height: String(img.height) }) as HTMLCanvasElement;
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const data = ctx.createImageData(img.width, img.height);
    const lut = colorLut();
    for (let i = 0; i < img.pixels.length; i++) {
      const o = i * 4;
      if (img.nonFinite[i]) {
        data.data[o] = 255;
        data.data[o + 1] = 0;
        data.data[o + 2] = 255;
      } else {
        const p = img.pixels[i]! * 3;
        data.data[o] = lut[p]!;
        data.data[o + 1] = lut[p + 1]!;
        data.data[o + 2] = lut[p + 2]!;
      }
      data.data[o + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
  }
  el.append(
    h('h3', {}, 'Heatmap of |x|'),
    canvas,
    h('p', { class: 'hint', id: 'heatmap-caption' }, `${img.width}×${img.height} cells over ${formatNumber(img.rows)}×${formatNumber(img.cols)}; each cell is the max |x| of its block; brightest = ${fmt(img.scale)}; magenta = NaN/Inf.`),
  );
}

/** A perceptually ordered dark-to-bright map (viridis-like, 5 stops), 256 entries × RGB. */
function colorLut(): Uint8Array {
  const stops = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
  ];
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const a = Math.min(Math.floor(x), stops.length - 2);
    const f = x - a;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(stops[a]![c]! * (1 - f) + stops[a + 1]![c]! * f);
  }
  return lut;
}

// ------------------------------------------------------------------- scan

type ScanSortKey = 'std' | 'absMax' | 'sparsity' | 'outliers' | 'nonFinite';

function startScan(): void {
  if (!summary) return;
  const tabs = document.getElementById('tabs') as HTMLElement & { selectedIndex: number };
  tabs.selectedIndex = 1;
  save({ tab: 1 });
  if (scan && !scan.done) return;
  const ctl = new AbortController();
  scan = { ctl, rows: [], sortKey: scan?.sortKey ?? 'absMax', done: false };
  const current = scan;
  const panel = document.getElementById('scan-panel')!;
  clear(panel);
  const bar = h('vscode-progress-bar', { id: 'scan-progress', max: '1', value: '0', 'aria-label': 'Scan progress' }) as HTMLElement & { value: number; max: number };
  const label = h('span', { id: 'scan-status', class: 'hint' }, 'Starting…');
  const cancel = h('vscode-button', { id: 'scan-cancel', secondary: '' }, 'Cancel');
  cancel.addEventListener('click', () => ctl.abort());
  const body = h('div', { id: 'scan-table-host' });
  panel.append(h('div', { class: 'scan-progress' }, bar, label, cancel), body);
  let pendingRender = false;
  const scheduleRender = () => {
    if (pendingRender) return;
    pendingRender = true;
    requestAnimationFrame(() => {
      pendingRender = false;
      renderScanTable(body, current);
    });
  };
  void requester
    .request(
      { type: 'scan', bins: HISTOGRAM_BINS },
      {
        signal: ctl.signal,
        onEvent: (e) => {
          if (e.type === 'progress') {
            bar.max = e.total || 1;
            bar.value = e.done;
            label.textContent = `${formatBytes(e.done)} of ${formatBytes(e.total)}${e.message ? ` · ${e.message}` : ''}`;
          } else {
            current.rows.push(...e.rows);
            scheduleRender();
          }
        },
      },
    )
    .then((r) => {
      current.done = true;
      bar.value = bar.max;
      label.textContent = `Scanned ${formatCount(r.tensors)} tensors in ${r.seconds.toFixed(1)} s (${r.backend}).`;
      cancel.remove();
      renderScanTable(body, current);
    })
    .catch((e) => {
      current.done = true;
      cancel.remove();
      const info = errorInfo(e);
      label.textContent = info.code === 'cancelled' ? `Cancelled after ${formatCount(current.rows.length)} tensors.` : `error[${info.code}] ${info.message}`;
      label.classList.toggle('inline-error', info.code !== 'cancelled');
      renderScanTable(body, current);
    });
}

function sortValue(r: ScanRow, k: ScanSortKey): number {
  if (r.error) return -Infinity;
  const v = r[k];
  return Number.isNaN(v) ? Infinity : v;
}

function renderScanTable(host: HTMLElement, s: NonNullable<typeof scan>): void {
  clear(host);
  const rows = [...s.rows].sort((a, b) => sortValue(b, s.sortKey) - sortValue(a, s.sortKey)).slice(0, SCAN_ROWS_SHOWN);
  const keys: [ScanSortKey, string][] = [
    ['std', 'std'],
    ['absMax', 'abs max'],
    ['sparsity', 'sparsity'],
    ['outliers', 'outliers'],
    ['nonFinite', 'NaN/Inf'],
  ];
  const head = h(
    'tr',
    {},
    h('th', {}, 'tensor'),
    h('th', {}, 'dtype'),
    ...keys.map(([k, title]) => {
      const b = h('button', { class: `sort${k === s.sortKey ? ' active' : ''}`, 'data-sort': k, 'aria-sort': k === s.sortKey ? 'descending' : 'none' }, title + (k === s.sortKey ? ' ▾' : ''));
      b.addEventListener('click', () => {
        s.sortKey = k;
        renderScanTable(host, s);
      });
      return h('th', {}, b);
    }),
    h('th', {}, 'health'),
  );
  const body = rows.map((r) => {
    const link = h('a', { href: '#', class: 'tensor-link', 'data-tensor': r.name }, r.name);
    link.addEventListener('click', (e) => {
      e.preventDefault();
      revealTensor(r.name);
    });
    if (r.error) return h('tr', { class: 'scan-row error' }, h('td', {}, link), h('td', {}, r.dtype), h('td', { colspan: '6', class: 'inline-error' }, `error[${r.error.code}] ${r.error.message}`));
    return h(
      'tr',
      { class: 'scan-row' },
      h('td', {}, link),
      h('td', {}, r.dtype),
      h('td', { class: 'num' }, fmt(r.std)),
      h('td', { class: 'num' }, fmt(r.absMax)),
      h('td', { class: 'num' }, `${(r.sparsity * 100).toFixed(1)}%`),
      h('td', { class: 'num' }, formatNumber(r.outliers)),
      h('td', { class: 'num' }, formatNumber(r.nonFinite)),
      h('td', {}, ...r.badges.map(badge)),
    );
  });
  host.append(
    h('p', { class: 'hint' }, s.rows.length > SCAN_ROWS_SHOWN ? `Showing the top ${SCAN_ROWS_SHOWN} of ${formatCount(s.rows.length)} by ${s.sortKey}.` : `${formatCount(s.rows.length)} tensors.`),
    h('div', { class: 'table-scroll' }, h('table', { id: 'scan-table', class: 'scan-table' }, h('thead', {}, head), h('tbody', {}, ...body))),
  );
}

// -------------------------------------------------------- quantization preview

let quantRunning: AbortController | undefined;
// The last preview's rows, to redraw the chart in the new theme's colours.
let lastQuant: readonly QuantPreviewRow[] | undefined;

function startQuantPreview(): void {
  const tabs = document.getElementById('tabs') as HTMLElement & { selectedIndex: number };
  tabs.selectedIndex = 2;
  save({ tab: 2 });
  if (quantRunning) return;
  const panel = document.getElementById('quant-panel')!;
  clear(panel);
  const ctl = (quantRunning = new AbortController());
  const status = h('span', { id: 'quant-status', class: 'hint' }, 'Sampling…');
  const cancel = h('vscode-button', { id: 'quant-cancel', secondary: '' }, 'Cancel');
  cancel.addEventListener('click', () => ctl.abort());
  panel.append(h('div', { class: 'scan-progress' }, h('vscode-progress-bar', { indeterminate: '' }), status, cancel));
  void requester
    .request({ type: 'quantPreview' }, { signal: ctl.signal })
    .then((r) => {
      clear(panel);
      panel.append(
        h('p', { id: 'quant-status', class: 'hint' }, `Now ${formatBytes(r.bytesBefore)} for ${formatCount(r.params)} params; errors estimated from at most ${(r.sampleFraction * 100).toFixed(1)}% of each tensor in ${r.seconds.toFixed(1)} s.`),
        table(
          'quant-table',
          ['scheme', 'size', 'bits/weight', 'RMSE', 'SNR dB', 'cosine', 'quantized', 'kept'],
          r.rows.map((q) => [
            h('span', { title: q.description }, q.scheme),
            formatBytes(q.bytesAfter),
            q.bitsPerWeight.toFixed(2),
            q.rmse === undefined ? '—' : fmt(q.rmse),
            q.snrDb === undefined ? '—' : q.snrDb.toFixed(1),
            q.cosine === undefined ? '—' : q.cosine.toFixed(6),
            formatNumber(q.quantizedTensors),
            formatNumber(q.keptTensors),
          ]),
        ),
      );
      const chart = h('div', { id: 'quant-chart', class: 'quant-chart', role: 'img', 'aria-label': 'Estimated SNR against bits per weight, one point per scheme' });
      panel.append(chart);
      drawQuantChart(chart, r.rows);
      lastQuant = r.rows;
    })
    .catch((e) => {
      const info = errorInfo(e);
      status.textContent = info.code === 'cancelled' ? 'Cancelled.' : `error[${info.code}] ${info.message}`;
      status.classList.toggle('inline-error', info.code !== 'cancelled');
      cancel.remove();
    })
    .finally(() => {
      if (quantRunning === ctl) quantRunning = undefined;
    });
}

function revealTensor(name: string): void {
  if (!tree || !summary) return;
  const idx = tensors.findIndex((t) => t.name === name);
  if (idx < 0) return;
  tree.selectTensor(idx);
}

// ---------------------------------------------------------------- helpers

function healthBadges(nonFinite: number, allZero: boolean, absMax: number, dtype: string): string[] {
  const b: string[] = [];
  if (nonFinite > 0) b.push('non-finite');
  if (allZero) b.push('all-zero');
  // F16's largest finite value is 65504: anything bigger would overflow if cast to F16.
  if (dtype !== 'F16' && absMax > 65504) b.push('f16-overflow');
  return b;
}

function badge(kind: string): HTMLElement {
  const text = kind === 'non-finite' ? 'NaN/Inf' : kind === 'all-zero' ? 'all zero' : kind === 'f16-overflow' ? 'F16 overflow' : kind;
  return h('vscode-badge', { class: `health ${kind}`, 'data-badge': kind, title: kind }, text);
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(4) : v.toPrecision(6);
}

// Re-render the plot when the theme changes, so its colours follow the body class.
new MutationObserver(() => {
  const plot = document.getElementById('histogram');
  if (plot && lastStats) drawHistogram(plot, lastStats.stats, { logCounts: saved.histLogCounts, magnitude: saved.histMagnitude });
  const chart = document.getElementById('quant-chart');
  if (chart && lastQuant) drawQuantChart(chart, lastQuant);
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

vscode.postMessage({ type: 'ready' });
void load();
