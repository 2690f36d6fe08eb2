import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeModels } from '../../src/pipelines/mergeModels/mergeModels';
import { ensureBenchModel, writeFineTuned } from '../../test/fixtures/llama';
import type { BenchCase, BenchContext, BenchResult } from '../case';

/** The goal: three 1 GB BF16 models merged at 0.5 GB/s of input or more, in under 600 MB. */
const TARGET_GBPS = 0.5;
const TARGET_RSS_MB = 600;

/** The 1 GB bench base and two dense fine-tunes of all 8 layers (generated once, then reused). */
async function ensureModels(ctx: BenchContext): Promise<string[]> {
  const base = await ensureBenchModel(ctx.workDir);
  const fts: string[] = [];
  for (const seed of [1, 2]) {
    const dir = join(ctx.workDir, `llama-bench1GB-ft${seed}`);
    if (!existsSync(join(dir, 'config.json'))) {
      ctx.log(`writing fine-tune ${seed}…`);
      await writeFineTuned(base, dir, { layersChanged: [0, 1, 2, 3, 4, 5, 6, 7], seed: 500 + seed });
    }
    fts.push(dir);
  }
  return [base, ...fts];
}

// The peer gets as long as it needs on a loaded machine, but a hung one must not hang the bench.
const PEER_TIMEOUT_MS = 30 * 60 * 1000;

/**
 * The same merge by bench/peer/merge_models_peer.py (torch, tensor by tensor, 2 threads):
 * its figures beside ours, or a note saying why there are none.
 */
function runPeer(ctx: BenchContext, method: string, models: string[], density: number, out: string): BenchResult {
  const script = join(__dirname, '..', 'bench', 'peer', 'merge_models_peer.py');
  const [base, a, b] = models;
  const args = [script, '--method', method, '--base', base, '--model', a, '--weight', '0.6', '--model', b, '--weight', '0.4', '--density', String(density), '--threads', '2', '--out', out];
  const r = spawnSync('python3', args, { encoding: 'utf8', timeout: PEER_TIMEOUT_MS, maxBuffer: 1 << 20 });
  if (r.error) return { peer: `skipped: python3 could not run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})` };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) return { peer: `skipped: the peer failed (exit ${r.status}): ${r.stderr.trim().split('\n').pop() ?? ''}` };
  const p = JSON.parse(line) as { inputBytes: number; seconds: number; cpuSeconds: number; peakRssMB: number; torch: string; arithmetic: string };
  ctx.log(`peer: ${line}`);
  return {
    peer: `torch ${p.torch}, ${p.arithmetic}, 2 threads`,
    peerSeconds: Number(p.seconds.toFixed(3)),
    peerInputGBps: Number((p.inputBytes / 1e9 / p.seconds).toFixed(3)),
    peerCpuSeconds: Number(p.cpuSeconds.toFixed(3)),
    peerInputGBperCpuSecond: Number((p.inputBytes / 1e9 / p.cpuSeconds).toFixed(3)),
    peerPeakRssMB: Math.round(p.peakRssMB),
  };
}

async function runMerge(ctx: BenchContext, method: 'task_arithmetic' | 'ties'): Promise<BenchResult> {
  const models = await ensureModels(ctx);
  const [base, a, b] = models;
  const density = method === 'ties' ? ', density: 0.5' : '';
  const cfg = join(ctx.workDir, `merge-models-${method}.yml`);
  writeFileSync(cfg, `merge_method: ${method}\nbase_model: ${base}\ndtype: bfloat16\nmodels:\n  - model: ${a}\n    parameters: {weight: 0.6${density}}\n  - model: ${b}\n    parameters: {weight: 0.4${density}}\n`);
  const out = join(ctx.workDir, 'merge-models-out.safetensors');
  try {
    const load0 = loadavg()[0];
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const r = await mergeModels({ config: cfg, output: out });
    const seconds = (performance.now() - t0) / 1000;
    // CPU seconds of this process (main thread and I/O threads): the figure that holds on a loaded machine.
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const gbps = r.inputBytes / 1e9 / seconds;
    const load1 = loadavg()[0];
    await rm(out, { force: true });
    const peer = runPeer(ctx, method, models, method === 'ties' ? 0.5 : 1, out);
    return {
      seconds: Number(seconds.toFixed(3)),
      inputGB: Number((r.inputBytes / 1e9).toFixed(3)),
      inputGBps: Number(gbps.toFixed(3)),
      cpuSeconds: Number(cpuSeconds.toFixed(3)),
      inputGBperCpuSecond: Number((r.inputBytes / 1e9 / cpuSeconds).toFixed(3)),
      target: `≥ ${TARGET_GBPS} GB/s of input, peak RSS < ${TARGET_RSS_MB} MB`,
      pass: gbps >= TARGET_GBPS,
      loadAverage: `${load0.toFixed(2)} → ${load1.toFixed(2)}`,
      ...peer,
    };
  } finally {
    await rm(out, { force: true });
  }
}

export const mergeModelsCases: BenchCase[] = [
  {
    name: 'mergeModels.task_arithmetic',
    description: 'task_arithmetic of three 1 GB BF16 Llama-like models (base + two dense fine-tunes) to BF16: input GB/s',
    run: (ctx) => runMerge(ctx, 'task_arithmetic'),
  },
  {
    name: 'mergeModels.ties',
    description: 'ties (density 0.5) of the same three models: input GB/s (three passes over each tensor: two rank histograms, then the merge)',
    run: (ctx) => runMerge(ctx, 'ties'),
  },
];
