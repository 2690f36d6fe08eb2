import { basename } from 'node:path';
import * as vscode from 'vscode';
import { showError } from './progress';

/**
 * Registers a command that writes files (convert, quantize, merge). The manifest
 * already hides it in untrusted workspaces (`when: isWorkspaceTrusted`); this check
 * also covers keybindings and `executeCommand`, which ignore `when` clauses.
 */
export function registerWriteCommand(context: vscode.ExtensionContext, id: string, handler: (...args: any[]) => unknown): void {
  context.subscriptions.push(
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      if (!vscode.workspace.isTrusted) {
        void vscode.window.showWarningMessage('Tensor Workbench writes files only in a trusted workspace. Viewing works without trust.', 'Manage Workspace Trust').then((pick) => {
          if (pick) void vscode.commands.executeCommand('workbench.trust.manage');
        });
        return undefined;
      }
      try {
        return await handler(...args);
      } catch (e) {
        showError(e);
        return undefined;
      }
    }),
  );
}

/** Registers a read-only command; errors are shown once instead of surfacing as "command failed". */
export function registerCommand(context: vscode.ExtensionContext, id: string, handler: (...args: any[]) => unknown): void {
  context.subscriptions.push(
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await handler(...args);
      } catch (e) {
        showError(e);
        return undefined;
      }
    }),
  );
}

/**
 * The file behind a URI, for the commands that write: they stream through Node's file system,
 * so remote and virtual files would need a copy first. `verb` opens the error ("Merging works…").
 */
export function localPath(uri: vscode.Uri, verb: string): string {
  if (uri.scheme !== 'file') throw new Error(`${verb} works on local files; ${uri.toString()} is not one.`);
  return uri.fsPath;
}

/** `initial`'s local path, else the one file (or folder, where `dialog` allows) the user picks; undefined when dismissed. */
export async function pickLocalInput(initial: vscode.Uri | undefined, verb: string, dialog: vscode.OpenDialogOptions): Promise<string | undefined> {
  if (initial) return localPath(initial, verb);
  const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectMany: false, ...dialog });
  return picked?.[0] ? localPath(picked[0], verb) : undefined;
}

/** Dialog options that pick a safetensors model: one file, an index.json or a folder of shards. */
export const SAFETENSORS_MODEL_DIALOG: vscode.OpenDialogOptions = { canSelectFolders: true, filters: { 'Safetensors model': ['safetensors', 'json'] } };

/** A model path's name without its .safetensors / .safetensors.index.json / .json ending: the stem of the names offered for outputs. */
export function modelStem(path: string): string {
  return basename(path).replace(/(\.safetensors(\.index\.json)?|\.json)$/, '');
}
