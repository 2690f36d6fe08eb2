import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import { ApiResponder, isToHostMessage, toWire, type Api, type ErrorInfo, type Handlers, type ToWebviewMessage } from '../shared/protocol';
import { makeNonce, webviewHtml } from './webviewHtml';

/** The pages built into dist/webview (webview/<page>/main.ts). */
export type PageName = 'viewer' | 'diff' | 'quantReport';

/** The only folder a page may load from: our built bundles. */
export function pageRoot(extensionUri: vscode.Uri): vscode.Uri {
  return vscode.Uri.joinPath(extensionUri, 'dist', 'webview');
}

export function pageOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return { enableScripts: true, localResourceRoots: [pageRoot(extensionUri)] };
}

/** Sets a page's shell: its bundle and stylesheet under the shared CSP, with a fresh nonce. */
export function setPageHtml(webview: vscode.Webview, extensionUri: vscode.Uri, page: PageName, title: string, opts: { charts?: boolean; loading?: string } = {}): void {
  const root = pageRoot(extensionUri);
  const uri = (file: string) => webview.asWebviewUri(vscode.Uri.joinPath(root, file)).toString();
  webview.html = webviewHtml({
    scriptUri: uri(`${page}.js`),
    styleUri: uri(`${page}.css`),
    plotlyUri: opts.charts ? uri('plotly.js') : undefined,
    cspSource: webview.cspSource,
    nonce: makeNonce((n) => randomBytes(n)),
    title,
    loading: opts.loading,
  });
}

export interface PageServer<A extends Api> extends vscode.Disposable {
  /** Sends a push message (or anything else the page's protocol allows). */
  post(m: ToWebviewMessage<A>): void;
  /** Aborts every request still running (the file changed). */
  abortAll(): void;
}

/**
 * Answers a page's requests with `handlers` (one reply per request, errors as
 * replies, aborts honoured); `onReady` runs on each 'ready' (the page loaded or
 * reloaded). Disposing aborts what is still running.
 */
export function servePage<A extends Api>(webview: vscode.Webview, handlers: Handlers<A>, toError: (e: unknown) => ErrorInfo, onReady?: () => void): PageServer<A> {
  const post = (m: ToWebviewMessage<A>) => void webview.postMessage(m);
  const responder = new ApiResponder<A>(post, handlers, toError);
  const sub = webview.onDidReceiveMessage((m: unknown) => {
    if (!isToHostMessage(m)) return;
    if (m.type === 'ready') onReady?.();
    else void responder.handle(m);
  });
  return {
    post: (m) => post(toWire(m)),
    abortAll: () => responder.abortAll(),
    dispose: () => {
      responder.abortAll();
      sub.dispose();
    },
  };
}
