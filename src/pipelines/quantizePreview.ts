import { getBackend } from '../compute/backend';
import { addSums, emptySums, reportOf, type ErrorSums } from '../compute/quant/common';
import { SCHEMES, SCHEME_NAMES, quantizedBytes } from '../compute/quant/schemes';
import { CancelledError, isCancelled, throttle, throwIfCancelled, type JobContext } from '../core/job';
import { openModel } from '../format/openModel';
import { partsOf, type Model } from '../format/model';
import { decodedModel } from './decodedModel';
import { kernelInput } from './quantizeChunks';
import { elementBytes, planQuantization } from './quantizePlan';
import type { PreviewArgs, PreviewResult, PreviewRow } from './quantizeTypes';

// The preview reads at most this fraction of each tensor's values…
const PREVIEW_FRACTION = 0.01;
// …and at most this many: 64 Ki values already pin the error to a fraction of a dB, and a
// cap keeps a 70B-parameter model's preview to seconds (about 100 MB read in all).
const PREVIEW_MAX_VALUES = 1 << 16;


/**
 * Where each segment of a tensor's sample starts: `count` segments of `len` values
 * spread evenly over the rows, at column offsets that vary (multiples of 32, so ggml
 * blocks stay aligned). Deterministic: the same file always gives the same preview.
 */
function sampleSegments(rows: number, cols: number, len: number, count: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const slack = Math.floor((cols - len) / 32);
  for (let k = 0; k < count; k++) {
    const r = Math.min(rows - 1, Math.floor(((k + 0.5) * rows) / count));
    const c = slack > 0 ? (Math.imul(k + 1, 0x9e3779b1) >>> 0) % (slack + 1) * 32 : 0;
    out.push([r, c]);
  }
  return out;
}

/**
 * Estimates size and error for each scheme from a deterministic sample of whole
 * 32-value blocks (at most 1% of each tensor's values and at most 64 Ki of them;
 * tensors under 3,200 values are not sampled) before anything is written. Sizes are exact; errors are estimates
 * with each tensor's sample weighted by the tensor's size.
 */
export async function preview(args: PreviewArgs, ctx: JobContext = {}): Promise<PreviewResult> {
  const started = Date.now();
  const names = args.schemes ?? SCHEME_NAMES;
  const backend = await getBackend(ctx.backend ?? 'auto');
  const stored = await openModel(args.input);
  let model: Model = stored;
  try {
    // Samples are scattered: a quantized input decodes one storage unit around each, not a large run.
    model = decodedModel(stored, backend, { runValues: 1 });
    const bytesBefore = stored.tensors.reduce((s, t) => s + partsOf(t).reduce((a, p) => a + p.byteLength, 0), 0);
    const params = model.tensors.reduce((s, t) => s + t.numel, 0);
    const schemes = names.map((n) => SCHEMES[n]);
    const plans = schemes.map((s) => planQuantization(model.tensors, s, args.keep, args.only));
    const sums = schemes.map(() => emptySums());
    const sampled = schemes.map(() => 0);
    const maxErr = schemes.map(() => 0);
    const perTensor = schemes.map(() => new Map<string, ErrorSums>());
    const candidates = model.tensors.filter((_, i) => plans.some((pl) => pl[i].action === 'quantize'));
    const report = throttle(ctx.progress);
    let done = 0;
    for (const t of candidates) {
      throwIfCancelled(ctx.signal);
      const [rows, cols] = t.shape;
      const budget = Math.min(PREVIEW_MAX_VALUES, Math.floor(t.numel * PREVIEW_FRACTION));
      const len = Math.min(Math.floor(cols / 32) * 32 || cols, Math.floor(budget / 32) * 32);
      if (len >= 32) {
        const count = Math.max(1, Math.floor(budget / len));
        const segs = sampleSegments(rows, cols, len, count);
        const eb = elementBytes(t.dtype);
        const raw = new Uint8Array(count * len * eb);
        for (let k = 0; k < segs.length; k++) {
          const [r, c] = segs[k];
          await model.read(t, (r * cols + c) * eb, raw.subarray(k * len * eb, (k + 1) * len * eb));
        }
        const input = kernelInput(t.dtype, raw, count * len);
        const idx = model.tensors.indexOf(t);
        await Promise.all(
          schemes.map(async (s, si) => {
            if (plans[si][idx].action !== 'quantize') return;
            if (s.kind === 'ggml' && len % s.blockSize !== 0) return;
            const r = await backend.run(s.kernel, { src: input.src, dtype: input.dtype, rows: count, cols: len }, ctx.signal);
            // Weight the sample by the tensor's size so that big tensors dominate, as in the real file.
            const w = t.numel / r.stats.n;
            const weighted = { n: t.numel, sumX2: r.stats.sumX2 * w, sumY2: r.stats.sumY2 * w, sumXY: r.stats.sumXY * w, sumE2: r.stats.sumE2 * w, maxAbsErr: r.stats.maxAbsErr };
            addSums(sums[si], weighted);
            if (args.tensorSums) perTensor[si].set(t.name, weighted);
            sampled[si] += r.stats.n;
            maxErr[si] = Math.max(maxErr[si], r.stats.maxAbsErr);
          }),
        );
      }
      done++;
      report({ done, total: candidates.length, unit: 'tensors', message: t.name });
    }
    const rowsOut: PreviewRow[] = schemes.map((s, si) => {
      let after = 0;
      let q = 0;
      for (let i = 0; i < model.tensors.length; i++) {
        const p = plans[si][i];
        if (p.action === 'quantize') {
          after += quantizedBytes(s, p.rows, p.cols);
          q++;
        } else after += model.tensors[i].byteLength;
      }
      return {
        scheme: s.name,
        description: s.description,
        bytesAfter: after,
        bitsPerWeight: params ? (after * 8) / params : 0,
        quantizedTensors: q,
        keptTensors: model.tensors.length - q,
        sampledValues: sampled[si],
        ...(sampled[si] ? reportOf(sums[si]) : {}),
      };
    });
    return { input: args.input, bytesBefore, params, rows: rowsOut, sampleFraction: PREVIEW_FRACTION, seconds: (Date.now() - started) / 1000, ...(args.tensorSums ? { tensorSums: perTensor } : {}) };
  } catch (e) {
    if (isCancelled(e)) throw new CancelledError();
    throw e;
  } finally {
    await model.close();
  }
}
