import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, open, readdir, rm, stat, symlink } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import { quantize } from '../../src/pipelines/quantize';
import { toGguf } from '../../src/pipelines/toGguf';
import { FTYPES } from '../../src/pipelines/llamaFtype';
import { ensureBenchModel } from '../../test/fixtures/llama';
import { trainSentencePiece } from '../../test/gguf/ftypeFixture';
import { loadLlamaQuantize } from '../../test/gguf/llamaQuantizeOracle';
import type { BenchCase, BenchContext, BenchResult } from '../case';

/**
 * The 1 GB BF16 bench model to llama.cpp file types, ours beside libllama's
 * `llama_model_quantize` (2 threads) on the BF16 GGUF of the same model, each in its own
 * process. Wall and CPU seconds (user+sys of every thread of the process) are both
 * reported: the machine is shared, and CPU seconds do not depend on the others' load.
 * bench.ts sets each ours/peer pair's ratio from the two results.
 */

/** Peak RSS goal, whatever the model's size. */
const RSS_TARGET_MB = 400;
/** llama-quantize's thread count for the peer: this machine's two cores. */
const PEER_THREADS = 2;
// Page-cache warm-up reads in steps of this size.
const WARM_CHUNK = 8 << 20;

/** The bench model's folder with a SentencePiece tokenizer beside the weights (symlinked, not copied). */
async function ensureTokenizedModel(ctx: BenchContext): Promise<string> {
  const base = await ensureBenchModel(ctx.workDir);
  const dir = join(ctx.workDir, 'llama-bench1GB-tokenizer');
  if (existsSync(join(dir, 'tokenizer.model'))) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const f of ['model.safetensors', 'config.json']) await symlink(join(base, f), join(dir, f));
  const sp = trainSentencePiece(dir);
  if (!sp.path) throw new Error(sp.why);
  // Written last: its presence marks a complete folder.
  await copyFile(sp.path, join(dir, 'tokenizer.model'));
  return dir;
}

