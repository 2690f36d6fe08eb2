import * as vscode from 'vscode';
import { readFile, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { buildMergeYaml, looksLikeMergeConfig, methodNeeds, WIZARD_METHODS, type MergeSpecModel } from '../pipelines/mergeModels/builder';
import { mergeModels, type MergeModelsResult } from '../pipelines/mergeModels/mergeModels';
import type { MethodName } from '../pipelines/mergeModels/methods';
import { localPath, modelStem, registerWriteCommand, SAFETENSORS_MODEL_DIALOG } from './commands';
import { log } from './log';
import { runJob } from './progress';

const COMMAND = 'tensorWorkbench.mergeModels';
/** Context key: the workspace's YAML files that name a merge_method (the explorer menu's `when`). */
const CONFIGS_KEY = 'tensorWorkbench.mergeConfigs';
// Workspaces with more YAML files than this list only the first in the menu and the pickers.
const MAX_FILES = 500;
// A merge config is a page of text; larger YAML files are something else and are not read.
const MAX_CONFIG_BYTES = 64 * 1024;
// Rescans after file changes wait this long, so that a burst of saves scans once.
const RESCAN_MS = 1000;
const TITLE = 'Merge Models';

/** `executeCommand('tensorWorkbench.mergeModels', { config, output })` merges without any dialog (scripts and the tests). */
export interface MergeModelsCommandArgs {
  readonly config: string;
  readonly output: string;
}

/**
 * "Tensor Workbench: Merge Models…": whole-model merges as mergekit configs describe them.
 * From the palette, a wizard picks the models, the method and its parameters and opens the
 * resulting YAML in an editor (to save, edit, or run); from a mergekit YAML in the explorer,
 * that config runs. The merge runs under a cancellable progress notification and its output
 * opens in the viewer. A write command: disabled in untrusted workspaces.
 */
export class MergeModelsCommand {
  static register(context: vscode.ExtensionContext): void {
    registerWriteCommand(context, COMMAND, (arg?: vscode.Uri | MergeModelsCommandArgs) => {
      if (arg instanceof vscode.Uri) return runConfig(localPath(arg, 'Merging'));
      if (typeof arg === 'object' && arg !== null && typeof arg.config === 'string') return mergeWith(arg.config, arg.output);
      return start();
    });
    trackMergeConfigs(context);
  }
}

async function mergeConfigs(): Promise<string[]> {
  const files = await vscode.workspace.findFiles('**/*.{yml,yaml}', '**/node_modules/**', MAX_FILES);
  const out: string[] = [];
  for (const f of files) {
    if (f.scheme !== 'file') continue;
    try {
      if ((await stat(f.fsPath)).size <= MAX_CONFIG_BYTES && looksLikeMergeConfig(await readFile(f.fsPath, 'utf8'))) out.push(f.fsPath);
    } catch {
      // A file removed while scanning simply has no menu entry.
    }
  }
  return out.sort();
}

function trackMergeConfigs(context: vscode.ExtensionContext): void {
  let timer: NodeJS.Timeout | undefined;
  const scan = () => {
    void mergeConfigs().then(
      (files) => vscode.commands.executeCommand('setContext', CONFIGS_KEY, files),
      (e) => log.error('Merge Models: scanning for merge configs', e),
    );
  };
  const later = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(scan, RESCAN_MS);
  };
  const watcher = vscode.workspace.createFileSystemWatcher('**/*.{yml,yaml}');
  context.subscriptions.push(watcher, watcher.onDidCreate(later), watcher.onDidChange(later), watcher.onDidDelete(later), { dispose: () => timer && clearTimeout(timer) });
  scan();
}

/** The palette's first step: a new merge, or one of the workspace's configs. */
async function start(): Promise<MergeModelsResult | undefined> {
  const configs = await mergeConfigs();
  const items: (vscode.QuickPickItem & { path?: string })[] = [
    { label: '$(add) New merge…', description: 'pick models, method and parameters; the config opens in an editor' },
    ...configs.map((p) => ({ label: basename(p), description: vscode.workspace.asRelativePath(p), path: p })),
  ];
  const pick = await vscode.window.showQuickPick(items, { title: `${TITLE}: build a config, or run one of the workspace's mergekit configs`, ignoreFocusOut: true });
  if (!pick) return undefined;
  return pick.path ? runConfig(pick.path) : wizard();
}

