/**
 * Extension-host cases for Convert to GGUF… (test/vscode/suite.ts spreads them into its
 * table). The driver (test/e2e/e2e-hostsuite.test.ts) puts a generated BF16 Llama folder
 * (`hf-llama`, with a SentencePiece tokenizer) and one of an architecture llama.cpp's
 * converter does not take (`hf-unknown`) into the workspace, and afterwards compares the
 * file written here with the CLI's, byte for byte.
 */
import * as vscode from 'vscode';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ToGgufResult } from '../../src/pipelines/toGguf';
import { CONVERTED_NAME } from '../e2e/ggufFolders';

type Case = [name: string, fn: () => Promise<void>];


// 30 s: the viewer tab opens after the job, on a busy 2-core machine.
const TAB_TIMEOUT_MS = 30_000;

async function modelFolder(name: string): Promise<vscode.Uri> {
  const configs = await vscode.workspace.findFiles(`**/${name}/config.json`);
  assert.equal(configs.length, 1, `the workspace has no ${name} folder`);
  return vscode.Uri.joinPath(configs[0], '..');
}

function outputDir(): string {
  const result = process.env.TW_VSCODE_SUITE_RESULT;
  assert.ok(result, 'TW_VSCODE_SUITE_RESULT is not set');
  return dirname(result);
}

export const ggufVscodeCases: Case[] = [
  [
    'Convert to GGUF… with Q4_K_M writes llama-quantize\u2019s per-tensor types and opens the output in the viewer',
    async () => {
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
      const folder = await modelFolder('hf-llama');
      const output = join(outputDir(), CONVERTED_NAME);
      rmSync(output, { force: true });
      const r = await vscode.commands.executeCommand<ToGgufResult | undefined>('tensorWorkbench.convertToGguf', folder, { ftype: 'Q4_K_M', output });
      assert.ok(r, 'the command returned no result (its error is in the log)');
      assert.equal(r.file, output);
      assert.ok(existsSync(output));
      const types = new Map(r.tensors.map((t) => [t.name, t.type]));
      // A mix, not one type: Q4_K for most matrices, Q6_K for some attn_v/ffn_down and the output, F32 norms.
      // The driver checks every type and byte against the CLI's file.
      assert.equal(types.get('output.weight'), 'Q6_K');
      assert.equal(types.get('blk.0.attn_q.weight'), 'Q4_K');
      assert.equal(types.get('blk.0.attn_norm.weight'), 'F32');
      assert.ok([...types.values()].includes('Q6_K') && [...types.values()].includes('Q4_K'));
      const end = Date.now() + TAB_TIMEOUT_MS;
      const open = () => vscode.window.tabGroups.all.flatMap((g) => g.tabs).some((t) => t.input instanceof vscode.TabInputCustom && t.input.uri.fsPath === output);
      while (!open()) {
        if (Date.now() > end) throw new Error(`${output} did not open in the viewer`);
        await new Promise((res) => setTimeout(res, 100));
      }
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    },
  ],
  [
    'Convert to GGUF… on a folder of an unknown architecture writes nothing',
    async () => {
      const folder = await modelFolder('hf-unknown');
      const output = join(outputDir(), 'vscode-convert-unknown.gguf');
      rmSync(output, { force: true });
      const r = await vscode.commands.executeCommand('tensorWorkbench.convertToGguf', folder, { ftype: 'Q4_K_M', output });
      assert.equal(r, undefined);
      assert.equal(existsSync(output), false);
    },
  ],
];
