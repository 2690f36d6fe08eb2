import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { Model } from '../../format/model';
import { deltaHistogram, type DiffReport } from '../../pipelines/diff';
import { diffToJson, diffToMarkdown } from '../../pipelines/diffReport';
import { isDiffToHostMessage, type DiffToHostMessage, type DiffToWebviewMessage } from '../../shared/diffProtocol';
import { log } from '../log';
import { showError } from '../progress';
import { makeNonce, viewerHtml } from '../viewer/html';

/**
 * One comparison's report in a webview panel. The panel owns both models (and any
 * temporary file, such as a HEAD copy) and closes them when it is disposed; Δ
 * histograms are computed on request, from the open models.
 */
export class DiffPanel {
  private report: DiffReport;
  private rankPending = false;
  private ready = false;
  private readonly histograms = new AbortController();

  private constructor(
    private readonly panel: vscode.WebviewPanel,
    private readonly a: Model,
    private readonly b: Model,
    report: DiffReport,
    private readonly cleanup: () => Promise<void>,
  ) {
    this.report = report;
    panel.onDidDispose(() => void this.dispose());
    panel.webview.onDidReceiveMessage((m: unknown) => {
      if (isDiffToHostMessage(m)) void this.onMessage(m);
    });
  }

  static open(extensionUri: vscode.Uri, title: string, a: Model, b: Model, report: DiffReport, cleanup: () => Promise<void>): DiffPanel {
    const root = vscode.Uri.joinPath(extensionUri, 'dist', 'webview');
    const panel = vscode.window.createWebviewPanel('tensorWorkbench.diff', title, vscode.ViewColumn.Active, { enableScripts: true, localResourceRoots: [root] });
    panel.webview.html = viewerHtml({
      scriptUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(root, 'diff.js')).toString(),
      plotlyUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(root, 'plotly.js')).toString(),
      styleUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(root, 'diff.css')).toString(),
      cspSource: panel.webview.cspSource,
      nonce: makeNonce((n) => randomBytes(n)),
      title,
    });
    return new DiffPanel(panel, a, b, report, cleanup);
  }

  /** Replaces the report (rank energy arrived, or was given up). */
  update(report: DiffReport, rankPending: boolean): void {
    this.report = report;
    this.rankPending = rankPending;
    this.postReport();
  }

  setRankPending(p: boolean): void {
    this.rankPending = p;
  }

  private post(m: DiffToWebviewMessage): void {
    void this.panel.webview.postMessage(m);
  }

  private postReport(): void {
    if (this.ready) this.post({ type: 'report', report: this.report, rankPending: this.rankPending });
  }

  private async onMessage(m: DiffToHostMessage): Promise<void> {
    if (m.type === 'ready') {
      this.ready = true;
      this.postReport();
    } else if (m.type === 'histogram') {
      const t = this.report.tensors.find((x) => x.name === m.name);
      const ta = this.a.tensor(m.name);
      const tb = this.b.tensor(t?.nameB ?? m.name);
      // Bins must not be empty: a range of ±0 still gets a width.
      const hi = t && t.maxAbsDiff > 0 ? t.maxAbsDiff : 1;
      // 4096 bins is far past what a chart shows; the cap keeps a request from allocating more.
      const bins = Math.min(4096, Math.max(1, m.bins));
      try {
        if (!t || !ta || !tb) throw new Error(`no tensor '${m.name}' in both models`);
        const counts = await deltaHistogram(this.a, this.b, ta, tb, { bins, lo: -hi, hi }, { signal: this.histograms.signal, backend: configuredBackend() });
        this.post({ type: 'histogram', id: m.id, name: m.name, lo: -hi, hi, counts });
      } catch (e) {
        if (this.histograms.signal.aborted) return;
        this.post({ type: 'histogram', id: m.id, name: m.name, lo: -hi, hi, error: (e as Error).message });
      }
    } else if (m.type === 'export') {
      await this.export(m.format);
    }
  }

  private async export(format: 'markdown' | 'json'): Promise<void> {
    const ext = format === 'markdown' ? 'md' : 'json';
    const uri = await vscode.window.showSaveDialog({
      title: `Export checkpoint diff as ${format === 'markdown' ? 'Markdown' : 'JSON'}`,
      filters: format === 'markdown' ? { Markdown: ['md'] } : { JSON: ['json'] },
      defaultUri: vscode.workspace.workspaceFolders?.[0] ? vscode.Uri.joinPath(vscode.workspace.workspaceFolders[0].uri, `checkpoint-diff.${ext}`) : undefined,
    });
    if (!uri) return;
    const text = format === 'markdown' ? diffToMarkdown(this.report) : diffToJson(this.report);
    try {
      if (uri.scheme === 'file') await writeFile(uri.fsPath, text, 'utf8');
      else await vscode.workspace.fs.writeFile(uri, new TextEncoder().encode(text));
      log.info(`diff report exported to ${uri.toString()}`);
    } catch (e) {
      showError(e, 'Export checkpoint diff');
    }
  }

  private async dispose(): Promise<void> {
    this.histograms.abort();
    await Promise.allSettled([this.a.close(), this.b.close()]);
    await this.cleanup();
  }
}

function configuredBackend(): 'auto' | 'cpu' | 'webgpu' {
  const v = vscode.workspace.getConfiguration('tensorWorkbench').get<string>('backend', 'auto');
  return v === 'cpu' || v === 'webgpu' ? v : 'auto';
}
