import { dirname, join } from 'node:path';
import { addSums, type QuantizeResult } from '../compute/quant/common';
import { quantizedBytes, type Scheme } from '../compute/quant/schemes';
import { FormatError } from '../format/errors';
import { exists, stageText, writeTextAtomic } from '../format/files';
import { writeSafetensors, writeSharded, type TensorSource } from '../format/writer';
import { keptStream, QuantStream } from './quantizeChunks';
import { modelDir } from './quantizePlan';
import type { QuantJob, TensorPlan } from './quantizeTypes';

function scaleName(name: string): string {
  return `${name}_scale`;
}

/** The compressed-tensors `quantization_config` for the per-channel schemes. */
function compressedTensorsConfig(scheme: Scheme, plans: readonly TensorPlan[]): Record<string, unknown> {
  const isFp8 = scheme.name === 'fp8-e4m3';
  const modules = (p: TensorPlan) => p.name.replace(/\.weight$/, '');
  const ignore = plans.filter((p) => p.action === 'keep' && p.shape.length === 2 && p.name.endsWith('.weight')).map(modules);
  const targets = plans.some((p) => p.action === 'quantize' && /embed/.test(p.name)) ? ['Linear', 'Embedding'] : ['Linear'];
  return {
    quant_method: 'compressed-tensors',
    format: isFp8 ? 'float-quantized' : 'naive-quantized',
    quantization_status: 'compressed',
    config_groups: {
      group_0: {
        targets,
        weights: { num_bits: 8, type: isFp8 ? 'float' : 'int', symmetric: true, strategy: 'channel', dynamic: false, group_size: null, observer: 'minmax' },
        input_activations: null,
        output_activations: null,
      },
    },
    ignore,
    kv_cache_scheme: null,
  };
}

/** A per-tensor `__metadata__` entry describing its layout (the README documents these keys). */
function tensorMeta(scheme: Scheme, plan: TensorPlan): string {
  if (scheme.kind === 'ggml') {
    return JSON.stringify({ scheme: scheme.name, layout: 'ggml-blocks', shape: plan.shape, dtype: plan.dtype, block_size: scheme.blockSize, block_bytes: scheme.blockBytes });
  }
  if (scheme.kind === 'block') {
    const names = blockPartNames(scheme, plan.name);
    return JSON.stringify({ scheme: scheme.name, layout: scheme.name === 'mxfp4' ? 'mxfp4-blocks' : 'fp8-block-scaled', shape: plan.shape, dtype: plan.dtype, data: names.data, scale: names.scale });
  }
  return JSON.stringify({ scheme: scheme.name, layout: 'compressed-tensors', shape: plan.shape, dtype: plan.dtype, scale: scaleName(plan.name) });
}

/** The modules whose 2-D weight stays unquantized, which the loaders must leave as plain Linear layers. */
function keptModules(plans: readonly TensorPlan[]): string[] {
  return plans.filter((p) => p.action === 'keep' && p.shape.length === 2 && p.name.endsWith('.weight')).map((p) => p.name.slice(0, -'.weight'.length));
}

/**
 * fp8-block: Transformers' and vLLM's "fp8" with DeepSeek-V3's 128×128 blocks; mxfp4: gpt-oss's
 * config. Both list the unquantized modules, so a loader does not expect scales for them.
 */
function blockSchemeConfig(scheme: Scheme, plans: readonly TensorPlan[]): Record<string, unknown> {
  const modules_to_not_convert = keptModules(plans);
  if (scheme.name === 'mxfp4') return { quant_method: 'mxfp4', modules_to_not_convert };
  return { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [scheme.bandRows, scheme.bandRows], modules_to_not_convert };
}

function withQuantConfig(config: Record<string, unknown>, scheme: Scheme, plans: readonly TensorPlan[]): Record<string, unknown> {
  const quantization_config =
    scheme.kind === 'channel'
      ? compressedTensorsConfig(scheme, plans)
      : scheme.kind === 'block'
        ? blockSchemeConfig(scheme, plans)
        : { quant_method: 'ggml', scheme: scheme.name, layout: 'ggml-blocks', block_size: scheme.blockSize, block_bytes: scheme.blockBytes };
  return { ...config, quantization_config };
}

/** Where a block scheme puts a weight's parts: FP8 codes and `weight_scale_inv`, or MXFP4 `_blocks` and `_scales`. */
function blockPartNames(scheme: Scheme, name: string): { data: string; scale: string } {
  if (scheme.name === 'mxfp4') return { data: `${name}_blocks`, scale: `${name}_scales` };
  return { data: name, scale: `${name.slice(0, -'.weight'.length)}.weight_scale_inv` };
}

/**
 * The codes of a block scheme as a stream, and its scales gathered into `scales` while the codes
 * pass; `scaleBytes()` hands the scales over once every chunk has gone by.
 */
function streamGathering<S extends Uint8Array | Float32Array>(
  job: QuantJob,
  scaleName: string,
  results: () => AsyncGenerator<QuantizeResult>,
  scales: S,
  take: (r: QuantizeResult) => S,
): { data: () => AsyncGenerator<Uint8Array>; scaleBytes: () => Uint8Array } {
  let filled = 0;
  const data = async function* () {
    for await (const r of results()) {
      const part = take(r);
      scales.set(part, filled);
      filled += part.length;
      yield r.data;
    }
  };
  const scaleBytes = (): Uint8Array => {
    // The writer keeps source order, so the weight (and its scales) were produced just before.
    if (filled !== scales.length) throw new FormatError('unsupported', 'scales requested before the weight was written', job.args.output, scaleName);
    return new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength);
  };
  return { data, scaleBytes };
}

