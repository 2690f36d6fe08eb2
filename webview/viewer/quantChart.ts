/**
 * The quantization preview's trade-off chart: one labelled point per scheme, SNR
 * against bits per weight, so "how much error for how many bits" reads at a glance.
 * SNR rather than RMSE because it does not depend on the weights' scale and higher
 * reads as better; schemes with nothing sampled have no error estimate and no point.
 */
import { react } from '../shared/plotly';
import type { QuantPreviewRow } from '../../src/shared/protocol';

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

/** The rows that can be plotted: a finite SNR (a lossless sample gives +∞, which has no place on an axis). */
export function plottableRows(rows: readonly QuantPreviewRow[]): QuantPreviewRow[] {
  return rows.filter((r) => r.snrDb !== undefined && Number.isFinite(r.snrDb));
}

/**
 * An axis range with room around the points for their labels: 15% of the span each
 * side, and at least `min` (one point, or points of equal value, have no span).
 */
function padded(v: readonly number[], min: number): [number, number] | undefined {
  if (!v.length) return undefined;
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  const pad = Math.max(min, (hi - lo) * 0.15);
  return [lo - pad, hi + pad];
}

export function drawQuantChart(el: HTMLElement, rows: readonly QuantPreviewRow[]): void {
  const pts = plottableRows(rows);
  const fg = cssVar('--vscode-foreground', '#333');
  const marker = cssVar('--vscode-charts-blue', cssVar('--vscode-focusBorder', '#3794ff'));
  const grid = cssVar('--vscode-editorWidget-border', cssVar('--vscode-panel-border', '#8884'));
  const font = cssVar('--vscode-font-family', 'sans-serif');
  const xs = pts.map((r) => r.bitsPerWeight);
  const ys = pts.map((r) => r.snrDb!);
  el.dataset.points = String(pts.length);
  // Tests wait for `data-drawn`: Plotly draws asynchronously.
  delete el.dataset.drawn;
  void react(
    el,
    [
      {
        type: 'scatter',
        mode: 'text+markers',
        x: xs,
        y: ys,
        // Labels of points at the edge of the plot would otherwise be cut in half.
        cliponaxis: false,
        text: pts.map((r) => r.scheme),
        textposition: 'top center',
        marker: { color: marker, size: 9 },
        textfont: { color: fg, family: font },
        hovertemplate: '%{text}<br>%{x:.2f} bits/weight<br>SNR %{y:.1f} dB<extra></extra>',
      },
    ],
    {
      height: 260,
      margin: { l: 56, r: 24, t: 24, b: 44 },
      paper_bgcolor: 'rgba(0,0,0,0)',
      plot_bgcolor: 'rgba(0,0,0,0)',
      font: { color: fg, size: 11, family: font },
      xaxis: { title: { text: 'bits per weight' }, range: padded(xs, 0.5), gridcolor: grid, zerolinecolor: grid },
      yaxis: { title: { text: 'estimated SNR (dB, higher is better)' }, range: padded(ys, 3), gridcolor: grid, zerolinecolor: grid, automargin: true },
      showlegend: false,
    },
    { displayModeBar: false, responsive: true },
  ).then((drawn) => {
    if (drawn) el.dataset.drawn = String(pts.length);
  });
}
