/**
 * Names and metadata come from the file: printed raw, a tensor named `\x1b]0;…\x07` retitles the
 * terminal (and `inspect` runs as a git textconv driver, on any file a diff touches), and one
 * named `x\nerror[fake]: …` forges a line of our output. Every human-readable formatter and the
 * error printer pass such text through `escapeText`; JSON output stays exact (JSON.stringify
 * escapes C0 itself, and the other characters are harmless inside a string there).
 */

// C0 controls, DEL, C1 controls, the line and paragraph separators, and the invisible marks
// that reorder text: LRM, RLM, ALM and the bidi embeddings, overrides and isolates.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u001b': '\\e' };

function escapeOne(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `s` with every control, separator and bidi character written as a visible escape (`\n`, `\e`, `\x07`, `\u202e`). */
export function escapeText(s: string): string {
  return s.replace(UNSAFE, escapeOne);
}

/** Text for a Markdown table cell: escaped as above, with `|` and backticks backslash-escaped. */
export function escapeMarkdownCell(s: string): string {
  return escapeText(s).replace(/[|`]/g, (c) => `\\${c}`);
}

/**
 * A Markdown code span (in a table cell unless `inTable` is false): fenced by more backticks than the longest run inside
 * (a backslash does not escape a backtick in a code span), `|` escaped for the table.
 */
export function markdownCode(s: string, inTable = true): string {
  const escaped = escapeText(s);
  const text = inTable ? escaped.replace(/\|/g, '\\|') : escaped;
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = longest > 0 || text.startsWith(' ') || text.endsWith(' ') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}