/** The BF16 GGUF llama-quantize starts from, written by our converter in a process of its own (its memory is not the peer's). */
function ensureBf16Gguf(ctx: BenchContext): string {
  const file = join(ctx.workDir, 'llama-bench1GB-bf16.gguf');
  if (existsSync(file)) return file;
  ctx.log('writing the BF16 GGUF for llama_model_quantize');
  const r = spawnSync(process.execPath, [process.argv[1], '--child', 'convert.gguf.bf16', '--keep'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0 || !existsSync(file)) throw new Error(`convert.gguf.bf16 failed (exit ${r.status})`);
  return file;
}

/** Reads files once so that every side starts from the page cache. */
async function warm(paths: string[]): Promise<void> {
  const buf = Buffer.allocUnsafe(WARM_CHUNK);
  for (const p of paths) {
    const h = await open(p, 'r');
    try {
      while ((await h.read(buf, 0, WARM_CHUNK, null)).bytesRead > 0);
    } finally {
      await h.close();
    }
  }
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** Times `body`: wall and CPU seconds, GB/s of `inputBytes`, peak RSS, load average before and after. */
async function measure(inputBytes: number, body: () => Promise<number>): Promise<BenchResult> {
  const load = loadavg();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const outBytes = await body();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const rssMB = process.resourceUsage().maxRSS / 1024;
  return {
    seconds: Number(seconds.toFixed(3)),
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
    inputGB: Number((inputBytes / 1e9).toFixed(3)),
    gbPerSecond: Number((inputBytes / 1e9 / seconds).toFixed(3)),
    outputMB: Math.round(outBytes / 2 ** 20),
    loadavgBefore: load,
    loadavgAfter: loadavg(),
    rssPass: rssMB <= RSS_TARGET_MB,
  };
}

async function cleanup(dir: string, out: string): Promise<void> {
  await rm(out, { force: true });
  const base = out.slice(dir.length + 1);
  for (const f of await readdir(dir)) if (f.startsWith(`.${base}.tmp-`)) await rm(join(dir, f), { force: true });
  await disposeBackends();
}

/** `quantize --ftype X` / `convert --ftype X` of the tokenized folder: our converter and quantizer in one pass. */
function oursFtype(name: string, ftype: 'Q4_K_M' | 'F16' | 'BF16', description: string, extra: Partial<BenchCase> = {}): BenchCase {
  return {
    name,
    description,
    ...extra,
    async run(ctx) {
      const dir = await ensureTokenizedModel(ctx);
      const keep = process.argv.includes('--keep') && ftype === 'BF16';
      const out = join(ctx.workDir, keep ? 'llama-bench1GB-bf16.gguf' : `${name}.gguf`);
      const input = join(dir, 'model.safetensors');
      try {
        await warm([input]);
        const size = (await stat(input)).size;
        return await measure(size, async () => (await toGguf({ input: dir, output: out, ftype }, { backend: 'cpu' })).bytes);
      } finally {
        if (!keep) await cleanup(ctx.workDir, out);
      }
    },
  };
}

/** `quantize --scheme S` of the bench model into one GGUF (every matrix the one type). */
function oursScheme(name: string, scheme: 'q6_k', extra: Partial<BenchCase>): BenchCase {
  return {
    name,
    description: `1 GB BF16 Llama-like checkpoint → quantize --scheme ${scheme} (GGUF), CPU backend: wall and CPU s, GB/s of input, peak RSS ≤ ${RSS_TARGET_MB} MB`,
    ...extra,
    async run(ctx) {
      const input = await ensureBenchModel(ctx.workDir);
      const out = join(ctx.workDir, `${name}.gguf`);
      try {
        await warm([join(input, 'model.safetensors')]);
        const size = (await stat(join(input, 'model.safetensors'))).size;
        return await measure(size, async () => (await quantize({ input, output: out, scheme }, { backend: 'cpu' })).totals.bytesAfter);
      } finally {
        await cleanup(ctx.workDir, out);
      }
    },
  };
}

/** libllama's llama_model_quantize on the BF16 GGUF, 2 threads. */
function peer(name: string, ftype: 'Q4_K_M' | 'Q6_K'): BenchCase {
  return {
    name,
    description: `llama_model_quantize (libllama of node-llama-cpp 3.21.1, ${PEER_THREADS} threads): BF16 GGUF of the bench model → ${ftype}`,
    async run(ctx) {
      await ensureTokenizedModel(ctx);
      const input = ensureBf16Gguf(ctx);
      const lq = loadLlamaQuantize();
      if (typeof lq === 'string') throw new Error(lq);
      const out = join(ctx.workDir, `${name}.gguf`);
      try {
        await warm([input]);
        const size = (await stat(input)).size;
        const r = await measure(size, async () => {
          lq.quantize(input, out, { ftype: FTYPES[ftype].id, nthread: PEER_THREADS });
          return (await stat(out)).size;
        });
        // The memory goal is ours, not the peer's.
        delete r.rssPass;
        return r;
      } finally {
        await rm(out, { force: true });
      }
    },
  };
}

const SPEEDUP = 1.5;

export const llamaQuantizeCases: BenchCase[] = [
  peer('quantize.llama.q4_k_m', 'Q4_K_M'),
  oursFtype('quantize.ftype.q4_k_m', 'Q4_K_M', `1 GB BF16 Llama-like folder with a tokenizer → quantize --ftype Q4_K_M, CPU backend: ≥ ${SPEEDUP}× llama_model_quantize (${PEER_THREADS} threads), peak RSS ≤ ${RSS_TARGET_MB} MB`, { peer: 'quantize.llama.q4_k_m', speedupGoal: SPEEDUP }),
  peer('quantize.llama.q6_k', 'Q6_K'),
  oursScheme('quantize.scheme.q6_k', 'q6_k', { peer: 'quantize.llama.q6_k', speedupGoal: SPEEDUP }),
  oursFtype('convert.gguf.f16', 'F16', `1 GB BF16 Llama-like folder with a tokenizer → convert to F16 GGUF: ≥ 1 GB/s, peak RSS ≤ ${RSS_TARGET_MB} MB`, { gbpsGoal: 1 }),
  oursFtype('convert.gguf.bf16', 'BF16', 'the same to BF16 GGUF (also the input llama_model_quantize reads): GB/s, peak RSS'),
  oursFtype('convert.gguf.q4_k_m', 'Q4_K_M', `the same to Q4_K_M GGUF (convert --ftype Q4_K_M): GB/s, peak RSS ≤ ${RSS_TARGET_MB} MB`),
];
