import * as vscode from 'vscode';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { formatSize } from '../core/units';
import { SCHEMES, type SchemeName } from '../pipelines/runtime';
import type { ToGgufResult } from '../pipelines/toGguf';
import { preview, quantize, type QuantFormat, type QuantReport } from '../pipelines/quantize';
import { nonFiniteSkipLines, previewMarkdown, reportMarkdown } from '../pipelines/quantizeReport';
import { FTYPE_NAMES, type FtypeName } from '../pipelines/llamaFtype';
import { estimateGguf, type GgufEstimateResult } from '../pipelines/ggufEstimate';
import { localPath, modelStem, pickLocalInput, registerWriteCommand, SAFETENSORS_MODEL_DIALOG } from './commands';
import { convertFolder } from './convertGgufCommand';
import { log } from './log';
import { ggufItems, pickType, schemeItems } from './typePick';
import { QuantReportPanel } from './quantReportPanel';
import { runJob } from './progress';

const COMMAND = 'tensorWorkbench.quantize';

/**
 * "Tensor Workbench: Quantize…": a preview of every scheme (size and sampled error)
 * in a QuickPick, then the format and destination, then the job under a cancellable
 * progress notification, then the report in a webview panel.
 * A write command: disabled in untrusted workspaces.
 */
export class QuantizeCommand {
  static register(context: vscode.ExtensionContext): void {
    QuantReportPanel.register(context);
    registerWriteCommand(context, COMMAND, (uri?: vscode.Uri, opts?: QuantizeCommandOptions) => run(context.extensionUri, uri, opts));
  }
}

/**
 * Arguments for running the command without its pickers (`executeCommand(id, uri, opts)`):
 * scripts, keybindings and the extension-host tests. It then returns the report.
 */
export interface QuantizeCommandOptions {
  readonly scheme?: SchemeName;
  /** A llama.cpp file type instead of a scheme: the model's folder becomes a GGUF, as `quantize --ftype`. */
  readonly ftype?: FtypeName;
  readonly output: string;
  readonly format?: QuantFormat;
}

const VERB = 'Quantizing';

function pickInput(initial?: vscode.Uri): Promise<string | undefined> {
  return pickLocalInput(initial, VERB, {
    ...SAFETENSORS_MODEL_DIALOG,
    title: 'Quantize: model (.safetensors, index.json or folder)',
    openLabel: 'Quantize',
  });
}

async function pickFormat(scheme: SchemeName): Promise<QuantFormat | undefined> {
  if (SCHEMES[scheme].kind !== 'ggml') return 'safetensors';
  const preferred = vscode.workspace.getConfiguration('tensorWorkbench').get<string>('quantize.defaultFormat', 'gguf');
  const items = [
    { label: 'gguf', format: 'gguf' as const, detail: 'GGUF v3 (llama.cpp names for Llama-family models with a config.json)' },
    { label: 'safetensors', format: 'safetensors' as const, detail: 'ggml blocks as U8 [rows, blocks × bytes per block]; layout in __metadata__' },
  ].sort((a, b) => (a.format === preferred ? -1 : b.format === preferred ? 1 : 0));
  const pick = await vscode.window.showQuickPick(items, { title: `Quantize to ${scheme}: output format` });
  return pick?.format;
}

async function pickOutput(input: string, scheme: string, format: QuantFormat): Promise<string | undefined> {
  const stem = modelStem(input);
  const base = dirname(input);
  const uri = await vscode.window.showSaveDialog({
    title: format === 'gguf' ? 'Quantize: output .gguf file' : 'Quantize: output (a name ending in .safetensors writes one file; any other name, a folder with config.json)',
    defaultUri: vscode.Uri.file(join(base, format === 'gguf' ? `${stem}-${scheme}.gguf` : `${stem}-${scheme}`)),
    saveLabel: 'Quantize',
  });
  return uri ? localPath(uri, VERB) : undefined;
}

