/**
 * The one message protocol between the extension host and the viewer webview.
 * Both sides import this module, so a message that one side sends and the other
 * does not understand is a compile error. Every `type` is a string literal, so
 * messages stay readable in logs and devtools.
 *
 * Shape of a conversation:
 *   webview → host  ReadyMessage                 once the page can receive
 *   webview → host  RequestMessage {id, body}    body is one of the *RequestMessage types
 *   host → webview  EventMessage {id, body}      zero or more (progress, streamed scan rows)
 *   host → webview  ReplyMessage {id, ok, ...}   exactly one per request, also on error
 *   webview → host  AbortMessage {id}            the host aborts that request's signal
 *   host → webview  FileChangedMessage           the file changed on disk: drop all results
 *
 * Heavy payloads (histogram counts, heatmap pixels) travel as typed arrays, never
 * as number arrays, and the webview never receives raw tensor data.
 *
 * This module must stay free of Node, DOM and `vscode` imports: it is compiled for both.
 */

// ---------------------------------------------------------------- data shapes

/** An error as it crosses the boundary: a FormatError's code and message, or a generic code. */
export interface ErrorInfo {
  /** A FormatErrorCode ('truncated', 'dtype_unknown', …), or 'cancelled' / 'internal' / 'unknown_request'. */
  readonly code: string;
  readonly message: string;
  readonly file?: string;
  readonly tensor?: string;
}

export interface TensorEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Index into SummaryReplyMessage.files. */
  readonly file: number;
  readonly byteOffset: number;
  readonly byteLength: number;
  /** False when the viewer cannot decode this dtype to numbers; its metadata still shows. */
  readonly decodable: boolean;
}

/** A node of the module tree. Runs of numbered blocks (`layers ×32`) and MoE experts arrive folded. */
export interface TreeNodeData {
  /** What the row shows: `mlp`, `layers ×32`, `experts ×8`, `weight`. */
  readonly label: string;
  /** Dotted path of the module or tensor (`model.layers.{0..31}` for a run). */
  readonly path: string;
  readonly kind: 'module' | 'run' | 'tensor';
  /** For a tensor: its index in SummaryReplyMessage.tensors. */
  readonly tensor?: number;
  /** Number of tensors below this node (1 for a tensor). */
  readonly tensors: number;
  readonly params: number;
  readonly bytes: number;
  readonly children?: readonly TreeNodeData[];
}

/**
 * The tensor list as columns. A summary of 50,000 tensors as 50,000 objects (each
 * with a shape array) costs the structured clone between host and webview about a
 * second; as a few typed arrays and one array of names it costs a few ms. Both
 * sides convert with `tensorTable` / `tensorEntries`.
 */
/**
 * Many strings as one buffer plus the end of each, in UTF-16 code units of their
 * concatenation. A webview message carries typed arrays as binary and the rest as
 * JSON, through every hop between a remote extension host and the page: 50,000
 * tensor names and tree paths as arrays of strings cost most of a second there, as
 * one buffer they cost a copy.
 */
export interface StringColumn {
  /** The concatenation as UTF-8, or as UTF-16LE code units when it holds a lone surrogate (which UTF-8 cannot carry). */
  readonly bytes: Uint8Array;
  readonly utf16: boolean;
  readonly ends: Uint32Array;
}

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function packStrings(list: readonly string[]): StringColumn {
  const ends = new Uint32Array(list.length);
  let n = 0;
  for (let i = 0; i < list.length; i++) ends[i] = n += list[i]!.length;
  const text = list.join('');
  if (!LONE_SURROGATE.test(text)) return { bytes: new TextEncoder().encode(text), utf16: false, ends };
  const units = new Uint16Array(text.length);
  for (let i = 0; i < text.length; i++) units[i] = text.charCodeAt(i);
  return { bytes: new Uint8Array(units.buffer), utf16: true, ends };
}

