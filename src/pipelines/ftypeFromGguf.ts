import { getBackend } from '../compute/backend';
import type { Backend } from '../compute/kernel';
import { CancelledError, isCancelled, throttle, throwIfCancelled, type JobContext } from '../core/job';
import { castBytes, type CastCounts, type CastDType, type DType } from '../format';
import { FormatError } from '../format/errors';
import { ggufArrayItems, readGguf, readTensorBytes, type GgufFile, type GgufTensorInfo } from '../format/gguf/reader';
import type { GgufValue as ReadValue } from '../format/gguf/values';
import { gguf, writeGguf, type GgufTensor, type GgufValue } from '../format/gguf/writer';
import { prepareOutputs } from '../format/outputs';
import { NodeFileSource } from '../format/source';
import { ggmlId, imatrixKeys, imatrixNotes, quantizeRows, rowWeightsFor, typeBytes } from './ggufQuantStream';
import { readImatrix, type Imatrix } from '../format/imatrix';
import { emptySums, type ErrorSums } from '../compute/quant/common';
import { bitsPerWeightOf, ftypeQuantReport } from './ftypeReport';
import { chooseTypes, FTYPES, type ChosenType, type FtypeModel, type FtypeName, type FtypeOptions, type FtypeTensor, type TypePlan } from './llamaFtype';
import { openModel } from '../format/openModel';
import { decodedModel, type DecodedModel } from './decodedModel';
import type { ToGgufResult } from './toGguf';

/**
 * llama-quantize's job on our side: an F32/F16/BF16 GGUF (llama.cpp names, rows already
 * in llama.cpp's order) → the same model in a llama.cpp file type. Metadata is copied,
 * general.file_type set; each tensor is streamed through its chosen type's quantizer. A
 * quantized GGUF (Q8_0 …) is requantized only when asked, from its decoded values.
 */

export interface GgufFtypeArgs {
  readonly input: string;
  readonly output: string;
  readonly ftype: FtypeName;
  readonly ftypeOptions?: FtypeOptions;
  /** A llama.cpp importance matrix (GGUF or legacy .dat). */
  readonly imatrix?: string;
  /** Each tensor's type, chosen beforehand (a `--target-bpw` plan), instead of the file type's rules. */
  readonly types?: ReadonlyMap<string, ChosenType>;
  /** Measure each quantized tensor's error while writing it, for the result's `report`. */
  readonly report?: boolean;
  /** What the report calls the types' origin; the file type's name by default. */
  readonly label?: string;
  /** Quantize tensors already in a quantized type again (through their decoded values), as llama-quantize --allow-requantize. */
  readonly allowRequantize?: boolean;
}

// Tensor bytes are read in chunks of this size (whole rows are regrouped downstream).
const READ_BYTES = 4 << 20;

const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);

async function metadataOf(file: GgufFile): Promise<Array<[string, GgufValue]>> {
  const out: Array<[string, GgufValue]> = [];
  for (const [key, v] of file.metadata) {
    if (key === 'general.file_type' || key === 'general.quantization_version' || key === 'general.alignment') continue;
    out.push([key, await writable(file, key, v)]);
  }
  return out;
}

async function writable(file: GgufFile, key: string, v: ReadValue): Promise<GgufValue> {
  if (v.type !== 'array') return v as GgufValue;
  if (v.itemType === 'array') throw new FormatError('unsupported', `metadata ${key} is an array of arrays, which this writer does not copy`, file.source.name);
  const items = v.items ?? (await ggufArrayItems(file, v));
  return { type: 'array', itemType: v.itemType, value: items as ReadonlyArray<number | bigint | boolean | string> };
}

function num(file: GgufFile, key: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (v === undefined && fallback !== undefined) return fallback;
  // head_count_kv may be one value per layer: the rules read layer 0's, as llama.cpp's n_gqa() does.
  const x = v?.type === 'array' ? v.items?.[0] : v?.value;
  if (typeof x !== 'number' && typeof x !== 'bigint') throw new FormatError('unsupported', `no numeric ${key} in the metadata`, file.source.name);
  return Number(x);
}

function modelOf(file: GgufFile): FtypeModel {
  const a = file.metadata.get('general.architecture');
  if (a?.type !== 'string') throw new FormatError('unsupported', 'no general.architecture in the metadata', file.source.name);
  const arch = String(a.value);
  const nHead = num(file, `${arch}.attention.head_count`);
  return { arch, nLayer: num(file, `${arch}.block_count`), nHead, nHeadKv: num(file, `${arch}.attention.head_count_kv`, nHead), nExpert: num(file, `${arch}.expert_count`, 0) };
}

function tensorData(file: GgufFile, t: GgufTensorInfo, signal?: AbortSignal): AsyncIterable<Uint8Array> {
  return (async function* () {
    for (let at = 0; at < t.byteLength; at += READ_BYTES) {
      throwIfCancelled(signal);
      const buf = new Uint8Array(Math.min(READ_BYTES, t.byteLength - at));
      await readTensorBytes(file, t, at, buf);
      yield buf;
    }
  })();
}

interface Job {
  /** The same file as a model whose quantized tensors read as their decoded F32 values. */
  readonly decoded: DecodedModel;
  readonly backend: Backend;
  readonly counts: CastCounts;
  readonly imatrix?: Imatrix;
  readonly signal?: AbortSignal;
  /** Per tensor, the error sums a report asked for. */
  readonly sums?: Map<string, ErrorSums>;
}

