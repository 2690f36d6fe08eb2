import * as vscode from 'vscode';

let channel: vscode.LogOutputChannel | undefined;

/** The "Tensor Workbench" output channel, created on first use. */
function out(): vscode.LogOutputChannel {
  channel ??= vscode.window.createOutputChannel('Tensor Workbench', { log: true });
  return channel;
}

export const log = {
  info(message: string): void {
    out().info(message);
  },
  warn(message: string): void {
    out().warn(message);
  },
  error(message: string, e?: unknown): void {
    out().error(e instanceof Error && e.stack ? `${message}\n${e.stack}` : message);
  },
  show(): void {
    out().show(true);
  },
  /** Called from deactivate. */
  dispose(): void {
    channel?.dispose();
    channel = undefined;
  },
};
