import type { Progress } from '../core/job';
import { formatBytes as formatUnits } from '../core/units';

/** The part of vscode.CancellationToken this module uses (a real token satisfies it). */
export interface TokenLike {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): unknown };
}

/**
 * An AbortSignal that aborts when `token` is cancelled (or already was), for
 * pipelines that take `{ signal }`. Dispose it when the job ends so the listener
 * does not outlive the job.
 */
export function signalFromToken(token: TokenLike): {
  readonly signal: AbortSignal;
  dispose(): void;
} {
  const controller = new AbortController();
  if (token.isCancellationRequested) {
    controller.abort();
    return { signal: controller.signal, dispose() {} };
  }
  const sub = token.onCancellationRequested(() => controller.abort());
  return { signal: controller.signal, dispose: () => sub.dispose() };
}

/** What `vscode.Progress<{ message, increment }>` wants for one report. */
export interface ProgressStep {
  readonly message?: string;
  /** Percent points since the previous step (VS Code sums increments). */
  readonly increment?: number;
}

/** Decimal byte counts, the way file managers show them. */
export function formatBytes(n: number): string {
  return formatUnits(n, 'progress');
}

/**
 * Turns absolute pipeline reports (`done` of `total`) into VS Code's relative
 * increments. The bar never moves backwards: a pipeline that restarts a count
 * (a second pass) only changes the message until it passes the previous mark.
 */
export class ProgressMapper {
  private percent = 0;

  step(p: Progress): ProgressStep {
    const pct = p.total > 0 ? Math.min(100, Math.max(0, (p.done / p.total) * 100)) : this.percent;
    const increment = pct > this.percent ? pct - this.percent : undefined;
    if (increment !== undefined) this.percent = pct;
    const count = p.total > 0 ? (p.unit === 'tensors' ? `${p.done} / ${p.total} tensors` : `${formatBytes(p.done)} / ${formatBytes(p.total)}`) : undefined;
    const message = [p.message, count].filter(Boolean).join(' · ') || undefined;
    return { message, increment };
  }
}
