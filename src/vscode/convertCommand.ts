import * as vscode from 'vscode';
import { basename, dirname, join } from 'node:path';
import { scanCheckpoint } from '../pipelines/scan';
import { convertModel, type ConvertResult } from '../pipelines/convert';
import { localPath, pickLocalInput, registerWriteCommand } from './commands';
import { runJob } from './progress';

const COMMAND = 'tensorWorkbench.convertToSafetensors';

/** Arguments for running the command without its pickers (scripts and the extension-host tests). */
export interface ConvertCommandOptions {
  readonly output: string;
  /** Convert even when the pickle names functions beyond tensor rebuilds (nothing is executed). */
  readonly allowUnsafeGlobals?: boolean;
}

/**
 * "Tensor Workbench: Convert to safetensors": a PyTorch checkpoint (.bin, .pt, .pth, .ckpt),
 * read without executing it, written as safetensors with its dtypes. A file whose pickle
 * names other functions is shown with its findings, and converted only when the user says so.
 * A write command: disabled in untrusted workspaces.
 */
export class ConvertCommand {
  static register(context: vscode.ExtensionContext): void {
    registerWriteCommand(context, COMMAND, (uri?: vscode.Uri, opts?: ConvertCommandOptions) => run(uri, opts));
  }
}

const VERB = 'Converting';

function pickInput(initial?: vscode.Uri): Promise<string | undefined> {
  return pickLocalInput(initial, VERB, {
    title: 'Convert to safetensors: a PyTorch checkpoint',
    filters: { 'PyTorch checkpoints': ['bin', 'pt', 'pth', 'ckpt'] },
    openLabel: 'Convert',
  });
}

/** Asks before converting a file whose pickle names functions beyond tensor rebuilds. */
async function confirmUnsafe(input: string): Promise<boolean | undefined> {
  const scan = await scanCheckpoint({ path: input });
  if (scan.verdict?.clean) return false;
  const list = (scan.findings ?? []).slice(0, 8).map((f) => `${f.module}.${f.name}`).join(', ');
  const pick = await vscode.window.showWarningMessage(
    `${basename(input)} ${scan.verdict?.text}: ${list}. Nothing in it was or will be executed; only its tensors are converted.`,
    { modal: true },
    'Convert the tensors anyway',
  );
  return pick ? true : undefined;
}

async function run(uri?: vscode.Uri, opts?: ConvertCommandOptions): Promise<ConvertResult | undefined> {
  const input = await pickInput(uri);
  if (!input) return undefined;
  let allowUnsafe = opts?.allowUnsafeGlobals ?? false;
  if (!opts) {
    const ok = await confirmUnsafe(input);
    if (ok === undefined) return undefined;
    allowUnsafe = ok;
  }
  let output = opts?.output;
  if (!output) {
    const stem = basename(input).replace(/\.(bin|pt|pth|ckpt)$/i, '').replace(/^pytorch_model/, 'model');
    const picked = await vscode.window.showSaveDialog({
      title: 'Convert to safetensors: output file',
      defaultUri: vscode.Uri.file(join(dirname(input), `${stem}.safetensors`)),
      filters: { Safetensors: ['safetensors'] },
    });
    if (!picked) return undefined;
    output = localPath(picked, VERB);
  }
  const out = output;
  const result = await runJob(`Converting ${basename(input)} to safetensors`, (ctx) => convertModel({ input, output: out, dtype: 'keep', allowUnsafe }, ctx));
  if (!result) return undefined;
  const notes = result.notes?.filter((n) => n.includes('kept once') || n.includes('left out')) ?? [];
  void vscode.window.showInformationMessage(`Wrote ${result.files.length === 1 ? basename(result.files[0]) : `${result.files.length} shards`} (${result.tensors.length} tensors)${notes.length ? `; ${notes.join('; ')}` : ''}.`);
  if (!opts && result.files.length === 1) await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(result.files[0]));
  return result;
}
