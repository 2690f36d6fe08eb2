import { isFormatError } from '../format/errors';
import { scanCheckpoint, renderScanText, type ScanResult } from '../pipelines/scan';
import { defineCommand, openerFor } from './command';

const USAGE = `usage: tensor-workbench scan PATH... [--json]

Reads PyTorch checkpoints (.pt, .pth, .ckpt, .bin: zip or legacy format) and plain pickles
without executing them, and says whether each one does anything besides rebuilding tensors.
Every global the pickle names that is not a tensor rebuild, a storage, a dtype or a plain
container is listed with its module, name and byte offset. PATH may be an https:// or
hf://OWNER/REPO[@REVISION]/PATH URL: only the pickle and the archive's directory are read.
Exit codes: 0 every file is only tensor data, 3 a file names other functions, 2 a file is unreadable.`;

/** Exit code when a file names functions beyond tensor rebuilds. */
export const EXIT_FINDINGS = 3;

export const scanCommand = defineCommand({
  name: 'scan',
  summary: 'Say whether PyTorch pickles do anything besides rebuilding tensors (nothing is executed)',
  usage: USAGE,
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, usage: 'one or more PATHs' },
  async run({ values, positionals }, io) {
    const results: ScanResult[] = [];
    let unreadable = false;
    for (const path of positionals) {
      try {
        results.push(await scanCheckpoint({ path, opener: openerFor(path, io.signal) }, { signal: io.signal }));
      } catch (e) {
        if (!isFormatError(e) || positionals.length === 1) throw e;
        unreadable = true;
        results.push({ path, error: { code: e.code, message: e.message } });
      }
    }
    io.stdout.write(values.json ? JSON.stringify(results.length === 1 ? results[0] : results) + '\n' : results.map(renderScanText).join(''));
    if (unreadable) return 2;
    return results.some((r) => r.verdict && !r.verdict.clean) ? EXIT_FINDINGS : 0;
  },
});
