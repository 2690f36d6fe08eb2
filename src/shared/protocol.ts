/**
 * The one message protocol between the extension host and its webviews: the
 * viewer, the checkpoint-diff report and the quantization report. Both sides
 * import this module, so a message that one side sends and the other does not
 * understand is a compile error. Every `type` is a string literal, so messages
 * stay readable in logs and devtools.
 *
 * Shape of a conversation (the same for every page):
 *   page → host  ReadyMessage                 once the page can receive
 *   page → host  RequestMessage {id, body}    body is one of the page's request messages
 *   host → page  EventMessage {id, body}      zero or more (progress, streamed scan rows)
 *   host → page  ReplyMessage {id, ok, ...}   exactly one per request, also on error
 *   page → host  AbortMessage {id}            the host aborts that request's signal
 *   host → page  a push message               unasked: the file changed, a new report
 *
 * Each page's messages form one `Api`: its requests (each with its reply), the
 * events its requests emit and the messages the host pushes. The data the replies
 * carry is defined once, where it is computed (src/pipelines), and imported here
 * type-only. Heavy payloads travel as typed arrays, and no page ever receives a
 * tensor's values. The viewer's summary travels as columns (./columns).
 *
 * This module must stay free of Node, DOM and `vscode` imports: it is compiled for both.
 */
import type { DiffReport } from '../pipelines/diff';
import type { QuantReport } from '../pipelines/quantize';
import type { GgufArrayResult, HeatmapResult, ModelSummary, QuantPreviewResult, ScaleStatsResult, ScanResult, ScanRow, TensorStatsResult } from '../pipelines/viewer/types';

export * from './columns';
export * from './jinja';
export * from './quantizedColumns';
export type { AdapterInfo, DTypeTotal, GgufKeyRow, GgufSpecialToken, GgufSummary, GgufTokenizerSummary, GgufTypeShare, HealthBadge, HistogramData, MemoryRow, QuantPreviewRow, ScanRow, TensorStatsData } from '../pipelines/viewer/types';

/** An error as it crosses the boundary: a FormatError's code and message, or a generic code. */
export interface ErrorInfo {
  /** A FormatErrorCode ('truncated', 'dtype_unknown', …), or 'cancelled' / 'internal' / 'unknown_request' / 'bad_request'. */
  readonly code: string;
  readonly message: string;
  readonly file?: string;
  readonly tensor?: string;
}

/** What a page's messages are: request type → {request, reply}, the events requests emit, the host's pushes. */
export type Api = {
  readonly requests: Record<string, { readonly request: { readonly type: string }; readonly reply: unknown }>;
  readonly event: { readonly type: string };
  readonly push: { readonly type: string };
};

export type RequestType<A extends Api> = keyof A['requests'] & string;
export type RequestOf<A extends Api, K extends RequestType<A>> = A['requests'][K]['request'];
export type ReplyOf<A extends Api, K extends RequestType<A>> = A['requests'][K]['reply'];
export type AnyRequest<A extends Api> = A['requests'][RequestType<A>]['request'];

export interface DoneReplyMessage {
  readonly type: 'done';
}

export interface ProgressEventMessage {
  readonly type: 'progress';
  readonly done: number;
  readonly total: number;
  readonly unit: 'bytes' | 'tensors';
  readonly message?: string;
}

// ------------------------------------------------------------------- viewer

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

/** The scales of a quantized tensor (block `d`, a scheme's scale and zero-point parts): counts, range, log₂ histogram. */
export interface ScaleStatsRequestMessage {
  readonly type: 'scaleStats';
  readonly name: string;
}

export interface ScanRequestMessage {
  readonly type: 'scan';
  readonly bins: number;
}

/** Size and estimated error of each quantization scheme, from a small deterministic sample. */
export interface QuantPreviewRequestMessage {
  readonly type: 'quantPreview';
}

/** Items of a long GGUF metadata array (the vocabulary, say), a page at a time; the host caps `count` at 500. */
export interface GgufArrayRequestMessage {
  readonly type: 'ggufArray';
  readonly key: string;
  readonly start: number;
  readonly count: number;
}

export type GgufArrayReplyMessage = GgufArrayResult;

export interface ReopenWithDefaultRequestMessage {
  readonly type: 'reopenWithDefault';
}

export interface ShowAsTextRequestMessage {
  readonly type: 'showAsText';
}

