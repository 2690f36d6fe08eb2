/**
 * `merge`: folds LoRA adapters into a base model, one tensor at a time.
 *
 * Everything is validated from headers before a byte is written: every adapter
 * key must land on a base tensor of a compatible shape (else the merge stops
 * with the list, unless `allowUnmatched`). Touched tensors are computed in row
 * slices by the matmul twin (`W ± Σ wⱼ·scaleⱼ·Bⱼ@Aⱼ`, several adapters stacked
 * into one product), untouched ones are streamed through byte for byte. The
 * writer puts everything in temp files and renames them only at the end, so a
 * failure or a cancel leaves nothing behind.
 */
import { createWriteStream } from 'node:fs';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { basename, dirname, join } from 'node:path';
import { getBackend } from '../compute/backend';
import type { Backend } from '../compute/kernel';
import type { MatmulDType } from '../compute/matmul/matmul';
import { CancelledError, throttle, throwIfCancelled, type JobContext } from '../core/job';
import { isCastDType } from '../format/cast';
import type { DType } from '../format/dtypes';
import { FormatError, fromOsError } from '../format/errors';
import { exists } from '../format/files';
import { openModel } from '../format/openModel';
import { modelInputs, prepareOutputs } from '../format/outputs';
import { openRegularFile, readSmallTextFile } from '../format/source';
import { typeNameOf } from '../format/model';
import { decodedModel, storedPartReason, undecodableError, type DecodedModel } from './decodedModel';
import { shardedNames, tempPathFor, writeSafetensors, writeSharded, type TensorSource } from '../format/writer';
import { mapAdapters, openAdapter, type MappedModule, type ParsedAdapter, type UnmatchedKey } from './lora';
import { COPY_CHUNK_BYTES, copiedData, mergedData, MergedAhead, outDtypeOf } from './mergeData';
import type { AdapterSummary, MergeArgs, MergePlan, MergeResult } from './mergeTypes';

export type * from './mergeTypes';

/** Refusals of a merge, before anything is written. */
export class MergeError extends Error {
  override readonly name = 'MergeError';
  constructor(
    message: string,
    readonly unmatched: readonly UnmatchedKey[] = [],
  ) {
    super(message);
  }
}

const MERGEABLE = new Set<DType>(['F32', 'BF16', 'F16']);
// Files beside the weights that a merged folder needs to load as the same model.
export const SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
];
const TOOL = 'tensor-workbench 0.1.0';
// config.json of any real model is a few KB.
const MAX_REWRITTEN_BYTES = 1 << 20;

function listKeys(u: readonly UnmatchedKey[], adapters: readonly { path: string }[]): string {
  // Enough lines to act on without flooding a terminal; the JSON output has them all.
  const shown = 20;
  const lines = u.slice(0, shown).map((x) => `  ${adapters[x.adapter]?.path ?? '?'}: ${x.key}: ${x.reason}`);
  if (u.length > shown) lines.push(`  … and ${u.length - shown} more`);
  return lines.join('\n');
}

/**
 * Opens the base and the adapters and maps every key, reading headers,
 * configs and scalar alphas only. The caller must `close()` the plan.
 */
