import * as vscode from 'vscode';
import { basename } from 'node:path';
import type { QuantReport } from '../pipelines/quantize';
import { errorInfo } from '../pipelines/viewer/errorInfo';
import type { DoneReplyMessage, QuantReportApi } from '../shared/protocol';
import { pageOptions, servePage, setPageHtml } from './webviewPage';

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
    // The page (webview/quantReport) asks for the report and draws it; the root is narrowed to our built files.
    const panel = vscode.window.createWebviewPanel('tensorWorkbench.quantReport', title, vscode.ViewColumn.Active, pageOptions(extensionUri));
    setPageHtml(panel.webview, extensionUri, 'quantReport', title);
    const server = servePage<QuantReportApi>(
      panel.webview,
      {
        report: async () => ({ type: 'report', report }),
        openMarkdown: () => openMarkdown(report, markdown),
      },
      (e) => errorInfo(e),
    );
    panel.onDidDispose(() => server.dispose());
    return panel;
  }
}

async function openMarkdown(report: QuantReport, markdown: string): Promise<DoneReplyMessage> {
  const key = String(nextReport++);
  reports.set(key, markdown);
  if (reports.size > MAX_REPORTS) reports.delete(reports.keys().next().value as string);
  const name = basename(report.outputs[0] ?? report.input).replace(/\.[^.]*$/, '');
  const doc = await vscode.workspace.openTextDocument(vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/${name}.quantization-report.md`, query: key }));
  if (doc.languageId !== 'markdown') await vscode.languages.setTextDocumentLanguage(doc, 'markdown');
  await vscode.commands.executeCommand('markdown.showPreview', doc.uri).then(undefined, () => vscode.window.showTextDocument(doc));
  return { type: 'done' };
}
