/**
 * Runs the built viewer bundle (dist/webview/viewer.js) in headless Chromium, in
 * the same HTML and under the same CSP the extension serves, with
 * `acquireVsCodeApi` replaced by a scripted host that answers protocol requests
 * from a table of generated replies and records everything the page sends.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, extname } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { webviewHtml } from '../../src/vscode/webviewHtml';
import type { ToHostMessage } from '../../src/shared/protocol';

/** Bundles are flat in dist/, so the webview build is beside this test file. */
// Callbacks passed to page.evaluate run in the browser; the node type-check has no DOM lib.
declare const document: any, window: any;

export const WEBVIEW_DIR = join(__dirname, 'webview');
export const ARTIFACTS = join(__dirname, '..', '.artifacts', 'webview');
export const NONCE = 'testNonce0123456789abcdefABCDEF0';

export interface ReplySpec {
  readonly ok?: boolean;
  readonly body?: unknown;
  readonly error?: { code: string; message: string; file?: string; tensor?: string };
  /** Events sent before the reply, `eventDelayMs` apart. */
  readonly events?: readonly unknown[];
  readonly eventDelayMs?: number;
  /** Never reply (to test cancelling). */
  readonly hold?: boolean;
  /** Milliseconds before the reply. */
  readonly delayMs?: number;
}

/** Replies keyed by `type:name` (tensor requests) or `type`. */
export type ReplyTable = Record<string, ReplySpec>;

const MIME: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

export async function startServer(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const origin = `http://${req.headers.host}`;
    if (url.pathname === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(webviewHtml({ scriptUri: `${origin}/viewer.js`, styleUri: `${origin}/viewer.css`, plotlyUri: `${origin}/plotly.js`, cspSource: origin, nonce: NONCE, title: 'test', loading: 'Reading header…' }));
      return;
    }
    // Any other page by name (`/quantReport.html`), in the shell the extension serves it in.
    const page = /^\/(\w+)\.html$/.exec(url.pathname)?.[1];
    if (page) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(webviewHtml({ scriptUri: `${origin}/${page}.js`, styleUri: `${origin}/${page}.css`, cspSource: origin, nonce: NONCE, title: page }));
      return;
    }
    readFile(join(WEBVIEW_DIR, url.pathname.replace(/^\/+/, '')))
      .then((b) => {
        res.writeHead(200, { 'content-type': MIME[extname(url.pathname)] ?? 'application/octet-stream' });
        res.end(b);
      })
      .catch(() => {
        res.writeHead(404);
        res.end();
      });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    chromiumSandbox: false,
    args: ['--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu'],
  });
}

/** Typed arrays do not survive page.evaluate's serialization; they travel tagged and are rebuilt in the page. */
export function encode(v: unknown): unknown {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return { __typed: v.constructor.name, data: Array.from(v as unknown as ArrayLike<number>) };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  if (typeof v === 'number' && !Number.isFinite(v)) return { __number: String(v) };
  return v;
}

