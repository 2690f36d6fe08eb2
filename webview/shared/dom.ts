/** Small DOM helpers. Text always goes in as text nodes, so file and tensor names can never inject markup. */

type Attr = string | null | undefined;

export function h(tag: string, attrs: Record<string, Attr>, ...children: (Node | string | null | undefined)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number): string {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${UNITS[i]}`;
}

/** 1.2K, 7.0B: parameter counts the way ML people say them. */
export function formatCount(n: number): string {
  const steps: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  for (const [d, s] of steps) if (n >= d) return `${(n / d).toFixed(n / d >= 100 ? 0 : 1)}${s}`;
  return String(n);
}

export function formatNumber(n: number): string {
  return n.toLocaleString('en-US');
}
