import * as vscode from 'vscode';
import { writeFile } from 'node:fs/promises';
import type { Model } from '../../format/model';
import { deltaHistogram, type DiffReport } from '../../pipelines/diff';
import { diffToJson, diffToMarkdown } from '../../pipelines/diffReport';
import { errorInfo } from '../../pipelines/viewer/errorInfo';
import { requireCount, requireString, type DiffApi, type DiffHistogramReplyMessage, type DiffHistogramRequestMessage, type DoneReplyMessage } from '../../shared/protocol';
import { log } from '../log';
import { showError } from '../progress';
import { pageOptions, servePage, setPageHtml, type PageServer } from '../webviewPage';

/** 4096 bins is far past what a chart shows; the cap keeps a request from allocating more. */
const MAX_HISTOGRAM_BINS = 4096;

/**
 * One comparison's report in a webview panel. The panel owns both models (and any
 * temporary file, such as a HEAD copy) and closes them when it is disposed; Δ
 * histograms are computed on request, from the open models.
 */
export class DiffPanel {
  private report: DiffReport;
  private rankPending = false;
  private ready = false;
  private readonly server: PageServer<DiffApi>;

  private constructor(
    panel: vscode.WebviewPanel,
    private readonly a: Model,
    private readonly b: Model,
    report: DiffReport,
    private readonly cleanup: () => Promise<void>,
  ) {
    this.report = report;
    this.server = servePage<DiffApi>(
      panel.webview,
      { histogram: (r, ctx) => this.histogram(r, ctx.signal), export: (r) => this.export(r.format) },
      (e) => errorInfo(e),
      () => {
        this.ready = true;
        this.postReport();
      },
    );
    panel.onDidDispose(() => void this.dispose());
  }

  static open(extensionUri: vscode.Uri, title: string, a: Model, b: Model, report: DiffReport, cleanup: () => Promise<void>): DiffPanel {
    const panel = vscode.window.createWebviewPanel('tensorWorkbench.diff', title, vscode.ViewColumn.Active, pageOptions(extensionUri));
    setPageHtml(panel.webview, extensionUri, 'diff', title, { charts: true });
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

  private postReport(): void {
    if (this.ready) this.server.post({ type: 'report', report: this.report, rankPending: this.rankPending });
  }

  /** Δ histogram of one tensor over ±max |Δ|, from the open models; the page's abort (or closing the panel) stops it. */
  private async histogram(r: DiffHistogramRequestMessage, signal: AbortSignal): Promise<DiffHistogramReplyMessage> {
    const name = requireString(r.name, 'name');
    const bins = requireCount(r.bins, 'bins', MAX_HISTOGRAM_BINS);
    const t = this.report.tensors.find((x) => x.name === name);
    const ta = this.a.tensor(name);
    const tb = this.b.tensor(t?.nameB ?? name);
    if (!t || !ta || !tb) throw Object.assign(new Error(`no tensor '${name}' in both models`), { code: 'not_found' });
    // Bins must not be empty: a range of ±0 still gets a width.
    const hi = t.maxAbsDiff > 0 ? t.maxAbsDiff : 1;
    const counts = await deltaHistogram(this.a, this.b, ta, tb, { bins, lo: -hi, hi }, { signal, backend: configuredBackend() });
    return { type: 'histogram', name, lo: -hi, hi, counts };
  }

  private async export(format: 'markdown' | 'json'): Promise<DoneReplyMessage> {
    if (format !== 'markdown' && format !== 'json') throw Object.assign(new Error(`unknown export format '${String(format)}'`), { code: 'bad_request' });
    const ext = format === 'markdown' ? 'md' : 'json';
    const uri = await vscode.window.showSaveDialog({
      title: `Export checkpoint diff as ${format === 'markdown' ? 'Markdown' : 'JSON'}`,
      filters: format === 'markdown' ? { Markdown: ['md'] } : { JSON: ['json'] },
      defaultUri: vscode.workspace.workspaceFolders?.[0] ? vscode.Uri.joinPath(vscode.workspace.workspaceFolders[0].uri, `checkpoint-diff.${ext}`) : undefined,
    });
    if (!uri) return { type: 'done' };
    const text = format === 'markdown' ? diffToMarkdown(this.report) : diffToJson(this.report);
    try {
      if (uri.scheme === 'file') await writeFile(uri.fsPath, text, 'utf8');
      else await vscode.workspace.fs.writeFile(uri, new TextEncoder().encode(text));
      log.info(`diff report exported to ${uri.toString()}`);
    } catch (e) {
      showError(e, 'Export checkpoint diff');
    }
    return { type: 'done' };
  }

  private async dispose(): Promise<void> {
    this.server.dispose();
    await Promise.allSettled([this.a.close(), this.b.close()]);
    await this.cleanup();
  }
}

function configuredBackend(): 'auto' | 'cpu' | 'webgpu' {
  const v = vscode.workspace.getConfiguration('tensorWorkbench').get<string>('backend', 'auto');
  return v === 'cpu' || v === 'webgpu' ? v : 'auto';
}
