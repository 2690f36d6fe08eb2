import { escapeText } from '../format/escape';
import { isFormatError } from '../format/errors';
import { isCancelled } from '../pipelines/job';
import { UsageError } from './command';

/** Exit codes: 0 success, 1 an unexpected failure, 2 bad input or usage, 130 interrupted (the shell's SIGINT convention). */
export const EXIT = { ok: 0, internal: 1, badInput: 2, interrupted: 130 } as const;

/** A one-line message: errors must fit `error[CODE]: message` on a single line. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * Prints a failure as the one line the exit code stands for (`error[CODE]: …`, control
 * characters from file names and headers escaped) and returns that code.
 */
export function reportError(e: unknown, stderr: NodeJS.WritableStream, aborted = false): number {
  if (isCancelled(e) || aborted) {
    stderr.write('cancelled\n');
    return EXIT.interrupted;
  }
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
