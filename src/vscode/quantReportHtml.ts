/**
 * The page of the quantization report panel. Pure (no `vscode`), so tests render
 * exactly what the panel shows. The report is a finished, read-only result, so the
 * host renders it to HTML once: the page needs no data protocol, only one message
 * (open the Markdown report), sent by a few nonce'd lines of script.
 *
 * CSP: `default-src 'none'`; the one style element and the one script run by nonce.
 * Every string from the report (paths, tensor names, reasons) is escaped.
 */
import type { QuantReport, TensorReport } from '../pipelines/quantize';

/** The one message the page sends: a typed union, so the host can check what it receives. */
export type QuantReportToHostMessage = { readonly type: 'openMarkdown' };

export function isQuantReportToHostMessage(m: unknown): m is QuantReportToHostMessage {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'openMarkdown';
}

export interface QuantReportHtmlOptions {
  readonly nonce: string;
  readonly title: string;
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

export function quantReportCsp(nonce: string): string {
  return ["default-src 'none'", `style-src 'nonce-${nonce}'`, `script-src 'nonce-${nonce}'`].join('; ');
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A metric cell: `–` when absent, ∞ spelled out (a lossless tensor has infinite SNR), tiny values in exponent form. */
export function formatMetric(n: number | undefined, digits: number): string {
  if (n === undefined || Number.isNaN(n)) return '–';
  if (!Number.isFinite(n)) return n > 0 ? '∞' : '−∞';
  return Math.abs(n) >= 1e-3 || n === 0 ? n.toFixed(digits) : n.toExponential(2);
}

const STYLE = `
body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); background: var(--vscode-editor-background); padding: 0 16px 16px; }
h1 { font-size: 1.3em; font-weight: 600; }
h2 { font-size: 1.1em; font-weight: 600; margin-top: 1.5em; }
.hint { color: var(--vscode-descriptionForeground); }
.totals { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
.totals dt { color: var(--vscode-descriptionForeground); }
.totals dd { margin: 0; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-size: 0.95em; }
th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid var(--vscode-panel-border, var(--vscode-contrastBorder, transparent)); }
th { font-weight: 600; }
th.num { text-align: right; }
td.num { text-align: right; font-family: var(--vscode-editor-font-family); font-variant-numeric: tabular-nums; }
td.name { font-family: var(--vscode-editor-font-family); word-break: break-all; }
.missing { color: var(--vscode-editorWarning-foreground, var(--vscode-foreground)); }
button { font-family: inherit; color: var(--vscode-button-foreground, #fff); background: var(--vscode-button-background, #0e639c); border: 1px solid var(--vscode-button-border, transparent); padding: 4px 12px; border-radius: 2px; cursor: pointer; }
button:hover { background: var(--vscode-button-hoverBackground); }
button:focus-visible { outline: 1px solid var(--vscode-focusBorder); outline-offset: 2px; }
`;

const SCRIPT = `
const vscode = acquireVsCodeApi();
document.getElementById('open-markdown').addEventListener('click', () => vscode.postMessage({ type: 'openMarkdown' }));
`;

function row(cells: readonly (readonly [string, string?])[]): string {
  return `<tr>${cells.map(([text, cls]) => (cls ? `<td class="${cls}">${escapeHtml(text)}</td>` : `<td>${escapeHtml(text)}</td>`)).join('')}</tr>`;
}

function tensorName(x: TensorReport): string {
  return x.outputName && x.outputName !== x.name ? `${x.name} → ${x.outputName}` : x.name;
}

function shape(x: TensorReport): string {
  return `${x.dtype} [${x.shape.join(', ')}]`;
}

export function quantReportHtml(r: QuantReport, o: QuantReportHtmlOptions): string {
  const nonce = escapeHtml(o.nonce);
  const t = r.totals;
  const quantized = r.tensors.filter((x) => x.action === 'quantized');
  const skipped = r.tensors.filter((x) => x.action !== 'quantized');
  const totals: [string, string][] = [
    ['input', r.input],
    [r.outputs.length === 1 ? 'output' : 'outputs', r.outputs.join(', ')],
    ['size', `${formatBytes(t.bytesBefore)} → ${formatBytes(t.bytesAfter)}`],
    ['bits per weight', `${formatMetric(t.bitsPerWeight, 2)} overall, ${formatMetric(t.quantizedBitsPerWeight, 2)} in quantized tensors`],
    ['error (quantized tensors)', `RMSE ${formatMetric(t.rmse, 6)} · max |err| ${formatMetric(t.maxAbsErr, 6)} · SNR ${formatMetric(t.snrDb, 1)} dB · cosine ${formatMetric(t.cosine, 6)}`],
    ['backend', `${r.backend}, ${r.seconds.toFixed(1)} s`],
  ];
  const quantRows = quantized.map((x) =>
    row([
      [tensorName(x), 'name'],
      [shape(x)],
      [formatMetric(x.rmse, 6), 'num'],
      [formatMetric(x.maxAbsErr, 6), 'num'],
      [formatMetric(x.snrDb, 1), 'num'],
      [formatMetric(x.cosine, 6), 'num'],
      [`${formatBytes(x.bytesBefore)} → ${formatBytes(x.bytesAfter)}`, 'num'],
    ]),
  );
  const skippedRows = skipped.map((x) => row([[tensorName(x), 'name'], [shape(x)], [x.action], [x.reason ?? '']]));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(quantReportCsp(o.nonce))}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<style nonce="${nonce}">${STYLE}</style>
<title>${escapeHtml(o.title)}</title>
</head>
<body>
<main id="quant-report" data-scheme="${escapeHtml(r.scheme)}">
<h1>Quantization report: ${escapeHtml(r.scheme)} (${escapeHtml(r.format)})</h1>
<p><button id="open-markdown" type="button">Open Markdown report</button></p>
<dl id="quant-totals" class="totals">
${totals.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('\n')}
${r.missing.map((m) => `<dt class="missing">missing</dt><dd class="missing">${escapeHtml(m)}</dd>`).join('\n')}
</dl>
<h2>Quantized tensors (${quantized.length})</h2>
<table id="quant-tensors">
<thead><tr><th>tensor</th><th>dtype [shape]</th><th class="num">RMSE</th><th class="num">max |err|</th><th class="num">SNR dB</th><th class="num">cosine</th><th class="num">size</th></tr></thead>
<tbody>
${quantRows.join('\n')}
</tbody>
</table>
<h2>Skipped tensors (${skipped.length})</h2>
${
  skipped.length
    ? `<table id="quant-skipped">
<thead><tr><th>tensor</th><th>dtype [shape]</th><th>action</th><th>reason</th></tr></thead>
<tbody>
${skippedRows.join('\n')}
</tbody>
</table>`
    : '<p class="hint">None: every tensor was quantized.</p>'
}
</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>`;
}
