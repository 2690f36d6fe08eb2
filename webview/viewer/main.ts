/**
 * The checkpoint viewer's page. It only displays: every number comes from the
 * host through the protocol in src/shared/protocol.ts (summaries, histogram bins,
 * downsampled heatmap pixels), and no tensor data ever reaches this page. Its
 * state is one object (./state.ts); the views live beside this file.
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
import { errorInfoOf, tensorEntries, type SummaryReplyMessage, type ToWebviewMessage } from '../../src/shared/protocol';
import { clear, h } from '../shared/dom';
import { loadPlotly } from '../shared/plotly';
import { drawHistogram } from './histogram';
import { renderViewer, showErrorPage } from './layout';
import { drawQuantChart } from './quantChart';
import { createViewer, save, type Viewer, type VsCodeApi } from './state';

declare function acquireVsCodeApi(): VsCodeApi;


/**
 * Asks for the outline first (small, ready early), paints it, then swaps in the
 * whole summary, keeping what the user opened, filtered or selected meanwhile.
 */
export async function load(v: Viewer): Promise<void> {
  const generation = ++v.state.loadGeneration;
  v.root.dataset.state = 'loading';
  let first: SummaryReplyMessage;
  try {
    performance.mark('tw:summary-request');
    first = await v.requester.request({ type: 'summary', outline: true });
    // Marks for the measurements (bench viewer.vscode, the page tests).
    performance.mark('tw:summary');
    if (generation !== v.state.loadGeneration) return;
    v.state.tensors = tensorEntries(first.tensors);
    performance.measure('tw:decode-tensors', 'tw:summary');
  } catch (e) {
    if (generation === v.state.loadGeneration) showErrorPage(v, errorInfoOf(e));
    return;
  }
  v.state.summary = first;
  performance.mark('tw:render-start');
  renderViewer(v, first);
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
    whole = await v.requester.request({ type: 'summary' });
  } catch (e) {
    if (generation === v.state.loadGeneration) showErrorPage(v, errorInfoOf(e));
    return;
  }
  if (generation !== v.state.loadGeneration) return;
  if (v.state.tree) save(v, { scrollTop: v.state.tree.scrollTop, expanded: [...v.state.tree.expanded] });
  v.state.summary = whole;
  v.state.tensors = tensorEntries(whole.tensors);
  renderViewer(v, whole);
  performance.mark('tw:whole');
  preloadCharts();
}

export async function reload(v: Viewer, deleted: boolean): Promise<void> {
  v.requester.cancelAll();
  v.state.selection?.abort();
  v.state.scan?.ctl.abort();
  v.state.scan = undefined;
  v.state.quant.running?.abort();
  v.state.lastStats = undefined;
  v.state.summary = undefined;
  if (v.state.tree) save(v, { scrollTop: v.state.tree.scrollTop, expanded: [...v.state.tree.expanded] });
  v.state.tree = undefined;
  clear(v.root);
  v.root.append(h('p', { class: 'loading' }, deleted ? 'The file was deleted.' : 'The file changed on disk; reading it again…'));
  if (!deleted) await load(v);
}

// Marks for the measurements (bench viewer.vscode): when this script started running.
performance.mark('tw:script-start');
const viewer = createViewer(acquireVsCodeApi(), document.getElementById('root')!);

window.addEventListener('message', (ev: MessageEvent<ToWebviewMessage>) => {
  const m = ev.data;
  if (viewer.requester.handle(m)) return;
  if (m.type === 'fileChanged') void reload(viewer, m.deleted);
});

// Re-render the plots when the theme changes, so their colours follow the body class.
new MutationObserver(() => {
  const { lastStats, quant, saved } = viewer.state;
  const plot = document.getElementById('histogram');
  if (plot && lastStats) drawHistogram(plot, lastStats.stats, { logCounts: saved.histLogCounts, magnitude: saved.histMagnitude });
  const chart = document.getElementById('quant-chart');
  if (chart && quant.rows) drawQuantChart(chart, quant.rows);
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

viewer.vscode.postMessage({ type: 'ready' });
void load(viewer);