export function unpackStrings(c: StringColumn): string[] {
  let text: string;
  if (!c.utf16) text = new TextDecoder().decode(c.bytes);
  else {
    // Exact for any code unit (a decoder would replace lone surrogates); in slices, to stay under argument limits.
    const units = new Uint16Array(c.bytes.buffer.slice(c.bytes.byteOffset, c.bytes.byteOffset + c.bytes.byteLength));
    const parts: string[] = [];
    for (let i = 0; i < units.length; i += 8192) parts.push(String.fromCharCode(...units.subarray(i, i + 8192)));
    text = parts.join('');
  }
  const out = new Array<string>(c.ends.length);
  let start = 0;
  for (let i = 0; i < c.ends.length; i++) {
    out[i] = text.slice(start, c.ends[i]);
    start = c.ends[i]!;
  }
  return out;
}

export interface TensorTable {
  readonly names: StringColumn;
  /** Distinct dtype names; `dtype[i]` indexes this list. */
  readonly dtypes: readonly string[];
  readonly dtype: Uint8Array;
  readonly rank: Uint8Array;
  /** Every tensor's shape, concatenated in tensor order (32-bit unless a dimension needs more). */
  readonly dims: Uint32Array | Float64Array;
  readonly file: Uint32Array;
  readonly byteOffset: Float64Array;
  readonly byteLength: Float64Array;
  readonly decodable: Uint8Array;
}

/** The columns of `entries`; `decodable` overrides the entries' own flag (the host passes its tensor infos as they are). */
export function tensorTable<E extends Omit<TensorEntry, 'decodable'> & { decodable?: boolean }>(entries: readonly E[], isDecodable: (e: E) => boolean = (e) => e.decodable === true): TensorTable {
  const n = entries.length;
  const dtypes: string[] = [];
  const dtypeIndex = new Map<string, number>();
  const dtype = new Uint8Array(n);
  const rank = new Uint8Array(n);
  let ndims = 0;
  let wide = false;
  for (const e of entries) {
    ndims += e.shape.length;
    for (const x of e.shape) if (x > 0xffffffff) wide = true;
  }
  const dims = wide ? new Float64Array(ndims) : new Uint32Array(ndims);
  const file = new Uint32Array(n);
  const byteOffset = new Float64Array(n);
  const byteLength = new Float64Array(n);
  const decodable = new Uint8Array(n);
  let d = 0;
  entries.forEach((e, i) => {
    let k = dtypeIndex.get(e.dtype);
    if (k === undefined) {
      k = dtypes.push(e.dtype) - 1;
      dtypeIndex.set(e.dtype, k);
    }
    dtype[i] = k;
    rank[i] = e.shape.length;
    for (const x of e.shape) dims[d++] = x;
    file[i] = e.file;
    byteOffset[i] = e.byteOffset;
    byteLength[i] = e.byteLength;
    decodable[i] = isDecodable(e) ? 1 : 0;
  });
  return { names: packStrings(entries.map((e) => e.name)), dtypes, dtype, rank, dims, file, byteOffset, byteLength, decodable };
}

export function tensorEntries(t: TensorTable): TensorEntry[] {
  const names = unpackStrings(t.names);
  const out: TensorEntry[] = new Array(names.length);
  let d = 0;
  for (let i = 0; i < names.length; i++) {
    const r = t.rank[i]!;
    const shape = new Array<number>(r);
    let numel = 1;
    for (let k = 0; k < r; k++) numel *= shape[k] = t.dims[d + k]!;
    d += r;
    out[i] = {
      name: names[i]!,
      dtype: t.dtypes[t.dtype[i]!]!,
      shape,
      numel,
      file: t.file[i]!,
      byteOffset: t.byteOffset[i]!,
      byteLength: t.byteLength[i]!,
      decodable: t.decodable[i] === 1,
    };
  }
  return out;
}

export const TREE_KINDS = ['module', 'run', 'tensor'] as const;

/**
 * The module tree as columns, in pre-order (a parent precedes its children). A
 * tensor node is only its parent, kind and tensor index: its path, label and sizes
 * are its tensor's (name, last dotted part, numel, byte length), which the tensor
 * table carries, so the columns of text and sizes hold the other nodes (modules and
 * runs, the "groups") only, in node order.
 */
