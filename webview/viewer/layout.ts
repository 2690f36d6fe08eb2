/** The page's frame: the totals, the filter and tree, the metadata, and the tabs on the right; and the error page. */
import { treeFromTable, type AdapterInfo, type ErrorInfo, type SummaryReplyMessage, type TreeNodeData } from '../../src/shared/protocol';
import { clear, formatBytes, formatCount, formatNumber, h } from '../shared/dom';
import { select } from './details';
import { bitsPerWeight, formatBpw, ggufHeaderLine, renderGgufPanel } from './ggufView';
import { attachParts, describeQuant, quantHeaderView } from './quantized';
import { startQuantPreview } from './quantView';
import { startScan } from './scanView';
import { save, type Viewer } from './state';
import { TreeView } from './tree';
import { fmt, table } from './widgets';

/** The index of the Model tab (a GGUF's architecture, tokenizer and keys), after Details, Scan and Quantization. */
export const MODEL_TAB = 3;

export function showErrorPage(v: Viewer, err: ErrorInfo): void {
  v.root.dataset.state = 'error';
  clear(v.root);
  const reopen = h('vscode-button', { id: 'reopen-default' }, 'Reopen with Default Editor');
  reopen.addEventListener('click', () => void v.requester.request({ type: 'reopenWithDefault' }).catch(() => undefined));
  v.root.append(
    h(
      'section',
      { id: 'error-page', class: 'error-page', role: 'alert' },
      h('h1', {}, 'This file cannot be opened as a safetensors model'),
      h('p', {}, h('code', { id: 'error-code', class: 'error-code' }, `error[${err.code}]`)),
      h('p', { id: 'error-message', class: 'error-message' }, err.message),
      err.file ? h('p', { class: 'error-where' }, 'File: ', h('code', {}, err.file)) : null,
      err.tensor ? h('p', { class: 'error-where' }, 'Tensor: ', h('code', {}, err.tensor)) : null,
      h('div', { class: 'error-actions' }, reopen),
    ),
  );
}

