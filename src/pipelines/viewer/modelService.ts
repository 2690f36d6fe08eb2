/**
 * Everything the viewer computes for one opened model, without `vscode`: the
 * summary (tensors, totals, memory table, module tree), one tensor's statistics,
 * a heatmap, the whole-model scan and the quantization preview, with their results
 * cached by the files' identity on disk. The editor provider wires these to the
 * page through the protocol's Responder; the tests call them directly on
 * generated files.
 */
import { FormatError } from '../../format/errors';
import type { Model, TensorInfo } from '../../format/model';
import type { BackendChoice } from '../../compute/kernel';
import { CancelledError, throwIfCancelled, type Progress } from '../../core/job';
import { describeAdapter } from '../lora';
import type { ModuleNode } from '../moduleTree';
import { preview } from '../quantize';
import { stats } from '../stats';
import type { RequestEventMessage } from '../../shared/protocol';
import { HEATMAP_MAX_SIZE, computeHeatmap } from './heatmap';
import { ResultCache, resultKey, stampKey, type FileStamp } from './resultCache';
import { buildOutline, buildSummary, isViewable, moduleTreeOf } from './summary';
import { scanRow, statsData } from './tensorView';
import { ggufOf } from '../../format/gguf/ggufModel';
import { GgufArrayPager } from './ggufView';
import { hasScales, scaleStats } from '../scaleStats';
import type { AdapterInfo, GgufArrayResult, HeatmapResult, ModelSummary, QuantPreviewResult, ScaleStatsResult, ScanResult, TensorStatsResult } from './types';

export { buildOutline, buildSummary, isViewable, treeTableOf } from './summary';
export { computeHeatmap } from './heatmap';
export { errorInfo } from './errorInfo';
export { F16_MAX, healthBadges, scanRow, statsData } from './tensorView';


/**
 * How long the adapter panel may spend on a config's rank/alpha patterns. The work runs
 * on the extension host's thread, so past this the file is shown as a plain model
 * rather than stall the window; `merge` itself allows the longer default.
 */
const VIEWER_PATTERN_TIME_MS = 500;

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
  private readonly cache = new ResultCache<TensorStatsResult | HeatmapResult | ScaleStatsResult>();
  private readonly stamp: string;
  /** The model's files as they were when its header was read. */
  readonly files: readonly FileStamp[];
  private summaryCache: ModelSummary | undefined;
  private moduleTreeCache: ModuleNode | undefined;
  private adapterCache: Promise<AdapterInfo | undefined> | undefined;
  private pager: GgufArrayPager | undefined;

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

  summary(): ModelSummary {
    return (this.summaryCache ??= buildSummary(this.model, this.moduleTree()));
  }

  /** The outline (see SummaryRequestMessage.outline); the whole summary reuses its module tree. */
  outline(): ModelSummary {
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
  async quantPreview(signal?: AbortSignal): Promise<QuantPreviewResult> {
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

  async tensorStats(name: string, bins: number, signal?: AbortSignal): Promise<TensorStatsResult> {
    const t = this.tensorOrThrow(name);
    if (!isViewable(t.dtype)) throw new FormatError('unsupported', `values of ${t.dtype} cannot be summarised`, this.model.path, name);
    const key = resultKey(this.stamp, 'stats', { name, bins });
    const hit = this.cache.get(key);
    if (hit?.type === 'tensorStats') return hit;
    const r = await stats(this.model, { tensors: [name], bins, backend: this.backend(), signal });
    const reply: TensorStatsResult = { type: 'tensorStats', stats: statsData(r.tensors[0]!), backend: r.device || r.backend, seconds: r.seconds };
    this.cache.set(key, reply);
    return reply;
  }

  async heatmap(name: string, maxSize: number, signal?: AbortSignal): Promise<HeatmapResult> {
    const t = this.tensorOrThrow(name);
    const size = Math.max(1, Math.min(HEATMAP_MAX_SIZE, Math.floor(maxSize) || HEATMAP_MAX_SIZE));
    const key = resultKey(this.stamp, 'heatmap', { name, size });
    const hit = this.cache.get(key);
    if (hit?.type === 'heatmap') return hit;
    const reply = await computeHeatmap(this.model, t, size, signal, this.backend());
    this.cache.set(key, reply);
    return reply;
  }

  /** Items [start, start + count) of a GGUF metadata array, as text (at most ARRAY_PAGE_MAX). */
  async ggufArray(key: string, start: number, count: number): Promise<GgufArrayResult> {
    const g = ggufOf(this.model);
    if (!g) throw new FormatError('unsupported', 'only GGUF files have metadata arrays', this.model.path);
    return (this.pager ??= new GgufArrayPager(g)).page(key, start, count);
  }

  /** The scales of a quantized tensor (block `d`, a scheme's scale parts); `unsupported` for one without. */
  async scaleStats(name: string, signal?: AbortSignal): Promise<ScaleStatsResult> {
    const t = this.tensorOrThrow(name);
    if (!hasScales(t)) throw new FormatError('unsupported', `${t.dtype} stores no scales`, this.model.path, name);
    const key = resultKey(this.stamp, 'scales', { name });
    const hit = this.cache.get(key);
    if (hit?.type === 'scaleStats') return hit;
    const reply: ScaleStatsResult = { type: 'scaleStats', report: await scaleStats(this.model, t, { backend: this.backend(), signal }) };
    this.cache.set(key, reply);
    return reply;
  }

  /** Statistics of every tensor, in batches; rows and byte progress stream through `emit`. */
  async scan(bins: number, emit: (e: RequestEventMessage) => void, signal?: AbortSignal): Promise<ScanResult> {
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