function planOut(file: GgufFile, t: GgufTensorInfo, type: ChosenType, job: Job): GgufTensor {
  const { signal } = job;
  const from = t.type.name;
  if (type === from) return { name: t.name, dims: t.ne, ggmlType: t.type.id, byteLength: t.byteLength, data: () => tensorData(file, t, signal) };
  // A tensor in a quantized type (requantizing, checked before) is read as its decoded F32 values, as llama.cpp dequantizes it.
  const requant = !FLOAT_TYPES.has(from);
  const values = (): AsyncIterable<Uint8Array> => (requant ? job.decoded.chunks(job.decoded.tensor(t.name)!, { chunkBytes: READ_BYTES, signal }) : tensorData(file, t, signal));
  const dtype = (requant ? 'F32' : from) as CastDType;
  const weights = type !== 'Q8_0' && type !== 'F16' && type !== 'F32' && type !== 'BF16' ? rowWeightsFor(job.imatrix, t.name, t.ne, type, file.source.name) : undefined;
  if (!FLOAT_TYPES.has(type)) {
    const sums = job.sums ? emptySums() : undefined;
    if (sums) job.sums!.set(t.name, sums);
    const data = () => quantizeRows(values(), dtype, type, t.ne[0], job.backend, job.counts, signal, weights, sums);
    return { name: t.name, dims: t.ne, ggmlType: ggmlId(type), byteLength: typeBytes(type, t.elements), data };
  }
  // A float type chosen for a float tensor (a 32-column fallback to F16, an F16 override): a cast.
  const data = async function* () {
    for await (const c of values()) yield dtype === type ? c : castBytes(c, dtype, type as CastDType, job.counts);
  };
  return { name: t.name, dims: t.ne, ggmlType: ggmlId(type), byteLength: typeBytes(type, t.elements), data };
}

/** A plan made beforehand, checked to name every tensor of the file. */
function givenTypes(input: readonly FtypeTensor[], types: ReadonlyMap<string, ChosenType>, file: string): TypePlan {
  for (const t of input) if (!types.has(t.name)) throw new FormatError('unsupported', 'the plan gives it no type', file, t.name);
  return { types: new Map(types), fallbacks: [], overrides: [] };
}

export async function quantizeGgufFtype(args: GgufFtypeArgs, ctx: JobContext = {}): Promise<ToGgufResult> {
  const source = await NodeFileSource.open(args.input);
  let undo: (() => Promise<void>) | undefined;
  let decoded: DecodedModel | undefined;
  try {
    const file = await readGguf(source);
    const model = modelOf(file);
    const input = file.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type.name as ChosenType }));
    const imatrix = args.imatrix ? await readImatrix(args.imatrix) : undefined;
    const plan = args.types ? givenTypes(input, args.types, args.input) : chooseTypes(input, model, args.ftype, { ...args.ftypeOptions, hasImatrix: imatrix !== undefined });
    for (const t of file.tensors) {
      // llama-quantize's rule: a tensor in a quantized type that gets another type needs --allow-requantize.
      const to = plan.types.get(t.name);
      if (to !== t.type.name && !FLOAT_TYPES.has(t.type.name) && !args.allowRequantize) {
        throw new FormatError('requantize', `stored as ${t.type.name}: quantizing it again to ${to} adds a second rounding error; start from the F16, BF16 or F32 GGUF, or pass --allow-requantize (llama-quantize refuses it the same way)`, args.input, t.name);
      }
    }
    const backend = await getBackend(ctx.backend ?? 'auto');
    decoded = decodedModel(await openModel(args.input), backend);
    undo = (await prepareOutputs([args.input, ...(args.imatrix ? [args.imatrix] : [])], { files: [args.output] }, ctx.notice)).undo;
    const started = Date.now();
    const job: Job = { decoded, backend, counts: { overflow: 0, underflow: 0 }, imatrix, signal: ctx.signal, sums: args.report ? new Map() : undefined };
    const tensors = file.tensors.map((t) => planOut(file, t, plan.types.get(t.name)!, job));
    const kv: Array<[string, GgufValue]> = [...(await metadataOf(file)), ['general.quantization_version', gguf.u32(2)], ['general.file_type', gguf.u32(FTYPES[args.ftype].id)]];
    if (file.alignment !== 32) kv.push(['general.alignment', gguf.u32(file.alignment)]);
    if (imatrix) kv.push(...imatrixKeys(imatrix, args.imatrix!));
    const report = throttle(ctx.progress);
    const bytes = await writeGguf(args.output, kv, tensors, { alignment: file.alignment, signal: ctx.signal, progress: (done, total) => report({ done, total, unit: 'bytes' }) });
    undo = undefined;
    const arch = model.arch;
    const quantReport = job.sums ? ftypeQuantReport({
      input: args.input, output: args.output, fileType: args.label ?? args.ftype, backend: job.backend.description, seconds: (Date.now() - started) / 1000,
      tensors: file.tensors.map((t) => {
        const type = plan.types.get(t.name)!;
        return { name: t.name, outputName: t.name, dtype: t.type.name as DType, shape: t.shape, type, bytesBefore: t.byteLength, bytesAfter: type === t.type.name ? t.byteLength : typeBytes(type, t.elements), sums: job.sums!.get(t.name) };
      }),
    }) : undefined;
    return {
      file: args.output, bytes, arch, tokenizer: '', pre: '', tensors: file.tensors.map((t) => ({ name: t.name, type: plan.types.get(t.name)! })),
      fallbacks: plan.fallbacks, overrides: plan.overrides, bitsPerWeight: bitsPerWeightOf(tensors),
      imatrixNotes: imatrixNotes(imatrix, input.map((t) => ({ ...t, from: t.type, type: plan.types.get(t.name)! }))), ...(quantReport ? { report: quantReport } : {}),
    };
  } catch (e) {
    await undo?.();
    if (isCancelled(e) || (e instanceof Error && e.name === 'AbortError')) throw new CancelledError();
    throw e;
  } finally {
    await Promise.all([source.close(), decoded?.close()]);
  }
}
