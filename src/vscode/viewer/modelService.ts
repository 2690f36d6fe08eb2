/**
 * Everything the viewer's host side computes for one opened model, without
 * `vscode`: the summary (tensors, totals, memory table, module tree), one
 * tensor's statistics, a heatmap, and the whole-model scan. The provider wires
 * these to the webview through the protocol's Responder; the tests call them
 * directly on generated files.
 */
import { decodeToF32 } from '../../format/decode';
import { FormatError, isFormatError } from '../../format/errors';
import { storageOf, typeNameOf, type Model, type TensorInfo } from '../../format/model';
import { storageUnit } from '../../format/storage';
import { decodeStorageF32 } from '../../pipelines/runtime';
import { estimateMemory } from '../../pipelines/memory';
import { buildModuleTree, type ModuleNode } from '../../pipelines/moduleTree';
import { stats, type TensorStats } from '../../pipelines/stats';
import { CancelledError, isCancelled, throwIfCancelled, type Progress } from '../../core/job';
import type { BackendChoice } from '../../core/job';
import { describeAdapter } from '../../pipelines/lora';
import { preview } from '../../pipelines/quantize';
import type {
  AdapterInfo,
  DTypeTotal,
  ErrorInfo,
  HeatmapReplyMessage,
  HealthBadge,
  QuantPreviewReplyMessage,
  RequestEventMessage,
  ScanReplyMessage,
  ScanRow,
  SummaryReplyMessage,
  TensorStatsData,
  TensorStatsReplyMessage,
  TreeTable,
} from '../../shared/protocol';
import { TreeTableBuilder, tensorTable } from '../../shared/protocol';
import { HEATMAP_MAX_SIZE, HeatmapAccumulator, matrixShape } from './heatmap';
import { ResultCache, resultKey, stampKey, type FileStamp } from './resultCache';

/**
 * How long the adapter panel may spend on a config's rank/alpha patterns. The work runs
 * on the extension host's thread, so past this the file is shown as a plain model
 * rather than stall the window; `merge` itself allows the longer default.
 */
const VIEWER_PATTERN_TIME_MS = 500;

/** C64 decodes to (real, imaginary) pairs: there is no single value to histogram or draw. */
export function isViewable(dtype: string): boolean {
  return dtype !== 'C64';
}

// ---------------------------------------------------------------- summary

/**
 * Converts the folded module tree to the protocol's tree table. A fold (`{0..31}`)
 * becomes a `run` node whose children are its real members (`0` … `31`), each
 * with its real tensors: a fold's structure is that of every member, and a
 * tensor's name is its module path plus its own name, so each member's tensors
 * are found by rebuilding paths from the member's real prefix.
 */
export function treeTableOf(root: ModuleNode, indexOf: (fullName: string) => number | undefined, outline = false): TreeTable {
  const b = new TreeTableBuilder();
  const join = (a: string, c: string) => (a ? `${a}.${c}` : c);

  /** Emits `m`, seen at the real path `path` (for a fold's member: that member's path). */
  const module = (m: ModuleNode, parent: number, path: string, totals: { tensorCount: number; params: number; bytes: number }): void => {
    const me = b.add(parent, 'module', path, '', -1, totals.tensorCount, totals.params, totals.bytes);
    for (const c of m.children) {
      if (c.fold) run(c, me, path, `${c.name} ×${c.fold.count}`);
      else if (c.children.length === 1 && c.tensors.length === 0 && c.children[0]!.fold) {
        // A module whose only content is one fold shows as that run: `layers ×32`.
        const f = c.children[0]!;
        run(f, me, join(path, c.name), `${c.name} ×${f.fold!.count}`);
      } else module(c, me, join(path, c.name), c);
    }
    for (const t of m.tensors) {
      // Outside a fold (and in a fold's first member) the tree's own full name is this tensor's: no new string to hash.
      const full = t.fullName.length === path.length + t.name.length + (path ? 1 : 0) && t.fullName.startsWith(path) ? t.fullName : join(path, t.name);
      const index = indexOf(full);
      if (index !== undefined) b.add(me, 'tensor', full, '', index, 1, t.params, t.bytes);
    }
  };

  /** A fold under the real module path `parentPath`: one child per member, at the member's real path. */
  const run = (f: ModuleNode, parentIndex: number, parentPath: string, label: string): void => {
    const fold = f.fold!;
    const me = b.add(parentIndex, 'run', join(parentPath, f.name), label, -1, f.tensorCount, f.params, f.bytes);
    for (const member of fold.members) {
      const path = join(parentPath, member.slice(member.lastIndexOf('.') + 1));
      // An outline stops at the members: a folded run opens on its members, each still closed.
      if (outline) b.add(me, 'module', path, '', -1, fold.each.tensorCount, fold.each.params, fold.each.bytes);
      else module(f, me, path, fold.each);
    }
  };

  module(root, -1, '', root);
  return b.build();
}

