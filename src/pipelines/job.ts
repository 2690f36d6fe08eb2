import type { BackendChoice } from '../compute/kernel';

/** One progress report: `done` of `total` units (bytes unless `unit` says otherwise). */
export interface Progress {
  readonly done: number;
  readonly total: number;
  readonly unit?: 'bytes' | 'tensors';
  readonly message?: string;
}

/**
 * What every pipeline takes beside its own arguments: `(args, ctx) => result`.
 * No pipeline imports `vscode`; src/vscode maps a CancellationToken to `signal`
 * and `progress` to `withProgress`.
 */
export interface JobContext {
  readonly progress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
  readonly backend?: BackendChoice;
  /** One line for the user that is neither progress nor an error (e.g. stale temporaries swept). */
  readonly notice?: (line: string) => void;
}

/** Thrown when a job is cancelled. Cancelling is not a failure: callers show nothing. */
export class CancelledError extends Error {
  override readonly name = 'CancelledError';
  constructor() {
    super('cancelled');
  }
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

export function isCancelled(e: unknown): boolean {
  return e instanceof CancelledError || (e instanceof Error && e.name === 'AbortError');
}

/** Calls `report` at most once per `intervalMs` (plus the final call), so progress never floods a UI. */
export function throttle(report: ((p: Progress) => void) | undefined, intervalMs = 100): (p: Progress, force?: boolean) => void {
  let last = 0;
  return (p, force = false) => {
    if (!report) return;
    const now = Date.now();
    if (force || now - last >= intervalMs || p.done >= p.total) {
      last = now;
      report(p);
    }
  };
}