/** The scripted host, installed before any page script runs. */
const MOCK_HOST = `(() => {
  const revive = (v) => {
    if (Array.isArray(v)) return v.map(revive);
    if (v && typeof v === 'object') {
      if (v.__typed) return new globalThis[v.__typed](v.data);
      if (v.__number) return Number(v.__number);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
    }
    return v;
  };
  const host = { sent: [], replies: {}, state: undefined, violations: [], aborted: [] };
  window.__host = host;
  document.addEventListener('securitypolicyviolation', (e) => host.violations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '') + ' at ' + e.sourceFile + ':' + e.lineNumber + ':' + e.columnNumber));
  const post = (m) => window.dispatchEvent(new MessageEvent('message', { data: m }));
  host.post = (m) => post(revive(m));
  host.setReplies = (r) => { host.replies = revive(r); };
  const answer = async (m) => {
    const b = m.body;
    const spec = host.replies[b.type + ':' + (b.name ?? (b.outline ? 'outline' : ''))] ?? host.replies[b.type];
    if (!spec) { post({ type: 'reply', id: m.id, ok: false, error: { code: 'unknown_request', message: 'no reply scripted for ' + b.type } }); return; }
    for (const e of spec.events ?? []) {
      await new Promise((r) => setTimeout(r, spec.eventDelayMs ?? 0));
      if (host.aborted.includes(m.id)) return;
      post({ type: 'event', id: m.id, body: e });
    }
    if (spec.hold) return;
    await new Promise((r) => setTimeout(r, spec.delayMs ?? 0));
    if (host.aborted.includes(m.id)) return;
    post(spec.ok === false ? { type: 'reply', id: m.id, ok: false, error: spec.error } : { type: 'reply', id: m.id, ok: true, body: spec.body });
  };
  window.acquireVsCodeApi = () => ({
    postMessage(m) {
      host.sent.push(m);
      if (m.type === 'abort') host.aborted.push(m.id);
      if (m.type === 'request') void answer(m);
    },
    getState() { return host.state; },
    setState(s) { host.state = s; },
  });
})();`;

type OpenOptions = { width?: number; height?: number; state?: unknown; beforeLoad?: (page: Page) => Promise<unknown> };

/** Opens the viewer page with `replies` scripted; resolves once the bundle has sent 'ready'. */
export async function openViewer(browser: Browser, origin: string, replies: ReplyTable, opts: OpenOptions = {}): Promise<Page> {
  return openPage(browser, origin, 'index', replies, opts);
}

/** Opens a page (`index` is the viewer, else a bundle's name) with `replies` scripted; resolves once it has sent 'ready'. */
export async function openPage(browser: Browser, origin: string, name: string, replies: ReplyTable, opts: OpenOptions = {}): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: opts.width ?? 1280, height: opts.height ?? 800 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  ERRORS.set(page, errors);
  // `state` is what getState returns: the page as VS Code restores it after being hidden.
  await page.addInitScript({ content: `${MOCK_HOST}\nwindow.__host.setReplies(${JSON.stringify(encode(replies))});\nwindow.__host.state = ${JSON.stringify(opts.state ?? null) ?? 'null'} ?? undefined;` });
  await applyTheme(page, 'vscode-dark', false);
  await opts.beforeLoad?.(page);
  // Not 'load': that waits for every script the page adds early, Plotly included, and tests hold it back.
  await page.goto(`${origin}/${name}.html`, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => (window as unknown as { __host: { sent: ToHostMessage[] } }).__host.sent.some((m) => m.type === 'ready'));
  return page;
}

const ERRORS = new WeakMap<Page, string[]>();

export function pageErrors(page: Page): string[] {
  return ERRORS.get(page) ?? [];
}

export async function sent(page: Page): Promise<ToHostMessage[]> {
  return page.evaluate(() => (window as unknown as { __host: { sent: ToHostMessage[] } }).__host.sent);
}

export async function violations(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __host: { violations: string[] } }).__host.violations);
}

export async function setReplies(page: Page, replies: ReplyTable): Promise<void> {
  await page.evaluate((r) => (window as unknown as { __host: { setReplies(r: unknown): void } }).__host.setReplies(r), encode(replies));
}

export async function postToPage(page: Page, m: unknown): Promise<void> {
  await page.evaluate((x) => (window as unknown as { __host: { post(m: unknown): void } }).__host.post(x), encode(m));
}

/**
 * A few of the variables VS Code sets on <html> for each theme kind (values from
 * the default Light+, Dark+ and High Contrast themes), and the body class it sets.
 * VS Code applies them with CSSOM, as here, which the CSP allows.
 */