/** The workspace's models: folders with config.json and safetensors, and safetensors files outside them. */
async function workspaceModels(): Promise<string[]> {
  const files = await vscode.workspace.findFiles('**/*.safetensors', '**/node_modules/**', MAX_FILES);
  const dirs = new Set<string>();
  const singles: string[] = [];
  for (const f of files) {
    if (f.scheme !== 'file') continue;
    const dir = dirname(f.fsPath);
    if (dirs.has(dir)) continue;
    const names = await readdir(dir).catch(() => [] as string[]);
    if (names.includes('config.json')) dirs.add(dir);
    else singles.push(f.fsPath);
  }
  return [...dirs, ...singles].sort();
}

const BROWSE = '$(folder-opened) Browse…';

async function pickModels(): Promise<string[] | undefined> {
  const found = await workspaceModels();
  const items = [...found.map((p) => ({ label: modelStem(p), description: vscode.workspace.asRelativePath(p), path: p })), { label: BROWSE, path: '' }];
  const picked = await vscode.window.showQuickPick(items, { title: `${TITLE} (1/4): the models to merge, the base included`, canPickMany: true, ignoreFocusOut: true });
  if (!picked || picked.length === 0) return undefined;
  const out = picked.filter((p) => p.path !== '').map((p) => p.path);
  if (picked.some((p) => p.path === '')) {
    const more = await vscode.window.showOpenDialog({ ...SAFETENSORS_MODEL_DIALOG, canSelectMany: true, title: `${TITLE}: more models`, openLabel: 'Add' });
    for (const u of more ?? []) out.push(localPath(u, 'Merging'));
  }
  return out.length > 0 ? [...new Set(out)] : undefined;
}

async function pickMethod(count: number): Promise<MethodName | undefined> {
  const items = WIZARD_METHODS.map((m) => {
    const n = methodNeeds(m);
    const asks = [n.base && 'base model', n.weight && 'weights', n.density && 'density', n.t && 't'].filter(Boolean).join(', ');
    const fits = count - (n.base ? 1 : 0) >= n.minModels && count - (n.base ? 1 : 0) <= n.maxModels;
    return { label: m, description: asks ? `asks: ${asks}` : '', detail: fits ? undefined : `needs ${n.base ? 'a base and ' : ''}${n.minModels === n.maxModels ? n.minModels : `at least ${n.minModels}`} model(s)`, method: m, fits };
  });
  const pick = await vscode.window.showQuickPick(
    items.sort((a, b) => Number(b.fits) - Number(a.fits)),
    { title: `${TITLE} (2/4): merge method for ${count} model(s)`, ignoreFocusOut: true },
  );
  return pick?.method;
}

/** Asks for a number in [lo, hi]; undefined when dismissed. */
async function askNumber(title: string, prompt: string, value: number, lo: number, hi: number): Promise<number | undefined> {
  const text = await vscode.window.showInputBox({
    title,
    prompt,
    value: String(value),
    ignoreFocusOut: true,
    validateInput: (s) => {
      const v = Number(s);
      return s.trim() !== '' && Number.isFinite(v) && v >= lo && v <= hi ? undefined : `a number from ${lo} to ${hi}`;
    },
  });
  return text === undefined ? undefined : Number(text);
}

// Weights beyond this are certainly typos: mergekit configs use weights around 0..2.
const MAX_WEIGHT = 100;

/** Per-model weight and density, as the method asks. */
async function askModelParams(method: MethodName, paths: readonly string[]): Promise<MergeSpecModel[] | undefined> {
  const needs = methodNeeds(method);
  const out: MergeSpecModel[] = [];
  for (const path of paths) {
    const name = modelStem(path);
    let weight: number | undefined;
    let density: number | undefined;
    if (needs.weight) {
      weight = await askNumber(`${TITLE} (3/4): weight of ${name}`, `${method}: this model's weight`, method === 'linear' ? 1 / paths.length : 1, -MAX_WEIGHT, MAX_WEIGHT);
      if (weight === undefined) return undefined;
    }
    if (needs.density) {
      density = await askNumber(`${TITLE} (3/4): density of ${name}`, `${method}: the fraction of this model's changes kept`, 0.5, 0, 1);
      if (density === undefined) return undefined;
    }
    out.push({ path, ...(weight !== undefined ? { weight } : {}), ...(density !== undefined ? { density } : {}) });
  }
  return out;
}

