/**
 * The layers, read from the sources: only src/vscode imports `vscode`; a page
 * (webview/) reaches the extension only through the protocol (src/shared/protocol)
 * and names the pipelines' result types type-only, so no host code is bundled into
 * a page; and src/shared imports nothing but itself and those types.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

/** Bundles are flat in dist/, so the repository is its parent. */
const ROOT = join(__dirname, '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

interface Import {
  readonly spec: string;
  readonly typeOnly: boolean;
}

/** Every import and re-export of a file, with whether it is type-only (`import type`, `export type`). */
function imports(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const out: Import[] = [];
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?\bfrom\s+)?['"]([^'"]+)['"]/gm)) out.push({ spec: m[4]!, typeOnly: m[2] !== undefined });
  for (const m of text.matchAll(/\brequire\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push({ spec: m[1]!, typeOnly: false });
  return out;
}

const rel = (f: string) => relative(ROOT, f).split(sep).join('/');

test('only src/vscode imports vscode', () => {
  const offenders = sources(join(ROOT, 'src'))
    .filter((f) => !rel(f).startsWith('src/vscode/'))
    .filter((f) => imports(f).some((i) => i.spec === 'vscode'))
    .map(rel);
  assert.deepEqual(offenders, []);
  assert.ok(imports(join(ROOT, 'src', 'vscode', 'webviewPage.ts')).some((i) => i.spec === 'vscode'), 'the check sees a real vscode import');
});

test('the pages import only the protocol, type-only pipeline results, their own modules, their UI libraries and CSS', () => {
  const files = sources(join(ROOT, 'webview'));
  assert.ok(files.length >= 10, 'the pages are found');
  const bad: string[] = [];
  for (const f of files) {
    for (const i of imports(f)) {
      const ok =
        (i.spec.startsWith('.') && !i.spec.includes('/src/')) ||
        i.spec.endsWith('/src/shared/protocol') ||
        (i.typeOnly && /\/src\/pipelines\//.test(i.spec)) ||
        i.spec.startsWith('@vscode-elements/elements/') ||
        (i.typeOnly && i.spec === 'plotly.js-dist-min');
      if (!ok) bad.push(`${rel(f)}: ${i.typeOnly ? 'type ' : ''}${i.spec}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('src/shared imports only itself and, type-only, the pipelines’ results', () => {
  const bad: string[] = [];
  for (const f of sources(join(ROOT, 'src', 'shared'))) {
    for (const i of imports(f)) if (!i.spec.startsWith('./') && !(i.typeOnly && i.spec.startsWith('../pipelines/'))) bad.push(`${rel(f)}: ${i.spec}`);
  }
  assert.deepEqual(bad, []);
});