export type SummaryReplyMessage = ModelSummary;
export type TensorStatsReplyMessage = TensorStatsResult;
export type HeatmapReplyMessage = HeatmapResult;
export type ScanReplyMessage = ScanResult;
export type ScaleStatsReplyMessage = ScaleStatsResult;
export type QuantPreviewReplyMessage = QuantPreviewResult;

export interface ScanRowsEventMessage {
  readonly type: 'scanRows';
  readonly rows: readonly ScanRow[];
}

/** The file changed on disk (or was deleted): every number shown is stale. */
export interface FileChangedMessage {
  readonly type: 'fileChanged';
  readonly deleted: boolean;
}

export type ViewerApi = {
  readonly requests: {
    readonly summary: { readonly request: SummaryRequestMessage; readonly reply: SummaryReplyMessage };
    readonly tensorStats: { readonly request: TensorStatsRequestMessage; readonly reply: TensorStatsReplyMessage };
    readonly heatmap: { readonly request: HeatmapRequestMessage; readonly reply: HeatmapReplyMessage };
    readonly scaleStats: { readonly request: ScaleStatsRequestMessage; readonly reply: ScaleStatsReplyMessage };
    readonly scan: { readonly request: ScanRequestMessage; readonly reply: ScanReplyMessage };
    readonly quantPreview: { readonly request: QuantPreviewRequestMessage; readonly reply: QuantPreviewReplyMessage };
    readonly ggufArray: { readonly request: GgufArrayRequestMessage; readonly reply: GgufArrayReplyMessage };
    readonly reopenWithDefault: { readonly request: ReopenWithDefaultRequestMessage; readonly reply: DoneReplyMessage };
    readonly showAsText: { readonly request: ShowAsTextRequestMessage; readonly reply: DoneReplyMessage };
  };
  readonly event: ProgressEventMessage | ScanRowsEventMessage;
  readonly push: FileChangedMessage;
};

/** The viewer's requests, replies and events by their older names. */
export type HostRequestMessage = AnyRequest<ViewerApi>;
export type ReplyFor = { [K in RequestType<ViewerApi>]: ReplyOf<ViewerApi, K> };
export type RequestEventMessage = ViewerApi['event'];

// -------------------------------------------------------------- diff report

/** The Δ histogram of one tensor: bins over [lo, hi] of b − a, counting only the elements that differ. */
export interface DiffHistogramRequestMessage {
  readonly type: 'histogram';
  readonly name: string;
  readonly bins: number;
}

export interface DiffHistogramReplyMessage {
  readonly type: 'histogram';
  readonly name: string;
  readonly lo: number;
  readonly hi: number;
  readonly counts: Uint32Array;
}

/** Save the report as Markdown or JSON (the host asks where). */
export interface DiffExportRequestMessage {
  readonly type: 'export';
  readonly format: 'markdown' | 'json';
}

/** The report, pushed once the page is ready and again when the rank energy arrives. */
export interface DiffReportMessage {
  readonly type: 'report';
  readonly report: DiffReport;
  /** True while the rank energy of changed 2-D tensors is still being estimated. */
  readonly rankPending: boolean;
}

export type DiffApi = {
  readonly requests: {
    readonly histogram: { readonly request: DiffHistogramRequestMessage; readonly reply: DiffHistogramReplyMessage };
    readonly export: { readonly request: DiffExportRequestMessage; readonly reply: DoneReplyMessage };
  };
  readonly event: never;
  readonly push: DiffReportMessage;
};

// ---------------------------------------------------- quantization report

/** The finished quantization's report; read-only, so the page asks once. */
export interface QuantReportRequestMessage {
  readonly type: 'report';
}

export interface QuantReportReplyMessage {
  readonly type: 'report';
  readonly report: QuantReport;
}

/** Open the report (and the preview, when there was one) as a Markdown document. */
export interface OpenMarkdownRequestMessage {
  readonly type: 'openMarkdown';
}

export type QuantReportApi = {
  readonly requests: {
    readonly report: { readonly request: QuantReportRequestMessage; readonly reply: QuantReportReplyMessage };
    readonly openMarkdown: { readonly request: OpenMarkdownRequestMessage; readonly reply: DoneReplyMessage };
  };
  readonly event: never;
  readonly push: never;
};

// ----------------------------------------------------------------- envelopes

export interface ReadyMessage {
  readonly type: 'ready';
}

