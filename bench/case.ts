/** One benchmark: it prepares (or reuses) its workload under `ctx.workDir`, then reports figures. */
export interface BenchCase {
  /** Unique, dotted: `format.header`, `stats.cpu`, `quantize.q8_0` … */
  readonly name: string;
  /** What the figures mean and the target they are checked against. */
  readonly description: string;
  run(ctx: BenchContext): Promise<BenchResult>;
  /** A case measuring another program on the same work; the run compares their `seconds` and `cpuSeconds`. */
  readonly peer?: string;
  /** How many times faster than `peer` the goal asks for. */
  readonly speedupGoal?: number;
  /** The goal in GB/s of input (`gbPerSecond`). */
  readonly gbpsGoal?: number;
}

export interface BenchContext {
  /** A folder the project ignores (.bench/); large generated workloads are cached there between runs. */
  readonly workDir: string;
  log(message: string): void;
}

/** Named figures (seconds, GB/s, MB…); `target` and `pass` say how the figure compares to the goal. */
export type BenchResult = Record<string, number | string | boolean>;
