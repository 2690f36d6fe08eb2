/**
 * The checkpoint-diff report page. It only displays what the host sends through
 * src/shared/protocol.ts (DiffApi): the report, and Δ histograms on request. A
 * failed request shows its error where its result would have been.
 */
import type * as Plotly from 'plotly.js-dist-min';
import { purge, react } from '../shared/plotly';
import './diff.css';
import { errorInfoOf, fromWire, Requester, type DiffApi, type DiffHistogramReplyMessage, type ToWebviewMessage } from '../../src/shared/protocol';
import type { DiffReport as DiffReportData, TensorDiff as DiffTensorData } from '../../src/pipelines/diff';

interface VsCodeApi {
  postMessage(m: unknown): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

type SortKey = 'name' | 'relL2' | 'cosine' | 'maxAbsDiff' | 'meanAbsDiff' | 'changedFraction' | 'rank1';

/** View choices that survive the panel being hidden; numbers always come back from the host. */
interface SavedState {
  filter: string;
  changedOnly: boolean;
  sort?: { key: SortKey; dir: 1 | -1 };
  selected?: string;
}

/** Δ histogram bins: enough for the shape of a fine-tune's update, one small array to send. */
const HISTOGRAM_BINS = 64;
/** Rows rendered at once: the changed tensors sort to the top, and this many render in a frame. */
const MAX_ROWS = 2000;

const vscode = acquireVsCodeApi();
const requester = new Requester<DiffApi>((m) => vscode.postMessage(m));
const state: SavedState = { filter: '', changedOnly: true, ...((vscode.getState() as Partial<SavedState> | undefined) ?? {}) };
let report: DiffReportData | undefined;
let rankPending = false;
/** Aborts the Δ histogram of the previous selection when another tensor is selected. */
let histogramRequest: AbortController | undefined;

function save(): void {
  vscode.setState(state);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** Cumulative share of ‖Δ‖²_F captured by the leading singular values: the rank-energy curve. */
function energyCurve(t: DiffTensorData): number[] {
  const total = t.absL2 * t.absL2;
  if (!t.singularValues || total <= 0) return [];
  let s = 0;
  return t.singularValues.map((x) => Math.min(1, (s += x * x) / total));
}

function num(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e4 ? String(+x.toPrecision(3)) : x.toExponential(2);
}

function cos(x: number | null): string {
  if (x === null) return '–';
  return x === 1 ? '1' : x > 0.999 ? x.toFixed(6) : x.toFixed(4);
}

function pct(x: number): string {
  return x === 0 ? '0%' : x < 0.001 ? '<0.1%' : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

function plotLayout(title: string, xTitle: string, yTitle: string, yType: 'linear' | 'log' = 'linear'): Partial<Plotly.Layout> {
  const fg = cssVar('--vscode-foreground', '#333');
  const grid = cssVar('--vscode-editorWidget-border', '#8884');
  return {
    title: { text: title, font: { size: 12, color: fg } },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)',
    font: { color: fg, size: 11 },
    margin: { l: 56, r: 12, t: 32, b: 48 },
    xaxis: { title: { text: xTitle }, gridcolor: grid, automargin: true },
    yaxis: { title: { text: yTitle }, gridcolor: grid, type: yType, automargin: true },
    bargap: 0.05,
  };
}

const PLOT_CONFIG: Partial<Plotly.Config> = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ['select2d', 'lasso2d'] };

/** The default order: changed tensors first, largest relL2 first (a zero base sorts by ‖Δ‖ among them). */
function defaultOrder(x: DiffTensorData, y: DiffTensorData): number {
  if (x.identical !== y.identical) return x.identical ? 1 : -1;
  const rx = x.relL2 ?? Infinity;
  const ry = y.relL2 ?? Infinity;
  return ry - rx || y.absL2 - x.absL2 || x.name.localeCompare(y.name);
}

function sortValue(t: DiffTensorData, key: SortKey): number | string {
  switch (key) {
    case 'name':
      return t.name;
    case 'rank1':
      return t.rankEnergy?.['1'] ?? -1;
    case 'relL2':
      return t.relL2 ?? Infinity;
    case 'cosine':
      return t.cosine ?? -2;
    default:
      return t[key];
  }
}

function visibleTensors(r: DiffReportData): DiffTensorData[] {
  const f = state.filter.trim().toLowerCase();
  const rows = r.tensors.filter((t) => (!state.changedOnly || !t.identical) && (!f || t.name.toLowerCase().includes(f)));
  const s = state.sort;
  if (!s) return rows.sort(defaultOrder);
  return rows.sort((x, y) => {
    const a = sortValue(x, s.key);
    const b = sortValue(y, s.key);
    const c = typeof a === 'string' ? a.localeCompare(b as string) : (a as number) - (b as number);
    return s.dir * c || defaultOrder(x, y);
  });
}

const COLUMNS: { key: SortKey; label: string; title: string }[] = [
  { key: 'name', label: 'tensor', title: 'Name in A' },
  { key: 'relL2', label: 'relL2', title: '‖b − a‖ / ‖a‖' },
  { key: 'cosine', label: 'cosine', title: '⟨a, b⟩ / (‖a‖·‖b‖)' },
  { key: 'maxAbsDiff', label: 'max |Δ|', title: 'Largest |b − a|' },
  { key: 'meanAbsDiff', label: 'mean |Δ|', title: 'Mean |b − a|' },
  { key: 'changedFraction', label: 'changed', title: 'Share of elements whose stored bits differ' },
  { key: 'rank1', label: 'energy r1 / 4 / 16 / 64', title: 'Share of ‖Δ‖² captured by the top 1, 4, 16, 64 singular values' },
];

function renderTable(r: DiffReportData): HTMLElement {
  const head = el('tr');
  for (const c of COLUMNS) {
    const th = el('th', { title: c.title, 'data-key': c.key }, c.label);
    if (state.sort?.key === c.key) th.setAttribute('aria-sort', state.sort.dir === 1 ? 'ascending' : 'descending');
    th.addEventListener('click', () => {
      const dir: 1 | -1 = state.sort?.key === c.key ? (state.sort.dir === 1 ? -1 : 1) : c.key === 'name' ? 1 : -1;
      state.sort = { key: c.key, dir };
      save();
      render();
    });
    head.append(th);
  }
  const body = el('tbody');
  const rows = visibleTensors(r);
  for (const t of rows.slice(0, MAX_ROWS)) {
    const energy = t.rankEnergy ? (['1', '4', '16', '64'] as const).map((k) => pct(t.rankEnergy![k])).join(' / ') : t.identical || t.shape.length !== 2 ? '–' : rankPending ? '…' : '–';
    const tr = el(
      'tr',
      { 'data-name': t.name, ...(t.nameB ? { 'data-name-b': t.nameB } : {}), class: `${t.identical ? 'identical' : 'changed'}${state.selected === t.name ? ' selected' : ''}` },
      // B's own name when the names were mapped (llama.cpp's `blk.0.attn_q.weight` for HF's q_proj): the pairing is what the row compares.
      el('td', { title: `${t.dtype}${t.dtypeB ? ` → ${t.dtypeB}` : ''} [${t.shape.join(', ')}]${t.note ? ` — ${t.note}` : ''}` }, t.name, ...(t.nameB ? [el('span', { class: 'name-b' }, ` → ${t.nameB}`)] : [])),
      el('td', {}, t.relL2 === null ? `‖Δ‖ ${num(t.absL2)}` : num(t.relL2)),
      el('td', {}, cos(t.cosine)),
      el('td', {}, num(t.maxAbsDiff)),
      el('td', {}, num(t.meanAbsDiff)),
      el('td', {}, pct(t.changedFraction)),
      el('td', {}, energy),
    );
    tr.addEventListener('click', () => select(t.name));
    body.append(tr);
  }
  const table = el('table', { id: 'tensors' }, el('thead', {}, head), body);
  const wrap = el('div', {}, table);
  if (rows.length > MAX_ROWS) wrap.append(el('p', { class: 'muted' }, `${rows.length - MAX_ROWS} more rows: narrow the filter.`));
  if (rows.length === 0) wrap.append(el('p', { class: 'muted', id: 'no-rows' }, state.changedOnly && r.summary.different === 0 ? 'Every compared tensor is byte-for-byte identical.' : 'No tensor matches the filter.'));
  return wrap;
}

function drawLayers(target: HTMLElement, r: DiffReportData): void {
  const groups = r.layers.length > 1 ? r.layers : r.modules;
  if (groups.length === 0) {
    target.replaceChildren(el('p', { class: 'empty' }, 'No tensors compared.'));
    return;
  }
  const color = cssVar('--vscode-charts-blue', '#3794ff');
  void react(
    target,
    [{ type: 'bar', x: groups.map((g) => g.group), y: groups.map((g) => g.meanRelL2), marker: { color }, customdata: groups.map((g) => `${g.changedTensors}/${g.tensors} changed`), hovertemplate: '%{x}: %{y:.3g} (%{customdata})<extra></extra>' }],
    plotLayout(r.layers.length > 1 ? 'relL2 per block (element-weighted mean)' : 'relL2 per module kind', '', 'relL2'),
    PLOT_CONFIG,
  ).then((drawn) => drawn && (target.dataset.drawn = String(groups.length)));
}

function drawEnergy(target: HTMLElement, t: DiffTensorData | undefined): void {
  const curve = t ? energyCurve(t) : [];
  if (!t || curve.length === 0) {
    const why = !t ? 'Select a changed 2-D tensor.' : t.identical ? 'Identical: no change to decompose.' : t.shape.length !== 2 ? 'Rank energy applies to 2-D tensors.' : rankPending ? 'Estimating rank energy…' : 'No rank estimate.';
    purge(target);
    target.replaceChildren(el('p', { class: 'empty' }, why));
    delete target.dataset.drawn;
    return;
  }
  target.replaceChildren();
  const color = cssVar('--vscode-charts-orange', '#d18616');
  void react(
    target,
    [{ type: 'scatter', mode: 'lines+markers', x: curve.map((_, i) => i + 1), y: curve, line: { color }, marker: { size: 4 } }],
    { ...plotLayout(`Rank energy: ${t.name}`, 'rank r', 'share of ‖Δ‖² in the top r'), yaxis: { range: [0, 1.02], title: { text: 'share of ‖Δ‖²' } } },
    PLOT_CONFIG,
  ).then((drawn) => drawn && (target.dataset.drawn = String(curve.length)));
}

function drawHistogram(target: HTMLElement, m: DiffHistogramReplyMessage): void {
  target.replaceChildren();
  const n = m.counts.length;
  const w = (m.hi - m.lo) / n;
  const color = cssVar('--vscode-charts-purple', '#b180d7');
  void react(
    target,
    [{ type: 'bar', x: Array.from({ length: n }, (_, i) => m.lo + (i + 0.5) * w), y: Array.from(m.counts), width: w, marker: { color } }],
    plotLayout(`Δ histogram: ${m.name}`, 'b − a (differing elements)', 'count', 'log'),
    PLOT_CONFIG,
  ).then((drawn) => drawn && (target.dataset.drawn = String(n)));
}

function select(name: string): void {
  state.selected = name;
  save();
  document.querySelectorAll('#tensors tr.selected').forEach((r) => r.classList.remove('selected'));
  document.querySelector(`#tensors tr[data-name="${CSS.escape(name)}"]`)?.classList.add('selected');
  const t = report?.tensors.find((x) => x.name === name);
  drawEnergy(document.getElementById('energy')!, t);
  const hist = document.getElementById('histogram')!;
  if (!t || t.identical) {
    purge(hist);
    hist.replaceChildren(el('p', { class: 'empty' }, t ? 'Identical: Δ is zero everywhere.' : 'Select a changed tensor.'));
    delete hist.dataset.drawn;
    return;
  }
  hist.replaceChildren(el('p', { class: 'empty' }, 'Computing the Δ histogram…'));
  delete hist.dataset.drawn;
  histogramRequest?.abort();
  const ctl = (histogramRequest = new AbortController());
  requester.request({ type: 'histogram', name, bins: HISTOGRAM_BINS }, { signal: ctl.signal }).then(
    (m) => drawHistogram(hist, m),
    (e) => {
      const info = errorInfoOf(e);
      if (info.code === 'cancelled') return;
      purge(hist);
      hist.replaceChildren(el('p', { class: 'empty error', role: 'alert' }, `error[${info.code}] ${info.message}`));
    },
  );
}

/** Asks the host to export; a failure shows beside the buttons. */
function exportReport(format: 'markdown' | 'json'): void {
  const status = document.getElementById('export-status')!;
  status.textContent = '';
  requester.request({ type: 'export', format }).catch((e) => {
    const info = errorInfoOf(e);
    if (info.code !== 'cancelled') status.textContent = `error[${info.code}] ${info.message}`;
  });
}

function list(title: string, items: readonly string[]): HTMLElement | string {
  if (items.length === 0) return '';
  const ul = el('ul');
  for (const i of items.slice(0, 500)) ul.append(el('li', {}, i));
  return el('details', { id: title.toLowerCase().replace(/\W+/g, '-') }, el('summary', {}, `${title} (${items.length})`), ul);
}

function render(): void {
  const root = document.getElementById('root')!;
  const r = report;
  if (!r) return;
  const s = r.summary;
  const filter = el('input', { type: 'text', id: 'filter', placeholder: 'Filter by name', value: state.filter });
  filter.addEventListener('input', () => {
    state.filter = filter.value;
    save();
    const table = document.getElementById('table-wrap')!;
    table.replaceChildren(renderTable(r));
  });
  const changedOnly = el('input', { type: 'checkbox', id: 'changed-only' });
  changedOnly.checked = state.changedOnly;
  changedOnly.addEventListener('change', () => {
    state.changedOnly = changedOnly.checked;
    save();
    document.getElementById('table-wrap')!.replaceChildren(renderTable(r));
  });
  const exportMd = el('button', { id: 'export-markdown' }, 'Export Markdown…');
  exportMd.addEventListener('click', () => exportReport('markdown'));
  const exportJson = el('button', { id: 'export-json' }, 'Export JSON…');
  exportJson.addEventListener('click', () => exportReport('json'));
  const shapeChanges = r.changed.map((c) => `${c.name}: ${c.dtypeA} [${c.shapeA.join(', ')}] → ${c.dtypeB} [${c.shapeB.join(', ')}]`);
  root.dataset.state = 'ready';
  root.replaceChildren(
    el(
      'header',
      {},
      el('h1', {}, `${r.a}  →  ${r.b}`),
      el(
        'p',
        { class: 'summary', id: 'summary' },
        `${s.different} of ${s.compared} compared tensors changed (${pct(s.elements > 0 ? s.changedElements / s.elements : 0)} of elements) · ${r.added.length} added · ${r.removed.length} removed · ${r.changed.length} with a new shape or dtype`,
      ),
      el('p', { class: 'muted', id: 'run-info' }, `${r.naming ? `Names matched as ${r.naming} · ` : ''}${r.mapping ? `Names matched with prefix '${r.mapping.a}' ↔ '${r.mapping.b}'${r.mapping.auto ? ' (detected)' : ''} · ` : ''}${(r.bytesRead / 1e9).toFixed(2)} GB read in ${r.seconds.toFixed(2)} s on ${r.backend}${rankPending ? ' · estimating rank energy…' : ''}`),
      el('div', { class: 'toolbar' }, filter, el('label', {}, changedOnly, ' changed only'), exportMd, exportJson, el('span', { id: 'export-status', class: 'error', role: 'status' })),
    ),
    el('div', { class: 'charts' }, el('div', { class: 'chart', id: 'layers' }), el('div', { class: 'chart', id: 'histogram' }), el('div', { class: 'chart', id: 'energy' })),
    el('div', { id: 'table-wrap' }, renderTable(r)),
    list('Added', r.added),
    list('Removed', r.removed),
    list('Shape or dtype changed', shapeChanges),
  );
  drawLayers(document.getElementById('layers')!, r);
  const first = state.selected && r.tensors.some((t) => t.name === state.selected) ? state.selected : visibleTensors(r).find((t) => !t.identical)?.name;
  if (first) select(first);
  else {
    drawEnergy(document.getElementById('energy')!, undefined);
    document.getElementById('histogram')!.replaceChildren(el('p', { class: 'empty' }, 'Select a changed tensor.'));
  }
}

window.addEventListener('message', (ev: MessageEvent<ToWebviewMessage<DiffApi>>) => {
  const m = ev.data;
  if (requester.handle(m)) return;
  if (m.type === 'report') {
    report = fromWire(m.report);
    rankPending = m.rankPending;
    render();
  }
});

vscode.postMessage({ type: 'ready' });
