// Small tensors for statistics: grouped by file and position, each group one read and one
// worker task, thousands of tensors to a task instead of a round trip each.
import type { Backend } from '../compute/kernel';
import { statsSmallKernel, unpackSmallStats } from '../compute/stats/statsSmall';
import type { TensorStats } from '../compute/stats/summarize';
import { sharedBytes, streamJobs } from '../core/stream';
import type { Model, TensorInfo } from '../format/model';

// A tensor this small costs more in its task (a round trip, edge tables, a summary on this
// thread) than in its scan: such tensors go to the workers whole, thousands to a task.
export const SMALL_TENSOR_BYTES = 64 << 10;
// One batch: at most 4 MiB of data (a fraction of a slice) and 4,096 tensors, so that a
// batch's results (about 5 KB per tensor with 256-bin histograms) stay near 20 MB.
const BATCH_BYTES = 4 << 20;
const BATCH_TENSORS = 4096;
// Bytes between two selected tensors that a batch reads through rather than starting anew.
const BATCH_GAP_BYTES = 64 << 10;

type Item = { readonly t: TensorInfo; readonly at: number };

/** Small tensors grouped by file and position: each group's bytes are one contiguous read. */
function batchesOf(small: readonly Item[]): Item[][] {
  const sorted = [...small].sort((x, y) => x.t.file - y.t.file || x.t.byteOffset - y.t.byteOffset);
  const out: Item[][] = [];
  let cur: Item[] = [];
  for (const s of sorted) {
    const first = cur[0]?.t;
    const last = cur[cur.length - 1]?.t;
    const fits =
      first !== undefined &&
      s.t.file === first.file &&
      s.t.byteOffset >= last.byteOffset + last.byteLength &&
      s.t.byteOffset - (last.byteOffset + last.byteLength) <= BATCH_GAP_BYTES &&
      s.t.byteOffset + s.t.byteLength - first.byteOffset <= BATCH_BYTES &&
      cur.length < BATCH_TENSORS;
    if (!fits && cur.length > 0) {
      out.push(cur);
      cur = [];
    }
    cur.push(s);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Scans the small tensors (with their index `at` in the report), batched and streamed:
 * each batch's bytes are read through the model's ByteSource into one buffer that the
 * kernel receives. `done` gets each tensor's statistics and bytes.
 */
export async function scanSmall(
  model: Model,
  backend: Backend,
  small: readonly Item[],
  opts: { bins: number; topK: number; histograms: boolean; inFlight: number; signal?: AbortSignal },
  done: (at: number, r: TensorStats, bytes: number) => void,
): Promise<void> {
  const { bins, topK, histograms } = opts;
  const steps = {
    read: async (items: Item[]) => {
      const start = items[0].t.byteOffset;
      const last = items[items.length - 1].t;
      // Shared with a CPU worker rather than moved: a move detaches the buffer here (see stats.ts's pool).
      const length = last.byteOffset + last.byteLength - start;
      const bytes = backend.kind === 'cpu' ? sharedBytes(length) : new Uint8Array(length);
      // A batch is one file in increasing offsets with small gaps: one read of the span when the
      // model can, else one per tensor.
      if (model.readSpan) await model.readSpan(items[0].t, last, bytes);
      else await Promise.all(items.map(({ t }) => model.read(t, 0, bytes.subarray(t.byteOffset - start, t.byteOffset - start + t.byteLength))));
      return bytes;
    },
    run: async (items: Item[], bytes: Uint8Array, signal: AbortSignal) => {
      const start = items[0].t.byteOffset;
      const args = { bytes, items: items.map(({ t }) => ({ name: t.name, dtype: t.dtype, blocks: t.storage?.kind === 'blocks' ? t.storage.type : undefined, shape: t.shape, count: t.numel, at: t.byteOffset - start, byteLength: t.byteLength })), bins, topK, histograms };
      return { items, r: unpackSmallStats(args.items, await backend.run(statsSmallKernel, args, signal), bins, topK) };
    },
  };
  for await (const { items, r } of streamJobs(batchesOf(small), steps, { inFlight: opts.inFlight, signal: opts.signal })) {
    items.forEach(({ t, at }, j) => done(at, r[j], t.byteLength));
  }
}
