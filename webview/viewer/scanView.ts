/** The Scan tab: statistics of every tensor, streamed in with progress, sortable, each row a link into the tree. */
import { errorInfoOf, type ScanRow } from '../../src/shared/protocol';
import { clear, formatBytes, formatCount, formatNumber, h } from '../shared/dom';
import { revealTensor } from './details';
import { HISTOGRAM_BINS, SCAN_ROWS_SHOWN, save, type ScanSortKey, type ScanState, type Viewer } from './state';
import { badge, fmt } from './widgets';

export function startScan(v: Viewer): void {
  if (!v.state.summary) return;
  const tabs = document.getElementById('tabs') as HTMLElement & { selectedIndex: number };
  tabs.selectedIndex = 1;
  save(v, { tab: 1 });
  if (v.state.scan && !v.state.scan.done) return;
  const ctl = new AbortController();
  v.state.scan = { ctl, rows: [], sortKey: v.state.scan?.sortKey ?? 'absMax', done: false };
  const current = v.state.scan;
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
      renderScanTable(v, body, current);
    });
  };
  void v.requester
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
      renderScanTable(v, body, current);
    })
    .catch((e) => {
      current.done = true;
      cancel.remove();
      const info = errorInfoOf(e);
      label.textContent = info.code === 'cancelled' ? `Cancelled after ${formatCount(current.rows.length)} tensors.` : `error[${info.code}] ${info.message}`;
      label.classList.toggle('inline-error', info.code !== 'cancelled');
      renderScanTable(v, body, current);
    });
}

export function sortValue(r: ScanRow, k: ScanSortKey): number {
  if (r.error) return -Infinity;
  const v = r[k];
  return Number.isNaN(v) ? Infinity : v;
}

export function renderScanTable(v: Viewer, host: HTMLElement, s: ScanState): void {
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
        renderScanTable(v, host, s);
      });
      return h('th', {}, b);
    }),
    h('th', {}, 'health'),
  );
  const body = rows.map((r) => {
    const link = h('a', { href: '#', class: 'tensor-link', 'data-tensor': r.name }, r.name);
    link.addEventListener('click', (e) => {
      e.preventDefault();
      revealTensor(v, r.name);
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
