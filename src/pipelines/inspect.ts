import { openModel, typeNameOf, type Model, type SourceOpener } from '../format';
import { partsOf } from '../format/model';
import type { JobContext } from '../core/job';
import { throwIfCancelled } from '../core/job';
import { estimateMemory } from './memory';
import { formatBytes, formatCount } from '../core/units';
import { buildModuleTree, renderModuleTree } from './moduleTree';
import { escapeText } from '../format/escape';

/** `inspect --json`: exactly this shape. */
export interface InspectReport {
  readonly path: string;
  readonly files: { path: string; bytes: number; headerBytes: number }[];
  readonly metadata: Readonly<Record<string, string>>;
  /** Header order, file by file; `byteOffset` is absolute within `file`; `dtype` is the stored type (`BF16`, or a block type such as `Q4_K`). */
  readonly tensors: InspectTensor[];
  readonly parameters: { total: number; byDtype: Record<string, number> };
  /** Bytes of tensor data, all files together (headers excluded). */
  readonly bytes: number;
  /** Bits of tensor data per parameter (16 for a BF16 model, about 4.9 for a Q4_K_M one). */
  readonly bitsPerWeight: number;
  /** For formats that can carry code (pickles): whether the file only rebuilds tensors. */
  readonly safety?: { readonly clean: boolean; readonly text: string };
  /** What the format reader wants said (shared storages, entries left out). */
  readonly notes?: readonly string[];
}

/** One logical tensor; a quantized weight adds its scheme and the stored tensors' byte ranges it is read from. */
export interface InspectTensor {
  name: string;
  /** The stored type: a dtype, or a block type such as `Q4_K`. */
  dtype: string;
  shape: readonly number[];
  file: string;
  byteOffset: number;
  byteLength: number;
  scheme?: string;
  parts?: { role: string; file: string; byteOffset: number; byteLength: number }[];
}

export interface InspectArgs {
  readonly path: string;
  readonly opener?: SourceOpener;
}

/** Summarises an open model from its headers alone; reads no tensor data. */
export function inspectReport(model: Model): InspectReport {
  const byDtype: Record<string, number> = {};
  let total = 0;
  let bytes = 0;
  const tensors = model.tensors.map((t) => {
    // A quantized weight counts under its scheme, with the bytes of all its parts; a block type under its name (Q4_K).
    const scheme = t.storage?.kind === 'scheme' ? t.storage.scheme : undefined;
    const dtype = scheme ? t.dtype : typeNameOf(t);
    const kind = scheme ?? dtype;
    byDtype[kind] = (byDtype[kind] ?? 0) + t.numel;
    total += t.numel;
    bytes += partsOf(t).reduce((s, p) => s + p.byteLength, 0);
    const row: InspectTensor = { name: t.name, dtype, shape: t.shape, file: model.files[t.file].path, byteOffset: t.byteOffset, byteLength: t.byteLength };
    if (scheme) {
      row.scheme = scheme;
      row.parts = partsOf(t).map((p) => ({ role: p.role, file: model.files[p.file].path, byteOffset: p.byteOffset, byteLength: p.byteLength }));
    }
    return row;
  });
  return {
    path: model.path,
    files: model.files.map((f) => ({ path: f.path, bytes: f.bytes, headerBytes: f.headerBytes })),
    metadata: model.metadata,
    tensors,
    parameters: { total, byDtype },
    bytes,
    bitsPerWeight: total > 0 ? (bytes * 8) / total : 0,
    ...(model.safety ? { safety: model.safety } : {}),
    ...(model.notes?.length ? { notes: model.notes } : {}),
  };
}

/** Opens `args.path` (file, index.json or folder), reads its headers and reports on it. */
export async function inspectModel(args: InspectArgs, ctx: JobContext = {}): Promise<InspectReport> {
  throwIfCancelled(ctx.signal);
  const model = await openModel(args.path, args.opener);
  try {
    return inspectReport(model);
  } finally {
    await model.close();
  }
}

