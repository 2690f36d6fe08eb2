/** The Quantization tab: size and estimated error per scheme, as a table and a chart. */
import { errorInfoOf } from '../../src/shared/protocol';
import { clear, formatBytes, formatCount, formatNumber, h } from '../shared/dom';
import { drawQuantChart } from './quantChart';
import { save, type Viewer } from './state';
import { fmt, table } from './widgets';

export function startQuantPreview(v: Viewer): void {
  const tabs = document.getElementById('tabs') as HTMLElement & { selectedIndex: number };
  tabs.selectedIndex = 2;
  save(v, { tab: 2 });
  if (v.state.quant.running) return;
  const panel = document.getElementById('quant-panel')!;
  clear(panel);
  const ctl = (v.state.quant.running = new AbortController());
  const status = h('span', { id: 'quant-status', class: 'hint' }, 'Sampling…');
  const cancel = h('vscode-button', { id: 'quant-cancel', secondary: '' }, 'Cancel');
  cancel.addEventListener('click', () => ctl.abort());
  panel.append(h('div', { class: 'scan-progress' }, h('vscode-progress-bar', { indeterminate: '' }), status, cancel));
  void v.requester
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
      v.state.quant.rows = r.rows;
    })
    .catch((e) => {
      const info = errorInfoOf(e);
      status.textContent = info.code === 'cancelled' ? 'Cancelled.' : `error[${info.code}] ${info.message}`;
      status.classList.toggle('inline-error', info.code !== 'cancelled');
      cancel.remove();
    })
    .finally(() => {
      if (v.state.quant.running === ctl) v.state.quant.running = undefined;
    });
}
