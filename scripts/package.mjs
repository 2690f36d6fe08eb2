// Builds the VSIX files (`npm run package`):
//   node scripts/package.mjs                      every platform target plus the universal package
//   node scripts/package.mjs --target linux-x64   one target (the e2e suite packs only its own)
//   --work DIR   stage and write the VSIX under DIR instead (suites that run in parallel each use their own)
// Each target is staged apart under .cache/package/<target>/ with a production build and
// only its own Dawn binary, so that packaging never disturbs dist/ (which tests use).
// Output: .artifacts/vsix/tensor-workbench-<target>-<version>.vsix, paths printed one per line.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
// The Marketplace accepts far larger files; 15 MB keeps installs quick and is what we promise.
const MAX_VSIX_BYTES = 15 * 1024 * 1024;

/**
 * Which files of the `webgpu` package each target carries, as [source under
 * node_modules/webgpu/dist, name under dist/dawn/<target>/]. macOS ships one universal
 * binary. On Windows, Dawn compiles shaders with d3dcompiler_47.dll (FXC); the DXC
 * compiler (dxcompiler.dll, 17 MB) is optional for Dawn and would break the size limit.
 */
const TARGETS = {
  'linux-x64': [['linux-x64/dawn.node', 'dawn.node']],
  'linux-arm64': [['linux-arm64/dawn.node', 'dawn.node']],
  'darwin-arm64': [['darwin-universal/dawn.node', 'dawn.node']],
  'darwin-x64': [['darwin-universal/dawn.node', 'dawn.node']],
  'win32-x64': [
    ['win32-x64/dawn.node', 'dawn.node'],
    ['win32-x64/d3dcompiler_47.dll', 'd3dcompiler_47.dll'],
  ],
  // No native code at all: every kernel runs on the CPU twins in worker threads.
  universal: [],
};

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
  }
  return r.stdout;
}

function main() {
  const argv = process.argv.slice(2);
  const ti = argv.indexOf('--target');
  const wanted = ti >= 0 ? [argv[ti + 1]] : Object.keys(TARGETS);
  for (const t of wanted) if (!(t in TARGETS)) throw new Error(`unknown target ${t}; one of ${Object.keys(TARGETS).join(', ')}`);

  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const wi = argv.indexOf('--work');
  const work = wi >= 0 ? resolve(argv[wi + 1]) : undefined;
  const outDir = work ?? join(ROOT, '.artifacts', 'vsix');
  mkdirSync(outDir, { recursive: true });
  const stageRoot = work ?? join(ROOT, '.cache', 'package');
  const build = join(stageRoot, 'build');
  rmSync(build, { recursive: true, force: true });
  // One production build, shared by every target; only dist/dawn differs between them.
  run(process.execPath, ['esbuild.mjs', '--production', `--outdir=${build}`], ROOT);
  rmSync(join(build, 'dawn'), { recursive: true, force: true });
  for (const f of readdirSync(build)) {
    // Test, benchmark and sample-generator bundles are development tools and never ship.
    if (['vscode-suite.js', 'bench.js', 'sample.js'].includes(f) || f.endsWith('.test.js') || f.endsWith('.map')) rmSync(join(build, f), { force: true });
  }

  const vsce = join(ROOT, 'node_modules', '@vscode', 'vsce', 'vsce');
  const made = [];
  for (const target of wanted) {
    const stage = join(stageRoot, target);
    rmSync(stage, { recursive: true, force: true });
    mkdirSync(stage, { recursive: true });
    cpSync(build, join(stage, 'dist'), { recursive: true });
    for (const [src, name] of TARGETS[target]) {
      const from = join(ROOT, 'node_modules', 'webgpu', 'dist', src);
      if (!existsSync(from)) throw new Error(`missing ${from}: run npm ci`);
      const dir = join(stage, 'dist', 'dawn', target === 'universal' ? '' : target);
      mkdirSync(dir, { recursive: true });
      cpSync(from, join(dir, name));
    }
    for (const f of ['README.md', 'CHANGELOG.md', 'LICENSE', '.vscodeignore', 'media', 'syntaxes']) {
      if (existsSync(join(ROOT, f))) cpSync(join(ROOT, f), join(stage, f), { recursive: true });
    }
    const manifest = structuredClone(pkg);
    // The bundle is self-contained: vsce must not look for node_modules or rebuild.
    delete manifest.scripts;
    delete manifest.devDependencies;
    delete manifest.dependencies;
    if (target === 'universal') {
      manifest.description += ' This package has no WebGPU binary: every computation runs on the CPU.';
    }
    writeFileSync(join(stage, 'package.json'), JSON.stringify(manifest, null, 2));
    const file = join(outDir, `${pkg.name}-${target}-${pkg.version}.vsix`);
    const targetArgs = target === 'universal' ? [] : ['--target', target];
    run(process.execPath, [vsce, 'package', ...targetArgs, '--no-dependencies', '--allow-missing-repository', '--skip-license', '--no-update-package-json', '-o', file], stage);
    const size = statSync(file).size;
    if (size > MAX_VSIX_BYTES) throw new Error(`${file} is ${size} bytes, above the ${MAX_VSIX_BYTES}-byte limit`);
    made.push({ target, file, bytes: size });
  }
  for (const m of made) console.error(`${m.target.padEnd(13)} ${(m.bytes / 1e6).toFixed(2)} MB  ${m.file}`);
  for (const m of made) console.log(m.file);
}

try {
  main();
} catch (e) {
  console.error(`package: ${e.message}`);
  process.exit(1);
}
