import * as vscode from 'vscode';
import { stat } from 'node:fs/promises';
import { getBackend, warmCpuWorkers } from '../../pipelines/runtime';
import { openModel } from '../../format/openModel';
import { errorInfo, ModelService } from '../../pipelines/viewer/modelService';
import { ResultCache, stampKey, type FileStamp } from '../../pipelines/viewer/resultCache';
import { summaryText } from '../../pipelines/viewer/summaryText';
import { requireCount, requireIndex, requireString, type SummaryReplyMessage, type ViewerApi } from '../../shared/protocol';
import { ARRAY_PAGE_MAX } from '../../pipelines/viewer/ggufView';
import { registerCommand } from '../commands';
import { Disposable } from '../dispose';
import { log } from '../log';
import { configuredBackend } from '../progress';
import { pageOptions, servePage, setPageHtml } from '../webviewPage';
import { openerFor } from '../workspaceSource';

/** The viewer's editor for `*.safetensors` (priority default). */
export const VIEW_TYPE = 'tensorWorkbench.viewer';
/** The same viewer for `*.safetensors.index.json` (priority option: JSON still opens as text by default). */
export const INDEX_VIEW_TYPE = 'tensorWorkbench.indexViewer';
/** Scheme of the read-only "Show as Text" documents. */
export const SUMMARY_SCHEME = 'tensor-workbench-summary';
/**
 * Summaries of recently closed editors, by URI, with the stamps of the files they
 * came from: reopening an unchanged model skips reading its header and building
 * its tree. Three: a 50,000-tensor summary is about 8 MB.
 */
const SUMMARIES = new ResultCache<{ files: readonly FileStamp[]; summary: SummaryReplyMessage; outline?: SummaryReplyMessage }>(3);
/** Writers touch a file several times in a row; reload once the burst is over. */
const RELOAD_DEBOUNCE_MS = 300;

/**
 * One opened model: the header is read once per version of the file on disk, and
 * its ModelService (with its result cache) lives until the file changes. A change
 * to any of the model's files (or the index) drops the service, and every panel
 * showing it is told to reload: a panel never shows numbers from an older file.
 */
export class ViewerDocument extends Disposable implements vscode.CustomDocument {
  private service: Promise<ModelService> | undefined;
  private summaryReply: Promise<SummaryReplyMessage> | undefined;
  private outlineReply: Promise<SummaryReplyMessage> | undefined;
  private wholeSummary: SummaryReplyMessage | undefined;
  private outlineValue: SummaryReplyMessage | undefined;
  private warmed = false;
  private readonly changed = this.register(new vscode.EventEmitter<{ deleted: boolean }>());
  readonly onDidChange = this.changed.event;
  private timer: NodeJS.Timeout | undefined;
  private watchedFiles = new Set<string>();

