// One build script for every entry point: the extension host, the compute worker,
// the CLI, the benchmark, the webviews and (with --tests) the node:test suites.
//   node esbuild.mjs               development build into dist/
//   node esbuild.mjs --production  minified, no sourcemaps
//   node esbuild.mjs --watch       rebuild on change (problem-matcher friendly output)
//   node esbuild.mjs --tests       also bundle test/**/*.test.ts into dist/*.test.js
//   node esbuild.mjs --outdir=DIR  write into DIR instead of dist/ (packaging stages each VSIX apart)
import * as esbuild from 'esbuild';
import { existsSync, readdirSync, statSync, mkdirSync, copyFileSync } from 'node:fs';
import { join, basename, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';

const args = new Set(process.argv.slice(2));
const production = args.has('--production');
const watch = args.has('--watch');
const tests = args.has('--tests');
const typecheck = args.has('--typecheck');
const outdir = process.argv.find((a) => a.startsWith('--outdir='))?.slice('--outdir='.length) || 'dist';

/** Lists files under `dir` (recursively) whose name ends with `suffix`. */
function walk(dir, suffix) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p, suffix));
    else if (name.endsWith(suffix)) out.push(p);
  }
  return out.sort();
}

/** `[watch] build started/finished` lines that VS Code's esbuild problem matcher understands. */
const problemMatcher = {
  name: 'problem-matcher',
  setup(build) {
    build.onStart(() => { if (watch) console.log('[watch] build started'); });
    build.onEnd((result) => {
      for (const { text, location } of result.errors) {
        console.error(`✘ [ERROR] ${text}`);
        if (location) console.error(`    ${location.file}:${location.line}:${location.column}:`);
      }
      if (watch) console.log('[watch] build finished');
    });
  },
};

const common = {
  bundle: true,
  minify: production,
  sourcemap: production ? false : 'linked',
  sourcesContent: false,
  logLevel: 'warning',
  loader: { '.wgsl': 'text' },
  plugins: [problemMatcher],
};

const nodeEntries = [
  ['src/vscode/extension.ts', 'extension'],
  ['src/compute/worker.ts', 'worker'],
  ['src/cli/main.ts', 'cli'],
  ['bench/bench.ts', 'bench'],
  ['test/vscode/suite.ts', 'vscode-suite'],
  ['scripts/sample.ts', 'sample'],
].filter(([src]) => existsSync(src));

const nodeOptions = {
  ...common,
  platform: 'node',
  format: 'cjs',
  target: 'node22',
  outdir,
  // `vscode` is provided by the extension host; dawn.node is a native addon loaded by path at run time;
  // playwright-core (a dev dependency) is loaded from node_modules by the benchmark's VS Code case only;
  // koffi (a dev dependency, native) by the benchmark's llama_model_quantize cases only.
  external: ['vscode', '*.node', 'playwright-core', 'koffi'],
  entryPoints: Object.fromEntries(nodeEntries.map(([src, out]) => [out, src])),
};

// Each webview is webview/<name>/main.ts -> dist/webview/<name>.js (+ .css when it imports CSS).
const webEntries = existsSync('webview')
  ? readdirSync('webview').filter((d) => existsSync(join('webview', d, 'main.ts')))
  : [];
const webOptions = {
  ...common,
  platform: 'browser',
  format: 'iife',
  target: 'es2022',
  outdir: join(outdir, 'webview'),
  entryPoints: Object.fromEntries(webEntries.map((d) => [d, join('webview', d, 'main.ts')])),
  loader: { ...common.loader, '.ttf': 'file', '.woff2': 'file' },
};

const testOptions = {
  ...nodeOptions,
  entryPoints: Object.fromEntries(walk('test', '.test.ts').map((p) => [basename(p, '.ts'), p])),
  external: [...nodeOptions.external, 'safetensors', '@huggingface/gguf', 'fast-check'],
};

/** Copies the native Dawn addon for this platform next to the bundle (packaging copies per target). */
function copyDawn() {
  const plat = `${process.platform}-${process.arch}`;
  const src = join('node_modules', 'webgpu', 'dist', plat, 'dawn.node');
  if (!existsSync(src)) return;
  const dst = join(outdir, 'dawn', plat, 'dawn.node');
  mkdirSync(dirname(dst), { recursive: true });
  if (!existsSync(dst) || statSync(dst).size !== statSync(src).size) copyFileSync(src, dst);
}

/** Plotly ships beside the webview bundles, loaded by the pages when they first draw a chart (webview/shared/plotly.ts). */
function copyPlotly() {
  const src = join('node_modules', 'plotly.js-dist-min', 'plotly.min.js');
  const dst = join(outdir, 'webview', 'plotly.js');
  mkdirSync(dirname(dst), { recursive: true });
  if (!existsSync(dst) || statSync(dst).size !== statSync(src).size) copyFileSync(src, dst);
}

async function main() {
  if (typecheck) {
    for (const p of ['.', 'webview']) {
      const r = spawnSync('npx', ['tsc', '--noEmit', '-p', p], { stdio: 'inherit' });
      if (r.status !== 0) process.exit(r.status ?? 1);
    }
  }
  const configs = [nodeOptions];
  if (webEntries.length) configs.push(webOptions);
  if (tests && Object.keys(testOptions.entryPoints).length) configs.push(testOptions);
  copyDawn();
  if (webEntries.length) copyPlotly();
  if (watch) {
    const ctxs = await Promise.all(configs.map((c) => esbuild.context(c)));
    await Promise.all(ctxs.map((c) => c.watch()));
    return;
  }
  await Promise.all(configs.map((c) => esbuild.build(c)));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