/** The tensors kept for holding NaN/Inf, as the CLI prints them (the report panel lists them too). */
function warnNonFinite(r: QuantReport): void {
  const lines = nonFiniteSkipLines(r);
  if (lines.length > 0) void vscode.window.showWarningMessage(`Quantize: ${lines.length} tensor${lines.length === 1 ? '' : 's'} not quantized: ${lines.join('; ')}`);
}

/** The Hugging Face folder a file-type GGUF is converted from: the input folder, or the folder of the file picked. */
async function modelFolder(input: string): Promise<string> {
  return (await stat(input)).isDirectory() ? input : dirname(input);
}

/** Size and error per llama.cpp file type, or undefined when the folder is not one the converter takes (then only schemes are offered). */
async function fileTypes(input: string, ctx: Parameters<typeof estimateGguf>[1]): Promise<GgufEstimateResult | undefined> {
  try {
    return await estimateGguf({ input: await modelFolder(input), targets: FTYPE_NAMES, errors: true }, ctx);
  } catch (e) {
    if (ctx?.signal?.aborted) throw e;
    log.info(`Quantize: no llama.cpp file types for ${input}: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

async function runWithOptions(extensionUri: vscode.Uri, input: string, opts: QuantizeCommandOptions): Promise<QuantReport | ToGgufResult | undefined> {
  if (opts.ftype) return convertFolder(await modelFolder(input), opts.output, opts.ftype, extensionUri);
  if (!opts.scheme) throw new Error('Quantize: give a scheme or a file type');
  const scheme = opts.scheme;
  const r = await runJob(`Quantizing to ${scheme}`, (ctx) => quantize({ input, output: opts.output, scheme, format: opts.format }, ctx));
  if (r) {
    warnNonFinite(r);
    QuantReportPanel.show(extensionUri, r, reportMarkdown(r));
  }
  return r;
}

async function run(extensionUri: vscode.Uri, initial?: vscode.Uri, opts?: QuantizeCommandOptions): Promise<QuantReport | ToGgufResult | undefined> {
  const input = await pickInput(initial);
  if (!input) return undefined;
  if (opts) return runWithOptions(extensionUri, input, opts);
  const both = await runJob('Quantization preview', async (ctx) => ({ p: await preview({ input }, ctx), f: await fileTypes(input, ctx) }));
  if (!both) return undefined;
  const { p, f } = both;
  const choice = await pickType({
    title: `Quantize ${basename(p.input)} (${formatSize(p.bytesBefore, 'MiB')}): size and estimated error per scheme`,
    placeholder: `Errors estimated from ≤${p.sampleFraction * 100}% of each tensor; sizes are exact`,
    gguf: f ? ggufItems(f) : undefined,
    schemes: schemeItems(p),
    preferred: vscode.workspace.getConfiguration('tensorWorkbench').get<string>('quantize.defaultScheme', 'q8_0'),
  });
  if (!choice) return undefined;
  if (choice.kind === 'gguf') {
    const dir = await modelFolder(input);
    const output = await pickOutput(dir, choice.target, 'gguf');
    return output ? convertFolder(dir, output, choice.target, extensionUri) : undefined;
  }
  const scheme = choice.scheme;
  const format = await pickFormat(scheme);
  if (!format) return undefined;
  const output = await pickOutput(input, scheme, format);
  if (!output) return undefined;
  const ggufNames = format === 'gguf' ? 'llama' : undefined;
  const r = await runJob(`Quantizing to ${scheme}`, async (ctx) => {
    try {
      return await quantize({ input, output, scheme, format, ggufNames }, ctx);
    } catch (e) {
      // Not a Llama-family config: write GGUF with the input's names instead.
      if (ggufNames && e instanceof Error && /--gguf-names llama needs/.test(e.message)) return quantize({ input, output, scheme, format }, ctx);
      throw e;
    }
  });
  if (!r) return undefined;
  warnNonFinite(r);
  QuantReportPanel.show(extensionUri, r, reportMarkdown(r) + '\n' + previewMarkdown(p));
  return r;
}