  constructor(readonly uri: vscode.Uri) {
    super();
    const dir = vscode.Uri.joinPath(uri, '..');
    // Watch the folder, not the file: a shard or the index may change too, and editors
    // that save by rename-over are seen as create/delete of the same name.
    const watcher = this.register(vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(dir, '*')));
    const onEvent = (deleted: boolean) => (u: vscode.Uri) => {
      if (u.toString() === uri.toString() || this.watchedFiles.has(u.path)) this.scheduleReload(deleted && u.toString() === uri.toString());
    };
    this.register(watcher.onDidChange(onEvent(false)));
    this.register(watcher.onDidCreate(onEvent(false)));
    this.register(watcher.onDidDelete(onEvent(true)));
    this.register({ dispose: () => clearTimeout(this.timer) });
    this.register({ dispose: () => void this.closeModel() });
  }

  whenDisposed(fn: () => void): void {
    this.register({ dispose: fn });
  }

  /** The model as it is on disk now; opened (header only) on first use after each change. */
  model(): Promise<ModelService> {
    if (!this.service) {
      const { opener, path } = openerFor(this.uri, vscode.workspace.fs);
      const started = Date.now();
      this.service = openModel(path, opener).then((m) => {
        log.info(`viewer: opened ${m.path}: ${m.tensors.length} tensors, ${m.files.length} file(s), header read in ${Date.now() - started} ms`);
        this.watchedFiles = new Set(m.files.map((f) => (this.uri.scheme === 'file' ? vscode.Uri.file(f.path).path : f.path)));
        return new ModelService(m, { backend: configuredBackend, local: this.uri.scheme === 'file' });
      });
      // A failed open is not cached: the next request (after the user fixes the file) tries again.
      this.service.catch(() => (this.service = undefined));
    }
    return this.service;
  }

  /**
   * The whole summary (the page's second request, after the outline), computed once
   * per version of the file, or an earlier editor's when the file is unchanged.
   */
  summary(): Promise<SummaryReplyMessage> {
    if (!this.summaryReply) {
      const p = this.cachedSummary().then(async (hit) => {
        if (hit) return hit.summary;
        const svc = await this.model();
        const adapter = await svc.adapter();
        const started = Date.now();
        const s = svc.summary();
        log.info(`viewer: summary and module tree of ${s.totals.tensors} tensors built in ${Date.now() - started} ms`);
        const reply = adapter ? { ...s, adapter } : s;
        if (this.uri.scheme === 'file') SUMMARIES.set(this.uri.toString(), { files: svc.files, summary: reply, outline: this.outlineValue });
        return reply;
      });
      // Kept only while it is still this version's: a reload may have dropped it meanwhile.
      void p.then((w) => this.summaryReply === p && (this.wholeSummary = w), () => undefined);
      this.summaryReply = p;
      // A failure is not kept: the page's request (or a retry after a fix) computes it again.
      p.catch(() => {
        if (this.summaryReply === p) this.summaryReply = undefined;
      });
    }
    return this.summaryReply;
  }

  /**
   * Starts the workers and the GPU device in the background, so that the first click on a
   * tensor does not pay for them. Called once the page has its tree: started earlier, they
   * compete with the page's own loading for the same cores.
   */
  warmBackends(): void {
    if (this.warmed) return;
    this.warmed = true;
    const backend = configuredBackend();
    if (backend !== 'webgpu') warmCpuWorkers();
    void getBackend(backend).catch(() => undefined);
  }

  /**
   * The outline the page shows first (see SummaryRequestMessage.outline), or the
   * whole summary when that is at hand already (an earlier editor's, or computed).
   */
  outline(): Promise<SummaryReplyMessage> {
    if (this.wholeSummary) return Promise.resolve(this.wholeSummary);
    if (!this.outlineReply) {
      const p = this.cachedSummary().then(async (hit) => {
        if (hit) return hit.outline ?? hit.summary;
        const svc = await this.model();
        const adapter = await svc.adapter();
        const started = Date.now();
        const o = svc.outline();
        log.info(`viewer: outline of ${o.totals.tensors} tensors built in ${Date.now() - started} ms`);
        const reply = adapter ? { ...o, adapter } : o;
        if (this.outlineReply === p) this.outlineValue = reply;
        return reply;
      });
      this.outlineReply = p;
      p.catch(() => {
        if (this.outlineReply === p) this.outlineReply = undefined;
      });
    }
    return this.outlineReply;
  }

  /** The summary of an earlier editor on this file, when every file of the model still has its size and mtime. */
  private async cachedSummary(): Promise<{ summary: SummaryReplyMessage; outline?: SummaryReplyMessage } | undefined> {
    const hit = SUMMARIES.get(this.uri.toString());
    if (!hit) return undefined;
    try {
      const now = await Promise.all(hit.files.map(async (f) => {
        const st = await stat(f.path);
        return { path: f.path, bytes: st.size, mtimeMs: st.mtimeMs };
      }));
      if (stampKey(now) === stampKey(hit.files)) {
        this.watchedFiles = new Set(hit.files.map((f) => vscode.Uri.file(f.path).path));
        return hit;
      }
    } catch {
      // A file is gone or unreadable: read the model again, which reports it properly.
    }
    SUMMARIES.delete(this.uri.toString());
    return undefined;
  }

  private scheduleReload(deleted: boolean): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      void this.closeModel().then(() => this.changed.fire({ deleted }));
    }, RELOAD_DEBOUNCE_MS);
  }

  private async closeModel(): Promise<void> {
    const s = this.service;
    this.service = undefined;
    this.summaryReply = undefined;
    this.outlineReply = undefined;
    this.wholeSummary = undefined;
    this.outlineValue = undefined;
    if (s) await s.then((m) => m.model.close()).catch(() => undefined);
  }
}

export class ViewerProvider extends Disposable implements vscode.CustomReadonlyEditorProvider<ViewerDocument> {
  private readonly documents = new Map<string, ViewerDocument>();
  private readonly summaryChanged = this.register(new vscode.EventEmitter<vscode.Uri>());

