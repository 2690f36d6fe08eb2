import * as vscode from 'vscode';
import { fromOsError, isFormatError } from '../format/errors';
import { isCancelled, type JobContext } from '../pipelines/job';
import type { BackendChoice } from '../compute/kernel';
import { ProgressMapper, signalFromToken } from './jobProgress';
import { log } from './log';

export interface RunJobOptions {
  /** Where the bar shows; notifications by default, because only they have a Cancel button. */
  readonly location?: vscode.ProgressLocation;
  /** Overrides the `tensorWorkbench.backend` setting for this job. */
  readonly backend?: BackendChoice;
}

/**
 * Runs one pipeline under a cancellable progress notification:
 *   const report = await runJob('Comparing checkpoints', (ctx) => diff(args, ctx));
 * The pipeline gets `{ progress, signal, backend }`. Cancelling aborts the signal and
 * is not an error: the result is `undefined` and nothing is shown. A failure is shown
 * to the user exactly once (typed errors with their code), logged, and also yields
 * `undefined`, so callers only handle the success case.
 */
export async function runJob<T>(title: string, job: (ctx: JobContext) => Promise<T>, options: RunJobOptions = {}): Promise<T | undefined> {
  const backend = options.backend ?? configuredBackend();
  try {
    return await vscode.window.withProgress(
      { title, location: options.location ?? vscode.ProgressLocation.Notification, cancellable: true },
      async (progress, token) => {
        const cancel = signalFromToken(token);
        const mapper = new ProgressMapper();
        try {
          const notice = (line: string) => log.info(`${title}: ${line}`);
          const result = await job({ signal: cancel.signal, backend, progress: (p) => progress.report(mapper.step(p)), notice });
          // A pipeline that ignored the signal still must not report success after Cancel.
          if (cancel.signal.aborted) return undefined;
          return result;
        } finally {
          cancel.dispose();
        }
      },
    );
  } catch (e) {
    if (isCancelled(e)) {
      log.info(`${title}: cancelled`);
      return undefined;
    }
    showError(e, title);
    return undefined;
  }
}

const shown = new WeakSet<object>();

/**
 * Shows an error to the user once, however many layers catch and rethrow it.
 * Typed format errors lead with their code so that users can search for it.
 */
export function showError(e: unknown, context?: string): void {
  if (isCancelled(e)) return;
  if (typeof e === 'object' && e !== null) {
    if (shown.has(e)) return;
    shown.add(e);
  }
  const text = errorText(e);
  log.error(context ? `${context}: ${text}` : text, e);
  void vscode.window.showErrorMessage(context ? `${context} failed: ${text}` : text);
}

/** One line for a thrown value: `error[code]: message` for format errors. */
export function errorText(thrown: unknown): string {
  // The OS's refusals about the user's paths (read-only, disk full) read like format errors, with a code and the path.
  const e = fromOsError(thrown);
  if (isFormatError(e)) return `error[${e.code}]: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}

export function configuredBackend(): BackendChoice {
  const v = vscode.workspace.getConfiguration('tensorWorkbench').get<string>('backend', 'auto');
  return v === 'webgpu' || v === 'cpu' ? v : 'auto';
}