export interface TreeTable {
  readonly parent: Int32Array;
  readonly kind: Uint8Array;
  /** Tensor index, or -1. */
  readonly tensor: Int32Array;
  /** A group's unique path (`model.layers.{0..31}` for a run). */
  readonly path: StringColumn;
  /** A group row's text when it is not the path's last dotted part (`layers ×32`), else ''. */
  readonly label: StringColumn;
  readonly tensors: Float64Array;
  readonly params: Float64Array;
  readonly bytes: Float64Array;
}

/** Builds a TreeTable node by node, parents first. */
export class TreeTableBuilder {
  private readonly parent: number[] = [];
  private readonly kind: number[] = [];
  private readonly tensor: number[] = [];
  private readonly path: string[] = [];
  private readonly label: string[] = [];
  private readonly tensors: number[] = [];
  private readonly params: number[] = [];
  private readonly bytes: number[] = [];

  /** Adds a node; a tensor node's path, label and sizes are its tensor's and are not stored. */
  add(parent: number, kind: TreeNodeData['kind'], path: string, label: string, tensor: number, tensors: number, params: number, bytes: number): number {
    this.parent.push(parent);
    this.kind.push(TREE_KINDS.indexOf(kind));
    const isTensor = kind === 'tensor' && tensor >= 0;
    this.tensor.push(isTensor ? tensor : -1);
    if (!isTensor) {
      this.path.push(path);
      this.label.push(label === '' || label === lastPart(path) ? '' : label);
      this.tensors.push(tensors);
      this.params.push(params);
      this.bytes.push(bytes);
    }
    return this.parent.length - 1;
  }

  build(): TreeTable {
    return {
      parent: Int32Array.from(this.parent),
      kind: Uint8Array.from(this.kind),
      tensor: Int32Array.from(this.tensor),
      path: packStrings(this.path),
      label: packStrings(this.label),
      tensors: Float64Array.from(this.tensors),
      params: Float64Array.from(this.params),
      bytes: Float64Array.from(this.bytes),
    };
  }
}

function lastPart(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1);
}

/** Flattens a tree of objects (pre-order). */
export function treeTable(root: TreeNodeData): TreeTable {
  const b = new TreeTableBuilder();
  const visit = (n: TreeNodeData, parent: number) => {
    const i = b.add(parent, n.kind, n.path, n.label, n.tensor ?? -1, n.tensors, n.params, n.bytes);
    for (const c of n.children ?? []) visit(c, i);
  };
  visit(root, -1);
  return b.build();
}

/**
 * Rebuilds the tree's objects on the receiving side (cheap: no structured clone
 * involved); `tensors` is the tensor table's rows, which describe the tensor nodes.
 */
export function treeFromTable(t: TreeTable, tensors: readonly Pick<TensorEntry, 'name' | 'numel' | 'byteLength'>[]): TreeNodeData {
  type Mutable = { -readonly [K in keyof TreeNodeData]: TreeNodeData[K] } & { children?: Mutable[] };
  const nodes: Mutable[] = new Array(t.parent.length);
  const paths = unpackStrings(t.path);
  const labels = unpackStrings(t.label);
  let g = 0;
  for (let i = 0; i < t.parent.length; i++) {
    const p = t.parent[i]!;
    const kind = TREE_KINDS[t.kind[i]!]!;
    const tensor = t.tensor[i]!;
    let node: Mutable;
    if (tensor >= 0) {
      const e = tensors[tensor]!;
      node = { label: lastPart(e.name), path: e.name, kind, tensor, tensors: 1, params: e.numel, bytes: e.byteLength };
    } else {
      const path = paths[g]!;
      node = { label: labels[g] || lastPart(path), path, kind, tensors: t.tensors[g]!, params: t.params[g]!, bytes: t.bytes[g]! };
      g++;
    }
    nodes[i] = node;
    if (p >= 0) (nodes[p]!.children ??= []).push(node);
  }
  return nodes[0]!;
}

/** A LoRA adapter file (PEFT or kohya), described from its header and config. */
export interface AdapterInfo {
  readonly format: string;
  readonly modules: number;
  readonly targets: readonly string[];
  readonly ranks: readonly number[];
  readonly alphas: readonly number[];
  readonly scales: readonly number[];
  readonly useRslora: boolean;
  readonly dora: boolean;
}

export interface DTypeTotal {
  readonly dtype: string;
  readonly tensors: number;
  readonly params: number;
  readonly bytes: number;
}