function totalsOf(model: Model): Pick<SummaryReplyMessage, 'totals' | 'memory'> {
  const byDtype = new Map<string, { tensors: number; params: number; bytes: number }>();
  let params = 0;
  let bytes = 0;
  for (const t of model.tensors) {
    const type = typeNameOf(t);
    const d = byDtype.get(type) ?? { tensors: 0, params: 0, bytes: 0 };
    d.tensors++;
    d.params += t.numel;
    d.bytes += t.byteLength;
    byDtype.set(type, d);
    params += t.numel;
    bytes += t.byteLength;
  }
  const totals: DTypeTotal[] = [...byDtype]
    .map(([dtype, d]) => ({ dtype, ...d }))
    .sort((a, b) => b.bytes - a.bytes || a.dtype.localeCompare(b.dtype));
  return {
    totals: { tensors: model.tensors.length, params, bytes, byDtype: totals },
    memory: estimateMemory(params).map((m) => ({ format: m.format, bytes: m.bytes })),
  };
}

function moduleTreeOf(model: Model): ModuleNode {
  return buildModuleTree(model.tensors.map((t) => ({ name: t.name, dtype: typeNameOf(t), shape: t.shape, byteLength: t.byteLength })));
}

/** The outline of a model (see SummaryRequestMessage.outline): its tensor table holds the outline's tensors only. */
export function buildOutline(model: Model, tree: ModuleNode = moduleTreeOf(model)): SummaryReplyMessage {
  const indexOf = new Map(model.tensors.map((t, i) => [t.name, i]));
  const shown: TensorInfo[] = [];
  const table = treeTableOf(
    tree,
    (name) => {
      const i = indexOf.get(name);
      if (i === undefined) return undefined;
      return shown.push(model.tensors[i]!) - 1;
    },
    true,
  );
  return {
    type: 'summary',
    outline: true,
    path: model.path,
    files: model.files.map((f) => ({ path: f.path, bytes: f.bytes, headerBytes: f.headerBytes })),
    tensors: tensorTable(shown, (t) => isViewable(t.dtype)),
    ...totalsOf(model),
    metadata: Object.entries(model.metadata),
    tree: table,
  };
}

export function buildSummary(model: Model, tree: ModuleNode = moduleTreeOf(model)): SummaryReplyMessage {
  const indexOf = new Map(model.tensors.map((t, i) => [t.name, i]));
  return {
    type: 'summary',
    path: model.path,
    files: model.files.map((f) => ({ path: f.path, bytes: f.bytes, headerBytes: f.headerBytes })),
    tensors: tensorTable(model.tensors, (t) => isViewable(t.dtype)),
    ...totalsOf(model),
    metadata: Object.entries(model.metadata),
    tree: treeTableOf(tree, (name) => indexOf.get(name)),
  };
}

// ------------------------------------------------------------------ stats

const num = (v: number | null): number => (v === null ? NaN : v);

export function statsData(s: TensorStats): TensorStatsData {
  return {
    name: s.name,
    count: s.count,
    finite: s.finite,
    nan: s.nan,
    posInf: s.posInf,
    negInf: s.negInf,
    zeros: s.zeros,
    nearZero: s.nearZero,
    min: num(s.min),
    max: num(s.max),
    absMax: num(s.absMax),
    mean: num(s.mean),
    std: num(s.std),
    outliers: s.outliers,
    histogram: { min: num(s.histogram.min), max: num(s.histogram.max), counts: Float64Array.from(s.histogram.counts) },
    logHistogram: { min: num(s.logHistogram.min), max: num(s.logHistogram.max), counts: Float64Array.from(s.logHistogram.counts) },
    topK: s.topK.map((k) => ({ index: k.index, value: k.value })),
  };
}

/** F16's largest finite value: a tensor above it would overflow if cast to F16. */
export const F16_MAX = 65504;

export function healthBadges(s: { nan: number; posInf: number; negInf: number; zeros: number; count: number; absMax: number | null; dtype: string }): HealthBadge[] {
  const b: HealthBadge[] = [];
  if (s.nan + s.posInf + s.negInf > 0) b.push('non-finite');
  if (s.count > 0 && s.zeros === s.count) b.push('all-zero');
  if (s.dtype !== 'F16' && s.absMax !== null && s.absMax > F16_MAX) b.push('f16-overflow');
  return b;
}

export function scanRow(s: TensorStats): ScanRow {
  if (s.note) return { name: s.name, dtype: s.dtype, count: s.count, std: NaN, absMax: NaN, sparsity: NaN, outliers: 0, nonFinite: 0, badges: [], error: { code: 'unsupported', message: s.note, tensor: s.name } };
  return {
    name: s.name,
    dtype: s.dtype,
    count: s.count,
    std: num(s.std),
    absMax: num(s.absMax),
    sparsity: s.count ? s.zeros / s.count : 0,
    outliers: s.outliers,
    nonFinite: s.nan + s.posInf + s.negInf,
    badges: healthBadges(s),
  };
}

