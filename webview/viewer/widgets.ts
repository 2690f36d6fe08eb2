/** Small pieces every view of the page uses: tables, health badges and number formats. */
import { h } from '../shared/dom';

/**
 * A plain table: vscode-table lays columns out only with fixed `columns` widths and
 * hides its header at small sizes, which suits neither the short totals tables nor
 * metadata of unknown width. Theme colours come from the same variables.
 */
export function table(id: string, head: string[], rows: (string | Node)[][]): HTMLElement {
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { id, class: 'grid' },
      h('thead', {}, h('tr', {}, ...head.map((c) => h('th', {}, c)))),
      h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))),
    ),
  );
}

export function healthBadges(nonFinite: number, allZero: boolean, absMax: number, dtype: string): string[] {
  const b: string[] = [];
  if (nonFinite > 0) b.push('non-finite');
  if (allZero) b.push('all-zero');
  // F16's largest finite value is 65504: anything bigger would overflow if cast to F16.
  if (dtype !== 'F16' && absMax > 65504) b.push('f16-overflow');
  return b;
}

export function badge(kind: string): HTMLElement {
  const text = kind === 'non-finite' ? 'NaN/Inf' : kind === 'all-zero' ? 'all zero' : kind === 'f16-overflow' ? 'F16 overflow' : kind;
  return h('vscode-badge', { class: `health ${kind}`, 'data-badge': kind, title: kind }, text);
}

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(4) : v.toPrecision(6);
}