export function renderViewer(v: Viewer, s: SummaryReplyMessage): void {
  v.root.dataset.state = 'ready';
  // `outline` while only the outline is shown (tests and measurements wait for `whole`).
  v.root.dataset.summary = s.outline ? 'outline' : 'whole';
  // Typing in the filter while the whole summary replaces the outline goes on in the new field:
  // its focus and caret move across, so no keystroke lands on a field that is gone.
  const typing = typingState(v.root);
  clear(v.root);
  const filter = h('vscode-textfield', { id: 'filter', placeholder: 'Filter tensors: text or /regex/', value: v.state.saved.filter }) as HTMLElement & { value: string };
  const filterNote = h('div', { id: 'filter-note', class: 'filter-note' });
  const treeHost = h('div', { id: 'tree', class: 'tree', role: 'tree', tabindex: '0', 'aria-label': 'Tensors by module' });
  const left = h(
    'div',
    { id: 'left', class: 'pane left' },
    renderTotals(s),
    h('div', { class: 'filter-row' }, filter),
    filterNote,
    treeHost,
    // A GGUF's keys are in its Model tab, typed and pageable; the strings here would repeat them.
    s.gguf ? null : renderMetadata(s),
  );
  const details = h('div', { id: 'details', class: 'details' }, h('p', { class: 'hint' }, 'Select a tensor or a module.'));
  const scanPanel = h('div', { id: 'scan-panel', class: 'scan-panel' }, h('p', { class: 'hint' }, 'Scan computes statistics for every tensor.'));
  const quantPanel = h('div', { id: 'quant-panel', class: 'quant-panel' }, h('p', { class: 'hint' }, 'The preview estimates size and error of each scheme from at most 1% of each tensor.'));
  // A GGUF opens on its Model tab until the user picks a tensor or another tab.
  const firstTab = s.gguf && v.state.saved.tab === 0 && !v.state.saved.selected ? MODEL_TAB : v.state.saved.tab;
  const tabs = h(
    'vscode-tabs',
    { id: 'tabs', 'selected-index': String(firstTab) },
    h('vscode-tab-header', { slot: 'header', id: 'tab-details' }, 'Details'),
    h('vscode-tab-panel', {}, details),
    h('vscode-tab-header', { slot: 'header', id: 'tab-scan' }, 'Scan'),
    h('vscode-tab-panel', {}, scanPanel),
    h('vscode-tab-header', { slot: 'header', id: 'tab-quant' }, 'Quantization'),
    h('vscode-tab-panel', {}, quantPanel),
    s.gguf ? h('vscode-tab-header', { slot: 'header', id: 'tab-model' }, 'Model') : null,
    s.gguf ? h('vscode-tab-panel', {}, h('div', { id: 'model-panel', class: 'model-panel' }, renderGgufPanel(v, s.gguf))) : null,
  );
  tabs.addEventListener('vsc-tabs-select', (e) => save(v, { tab: (e as CustomEvent<{ selectedIndex: number }>).detail.selectedIndex }));
  const scanButton = h('vscode-button', { id: 'scan-model' }, 'Scan model');
  scanButton.addEventListener('click', () => startScan(v));
  const quantButton = h('vscode-button', { id: 'quant-preview', secondary: '' }, 'Quantization preview');
  quantButton.addEventListener('click', () => startQuantPreview(v));
  const textButton = h('vscode-button', { id: 'show-text', secondary: '' }, 'Show as Text');
  textButton.addEventListener('click', () => void v.requester.request({ type: 'showAsText' }).catch(() => undefined));
  const right = h('div', { id: 'right', class: 'pane right' }, h('div', { class: 'toolbar' }, scanButton, quantButton, textButton), tabs);
  v.root.append(h('div', { class: 'layout' }, left, right));

  performance.mark('tw:tree-start');
  const treeRoot = treeFromTable(s.tree, v.state.tensors);
  attachParts(v, treeRoot);
  performance.measure('tw:build-tree', 'tw:tree-start');
  v.state.tree = new TreeView(treeHost, treeRoot, {
    describe: (d) => describe(v, d),
    onSelect: (n) => select(v, n),
    onToggle: () => save(v, { expanded: [...(v.state.tree?.expanded ?? [])] }),
    onScroll: (top) => save(v, { scrollTop: top }),
  });
  v.state.tree.setExpanded(new Set(v.state.saved.expanded));
  const applyFilter = () => {
    const text = filter.value;
    save(v, { filter: text });
    const r = v.state.tree!.setFilter(text);
    filterNote.textContent = r.error ? `Invalid regex: ${r.error}` : text ? `${formatCount(r.matches)} of ${formatCount(v.state.tensors.length)} tensors` : '';
    filterNote.classList.toggle('invalid', !!r.error);
  };
  filter.addEventListener('input', applyFilter);
  if (v.state.saved.filter) applyFilter();
  if (typing) restoreTyping(filter, typing);
  v.state.tree.scrollTop = v.state.saved.scrollTop;
  // Restored or reloaded: select again, which asks the host for fresh numbers (its cache makes that cheap).
  if (v.state.saved.selected) v.state.tree.selectPath(v.state.saved.selected, true);
}

interface Typing {
  start: number | null;
  end: number | null;
}

/** The filter's caret, when the filter has the focus. */
function typingState(root: HTMLElement): Typing | undefined {
  const field = root.querySelector<HTMLElement>('#filter');
  if (!field || document.activeElement !== field) return undefined;
  const input = field.shadowRoot?.querySelector('input');
  return { start: input?.selectionStart ?? null, end: input?.selectionEnd ?? null };
}

/**
 * Focuses the new field as soon as it has rendered: a microtask, so before the
 * next input event is handled.
 */
function restoreTyping(field: HTMLElement, typing: Typing): void {
  const rendered = (field as HTMLElement & { updateComplete?: Promise<unknown> }).updateComplete ?? Promise.resolve();
  void rendered.then(() => {
    if (!field.isConnected) return;
    field.focus();
    const input = field.shadowRoot?.querySelector('input');
    if (input && typing.start !== null && typing.end !== null) input.setSelectionRange(typing.start, typing.end);
  });
}

