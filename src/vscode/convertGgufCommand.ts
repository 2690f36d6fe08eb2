import * as vscode from 'vscode';
import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { estimateGguf, isGgufTarget } from '../pipelines/ggufEstimate';
import type { GgufOutType } from '../pipelines/ggufTensorStream';
import { isFtypeName, type FtypeName } from '../pipelines/llamaFtype';
import { reportMarkdown } from '../pipelines/quantizeReport';
import { QuantReportPanel } from './quantReportPanel';
import { toGguf, type ToGgufResult } from '../pipelines/toGguf';
import { localPath, pickLocalInput, registerWriteCommand } from './commands';
import { log } from './log';
import { runJob } from './progress';
import { ggufItems, pickType } from './typePick';

const COMMAND = 'tensorWorkbench.convertToGguf';
const SHOW_REPORT = 'Show report';
/** Context key: the workspace folders holding config.json and safetensors (the explorer menu's `when`). */
const FOLDERS_KEY = 'tensorWorkbench.hfModelFolders';
// A workspace with more model folders than this lists only the first ones in the menu; the palette still reaches all.
const MAX_FOLDERS = 500;
// Rescans after file changes wait this long, so that a copy of many shards scans once.
const RESCAN_MS = 1000;

/** Arguments for running the command without its pickers (scripts and the extension-host tests). */
export interface ConvertGgufCommandOptions {
  readonly ftype: GgufOutType | FtypeName;
  readonly output: string;
}

/**
 * "Tensor Workbench: Convert to GGUF…": a Hugging Face model folder (config.json, safetensors,
 * tokenizer) to a GGUF that llama.cpp runs. The file type is picked with its size, bits per
 * weight and sampled error; the output opens in the viewer. A folder that cannot be converted
 * shows the reason before anything is written. A write command: disabled in untrusted workspaces.
 */
export class ConvertGgufCommand {
  static register(context: vscode.ExtensionContext): void {
    // The explorer passes (clicked, selected[]): only a plain options object skips the pickers.
    registerWriteCommand(context, COMMAND, (uri?: vscode.Uri, opts?: ConvertGgufCommandOptions | vscode.Uri[]) => run(uri, Array.isArray(opts) ? undefined : opts));
    trackModelFolders(context);
  }
}

function pickFolder(initial?: vscode.Uri): Promise<string | undefined> {
  return pickLocalInput(initial, 'Converting', {
    title: 'Convert to GGUF: a Hugging Face model folder (config.json, safetensors, tokenizer)',
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel: 'Convert',
  });
}

async function pickOutput(dir: string, target: string): Promise<string | undefined> {
  const uri = await vscode.window.showSaveDialog({
    title: 'Convert to GGUF: output .gguf file',
    defaultUri: vscode.Uri.file(join(dirname(dir), `${basename(dir)}-${target}.gguf`)),
    filters: { GGUF: ['gguf'] },
    saveLabel: 'Convert',
  });
  return uri ? localPath(uri, 'Converting') : undefined;
}

/** One line for the notification: types written and where. */
export function summary(r: ToGgufResult, target: string): string {
  const counts = new Map<string, number>();
  for (const t of r.tensors) counts.set(t.type, (counts.get(t.type) ?? 0) + 1);
  const mix = [...counts].map(([t, n]) => `${n} ${t}`).join(', ');
  const falls = r.fallbacks.length ? `; ${r.fallbacks.length} tensors fell back to 32-value blocks` : '';
  return `Wrote ${basename(r.file)}: ${r.arch}, ${target}, ${r.tensors.length} tensors (${mix}), tokenizer ${r.tokenizer}${falls}.`;
}

/**
 * Converts under a cancellable progress notification, then opens the output in the viewer.
 * With `reportUri` (the extension's, from "Quantize…"), a llama.cpp file type's errors are
 * measured while writing and the notification offers the report: each tensor's type and error.
 */
export async function convertFolder(input: string, output: string, target: GgufOutType | FtypeName, reportUri?: vscode.Uri): Promise<ToGgufResult | undefined> {
  const report = reportUri !== undefined && isFtypeName(target);
  const r = await runJob(`Converting ${basename(input)} to GGUF ${target}`, (ctx) => toGguf({ input, output, ftype: target, report }, ctx));
  if (!r) return undefined;
  for (const f of r.fallbacks) log.info(`Convert to GGUF: ${f}`);
  if (r.report && reportUri) {
    const q = r.report;
    void vscode.window.showInformationMessage(summary(r, target), SHOW_REPORT).then((a) => (a === SHOW_REPORT ? QuantReportPanel.show(reportUri, q, reportMarkdown(q)) : undefined));
  } else void vscode.window.showInformationMessage(summary(r, target));
  await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(r.file));
  return r;
}

async function run(uri?: vscode.Uri, opts?: ConvertGgufCommandOptions): Promise<ToGgufResult | undefined> {
  const input = await pickFolder(uri);
  if (!input) return undefined;
  if (opts) {
    if (!isGgufTarget(opts.ftype)) throw new Error(`Convert to GGUF: unknown file type '${opts.ftype}'`);
    return convertFolder(input, opts.output, opts.ftype);
  }
  // The checks a conversion makes come first: a folder it cannot convert shows the reason here.
  const est = await runJob(`Estimating GGUF sizes and errors for ${basename(input)}`, (ctx) => estimateGguf({ input, errors: true }, ctx));
  if (!est) return undefined;
  const choice = await pickType({
    title: `Convert ${basename(input)} (${est.arch}, ${est.params.toLocaleString('en-US')} parameters) to GGUF: size and estimated error per file type`,
    placeholder: 'Sizes follow from each tensor\u2019s type; errors are estimated from samples of each tensor',
    gguf: ggufItems(est),
    preferred: vscode.workspace.getConfiguration('tensorWorkbench').get<string>('convert.defaultFtype', 'Q4_K_M'),
  });
  if (choice?.kind !== 'gguf') return undefined;
  const output = await pickOutput(input, choice.target);
  if (!output) return undefined;
  return convertFolder(input, output, choice.target);
}

/** Folders under the workspace with a config.json and at least one .safetensors file beside it. */
async function modelFolders(): Promise<string[]> {
  const configs = await vscode.workspace.findFiles('**/config.json', '**/node_modules/**', MAX_FOLDERS);
  const out: string[] = [];
  for (const c of configs) {
    if (c.scheme !== 'file') continue;
    const dir = dirname(c.fsPath);
    try {
      if ((await readdir(dir)).some((n) => n.endsWith('.safetensors'))) out.push(dir);
    } catch {
      // A folder removed while scanning simply has no menu entry.
    }
  }
  return out.sort();
}

function trackModelFolders(context: vscode.ExtensionContext): void {
  let timer: NodeJS.Timeout | undefined;
  const scan = () => {
    void modelFolders().then(
      (dirs) => vscode.commands.executeCommand('setContext', FOLDERS_KEY, dirs),
      (e) => log.error('Convert to GGUF: scanning for model folders', e),
    );
  };
  const later = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(scan, RESCAN_MS);
  };
  const watcher = vscode.workspace.createFileSystemWatcher('**/{config.json,*.safetensors}');
  context.subscriptions.push(watcher, watcher.onDidCreate(later), watcher.onDidDelete(later), vscode.workspace.onDidChangeWorkspaceFolders(later), { dispose: () => timer && clearTimeout(timer) });
  scan();
}