// Files are listed one per line up to this many; a 400-shard model gets a count instead of a page of names.
const MAX_FILES_LISTED = 16;

// Types below this share of the parameters are folded into "…" in the one-line mix.
const MIX_SHOWN_FRACTION = 0.005;

/** `Q4_K 62%, Q6_K 21%, F32 0.9%, …`: each stored type's share of the parameters, largest first. */
function typeMix(r: InspectReport): string {
  const total = r.parameters.total || 1;
  const rows = Object.entries(r.parameters.byDtype).sort((a, b) => b[1] - a[1]);
  const shown = rows.filter(([, n], i) => i === 0 || n / total >= MIX_SHOWN_FRACTION);
  const pct = (n: number) => (n / total >= 0.1 ? `${Math.round((100 * n) / total)}%` : `${((100 * n) / total).toPrecision(2)}%`);
  return shown.map(([d, n]) => `${d} ${pct(n)}`).join(', ') + (shown.length < rows.length ? ', …' : '');
}

/** The human-readable summary: totals, dtypes, memory at common formats, metadata, folded module tree. */
export function renderInspectText(r: InspectReport): string {
  const out: string[] = [];
  const fileBytes = r.files.reduce((s, f) => s + f.bytes, 0);
  out.push(escapeText(r.path));
  out.push(`  ${r.files.length} file${r.files.length === 1 ? '' : 's'}, ${formatBytes(fileBytes)}; ${r.tensors.length} tensors; ${formatCount(r.parameters.total)} parameters (${r.parameters.total}); ${formatBytes(r.bytes)} of tensor data`);
  if (r.files.length > 1) {
    for (const f of r.files.slice(0, MAX_FILES_LISTED)) out.push(`    ${escapeText(f.path)}  ${formatBytes(f.bytes)}`);
    if (r.files.length > MAX_FILES_LISTED) out.push(`    … and ${r.files.length - MAX_FILES_LISTED} more`);
  }
  out.push(`  ${r.bitsPerWeight.toFixed(2)} bits per weight; ${typeMix(r)}`);
  if (r.safety) out.push(`  ${r.safety.clean ? 'Only tensor data' : `WARNING: this file ${r.safety.text} (run \`scan\` for the list; nothing was executed)`}`);
  for (const n of r.notes ?? []) out.push(`  note: ${n}`);
  out.push('');
  out.push('By dtype:');
  const bytesBy: Record<string, number> = {};
  const countBy: Record<string, number> = {};
  for (const t of r.tensors) {
    // A quantized weight is listed under its scheme, with the bytes of all its parts.
    const kind = t.scheme ?? t.dtype;
    bytesBy[kind] = (bytesBy[kind] ?? 0) + (t.parts ? t.parts.reduce((s, p) => s + p.byteLength, 0) : t.byteLength);
    countBy[kind] = (countBy[kind] ?? 0) + 1;
  }
  const rows = Object.keys(r.parameters.byDtype).sort((a, b) => r.parameters.byDtype[b] - r.parameters.byDtype[a]);
  for (const d of rows) {
    out.push(`  ${d.padEnd(12)} ${String(countBy[d]).padStart(7)} tensors  ${formatCount(r.parameters.byDtype[d]).padStart(7)} params  ${formatBytes(bytesBy[d]).padStart(11)}`);
  }
  out.push('');
  out.push('Memory for the weights:');
  for (const m of estimateMemory(r.parameters.total)) out.push(`  ${m.format.padEnd(5)} ${String(m.bitsPerWeight).padStart(4)} bits/weight  ${formatBytes(m.bytes).padStart(11)}`);
  const meta = Object.entries(r.metadata);
  if (meta.length > 0) {
    out.push('');
    out.push('Metadata:');
    for (const [k, v] of meta) out.push(`  ${escapeText(k)}: ${escapeText(v.length > 120 ? v.slice(0, 117) + '…' : v)}`);
  }
  out.push('');
  out.push('Modules:');
  out.push(renderModuleTree(buildModuleTree(r.tensors)).trimEnd());
  return out.join('\n') + '\n';
}
