import { isFormatError } from '../../format/errors';
import { isCancelled } from '../../core/job';
import type { ErrorInfo } from '../../shared/protocol';

/** Errors as they cross to a page, as a request's error reply: a FormatError keeps its code, file and tensor. */
export function errorInfo(e: unknown): ErrorInfo {
  if (isCancelled(e)) return { code: 'cancelled', message: 'cancelled' };
  if (isFormatError(e)) return { code: e.code, message: e.message, file: e.file, tensor: e.tensor };
  const code = (e as { code?: unknown })?.code;
  return { code: typeof code === 'string' ? code : 'internal', message: e instanceof Error ? e.message : String(e) };
}