/** The wizard: models, method, base, parameters; the YAML opens in an editor, with Run merge offered. */
async function wizard(): Promise<MergeModelsResult | undefined> {
  const paths = await pickModels();
  if (!paths) return undefined;
  const method = await pickMethod(paths.length);
  if (!method) return undefined;
  const needs = methodNeeds(method);
  let base: string | undefined;
  if (needs.base) {
    const pick = await vscode.window.showQuickPick(
      paths.map((p) => ({ label: modelStem(p), description: vscode.workspace.asRelativePath(p), path: p })),
      { title: `${TITLE} (3/4): the base model (${method} merges the others' changes from it)`, ignoreFocusOut: true },
    );
    if (!pick) return undefined;
    base = pick.path;
  }
  const models = await askModelParams(method, paths.filter((p) => p !== base));
  if (!models) return undefined;
  let t: number | undefined;
  if (needs.t) {
    t = await askNumber(`${TITLE} (4/4): t`, 'slerp: 0 keeps the base, 1 the other model', 0.5, 0, 1);
    if (t === undefined) return undefined;
  }
  const yaml = buildMergeYaml({ method, models, base, t });
  const doc = await vscode.workspace.openTextDocument({ language: 'yaml', content: yaml });
  await vscode.window.showTextDocument(doc, { preview: false });
  const go = await vscode.window.showInformationMessage(`${TITLE}: the ${method} config is in the editor (save it to keep it; edits are used).`, 'Run merge');
  if (go !== 'Run merge') return undefined;
  return runDocument(doc, base ?? paths[0], method);
}

/** Runs the editor's text: a saved file in place, an untitled one through a temporary copy. */
async function runDocument(doc: vscode.TextDocument, near: string, stem: string): Promise<MergeModelsResult | undefined> {
  if (!doc.isUntitled && doc.uri.scheme === 'file') {
    await doc.save();
    return runConfig(doc.uri.fsPath);
  }
  const output = await pickOutput(near, stem);
  if (!output) return undefined;
  const tmp = join(tmpdir(), `tensor-workbench-merge-${process.pid}-${Date.now()}.yml`);
  await writeFile(tmp, doc.getText(), { flag: 'wx' });
  try {
    // The wizard writes absolute paths; relative ones an edit added read from the current folder, as on the CLI.
    return await mergeWith(tmp, output, basename(near));
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function pickOutput(near: string, stem: string): Promise<string | undefined> {
  const uri = await vscode.window.showSaveDialog({
    title: `${TITLE}: output folder (shards, config and tokenizer files) or a .safetensors file`,
    defaultUri: vscode.Uri.file(join(dirname(near), `${modelStem(near)}-${stem}`)),
    saveLabel: 'Merge',
  });
  return uri ? localPath(uri, 'Merging') : undefined;
}

/** Runs a mergekit YAML file; its relative model paths read from its folder. */
async function runConfig(config: string): Promise<MergeModelsResult | undefined> {
  const output = await pickOutput(join(dirname(config), basename(config).replace(/\.ya?ml$/, '')), 'merged');
  if (!output) return undefined;
  return mergeWith(config, output, basename(config), true);
}

async function mergeWith(config: string, output: string, label = basename(config), pathsFromConfig = false): Promise<MergeModelsResult | undefined> {
  const r = await runJob(`Merging models (${label})`, (ctx) => mergeModels({ config, output, pathsFromConfig }, ctx));
  if (!r) return undefined;
  const text = `${TITLE}: ${r.method}, ${r.tensors} tensors, wrote ${basename(r.index ?? r.files[0])}.`;
  log.info(`${text} ${r.files.join(', ')}`);
  void vscode.window.showInformationMessage(text);
  // An index.json opens as text by default: the index viewer is asked for by name.
  if (r.index) await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(r.index), 'tensorWorkbench.indexViewer');
  else if (r.files[0]?.endsWith('.safetensors')) await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(r.files[0]));
  return r;
}
