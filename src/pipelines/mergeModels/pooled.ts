/**
 * The task-vector merges (task_arithmetic, ties and the other magnitude-trimmed ones) on the
 * CPU worker pool: each chunk's raw bytes go to a worker, which decodes, counts or merges and
 * encodes them, so that every core works and this thread only reads and writes. The arithmetic
 * is the in-thread kernel's own (compute/merge/gta.ts), so both give the same bytes.
 */
import { cpuPoolSize, getCpuPool } from '../../compute/cpu/pool';
import { gtaChunkKernel, gtaChunkTakes, type GtaChunkArgs, type GtaChunkResult, type GtaTies } from '../../compute/merge/gtaChunk';
import { encodeMerged, gtaCombine, type GtaParams } from '../../compute/merge/gta';
import { ByteProgress, streamJobs } from '../../core/stream';
import { DTYPE_INFO } from '../../format/dtypes';
import { gtaSpec } from './methods';
import type { MergeModelsPlan, PlannedTensor } from './plan';

// Chunks in flight per worker: one computing, one whose bytes are being read, one queued.
const IN_FLIGHT_PER_WORKER = 3;

/** Whether the pooled path takes this tensor: a task-vector method without random or outlier drops, float32-exact inputs. */
export function pooledTakes(plan: MergeModelsPlan, pt: PlannedTensor): boolean {
  const g = plan.method.gta;
  if (!g || !pt.hasBase || (g.sparsify !== undefined && g.sparsify !== 'magnitude')) return false;
  const dtypes = pt.infos.map((t) => t.dtype);
  return gtaChunkTakes(dtypes, pt.out);
}

interface Chunk {
  readonly start: number;
  readonly count: number;
}

/** Settles the elements equal to a boundary key: the first `within` of them in the tensor drop, the rest stay. */
function settleTies(params: GtaParams, bytes: Uint8Array, ties: readonly (GtaTies | undefined)[], drops: readonly number[], pt: PlannedTensor): void {
  // Per position: every input there and every operand's keep flag, with the drops applied.
  const fixes = new Map<number, { values: Float32Array; keep: Uint8Array }>();
  ties.forEach((t, j) => {
    if (!t) return;
    const n = t.values.length / t.at.length;
    for (let k = 0; k < t.at.length; k++) {
      const pos = t.at[k];
      let fix = fixes.get(pos);
      if (!fix) {
        fix = { values: t.values.slice(k * n, (k + 1) * n), keep: t.keep.slice(k * (n - 1), k * (n - 1) + n - 1) };
        fixes.set(pos, fix);
      }
      if (k < drops[j]) fix.keep[j] = 0;
    }
  });
  const size = DTYPE_INFO[pt.out].bits / 8;
  const out = new Float64Array(1);
  for (const [pos, fix] of fixes) {
    if (fix.keep.every((k) => k === 1)) continue;
    const inputs = Array.from(fix.values, (v) => Float32Array.of(v));
    const keep = Array.from(fix.keep, (k) => Uint8Array.of(k));
    gtaCombine(params, inputs[0], inputs.slice(1), 1, keep, [], 0, out);
    bytes.set(encodeMerged(out, 1, pt.out), pos * size);
  }
}

/** One tensor's merged bytes, chunk by chunk, as `mergedTensor` but on the worker pool. */
export async function* pooledTensor(plan: MergeModelsPlan, pt: PlannedTensor, chunk: number, progress: ByteProgress, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  const { params, windows } = gtaSpec(pt.ctx, plan.method.gta!.sparsify, plan.method.gta!.consensus);
  const { models, infos } = pt;
  const dtypes = infos.map((t) => t.dtype);
  const sizes = dtypes.map((d) => DTYPE_INFO[d].bits / 8);
  const jobs: Chunk[] = [];
  for (let s = 0; s < pt.info.numel; s += chunk) jobs.push({ start: s, count: Math.min(chunk, pt.info.numel - s) });
  const pool = getCpuPool();
  const inFlight = IN_FLIGHT_PER_WORKER * cpuPoolSize();
  const pass = (make: (c: Chunk, bytes: Uint8Array[]) => GtaChunkArgs) =>
    streamJobs(
      jobs,
      {
        read: async (c: Chunk) =>
          Promise.all(
            models.map(async (m, k) => {
              const b = new Uint8Array(c.count * sizes[k]);
              await m.read(infos[k], c.start * sizes[k], b);
              return b;
            }),
          ),
        run: async (c: Chunk, bytes: Uint8Array[], s?: AbortSignal) => {
          const args = make(c, bytes);
          return { c, r: await pool.run<GtaChunkResult>(gtaChunkKernel.name, args, gtaChunkKernel.transfer!(args), s) };
        },
      },
      { inFlight, signal },
    );
  const base = { dtypes, params, out: pt.out };
  if (windows.some((w) => w !== undefined)) {
    const counting = windows.map((w) => (w ? ({ mode: 'all' } as const) : undefined));
    for await (const { r } of pass((c, bytes) => ({ ...base, op: 'high', bytes, count: c.count, windows: counting }))) r.hist!.forEach((h, j) => h && windows[j]!.addHigh(h));
    windows.forEach((w) => w?.endHigh());
    const bins = windows.map((w) => w?.lowBin() ?? -1);
    const low = windows.map((w, j) => (w && bins[j] >= 0 ? ({ mode: 'all' } as const) : undefined));
    if (low.some((w) => w !== undefined)) for await (const { r } of pass((c, bytes) => ({ ...base, op: 'low', bytes, count: c.count, windows: low, bins }))) r.hist!.forEach((h, j) => h && windows[j]!.addLow(h));
    windows.forEach((w) => w?.endLow());
  }
  const bounds = windows.map((w) => w?.lower());
  for await (const { c, r } of pass((c, bytes) => ({ ...base, op: 'combine', bytes, count: c.count, windows: bounds }))) {
    const ties = r.ties ?? [];
    const drops = windows.map((w, j) => (w && ties[j] ? w.ties(ties[j]!.at.length) : 0));
    if (drops.some((d) => d > 0)) settleTies(params, r.bytes!, ties, drops, pt);
    progress.add(c.count * sizes.reduce((a, b) => a + b, 0), pt.info.name);
    yield r.bytes!;
  }
}
