#!/usr/bin/env node
// tensor-workbench: the command-line face of the pipelines (the same code the extension runs).
//
// Subcommands live in a table. To add one: write src/cli/<name>.ts exporting a
// `Command` ({ name, summary, usage?, run(argv, io) }, see ./command.ts), then add
// its import below and one entry to COMMANDS. That is the whole registration.
import { onBackendInfo } from '../pipelines/runtime';
import type { Progress } from '../core/job';
import { UsageError, type Command, type CommandIO } from './command';
import { convertCommand } from './convert';
import { diffCommand } from './diff';
import { extractLoraCommand } from './extractLora';
import { loraResizeCommand } from './loraResize';
import { inspectCommand } from './inspect';
import { mergeCommand } from './merge';
import { mergeModelsCommand } from './mergeModels';
import { loraCombineCommand } from './loraCombine';
import { quantizeCommand } from './quantize';
import { scanCommand } from './scan';
import { statsCommand } from './stats';

export const COMMANDS: Command[] = [
  inspectCommand,
  convertCommand,
  diffCommand,
  mergeCommand,
  mergeModelsCommand,
  loraCombineCommand,
  extractLoraCommand,
  loraResizeCommand,
  quantizeCommand,
  statsCommand,
  scanCommand,
];

export { EXIT, reportError } from './reportError';
import { EXIT, reportError } from './reportError';

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: tensor-workbench <command> [args]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `tensor-workbench <command> --help` for its arguments.',
    'Any command takes --verbose: the compute backend and GPU adapter, and why, on stderr (and per-tensor lines where a command has them).',
    'Exit codes: 0 success, 2 bad input (one line `error[CODE]: message` on stderr), 1 internal error, 130 interrupted (SIGINT), 143 terminated (SIGTERM).',
  ].join('\n') + '\n';
}

function progressPrinter(stream: NodeJS.WriteStream): ((p: Progress) => void) | undefined {
  if (!stream.isTTY) return undefined;
  return (p) => {
    const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 100;
    const gib = (n: number) => (n / 2 ** 30).toFixed(2);
    const text = p.unit === 'bytes' || p.unit === undefined ? `${pct}% (${gib(p.done)} / ${gib(p.total)} GiB)` : `${pct}% (${p.done} / ${p.total})`;
    stream.write(`\r${p.message ? p.message + ' ' : ''}${text}\x1b[K${p.done >= p.total ? '\r\x1b[K' : ''}`);
  };
}

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  const [name, ...rest] = argv.filter((a) => a !== '--verbose');
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name === undefined ? EXIT.badInput : EXIT.ok;
  }
  if (name === '--version') {
    process.stdout.write(`${typeof __VERSION__ !== 'undefined' ? __VERSION__ : '0.1.0'}\n`);
    return EXIT.ok;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  const ac = new AbortController();
  // SIGTERM (timeout, CI runners, docker stop) cancels like Ctrl-C: the writer removes its temporaries.
  let caught: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    caught ??= sig;
    ac.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Without --verbose nothing about the adapter is printed: stderr carries errors and progress only.
  const offInfo = verbose ? onBackendInfo((line) => process.stderr.write(`tensor-workbench: ${line}\n`)) : undefined;
  try {
    if (!cmd) throw new UsageError(`unknown command '${name}'; run tensor-workbench --help`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write((cmd.usage ?? `usage: tensor-workbench ${cmd.name} …`) + '\n');
      return EXIT.ok;
    }
    const io: CommandIO = { stdout: process.stdout, stderr: process.stderr, signal: ac.signal, progress: progressPrinter(process.stderr), notice: (l) => process.stderr.write(`${l}\n`), verbose };
    return await cmd.run(rest, io);
  } catch (thrown) {
    return reportError(thrown, process.stderr, ac.signal.aborted, caught);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    offInfo?.();
  }
}

declare const __VERSION__: string | undefined;

if (require.main === module) {
  // A closed pipe (`inspect … | head`) is not an error worth a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
  });
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
