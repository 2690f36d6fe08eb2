import * as vscode from 'vscode';
import { formatSize } from '../core/units';
import { SCHEMES, type SchemeName } from '../pipelines/runtime';
import type { PreviewResult } from '../pipelines/quantize';
import type { GgufEstimate, GgufEstimateResult } from '../pipelines/ggufEstimate';
import type { GgufOutType } from '../pipelines/ggufTensorStream';
import type { FtypeName } from '../pipelines/llamaFtype';

/**
 * The one QuickPick in which Quantize… and Convert to GGUF… pick what to write: today's
 * single-type schemes and llama.cpp file types (per-tensor types as llama-quantize chooses them), each with its size, bits per weight and, where sampled, its estimated error.
 */

export type TypeChoice = { readonly kind: 'gguf'; readonly target: GgufOutType | FtypeName } | { readonly kind: 'scheme'; readonly scheme: SchemeName };

export interface TypeItem extends vscode.QuickPickItem {
  readonly choice?: TypeChoice;
}

function errorText(snrDb: number | undefined, cosine: number | undefined): string {
  if (snrDb === undefined) return 'error –';
  const snr = Number.isFinite(snrDb) ? `${snrDb.toFixed(1)} dB` : 'exact';
  return `SNR ${snr} · cosine ${cosine !== undefined ? cosine.toFixed(5) : '–'}`;
}

const LOSSLESS: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);

function ggufDescription(e: GgufEstimate): string {
  const err = LOSSLESS.has(e.target) ? 'float cast' : errorText(e.snrDb, e.cosine);
  return `${formatSize(e.bytes, 'MiB')} · ${e.bitsPerWeight.toFixed(2)} bits/w · ${err}`;
}

/** One item per GGUF target, labelled as llama.cpp names it; the detail lists the real per-tensor types. */
export function ggufItems(r: GgufEstimateResult): TypeItem[] {
  return r.estimates.map((e) => ({
    choice: { kind: 'gguf', target: e.target },
    label: e.target,
    description: ggufDescription(e),
    detail: `GGUF for llama.cpp: ${Object.entries(e.mix).map(([t, n]) => `${n} ${t}`).join(', ')}${e.sampledTensors ? `; error from ${e.sampledTensors} sampled tensors` : ''}`,
  }));
}

/** One item per single-type scheme, from the quantization preview. */
export function schemeItems(p: PreviewResult): TypeItem[] {
  return p.rows.map((r) => ({
    choice: { kind: 'scheme', scheme: r.scheme },
    label: r.scheme,
    description: `${formatSize(r.bytesAfter, 'MiB')} · ${r.bitsPerWeight.toFixed(2)} bits/w · ${errorText(r.snrDb, r.cosine)}`,
    detail: `${SCHEMES[r.scheme].description}; ${r.quantizedTensors} tensors quantized, ${r.keptTensors} kept`,
  }));
}

export interface TypePickOptions {
  readonly title: string;
  readonly placeholder: string;
  readonly gguf?: readonly TypeItem[];
  readonly schemes?: readonly TypeItem[];
  /** Label of the item to start on. */
  readonly preferred?: string;
}

/** Shows the QuickPick; file types and schemes under their own separators. */
export async function pickType(o: TypePickOptions): Promise<TypeChoice | undefined> {
  const items: TypeItem[] = [];
  const both = o.gguf?.length && o.schemes?.length;
  // Schemes first: a typed `q8_0` (also a file type's name) still picks the scheme it always did.
  if (o.schemes?.length) items.push(...(both ? [{ label: 'One type for every weight', kind: vscode.QuickPickItemKind.Separator }] : []), ...o.schemes);
  if (o.gguf?.length) items.push(...(both ? [{ label: 'llama.cpp file types (GGUF, per-tensor types as llama-quantize picks them)', kind: vscode.QuickPickItemKind.Separator }] : []), ...o.gguf);
  const qp = vscode.window.createQuickPick<TypeItem>();
  qp.title = o.title;
  qp.placeholder = o.placeholder;
  qp.items = items;
  qp.matchOnDescription = true;
  qp.activeItems = items.filter((i) => i.choice && i.label === o.preferred);
  const pick = await new Promise<TypeItem | undefined>((resolve) => {
    qp.onDidAccept(() => resolve(qp.selectedItems[0]));
    qp.onDidHide(() => resolve(undefined));
    qp.show();
  });
  qp.dispose();
  return pick?.choice;
}