export async function planMerge(args: Pick<MergeArgs, 'base' | 'adapters'>): Promise<MergePlan> {
  if (args.adapters.length === 0) throw new MergeError('no adapter to merge');
  const stored = await openModel(args.base);
  let base: DecodedModel;
  try {
    // A quantized base (FP8 with block scales, GPTQ, GGUF blocks …) merges into its decoded values.
    base = decodedModel(stored);
  } catch (e) {
    await stored.close();
    throw e;
  }
  const adapters: ParsedAdapter[] = [];
  const close = async () => {
    await Promise.all([base.close(), ...adapters.map((a) => a.close())]);
  };
  try {
    for (const a of args.adapters) adapters.push(await openAdapter(a.path));
    const mapping = mapAdapters(adapters, base);
    const targets = new Map<string, MappedModule[]>();
    for (const m of mapping.modules) {
      const list = targets.get(m.target);
      if (list) list.push(m);
      else targets.set(m.target, [m]);
    }
    const summaries: AdapterSummary[] = adapters.map((ad, i) => ({
      path: args.adapters[i].path,
      format: ad.format,
      weight: args.adapters[i].weight ?? 1,
      modules: mapping.modules
        .filter((m) => m.adapter === i)
        .map((m) => ({ name: m.module.name, target: m.target, rank: m.module.rank, alpha: m.module.alpha, scale: m.module.scale, dora: m.module.magnitude !== undefined })),
      replacements: mapping.replacements.filter((r) => r.adapter === i).map((r) => r.target),
    }));
    return { base, adapters, mapping, summaries, targets, unmatched: mapping.unmatched, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Refuses combinations that have no single meaning, naming the tensor. */
function checkPlan(plan: MergePlan, args: MergeArgs): void {
  const replaced = new Map<string, number>();
  for (const r of plan.mapping.replacements) {
    if (replaced.has(r.target)) throw new MergeError(`two adapters replace '${r.target}' whole (modules_to_save): the result would depend on their order`);
    replaced.set(r.target, r.adapter);
    if (plan.targets.has(r.target)) throw new MergeError(`'${r.target}' is both replaced whole and LoRA-updated`);
    if (args.subtract) throw new MergeError(`--subtract cannot undo '${r.target}', which the adapter replaces whole (modules_to_save)`);
  }
  for (const [target, list] of plan.targets) {
    const t = plan.base.tensor(target)!;
    if (storedPartReason(plan.base, t) !== undefined) throw undecodableError(plan.base, t, 'merged');
    if (!MERGEABLE.has(t.dtype)) throw new FormatError('unsupported', `a ${t.dtype} tensor cannot take a LoRA update (F32, BF16 or F16 only)`, plan.base.path, target);
    for (const m of list) {
      for (const f of [m.module.down, m.module.up, m.module.magnitude]) {
        if (f && !MERGEABLE.has(f.dtype)) throw new FormatError('unsupported', `${f.dtype} adapter factors are not supported (F32, BF16 or F16)`, plan.adapters[m.adapter].file, f.name);
      }
    }
    if (new Set(list.map((m) => m.module.transpose)).size > 1) throw new MergeError(`adapters disagree on the layout of '${target}' (fan_in_fan_out)`);
    const dora = list.filter((m) => m.module.magnitude);
    if (dora.length > 0 && list.length > 1) throw new MergeError(`'${target}' has a DoRA update and other updates: DoRA's normalisation has no linear combination`);
    if (dora.length > 0 && args.subtract) throw new MergeError(`--subtract cannot undo DoRA on '${target}': its normalisation is not a subtraction`);
  }
  for (const a of args.adapters) {
    if (a.weight !== undefined && !Number.isFinite(a.weight)) throw new MergeError(`adapter weight ${a.weight} is not a number (${a.path})`);
  }
}

/** The file-name stem of a folder output: the base's own (`model` for `model-00001-of-00002.safetensors`). */
function shardStem(plan: MergePlan): string {
  const stem = plan.base.path.endsWith('.index.json')
    ? basename(plan.base.path).replace(/\.safetensors\.index\.json$/, '')
    : plan.base.files.length === 1
      ? basename(plan.base.files[0].path).replace(/\.safetensors$/, '')
      : 'model';
  return plan.base.files.length > 1 ? stem.replace(/-\d{5}-of-\d{5}$/, '') : stem;
}

/**
 * Copies the base folder's config and tokenizer files to temporaries in `outDir`
 * before the weights are written, so that a full disk fails before anything is in
 * place; `commit` renames them into place, `discard` removes them.
 */
export async function stageSideFiles(baseDir: string, outDir: string, dequantized = false, rewrite?: Readonly<Record<string, (text: string) => string>>): Promise<{ commit: () => Promise<string[]>; discard: () => Promise<void> }> {
  const staged: { tmp: string; dst: string }[] = [];
  const discard = async () => {
    for (const f of staged) await unlink(f.tmp).catch(() => {});
  };
  try {
    for (const name of SIDE_FILES) {
      const src = join(baseDir, name);
      if (!(await exists(src))) continue;
      const dst = join(outDir, name);
      const tmp = tempPathFor(dst);
      // Read through a handle that is known to be a regular file: a FIFO here is refused, never waited on.
      if (dequantized && name === 'config.json') {
        // The weights are written dequantized: a loader must not look for scales.
        const text = await withoutQuantizationConfig(src);
        const edit = rewrite?.[name];
        staged.push({ tmp, dst });
        await writeFile(tmp, edit ? edit(text) : text, { flag: 'wx' });
        continue;
      }
      const { handle } = await openRegularFile(src);
      staged.push({ tmp, dst });
      try {
        const edit = rewrite?.[name];
        if (edit) {
          // Rewritten side files are small JSON configs; the cap keeps a huge one out of memory.
          if ((await handle.stat()).size > MAX_REWRITTEN_BYTES) throw new FormatError('unsupported', `larger than ${MAX_REWRITTEN_BYTES} bytes: not a model config`, src);
          await writeFile(tmp, edit(await handle.readFile('utf8')), { flag: 'wx' });
          continue;
        }
        await pipeline(handle.createReadStream({ autoClose: false }), createWriteStream(tmp, { flags: 'wx' }));
      } finally {
        await handle.close();
      }
    }
  } catch (e) {
    await discard();
    throw fromOsError(e, staged[staged.length - 1]?.dst);
  }
  const commit = async () => {
    for (const f of staged) await rename(f.tmp, f.dst);
    return staged.map((f) => f.dst);
  };
  return { commit, discard };
}

// A model's config.json is a few KB; this bound only keeps a stray huge file from being read whole.
const MAX_CONFIG_BYTES = 16 << 20;

/** config.json's text without `quantization_config` (as it was when it has none or is not a JSON object). */
async function withoutQuantizationConfig(path: string): Promise<string> {
  const text = await readSmallTextFile(path, MAX_CONFIG_BYTES, 'config.json', 'config_invalid');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return text;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v) || !('quantization_config' in v)) return text;
  const rest = { ...(v as Record<string, unknown>) };
  delete rest.quantization_config;
  return JSON.stringify(rest, null, 2) + '\n';
}

/** The output's tensors in base order: LoRA-updated (computed ahead), replaced whole, or copied. */
function mergeSources(plan: MergePlan, args: MergeArgs, backend: Backend, ahead: MergedAhead, signal: AbortSignal | undefined): { sources: TensorSource[]; merged: number; replaced: number; copied: number } {
  const workers = backend.kind === 'cpu' ? Math.max(1, Number(/×(\d+)/.exec(backend.description)?.[1] ?? 2)) : 1;
  const replacements = new Map(plan.mapping.replacements.map((r) => [r.target, r]));
  const sources: TensorSource[] = [];
  let merged = 0;
  let replaced = 0;
  let copied = 0;
  // Untouched tensors stream one at a time through the same two buffers.
  const buffers: [Uint8Array, Uint8Array] = [new Uint8Array(COPY_CHUNK_BYTES), new Uint8Array(COPY_CHUNK_BYTES)];
  plan.base.tensors.forEach((t, i) => {
    const list = plan.targets.get(t.name);
    const rep = replacements.get(t.name);
    // A quantized base tensor is written dequantized, in BF16 (the dtype its release was trained in) unless --dtype says otherwise.
    const dtype = plan.base.storedOf(t.name) ? (args.dtype ?? 'BF16') : outDtypeOf(t.dtype, args.dtype);
    if (list) {
      merged++;
      ahead.set(i, (sig) => mergedData(plan, args, t, list, dtype as MatmulDType, backend, workers, sig)(), t.numel * (dtype === 'F32' ? 4 : 2));
      sources.push({ name: t.name, dtype, shape: t.shape, data: () => ahead.take(i) });
    } else if (rep) {
      replaced++;
      const src = plan.adapters[rep.adapter];
      const rd = rep.replacement.tensor;
      const to = isCastDType(rd.dtype) && isCastDType(t.dtype) ? outDtypeOf(t.dtype, args.dtype) : rd.dtype;
      const copy = copiedData(src.model, rd, to, buffers, signal);
      sources.push({ name: t.name, dtype: to, shape: t.shape, data: () => (ahead.kick(), copy()) });
    } else {
      copied++;
      const copy = copiedData(plan.base, t, dtype, buffers, signal);
      sources.push({ name: t.name, dtype, shape: t.shape, data: () => (ahead.kick(), copy()) });
    }
  });
  return { sources, merged, replaced, copied };
}

/** The output's `__metadata__`: the base's, plus what was merged and how. */
function mergeMetadata(plan: MergePlan, args: MergeArgs): Record<string, string> {
  return {
    ...plan.base.metadata,
    format: plan.base.metadata.format ?? 'pt',
    'tensor_workbench.merge': JSON.stringify({
      tool: TOOL,
      base: basename(args.base),
      subtract: args.subtract === true,
      dtype: args.dtype ?? null,
      adapters: plan.summaries.map((s) => ({
        path: basename(s.path),
        format: s.format,
        weight: s.weight,
        modules: s.modules.length,
        scales: [...new Set(s.modules.map((m) => m.scale))],
        replaced: s.replacements,
      })),
    }),
  };
}

/**
 * Writes the merged tensors as one file or as shards like the base's (with its side
 * files, staged first); on failure the staged side files are removed.
 */
async function writeMerged(plan: MergePlan, args: MergeArgs, sources: TensorSource[], ctx: JobContext): Promise<{ files: string[]; index?: string; bytes: number }> {
  const metadata = mergeMetadata(plan, args);
  const total = sources.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : t.dtype === 'BF16' || t.dtype === 'F16' ? 2 : 1), 0);
  const report = throttle(ctx.progress);
  const progress = (done: number, all: number) => report({ done, total: all || total, unit: 'bytes', message: 'merging' });
  const signal = ctx.signal;
  if (args.output.endsWith('.safetensors')) {
    const w = await writeSafetensors(args.output, sources, { metadata, order: 'source', signal, progress });
    return { files: [w.path], bytes: w.bytes };
  }
  const outDir = args.output;
  const side = await stageSideFiles(baseDirOf(plan), outDir, plan.base.decoded.length > 0);
  try {
    const w = await writeSharded(outDir, sources, {
      metadata,
      order: 'source',
      signal,
      progress,
      stem: shardStem(plan),
      ...(args.maxShardSize !== undefined ? { maxShardBytes: args.maxShardSize } : { shardCount: plan.base.files.length }),
    });
    const files = w.files.map((f) => f.path);
    files.push(...(await side.commit()));
    return { files, index: w.index, bytes: w.files.reduce((s, f) => s + f.bytes, 0) };
  } catch (e) {
    await side.discard();
    throw e;
  }
}

