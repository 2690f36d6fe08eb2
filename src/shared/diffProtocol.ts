/**
 * The messages between the extension host and the checkpoint-diff webview. Both
 * sides import this module; it follows src/shared/protocol.ts's conventions
 * (string-literal `type`s, names ending in `Message`) and stays free of Node, DOM
 * and `vscode` imports. The report data shapes mirror src/pipelines/diff.ts's
 * DiffReport, which is assignable to DiffReportData.
 *
 *   webview → host  DiffReadyMessage              once the page can receive
 *   host → webview  DiffReportMessage             the report (again when rank energy arrives)
 *   webview → host  DiffHistogramRequestMessage   Δ histogram of one tensor
 *   host → webview  DiffHistogramReplyMessage     its bins, or an error
 *   webview → host  DiffExportRequestMessage      save the report as Markdown or JSON
 */

export interface DiffTensorData {
  readonly name: string;
  readonly nameB?: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly identical: boolean;
  readonly relL2: number | null;
  readonly absL2: number;
  readonly cosine: number | null;
  readonly maxAbsDiff: number;
  readonly maxAbsIndex: readonly number[] | null;
  readonly meanAbsDiff: number;
  readonly changedFraction: number;
  readonly changedElements: number;
  readonly rankEnergy?: Readonly<Record<'1' | '4' | '16' | '64', number>>;
  readonly singularValues?: readonly number[];
  readonly note?: string;
}

export interface DiffGroupData {
  readonly group: string;
  readonly tensors: number;
  readonly changedTensors: number;
  readonly changedFraction: number;
  readonly meanRelL2: number;
  readonly maxRelL2: number;
  readonly sumSqDiff: number;
}

export interface DiffShapeChangeData {
  readonly name: string;
  readonly shapeA: readonly number[];
  readonly shapeB: readonly number[];
  readonly dtypeA: string;
  readonly dtypeB: string;
}

export interface DiffReportData {
  readonly a: string;
  readonly b: string;
  readonly mapping?: { readonly a: string; readonly b: string; readonly auto: boolean };
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly DiffShapeChangeData[];
  readonly tensors: readonly DiffTensorData[];
  readonly layers: readonly DiffGroupData[];
  readonly modules: readonly DiffGroupData[];
  readonly summary: { readonly compared: number; readonly identical: number; readonly different: number; readonly elements: number; readonly changedElements: number };
  readonly backend: string;
  readonly seconds: number;
  readonly bytesRead: number;
  readonly rankSeconds?: number;
}

export interface DiffReadyMessage {
  readonly type: 'ready';
}

export interface DiffHistogramRequestMessage {
  readonly type: 'histogram';
  readonly id: number;
  readonly name: string;
  readonly bins: number;
}

export interface DiffExportRequestMessage {
  readonly type: 'export';
  readonly format: 'markdown' | 'json';
}

export type DiffToHostMessage = DiffReadyMessage | DiffHistogramRequestMessage | DiffExportRequestMessage;

export interface DiffReportMessage {
  readonly type: 'report';
  readonly report: DiffReportData;
  /** True while the rank energy of changed 2-D tensors is still being estimated. */
  readonly rankPending: boolean;
}

export interface DiffHistogramReplyMessage {
  readonly type: 'histogram';
  readonly id: number;
  readonly name: string;
  /** Bins over [lo, hi] of Δ = b − a, counting only the elements that differ. */
  readonly lo: number;
  readonly hi: number;
  readonly counts?: Uint32Array;
  readonly error?: string;
}

export type DiffToWebviewMessage = DiffReportMessage | DiffHistogramReplyMessage;

export function isDiffToHostMessage(m: unknown): m is DiffToHostMessage {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  if (t === 'ready') return true;
  if (t === 'histogram') return typeof (m as DiffHistogramRequestMessage).name === 'string' && Number.isInteger((m as DiffHistogramRequestMessage).bins);
  if (t === 'export') return (m as DiffExportRequestMessage).format === 'markdown' || (m as DiffExportRequestMessage).format === 'json';
  return false;
}

/** Cumulative share of ‖Δ‖²_F captured by the leading singular values: the rank-energy curve. */
export function energyCurve(t: DiffTensorData): number[] {
  const total = t.absL2 * t.absL2;
  if (!t.singularValues || total <= 0) return [];
  let s = 0;
  return t.singularValues.map((x) => Math.min(1, (s += x * x) / total));
}