export type MemoryFormat = 'FP32' | 'BF16' | 'FP8' | 'Q8_0' | 'Q4_0';

export interface MemoryRow {
  readonly format: MemoryFormat;
  readonly bytes: number;
}

export interface HistogramData {
  readonly min: number;
  readonly max: number;
  readonly counts: Float64Array;
}

/** Statistics of one tensor, as `stats` defines them. */
export interface TensorStatsData {
  readonly name: string;
  readonly count: number;
  readonly finite: number;
  readonly nan: number;
  readonly posInf: number;
  readonly negInf: number;
  readonly zeros: number;
  readonly nearZero: number;
  readonly min: number;
  readonly max: number;
  readonly absMax: number;
  readonly mean: number;
  readonly std: number;
  readonly outliers: number;
  readonly histogram: HistogramData;
  readonly logHistogram: HistogramData;
  /** Flat element indices and values, largest |x| first. */
  readonly topK: readonly { readonly index: number; readonly value: number }[];
}

/** One row of the whole-model scan: the numbers the table sorts by, no histograms. */
export interface ScanRow {
  readonly name: string;
  readonly dtype: string;
  readonly count: number;
  readonly std: number;
  readonly absMax: number;
  /** zeros / count (0 for an empty tensor). */
  readonly sparsity: number;
  readonly outliers: number;
  /** nan + posInf + negInf. */
  readonly nonFinite: number;
  readonly badges: readonly HealthBadge[];
  /** Set instead of the numbers when this tensor could not be scanned (undecodable dtype). */
  readonly error?: ErrorInfo;
}

export type HealthBadge = 'non-finite' | 'all-zero' | 'f16-overflow';

// ------------------------------------------------------- webview → host requests

export interface SummaryRequestMessage {
  readonly type: 'summary';
  /**
   * Ask for the outline first: totals, metadata and the tree down to the members of
   * folded runs (not their contents), with only the tensors that outline shows. It
   * is ready and small long before the whole table of a 50,000-tensor model; the
   * page asks for the whole summary next. A host may answer with the whole summary.
   */
  readonly outline?: boolean;
}

export interface TensorStatsRequestMessage {
  readonly type: 'tensorStats';
  readonly name: string;
  readonly bins: number;
}

export interface HeatmapRequestMessage {
  readonly type: 'heatmap';
  readonly name: string;
  /** Largest width and height of the image; the host caps it at 512. */
  readonly maxSize: number;
}

export interface ScanRequestMessage {
  readonly type: 'scan';
  readonly bins: number;
}

/** Size and estimated error of each quantization scheme, from a small deterministic sample. */
export interface QuantPreviewRequestMessage {
  readonly type: 'quantPreview';
}

export interface ReopenWithDefaultRequestMessage {
  readonly type: 'reopenWithDefault';
}

export interface ShowAsTextRequestMessage {
  readonly type: 'showAsText';
}

export type HostRequestMessage =
  | SummaryRequestMessage
  | TensorStatsRequestMessage
  | HeatmapRequestMessage
  | ScanRequestMessage
  | QuantPreviewRequestMessage
  | ReopenWithDefaultRequestMessage
  | ShowAsTextRequestMessage;

// -------------------------------------------------------------- replies (results)

export interface SummaryReplyMessage {
  readonly type: 'summary';
  /** An outline (see SummaryRequestMessage.outline): `tensors` and `tree` cover only what it shows. */
  readonly outline?: boolean;
  /** What was opened (file, index.json); shown in the header. */
  readonly path: string;
  readonly files: readonly { readonly path: string; readonly bytes: number; readonly headerBytes: number }[];
  readonly tensors: TensorTable;
  readonly totals: { readonly tensors: number; readonly params: number; readonly bytes: number; readonly byDtype: readonly DTypeTotal[] };
  readonly memory: readonly MemoryRow[];
  readonly metadata: readonly (readonly [string, string])[];
  readonly tree: TreeTable;
  /** Present when the file is a LoRA adapter. */
  readonly adapter?: AdapterInfo;
}

export interface TensorStatsReplyMessage {
  readonly type: 'tensorStats';
  readonly stats: TensorStatsData;
  readonly backend: string;
  readonly seconds: number;
}

