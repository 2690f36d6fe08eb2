import { basename, join } from 'node:path';
import { addSums, type QuantizeResult } from '../compute/quant/common';
import { quantizedBytes } from '../compute/quant/schemes';
import { decodeToF32 } from '../format/decode';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import { FormatError } from '../format/errors';
import { isDir } from '../format/files';
import { LLAMA_FAMILY, llamaCppName, llamaMetadata } from '../format/gguf/names';
import { GGML_TYPE, gguf, writeGguf, type GgufTensor, type GgufValue } from '../format/gguf/writer';
import { COPY_CHUNK_BYTES, keptStream, QuantStream, ropePermutation, rowChunks } from './quantizeChunks';
import { modelDir } from './quantizePlan';
import type { QuantJob, TensorPlan } from './quantizeTypes';

function ggmlTypeOf(d: DType): number | undefined {
  switch (d) {
    case 'F32': return GGML_TYPE.F32;
    case 'F16': return GGML_TYPE.F16;
    case 'BF16': return GGML_TYPE.BF16;
    case 'F64': return GGML_TYPE.F64;
    case 'I8': return GGML_TYPE.I8;
    case 'I16': return GGML_TYPE.I16;
    case 'I32': return GGML_TYPE.I32;
    case 'I64': return GGML_TYPE.I64;
    default: return undefined;
  }
}

/** The key/values of the GGUF header; what they cannot say goes to `job.missing`. */
function ggufMetadata(job: QuantJob, isLlama: boolean, modelType: string | undefined): Array<[string, GgufValue]> {
  const { config, scheme, missing } = job;
  const kv: Array<[string, GgufValue]> = [];
  const arch = isLlama ? 'llama' : modelType ?? 'unknown';
  kv.push(['general.architecture', gguf.str(arch)]);
  kv.push(['general.name', gguf.str(basename(modelDir(job.model)))]);
  kv.push(['general.file_type', gguf.u32(scheme.fileType!)]);
  kv.push(['general.quantization_version', gguf.u32(2)]);
  kv.push(['general.alignment', gguf.u32(32)]);
  if (!config) missing.push('general.architecture and every hyperparameter: no config.json beside the input');
  else if (isLlama) {
    const m = llamaMetadata(config);
    kv.push(...m.kv);
    missing.push(...m.missing);
  } else missing.push(`hyperparameters: model_type '${modelType}' is not a Llama-family model; only general.* keys are written`);
  missing.push('tokenizer (tokenizer.ggml.*): llama.cpp needs it to run the file; a complete conversion is out of scope');
  if (job.args.ggufNames !== 'llama' && isLlama) missing.push('llama.cpp tensor names: pass --gguf-names llama');
  return kv;
}

/** llama.cpp's converter reorders q/k rows from HF's rotary layout to Meta's: the groups and the order, for a q/k weight. */
function ropeGroups(job: QuantJob, p: TensorPlan): { groupRows?: number; perm?: Int32Array } {
  const heads = typeof job.config?.num_attention_heads === 'number' ? job.config.num_attention_heads : undefined;
  const kvHeads = typeof job.config?.num_key_value_heads === 'number' ? job.config.num_key_value_heads : heads;
  if (job.args.ggufNames !== 'llama' || !heads || !/\.self_attn\.(q|k)_proj\.weight$/.test(p.name)) return {};
  const nh = p.name.includes('.q_proj.') ? heads : kvHeads!;
  if (p.rows % nh !== 0 || (p.rows / nh) % 2 !== 0) return {};
  const groupRows = p.rows / nh;
  return { groupRows, perm: ropePermutation(groupRows) };
}

