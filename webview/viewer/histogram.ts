/**
 * The histogram plot. Plotly draws bars from the bins the host computed: the
 * page gets `bins` numbers per histogram, never the tensor's values.
 */
import { react } from '../shared/plotly';
import type { HistogramData, TensorStatsData } from '../../src/shared/protocol';

export interface HistogramView {
  /** Counts on a log axis: tails of a weight distribution are otherwise invisible. */
  readonly logCounts: boolean;
  /** Show the histogram of log₁₀|x| instead of x. */
  readonly magnitude: boolean;
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

/** Bar centres and widths from [min, max] split into `counts.length` equal bins. */
export function binCentres(hist: HistogramData): { x: number[]; width: number } {
  const n = hist.counts.length;
  const width = n > 0 ? (hist.max - hist.min) / n : 0;
  const x: number[] = [];
  for (let i = 0; i < n; i++) x.push(hist.min + (i + 0.5) * width);
  return { x, width };
}

export function drawHistogram(el: HTMLElement, s: TensorStatsData, view: HistogramView): void {
  const hist = view.magnitude ? s.logHistogram : s.histogram;
  const { x, width } = binCentres(hist);
  const y = Array.from(hist.counts);
  const fg = cssVar('--vscode-foreground', '#333');
  const bar = cssVar('--vscode-charts-blue', cssVar('--vscode-focusBorder', '#3794ff'));
  const grid = cssVar('--vscode-editorWidget-border', cssVar('--vscode-panel-border', '#8884'));
  el.dataset.bins = String(y.length);
  el.dataset.mode = `${view.magnitude ? 'magnitude' : 'value'}-${view.logCounts ? 'log' : 'linear'}`;
  // `data-drawn` names the mode whose bars are on screen: tests wait for it (bars of empty bins have no height, so "visible" is no signal).
  delete el.dataset.drawn;
  const mode = el.dataset.mode;
  void react(
    el,
    [
      {
        type: 'bar',
        x,
        y,
        width: width || undefined,
        marker: { color: bar, line: { width: 0 } },
        hovertemplate: view.magnitude ? '|x| ≈ 10^%{x:.3g}<br>%{y} values<extra></extra>' : 'x ≈ %{x:.4g}<br>%{y} values<extra></extra>',
      },
    ],
    {
      height: 240,
      margin: { l: 56, r: 12, t: 8, b: 40 },
      bargap: 0,
      paper_bgcolor: 'rgba(0,0,0,0)',
      plot_bgcolor: 'rgba(0,0,0,0)',
      font: { color: fg, size: 11 },
      xaxis: { title: { text: view.magnitude ? 'log₁₀ |x|' : 'x' }, gridcolor: grid, zerolinecolor: grid },
      yaxis: { title: { text: 'count' }, type: view.logCounts ? 'log' : 'linear', gridcolor: grid, zerolinecolor: grid },
      showlegend: false,
    },
    { displayModeBar: false, responsive: true },
  ).then((drawn) => {
    if (drawn && el.dataset.mode === mode) el.dataset.drawn = mode;
  });
}
