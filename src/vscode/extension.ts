import * as vscode from 'vscode';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { disposeBackends, onBackendInfo } from '../pipelines/runtime';
import { registerCommand } from './commands';
import { ConvertCommand } from './convertCommand';
import { ConvertGgufCommand } from './convertGgufCommand';
import { CompareCommand } from './diff/compareCommand';
import { log } from './log';
import { MergeCommand } from './mergeCommand';
import { MergeModelsCommand } from './mergeModelsCommand';
import { QuantizeCommand } from './quantizeCommand';
import { RemoteModelCommands } from './remoteModel';
import { ViewerProvider } from './viewer/viewerProvider';

/**
 * Entry point of the extension host bundle (dist/extension.js). Each feature owns a
 * `X.register(context)` that pushes its disposables onto `context.subscriptions`;
 * this file only lists them, one line each.
 */
export function activate(context: vscode.ExtensionContext): void {
  context.subscriptions.push({ dispose: () => log.dispose() });
  // The adapter, and why `auto` chose the CPU, go to the log rather than the extension host's stderr.
  const offBackendInfo = onBackendInfo((line) => log.info(line));
  context.subscriptions.push({ dispose: () => void offBackendInfo() });
  registerCommand(context, 'tensorWorkbench.showLog', () => log.show());

  // ── registration points: one line per feature ──────────────────────────────
  // viewer (src/vscode/viewer/)
  const viewer = ViewerProvider.register(context);
  // models over HTTP (src/vscode/remoteModel.ts), shown in the same viewer
  RemoteModelCommands.register(context, (uri) => viewer.openAsModel(uri));
  CompareCommand.register(context);
  QuantizeCommand.register(context);
  MergeCommand.register(context);
  MergeModelsCommand.register(context);
  ConvertCommand.register(context);
  ConvertGgufCommand.register(context);
  // ───────────────────────────────────────────────────────────────────────────

  log.info(`activated ${context.extension.id} ${context.extension.packageJSON.version} (Node ${process.versions.node}, ${process.platform}-${process.arch})`);
  noteMissingWebGpu(context);
}

/** VS Code awaits this: the GPU device and the worker pool must be released so the host can exit. */
export async function deactivate(): Promise<void> {
  await disposeBackends();
}

/**
 * The universal package (and any platform without a Dawn build) carries no
 * dawn.node: every kernel runs on the CPU twins. Say so once per version, not on
 * every start.
 */
function noteMissingWebGpu(context: vscode.ExtensionContext): void {
  const plat = `${process.platform}-${process.arch}`;
  if (existsSync(join(__dirname, 'dawn', plat, 'dawn.node'))) return;
  const text = `This Tensor Workbench package has no WebGPU binary for ${plat}: computations run on the CPU. Install the ${plat} package for GPU acceleration where one exists.`;
  log.info(text);
  const key = `noWebGpuNoticeShown:${context.extension.packageJSON.version}`;
  if (context.globalState.get(key)) return;
  void context.globalState.update(key, true);
  void vscode.window.showInformationMessage(text);
}
