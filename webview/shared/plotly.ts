/**
 * Plotly, loaded when a chart is first drawn rather than with the page: it is 4.8 MB
 * of the page's 4.9 MB, and the tree (what a user opens a model to see) needs none of
 * it. The extension ships it as dist/webview/plotly.js (never a CDN); the page's main
 * script names it in `data-plotly`, and the loader adds it with the main script's
 * nonce, which the page's Content Security Policy accepts.
 */
import type * as PlotlyApi from 'plotly.js-dist-min';

export type Plotly = typeof PlotlyApi;

// Read while the bundle's top level runs, which is while the main script executes.
const mainScript = document.currentScript as HTMLScriptElement | null;
let loading: Promise<Plotly> | undefined;

/** Plotly, loading its script on the first call; a failed load is tried again on the next call. */
export function loadPlotly(): Promise<Plotly> {
  loading ??= new Promise<Plotly>((resolve, reject) => {
    const g = globalThis as { Plotly?: Plotly };
    if (g.Plotly) return resolve(g.Plotly);
    const src = mainScript?.dataset.plotly;
    if (!src) return reject(new Error('the page does not name its plotly script (data-plotly)'));
    const s = document.createElement('script');
    s.src = src;
    s.nonce = mainScript!.nonce;
    s.addEventListener('load', () => (g.Plotly ? resolve(g.Plotly) : reject(new Error(`${src} did not define Plotly`))));
    s.addEventListener('error', () => reject(new Error(`could not load ${src}`)));
    document.head.append(s);
  });
  loading.catch(() => (loading = undefined));
  return loading;
}

/** Plotly if it has loaded, else undefined (for clean-ups that have nothing to do before). */
export function loadedPlotly(): Plotly | undefined {
  return (globalThis as { Plotly?: Plotly }).Plotly;
}

let seq = 0;

/**
 * `Plotly.react` once Plotly has loaded, unless the element was given another chart
 * or cleared (`purge`) in the meantime. Resolves whether this chart was drawn; a
 * chart that cannot be drawn says why in its place.
 */
export async function react(el: HTMLElement, data: PlotlyApi.Data[], layout: Partial<PlotlyApi.Layout>, config: Partial<PlotlyApi.Config>): Promise<boolean> {
  const token = String(++seq);
  el.dataset.chartToken = token;
  try {
    const P = await loadPlotly();
    if (el.dataset.chartToken !== token) return false;
    await P.react(el, data, layout, config);
    return el.dataset.chartToken === token;
  } catch (e) {
    if (el.dataset.chartToken === token) {
      el.textContent = `The chart could not be drawn: ${e instanceof Error ? e.message : String(e)}`;
      el.classList.add('chart-error');
    }
    return false;
  }
}

/** Clears a chart (and cancels one still waiting for Plotly). */
export function purge(el: HTMLElement): void {
  el.dataset.chartToken = String(++seq);
  loadedPlotly()?.purge(el);
}