/** One tensor of the GGUF file (quantized, kept, or decoded to F32), or undefined when it is left out. */
function ggufTensor(job: QuantJob, stream: QuantStream, p: TensorPlan): GgufTensor | undefined {
  const { model, scheme, signal, advance } = job;
  const st = job.states.get(p.name)!;
  const t = model.tensor(p.name)!;
  const name = job.args.ggufNames === 'llama' ? llamaCppName(p.name) : p.name;
  if (name === undefined) {
    st.omitted = 'llama.cpp recomputes it';
    return undefined;
  }
  st.outputName = name;
  const dims = p.shape.length === 0 ? [1] : [...p.shape].reverse();
  const { groupRows, perm } = ropeGroups(job, p);
  if (p.action === 'quantize') {
    st.bytesAfter = quantizedBytes(scheme, p.rows, p.cols);
    const onChunk = (r: QuantizeResult, inBytes: number) => {
      addSums(st.sums, r.stats);
      advance(inBytes, p.name);
    };
    const results = stream.add(p, onChunk, groupRows, perm);
    const data = async function* () {
      for await (const r of results()) yield r.data;
    };
    return { name, dims, ggmlType: scheme.ggmlType!, byteLength: st.bytesAfter, data };
  }
  const direct = ggmlTypeOf(p.dtype);
  if (direct === undefined && DTYPE_INFO[p.dtype].kind !== 'float') {
    st.omitted = `GGUF has no ${p.dtype} tensor type`;
    delete st.outputName;
    return undefined;
  }
  if (perm) {
    // A kept q/k weight still needs llama.cpp's row order: stream it through the row reader.
    const data = async function* () {
      for await (const c of rowChunks(model, p, signal, groupRows, perm)) {
        advance(c.inBytes, p.name);
        yield c.src;
      }
    };
    // rowChunks passes BF16/F16/F32 through and decodes anything else to F32.
    const asF32 = p.dtype !== 'BF16' && p.dtype !== 'F16' && p.dtype !== 'F32';
    st.bytesAfter = asF32 ? t.numel * 4 : t.byteLength;
    return { name, dims, ggmlType: asF32 ? GGML_TYPE.F32 : direct!, byteLength: st.bytesAfter, data };
  }
  if (direct !== undefined) {
    st.bytesAfter = t.byteLength;
    return { name, dims, ggmlType: direct, byteLength: t.byteLength, data: keptStream(model, t, signal, advance) };
  }
  st.bytesAfter = t.numel * 4;
  const data = async function* () {
    for await (const c of model.chunks(t, { chunkBytes: COPY_CHUNK_BYTES, signal })) {
      const count = Math.round((c.length * 8) / DTYPE_INFO[p.dtype].bits);
      const f = new Float32Array(count);
      decodeToF32(p.dtype, c, f, count);
      advance(c.length, p.name);
      yield new Uint8Array(f.buffer);
    }
  };
  return { name, dims, ggmlType: GGML_TYPE.F32, byteLength: st.bytesAfter, data };
}

/** Writes the GGUF file (OUT, or `model-<scheme>.gguf` in the folder OUT); returns its path. */
export async function writeGgufOutput(job: QuantJob): Promise<string> {
  const { args, config, scheme } = job;
  const out = (await isDir(args.output)) ? join(args.output, `model-${scheme.name}.gguf`) : args.output;
  const modelType = typeof config?.model_type === 'string' ? config.model_type : undefined;
  const isLlama = modelType !== undefined && LLAMA_FAMILY.includes(modelType);
  if (args.ggufNames === 'llama' && !isLlama) throw new FormatError('unsupported', `--gguf-names llama needs a Llama-family config.json (model_type ${modelType ?? 'missing'})`, args.input);
  const kv = ggufMetadata(job, isLlama, modelType);
  const stream = new QuantStream(job.model, scheme, job.backend, job.signal);
  try {
    const tensors: GgufTensor[] = [];
    for (const p of job.plans) {
      const t = ggufTensor(job, stream, p);
      if (t) tensors.push(t);
    }
    await writeGguf(out, kv, tensors, { signal: job.signal });
    return out;
  } finally {
    await stream.close();
  }
}
