import * as vscode from 'vscode';
import { basename, dirname, join } from 'node:path';
import type { MatmulDType } from '../pipelines/runtime';
import { merge, planMerge, type MergeAdapterArg, type MergeArgs, type MergePlan, type MergeResult } from '../pipelines/merge';
import { localPath, modelStem, pickLocalInput, registerWriteCommand, SAFETENSORS_MODEL_DIALOG } from './commands';
import { runJob, showError } from './progress';

const COMMAND = 'tensorWorkbench.mergeLora';

/**
 * "Tensor Workbench: Merge LoRA Adapter…": pick the base, the adapters and their
 * weights, preview the mapping (matched modules with r, alpha and scale; unmatched
 * keys), pick the output, then merge under a cancellable progress notification.
 * A write command: disabled in untrusted workspaces.
 */
export class MergeCommand {
  static register(context: vscode.ExtensionContext): void {
    registerWriteCommand(context, COMMAND, (arg?: vscode.Uri | MergeCommandArgs) => (isArgs(arg) ? runWith(arg) : run(arg)));
  }
}

/**
 * `executeCommand('tensorWorkbench.mergeLora', { base, adapters, output, … })` merges
 * without any dialog (scripts, tasks and the integration tests), still under the
 * progress notification, and resolves to the merge's result (undefined when cancelled).
 */
export type MergeCommandArgs = Pick<MergeArgs, 'base' | 'adapters' | 'output' | 'dtype' | 'subtract' | 'allowUnmatched'>;

function isArgs(a: unknown): a is MergeCommandArgs {
  return typeof a === 'object' && a !== null && !(a instanceof vscode.Uri) && typeof (a as MergeCommandArgs).base === 'string';
}

function runWith(a: MergeCommandArgs): Promise<MergeResult | undefined> {
  return runJob('Merging LoRA adapter', (ctx) => merge({ ...a, dtype: a.dtype ?? configuredDtype() }, ctx));
}

const VERB = 'Merging';

function pickBase(initial?: vscode.Uri): Promise<string | undefined> {
  return pickLocalInput(initial, VERB, {
    ...SAFETENSORS_MODEL_DIALOG,
    title: 'Merge LoRA: base model (.safetensors, index.json or folder)',
    openLabel: 'Use as Base',
  });
}

async function pickAdapters(base: string): Promise<MergeAdapterArg[] | undefined> {
  const picked = await vscode.window.showOpenDialog({
    title: 'Merge LoRA: adapters (PEFT folders or kohya .safetensors files)',
    canSelectFiles: true,
    canSelectFolders: true,
    canSelectMany: true,
    defaultUri: vscode.Uri.file(dirname(base)),
    filters: { 'LoRA adapter': ['safetensors'] },
    openLabel: 'Merge These',
  });
  if (!picked || picked.length === 0) return undefined;
  const out: MergeAdapterArg[] = [];
  for (const uri of picked) {
    const text = await vscode.window.showInputBox({
      title: `Weight of ${basename(uri.fsPath)}`,
      prompt: 'Coefficient of this adapter’s Δ in the merge (1 = as trained; negative subtracts)',
      value: '1',
      validateInput: (v) => (Number.isFinite(Number(v)) && v.trim() !== '' ? undefined : 'A number, e.g. 1, 0.5 or -1'),
    });
    if (text === undefined) return undefined;
    out.push({ path: localPath(uri, VERB), weight: Number(text) });
  }
  return out;
}

interface PreviewItem extends vscode.QuickPickItem {
  readonly action?: 'merge' | 'mergeSkipping';
}