export function renderTotals(s: SummaryReplyMessage): HTMLElement {
  const name = s.path.split(/[\\/]/).pop() ?? s.path;
  return h(
    'header',
    { id: 'totals', class: 'totals' },
    h('h1', { title: s.path }, name),
    h(
      'div',
      { class: 'totals-line' },
      h('span', { id: 'total-params' }, `${formatCount(s.totals.params)} params`),
      h('span', {}, `${formatCount(s.totals.tensors)} tensors`),
      h('span', { id: 'total-bytes' }, formatBytes(s.totals.bytes)),
      s.files.length > 1 ? h('span', {}, `${s.files.length} shards`) : null,
    ),
    s.safety ? safetyBanner(s.safety) : null,
    s.adapter ? adapterLine(s.adapter) : null,
    s.gguf ? ggufHeaderLine(s.gguf) : null,
    // A GGUF's notes (architecture, tokenizer) are its Model tab, in full.
    s.notes?.length && !s.gguf ? h('ul', { id: 'notes', class: 'notes' }, ...s.notes.map((n) => h('li', {}, n))) : null,
    s.quantHeader ? quantHeaderView(s.quantHeader) : null,
    table(
      'dtype-table',
      ['dtype', 'tensors', 'params', 'bytes'],
      s.totals.byDtype.map((d) => [d.dtype, formatCount(d.tensors), formatCount(d.params), formatBytes(d.bytes)]),
    ),
    table(
      'memory-table',
      ['memory at', ...s.memory.map((m) => m.format)],
      [['', ...s.memory.map((m) => formatBytes(m.bytes))]],
    ),
  );
}

/** The verdict on a pickle: "Only tensor data", or what it would call, with each finding. Nothing in it was run. */
export function safetyBanner(v: NonNullable<SummaryReplyMessage['safety']>): HTMLElement {
  if (v.clean) return h('p', { id: 'safety', class: 'safety clean', role: 'status' }, h('strong', {}, v.text), ' · read without executing anything');
  return h(
    'div',
    { id: 'safety', class: 'safety unsafe', role: 'alert' },
    h('strong', {}, `This file ${v.text}.`),
    ' It was read without executing anything; these are the functions its pickle names:',
    h('ul', {}, ...(v.findings ?? []).slice(0, 50).map((f) => h('li', {}, f))),
  );
}

export function adapterLine(a: AdapterInfo): HTMLElement {
  const list = (xs: readonly number[]) => xs.map((x) => (Number.isInteger(x) ? String(x) : fmt(x))).join(', ');
  return h(
    'p',
    { id: 'adapter-info', class: 'adapter' },
    h('strong', {}, `LoRA adapter (${a.format})`),
    ` · ${formatNumber(a.modules)} modules · rank ${list(a.ranks)} · alpha ${list(a.alphas)} · scale ${list(a.scales)}${a.useRslora ? ' · rsLoRA' : ''}${a.dora ? ' · DoRA' : ''} · targets ${a.targets.join(', ')}`,
  );
}

export function renderMetadata(s: SummaryReplyMessage): HTMLElement {
  return h(
    'details',
    { id: 'metadata', class: 'metadata', open: s.metadata.length > 0 && s.metadata.length <= 8 ? '' : null },
    h('summary', {}, `Metadata (${s.metadata.length})`),
    s.metadata.length ? table('metadata-table', ['key', 'value'], s.metadata.map(([k, v]) => [k, v])) : h('p', { class: 'hint' }, 'No __metadata__.'),
  );
}

export function describe(v: Viewer, d: TreeNodeData): string {
  const q = describeQuant(v, d);
  if (q !== undefined) return q;
  const t = d.tensor !== undefined ? v.state.tensors[d.tensor] : undefined;
  if (t && v.state.summary?.gguf) return `${t.dtype} · ${formatBpw(bitsPerWeight(t))} bpw [${t.shape.join(', ')}]`;
  if (t) return `${t.dtype} [${t.shape.join(', ')}]`;
  return `${formatCount(d.params)} · ${d.tensors === 1 ? '1 tensor' : `${formatCount(d.tensors)} tensors`}`;
}