  static register(context: vscode.ExtensionContext): ViewerProvider {
    const p = new ViewerProvider(context);
    context.subscriptions.push(p);
    // No retainContextWhenHidden: the page keeps its view state with setState and asks again.
    const opts = { supportsMultipleEditorsPerDocument: true };
    context.subscriptions.push(vscode.window.registerCustomEditorProvider(VIEW_TYPE, p, opts));
    context.subscriptions.push(vscode.window.registerCustomEditorProvider(INDEX_VIEW_TYPE, p, opts));
    context.subscriptions.push(
      vscode.workspace.registerTextDocumentContentProvider(SUMMARY_SCHEME, {
        onDidChange: p.summaryChanged.event,
        provideTextDocumentContent: (uri) => p.summaryTextFor(uri),
      }),
    );
    context.subscriptions.push(vscode.languages.registerCodeLensProvider({ pattern: '**/{*.safetensors.index.json,pytorch_model*.bin.index.json}' }, new IndexCodeLens()));
    registerCommand(context, 'tensorWorkbench.openModel', (uri?: vscode.Uri) => p.openModelCommand(uri));
    registerCommand(context, 'tensorWorkbench.openAsModel', (uri?: vscode.Uri) => p.openAsModel(uri ?? vscode.window.activeTextEditor?.document.uri));
    registerCommand(context, 'tensorWorkbench.showAsText', (uri?: vscode.Uri) => p.showAsText(uri ?? activeViewerUri()));
    return p;
  }

  private constructor(private readonly context: vscode.ExtensionContext) {
    super();
  }

  openCustomDocument(uri: vscode.Uri): ViewerDocument {
    const doc = new ViewerDocument(uri);
    const key = uri.toString();
    this.documents.set(key, doc);
    doc.onDidChange(() => this.summaryChanged.fire(summaryUri(uri)));
    doc.whenDisposed(() => {
      if (this.documents.get(key) === doc) this.documents.delete(key);
    });
    return doc;
  }

  async resolveCustomEditor(doc: ViewerDocument, panel: vscode.WebviewPanel): Promise<void> {
    panel.webview.options = pageOptions(this.context.extensionUri);
    setPageHtml(panel.webview, this.context.extensionUri, 'viewer', doc.uri.path.split('/').pop() ?? 'model', { charts: true, loading: 'Reading header…' });
    // Read the header and build the outline while the page loads its script (after the html is set:
    // the header's parse holds this thread, and the page must not wait for it to start loading).
    void doc.outline().catch(() => undefined);
    const server = servePage<ViewerApi>(
      panel.webview,
      {
        summary: async (r) => {
          const reply = await (r.outline ? doc.outline() : doc.summary());
          // After this reply is posted (timers run after the promise continuation that posts it).
          if (!reply.outline) setTimeout(() => doc.warmBackends(), 0);
          return reply;
        },
        quantPreview: async (_r, ctx) => (await doc.model()).quantPreview(ctx.signal),
        tensorStats: async (r, ctx) => (await doc.model()).tensorStats(r.name, r.bins, ctx.signal),
        heatmap: async (r, ctx) => (await doc.model()).heatmap(r.name, r.maxSize, ctx.signal),
        scaleStats: async (r, ctx) => (await doc.model()).scaleStats(r.name, ctx.signal),
        scan: async (r, ctx) => (await doc.model()).scan(r.bins, ctx.emit, ctx.signal),
        ggufArray: async (r) => (await doc.model()).ggufArray(requireString(r.key, 'key'), requireIndex(r.start, 'start'), requireCount(r.count, 'count', ARRAY_PAGE_MAX)),
        reopenWithDefault: async () => {
          await vscode.commands.executeCommand('vscode.openWith', doc.uri, 'default', panel.viewColumn);
          return { type: 'done' };
        },
        showAsText: async () => {
          await this.showAsText(doc.uri);
          return { type: 'done' };
        },
      },
      (e) => {
        const info = errorInfo(e);
        if (info.code !== 'cancelled') log.info(`viewer: ${info.code}: ${info.message}`);
        return info;
      },
    );
    const sub = doc.onDidChange(({ deleted }) => {
      server.abortAll();
      server.post({ type: 'fileChanged', deleted });
    });
    // The last panel of a document closed: VS Code disposes the document itself.
    panel.onDidDispose(() => {
      server.dispose();
      sub.dispose();
    });
  }

