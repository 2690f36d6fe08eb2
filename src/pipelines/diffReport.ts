import type { DiffReport, GroupDiff, TensorDiff } from './diff';
import { formatBytes, formatCount } from '../core/units';
import { escapeMarkdownCell, escapeText, markdownCode } from '../format/escape';

/**
 * Renderings of a DiffReport: JSON (the CLI's --json and the webview's export),
 * Markdown for a pull request, and plain text for a terminal. Pure functions,
 * shared by the CLI and the extension.
 */

/** Rows in the "top changes" tables: enough to see the pattern, short enough to paste. */
const TOP_ROWS = 20;

/** Changed tensors first, largest relL2 first (a zero-norm base sorts by ‖Δ‖ among them). */
export function rankedTensors(r: DiffReport): TensorDiff[] {
  return [...r.tensors].sort((x, y) => {
    if (x.identical !== y.identical) return x.identical ? 1 : -1;
    const rx = x.relL2 ?? Infinity;
    const ry = y.relL2 ?? Infinity;
    if (rx !== ry) return ry - rx;
    return y.absL2 - x.absL2 || x.name.localeCompare(y.name);
  });
}

/** The report as the issue's JSON document (key order: what differs, then per tensor, then cost). */
export function diffToJson(r: DiffReport): string {
  return [...diffJsonChunks(r)].join('');
}

// Tensors per yielded chunk of the JSON report: a few hundred KB of text each.
const JSON_TENSORS_PER_CHUNK = 512;

/**
 * `diffToJson` in pieces, for writing as they are made: the report of 100,000 tensors is
 * ~60 MB of JSON, which would otherwise be built whole beside the report. The text is the
 * same, byte for byte, as `JSON.stringify(doc, null, 2)`.
 */
export function* diffJsonChunks(r: DiffReport): Generator<string> {
  const doc = {
    a: r.a,
    b: r.b,
    mapping: r.mapping,
    summary: r.summary,
    added: r.added,
    removed: r.removed,
    changed: r.changed,
    tensors: [] as TensorDiff[],
    layers: r.layers,
    modules: r.modules,
    backend: r.backend,
    seconds: r.seconds,
    bytesRead: r.bytesRead,
    rankSeconds: r.rankSeconds,
    rankBytesRead: r.rankBytesRead,
  };
  const text = JSON.stringify(doc, null, 2) + '\n';
  // Top-level keys are the only ones indented by exactly two spaces.
  const marker = '\n  "tensors": []';
  const at = text.indexOf(marker);
  if (r.tensors.length === 0 || at < 0) {
    yield JSON.stringify({ ...doc, tensors: r.tensors }, null, 2) + '\n';
    return;
  }
  yield text.slice(0, at) + '\n  "tensors": [';
  // An element of a top-level array sits 4 spaces deep; strings hold no raw newline, so every
  // line break in an element's own pretty text is one of its lines.
  for (let i = 0; i < r.tensors.length; i += JSON_TENSORS_PER_CHUNK) {
    const part = r.tensors.slice(i, i + JSON_TENSORS_PER_CHUNK).map((t) => '\n    ' + JSON.stringify(t, null, 2).replace(/\n/g, '\n    '));
    yield (i === 0 ? '' : ',') + part.join(',');
  }
  yield '\n  ]' + text.slice(at + marker.length);
}

export function fmtNum(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e4) return x.toPrecision(3).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
  return x.toExponential(2);
}

/** Cosines of fine-tunes sit just below 1: show enough digits to tell them apart. */
export function fmtCosine(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (x === 1) return '1';
  return x > 0.999 ? x.toFixed(6) : x.toFixed(4);
}

