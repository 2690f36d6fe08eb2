import { escapeText } from '../format/escape';
import { nodeOpener } from '../format/openModel';
import type { SourceOpener } from '../format/model';
import { layoutOf, verdictOf } from '../format/pickle/layout';
import { readTorchCheckpoint, type TorchContainer } from '../format/pickle/torch';
import { throwIfCancelled, type JobContext } from '../core/job';

/** What `scan` says of one file. */
export interface ScanResult {
  readonly path: string;
  readonly container?: TorchContainer;
  readonly verdict?: { readonly clean: boolean; readonly text: string };
  readonly findings?: readonly {
    readonly module: string;
    readonly name: string;
    readonly offset: number;
    readonly severity: 'dangerous' | 'unknown';
    readonly entry?: string;
    readonly nested: boolean;
  }[];
  readonly tensors?: number;
  /** Pickle protocol of the main pickle. */
  readonly protocol?: number;
  readonly error?: { readonly code: string; readonly message: string };
}

export interface ScanArgs {
  readonly path: string;
  readonly opener?: SourceOpener;
}

/** Reads a checkpoint's container and pickle (never executing it) and gives the verdict. */
export async function scanCheckpoint(args: ScanArgs, ctx: JobContext = {}): Promise<ScanResult> {
  throwIfCancelled(ctx.signal);
  const source = await (args.opener ?? nodeOpener).open(args.path);
  try {
    const ckpt = await readTorchCheckpoint(source);
    const verdict = verdictOf(ckpt);
    return {
      path: args.path,
      container: ckpt.container,
      verdict: { clean: verdict.clean, text: verdict.text },
      findings: ckpt.findings.map((f) => ({ module: f.module, name: f.name, offset: f.offset, severity: f.severity, entry: f.entry, nested: f.nested })),
      tensors: layoutOf(ckpt.root).tensors.length,
      protocol: ckpt.protocol,
    };
  } finally {
    await source.close().catch(() => undefined);
  }
}

export function renderScanText(r: ScanResult): string {
  if (r.error) return `${escapeText(r.path)}: unreadable: error[${r.error.code}]: ${escapeText(r.error.message)}\n`;
  const lines = [`${escapeText(r.path)}: ${r.verdict?.clean ? 'Only tensor data' : `This file ${r.verdict?.text}`} (${r.container}, ${r.tensors} tensors)`];
  for (const f of r.findings ?? []) {
    const where = `${f.entry ? `${escapeText(f.entry)} ` : ''}byte ${f.offset}${f.nested ? ', in a nested pickle' : ''}`;
    lines.push(`  ${f.severity === 'dangerous' ? 'DANGEROUS' : 'unknown  '}  ${escapeText(f.module)}.${escapeText(f.name)}  (${where})`);
  }
  return lines.join('\n') + '\n';
}
