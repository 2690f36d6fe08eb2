import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FormatError } from '../format/errors';
import { HttpOpener, isRemotePath } from '../format/httpOpener';
import type { BackendChoice, Progress } from '../core/job';
import { BackendUnavailableError, disposeBackends } from '../pipelines/runtime';

/**
 * One CLI subcommand. To add one, write `src/cli/<name>.ts` exporting a
 * `Command`, then add one import and one entry to `COMMANDS` in src/cli/main.ts.
 * `run` returns the exit code (0 on success). Throw `UsageError` for bad
 * arguments and let `FormatError` escape for bad input: main prints either as
 * one `error[CODE]: message` line and exits 2. `signal` aborts on Ctrl-C.
 */
export interface Command {
  readonly name: string;
  /** One line for `--help`. */
  readonly summary: string;
  /** Full usage text for `<name> --help`. */
  readonly usage?: string;
  run(argv: string[], io: CommandIO): Promise<number>;
}

export interface CommandIO {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly signal: AbortSignal;
  /** Progress on stderr, only when stderr is a terminal (so logs and pipes stay clean). */
  readonly progress?: (p: Progress) => void;
  /** One informational line on stderr (e.g. stale temporaries swept). */
  readonly notice?: (line: string) => void;
  /** `--verbose`, which main takes out of argv for every command: per-tensor lines where a command has them. */
  readonly verbose?: boolean;
}

/** Bad command-line arguments: exit 2 with `error[usage]: …`. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'usage';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** What a command's `run` receives: its arguments parsed by `parseCommandArgs`. */
export type ParsedArgs<T extends Options> = ReturnType<typeof parseCommandArgs<T>>;

export interface CommandSpec<T extends Options> {
  readonly name: string;
  readonly summary: string;
  readonly usage?: string;
  readonly options: T;
  /** How many positional arguments it takes, and how the error names them. */
  readonly positionals: { readonly min?: number; readonly max?: number; readonly usage: string };
  run(args: ParsedArgs<T>, io: CommandIO): Promise<number>;
}

/** A `Command` whose arguments are parsed (and refused with a UsageError) before `spec.run` sees them. */
export function defineCommand<const T extends Options>(spec: CommandSpec<T>): Command {
  const { min, max, usage } = spec.positionals;
  return {
    name: spec.name,
    summary: spec.summary,
    usage: spec.usage,
    run: (argv, io) => spec.run(parseCommandArgs(argv, spec.options, { minPositionals: min, maxPositionals: max, usage }), io),
  };
}

const BACKENDS: readonly string[] = ['auto', 'webgpu', 'cpu'];

/** `--backend`: auto (the default), webgpu or cpu. */
export function parseBackend(text: string | undefined): BackendChoice {
  const backend = text ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new UsageError(`--backend must be auto, webgpu or cpu, not '${text}'`);
  return backend as BackendChoice;
}

/**
 * Runs `fn`, then releases the compute backends (a GPU device would keep the process
 * alive); a backend asked for by name that cannot start is a usage error.
 */
export async function withBackends<R>(fn: () => Promise<R>): Promise<R> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof BackendUnavailableError) throw new UsageError(e.message);
    throw e;
  } finally {
    await disposeBackends();
  }
}

/** node:util parseArgs, with its errors turned into UsageError. */
export function parseCommandArgs<T extends ParseArgsConfig['options']>(argv: string[], options: T, opts: { minPositionals?: number; maxPositionals?: number; usage?: string } = {}) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]);
  }
  const n = parsed.positionals.length;
  if (n < (opts.minPositionals ?? 0) || n > (opts.maxPositionals ?? Infinity)) {
    throw new UsageError(`expected ${opts.usage ?? 'different arguments'}, got ${n} argument${n === 1 ? '' : 's'}`);
  }
  return parsed;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/** `5GB` (10^9, as Hugging Face reads it), `2GiB`, `500MB`, `1048576`. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2].toUpperCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`'${text}' is not a size (examples: 5GB, 500MB, 2GiB, 1048576)`);
  const v = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(v) || v <= 0) throw new UsageError(`size '${text}' must be positive`);
  return v;
}

/**
 * Commands that write (convert, quantize, merge) read local models only: they read every
 * byte, which over HTTP is a download better done once by a tool made for it. A URL
 * among their arguments is refused before anything starts.
 */
export function refuseRemote(command: string, paths: readonly string[]): void {
  const url = paths.find(isRemotePath);
  if (url !== undefined) {
    throw new FormatError('unsupported', `${command} reads local files only (inspect, stats, diff, scan and the viewer read URLs); download the model first`, url);
  }
}

/**
 * The opener for a path given on the command line: over HTTP for a URL, with Ctrl-C
 * aborting its requests (a stalled server would otherwise hold the command through
 * its retries); undefined, so the format core opens local files itself, otherwise.
 */
export function openerFor(path: string, signal: AbortSignal): HttpOpener | undefined {
  return isRemotePath(path) ? new HttpOpener({ signal }) : undefined;
}

/** Writes text to `out`, waiting for it to drain when its buffer is full (a slow pipe then holds back the writer, not memory). */
export function writer(out: NodeJS.WritableStream): (text: string) => Promise<void> {
  return (text) => (out.write(text) ? Promise.resolve() : new Promise<void>((resolve) => out.once('drain', () => resolve())));
}