export interface RequestMessage<B extends { readonly type: string } = HostRequestMessage> {
  readonly type: 'request';
  readonly id: number;
  readonly body: B;
}

export interface AbortMessage {
  readonly type: 'abort';
  readonly id: number;
}

export type ReplyMessage<A extends Api = ViewerApi> =
  | { readonly type: 'reply'; readonly id: number; readonly ok: true; readonly body: ReplyOf<A, RequestType<A>> }
  | { readonly type: 'reply'; readonly id: number; readonly ok: false; readonly error: ErrorInfo };

export interface EventMessage<E extends { readonly type: string } = RequestEventMessage> {
  readonly type: 'event';
  readonly id: number;
  readonly body: E;
}

export type ToHostMessage<A extends Api = ViewerApi> = ReadyMessage | RequestMessage<AnyRequest<A>> | AbortMessage;
export type ToWebviewMessage<A extends Api = ViewerApi> = ReplyMessage<A> | EventMessage<A['event']> | A['push'];

/** Type guard for messages arriving from a page, which the host must not trust blindly. */
export function isToHostMessage(m: unknown): m is ToHostMessage<Api> {
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


// ------------------------------------------------------------ on the wire

/**
 * VS Code carries a message from the extension host to a page as JSON, which has
 * no NaN or ±Infinity (they arrive as null): a lossless tensor's SNR is +∞, an
 * empty tensor's mean is NaN. Such numbers travel as `{$number: 'Infinity'}`. Typed
 * arrays pass as they are (VS Code transfers them as binary) and are not walked.
 * An object or array comes back as the same object when nothing in it changed.
 */
const NON_FINITE_KEY = '$number';

function mapDeep(v: unknown, leaf: (x: unknown) => unknown): unknown {
  const m = leaf(v);
  if (m !== v || v === null || typeof v !== 'object' || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return m;
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = mapDeep(v[i], leaf);
      if (x !== v[i]) (copy ??= v.slice())[i] = x;
    }
    return copy ?? v;
  }
  let copy: Record<string, unknown> | undefined;
  for (const [k, x] of Object.entries(v)) {
    const y = mapDeep(x, leaf);
    if (y !== x) (copy ??= { ...v })[k] = y;
  }
  return copy ?? v;
}

/** The host's side: non-finite numbers as tagged objects. */
export function toWire<T>(v: T): T {
  return mapDeep(v, (x) => (typeof x === 'number' && !Number.isFinite(x) ? { [NON_FINITE_KEY]: String(x) } : x)) as T;
}

/** The page's side: tagged objects back to numbers. */
export function fromWire<T>(v: T): T {
  return mapDeep(v, (x) => {
    if (x === null || typeof x !== 'object' || Array.isArray(x)) return x;
    const tag = (x as Record<string, unknown>)[NON_FINITE_KEY];
    return typeof tag === 'string' && Object.keys(x).length === 1 ? Number(tag) : x;
  }) as T;
}

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

const CANCELLED: ErrorInfo = { code: 'cancelled', message: 'cancelled' };

/** The error shown for anything a request rejected with: the host's ErrorInfo, or the local failure. */
export function errorInfoOf(e: unknown): ErrorInfo {
  if (e instanceof RemoteError) return e.info;
  return { code: 'internal', message: e instanceof Error ? e.message : String(e) };
}

export interface RequestOptions<E = RequestEventMessage> {
  readonly signal?: AbortSignal;
  readonly onEvent?: (e: E) => void;
}

interface Pending<E> {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onEvent?: (e: E) => void;
  cleanup(): void;
}

/**
 * The asking side (a page). `post` sends a message to the host; feed every
 * message from the host to `handle`. Aborting a request's signal sends an
 * AbortMessage and rejects at once with a 'cancelled' RemoteError.
 */
