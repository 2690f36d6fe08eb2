import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import type { QuantReport } from '../pipelines/quantize';
import { isQuantReportToHostMessage, quantReportHtml } from './quantReportHtml';
import { makeNonce } from './viewer/html';

/**
 * The report of a finished quantization, read-only. The Markdown rendering (the
 * report plus the preview, when there was one) stays one click away for copying
 * into notes or model cards.
 */
export class QuantReportPanel {
  static show(extensionUri: vscode.Uri, report: QuantReport, markdown: string): vscode.WebviewPanel {
    const title = `Quantization report: ${basename(report.outputs[0] ?? report.input)}`;
    const panel = vscode.window.createWebviewPanel('tensorWorkbench.quantReport', title, vscode.ViewColumn.Active, {
      enableScripts: true,
      // The page loads nothing; the root is still narrowed to our own built files.
      localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist', 'webview')],
    });
    panel.webview.html = quantReportHtml(report, { nonce: makeNonce((n) => randomBytes(n)), title });
    const sub = panel.webview.onDidReceiveMessage(async (m: unknown) => {
      if (!isQuantReportToHostMessage(m)) return;
      const doc = await vscode.workspace.openTextDocument({ language: 'markdown', content: markdown });
      await vscode.commands.executeCommand('markdown.showPreview', doc.uri).then(undefined, () => vscode.window.showTextDocument(doc));
    });
    panel.onDidDispose(() => sub.dispose());
    return panel;
  }
}
