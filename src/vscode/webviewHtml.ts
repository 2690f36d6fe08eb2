/**
 * The HTML shell of every page (the viewer, the diff report, the quantization
 * report): one bundled script and stylesheet from dist/webview, under one Content
 * Security Policy. Pure (no `vscode`), so the browser tests load exactly the pages
 * the extension serves, under exactly their policy.
 *
 * CSP choices:
 * - `default-src 'none'`: nothing loads unless listed.
 * - scripts only by nonce; no 'unsafe-eval' (the histogram uses Plotly's SVG bar
 *   trace, which needs no code generation).
 * - styles: our stylesheet from the webview's own origin (`cspSource`) and style
 *   elements carrying the nonce. No 'unsafe-inline'. @vscode-elements (lit) uses
 *   constructable stylesheets, which CSP does not govern. Plotly adds its rules with
 *   `insertRule` into a `<style id="plotly.js-style-global">` it looks up by id:
 *   we ship that element empty with the nonce, so its CSSOM rules are allowed and
 *   Plotly never creates an un-nonced style element. Plotly's bundle also carries
 *   MapLibre, whose CSS is injected at load unless an element with MAPLIBRE_STYLE_ID
 *   exists; we ship that one empty too (no map traces are used), so no inline style
 *   is ever blocked. The browser tests record CSP violations and expect none.
 * - images: `data:` and `blob:` for the heatmap canvas export; fonts from our origin.
 */

export interface WebviewHtmlOptions {
  /** URI of the page's bundle (dist/webview/<page>.js) as the webview sees it. */
  readonly scriptUri: string;
  /** URI of its stylesheet (dist/webview/<page>.css). */
  readonly styleUri: string;
  /** URI of dist/webview/plotly.js, for pages that draw charts: loaded when the first is drawn. */
  readonly plotlyUri?: string;
  /** `webview.cspSource`. */
  readonly cspSource: string;
  readonly nonce: string;
  /** Shown in the page title, for screen readers. */
  readonly title: string;
  /** What the page shows until its script has drawn it. */
  readonly loading?: string;
}

/** The id MapLibre (inside plotly.js-dist-min 4.x) checks before injecting its CSS; the page tests fail if it changes. */
export const MAPLIBRE_STYLE_ID = 'ce8d464691048653ffe3a57c6c18ab566e8366f186677868cf724621a857b4fe';

const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function webviewCsp(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${cspSource} 'nonce-${nonce}'`,
    `img-src ${cspSource} data: blob:`,
    `font-src ${cspSource}`,
  ].join('; ');
}

export function webviewHtml(o: WebviewHtmlOptions): string {
  const nonce = escapeAttr(o.nonce);
  // Plotly's and MapLibre's style elements, shipped empty with the nonce (see above), only where charts are drawn.
  const chartStyles = o.plotlyUri === undefined ? '' : `<style id="plotly.js-style-global" nonce="${nonce}"></style>\n<style id="${MAPLIBRE_STYLE_ID}" nonce="${nonce}"></style>\n`;
  const plotly = o.plotlyUri === undefined ? '' : ` data-plotly="${escapeAttr(o.plotlyUri)}"`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${escapeAttr(webviewCsp(o.cspSource, o.nonce))}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${escapeAttr(o.styleUri)}" nonce="${nonce}">
${chartStyles}<title>${escapeAttr(o.title)}</title>
</head>
<body>
<div id="root" data-state="loading"><p class="loading">${escapeAttr(o.loading ?? 'Loading…')}</p></div>
<script nonce="${nonce}" src="${escapeAttr(o.scriptUri)}"${plotly}></script>
</body>
</html>`;
}

/** A nonce: 32 characters from a CSPRNG-backed source when one is passed in. */
export function makeNonce(random: (n: number) => Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(random(32), (b) => alphabet[b % alphabet.length]).join('');
}