export class Requester<A extends Api = ViewerApi> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending<A['event']>>();

  // NoInfer: the page names its Api (or gets the viewer's); it is never guessed from a callback.
  constructor(private readonly post: (m: ToHostMessage<NoInfer<A>>) => void) {}

  request<K extends RequestType<A>>(body: RequestOf<A, K> & { readonly type: K }, opts: RequestOptions<A['event']> = {}): Promise<ReplyOf<A, K>> {
    const id = this.nextId++;
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(new RemoteError(CANCELLED));
    return new Promise<ReplyOf<A, K>>((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return;
        this.post({ type: 'abort', id });
        reject(new RemoteError(CANCELLED));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject,
        onEvent: opts.onEvent,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      });
      this.post({ type: 'request', id, body } as ToHostMessage<A>);
    });
  }

  /** Routes a reply or event to its request; returns false for messages that are not about a request (pushes). */
  handle(m: ToWebviewMessage<A>): boolean {
    const r = m as ReplyMessage<A> | EventMessage<A['event']>;
    if (r.type !== 'reply' && r.type !== 'event') return false;
    const p = this.pending.get(r.id);
    if (!p) return true; // a reply to an aborted request: nobody waits for it
    if (r.type === 'event') {
      p.onEvent?.(fromWire(r.body));
      return true;
    }
    this.pending.delete(r.id);
    p.cleanup();
    if (r.ok) p.resolve(fromWire(r.body));
    else p.reject(new RemoteError(r.error));
    return true;
  }

  /** Rejects every pending request (the view is going away or the file changed). */
  cancelAll(): void {
    for (const [id, p] of [...this.pending]) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(new RemoteError(CANCELLED));
    }
  }
}

export interface HandlerContext<E = RequestEventMessage> {
  readonly signal: AbortSignal;
  emit(e: E): void;
}

export type Handlers<A extends Api = ViewerApi> = { [K in RequestType<A>]: (req: RequestOf<A, K>, ctx: HandlerContext<A['event']>) => Promise<ReplyOf<A, K>> };

/**
 * The answering side (the host). Every request gets exactly one reply: a handler
 * that throws is turned into an error reply by `toError`, so the page never waits
 * forever and shows the error where the user was looking. An AbortMessage aborts
 * that request's signal, and its reply says 'cancelled'.
 */
export class ApiResponder<A extends Api> {
  private readonly running = new Map<number, AbortController>();

  constructor(
    private readonly post: (m: ToWebviewMessage<A>) => void,
    private readonly handlers: Handlers<A>,
    private readonly toError: (e: unknown) => ErrorInfo,
  ) {}

  /** Feeds one message from the page; resolves when that request has been answered. */
  async handle(m: ToHostMessage<Api>): Promise<void> {
    if (m.type === 'abort') {
      this.running.get(m.id)?.abort();
      return;
    }
    if (m.type !== 'request') return;
    const { id, body } = m;
    const ctl = new AbortController();
    this.running.set(id, ctl);
    const ctx: HandlerContext<A['event']> = {
      signal: ctl.signal,
      emit: (e) => {
        if (!ctl.signal.aborted) this.post({ type: 'event', id, body: toWire(e) } as ToWebviewMessage<A>);
      },
    };
    try {
      const handlers = this.handlers as Record<string, ((r: unknown, c: HandlerContext<A['event']>) => Promise<unknown>) | undefined>;
      const handler = Object.hasOwn(handlers, body.type) ? handlers[body.type] : undefined;
      if (!handler) throw Object.assign(new Error(`unknown request '${String(body.type)}'`), { code: 'unknown_request' });
      const result = await handler(body, ctx);
      this.post({ type: 'reply', id, ok: true, body: toWire(result) } as ToWebviewMessage<A>);
    } catch (e) {
      this.post({ type: 'reply', id, ok: false, error: ctl.signal.aborted ? CANCELLED : this.toError(e) } as ToWebviewMessage<A>);
    } finally {
      this.running.delete(id);
    }
  }

  /** Aborts every running request (the panel closed or the file changed). */
  abortAll(): void {
    for (const c of this.running.values()) c.abort();
  }
}

/** The viewer's responder: its handlers' replies are checked against the viewer's messages as they are written. */
export class Responder extends ApiResponder<ViewerApi> {}

/** A request's field that must be a string (the page is not trusted blindly): else a 'bad_request' error reply. */
export function requireString(v: unknown, what: string): string {
  if (typeof v !== 'string') throw Object.assign(new Error(`${what} must be a string`), { code: 'bad_request' });
  return v;
}

/** A request's count, clamped to [1, max]; anything that is not a finite number is a 'bad_request'. */
export function requireCount(v: unknown, what: string, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw Object.assign(new Error(`${what} must be a number`), { code: 'bad_request' });
  return Math.min(max, Math.max(1, Math.floor(v)));
}

/** A request's index: a finite number, floored, at least 0; anything else is a 'bad_request'. */
export function requireIndex(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw Object.assign(new Error(`${what} must be a number`), { code: 'bad_request' });
  return Math.max(0, Math.floor(v));
}
