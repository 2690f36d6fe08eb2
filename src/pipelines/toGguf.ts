import { open, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { FormatError, openModel, type CastCounts, type Model, type TensorInfo } from '../format';
import { GGML_TYPE, gguf, writeGguf, type GgufTensor, type GgufValue } from '../format/gguf/writer';
import { parseSentencePiece } from '../format/tokenizer/sentencepiece';
import { specialVocabKeys } from '../format/tokenizer/specialVocab';
import { bpeVocab, sentencePieceVocab, vocabKeys, type GgufVocab } from '../format/tokenizer/vocab';
import { encode, permuteHeads, Q8_0_BLOCK, type GgufOutType } from './ggufTensorStream';
import { ggmlId, quantizeRows, rowWeightsFor, schemeOf, typeBytes, imatrixKeys, imatrixNotes } from './ggufQuantStream';
import { readImatrix, type Imatrix } from '../format/imatrix';
import type { QuantReport } from './quantizeTypes';
import { bitsPerWeightOf, ftypeQuantReport } from './ftypeReport';
import { emptySums, type ErrorSums } from '../compute/quant/common';
import { chooseTypes, FTYPES, isFtypeName, type ChosenType, type FtypeName, type FtypeOptions } from './llamaFtype';
import { getBackend } from '../compute/backend';
import type { Backend } from '../compute/kernel';
import { hparamKeys, llama3RopeFactors, modelShape, ropeScaling, type ModelShape } from './ggufHparams';
import { CancelledError, isCancelled, throttle, type JobContext } from '../core/job';
import { modelInputs, prepareOutputs } from '../format/outputs';
import { decodedModel, storedPartReason, undecodableError, type DecodedModel } from './decodedModel';
import { typeNameOf } from '../format/model';

/** Side files a conversion reads; the output must not be any of them. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'generation_config.json'];

/**
 * A Hugging Face model folder (config.json, safetensors, tokenizer files) → one GGUF that
 * llama.cpp loads: the metadata and vocabulary llama.cpp's converter writes, llama.cpp
 * tensor names and types, streamed tensor by tensor. Every check runs before the first
 * byte is written; a folder that cannot be converted fully is refused with the reason.
 */

export interface ToGgufArgs {
  readonly input: string;
  readonly output: string;
  /** A plain type for every matrix, or one of llama.cpp's file types (per-tensor types as llama-quantize picks them). */
  readonly ftype: GgufOutType | FtypeName;
  /** `--tensor-type`, `--output-tensor-type`, `--token-embedding-type`, `--pure`, for a llama.cpp file type. */
  readonly ftypeOptions?: FtypeOptions;
  /** A llama.cpp importance matrix (GGUF or legacy .dat), for a llama.cpp file type. */
  readonly imatrix?: string;
  /** Measure each quantized tensor's error while writing it, for `report` (a dequantize pass more). */
  readonly report?: boolean;
}

export interface ToGgufResult {
  readonly file: string;
  readonly bytes: number;
  readonly arch: string;
  readonly tokenizer: string;
  readonly pre: string;
  readonly tensors: ReadonlyArray<{ readonly name: string; readonly type: ChosenType }>;
  /** llama.cpp's fallback warnings: rows that do not fit the chosen type's blocks. */
  readonly fallbacks: readonly string[];
  readonly overrides: readonly string[];
  /** Tensor-data bits per weight of the file. */
  readonly bitsPerWeight: number;
  /** Quantized tensors the imatrix does not cover (llama-quantize's "did not find weights for …"). */
  readonly imatrixNotes?: readonly string[];
  /** Per tensor the type and its error, with the totals (bits per weight among them), when `report` was asked. */
  readonly report?: QuantReport;
  /** Input tensors stored quantized (FP8 blocks, GPTQ, GGUF blocks …) with their stored type, converted from their decoded values. */
  readonly dequantized?: ReadonlyArray<{ readonly name: string; readonly from: string }>;
}

/** `enum llama_ftype` for general.file_type. */
const FILE_TYPE: Record<GgufOutType, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };

// Config and tokenizer_config files are a few KB to a few hundred KB (chat templates).
const MAX_CONFIG_BYTES = 16 << 20;
// tokenizer.json of the largest vocabularies (~262k tokens with merges) is ~35 MB.
const MAX_TOKENIZER_BYTES = 128 << 20;
// SentencePiece models are at most a few MB.
const MAX_SP_BYTES = 64 << 20;
// Input is read in chunks of this size.
const CHUNK_BYTES = 4 << 20;

