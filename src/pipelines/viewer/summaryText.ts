/**
 * The header summary as plain text, for "Show as Text": a read-only document in
 * the `safetensors-summary` language (syntaxes/safetensors-summary.tmLanguage.json
 * colours its names, dtypes, shapes and numbers). Pure, so it is tested without VS Code.
 */
import { tensorEntries, type GgufSummary, type SummaryReplyMessage } from '../../shared/protocol';

const n = (x: number) => x.toLocaleString('en-US');

/** A GGUF's own summary: bits per weight and type mix, hyperparameters, tokenizer (the template's length, not its text). */
function ggufLines(g: GgufSummary): string[] {
  const out = ['', `gguf v${g.version}  bits/weight ${g.bitsPerWeight.toFixed(2)}  ${g.typeMix.map((m) => `${m.type} ${(m.share * 100).toFixed(1)}%`).join(', ')}`];
  if (g.architecture) out.push(`architecture ${g.architecture}`);
  for (const h of g.hparams) out.push(`  ${h.label}  ${JSON.stringify(h.text)}  (${h.key})`);
  const t = g.tokenizer;
  if (t) {
    out.push(`tokenizer ${t.model ?? '(no model)'}  pre ${t.pre ?? '-'}  tokens ${t.vocabSize !== undefined ? n(t.vocabSize) : '-'}  merges ${t.merges !== undefined ? n(t.merges) : 'absent'}`);
    for (const sp of t.special) out.push(`  ${sp.label} ${sp.id}${sp.text !== undefined ? ` ${JSON.stringify(sp.text)}` : ''}`);
    if (t.chatTemplate !== undefined) out.push(`  chat template ${n(t.templateChars ?? t.chatTemplate.length)} chars`);
  }
  return out;
}

export function summaryText(s: SummaryReplyMessage): string {
  const out: string[] = [];
  out.push(`# ${s.path}`);
  out.push(`files ${n(s.files.length)}  tensors ${n(s.totals.tensors)}  params ${n(s.totals.params)}  bytes ${n(s.totals.bytes)}`);
  out.push('');
  out.push('dtypes');
  for (const d of s.totals.byDtype) out.push(`  ${d.dtype}  tensors ${n(d.tensors)}  params ${n(d.params)}  bytes ${n(d.bytes)}`);
  if (s.gguf) out.push(...ggufLines(s.gguf));
  out.push('');
  out.push('memory');
  for (const m of s.memory) out.push(`  ${m.format}  bytes ${n(m.bytes)}`);
  out.push('');
  out.push(`metadata (${s.metadata.length})`);
  // JSON-quoted, so a value with newlines stays on one line and cannot fake a section.
  for (const [k, v] of s.metadata) out.push(`  ${JSON.stringify(k)} = ${JSON.stringify(v)}`);
  out.push('');
  for (const [i, f] of s.files.entries()) {
    out.push(`file ${i} ${f.path}  bytes ${n(f.bytes)}  header ${n(f.headerBytes)}`);
  }
  out.push('');
  out.push('tensors');
  for (const t of tensorEntries(s.tensors)) {
    const file = s.files[t.file]!;
    // A GGUF's offsets count from its data section, which starts at `headerBytes`; safetensors' after the 8-byte length and the header.
    const begin = s.gguf ? t.byteOffset - file.headerBytes : t.byteOffset - 8 - file.headerBytes;
    out.push(`  ${t.name}  ${t.dtype}  [${t.shape.join(', ')}]  offsets [${begin}, ${begin + t.byteLength}]${s.files.length > 1 ? `  file ${t.file}` : ''}`);
  }
  out.push('');
  return out.join('\n');
}
