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