type Json = Record<string, unknown>;

async function readBounded(path: string, max: number): Promise<Uint8Array | undefined> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) return undefined;
    size = s.size;
  } catch {
    return undefined;
  }
  if (size > max) throw new FormatError('unsupported', `${size} bytes is over the ${max}-byte limit for this file`, path);
  const h = await open(path, 'r');
  try {
    const buf = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await h.read(buf, got, size - got, got);
      if (!bytesRead) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await h.close();
  }
}

async function readJson(path: string, max: number): Promise<Json | undefined> {
  const bytes = await readBounded(path, max);
  if (!bytes) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new FormatError('tokenizer_invalid', `not UTF-8 JSON: ${(e as Error).message}`, path);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError('tokenizer_invalid', 'not a JSON object', path);
  return v as Json;
}

async function chatTemplateFile(dir: string): Promise<string | undefined> {
  const jinja = await readBounded(join(dir, 'chat_template.jinja'), MAX_CONFIG_BYTES);
  if (jinja) return new TextDecoder('utf-8', { fatal: true }).decode(jinja);
  const json = await readJson(join(dir, 'chat_template.json'), MAX_CONFIG_BYTES);
  return typeof json?.chat_template === 'string' ? json.chat_template : undefined;
}

/** Vocabulary and tokenizer keys: tokenizer.model first (as the converter tries it first), else tokenizer.json. */
async function tokenizerKeys(dir: string, config: Json): Promise<{ vocab: GgufVocab; kv: Array<[string, GgufValue]> }> {
  const tcPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfig = await readJson(tcPath, MAX_CONFIG_BYTES);
  const vocabSize = typeof config.vocab_size === 'number' ? config.vocab_size : undefined;
  const spPath = join(dir, 'tokenizer.model');
  const sp = await readBounded(spPath, MAX_SP_BYTES);
  const tjPath = join(dir, 'tokenizer.json');
  const tokenizer = await readJson(tjPath, MAX_TOKENIZER_BYTES);
  let vocab: GgufVocab;
  if (sp) vocab = sentencePieceVocab(parseSentencePiece(sp, spPath), vocabSize, tokenizerConfig, await readJson(join(dir, 'added_tokens.json'), MAX_CONFIG_BYTES), spPath);
  else if (tokenizer) vocab = bpeVocab(tokenizer, vocabSize, tjPath);
  else throw new FormatError('unsupported', 'no tokenizer.model or tokenizer.json: llama.cpp needs a vocabulary', dir);
  const special = specialVocabKeys({
    tokenizer,
    tokenizerConfig,
    config,
    nVocab: vocab.tokens.length,
    loadMerges: vocab.model === 'gpt2',
    chatTemplateFile: await chatTemplateFile(dir),
    file: tokenizer ? tjPath : tcPath,
  });
  return { vocab, kv: [...vocabKeys(vocab), ...special] };
}

const LAYER_NAMES: Record<string, string> = {
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'self_attn.q_norm': 'attn_q_norm',
  'self_attn.k_norm': 'attn_k_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
  input_layernorm: 'attn_norm',
  post_attention_layernorm: 'ffn_norm',
};

/** The llama.cpp name of an HF tensor; null to drop it (rotary buffers); undefined when unknown. */
function ggufName(hf: string, shape: ModelShape): string | null | undefined {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  if (hf.endsWith('rotary_emb.inv_freq')) return null;
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m || Number(m[1]) >= shape.layers) return undefined;
  const name = LAYER_NAMES[m[2]];
  if (!name || (m[3] === 'bias' && !['attn_q', 'attn_k', 'attn_v'].includes(name))) return undefined;
  if (name.endsWith('_norm') && name.startsWith('attn_') && name !== 'attn_norm' && shape.arch !== 'qwen3') return undefined;
  return `blk.${m[1]}.${name}.${m[3]}`;
}

interface Planned {
  readonly out: GgufTensor;
  readonly type: ChosenType;
}