function baseDirOf(plan: MergePlan): string {
  return plan.base.files.length > 0 ? dirname(plan.base.files[0].path) : dirname(plan.base.path);
}

/** Merges the adapters into the base and writes the result (see the module comment). */
export async function merge(args: MergeArgs, ctx: JobContext = {}): Promise<MergeResult> {
  const { signal } = ctx;
  throwIfCancelled(signal);
  const plan = await planMerge(args);
  try {
    if (plan.unmatched.length > 0 && !args.allowUnmatched) {
      throw new MergeError(`${plan.unmatched.length} adapter key(s) do not map onto the base; nothing was written (--allow-unmatched merges the rest):\n${listKeys(plan.unmatched, args.adapters)}`, plan.unmatched);
    }
    checkPlan(plan, args);
    const toFile = args.output.endsWith('.safetensors');
    const outDir = toFile ? dirname(args.output) : args.output;
    const baseDir = baseDirOf(plan);
    const inputs = [
      ...(await modelInputs(plan.base)),
      ...SIDE_FILES.map((n) => join(baseDir, n)),
      ...plan.adapters.flatMap((a) => [a.path, a.file, join(dirname(a.file), 'adapter_config.json')]),
    ];
    const outputs = toFile ? { files: [args.output] } : { files: SIDE_FILES.map((n) => join(outDir, n)), families: [{ dir: outDir, pattern: shardedNames(shardStem(plan)) }] };
    const backend = await getBackend(ctx.backend ?? 'auto');
    const ahead = new MergedAhead(signal);
    const { sources, merged, replaced, copied } = mergeSources(plan, args, backend, ahead, signal);
    // Checked (and folders made) only now, once nothing before the write can fail.
    const { undo } = await prepareOutputs(inputs, outputs, ctx.notice);
    let written: { files: string[]; index?: string; bytes: number };
    try {
      written = await writeMerged(plan, args, sources, ctx);
    } catch (e) {
      // The writer removed its temp files; staged side files and folders this merge created go too.
      await undo();
      if (signal?.aborted) throw new CancelledError();
      throw e;
    } finally {
      await ahead.close();
    }
    const dequantized = plan.base.decoded.map((n) => ({ name: n, from: typeNameOf(plan.base.storedOf(n)!), dtype: sources.find((x) => x.name === n)!.dtype }));
    return { files: written.files, index: written.index, merged, replaced, copied, dequantized, unmatched: plan.unmatched, adapters: plan.summaries, backend: backend.description, bytes: written.bytes };
  } finally {
    await plan.close();
  }
}