// ---------------------------------------------------------------- heatmap

/**
 * Bytes decoded at a time on the extension host: 2 MiB of BF16 is 1 M values, about
 * 10 ms of decoding and binning, after which the loop awaits the next read, so the
 * host's event loop is never held for long.
 */
const HEATMAP_CHUNK_BYTES = 2 << 20;

export async function computeHeatmap(model: Model, t: TensorInfo, maxSize: number, signal?: AbortSignal): Promise<HeatmapReplyMessage> {
  if (!isViewable(t.dtype)) throw new FormatError('unsupported', `a heatmap needs one value per element; ${t.dtype} has two`, model.path, t.name);
  const { rows, cols } = matrixShape(t.shape);
  const acc = new HeatmapAccumulator(rows, cols, Math.min(maxSize, HEATMAP_MAX_SIZE));
  const storage = storageOf(t);
  const unit = storageUnit(storage);
  let scratch = new Float32Array(0);
  for await (const chunk of model.chunks(t, { chunkBytes: HEATMAP_CHUNK_BYTES, signal })) {
    throwIfCancelled(signal);
    const n = Math.min(Math.floor(chunk.length / unit.bytes) * unit.elements, t.numel - acc.count);
    if (scratch.length < n) scratch = new Float32Array(n);
    // Chunks end on whole blocks (Model.chunks), so a block storage decodes chunk by chunk.
    if (storage.kind === 'dtype') decodeToF32(t.dtype, chunk, scratch, n);
    else decodeStorageF32(storage, chunk, scratch.subarray(0, n));
    acc.push(scratch.subarray(0, n));
  }
  const img = acc.image();
  return { type: 'heatmap', name: t.name, ...img };
}

// ----------------------------------------------------------------- service

/** Errors as they cross to the webview: a FormatError keeps its code, file and tensor. */
export function errorInfo(e: unknown): ErrorInfo {
  if (isCancelled(e)) return { code: 'cancelled', message: 'cancelled' };
  if (isFormatError(e)) return { code: e.code, message: e.message, file: e.file, tensor: e.tensor };
  const code = (e as { code?: unknown })?.code;
  return { code: typeof code === 'string' ? code : 'internal', message: e instanceof Error ? e.message : String(e) };
}

/** Tensors per stats call during a scan, so rows stream to the page as each batch finishes. */
const SCAN_BATCH_TENSORS = 64;
/** …or fewer, when they are large: a batch of at most 512 MiB keeps rows arriving every few seconds. */
const SCAN_BATCH_BYTES = 512 << 20;

export interface ModelServiceOptions {
  readonly backend?: () => BackendChoice;
  /** The model's paths are on this machine's disk (adapter configs and previews read them directly). */
  readonly local?: boolean;
}

/** Tensor names that only LoRA adapters have (PEFT `lora_A`/`lora_B`, kohya `lora_down`/`lora_up`). */
const ADAPTER_NAME = /(^|[._])lora_(A|B|down|up)([._]|$)/;

/** One opened model and its cached results. A new file on disk means a new service. */
export class ModelService {
  private readonly cache = new ResultCache<TensorStatsReplyMessage | HeatmapReplyMessage>();
  private readonly stamp: string;
  /** The model's files as they were when its header was read. */
  readonly files: readonly FileStamp[];
  private summaryCache: SummaryReplyMessage | undefined;
  private moduleTreeCache: ModuleNode | undefined;
  private adapterCache: Promise<AdapterInfo | undefined> | undefined;

  constructor(
    readonly model: Model,
    private readonly opts: ModelServiceOptions = {},
  ) {
    this.files = model.files.map((f) => ({ path: f.path, bytes: f.bytes, mtimeMs: f.mtimeMs }));
    this.stamp = stampKey(this.files);
  }

  private backend(): BackendChoice {
    return this.opts.backend?.() ?? 'auto';
  }

  private tensorOrThrow(name: string): TensorInfo {
    const t = this.model.tensor(name);
    if (!t) throw new FormatError('not_found', 'no such tensor', this.model.path, name);
    return t;
  }

  summary(): SummaryReplyMessage {
    return (this.summaryCache ??= buildSummary(this.model, this.moduleTree()));
  }

  /** The outline (see SummaryRequestMessage.outline); the whole summary reuses its module tree. */
  outline(): SummaryReplyMessage {
    return buildOutline(this.model, this.moduleTree());
  }

  private moduleTree(): ModuleNode {
    return (this.moduleTreeCache ??= moduleTreeOf(this.model));
  }

