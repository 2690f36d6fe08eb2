// `npm run test:electron`: the extension-host suite (test/vscode/suite.ts → dist/vscode-suite.js)
// under @vscode/test-electron, i.e. in desktop VS Code (Electron). It downloads VS Code into
// .cache/vscode-test/ on first use, so it needs access to update.code.visualstudio.com; where that
// is blocked, the same suite runs in code-server instead (test/e2e/e2e-hostsuite.test.ts).
//   VSCODE_VERSION=stable|insiders|1.90.0   which VS Code to test against (default: stable)
// On Linux without a display, run it under xvfb-run.
import { runTests } from '@vscode/test-electron';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('.', import.meta.url).pathname, '..');
const work = join(ROOT, '.cache', 'electron');
const workspace = join(work, 'workspace');
const result = join(work, 'vscode-suite-result.json');

rmSync(workspace, { recursive: true, force: true });
mkdirSync(workspace, { recursive: true });
rmSync(result, { force: true });
const gen = spawnSync(process.execPath, [join(ROOT, 'dist', 'sample.js'), workspace], { stdio: 'inherit' });
if (gen.status !== 0) process.exit(gen.status ?? 1);

try {
  await runTests({
    version: process.env.VSCODE_VERSION ?? 'stable',
    cachePath: join(ROOT, '.cache', 'vscode-test'),
    extensionDevelopmentPath: ROOT,
    extensionTestsPath: join(ROOT, 'dist', 'vscode-suite.js'),
    extensionTestsEnv: { TW_VSCODE_SUITE_RESULT: result },
    // Only this extension, a throwaway profile, and no trust prompt in front of the editor.
    launchArgs: [workspace, '--disable-extensions', '--disable-workspace-trust', '--skip-welcome', '--skip-release-notes', `--user-data-dir=${join(work, 'profile')}`],
  });
} catch (e) {
  console.error(`extension-host suite failed: ${e instanceof Error ? e.message : e}`);
  try {
    const report = JSON.parse(readFileSync(result, 'utf8'));
    for (const r of report.results) if (!r.ok) console.error(`not ok - ${r.name}\n${r.error}`);
  } catch {
    // No result file: VS Code did not start or the suite never ran; the error above says why.
  }
  process.exit(1);
}
