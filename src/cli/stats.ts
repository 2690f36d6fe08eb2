import { openModel } from '../format/openModel';
import { stats, type StatsReport, type TensorStats } from '../pipelines/stats';
import { defineCommand, openerFor, parseBackend, UsageError, withBackends, writer } from './command';
import { escapeText } from '../format/escape';

const USAGE = `usage: tensor-workbench stats PATH [--tensor NAME]... [--bins N] [--backend auto|cpu|webgpu] [--json]

Per-tensor statistics and a health scan: counts of NaN, ±Inf, zeros and near-zeros
(|x| < 1e-3·absMax), min, max, mean, population std, outliers (|x − mean| > 6·std),
a linear and a log10|x| histogram (--bins, default 256) and the 16 largest |x|.
PATH is a .safetensors file, a model.safetensors.index.json, or a folder, or an
https:// or hf://OWNER/REPO[@REVISION][/PATH] URL (read with Range requests).
--tensor (repeatable) limits the scan to those tensors. The text table lists
unhealthy tensors (NaN/Inf, all zeros) first; --json prints the full report.`;

function fmt(x: number | null): string {
  if (x === null) return '-';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e5 ? x.toPrecision(4) : x.toExponential(2);
}

function pct(n: number, of: number): string {
  return of === 0 ? '-' : `${((100 * n) / of).toFixed(n === of || n === 0 ? 0 : 2)}%`;
}

function problems(t: TensorStats): string {
  const p: string[] = [];
  if (t.nan) p.push(`${t.nan} NaN`);
  if (t.posInf) p.push(`${t.posInf} +Inf`);
  if (t.negInf) p.push(`${t.negInf} -Inf`);
  if (t.count > 0 && t.zeros === t.count) p.push('all zero');
  if (t.note) p.push(escapeText(t.note));
  return p.join(', ');
}

/** A fixed-width table, unhealthy tensors first (then in file order), and a summary line. */
export function renderStatsText(r: StatsReport): string {
  return [...statsTextChunks(r)].join('');
}

// Table rows per yielded chunk: a few hundred KB of text, few enough writes.
const ROWS_PER_CHUNK = 2048;

/**
 * `renderStatsText` in chunks of whole lines, for writing as they are made: at 100,000
 * tensors the table is ~12 MB of text, which would otherwise sit whole beside the report.
 */
export function* statsTextChunks(r: StatsReport): Generator<string> {
  const rank = (t: TensorStats): number => (t.nan + t.posInf + t.negInf > 0 ? 0 : t.count > 0 && t.zeros === t.count ? 1 : 2);
  const ranks = Uint8Array.from(r.tensors, rank);
  const order = Array.from(r.tensors, (_, i) => i).sort((a, b) => ranks[a] - ranks[b] || a - b);
  const cells = (t: TensorStats): string[] => [escapeText(t.name), t.scheme ?? t.dtype, `[${t.shape.join(', ')}]`, fmt(t.min), fmt(t.max), fmt(t.mean), fmt(t.std), pct(t.zeros, t.count), pct(t.nearZero, t.count), String(t.outliers), problems(t) || 'ok'];
  const head = ['tensor', 'dtype', 'shape', 'min', 'max', 'mean', 'std', 'zeros', 'near0', 'outliers', 'health'];
  // Two passes over the cells (widths, then lines) rather than a table of them held whole:
  // at 100,000 tensors those strings would outweigh the report itself.
  const widths = head.map((h) => h.length);
  for (const t of r.tensors) cells(t).forEach((c, i) => (widths[i] = Math.max(widths[i], c.length)));
  const numeric = new Set([3, 4, 5, 6, 7, 8, 9]);
  const line = (row: string[]): string =>
    row
      .map((s, c) => (c === row.length - 1 ? s : numeric.has(c) ? s.padStart(widths[c]) : s.padEnd(widths[c])))
      .join('  ')
      .trimEnd();
  const { nonFiniteTensors: nf, allZeroTensors: az, schemeFindings: sf = [] } = r.health;
  const summary =
    `${r.tensors.length} tensors, ${(r.bytesRead / 1e9).toFixed(2)} GB in ${r.seconds.toFixed(2)} s ` +
    `(${(r.bytesRead / 1e9 / Math.max(r.seconds, 1e-9)).toFixed(2)} GB/s, ${r.backend}: ${r.device}); ` +
    (nf.length + az.length + sf.length === 0 ? 'all healthy' : `${nf.length} with NaN/Inf, ${az.length} all zero` + (sf.length > 0 ? `, ${sf.length} scale findings` : ''));
  let lines = [line(head)];
  for (const i of order) {
    lines.push(line(cells(r.tensors[i])));
    if (lines.length === ROWS_PER_CHUNK) {
      yield lines.join('\n') + '\n';
      lines = [];
    }
  }
  lines.push('', summary);
  for (const f of sf) lines.push(`  ${escapeText(f.tensor)} (${f.scheme}): ${f.message}`);
  yield lines.join('\n') + '\n';
}

/**
 * The report as one JSON document, written tensor by tensor: the whole text of a
 * 100,000-tensor report is ~200 MB, which would otherwise sit in memory beside the report.
 * Waits for the stream to drain every batch, so a slow pipe cannot buffer it all either.
 */
async function writeJsonReport(report: StatsReport, out: NodeJS.WritableStream): Promise<void> {
  const tensors = report.tensors;
  // Spreading keeps the report's key order, with the tensors' array emptied in place.
  const open = JSON.stringify({ ...report, tensors: [] });
  const write = writer(out);
  // Same key order as JSON.stringify(report): the tensors are written where their empty array was.
  const at = open.indexOf('"tensors":[]') + '"tensors":['.length;
  await write(open.slice(0, at));
  // Batches of this many tensors per write: few enough syscalls, each write ~1 MB at most.
  const BATCH = 256;
  for (let i = 0; i < tensors.length; i += BATCH) {
    const part = tensors.slice(i, i + BATCH).map((t) => JSON.stringify(t)).join(',');
    await write(i === 0 ? part : ',' + part);
  }
  await write(open.slice(at) + '\n');
}

export const statsCommand = defineCommand({
  name: 'stats',
  summary: 'Per-tensor statistics, histograms and a NaN/Inf/zero health scan',
  usage: USAGE,
  options: { tensor: { type: 'string', multiple: true }, bins: { type: 'string' }, backend: { type: 'string' }, json: { type: 'boolean' } },
  positionals: { min: 1, max: 1, usage: 'one PATH' },
  async run({ values, positionals }, io) {
    const bins = values.bins === undefined ? undefined : Number(values.bins);
    // 65,536 bins is already finer than any 16-bit dtype's distinct values.
    if (bins !== undefined && (!Number.isInteger(bins) || bins < 1 || bins > 65536)) throw new UsageError(`--bins must be an integer from 1 to 65536, not '${values.bins}'`);
    const backend = parseBackend(values.backend);
    const model = await openModel(positionals[0], openerFor(positionals[0], io.signal));
    return withBackends(async () => {
      try {
        // The table shows neither histograms nor the largest |x|: without --json they are not kept
        // (at 100,000 tensors they would be most of the memory the command takes).
        const json = values.json === true;
        const report = await stats(model, { tensors: values.tensor, bins, backend, histograms: json, topK: json ? undefined : 0, signal: io.signal, progress: io.progress });
        if (json) await writeJsonReport(report, io.stdout);
        else {
          const write = writer(io.stdout);
          for (const chunk of statsTextChunks(report)) await write(chunk);
        }
        return 0;
      } finally {
        await model.close();
      }
    });
  },
});