  /** "Open Model…": an index.json, a .safetensors or .gguf file, or a folder holding one. */
  async openModelCommand(uri?: vscode.Uri): Promise<void> {
    let target = uri;
    if (!target) {
      const picked = await vscode.window.showOpenDialog({
        canSelectFiles: true,
        canSelectFolders: true,
        canSelectMany: false,
        openLabel: 'Open Model',
        filters: { 'Models': ['safetensors', 'json', 'gguf', 'bin', 'pt', 'pth', 'ckpt'] },
      });
      target = picked?.[0];
    }
    if (!target) return;
    const st = await vscode.workspace.fs.stat(target);
    if (st.type & vscode.FileType.Directory) {
      const names = (await vscode.workspace.fs.readDirectory(target)).filter(([, t]) => t & vscode.FileType.File).map(([n]) => n);
      const index =
        names.find((n) => n === 'model.safetensors.index.json') ??
        names.find((n) => n.endsWith('.safetensors.index.json')) ??
        names.find((n) => /^pytorch_model.*\.bin\.index\.json$/.test(n));
      // Weights files a folder may hold alone: safetensors first, then the other formats the model layer reads.
      const all = names.filter((n) => /\.(safetensors|gguf|pt|pth|ckpt)$|^pytorch_model.*\.bin$/.test(n)).sort();
      const st = all.filter((n) => n.endsWith('.safetensors'));
      const files = st.length > 0 ? st : all;
      let name = index ?? (files.length === 1 ? files[0] : undefined);
      if (!name && files.length > 1) name = await vscode.window.showQuickPick(files, { placeHolder: 'This folder has several weights files and no index: pick one' });
      if (!name) {
        if (files.length === 0) void vscode.window.showWarningMessage(`No weights file (.safetensors, .gguf, PyTorch) or index in ${target.fsPath || target.path}.`);
        return;
      }
      target = vscode.Uri.joinPath(target, name);
    }
    await this.openAsModel(target);
  }

  async openAsModel(uri: vscode.Uri | undefined): Promise<void> {
    if (!uri) return;
    const viewType = uri.path.endsWith('.json') ? INDEX_VIEW_TYPE : VIEW_TYPE;
    await vscode.commands.executeCommand('vscode.openWith', uri, viewType);
  }

  async showAsText(uri: vscode.Uri | undefined): Promise<void> {
    if (!uri) {
      void vscode.window.showInformationMessage('Open a .safetensors file in the Tensor Workbench viewer first.');
      return;
    }
    const doc = await vscode.workspace.openTextDocument(summaryUri(uri));
    if (doc.languageId !== 'safetensors-summary') await vscode.languages.setTextDocumentLanguage(doc, 'safetensors-summary');
    await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
  }

  private async summaryTextFor(uri: vscode.Uri): Promise<string> {
    const source = vscode.Uri.parse(decodeURIComponent(uri.query));
    const open = this.documents.get(source.toString());
    try {
      if (open && !open.isDisposed) return summaryText((await open.model()).summary());
      const { opener, path } = openerFor(source, vscode.workspace.fs);
      const m = await openModel(path, opener);
      try {
        return summaryText(new ModelService(m).summary());
      } finally {
        await m.close();
      }
    } catch (e) {
      const info = errorInfo(e);
      return `# ${source.toString(true)}\nerror[${info.code}] ${info.message}\n`;
    }
  }
}

/** `tensor-workbench-summary:/path/model.safetensors.safetensors-summary?<source uri>`: the extension picks the language. */
export function summaryUri(source: vscode.Uri): vscode.Uri {
  return vscode.Uri.from({ scheme: SUMMARY_SCHEME, path: `${source.path}.safetensors-summary`, query: encodeURIComponent(source.toString()) });
}

function activeViewerUri(): vscode.Uri | undefined {
  const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  if (input instanceof vscode.TabInputCustom && (input.viewType === VIEW_TYPE || input.viewType === INDEX_VIEW_TYPE)) return input.uri;
  return undefined;
}

class IndexCodeLens implements vscode.CodeLensProvider {
  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    return [new vscode.CodeLens(new vscode.Range(0, 0, 0, 0), { title: 'Open as Model', command: 'tensorWorkbench.openAsModel', arguments: [document.uri] })];
  }
}
