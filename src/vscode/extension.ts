import * as vscode from 'vscode';
import { registerCommand } from './commands';
import { log } from './log';
import { PlaceholderViewer } from './placeholderViewer';

/**
 * Entry point of the extension host bundle (dist/extension.js). Each feature owns a
 * `X.register(context)` that pushes its disposables onto `context.subscriptions`;
 * this file only lists them, one line each.
 */
export function activate(context: vscode.ExtensionContext): void {
  context.subscriptions.push({ dispose: () => log.dispose() });
  registerCommand(context, 'tensorWorkbench.showLog', () => log.show());

  // ── registration points: one line per feature ──────────────────────────────
  // viewer (src/vscode/viewer/): replace the placeholder with ViewerProvider.register(context)
  PlaceholderViewer.register(context);
  // diff: CompareCommand.register(context)
  // quantize: QuantizeCommand.register(context)
  // merge: MergeCommand.register(context)
  // ───────────────────────────────────────────────────────────────────────────

  log.info(`activated ${context.extension.id} ${context.extension.packageJSON.version} (Node ${process.versions.node}, ${process.platform}-${process.arch})`);
}

/** VS Code awaits this; the GPU device and worker pool must be released so the host can exit. */
export async function deactivate(): Promise<void> {
  // compute: await disposeBackends() from src/compute/backend.ts
}
