import { KQUANT_TYPES, quantizeGgmlRows, type KQuantType } from '../../src/compute/quant/kquant.cpu';
import type { BenchCase, BenchResult } from '../case';

/** Row length of a typical LLM projection (hidden size of a 7B model). */
const COLS = 4096;
/** 8 MiB of f32 input per pass: beyond the caches, short enough to run every type. */
const ROWS = 512;

/** Model-like rows: Gaussian-ish weights (σ 0.02) with every 97th channel 20× wider. */
function rows(): Float32Array {
  const x = new Float32Array(ROWS * COLS);
  let s = 0x2545f491;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  for (let i = 0; i < x.length; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    x[i] = g * 0.02 * (i % 97 === 5 ? 20 : 1);
  }
  return x;
}

function run(type: KQuantType, withImatrix: boolean): BenchResult {
  const x = rows();
  const qw = withImatrix ? Float32Array.from({ length: COLS }, (_, i) => 0.5 + ((i * 7919) % 100) / 50) : null;
  const t = KQUANT_TYPES[type];
  const out = new Uint8Array(ROWS * (COLS / t.blockSize) * t.blockBytes);
  quantizeGgmlRows(type, x.subarray(0, 16 * COLS), 16, COLS, qw, out); // warm-up: the JIT compiles the search
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  quantizeGgmlRows(type, x, ROWS, COLS, qw, out);
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStarted);
  // One thread: CPU seconds measure one core even on a machine shared with other jobs.
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const bytes = x.byteLength;
  return {
    inputBytes: bytes,
    seconds: Number(seconds.toFixed(3)),
    cpuSeconds: Number(cpuSeconds.toFixed(3)),
    MBpsF32PerCpuSecond: Number((bytes / cpuSeconds / 1e6).toFixed(1)),
    MValuesPerCpuSecond: Number((x.length / cpuSeconds / 1e6).toFixed(2)),
  };
}

const TYPES = Object.keys(KQUANT_TYPES) as KQuantType[];

export const kquantCases: BenchCase[] = TYPES.flatMap((type) =>
  [false, true].map((im) => ({
    name: `quantize.cpu.${type.toLowerCase()}${im ? '.imatrix' : ''}`,
    description: `${type} from f32 rows of ${COLS} on the CPU twin, one thread${im ? ', with an importance matrix' : ''}: MB/s of f32 input per CPU second`,
    async run() {
      return run(type, im);
    },
  })),
);
