import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { planHeader, tempPathFor } from '../../src/format/writer';
import { convertModel } from '../../src/pipelines/convert';
import { writeLlama } from '../../test/fixtures/llama';
import type { BenchCase, BenchResult } from '../case';

/** The goals for `inspect` of a 20 GB sparse checkpoint with 50,000 tensors. */
const TARGET_INSPECT_S = 1;
const TARGET_INSPECT_RSS_MB = 200;
/** Runs per measurement; the median damps other processes sharing the CPU. */
const REPEATS = 5;

// 5,555 Llama-like layers of 9 tensors plus 5 model-level tensors: exactly 50,000.
const SPARSE_LAYERS = 5555;
// hidden 512, intermediate 512, BF16: 3.67 MB per layer, so the file is ≈ 20.4 GB.
const SPARSE_HIDDEN = 512;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function sparseTensors(): { name: string; dtype: 'BF16' | 'F32'; shape: number[] }[] {
  const h = SPARSE_HIDDEN;
  const out: { name: string; dtype: 'BF16' | 'F32'; shape: number[] }[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [32000, h] },
    { name: 'model.rotary_emb.inv_freq', dtype: 'F32', shape: [h / 16] },
  ];
  for (let l = 0; l < SPARSE_LAYERS; l++) {
    const p = `model.layers.${l}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) out.push({ name: `${p}.self_attn.${m}.weight`, dtype: 'BF16', shape: [h, h] });
    for (const m of ['gate_proj', 'up_proj', 'down_proj']) out.push({ name: `${p}.mlp.${m}.weight`, dtype: 'BF16', shape: [h, h] });
    out.push({ name: `${p}.input_layernorm.weight`, dtype: 'BF16', shape: [h] }, { name: `${p}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [h] });
  }
  out.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [h] }, { name: 'model.final_scale', dtype: 'F32', shape: [] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [32000, h] });
  return out;
}

/**
 * Writes the header for real and extends the file to its full size with
 * ftruncate: the data section is a hole, so 20 GB costs a few MB of disk.
 */
async function ensureSparse(workDir: string): Promise<{ path: string; size: number; tensors: number }> {
  const path = join(workDir, 'sparse-20GB-50k.safetensors');
  const tensors = sparseTensors();
  const plan = planHeader(tensors, { metadata: { format: 'pt' } });
  const size = plan.prefix.length + plan.dataBytes;
  if (existsSync(path) && statSync(path).size === size) return { path, size, tensors: tensors.length };
  const tmp = tempPathFor(path);
  const h = await open(tmp, 'wx');
  try {
    await h.write(plan.prefix, 0, plan.prefix.length, 0);
    await h.truncate(size);
    await h.sync();
  } finally {
    await h.close();
  }
  await rename(tmp, path);
  return { path, size, tensors: tensors.length };
}

/**
 * Runs the CLI in a child that reports, through a preloaded hook, its own peak RSS
 * and CPU time on exit. CPU time is the figure to trust when other processes load
 * the machine: wall time then includes waiting for a core.
 */
function timeCli(workDir: string, args: string[]): { seconds: number; cpuSeconds: number; rssMB: number; stdoutBytes: number; code: number | null } {
  const hook = join(workDir, 'rss-hook.js');
  const out = join(workDir, 'rss-hook.out');
  writeFileSync(hook, `process.on('exit', () => { const u = process.resourceUsage(); require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify([u.maxRSS, (u.userCPUTime + u.systemCPUTime) / 1e6])); });\n`);
  rmSync(out, { force: true });
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--require', hook, join(__dirname, 'cli.js'), ...args], { maxBuffer: 256 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  const [rssKB, cpuSeconds] = JSON.parse(readFileSync(out, 'utf8')) as [number, number];
  return { seconds, cpuSeconds, rssMB: rssKB / 1024, stdoutBytes: r.stdout.length, code: r.status };
}