export const THEMES = {
  'vscode-light': {
    '--vscode-input-background': '#ffffff',
    '--vscode-input-foreground': '#616161',
    '--vscode-button-secondaryBackground': '#5f6a79',
    '--vscode-button-secondaryForeground': '#ffffff',
    '--vscode-checkbox-background': '#f8f8f8',
    '--vscode-checkbox-border': '#cecece',
    '--vscode-foreground': '#616161',
    '--vscode-editor-background': '#ffffff',
    '--vscode-descriptionForeground': '#717171',
    '--vscode-list-activeSelectionBackground': '#0060c0',
    '--vscode-list-activeSelectionForeground': '#ffffff',
    '--vscode-list-hoverBackground': '#e8e8e8',
    '--vscode-errorForeground': '#a1260d',
    '--vscode-textLink-foreground': '#006ab1',
    '--vscode-charts-blue': '#1a85ff',
    '--vscode-panel-border': '#80808059',
    '--vscode-font-family': 'sans-serif',
    '--vscode-editor-font-family': 'monospace',
  },
  'vscode-dark': {
    '--vscode-input-background': '#3c3c3c',
    '--vscode-input-foreground': '#cccccc',
    '--vscode-button-secondaryBackground': '#3a3d41',
    '--vscode-button-secondaryForeground': '#cccccc',
    '--vscode-checkbox-background': '#313131',
    '--vscode-checkbox-border': '#3c3c3c',
    '--vscode-foreground': '#cccccc',
    '--vscode-editor-background': '#1e1e1e',
    '--vscode-descriptionForeground': '#ccccccb3',
    '--vscode-list-activeSelectionBackground': '#04395e',
    '--vscode-list-activeSelectionForeground': '#ffffff',
    '--vscode-list-hoverBackground': '#2a2d2e',
    '--vscode-errorForeground': '#f48771',
    '--vscode-textLink-foreground': '#3794ff',
    '--vscode-charts-blue': '#3794ff',
    '--vscode-panel-border': '#80808059',
    '--vscode-font-family': 'sans-serif',
    '--vscode-editor-font-family': 'monospace',
  },
  'vscode-high-contrast': {
    '--vscode-input-background': '#000000',
    '--vscode-input-foreground': '#ffffff',
    '--vscode-button-secondaryBackground': '#000000',
    '--vscode-button-secondaryForeground': '#ffffff',
    '--vscode-checkbox-background': '#000000',
    '--vscode-checkbox-border': '#6fc3df',
    '--vscode-foreground': '#ffffff',
    '--vscode-editor-background': '#000000',
    '--vscode-descriptionForeground': '#ffffff',
    '--vscode-list-activeSelectionBackground': '#000000',
    '--vscode-list-activeSelectionForeground': '#ffffff',
    '--vscode-list-hoverBackground': '#000000',
    '--vscode-errorForeground': '#f48771',
    '--vscode-textLink-foreground': '#21a6ff',
    '--vscode-charts-blue': '#3794ff',
    '--vscode-panel-border': '#6fc3df',
    '--vscode-contrastBorder': '#6fc3df',
    '--vscode-contrastActiveBorder': '#f38518',
    '--vscode-font-family': 'sans-serif',
    '--vscode-editor-font-family': 'monospace',
  },
} as const;

export type ThemeKind = keyof typeof THEMES;

/** Sets the theme's body class and variables; before navigation (`now` false) it runs as an init script. */
export async function applyTheme(page: Page, kind: ThemeKind, now = true): Promise<void> {
  const fn = (a: { kind: string; vars: Record<string, string> }) => {
    const set = () => {
      for (const [k, v] of Object.entries(a.vars)) document.documentElement.style.setProperty(k, v);
      document.documentElement.style.removeProperty('--vscode-contrastBorder');
      document.documentElement.style.removeProperty('--vscode-contrastActiveBorder');
      for (const [k, v] of Object.entries(a.vars)) document.documentElement.style.setProperty(k, v);
      document.body.classList.remove('vscode-light', 'vscode-dark', 'vscode-high-contrast');
      document.body.classList.add(a.kind);
    };
    if (document.body) set();
    else document.addEventListener('DOMContentLoaded', set, { once: true });
  };
  const arg = { kind, vars: THEMES[kind] as Record<string, string> };
  if (now) await page.evaluate(fn, arg);
  else await page.addInitScript(fn, arg);
}