export interface HeatmapReplyMessage {
  readonly type: 'heatmap';
  readonly name: string;
  /** Image size in cells; each cell covers a block of the matrix. */
  readonly width: number;
  readonly height: number;
  /** The matrix the image covers: rank-1 tensors are one row, rank > 2 folds leading dims into rows. */
  readonly rows: number;
  readonly cols: number;
  /** max |x| of each cell, scaled so 255 is `scale`; row-major, width × height bytes. */
  readonly pixels: Uint8Array;
  /** The largest finite |x| of the whole tensor (the value of pixel 255). */
  readonly scale: number;
  /** Cells holding a NaN or ±Inf, marked separately (1) so they can be drawn in a warning colour. */
  readonly nonFinite: Uint8Array;
}

export interface ScanReplyMessage {
  readonly type: 'scan';
  readonly tensors: number;
  readonly seconds: number;
  readonly backend: string;
}

export interface QuantPreviewRow {
  readonly scheme: string;
  readonly description: string;
  readonly bytesAfter: number;
  readonly bitsPerWeight: number;
  readonly quantizedTensors: number;
  readonly keptTensors: number;
  /** Absent when nothing could be sampled for this scheme. */
  readonly rmse?: number;
  readonly snrDb?: number;
  readonly cosine?: number;
}

export interface QuantPreviewReplyMessage {
  readonly type: 'quantPreview';
  readonly bytesBefore: number;
  readonly params: number;
  readonly sampleFraction: number;
  readonly seconds: number;
  readonly rows: readonly QuantPreviewRow[];
}

export interface DoneReplyMessage {
  readonly type: 'done';
}

/** What each request type answers with. */
export interface ReplyFor {
  summary: SummaryReplyMessage;
  tensorStats: TensorStatsReplyMessage;
  heatmap: HeatmapReplyMessage;
  scan: ScanReplyMessage;
  quantPreview: QuantPreviewReplyMessage;
  reopenWithDefault: DoneReplyMessage;
  showAsText: DoneReplyMessage;
}

export type RequestType = HostRequestMessage['type'];
export type RequestOf<K extends RequestType> = Extract<HostRequestMessage, { type: K }>;

// ----------------------------------------------------- events during a request

export interface ProgressEventMessage {
  readonly type: 'progress';
  readonly done: number;
  readonly total: number;
  readonly unit: 'bytes' | 'tensors';
  readonly message?: string;
}

export interface ScanRowsEventMessage {
  readonly type: 'scanRows';
  readonly rows: readonly ScanRow[];
}

export type RequestEventMessage = ProgressEventMessage | ScanRowsEventMessage;

// ----------------------------------------------------------------- envelopes

export interface ReadyMessage {
  readonly type: 'ready';
}

export interface RequestMessage<B extends HostRequestMessage = HostRequestMessage> {
  readonly type: 'request';
  readonly id: number;
  readonly body: B;
}

export interface AbortMessage {
  readonly type: 'abort';
  readonly id: number;
}

export type ReplyMessage =
  | { readonly type: 'reply'; readonly id: number; readonly ok: true; readonly body: ReplyFor[RequestType] }
  | { readonly type: 'reply'; readonly id: number; readonly ok: false; readonly error: ErrorInfo };

export interface EventMessage {
  readonly type: 'event';
  readonly id: number;
  readonly body: RequestEventMessage;
}

/** The file changed on disk (or was deleted): every number shown is stale. */
export interface FileChangedMessage {
  readonly type: 'fileChanged';
  readonly deleted: boolean;
}

export type ToHostMessage = ReadyMessage | RequestMessage | AbortMessage;
export type ToWebviewMessage = ReplyMessage | EventMessage | FileChangedMessage;

// ------------------------------------------------------ request/response helper

/** The error a requester rejects with when the other side replied with an error. */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';
  constructor(readonly info: ErrorInfo) {
    super(info.message);
  }
  get cancelled(): boolean {
    return this.info.code === 'cancelled';
  }
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
  readonly onEvent?: (e: RequestEventMessage) => void;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onEvent?: (e: RequestEventMessage) => void;
  cleanup(): void;
}

