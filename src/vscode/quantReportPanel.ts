import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import type { QuantReport } from '../pipelines/quantize';
import { isQuantReportToHostMessage, quantReportHtml } from './quantReportHtml';
import { makeNonce } from './viewer/html';

/** Scheme of the read-only Markdown reports: an untitled document would ask to be saved on close. */
const REPORT_SCHEME = 'tensor-workbench-report';
// Reports kept for their documents; each is a few KB, and one per quantization of the session.
const MAX_REPORTS = 32;
const reports = new Map<string, string>();
let nextReport = 1;

/**
 * The report of a finished quantization, read-only. The Markdown rendering (the
 * report plus the preview, when there was one) stays one click away for copying
 * into notes or model cards.
 */
export class QuantReportPanel {
  /** Serves the Markdown reports as read-only documents. */
  static register(context: vscode.ExtensionContext): void {
    context.subscriptions.push(vscode.workspace.registerTextDocumentContentProvider(REPORT_SCHEME, { provideTextDocumentContent: (uri) => reports.get(uri.query) ?? '' }));
  }

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
      const key = String(nextReport++);
      reports.set(key, markdown);
      if (reports.size > MAX_REPORTS) reports.delete(reports.keys().next().value as string);
      const name = basename(report.outputs[0] ?? report.input).replace(/\.[^.]*$/, '');
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/${name}.quantization-report.md`, query: key }));
      if (doc.languageId !== 'markdown') await vscode.languages.setTextDocumentLanguage(doc, 'markdown');
      await vscode.commands.executeCommand('markdown.showPreview', doc.uri).then(undefined, () => vscode.window.showTextDocument(doc));
    });
    panel.onDidDispose(() => sub.dispose());
    return panel;
  }
}
