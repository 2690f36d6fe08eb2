/**
 * What the page shows of a GGUF beyond its tensors: the header's bits per weight and type
 * mix, and the Model tab (architecture and hyperparameters, the tokenizer with its special
 * tokens, the chat template highlighted, every other key). Long arrays arrive as a length and
 * are paged in on request; every text goes in as a text node.
 */
import { errorInfoOf, jinjaTokens, type GgufKeyRow, type GgufSummary, type TensorEntry } from '../../src/shared/protocol';
import { formatNumber, h } from '../shared/dom';
import type { Viewer } from './state';
import { table } from './widgets';

/** Items asked for per click on a long array: a screenful or two, well under the host's cap of 500. */
export const ARRAY_PAGE = 100;

// ggml's plain number types: every other type is stored in blocks (Q4_K, IQ2_XS…).
const PLAIN = new Set(['F32', 'F16', 'BF16', 'F64', 'I8', 'I16', 'I32', 'I64']);

export function isBlockType(dtype: string): boolean {
  return !PLAIN.has(dtype);
}

/** Stored bits per value of one tensor. */
export function bitsPerWeight(t: Pick<TensorEntry, 'byteLength' | 'numel'>): number {
  return t.numel ? (t.byteLength * 8) / t.numel : 0;
}

export function formatBpw(b: number): string {
  return b.toFixed(b === Math.round(b) ? 0 : 2);
}

function pct(share: number): string {
  const p = share * 100;
  if (p >= 1) return `${Math.round(p)}%`;
  return p >= 0.1 ? `${p.toFixed(1)}%` : '<0.1%';
}

/** "Q4_K 62%, Q6_K 21%, F32 1%": shares of the parameters, largest first. */
export function typeMixText(g: GgufSummary): string {
  return g.typeMix.map((m) => `${m.type} ${pct(m.share)}`).join(', ');
}

/** The header's line: the file's bits per weight and its type mix. */
export function ggufHeaderLine(g: GgufSummary): HTMLElement {
  return h(
    'div',
    { id: 'gguf-header', class: 'totals-line gguf-header' },
    h('span', { id: 'gguf-bpw', title: 'stored bits per parameter over every tensor' }, `${formatBpw(g.bitsPerWeight)} bits/weight`),
    h('span', { id: 'gguf-mix', title: 'share of the parameters stored in each ggml type' }, typeMixText(g)),
  );
}

/** The template as spans, one per token, each a text node: highlighted, never parsed. */
export function highlightedTemplate(text: string): HTMLElement {
  const pre = h('pre', { id: 'gguf-template', class: 'jinja' });
  for (const t of jinjaTokens(text)) pre.append(t.kind === 'text' ? document.createTextNode(t.text) : h('span', { class: `j-${t.kind}` }, t.text));
  return pre;
}

/** A value cell: the text, and for a long array a button that pages its items in below. */
function valueCell(v: Viewer, row: GgufKeyRow): Node {
  if (row.length === undefined) return document.createTextNode(row.text);
  const items = h('ol', { class: 'array-items', start: '0' });
  const more = h('button', { type: 'button', class: 'array-more', 'data-key': row.key }, `Show items (${formatNumber(row.length)})`);
  const status = h('span', { class: 'hint array-status' });
  let next = 0;
  more.addEventListener('click', () => {
    more.setAttribute('disabled', '');
    void v.requester
      .request({ type: 'ggufArray', key: row.key, start: next, count: ARRAY_PAGE })
      .then((r) => {
        for (const [i, x] of r.items.entries()) items.append(h('li', { value: String(r.start + i) }, x));
        next = r.start + r.items.length;
        status.textContent = `${formatNumber(next)} of ${formatNumber(r.total)} shown`;
        if (next < r.total && r.items.length > 0) {
          more.textContent = 'Show more';
          more.removeAttribute('disabled');
        } else more.remove();
      })
      .catch((e) => {
        const info = errorInfoOf(e);
        if (info.code === 'cancelled') return;
        more.removeAttribute('disabled');
        status.textContent = `error[${info.code}] ${info.message}`;
        status.classList.add('inline-error');
      });
  });
  return h('div', { class: 'array-cell' }, h('span', {}, row.text), ' ', more, ' ', status, items);
}

function renderTokenizer(g: GgufSummary): HTMLElement | null {
  const t = g.tokenizer;
  if (!t) return null;
  const pair = (k: string, id: string, v: string) => [h('dt', {}, k), h('dd', { id }, v)];
  return h(
    'section',
    { id: 'gguf-tokenizer', class: 'gguf-section' },
    h('h3', {}, 'Tokenizer'),
    h(
      'dl',
      { class: 'info' },
      ...pair('model', 'tok-model', t.model ?? '—'),
      ...pair('pre-tokenizer', 'tok-pre', t.pre ?? '—'),
      ...pair('vocabulary', 'tok-vocab', t.vocabSize !== undefined ? `${formatNumber(t.vocabSize)} tokens` : 'no token list'),
      ...pair('merges', 'tok-merges', t.merges !== undefined ? `present (${formatNumber(t.merges)})` : 'absent'),
    ),
    t.special.length
      ? table('gguf-special', ['special token', 'id', 'text'], t.special.map((s) => [s.label, String(s.id), s.text !== undefined ? JSON.stringify(s.text) : '(not in the vocabulary)']))
      : null,
    t.chatTemplate !== undefined
      ? h(
          'details',
          { id: 'gguf-template-section', open: '' },
          h('summary', {}, `Chat template (${formatNumber(t.templateChars ?? t.chatTemplate.length)} chars${t.templateChars ? ', cut' : ''})`),
          highlightedTemplate(t.chatTemplate),
        )
      : h('p', { class: 'hint', id: 'gguf-no-template' }, 'No chat template.'),
  );
}

/** The Model tab of a GGUF. */
export function renderGgufPanel(v: Viewer, g: GgufSummary): HTMLElement {
  return h(
    'div',
    { id: 'gguf', class: 'gguf' },
    h('h2', {}, `GGUF v${g.version}${g.architecture ? ` · ${g.architecture}` : ''}`),
    h(
      'section',
      { id: 'gguf-arch', class: 'gguf-section' },
      h('h3', {}, g.architecture ? `Architecture: ${g.architecture}` : 'Architecture'),
      g.hparams.length
        ? table('gguf-hparams', ['hyperparameter', 'value', 'key'], g.hparams.map((r) => [r.label, valueCell(v, r), r.key]))
        : h('p', { class: 'hint' }, g.architecture ? 'No hyperparameters.' : 'No general.architecture key.'),
    ),
    renderTokenizer(g),
    h(
      'section',
      { id: 'gguf-keys', class: 'gguf-section' },
      h('h3', {}, `Other keys (${formatNumber(g.keys.length)})`),
      table('gguf-keys-table', ['key', 'type', 'value'], g.keys.map((r) => [r.key, r.type, valueCell(v, r)])),
    ),
  );
}

