/**
 * The quantization report page: a finished, read-only result. It asks the host for
 * the report once, through the protocol in src/shared/protocol.ts, and draws it;
 * its one button asks the host to open the Markdown rendering. A failed request
 * shows its error in place.
 */
import './quantReport.css';
import { errorInfoOf, Requester, type QuantReportApi, type ToWebviewMessage } from '../../src/shared/protocol';
import type { QuantReport, TensorReport } from '../../src/pipelines/quantize';
import { clear, h } from '../shared/dom';
import { formatBytes, formatMetric } from './format';

interface VsCodeApi {
  postMessage(m: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const requester = new Requester<QuantReportApi>((m) => vscode.postMessage(m));
const root = document.getElementById('root')!;

window.addEventListener('message', (ev: MessageEvent<ToWebviewMessage<QuantReportApi>>) => void requester.handle(ev.data));

function tensorName(x: TensorReport): string {
  return x.outputName && x.outputName !== x.name ? `${x.name} → ${x.outputName}` : x.name;
}

function shape(x: TensorReport): string {
  return `${x.dtype} [${x.shape.join(', ')}]`;
}

/** A table in its own scroll box: at any width, a wide table scrolls instead of being cut off. */
function table(id: string, head: readonly (readonly [string, string?])[], rows: readonly (readonly (readonly [string, string?])[])[]): HTMLElement {
  const cell = (tag: 'th' | 'td') => ([text, cls]: readonly [string, string?]) => h(tag, { class: cls }, text);
  return h(
    'div',
    { class: 'table-scroll' },
    h('table', { id }, h('thead', {}, h('tr', {}, ...head.map(cell('th')))), h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map(cell('td')))))),
  );
}

function totals(r: QuantReport): HTMLElement {
  const t = r.totals;
  const items: [string, string][] = [
    ['input', r.input],
    [r.outputs.length === 1 ? 'output' : 'outputs', r.outputs.join(', ')],
    ['size', `${formatBytes(t.bytesBefore)} → ${formatBytes(t.bytesAfter)}`],
    ['bits per weight', `${formatMetric(t.bitsPerWeight, 2)} overall, ${formatMetric(t.quantizedBitsPerWeight, 2)} in quantized tensors`],
    ['error (quantized tensors)', `RMSE ${formatMetric(t.rmse, 6)} · max |err| ${formatMetric(t.maxAbsErr, 6)} · SNR ${formatMetric(t.snrDb, 1)} dB · cosine ${formatMetric(t.cosine, 6)}`],
    ['backend', `${r.backend}, ${r.seconds.toFixed(1)} s`],
  ];
  return h(
    'dl',
    { id: 'quant-totals', class: 'totals' },
    ...items.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    ...r.missing.flatMap((m) => [h('dt', { class: 'missing' }, 'missing'), h('dd', { class: 'missing' }, m)]),
  );
}

function render(r: QuantReport): void {
  const quantized = r.tensors.filter((x) => x.action === 'quantized');
  const skipped = r.tensors.filter((x) => x.action !== 'quantized');
  const open = h('button', { id: 'open-markdown', type: 'button' }, 'Open Markdown report');
  const status = h('span', { id: 'open-markdown-status', class: 'inline-error', role: 'status' });
  open.addEventListener('click', () => {
    status.textContent = '';
    requester.request({ type: 'openMarkdown' }).catch((e) => {
      const info = errorInfoOf(e);
      status.textContent = ` error[${info.code}] ${info.message}`;
    });
  });
  // A file type or a bits-per-weight plan gives each tensor its own type: a column for it.
  const typed = r.fileType !== undefined;
  const quantRows = quantized.map((x): [string, string?][] => [
    [tensorName(x), 'name'],
    [shape(x)],
    ...(typed ? [[x.scheme ?? '', 'type'] as [string, string]] : []),
    [formatMetric(x.rmse, 6), 'num'],
    [formatMetric(x.maxAbsErr, 6), 'num'],
    [formatMetric(x.snrDb, 1), 'num'],
    [formatMetric(x.cosine, 6), 'num'],
    [`${formatBytes(x.bytesBefore)} → ${formatBytes(x.bytesAfter)}`, 'num'],
  ]);
  const skippedRows = skipped.map((x): [string, string?][] => [[tensorName(x), 'name'], [shape(x)], [x.action], [x.reason ?? '']]);
  clear(root);
  root.dataset.state = 'ready';
  root.append(
    h(
      'main',
      { id: 'quant-report', 'data-scheme': r.scheme },
      h('h1', {}, `Quantization report: ${r.fileType ?? r.scheme} (${r.format})`),
      h('p', {}, open, status),
      totals(r),
      h('h2', {}, `Quantized tensors (${quantized.length})`),
      table('quant-tensors', [['tensor'], ['dtype [shape]'], ...(typed ? [['type'] as [string]] : []), ['RMSE', 'num'], ['max |err|', 'num'], ['SNR dB', 'num'], ['cosine', 'num'], ['size', 'num']], quantRows),
      h('h2', {}, `Skipped tensors (${skipped.length})`),
      skipped.length
        ? table('quant-skipped', [['tensor'], ['dtype [shape]'], ['action'], ['reason']], skippedRows)
        : h('p', { class: 'hint' }, 'None: every tensor was quantized.'),
    ),
  );
}

async function load(): Promise<void> {
  try {
    render((await requester.request({ type: 'report' })).report);
  } catch (e) {
    const info = errorInfoOf(e);
    root.dataset.state = 'error';
    clear(root);
    root.append(h('p', { id: 'report-error', class: 'inline-error', role: 'alert' }, `error[${info.code}] ${info.message}`));
  }
}

vscode.postMessage({ type: 'ready' });
void load();
