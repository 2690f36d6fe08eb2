/**
 * How byte sizes and counts read in every report, so that the CLI, the Markdown
 * reports and the progress messages agree. Each style below is one that a
 * report already prints; the style is chosen by the reader of the text.
 */

/**
 * `si`: 1000-based (`1.23 MB`, as file managers and Hugging Face sizes read), 2 decimals
 * under 10, else 1. `progress`: the same with 0 decimals from 100 up (a progress line
 * changes width less). `iec`: 1024-based with 2 decimals (`1.50 KiB`). Bytes stay whole.
 */
export type ByteStyle = 'si' | 'progress' | 'iec';

const SI_UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];
const IEC_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number, style: ByteStyle = 'iec'): string {
  const base = style === 'iec' ? 1024 : 1000;
  const units = style === 'iec' ? IEC_UNITS : SI_UNITS;
  let v = n;
  let u = 0;
  while (v >= base && u < units.length - 1) {
    v /= base;
    u++;
  }
  if (u === 0) return `${n} B`;
  const digits = style === 'iec' ? 2 : v < 10 ? 2 : style === 'progress' && v >= 100 ? 0 : 1;
  return `${v.toFixed(digits)} ${units[u]}`;
}

/** A file size in a table of sizes: GiB with 2 decimals, else MiB or KiB with 1 (`minUnit` drops KiB). */
export function formatSize(n: number, minUnit: 'KiB' | 'MiB' = 'KiB'): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20 || minUnit === 'MiB') return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

/**
 * A count of parameters or elements: `1.23M` (3 significant digits, `precise`), or
 * `1.2M` / `12.3K` with fixed decimals and plain numbers under 10,000 (`compact`).
 */
export function formatCount(n: number, style: 'precise' | 'compact' = 'precise'): string {
  if (style === 'compact') {
    if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
    if (n >= 1e4) return `${(n / 1e3).toFixed(1)}K`;
    return String(n);
  }
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  for (const [v, u] of units) if (n >= v) return `${(n / v).toPrecision(3)}${u}`;
  return String(n);
}