/** The converter's type rule: vectors and norms stay F32; Q8_0 rows that are not whole blocks fall back to F16. */
function outType(name: string, t: TensorInfo, ftype: GgufOutType): GgufOutType {
  if (t.shape.length <= 1 || name.endsWith('_norm.weight')) return 'F32';
  if (ftype === 'Q8_0' && t.shape[t.shape.length - 1] % Q8_0_BLOCK !== 0) return 'F16';
  return ftype;
}

function expectShape(t: TensorInfo, want: readonly number[], file: string): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) throw new FormatError('unsupported', `shape [${t.shape}] is not [${want}]`, file, t.name);
}

/** What a tensor is encoded with: a cast, or a quantizer twin on the backend. */
interface Encoder {
  readonly counts: CastCounts;
  /**
   * The pair every tensor is read through, in turns (no fresh 4 MiB buffer per chunk): each stage
   * after the read (cast, permutation, quantizer blocks, or the writer's awaited write) is done
   * with a chunk before the one after the next is read, and tensors are written one at a time.
   */
  readonly buffers: readonly [Uint8Array, Uint8Array];
  readonly imatrix?: Imatrix;
  readonly backend?: Backend;
  readonly signal?: AbortSignal;
  /** Per llama.cpp name, the error sums a report asked for. */
  readonly sums?: Map<string, ErrorSums>;
}

function planTensor(model: Model, t: TensorInfo, name: string, shape: ModelShape, type: ChosenType, enc: Encoder): Planned {
  const rowElems = t.shape[t.shape.length - 1] ?? 1;
  const esize = t.byteLength / Math.max(t.numel, 1);
  // Llama's rotary Q/K rows are regrouped per head; Qwen's checkpoints already use llama.cpp's layout.
  const heads = shape.arch === 'llama' && /attn_q\.weight$/.test(name) ? shape.heads : shape.arch === 'llama' && /attn_k\.weight$/.test(name) ? shape.kvHeads : 0;
  if (heads) {
    const rows = t.shape[0];
    if (t.shape.length !== 2 || rows % (heads * 2)) throw new FormatError('unsupported', `${rows} rows do not split into ${heads} heads of paired rotary rows`, model.path, t.name);
  }
  const weights = schemeOf(type) && type !== 'Q8_0' ? rowWeightsFor(enc.imatrix, name, [...t.shape].reverse(), type, model.path) : undefined;
  const sums = enc.sums && type !== 'F32' && type !== 'F16' && type !== 'BF16' ? emptySums() : undefined;
  if (sums) enc.sums!.set(name, sums);
  const data = () => {
    let src = model.chunks(t, { chunkBytes: CHUNK_BYTES, signal: enc.signal, buffers: enc.buffers });
    if (heads) src = permuteHeads(src, t.shape[0] / heads, rowElems * esize);
    if (type === 'F32' || type === 'F16' || type === 'BF16' || type === 'Q8_0') return encode(src, t.dtype, type, enc.counts, sums);
    return quantizeRows(src, t.dtype, type, rowElems, enc.backend!, enc.counts, enc.signal, weights, sums);
  };
  return { type, out: { name, dims: [...t.shape].reverse(), ggmlType: ggmlId(type), byteLength: typeBytes(type, t.numel), data } };
}

export interface TensorTypes {
  readonly named: ReadonlyArray<readonly [TensorInfo, string, ChosenType]>;
  readonly fallbacks: readonly string[];
  readonly overrides: readonly string[];
}

/** Each tensor's llama.cpp name and output type: the converter's rule for a plain type, llama-quantize's for a file type. */
export function tensorTypes(model: Model, shape: ModelShape, args: Pick<ToGgufArgs, 'ftype' | 'ftypeOptions'>): TensorTypes {
  const named: Array<[TensorInfo, string]> = [];
  for (const t of model.tensors) {
    if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) throw new FormatError('unsupported', `dtype ${t.dtype} is not a float type the converter reads`, model.path, t.name);
    const name = ggufName(t.name, shape);
    if (name === null) continue;
    if (name === undefined) throw new FormatError('unsupported', `no llama.cpp ${shape.arch} tensor for it`, model.path, t.name);
    named.push([t, name]);
  }
  const ftype = args.ftype;
  if (!isFtypeName(ftype)) return { named: named.map(([t, n]) => [t, n, outType(n, t, ftype)] as const), fallbacks: [], overrides: [] };
  // llama-quantize starts from the GGUF the converter writes in the weights' own float type;
  // what it leaves unquantized (vectors, norms) stays as that file has it.
  const start = (t: TensorInfo, n: string) => outType(n, t, t.dtype === 'F64' ? 'F32' : (t.dtype as GgufOutType));
  const model_ = { arch: shape.arch, nLayer: shape.layers, nHead: shape.heads, nHeadKv: shape.kvHeads, nExpert: 0 };
  const plan = chooseTypes(named.map(([t, n]) => ({ name: n, ne: [...t.shape].reverse(), type: start(t, n) })), model_, ftype, args.ftypeOptions);
  return { named: named.map(([t, n]) => [t, n, plan.types.get(n)!] as const), fallbacks: plan.fallbacks, overrides: plan.overrides };
}

