/** The statistics of a quantized tensor's scales: a grid per series and a small histogram of log₂|scale|. */
import { errorInfoOf, type ScaleStatsReplyMessage, type TensorEntry } from '../../src/shared/protocol';
import type { ScaleSeries } from '../../src/pipelines/scaleStats';
import { clear, formatBytes, formatNumber, h } from '../shared/dom';
import './scales.css';
import type { Viewer } from './state';
import { badge, fmt } from './widgets';

export function renderScales(v: Viewer, el: HTMLElement, t: TensorEntry, signal: AbortSignal): void {
  const section = h('section', { id: 'scales-section', class: 'scales', 'aria-busy': 'true' }, h('h3', {}, 'Scales'), h('p', { class: 'hint' }, 'Reading the scales…'));
  el.append(section);
  void v.requester
    .request({ type: 'scaleStats', name: t.name }, { signal })
    .then((r) => {
      if (!signal.aborted) showScales(section, r);
    })
    .catch((e) => {
      const info = errorInfoOf(e);
      if (info.code === 'cancelled') return;
      clear(section);
      section.removeAttribute('aria-busy');
      section.append(h('h3', {}, 'Scales'), h('p', { class: 'inline-error', role: 'alert' }, `error[${info.code}] ${info.message}`));
    });
}

export function showScales(section: HTMLElement, r: ScaleStatsReplyMessage): void {
  const rep = r.report;
  clear(section);
  section.removeAttribute('aria-busy');
  section.append(h('h3', {}, 'Scales'), ...rep.series.map(seriesView));
  if (rep.globalScale !== undefined) section.append(h('p', { id: 'scales-global' }, `Global scale (as stored): ${fmt(rep.globalScale)}`));
  section.append(h('p', { class: 'hint' }, `${rep.backend}, ${(rep.seconds * 1000).toFixed(0)} ms, ${formatBytes(rep.bytesRead)} read`));
}

function seriesView(s: ScaleSeries, k: number): HTMLElement {
  const cells: [string, string, string][] = [
    ['count', formatNumber(s.count), 'count'],
    ['zero', formatNumber(s.zeros), 'zeros'],
    ['non-finite', formatNumber(s.nonFinite), 'nonfinite'],
    ['min', fmt(s.min), 'min'],
    ['max', fmt(s.max), 'max'],
    ['mean', fmt(s.mean), 'mean'],
  ];
  if (s.kind === 'scale') {
    cells.push(['negative', formatNumber(s.negative), 'negative']);
    cells.push(['|s| range', Number.isFinite(s.absMin) ? `${fmt(s.absMin)} … ${fmt(s.absMax)} (${Math.log2(s.absMax / s.absMin).toFixed(1)} octaves)` : '—', 'range']);
  }
  if (s.saturated) {
    const limits = s.saturated.rule === 'e8m0' ? ['at 2^-127 (code 0)', 'at 2^127 or NaN (254, 255)'] : ['', 'at 448 (E4M3 max)'];
    if (limits[0]) cells.push([`saturated low`, `${formatNumber(s.saturated.low)} ${limits[0]}`, 'sat-low']);
    cells.push([`saturated high`, `${formatNumber(s.saturated.high)} ${limits[1]}`, 'sat-high']);
  }
  const badges: string[] = [];
  if (s.nonFinite > 0) badges.push('non-finite');
  if (s.kind === 'scale' && s.zeros > 0) badges.push('zero-scales');
  if (s.saturated && s.saturated.low + s.saturated.high > 0) badges.push('saturated');
  return h(
    'div',
    { class: 'scale-series', 'data-series': s.name, id: `scale-series-${k}` },
    h('h4', {}, s.name, s.kind === 'zero' ? ' (zero points)' : ''),
    badges.length ? h('div', { class: 'badges' }, ...badges.map(badge)) : null,
    h('dl', { class: 'stat-grid' }, ...cells.map(([name, value, id]) => h('div', { class: 'stat' }, h('dt', {}, name), h('dd', { 'data-stat': id }, value)))),
    histogram(s),
  );
}

/** A bar per bin, heights relative to the fullest; the axis ends name the bins' range. */
function histogram(s: ScaleSeries): HTMLElement | null {
  const { lo, width, counts } = s.histogram;
  if (counts.length === 0) return null;
  let top = 0;
  for (const c of counts) top = Math.max(top, c);
  const label = (i: number) => (s.kind === 'zero' ? String(lo + i) : `2^${(lo + i * width).toFixed(2)}`);
  const bars = h('div', { class: 'scale-bars', role: 'img', 'aria-label': `histogram of ${s.kind === 'zero' ? 'zero points' : 'log₂|scale|'}, ${counts.length} bins` });
  counts.forEach((c, i) => {
    const bar = h('div', { class: c ? 'scale-bar' : 'scale-bar empty', title: `${label(i)}${s.kind === 'zero' ? '' : ` … 2^${(lo + (i + 1) * width).toFixed(2)}`}: ${formatNumber(c)}` });
    // CSSOM, not a style attribute: the page's CSP allows no inline styles. A bin holding
    // anything stays at least 2% tall, so a lone block among thousands is still seen.
    bar.style.height = `${top ? Math.max(c ? 2 : 0, (c / top) * 100) : 0}%`;
    bars.append(bar);
  });
  const axisEnd = s.kind === 'zero' ? String(lo + counts.length - 1) : `2^${(lo + counts.length * width).toFixed(2)}`;
  return h(
    'figure',
    { class: 'scale-hist', 'data-bins': String(counts.length) },
    bars,
    h('figcaption', { class: 'scale-axis' }, h('span', {}, s.kind === 'zero' ? label(0) : `2^${lo.toFixed(2)}`), h('span', {}, s.kind === 'zero' ? 'zero point' : '|scale|, log₂ bins (¼ octave)'), h('span', {}, axisEnd)),
  );
}
