/**
 * The viewer page's state, in one object: what the user chose (persisted with
 * VS Code's getState/setState, so it survives the panel being hidden without
 * retainContextWhenHidden), and what the page holds while it shows a model (the
 * summary, the tree, the requests in flight). Every module of the page receives
 * the one `Viewer` and reads and writes only through it.
 */
import { Requester, type QuantPreviewRow, type ScanRow, type SummaryReplyMessage, type TensorEntry, type TensorStatsReplyMessage } from '../../src/shared/protocol';
import type { TreeView } from './tree';

export interface VsCodeApi {
  postMessage(m: unknown): void;
  getState(): unknown;
  setState(s: unknown): void;
}

/** What survives the panel being hidden: view choices, never numbers. */
export interface SavedState {
  filter: string;
  expanded: string[];
  selected?: string;
  scrollTop: number;
  histLogCounts: boolean;
  histMagnitude: boolean;
  tab: number;
}

export type ScanSortKey = 'std' | 'absMax' | 'sparsity' | 'outliers' | 'nonFinite';

export interface ScanState {
  readonly ctl: AbortController;
  readonly rows: ScanRow[];
  sortKey: ScanSortKey;
  done: boolean;
}

export interface ViewerState {
  /** Persisted on every change (see `save`). */
  readonly saved: SavedState;
  summary?: SummaryReplyMessage;
  /** The summary's tensor columns as objects, rebuilt here rather than structured-cloned. */
  tensors: TensorEntry[];
  tree?: TreeView;
  /** Aborts the requests of the current selection when another is made. */
  selection?: AbortController;
  /** The selected tensor's statistics, to redraw the histogram in a new theme's colours. */
  lastStats?: TensorStatsReplyMessage;
  scan?: ScanState;
  /** The quantization preview running, and the last one's rows (to redraw the chart in a new theme). */
  readonly quant: { running?: AbortController; rows?: readonly QuantPreviewRow[] };
  /** Each load (the first, and one per reload) numbers itself: replies to an older one are dropped. */
  loadGeneration: number;
}

export interface Viewer {
  readonly vscode: VsCodeApi;
  readonly requester: Requester;
  readonly root: HTMLElement;
  readonly state: ViewerState;
}

/** Histogram bins requested from the host: enough to show shape, few enough to send as one small array. */
export const HISTOGRAM_BINS = 128;
/** Heatmap side requested; the host caps it at 512 as well. */
export const HEATMAP_SIZE = 512;
/** Scan rows shown at once: sorting keeps the interesting ones on top, and 500 rows render in a frame. */
export const SCAN_ROWS_SHOWN = 500;

export function createViewer(vscode: VsCodeApi, root: HTMLElement): Viewer {
  const saved: SavedState = {
    filter: '',
    expanded: [],
    scrollTop: 0,
    histLogCounts: false,
    histMagnitude: false,
    tab: 0,
    ...((vscode.getState() as Partial<SavedState> | undefined) ?? {}),
  };
  return { vscode, root, requester: new Requester((m) => vscode.postMessage(m)), state: { saved, tensors: [], quant: {}, loadGeneration: 0 } };
}

/** Changes the view choices and persists them. */
export function save(v: Viewer, patch: Partial<SavedState>): void {
  Object.assign(v.state.saved, patch);
  v.vscode.setState(v.state.saved);
}

