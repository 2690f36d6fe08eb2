// The layers, as the import statements of src/ and webview/ state them. A new import
// that reaches upward (compute → pipelines, a front end → compute internals, the
// webview → anything but the protocol) fails here before review has to find it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = resolve(__dirname, '..');

/** Which top-level folders each layer may import from (its own always included). */
const ALLOWED: Record<string, readonly string[]> = {
  'src/core': [],
  'src/format': ['src/core'],
  'src/compute': ['src/core', 'src/format'],
  // The viewer's pipelines answer the protocol's requests with its message types.
  'src/pipelines': ['src/core', 'src/format', 'src/compute', 'src/shared'],
  'src/cli': ['src/core', 'src/format', 'src/pipelines'],
  'src/vscode': ['src/core', 'src/format', 'src/pipelines', 'src/shared'],
  'src/shared': ['src/core'],
  'src/types': [],
  webview: ['src/shared'],
};

/** Imports allowed as types only (erased from the bundle): the protocol names the reports' types. */
const TYPE_ONLY: Record<string, readonly string[]> = {
  'src/shared': ['src/pipelines'],
  webview: ['src/pipelines'],
};

/** The layer a file belongs to: the longest folder of ALLOWED that holds it. */
const LAYER_OF = (file: string): string | undefined => {
  const rel = relative(ROOT, file).split(sep).join('/');
  return Object.keys(ALLOWED)
    .filter((l) => rel === l || rel.startsWith(l + '/'))
    .sort((a, b) => b.length - a.length)[0];
};

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.tsx?$/.test(name)) out.push(p);
  }
  return out;
}

/** Every module specifier of a file: static imports and re-exports, `import()` and `require()`. */
export function specifiers(text: string): { spec: string; typeOnly: boolean }[] {
  const out: { spec: string; typeOnly: boolean }[] = [];
  const stripped = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const patterns = [/^\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gms, /^\s*import\s*['"]([^'"]+)['"]/gm, /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g, /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const re of patterns) for (const m of stripped.matchAll(re)) out.push({ spec: m[1], typeOnly: /^\s*(?:import|export)\s+type\b/.test(m[0]) });
  return out;
}

interface Violation {
  readonly file: string;
  readonly spec: string;
  readonly why: string;
}

export function violations(files: readonly string[], read: (f: string) => string = (f) => readFileSync(f, 'utf8')): Violation[] {
  const out: Violation[] = [];
  for (const file of files) {
    const layer = LAYER_OF(file);
    if (!layer) continue;
    const rel = relative(ROOT, file).split(sep).join('/');
    for (const { spec, typeOnly } of specifiers(read(file))) {
      if (spec === 'vscode') {
        if (layer !== 'src/vscode') out.push({ file: rel, spec, why: `only src/vscode imports 'vscode'` });
        continue;
      }
      if (!spec.startsWith('.')) {
        if (layer === 'webview' && spec.startsWith('node:')) out.push({ file: rel, spec, why: 'the webview runs in a browser' });
        continue;
      }
      const target = LAYER_OF(resolve(dirname(file), spec));
      if (!target) {
        out.push({ file: rel, spec, why: 'imports from outside src/ and webview/' });
        continue;
      }
      if (target !== layer && !ALLOWED[layer].includes(target) && !(typeOnly && TYPE_ONLY[layer]?.includes(target))) out.push({ file: rel, spec, why: `${layer} may not import ${target}` });
    }
  }
  return out;
}

describe('import rules', () => {
  const files = [...walk(join(ROOT, 'src')), ...walk(join(ROOT, 'webview'))];

  it('every file of src/ and webview/ imports only the layers below it', () => {
    assert.ok(files.length > 50, `found only ${files.length} source files under ${ROOT}`);
    const bad = violations(files);
    assert.deepEqual(bad, [], bad.map((v) => `${v.file}: '${v.spec}': ${v.why}`).join('\n'));
  });

  it('fails on an upward import (compute → pipelines, a front end → compute, vscode elsewhere)', () => {
    const fake: Record<string, string> = {
      [join(ROOT, 'src/compute/x/k.ts')]: "import { stats } from '../../pipelines/stats';",
      [join(ROOT, 'src/cli/y.ts')]: "import type { Backend } from '../compute/kernel';",
      [join(ROOT, 'src/pipelines/z.ts')]: "const v = require('vscode');",
      [join(ROOT, 'src/format/w.ts')]: "export { x } from '../compute/kernels';",
      [join(ROOT, 'webview/viewer/v.ts')]: "import { openModel } from '../../src/format/openModel';",
      [join(ROOT, 'src/shared/t.ts')]: "import { diff } from '../pipelines/diff';\nimport type { DiffReport } from '../pipelines/diff';",
      [join(ROOT, 'src/core/ok.ts')]: "// import { x } from '../pipelines/stats';\nimport { y } from './units';",
    };
    const bad = violations(Object.keys(fake), (f) => fake[f]);
    assert.deepEqual(
      bad.map((v) => v.file),
      ['src/compute/x/k.ts', 'src/cli/y.ts', 'src/pipelines/z.ts', 'src/format/w.ts', 'webview/viewer/v.ts', 'src/shared/t.ts'],
    );
  });
});
