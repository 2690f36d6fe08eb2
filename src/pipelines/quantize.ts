import { join } from 'node:path';
import { getBackend } from '../compute/backend';
import { emptySums } from '../compute/quant/common';
import { SCHEMES, SCHEME_NAMES } from '../compute/quant/schemes';
import type { JobContext } from '../core/job';
import { ByteProgress } from '../core/stream';
import { FormatError } from '../format/errors';
import { isDir } from '../format/files';
import { openModel } from '../format/openModel';
import { modelInputs, prepareOutputs } from '../format/outputs';
import { defaultFormat, modelDir, outputSetOf, planQuantization, readConfig, skipNonFinite } from './quantizePlan';
import { buildReport } from './quantizeReport';
import { writeGgufOutput } from './quantizeGguf';
import { writeSafetensorsOutput } from './quantizeSafetensors';
import type { QuantJob, QuantReport, QuantizeJobArgs, TensorPlan, TensorState } from './quantizeTypes';
import type { Model } from '../format/model';
import { decodedModel, storedPartReason, undecodableError, type DecodedModel } from './decodedModel';

export * from './quantizeTypes';

/**
 * Refuses, before anything is written, a quantization that would read meaningless values or
 * quantize twice: a quantized part the reader left as stored (FP8 codes whose scale it could
 * not place), and, without `allowRequantize`, a tensor already in a quantized GGUF type, as
 * llama-quantize refuses it without --allow-requantize. Quantized safetensors schemes (FP8,
 * GPTQ …) are the release format people start from and are quantized from their decoded values.
 */
function checkDecodedPlans(stored: Model, view: DecodedModel, plans: readonly TensorPlan[], allowRequantize: boolean): void {
  for (const p of plans) {
    if (p.action !== 'quantize') continue;
    const t = stored.tensor(p.name)!;
    if (storedPartReason(stored, t) !== undefined) throw undecodableError(stored, t, 'quantized');
    const s = view.storedOf(p.name)?.storage;
    if (s?.kind === 'blocks' && !allowRequantize) {
      throw new FormatError('requantize', `stored as ${s.type}: quantizing it again adds a second rounding error; start from the F16/BF16/F32 weights, or pass --allow-requantize (llama-quantize refuses it the same way)`, stored.files[t.file]?.path ?? stored.path, p.name);
    }
  }
}
export { defaultFormat, globToRegExp, planQuantization } from './quantizePlan';
export { preview } from './quantizePreview';

/**
 * Quantizes a model: shard by shard, chunk by chunk, on the chosen backend, into
 * safetensors (ggml blocks as U8, or compressed-tensors int8/FP8 with scales) or
 * GGUF v3. Nothing is written unless the whole job succeeds; the report gives the
 * error of every quantized tensor against its original values.
 */
export async function quantize(args: QuantizeJobArgs, ctx: JobContext = {}): Promise<QuantReport> {
  const started = Date.now();
  const scheme = SCHEMES[args.scheme];
  if (!scheme) throw new FormatError('unsupported', `unknown scheme '${args.scheme}' (one of ${SCHEME_NAMES.join(', ')})`);
  const format = args.format ?? defaultFormat(scheme, args.output);
  if (format === 'gguf' && scheme.kind !== 'ggml') {
    throw new FormatError('unsupported', `${scheme.name} has no GGUF tensor type; use --format safetensors`, args.output);
  }
  const backend = await getBackend(ctx.backend ?? 'auto');
  const stored = await openModel(args.input);
  let model: Model = stored;
  let undo: (() => Promise<void>) | undefined;
  try {
    // Quantized inputs (FP8, GPTQ, GGUF blocks …) are quantized from their decoded values.
    const view = decodedModel(stored, backend);
    model = view;
    const config = await readConfig(model);
    const ggufOut = format === 'gguf' && (await isDir(args.output)) ? join(args.output, `model-${scheme.name}.gguf`) : args.output;
    const planned = planQuantization(model.tensors, scheme, args.keep, args.only);
    checkDecodedPlans(stored, view, planned, args.allowRequantize ?? false);
    const inputs = [...(await modelInputs(model)), join(modelDir(model), 'config.json')];
    undo = (await prepareOutputs(inputs, outputSetOf(format, ggufOut, config !== undefined), ctx.notice)).undo;
    const allow = args.allowNonfinite ?? false;
    // On the CPU every kernel's error sums hold Σx², which is NaN or ±∞ as soon as one input is: a
    // tensor with NaN/±Inf shows itself at no cost, and only then is the model counted and the job
    // run again with such tensors kept. WGSL may assume finite arithmetic, so the GPU counts first.
    let watch = !allow && backend.kind === 'cpu';
    let plans = watch ? planned : await skipNonFinite(model, planned, allow, ctx);
    for (;;) {
      const attempt = new AbortController();
      const signal = ctx.signal ? AbortSignal.any([ctx.signal, attempt.signal]) : attempt.signal;
      const states = new Map<string, TensorState>(plans.map((p) => [p.name, { plan: p, sums: emptySums(), bytesAfter: 0 }]));
      const progress = new ByteProgress(model.tensors.reduce((s, t) => s + t.byteLength, 0), ctx.progress);
      let seen = false;
      const advance = (n: number, name: string): void => {
        progress.add(n, name);
        if (watch && !Number.isFinite(states.get(name)!.sums.sumX2)) {
          seen = true;
          attempt.abort();
          throw new FormatError('unsupported', 'holds NaN/Inf values', args.input, name);
        }
      };
      const missing: string[] = [];
      const job: QuantJob = { args: format === 'gguf' ? { ...args, output: ggufOut } : args, model, config, scheme, plans, states, backend, signal, advance, missing };
      try {
        const outputs = format === 'gguf' ? [await writeGgufOutput(job)] : await writeSafetensorsOutput(job);
        progress.finish();
        undo = undefined;
        return buildReport(args, format, scheme, backend, model, states, outputs, missing, (Date.now() - started) / 1000);
      } catch (e) {
        if (!seen || ctx.signal?.aborted) throw e;
        watch = false;
        plans = await skipNonFinite(model, planned, false, ctx);
      }
    }
  } catch (e) {
    await undo?.();
    throw e;
  } finally {
    await model.close();
  }
}