export function fmtPercent(x: number): string {
  if (x === 0) return '0%';
  if (x < 0.001) return '<0.1%';
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

function shapeStr(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function energyStr(t: TensorDiff): string {
  if (!t.rankEnergy) return '–';
  return (['1', '4', '16', '64'] as const).map((k) => fmtPercent(t.rankEnergy![k])).join(' / ');
}

/** One sentence of what differs, shared by every rendering. */
export function summaryLine(r: DiffReport): string {
  const s = r.summary;
  const parts = [
    `${s.different} of ${s.compared} compared tensors changed (${fmtPercent(s.elements > 0 ? s.changedElements / s.elements : 0)} of ${formatCount(s.elements, 'compact')} elements)`,
    `${r.added.length} added`,
    `${r.removed.length} removed`,
    `${r.changed.length} with a new shape or dtype`,
  ];
  return parts.join(', ');
}

function mappingLine(r: DiffReport): string | undefined {
  const naming = r.naming ? `names matched as ${r.naming}` : undefined;
  if (!r.mapping) return naming;
  return `${naming ? `${naming}; ` : ''}names matched with prefix ${markdownCode(r.mapping.a, false)} ↔ ${markdownCode(r.mapping.b, false)}${r.mapping.auto ? ' (detected)' : ''}`;
}

/** What storing B cost against A, when they are stored differently: bits per weight beside the error. */
export function costOfStorageLine(r: DiffReport): string | undefined {
  const s = r.summary;
  if (!r.tensors.some((t) => t.decoded) || s.compared === 0) return undefined;
  const err = s.relL2 === null ? 'error undefined (A is all zeros)' : s.relL2 === 0 ? 'no error' : `relL2 ${fmtNum(s.relL2)}, SNR ${s.snrDb!.toFixed(1)} dB`;
  return `bits per weight ${s.bitsPerWeightA.toFixed(2)} → ${s.bitsPerWeightB.toFixed(2)}: ${err} over the changed tensors`;
}

function fmtSnr(t: TensorDiff): string {
  return t.snrDb === undefined || t.snrDb === null ? '–' : `${t.snrDb.toFixed(1)} dB`;
}

function costLine(r: DiffReport): string {
  const rank = r.rankSeconds !== undefined ? `, of which ${r.rankSeconds.toFixed(1)} s for the rank estimate` : '';
  return `${formatBytes(r.bytesRead, 'si')} read in ${r.seconds.toFixed(2)} s${rank} on ${r.backend}`;
}

function mdEscape(s: string): string {
  return escapeMarkdownCell(s);
}

function mdGroupTable(title: string, groups: readonly GroupDiff[]): string[] {
  if (groups.length === 0) return [];
  const out = [`### ${title}`, '', '| group | changed tensors | changed elements | mean relL2 | max relL2 |', '|---|--:|--:|--:|--:|'];
  for (const g of groups) {
    out.push(`| ${mdEscape(g.group)} | ${g.changedTensors} / ${g.tensors} | ${fmtPercent(g.changedFraction)} | ${fmtNum(g.meanRelL2)} | ${fmtNum(g.maxRelL2)} |`);
  }
  out.push('');
  return out;
}

function mdList(title: string, names: readonly string[]): string[] {
  if (names.length === 0) return [];
  const shown = names.slice(0, 100).map((n) => `- ${markdownCode(n, false)}`);
  if (names.length > 100) shown.push(`- … and ${names.length - 100} more`);
  return [`<details><summary>${title} (${names.length})</summary>`, '', ...shown, '', '</details>', ''];
}

/** A pull-request-ready summary: headline, the top changes, per-layer table, and the lists of what differs. */
export function diffToMarkdown(r: DiffReport, top = TOP_ROWS): string {
  const out: string[] = [`## Checkpoint diff: ${markdownCode(basename(r.a), false)} → ${markdownCode(basename(r.b), false)}`, ''];
  out.push(`**${summaryLine(r)}.**`, '');
  const m = mappingLine(r);
  if (m) out.push(`_${m}._`, '');
  const cost = costOfStorageLine(r);
  if (cost) out.push(`_${cost}._`, '');
  const ranked = rankedTensors(r).filter((t) => !t.identical);
  if (ranked.length > 0) {
    const hasRank = ranked.some((t) => t.rankEnergy);
    out.push(`### Top changes${ranked.length > top ? ` (${top} of ${ranked.length})` : ''}`, '');
    out.push(`| tensor | shape | relL2 | cosine | max \\|Δ\\| | mean \\|Δ\\| | changed |${hasRank ? ' energy at rank 1 / 4 / 16 / 64 |' : ''}`);
    out.push(`|---|---|--:|--:|--:|--:|--:|${hasRank ? '--:|' : ''}`);
    for (const t of ranked.slice(0, top)) {
      const rel = t.relL2 === null ? `‖Δ‖ = ${fmtNum(t.absL2)}` : fmtNum(t.relL2);
      out.push(
        `| ${markdownCode(t.name)} | ${shapeStr(t.shape)} | ${rel} | ${fmtCosine(t.cosine)} | ${fmtNum(t.maxAbsDiff)} | ${fmtNum(t.meanAbsDiff)} | ${fmtPercent(t.changedFraction)} |${hasRank ? ` ${energyStr(t)} |` : ''}`,
      );
    }
    out.push('');
  } else if (r.tensors.length > 0) {
    out.push('Every compared tensor is byte-for-byte identical.', '');
  }
  if (r.layers.length > 1) out.push(...mdGroupTable('Per block', r.layers));
  if (r.modules.length > 1) out.push(...mdGroupTable('Per module kind', r.modules));
  out.push(...mdList('Added', r.added));
  out.push(...mdList('Removed', r.removed));
  if (r.changed.length > 0) {
    out.push(`<details><summary>Shape or dtype changed (${r.changed.length})</summary>`, '', '| tensor | A | B |', '|---|---|---|');
    for (const c of r.changed) out.push(`| ${markdownCode(c.name)} | ${c.dtypeA} ${shapeStr(c.shapeA)} | ${c.dtypeB} ${shapeStr(c.shapeB)} |`);
    out.push('', '</details>', '');
  }
  out.push(`<sub>Tensor Workbench: ${costLine(r)}.</sub>`, '');
  return out.join('\n');
}

function basename(p: string): string {
  const parts = p.split(/[\\/]/).filter(Boolean);
  return parts.length >= 2 && /\.(safetensors|json)$/.test(parts[parts.length - 1]) ? parts.slice(-2).join('/') : (parts[parts.length - 1] ?? p);
}

function pad(s: string, w: number, right = false): string {
  return right ? s.padStart(w) : s.padEnd(w);
}

/** Plain text for a terminal: headline, aligned top-changes table, per-block summary, lists. */
export function diffToText(r: DiffReport, top = TOP_ROWS): string {
  const out: string[] = [`${escapeText(r.a)}  →  ${escapeText(r.b)}`, summaryLine(r)];
  const m = mappingLine(r);
  if (r.naming) out.push(`names matched as ${r.naming}`);
  if (m && r.mapping) out.push(`names matched with prefix '${escapeText(r.mapping.a)}' ↔ '${escapeText(r.mapping.b)}'${r.mapping.auto ? ' (detected)' : ''}`);
  const cost = costOfStorageLine(r);
  if (cost) out.push(cost);
  out.push('');
  const ranked = rankedTensors(r).filter((t) => !t.identical);
  if (ranked.length > 0) {
    const rows = ranked.slice(0, top).map((t) => [
      escapeText(t.name),
      t.dtypeB ? `${t.dtype}→${t.dtypeB}` : t.dtype,
      t.relL2 === null ? `|Δ| ${fmtNum(t.absL2)}` : fmtNum(t.relL2),
      fmtSnr(t),
      fmtCosine(t.cosine),
      fmtNum(t.maxAbsDiff),
      fmtPercent(t.changedFraction),
      energyStr(t),
    ]);
    const head = ['tensor', 'type', 'relL2', 'SNR', 'cosine', 'max|Δ|', 'changed', 'energy r1/4/16/64'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    out.push(head.map((h, i) => pad(h, widths[i], i > 0)).join('  '));
    for (const row of rows) out.push(row.map((c, i) => pad(c, widths[i], i > 0)).join('  '));
    if (ranked.length > top) out.push(`… ${ranked.length - top} more changed tensors (--json for all)`);
    out.push('');
  }
  if (r.layers.length > 1) {
    out.push('per block: changed tensors, mean relL2');
    for (const g of r.layers) out.push(`  ${pad(escapeText(g.group), 12)} ${pad(`${g.changedTensors}/${g.tensors}`, 7, true)}  ${fmtNum(g.meanRelL2)}`);
    out.push('');
  }
  for (const [title, names] of [
    ['added', r.added],
    ['removed', r.removed],
  ] as const) {
    if (names.length === 0) continue;
    out.push(`${title} (${names.length}):`);
    for (const n of names.slice(0, 50)) out.push(`  ${escapeText(n)}`);
    if (names.length > 50) out.push(`  … and ${names.length - 50} more`);
  }
  for (const c of r.changed) out.push(`shape/dtype changed: ${escapeText(c.name)}: ${c.dtypeA} ${shapeStr(c.shapeA)} → ${c.dtypeB} ${shapeStr(c.shapeB)}`);
  out.push(costLine(r));
  return out.join('\n') + '\n';
}