  /** The adapter's description when the file is a LoRA adapter on local disk; undefined otherwise. */
  adapter(): Promise<AdapterInfo | undefined> {
    this.adapterCache ??= (async () => {
      if (!this.opts.local || !this.model.tensors.some((t) => ADAPTER_NAME.test(t.name))) return undefined;
      try {
        const d = await describeAdapter(this.model.path, { patternTimeLimitMs: VIEWER_PATTERN_TIME_MS });
        return {
          format: d.format,
          modules: d.modules.length,
          targets: d.targets,
          ranks: d.ranks,
          alphas: d.alphas,
          scales: d.scales,
          useRslora: d.useRslora,
          dora: d.modules.some((m) => m.dora),
        };
      } catch {
        // Named like an adapter but not one the merge code understands: show it as a plain model.
        return undefined;
      }
    })();
    return this.adapterCache;
  }

  /** Size and estimated error per quantization scheme (reads at most 1% of each tensor). */
  async quantPreview(signal?: AbortSignal): Promise<QuantPreviewReplyMessage> {
    if (!this.opts.local) throw new FormatError('unsupported', 'the quantization preview reads files on this machine’s disk only', this.model.path);
    const p = await preview({ input: this.model.path }, { signal, backend: this.backend() });
    return {
      type: 'quantPreview',
      bytesBefore: p.bytesBefore,
      params: p.params,
      sampleFraction: p.sampleFraction,
      seconds: p.seconds,
      rows: p.rows.map((r) => ({
        scheme: r.scheme,
        description: r.description,
        bytesAfter: r.bytesAfter,
        bitsPerWeight: r.bitsPerWeight,
        quantizedTensors: r.quantizedTensors,
        keptTensors: r.keptTensors,
        rmse: r.rmse,
        snrDb: r.snrDb,
        cosine: r.cosine,
      })),
    };
  }

  async tensorStats(name: string, bins: number, signal?: AbortSignal): Promise<TensorStatsReplyMessage> {
    const t = this.tensorOrThrow(name);
    if (!isViewable(t.dtype)) throw new FormatError('unsupported', `values of ${t.dtype} cannot be summarised`, this.model.path, name);
    const key = resultKey(this.stamp, 'stats', { name, bins });
    const hit = this.cache.get(key);
    if (hit?.type === 'tensorStats') return hit;
    const r = await stats(this.model, { tensors: [name], bins, backend: this.backend(), signal });
    const reply: TensorStatsReplyMessage = { type: 'tensorStats', stats: statsData(r.tensors[0]!), backend: r.device || r.backend, seconds: r.seconds };
    this.cache.set(key, reply);
    return reply;
  }

  async heatmap(name: string, maxSize: number, signal?: AbortSignal): Promise<HeatmapReplyMessage> {
    const t = this.tensorOrThrow(name);
    const size = Math.max(1, Math.min(HEATMAP_MAX_SIZE, Math.floor(maxSize) || HEATMAP_MAX_SIZE));
    const key = resultKey(this.stamp, 'heatmap', { name, size });
    const hit = this.cache.get(key);
    if (hit?.type === 'heatmap') return hit;
    const reply = await computeHeatmap(this.model, t, size, signal);
    this.cache.set(key, reply);
    return reply;
  }

  /** Statistics of every tensor, in batches; rows and byte progress stream through `emit`. */
  async scan(bins: number, emit: (e: RequestEventMessage) => void, signal?: AbortSignal): Promise<ScanReplyMessage> {
    const started = performance.now();
    const all = this.model.tensors;
    const total = all.reduce((a, t) => a + t.byteLength, 0);
    let done = 0;
    let backend = '';
    emit({ type: 'progress', done: 0, total, unit: 'bytes' });
    for (let i = 0; i < all.length; ) {
      throwIfCancelled(signal);
      const batch: TensorInfo[] = [];
      let bytes = 0;
      while (i < all.length && batch.length < SCAN_BATCH_TENSORS && (batch.length === 0 || bytes + all[i]!.byteLength <= SCAN_BATCH_BYTES)) {
        bytes += all[i]!.byteLength;
        batch.push(all[i++]!);
      }
      const base = done;
      const r = await stats(this.model, {
        tensors: batch.map((t) => t.name),
        bins,
        topK: 1,
        backend: this.backend(),
        signal,
        progress: (p: Progress) => emit({ type: 'progress', done: base + p.done, total, unit: 'bytes', message: p.message }),
      });
      backend = r.device || r.backend;
      done = base + bytes;
      emit({ type: 'scanRows', rows: r.tensors.map(scanRow) });
      emit({ type: 'progress', done, total, unit: 'bytes' });
    }
    if (signal?.aborted) throw new CancelledError();
    return { type: 'scan', tensors: all.length, seconds: (performance.now() - started) / 1000, backend };
  }
}