function checkShapes(model: Model, shape: ModelShape, nVocab: number, config: Json, file: string): void {
  const embed = model.tensor('model.embed_tokens.weight');
  if (!embed) throw new FormatError('unsupported', 'no model.embed_tokens.weight', file);
  expectShape(embed, [nVocab, shape.hidden], model.path);
  const need = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'input_layernorm', 'post_attention_layernorm'];
  if (shape.arch === 'qwen3') need.push('self_attn.q_norm', 'self_attn.k_norm');
  const ff = config.intermediate_size as number;
  const qRows = shape.heads * shape.headDim;
  const kvRows = shape.kvHeads * shape.headDim;
  const want: Record<string, number[]> = {
    'self_attn.q_proj': [qRows, shape.hidden],
    'self_attn.k_proj': [kvRows, shape.hidden],
    'self_attn.v_proj': [kvRows, shape.hidden],
    'self_attn.o_proj': [shape.hidden, qRows],
    'mlp.gate_proj': [ff, shape.hidden],
    'mlp.up_proj': [ff, shape.hidden],
    'mlp.down_proj': [shape.hidden, ff],
    input_layernorm: [shape.hidden],
    post_attention_layernorm: [shape.hidden],
    'self_attn.q_norm': [shape.headDim],
    'self_attn.k_norm': [shape.headDim],
  };
  for (let l = 0; l < shape.layers; l++) {
    for (const n of need) {
      const t = model.tensor(`model.layers.${l}.${n}.weight`);
      if (!t) throw new FormatError('unsupported', `no model.layers.${l}.${n}.weight`, file);
      expectShape(t, want[n], model.path);
    }
  }
  if (!model.tensor('model.norm.weight')) throw new FormatError('unsupported', 'no model.norm.weight', file);
}

async function loadConfig(dir: string): Promise<Json> {
  const path = join(dir, 'config.json');
  const config = await readJson(path, MAX_CONFIG_BYTES);
  if (!config) throw new FormatError('not_found', 'no config.json', dir);
  return config;
}

/** A folder that passed every check a conversion makes before writing; the caller closes `model`. */
export interface OpenedFolder {
  readonly dir: string;
  readonly configPath: string;
  readonly config: Json;
  readonly shape: ModelShape;
  readonly rope: ReturnType<typeof ropeScaling>;
  readonly vocab: GgufVocab;
  readonly tokKv: Array<[string, GgufValue]>;
  /** The folder's model, its quantized tensors read as their decoded F32 values. */
  readonly model: DecodedModel;
}

/** Config, architecture, tokenizer, tensor names and shapes: throws the reason a folder cannot be converted. */
export async function openFolder(input: string): Promise<OpenedFolder> {
  const dir = resolve(input);
  const configPath = join(dir, 'config.json');
  const config = await loadConfig(dir);
  const shape = modelShape(config, configPath);
  const rope = ropeScaling(config, shape.arch, configPath);
  const { vocab, kv: tokKv } = await tokenizerKeys(dir, config);
  const stored = await openModel(dir);
  let model: DecodedModel;
  try {
    checkShapes(stored, shape, vocab.tokens.length, config, configPath);
    for (const t of stored.tensors) if (storedPartReason(stored, t) !== undefined) throw undecodableError(stored, t, 'converted');
    // A quantized release (FP8 with block scales, GPTQ, AWQ …) converts from its decoded values.
    model = decodedModel(stored);
  } catch (e) {
    await stored.close();
    throw e;
  }
  return { dir, configPath, config, shape, rope, vocab, tokKv, model };
}

