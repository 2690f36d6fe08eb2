#!/usr/bin/env node
// tensor-workbench: the command-line face of the pipelines (the same code the extension runs).
//
// Subcommands live in a table. To add one: write src/cli/<name>.ts exporting a
// `Command` ({ name, summary, usage?, run(argv, io) }, see ./command.ts), then add
// its import below and one entry to COMMANDS. That is the whole registration.
import type { Progress } from '../pipelines/job';
import { UsageError, type Command, type CommandIO } from './command';
import { convertCommand } from './convert';
import { diffCommand } from './diff';
import { inspectCommand } from './inspect';
import { mergeCommand } from './merge';
import { quantizeCommand } from './quantize';
import { statsCommand } from './stats';

export const COMMANDS: Command[] = [
  inspectCommand,
  convertCommand,
  diffCommand,
  mergeCommand,
  quantizeCommand,
  statsCommand,
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
    'Exit codes: 0 success, 2 bad input (one line `error[CODE]: message` on stderr), 1 internal error, 130 interrupted.',
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
  const [name, ...rest] = argv;
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
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    if (!cmd) throw new UsageError(`unknown command '${name}'; run tensor-workbench --help`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write((cmd.usage ?? `usage: tensor-workbench ${cmd.name} …`) + '\n');
      return EXIT.ok;
    }
    const io: CommandIO = { stdout: process.stdout, stderr: process.stderr, signal: ac.signal, progress: progressPrinter(process.stderr) };
    return await cmd.run(rest, io);
  } catch (e) {
    return reportError(e, process.stderr, ac.signal.aborted);
  } finally {
    process.off('SIGINT', onSigint);
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
