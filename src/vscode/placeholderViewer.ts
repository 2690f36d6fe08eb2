import * as vscode from 'vscode';
import { FormatError } from '../format/errors';
import { HEADER_PREFIX_BYTES, parseHeader, readHeaderLength } from '../format/header';
import type { ByteSource } from '../format/source';
import { Disposable } from './dispose';
import { openerFor } from './workspaceSource';

export const VIEW_TYPE = 'tensorWorkbench.viewer';

/**
 * A minimal read-only editor for `*.safetensors` until the full viewer is registered
 * in its place: it shows the tensor count, or the error page for a file that is not
 * a valid safetensors header. It exists so that the custom editor, its activation
 * and the packaged extension are exercised end to end.
 */
export class PlaceholderViewer extends Disposable implements vscode.CustomReadonlyEditorProvider {
  static register(context: vscode.ExtensionContext): void {
    const provider = new PlaceholderViewer();
    context.subscriptions.push(provider, vscode.window.registerCustomEditorProvider(VIEW_TYPE, provider));
  }

  openCustomDocument(uri: vscode.Uri): vscode.CustomDocument {
    return { uri, dispose() {} };
  }

  async resolveCustomEditor(document: vscode.CustomDocument, panel: vscode.WebviewPanel): Promise<void> {
    panel.webview.options = { enableScripts: false, localResourceRoots: [] };
    const name = document.uri.path.split('/').pop() ?? document.uri.toString();
    let body: string;
    try {
      const summary = await summarize(document.uri);
      body = `<h1>${escapeHtml(name)}</h1><p id="totals">${summary.tensors} tensors · ${summary.bytes} bytes</p>`;
    } catch (e) {
      const code = e instanceof FormatError ? e.code : 'io';
      const message = e instanceof Error ? e.message : String(e);
      body = `<h1>${escapeHtml(name)}</h1><div id="error-page" role="alert"><p id="error-code">error[${escapeHtml(code)}]</p><p id="error-message">${escapeHtml(message)}</p></div>`;
    }
    const nonce = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
    panel.webview.html = `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'nonce-${nonce}';">
<style nonce="${nonce}">body{font-family:var(--vscode-font-family);color:var(--vscode-foreground)}#error-page{color:var(--vscode-errorForeground)}#error-code{font-weight:bold}</style>
</head><body>${body}</body></html>`;
  }
}

/** Reads and validates only the header: 8 bytes of length, then the JSON it announces. */
async function summarize(uri: vscode.Uri): Promise<{ tensors: number; bytes: number }> {
  const { opener, path } = openerFor(uri, vscode.workspace.fs);
  const src: ByteSource = await opener.open(path);
  try {
    const prefix = new Uint8Array(HEADER_PREFIX_BYTES);
    await src.read(0, prefix);
    const head = new Uint8Array(readHeaderLength(prefix, src.name, src.size));
    await src.read(HEADER_PREFIX_BYTES, head);
    return { tensors: parseHeader(head, src.name, src.size).tensors.length, bytes: src.size };
  } finally {
    await src.close();
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
