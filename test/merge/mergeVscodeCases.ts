/**
 * Extension-host cases for Merge Models… (test/vscode/suite.ts spreads them into its
 * table). They use the generated `hf-llama` folder the driver puts into the workspace
 * (see test/gguf/ggufVscodeCases.ts) and write under the suite's result folder.
 */
import * as vscode from 'vscode';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MergeModelsResult } from '../../src/pipelines/mergeModels/mergeModels';

type Case = [name: string, fn: () => Promise<void>];

// 30 s: the viewer tab opens after the job, on a busy 2-core machine.
const TAB_TIMEOUT_MS = 30_000;

export const mergeVscodeCases: Case[] = [
  [
    'Merge Models… is registered and runs a slices config given as arguments, opening the output in the viewer',
    async () => {
      assert.ok((await vscode.commands.getCommands(true)).includes('tensorWorkbench.mergeModels'));
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
      const configs = await vscode.workspace.findFiles('**/hf-llama/config.json');
      assert.equal(configs.length, 1, 'the workspace has no hf-llama folder');
      const model = dirname(configs[0].fsPath);
      const result = process.env.TW_VSCODE_SUITE_RESULT;
      assert.ok(result, 'TW_VSCODE_SUITE_RESULT is not set');
      const config = join(dirname(result), 'frankenmerge.yml');
      const output = join(dirname(result), 'frankenmerge');
      rmSync(output, { recursive: true, force: true });
      // Layer 0 twice: a two-layer output whatever the model's depth.
      writeFileSync(config, `merge_method: passthrough\nslices:\n  - sources:\n      - model: ${JSON.stringify(model)}\n        layer_range: [0, 1]\n  - sources:\n      - model: ${JSON.stringify(model)}\n        layer_range: [0, 1]\n`);
      const r = await vscode.commands.executeCommand<MergeModelsResult | undefined>('tensorWorkbench.mergeModels', { config, output });
      assert.ok(r, 'the command returned no result (its error is in the log)');
      assert.equal(r.method, 'passthrough');
      assert.equal(JSON.parse(readFileSync(join(output, 'config.json'), 'utf8')).num_hidden_layers, 2);
      const shown = r.index ?? r.files.find((f) => f.endsWith('.safetensors'));
      const end = Date.now() + TAB_TIMEOUT_MS;
      const open = () => vscode.window.tabGroups.all.flatMap((g) => g.tabs).some((t) => t.input instanceof vscode.TabInputCustom && t.input.uri.fsPath === shown);
      while (!open()) {
        if (Date.now() > end) throw new Error(`${shown} did not open in the viewer`);
        await new Promise((res) => setTimeout(res, 100));
      }
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    },
  ],
];