/** A block scheme's two tensors: the codes stream chunk by chunk; the scales, gathered meanwhile, follow. */
function blockSchemeSources(job: QuantJob, p: TensorPlan, results: () => AsyncGenerator<QuantizeResult>): TensorSource[] {
  const { scheme } = job;
  const names = blockPartNames(scheme, p.name);
  if (scheme.name === 'mxfp4') {
    const groups = p.cols / scheme.blockSize;
    const s = streamGathering(job, names.scale, results, new Uint8Array(p.rows * groups), (r) => r.scaleBytes!);
    // Experts as gpt-oss stores them: [experts, out, in/32, 16] and [experts, out, in/32].
    const lead = p.experts ? [p.experts, p.rows / p.experts] : [p.rows];
    return [
      { name: names.data, dtype: 'U8', shape: [...lead, groups, 16], data: s.data },
      { name: names.scale, dtype: 'U8', shape: [...lead, groups], data: s.scaleBytes },
    ];
  }
  const band = scheme.bandRows!;
  const grid = [Math.ceil(p.rows / band), Math.ceil(p.cols / band)];
  const s = streamGathering(job, names.scale, results, new Float32Array(grid[0] * grid[1]), (r) => r.scales!);
  return [
    { name: names.data, dtype: 'F8_E4M3', shape: [p.rows, p.cols], data: s.data },
    { name: names.scale, dtype: 'F32', shape: grid, data: s.scaleBytes },
  ];
}

/** The output's tensors (quantized, scales, kept) in source order, and its `__metadata__`. */
function safetensorsSources(job: QuantJob, stream: QuantStream): { sources: TensorSource[]; metadata: Record<string, string> } {
  const { model, scheme, states, signal, advance } = job;
  const sources: TensorSource[] = [];
  const metadata: Record<string, string> = { ...model.metadata };
  metadata['quantization.scheme'] = scheme.name;
  for (const p of job.plans) {
    const st = states.get(p.name)!;
    const t = model.tensor(p.name)!;
    st.outputName = p.name;
    if (p.action === 'keep') {
      st.bytesAfter = t.byteLength;
      sources.push({ name: p.name, dtype: p.dtype, shape: p.shape, data: keptStream(model, t, signal, advance) });
      continue;
    }
    metadata[`quantization.${p.name}`] = tensorMeta(scheme, p);
    st.bytesAfter = quantizedBytes(scheme, p.rows, p.cols);
    const results = stream.add(
      p,
      (r: QuantizeResult, inBytes: number) => {
        addSums(st.sums, r.stats);
        advance(inBytes, p.name);
      },
      scheme.bandRows,
    );
    if (scheme.kind === 'block') {
      const parts = blockSchemeSources(job, p, results);
      st.outputName = parts[0].name;
      sources.push(...parts);
      continue;
    }
    if (scheme.kind === 'ggml') {
      const data = async function* () {
        for await (const r of results()) yield r.data;
      };
      sources.push({ name: p.name, dtype: 'U8', shape: [p.rows, (p.cols / scheme.blockSize) * scheme.blockBytes], data });
      continue;
    }
    const scales = new Float32Array(p.rows);
    let filled = 0;
    const data = async function* () {
      for await (const r of results()) {
        scales.set(r.scales!, filled);
        filled += r.scales!.length;
        yield r.data;
      }
    };
    const scaleData = () => {
      // The writer keeps source order, so the weight (and its scales) were produced just before.
      if (filled !== p.rows) throw new FormatError('unsupported', 'scales requested before the weight was written', job.args.output, scaleName(p.name));
      return new Uint8Array(scales.buffer);
    };
    sources.push({ name: p.name, dtype: scheme.name === 'fp8-e4m3' ? 'F8_E4M3' : 'I8', shape: [p.rows, p.cols], data });
    sources.push({ name: scaleName(p.name), dtype: 'F32', shape: [p.rows, 1], data: scaleData });
  }
  return { sources, metadata };
}

/** Writes a `.safetensors` file, or a folder of shards like the input's, plus config.json; returns the files written. */
export async function writeSafetensorsOutput(job: QuantJob): Promise<string[]> {
  const { model, config, scheme, plans, missing } = job;
  const stream = new QuantStream(model, scheme, job.backend, job.signal);
  try {
    const { sources, metadata } = safetensorsSources(job, stream);
    const writeOpts = { metadata, order: 'source' as const, signal: job.signal };
    const out = job.args.output;
    const configText = () => JSON.stringify(withQuantConfig(config!, scheme, plans), null, 2) + '\n';
    if (out.endsWith('.safetensors')) {
      await writeSafetensors(out, sources, writeOpts);
      if (config) {
        const cfgPath = join(dirname(out), 'config.json');
        if (dirname(out) !== modelDir(model) && !(await exists(cfgPath))) {
          await writeTextAtomic(cfgPath, configText());
          return [out, cfgPath];
        }
        missing.push(`config.json with quantization_config (not written: ${cfgPath} exists or is the input's; write to a folder to get one)`);
      }
      return [out];
    }
    // The config is staged before the weights, so that a full disk fails before anything is in place.
    const cfg = config ? await stageText(join(out, 'config.json'), configText()) : undefined;
    let r;
    try {
      r = await writeSharded(out, sources, { ...writeOpts, shardCount: model.files.length });
    } catch (e) {
      await cfg?.discard();
      throw e;
    }
    const files = r.files.map((f) => f.path);
    if (r.index) files.push(r.index);
    if (cfg) files.push(await cfg.commit());
    return files;
  } finally {
    await stream.close();
  }
}