export async function toGguf(args: ToGgufArgs, ctx: JobContext = {}): Promise<ToGgufResult> {
  const { dir, configPath, config, shape, rope, vocab, tokKv, model } = await openFolder(args.input);
  let undo: (() => Promise<void>) | undefined;
  try {
    // Every writer's rule: an output that is an input (by real path or inode) is refused before anything is written.
    const inputs = [...(await modelInputs(model)), configPath, ...TOKENIZER_FILES.map((n) => join(dir, n)), ...(args.imatrix ? [args.imatrix] : [])];
    undo = (await prepareOutputs(inputs, { files: [args.output] }, ctx.notice)).undo;
    const counts: CastCounts = { overflow: 0, underflow: 0 };
    if (args.imatrix && !isFtypeName(args.ftype)) throw new FormatError('unsupported', `an importance matrix needs a llama.cpp file type, not ${args.ftype}`, args.imatrix);
    const imatrix = args.imatrix ? await readImatrix(args.imatrix) : undefined;
    const types = tensorTypes(model, shape, imatrix ? { ...args, ftypeOptions: { ...args.ftypeOptions, hasImatrix: true } } : args);
    const needsBackend = types.named.some(([, , type]) => schemeOf(type) !== undefined && type !== 'Q8_0');
    const started = Date.now();
    const buffers: [Uint8Array, Uint8Array] = [new Uint8Array(CHUNK_BYTES), new Uint8Array(CHUNK_BYTES)];
    const enc: Encoder = { counts, imatrix, buffers, signal: ctx.signal, backend: needsBackend ? await getBackend(ctx.backend ?? 'auto') : undefined, sums: args.report ? new Map() : undefined };
    const planned = types.named.map(([t, name, type]) => planTensor(model, t, name, shape, type, enc));
    if (rope === 'llama3') {
      const factors = llama3RopeFactors(config, shape.headDim);
      const bytes = new Uint8Array(factors.buffer);
      planned.unshift({ type: 'F32', out: { name: 'rope_freqs.weight', dims: [factors.length], ggmlType: GGML_TYPE.F32, byteLength: bytes.length, data: bytes } });
    }
    const metadata: Array<[string, GgufValue]> = [
      ['general.architecture', gguf.str(shape.arch)],
      ['general.type', gguf.str('model')],
      ['general.name', gguf.str(basename(dir))],
      ...hparamKeys(config, shape, isFtypeName(args.ftype) ? FTYPES[args.ftype].id : FILE_TYPE[args.ftype], configPath),
      ...tokKv,
      ['general.quantization_version', gguf.u32(2)],
      ...(imatrix ? imatrixKeys(imatrix, args.imatrix!) : []),
    ];
    const report = throttle(ctx.progress);
    const bytes = await writeGguf(args.output, metadata, planned.map((p) => p.out), {
      signal: ctx.signal,
      progress: (done, total) => report({ done, total, unit: 'bytes' }),
    });
    undo = undefined;
    const quantReport = enc.sums ? ftypeQuantReport({
      input: args.input, output: args.output, fileType: args.ftype, backend: enc.backend?.description ?? 'cpu (casts only)', seconds: (Date.now() - started) / 1000,
      tensors: types.named.map(([t, name, type]) => ({ name: t.name, outputName: name, dtype: t.dtype, shape: t.shape, type, bytesBefore: t.byteLength, bytesAfter: typeBytes(type, t.numel), sums: enc.sums!.get(name) })),
    }) : undefined;
    const dequantized = model.decoded.map((name) => ({ name, from: typeNameOf(model.storedOf(name)!) }));
    return { file: args.output, bytes, arch: shape.arch, tokenizer: vocab.model, pre: vocab.pre, tensors: planned.map((p) => ({ name: p.out.name, type: p.type })), fallbacks: types.fallbacks, overrides: types.overrides, bitsPerWeight: bitsPerWeightOf(planned.map((p) => p.out)),
      imatrixNotes: imatrixNotes(imatrix, types.named.map(([t, name, type]) => ({ name, ne: [...t.shape].reverse(), from: t.dtype as ChosenType, type }))), dequantized, ...(quantReport ? { report: quantReport } : {}) };
  } catch (e) {
    await undo?.();
    if (isCancelled(e) || (e instanceof Error && e.name === 'AbortError')) throw new CancelledError();
    throw e;
  } finally {
    await model.close();
  }
}
