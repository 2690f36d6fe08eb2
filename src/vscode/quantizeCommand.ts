import * as vscode from 'vscode';
import { basename, dirname, join } from 'node:path';
import { formatSize } from '../core/units';
import { SCHEMES, type SchemeName } from '../pipelines/runtime';
import { preview, quantize, type PreviewResult, type QuantFormat, type QuantReport } from '../pipelines/quantize';
import { nonFiniteSkipLines, previewMarkdown, reportMarkdown } from '../pipelines/quantizeReport';
import { localPath, modelStem, pickLocalInput, registerWriteCommand, SAFETENSORS_MODEL_DIALOG } from './commands';
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
  readonly scheme: SchemeName;
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

interface SchemeItem extends vscode.QuickPickItem {
  readonly scheme: SchemeName;
}

async function pickScheme(p: PreviewResult): Promise<SchemeName | undefined> {
  const preferred = vscode.workspace.getConfiguration('tensorWorkbench').get<string>('quantize.defaultScheme', 'q8_0');
  const items: SchemeItem[] = p.rows.map((r) => ({
    scheme: r.scheme,
    label: r.scheme,
    description: `${formatSize(r.bytesAfter, 'MiB')} · ${r.bitsPerWeight.toFixed(2)} bits/w · SNR ${r.snrDb !== undefined ? r.snrDb.toFixed(1) : '–'} dB · cosine ${r.cosine !== undefined ? r.cosine.toFixed(5) : '–'}`,
    detail: `${SCHEMES[r.scheme].description}; ${r.quantizedTensors} tensors quantized, ${r.keptTensors} kept`,
  }));
  const qp = vscode.window.createQuickPick<SchemeItem>();
  qp.title = `Quantize ${basename(p.input)} (${formatSize(p.bytesBefore, 'MiB')}): size and estimated error per scheme`;
  qp.placeholder = `Errors estimated from ≤${p.sampleFraction * 100}% of each tensor; sizes are exact`;
  qp.items = items;
  qp.matchOnDescription = true;
  qp.activeItems = items.filter((i) => i.scheme === preferred);
  const pick = await new Promise<SchemeItem | undefined>((resolve) => {
    qp.onDidAccept(() => resolve(qp.selectedItems[0]));
    qp.onDidHide(() => resolve(undefined));
    qp.show();
  });
  qp.dispose();
  return pick?.scheme;
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

async function pickOutput(input: string, scheme: SchemeName, format: QuantFormat): Promise<string | undefined> {
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

async function run(extensionUri: vscode.Uri, initial?: vscode.Uri, opts?: QuantizeCommandOptions): Promise<QuantReport | undefined> {
  const input = await pickInput(initial);
  if (!input) return undefined;
  if (opts) {
    const r = await runJob(`Quantizing to ${opts.scheme}`, (ctx) => quantize({ input, output: opts.output, scheme: opts.scheme, format: opts.format }, ctx));
    if (r) {
      warnNonFinite(r);
      QuantReportPanel.show(extensionUri, r, reportMarkdown(r));
    }
    return r;
  }
  const p = await runJob('Quantization preview', (ctx) => preview({ input }, ctx));
  if (!p) return undefined;
  const scheme = await pickScheme(p);
  if (!scheme) return undefined;
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
