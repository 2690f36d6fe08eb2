import { escapeText } from '../format/escape';
import { fromOsError, isFormatError } from '../format/errors';
import { isCancelled } from '../core/job';
import { UsageError } from './command';

/** Exit codes: 0 success, 1 an unexpected failure, 2 bad input or usage, 130/143 interrupted by SIGINT/SIGTERM (128 + signal, the shell's convention). */
export const EXIT = { ok: 0, internal: 1, badInput: 2, interrupted: 130, terminated: 143 } as const;

/** A one-line message: errors must fit `error[CODE]: message` on a single line. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * Prints a failure as the one line the exit code stands for (`error[CODE]: …`, control
 * characters from file names and headers escaped) and returns that code.
 */
export function reportError(thrown: unknown, stderr: NodeJS.WritableStream, aborted = false, signal?: NodeJS.Signals): number {
  if (isCancelled(thrown) || aborted) {
    stderr.write(signal === 'SIGTERM' ? 'cancelled (SIGTERM)\n' : 'cancelled\n');
    return signal === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
  }
  // A refusal from the OS about the user's paths (read-only, full, missing folder) is bad input, not a bug.
  const e = fromOsError(thrown);
  if (isFormatError(e)) {
    stderr.write(`error[${e.code}]: ${oneLine(escapeText(e.message))}\n`);
    return EXIT.badInput;
  }
  if (e instanceof UsageError) {
    stderr.write(`error[usage]: ${oneLine(escapeText(e.message))}\n`);
    return EXIT.badInput;
  }
  stderr.write(`error[internal]: ${oneLine(escapeText(String((e as Error)?.message ?? e)))}\n`);
  if (process.env.TW_DEBUG) stderr.write(`${(e as Error)?.stack}\n`);
  return EXIT.internal;
}
