import * as vscode from 'vscode';
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Model } from '../../format/model';
import { openModel } from '../../format/openModel';
import { diff, estimateRanks, rankCandidates, type DiffReport } from '../../pipelines/diff';
import { registerCommand } from '../commands';
import { log } from '../log';
import { runJob, showError } from '../progress';
import { DiffPanel } from './diffPanel';

const COMMANDS = {
  compare: 'tensorWorkbench.compareCheckpoints',
  compareSelected: 'tensorWorkbench.compareSelected',
  compareWith: 'tensorWorkbench.compareWith',
  compareWithHead: 'tensorWorkbench.compareWithHead',
} as const;

const PICK_FILTERS = { 'Safetensors model': ['safetensors', 'json'] };

/**
 * The checkpoint-diff commands: two pickers from the palette, two selected files
 * in the explorer, one file against a picked one, and a tracked file against its
 * HEAD version. Each runs the diff under a cancellable progress notification,
 * opens the report, then refines it with the rank estimate as a second,
 * separately cancellable job.
 */
export class CompareCommand {
  static register(context: vscode.ExtensionContext): void {
    const ext = context.extensionUri;
    registerCommand(context, COMMANDS.compare, async () => {
      const a = await pick('Compare checkpoints: A (the base)', 'Use as A');
      if (!a) return;
      const b = await pick('Compare checkpoints: B (compared with A)', 'Compare with A', a);
      if (b) await compare(ext, a, b);
    });
    registerCommand(context, COMMANDS.compareSelected, async (uri?: vscode.Uri, uris?: vscode.Uri[]) => {
      const sel = uris && uris.length > 0 ? uris : uri ? [uri] : [];
      if (sel.length !== 2) {
        void vscode.window.showWarningMessage(`Select exactly two checkpoints to compare (${sel.length} selected).`);
        return;
      }
      await compare(ext, sel[0], sel[1]);
    });
    registerCommand(context, COMMANDS.compareWith, async (uri?: vscode.Uri) => {
      const a = uri ?? activeModelUri() ?? (await pick('Compare checkpoints: A (the base)', 'Use as A'));
      if (!a) return;
      const b = await pick(`Compare ${basename(a.fsPath)} with…`, 'Compare', a);
      if (b) await compare(ext, a, b);
    });
    registerCommand(context, COMMANDS.compareWithHead, async (uri?: vscode.Uri) => {
      const target = uri ?? activeModelUri();
      if (!target) {
        void vscode.window.showWarningMessage('Open or select a tracked .safetensors file to compare with Git HEAD.');
        return;
      }
      await compareWithHead(ext, target);
    });
  }
}

function activeModelUri(): vscode.Uri | undefined {
  const tab = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  if (tab instanceof vscode.TabInputCustom || tab instanceof vscode.TabInputText) return tab.uri;
  return undefined;
}

async function pick(title: string, openLabel: string, near?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const picked = await vscode.window.showOpenDialog({
    title,
    openLabel,
    canSelectFiles: true,
    canSelectFolders: true,
    canSelectMany: false,
    filters: PICK_FILTERS,
    defaultUri: near ? vscode.Uri.file(dirname(near.fsPath)) : undefined,
  });
  return picked?.[0];
}

function localPath(uri: vscode.Uri): string {
  // The diff streams through Node's file system; remote and virtual files would need a copy first.
  if (uri.scheme !== 'file') throw new Error(`Comparing works on local files; ${uri.toString()} is not one.`);
  return uri.fsPath;
}

async function openBoth(a: string, b: string): Promise<[Model, Model]> {
  const ma = await openModel(a);
  try {
    return [ma, await openModel(b)];
  } catch (e) {
    await ma.close();
    throw e;
  }
}

/** Diffs A and B, shows the report, then adds rank energy to it in a second job. */
async function compare(ext: vscode.Uri, ua: vscode.Uri, ub: vscode.Uri, labelA?: string, cleanup: () => Promise<void> = async () => {}): Promise<void> {
  let models: [Model, Model];
  try {
    models = await openBoth(localPath(ua), localPath(ub));
  } catch (e) {
    await cleanup();
    showError(e, 'Compare checkpoints');
    return;
  }
  const [a, b] = models;
  const nameA = labelA ?? basename(ua.fsPath);
  const nameB = basename(ub.fsPath);
  const report = await runJob(`Comparing ${nameA} with ${nameB}`, (ctx) => diff(a, b, ctx));
  if (!report) {
    await Promise.allSettled([a.close(), b.close()]);
    await cleanup();
    return;
  }
  log.info(`diff ${a.path} → ${b.path}: ${report.summary.different}/${report.summary.compared} changed, ${report.seconds.toFixed(2)} s`);
  const panel = DiffPanel.open(ext, `Δ ${nameA} ↔ ${nameB}`, a, b, report, cleanup);
  await refineWithRank(panel, a, b, report);
}

async function refineWithRank(panel: DiffPanel, a: Model, b: Model, report: DiffReport): Promise<void> {
  const n = rankCandidates(report.tensors).length;
  if (n === 0) {
    panel.update(report, false);
    return;
  }
  panel.update(report, true);
  const est = await runJob(`Estimating the rank of ${n} changed tensor(s)`, (ctx) => estimateRanks(a, b, report.tensors, ctx), { location: vscode.ProgressLocation.Notification });
  const refined: DiffReport = est ? { ...report, rankSeconds: est.seconds, rankBytesRead: est.bytesRead, bytesRead: report.bytesRead + est.bytesRead, seconds: report.seconds + est.seconds } : report;
  panel.update(refined, false);
}

/** Runs `git` in `cwd` and streams its stdout into `out` (never whole in memory). */
function gitShowTo(cwd: string, spec: string, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['show', spec], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const file = createWriteStream(out);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.pipe(file);
    child.on('error', reject);
    child.on('close', (code) => {
      file.close(() => (code === 0 ? resolve() : reject(new Error(`git show ${spec} failed: ${err.trim() || `exit ${code}`}`))));
    });
  });
}

async function gitRoot(cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['rev-parse', '--show-toplevel'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`not in a git repository: ${err.trim()}`))));
  });
}

/** The file's HEAD version, through `git show` into a temporary file, compared as A with the working copy as B. */
async function compareWithHead(ext: vscode.Uri, uri: vscode.Uri): Promise<void> {
  const path = localPath(uri);
  let tmp: string | undefined;
  try {
    const root = await gitRoot(dirname(path));
    const rel = path.slice(root.length + 1).split('\\').join('/');
    tmp = await mkdtemp(join(tmpdir(), 'tw-head-'));
    const headCopy = join(tmp, basename(path));
    await gitShowTo(root, `HEAD:${rel}`, headCopy);
    const dir = tmp;
    await compare(ext, vscode.Uri.file(headCopy), uri, `${basename(path)} (HEAD)`, () => rm(dir, { recursive: true, force: true }));
  } catch (e) {
    if (tmp) await rm(tmp, { recursive: true, force: true });
    showError(e, 'Compare with Git HEAD');
  }
}