const inspectSparse: BenchCase = {
  name: 'format.inspectSparse',
  description: `node dist/cli.js inspect (text and --json) of a sparse ≈20 GB checkpoint with 50,000 tensors, child wall time and peak RSS; targets < ${TARGET_INSPECT_S} s and < ${TARGET_INSPECT_RSS_MB} MB`,
  async run(ctx): Promise<BenchResult> {
    const { path, size, tensors } = await ensureSparse(ctx.workDir);
    ctx.log(`${(size / 1e9).toFixed(1)} GB file, ${tensors} tensors, ${statSync(path).blocks * 512} bytes on disk`);
    const text: ReturnType<typeof timeCli>[] = [];
    const json: ReturnType<typeof timeCli>[] = [];
    for (let i = 0; i < REPEATS; i++) {
      text.push(timeCli(ctx.workDir, ['inspect', path]));
      json.push(timeCli(ctx.workDir, ['inspect', path, '--json']));
    }
    if ([...text, ...json].some((r) => r.code !== 0)) throw new Error('inspect failed on the sparse checkpoint');
    const textS = median(text.map((r) => r.seconds));
    const jsonS = median(json.map((r) => r.seconds));
    const textRss = Math.max(...text.map((r) => r.rssMB));
    const jsonRss = Math.max(...json.map((r) => r.rssMB));
    return {
      fileGB: +(size / 1e9).toFixed(2),
      tensors,
      textSeconds: +textS.toFixed(3),
      textCpuSeconds: +median(text.map((r) => r.cpuSeconds)).toFixed(3),
      textPeakRssMB: Math.round(textRss),
      jsonSeconds: +jsonS.toFixed(3),
      jsonCpuSeconds: +median(json.map((r) => r.cpuSeconds)).toFixed(3),
      loadAverage: +loadavg()[0].toFixed(1),
      jsonPeakRssMB: Math.round(jsonRss),
      jsonOutputMB: +(json[0].stdoutBytes / 1e6).toFixed(1),
      target: `< ${TARGET_INSPECT_S} s, < ${TARGET_INSPECT_RSS_MB} MB`,
      pass: Math.max(textS, jsonS) < TARGET_INSPECT_S && Math.max(textRss, jsonRss) < TARGET_INSPECT_RSS_MB,
    };
  },
};

// An F32 checkpoint of ≈1.35 GB (bench1GB's shapes, 4 layers) to cast to BF16.
const CONVERT_SPEC = { hidden: 2048, intermediate: 5632, layers: 4, vocab: 32000, heads: 16, kvHeads: 16, dtype: 'F32', seed: 1 } as const;

const convertBf16: BenchCase = {
  name: 'convert.bf16',
  description: 'convert F32 → BF16 (RNE, streamed, temp file + fsync + rename) of a ≈1.35 GB Llama-like checkpoint; input GB/s',
  async run(ctx): Promise<BenchResult> {
    const dir = join(ctx.workDir, 'llama-f32-1.35GB');
    if (!existsSync(join(dir, 'config.json'))) {
      const t0 = performance.now();
      await writeLlama(dir, CONVERT_SPEC);
      ctx.log(`generated F32 input in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const input = join(dir, 'model.safetensors');
    const inBytes = statSync(input).size;
    const outDir = join(ctx.workDir, 'convert-out');
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, 'model-bf16.safetensors');
    // Warm the page cache so that the figure is the cast and write path, not the first disk read.
    await convertModel({ input, output: out, dtype: 'BF16' });
    const secs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await convertModel({ input, output: out, dtype: 'BF16' });
      secs.push((performance.now() - t0) / 1000);
    }
    const s = median(secs);
    const outBytes = statSync(out).size;
    rmSync(outDir, { recursive: true, force: true });
    return { inputGB: +(inBytes / 1e9).toFixed(2), outputGB: +(outBytes / 1e9).toFixed(2), seconds: +s.toFixed(2), inputGBps: +(inBytes / 1e9 / s).toFixed(2) };
  },
};

export const formatWriteCases: BenchCase[] = [inspectSparse, convertBf16];
