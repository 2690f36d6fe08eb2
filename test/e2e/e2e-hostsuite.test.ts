/**
 * Runs test/vscode/suite.ts inside code-server's real extension host (Node 24),
 * the way @vscode/test-electron would: the smoke-test driver loads the unpacked
 * linux-x64 package as `extensionDevelopmentPath` and the suite as
 * `extensionTestsPath`. The suite writes its results to a file; each becomes a subtest here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CONVERTED_NAME, writeModelFolders } from './ggufFolders';
import type { Browser } from 'playwright-core';
import type { SuiteReport } from '../vscode/suite';
import { ARTIFACTS, CodeServer, INSTALL_TIMEOUT_MS, ROOT, Shots, UI_TIMEOUT_MS, buildVsix, cleanScratch, launchBrowser, makeWorkspace, prerequisites, scratch, type Workspace } from './harness';

// The suite opens editors and runs jobs; 3 min covers a cold extension host on a busy machine.
const SUITE_TIMEOUT_MS = 3 * 60_000;

describe('extension-host suite in code-server', () => {
  let skip: string | undefined;
  let server: CodeServer | undefined;
  let browser: Browser | undefined;
  let ws: Workspace;
  let stage: string;
  const resultFile = join(scratch('hostsuite'), 'vscode-suite-result.json');

  before(
    async () => {
      skip = prerequisites();
      if (skip) return;
      ({ stage } = buildVsix('hostsuite'));
      ws = await makeWorkspace('hostsuite');
      await writeModelFolders(ws.dir, scratch('hostsuite'));
      rmSync(resultFile, { force: true });
      // No VSIX: the payload's extensionDevelopmentPath provides the extension, as in test-electron.
      server = CodeServer.start('hostsuite', { smoke: true, env: { TW_VSCODE_SUITE_RESULT: resultFile } });
      browser = await launchBrowser();
    },
    { timeout: INSTALL_TIMEOUT_MS },
  );

  after(async () => {
    await browser?.close();
    server?.stop();
    cleanScratch('hostsuite');
  });

  test('suite.ts passes in the real extension host', { timeout: SUITE_TIMEOUT_MS + UI_TIMEOUT_MS }, async (t) => {
    if (skip) return t.skip(skip);
    const page = await browser!.newPage({ viewport: { width: 1400, height: 900 } });
    try {
      await page.goto(
        server!.folderUrl(ws.dir, [
          ['extensionDevelopmentPath', server!.remoteUri(stage)],
          ['extensionTestsPath', server!.remoteUri(join(ROOT, 'dist', 'vscode-suite.js'))],
        ]),
      );
      const end = Date.now() + SUITE_TIMEOUT_MS;
      while (!existsSync(resultFile) && Date.now() < end) await page.waitForTimeout(500);
      await new Shots('hostsuite').take(page, 'after-suite');
      assert.ok(existsSync(resultFile), `the suite wrote no result file within ${SUITE_TIMEOUT_MS} ms\n${server!.log().slice(-3000)}`);
    } finally {
      await page.close();
    }
    copyFileSync(resultFile, join(ARTIFACTS, 'vscode-suite-result.json'));
    const report = JSON.parse(readFileSync(resultFile, 'utf8')) as SuiteReport;
    assert.ok(report.results.length > 0, 'the suite ran no tests');
    t.diagnostic(`VS Code ${report.vscode}, extension host Node ${report.node}`);
    for (const r of report.results) {
      await t.test(r.name, () => {
        if (!r.ok) assert.fail(r.error);
      });
    }
  });

  test('the GGUF Convert to GGUF… wrote in the extension host is the CLI\u2019s, byte for byte', (t) => {
    if (skip) return t.skip(skip);
    const fromVscode = join(dirname(resultFile), CONVERTED_NAME);
    assert.ok(existsSync(fromVscode), `${fromVscode} was not written (see the suite's results)`);
    const fromCli = join(dirname(resultFile), 'cli-Q4_K_M.gguf');
    execFileSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'convert', join(ws.dir, 'hf-llama'), fromCli, '--ftype', 'Q4_K_M'], { stdio: 'pipe' });
    const [a, b] = [readFileSync(fromVscode), readFileSync(fromCli)];
    assert.equal(a.length, b.length);
    assert.ok(a.equals(b), 'the two files differ');
  });
});
