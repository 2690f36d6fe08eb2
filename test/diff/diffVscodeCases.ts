/**
 * Extension-host cases for the compare commands, for the suite that runs inside a
 * real VS Code (test/vscode/suite.ts spreads them into its table). They use the
 * sample workspace: a base checkpoint and its fine-tuned copy, sharded alike.
 */
import * as vscode from 'vscode';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

type Case = [name: string, fn: () => Promise<void>];

// 60 s: the command diffs, then estimates rank energy, on a busy 2-core machine.
const TIMEOUT_MS = 60_000;

function diffTabs(): vscode.Tab[] {
  return vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('tensorWorkbench.diff'));
}

async function samplePair(): Promise<[vscode.Uri, vscode.Uri]> {
  const files = await vscode.workspace.findFiles('**/*.safetensors');
  const base = files.filter((u) => u.path.includes('/base/')).sort((x, y) => x.path.localeCompare(y.path))[0];
  assert.ok(base, 'the sample workspace has no base checkpoint');
  const tuned = files.find((u) => u.path.includes('/finetuned/') && basename(u.path) === basename(base.path));
  assert.ok(tuned, `no fine-tuned counterpart of ${base.path}`);
  return [base, tuned];
}

export const diffVscodeCases: Case[] = [
  [
    'Compare Selected Checkpoints opens a diff report for two selected files',
    async () => {
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
      const [a, b] = await samplePair();
      const done = vscode.commands.executeCommand('tensorWorkbench.compareSelected', a, [a, b]);
      const end = Date.now() + TIMEOUT_MS;
      while (diffTabs().length === 0) {
        if (Date.now() > end) throw new Error('no diff report opened');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(diffTabs()[0].label, new RegExp(`${basename(a.path).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      await done;
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    },
  ],
  [
    'Compare Selected Checkpoints with one file selected says so and opens nothing',
    async () => {
      const [a] = await samplePair();
      await vscode.commands.executeCommand('tensorWorkbench.compareSelected', a, [a]);
      assert.equal(diffTabs().length, 0);
    },
  ],
  [
    'Compare with Git HEAD compares a modified tracked checkpoint with its committed version',
    async () => {
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
      const [a, b] = await samplePair();
      const repo = mkdtempSync(join(tmpdir(), 'tw-git-'));
      try {
        const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { cwd: repo, stdio: 'pipe' });
        const file = join(repo, basename(a.path));
        git('init', '-q');
        copyFileSync(a.fsPath, file);
        git('add', basename(file));
        git('commit', '-q', '-m', 'base');
        // The working copy becomes the fine-tuned shard: HEAD holds the base.
        copyFileSync(b.fsPath, file);
        const done = vscode.commands.executeCommand('tensorWorkbench.compareWithHead', vscode.Uri.file(file));
        const end = Date.now() + TIMEOUT_MS;
        while (diffTabs().length === 0) {
          if (Date.now() > end) throw new Error('no diff report opened');
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(diffTabs()[0].label, /HEAD/);
        await done;
      } finally {
        await vscode.commands.executeCommand('workbench.action.closeAllEditors');
        rmSync(repo, { recursive: true, force: true });
      }
    },
  ],
];
