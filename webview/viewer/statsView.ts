/** A tensor's statistics (grid, badges, histogram, top |x|) and its heatmap, drawn from the host's replies. */
import type { HeatmapReplyMessage, TensorEntry, TensorStatsReplyMessage } from '../../src/shared/protocol';
import { clear, formatNumber, h } from '../shared/dom';
import { drawHistogram, type HistogramView } from './histogram';
import { save, type Viewer } from './state';
import { badge, fmt, healthBadges, table } from './widgets';

export function renderStats(v: Viewer, el: HTMLElement, t: TensorEntry, r: TensorStatsReplyMessage): void {
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

  const logCounts = h('vscode-checkbox', { id: 'hist-log-counts', label: 'Log counts', checked: v.state.saved.histLogCounts ? '' : null }) as HTMLElement & { checked: boolean };
  const magnitude = h('vscode-checkbox', { id: 'hist-magnitude', label: 'log₁₀|x| histogram', checked: v.state.saved.histMagnitude ? '' : null }) as HTMLElement & { checked: boolean };
  const plot = h('div', { id: 'histogram', class: 'histogram', role: 'img' });
  const view = (): HistogramView => ({ logCounts: v.state.saved.histLogCounts, magnitude: v.state.saved.histMagnitude });
  const redraw = () => drawHistogram(plot, s, view());
  logCounts.addEventListener('change', () => {
    save(v, { histLogCounts: logCounts.checked });
    redraw();
  });
  magnitude.addEventListener('change', () => {
    save(v, { histMagnitude: magnitude.checked });
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

export function renderHeatmap(el: HTMLElement, img: HeatmapReplyMessage): void {
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
export function colorLut(): Uint8Array {
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