/**
 * The asking side (the webview). `post` sends a message to the host; feed every
 * message from the host to `handle`. Aborting a request's signal sends an
 * AbortMessage and rejects at once with a 'cancelled' RemoteError.
 */
export class Requester {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly post: (m: ToHostMessage) => void) {}

  request<K extends RequestType>(body: RequestOf<K>, opts: RequestOptions = {}): Promise<ReplyFor[K]> {
    const id = this.nextId++;
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(new RemoteError({ code: 'cancelled', message: 'cancelled' }));
    return new Promise<ReplyFor[K]>((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return;
        this.post({ type: 'abort', id });
        reject(new RemoteError({ code: 'cancelled', message: 'cancelled' }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject,
        onEvent: opts.onEvent,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      });
      this.post({ type: 'request', id, body });
    });
  }

  /** Routes a reply or event to its request; returns false for messages that are not about a request. */
  handle(m: ToWebviewMessage): boolean {
    if (m.type !== 'reply' && m.type !== 'event') return false;
    const p = this.pending.get(m.id);
    if (!p) return true; // a reply to an aborted request: nobody waits for it
    if (m.type === 'event') {
      p.onEvent?.(m.body);
      return true;
    }
    this.pending.delete(m.id);
    p.cleanup();
    if (m.ok) p.resolve(m.body);
    else p.reject(new RemoteError(m.error));
    return true;
  }

  /** Rejects every pending request (the view is going away or the file changed). */
  cancelAll(): void {
    for (const [id, p] of [...this.pending]) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(new RemoteError({ code: 'cancelled', message: 'cancelled' }));
    }
  }
}

export interface HandlerContext {
  readonly signal: AbortSignal;
  emit(e: RequestEventMessage): void;
}

export type Handlers = { [K in RequestType]: (req: RequestOf<K>, ctx: HandlerContext) => Promise<ReplyFor[K]> };

/**
 * The answering side (the host). Every request gets exactly one reply: a handler
 * that throws is turned into an error reply by `toError`, so the webview never
 * waits forever. An AbortMessage aborts that request's signal.
 */
export class Responder {
  private readonly running = new Map<number, AbortController>();

  constructor(
    private readonly post: (m: ToWebviewMessage) => void,
    private readonly handlers: Handlers,
    private readonly toError: (e: unknown) => ErrorInfo,
  ) {}

  /** Feeds one message from the webview; resolves when that request has been answered. */
  async handle(m: ToHostMessage): Promise<void> {
    if (m.type === 'abort') {
      this.running.get(m.id)?.abort();
      return;
    }
    if (m.type !== 'request') return;
    const { id, body } = m;
    const ctl = new AbortController();
    this.running.set(id, ctl);
    const ctx: HandlerContext = {
      signal: ctl.signal,
      emit: (e) => {
        if (!ctl.signal.aborted) this.post({ type: 'event', id, body: e });
      },
    };
    try {
      const handler = this.handlers[body.type] as ((r: HostRequestMessage, c: HandlerContext) => Promise<ReplyFor[RequestType]>) | undefined;
      if (!handler) throw Object.assign(new Error(`unknown request '${String((body as { type: unknown }).type)}'`), { code: 'unknown_request' });
      const result = await handler(body, ctx);
      this.post({ type: 'reply', id, ok: true, body: result });
    } catch (e) {
      this.post({ type: 'reply', id, ok: false, error: ctl.signal.aborted ? { code: 'cancelled', message: 'cancelled' } : this.toError(e) });
    } finally {
      this.running.delete(id);
    }
  }

  /** Aborts every running request (the panel closed or the file changed). */
  abortAll(): void {
    for (const c of this.running.values()) c.abort();
  }
}

/** Type guard for messages arriving from the webview, which the host must not trust blindly. */
export function isToHostMessage(m: unknown): m is ToHostMessage {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  if (t === 'ready') return true;
  if (t === 'abort') return typeof (m as { id?: unknown }).id === 'number';
  if (t === 'request') {
    const r = m as { id?: unknown; body?: unknown };
    return typeof r.id === 'number' && typeof r.body === 'object' && r.body !== null && typeof (r.body as { type?: unknown }).type === 'string';
  }
  return false;
}