/** One quick pick: the actions on top, then every matched module and every unmatched key. */
async function preview(plan: MergePlan, adapters: readonly MergeAdapterArg[]): Promise<'merge' | 'mergeSkipping' | undefined> {
  const items: PreviewItem[] = [];
  const tensors = new Set(plan.mapping.modules.map((m) => m.target)).size + plan.mapping.replacements.length;
  if (plan.unmatched.length === 0) items.push({ label: `$(check) Merge ${tensors} tensor(s)…`, action: 'merge', alwaysShow: true });
  else if (tensors > 0) items.push({ label: `$(warning) Merge ${tensors} tensor(s), skipping ${plan.unmatched.length} unmatched key(s)…`, action: 'mergeSkipping', alwaysShow: true });
  plan.summaries.forEach((s, i) => {
    items.push({ label: `${basename(s.path)} · ${s.format} · weight ${adapters[i].weight ?? 1}`, kind: vscode.QuickPickItemKind.Separator });
    for (const m of s.modules) {
      items.push({ label: m.target, description: `r=${m.rank} alpha=${m.alpha} scale=${+m.scale.toPrecision(6)}${m.dora ? ' · DoRA' : ''}` });
    }
    for (const r of s.replacements) items.push({ label: r, description: 'replaced whole (modules_to_save)' });
  });
  if (plan.unmatched.length > 0) {
    items.push({ label: 'Unmatched', kind: vscode.QuickPickItemKind.Separator });
    for (const u of plan.unmatched) items.push({ label: `$(error) ${u.key}`, description: basename(adapters[u.adapter].path), detail: u.reason });
  }
  const pick = await vscode.window.showQuickPick(items, {
    title: `Merge LoRA into ${basename(plan.base.path)}: mapping`,
    placeHolder: plan.unmatched.length > 0 ? `${plan.unmatched.length} adapter key(s) do not map onto the base` : 'Every adapter key maps onto the base',
    matchOnDescription: true,
    matchOnDetail: true,
  });
  return pick?.action;
}

async function pickOutput(base: string): Promise<string | undefined> {
  const stem = modelStem(base);
  const uri = await vscode.window.showSaveDialog({
    title: 'Merge LoRA: output (a name ending in .safetensors writes one file; any other name, a folder of shards)',
    defaultUri: vscode.Uri.file(join(dirname(base), `${stem}-merged`)),
    saveLabel: 'Write Merged Model',
  });
  return uri ? localPath(uri, VERB) : undefined;
}

function configuredDtype(): MatmulDType | undefined {
  const v = vscode.workspace.getConfiguration('tensorWorkbench').get<string>('merge.outputDtype', 'base');
  return v === 'BF16' || v === 'F16' || v === 'F32' ? v : undefined;
}

async function run(initial?: vscode.Uri): Promise<void> {
  const base = await pickBase(initial);
  if (!base) return;
  const adapters = await pickAdapters(base);
  if (!adapters) return;
  let plan: MergePlan;
  try {
    plan = await planMerge({ base, adapters });
  } catch (e) {
    showError(e, 'Merge LoRA');
    return;
  }
  let action: 'merge' | 'mergeSkipping' | undefined;
  try {
    action = await preview(plan, adapters);
  } finally {
    await plan.close();
  }
  if (!action) return;
  const output = await pickOutput(base);
  if (!output) return;
  const t0 = Date.now();
  const r = await runJob('Merging LoRA adapter', (ctx) =>
    merge({ base, adapters, output, dtype: configuredDtype(), allowUnmatched: action === 'mergeSkipping' }, ctx),
  );
  if (!r) return;
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  const where = r.index ?? r.files[0];
  const pick = await vscode.window.showInformationMessage(
    `Merged ${r.merged} tensor(s)${r.replaced ? `, replaced ${r.replaced}` : ''}, copied ${r.copied} unchanged, on ${r.backend} in ${seconds} s${r.unmatched.length ? ` (${r.unmatched.length} unmatched key(s) skipped)` : ''}.${r.dequantized.length ? ` ${r.dequantized.length} quantized base tensor(s) were dequantized and written as ${[...new Set(r.dequantized.map((d) => d.dtype))].join(', ')}.` : ''}`,
    'Reveal Output',
  );
  if (pick) void vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(where));
}
