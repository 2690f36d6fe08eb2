/**
 * Splits a Jinja template (a GGUF's chat template) into tokens for highlighting: literal text,
 * `{% tags %}`, `{{ expressions }}` and `{# comments #}`, and inside tags and expressions the
 * keywords, strings, numbers, names and operators. One linear pass, no regular expression
 * that can backtrack, so a crafted template costs its length. The page turns each token into
 * a text node in a span: nothing in the template is ever parsed as markup.
 *
 * This module must stay free of Node, DOM and `vscode` imports: it is compiled for both.
 */

export type JinjaTokenKind = 'text' | 'tag' | 'expr' | 'comment' | 'keyword' | 'string' | 'number' | 'name' | 'op' | 'space';

export interface JinjaToken {
  readonly kind: JinjaTokenKind;
  readonly text: string;
}

// Jinja's statements, tests and operators spelled as words, and its constants.
const KEYWORDS = new Set([
  'if', 'elif', 'else', 'endif', 'for', 'endfor', 'in', 'not', 'and', 'or', 'is', 'set', 'endset', 'macro', 'endmacro',
  'call', 'endcall', 'filter', 'endfilter', 'block', 'endblock', 'extends', 'include', 'import', 'from', 'as', 'with',
  'endwith', 'raw', 'endraw', 'break', 'continue', 'recursive', 'true', 'false', 'none', 'True', 'False', 'None',
  'defined', 'generation', 'endgeneration',
]);

const isDigit = (c: string) => c >= '0' && c <= '9';
const isNameStart = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
const isName = (c: string) => isNameStart(c) || isDigit(c);
const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

/** Where the construct opened at `from` (`{%`, `{{`, `{#`) ends: just past its closing delimiter, or the end of the text. */
function closeOf(src: string, from: number, close: string, quotes: boolean): number {
  let i = from + 2;
  while (i < src.length) {
    const c = src[i]!;
    if (quotes && (c === '"' || c === "'")) {
      const end = src.indexOf(c, i + 1);
      // An unterminated string runs to the end, as Jinja reads it.
      if (end < 0) return src.length;
      i = end + 1;
      continue;
    }
    if (c === close[0] && src[i + 1] === close[1]) return i + 2;
    i++;
  }
  return src.length;
}

/** The inside of a tag or expression, without its delimiters, as keyword/string/number/name/op/space tokens. */
function inner(body: string, out: JinjaToken[]): void {
  let i = 0;
  while (i < body.length) {
    const c = body[i]!;
    let j = i + 1;
    let kind: JinjaTokenKind;
    if (isSpace(c)) {
      while (j < body.length && isSpace(body[j]!)) j++;
      kind = 'space';
    } else if (c === '"' || c === "'") {
      while (j < body.length && body[j] !== c) j += body[j] === '\\' ? 2 : 1;
      j = Math.min(body.length, j + 1);
      kind = 'string';
    } else if (isDigit(c)) {
      while (j < body.length && (isDigit(body[j]!) || body[j] === '.' || body[j] === '_')) j++;
      kind = 'number';
    } else if (isNameStart(c)) {
      while (j < body.length && isName(body[j]!)) j++;
      kind = KEYWORDS.has(body.slice(i, j)) ? 'keyword' : 'name';
    } else {
      kind = 'op';
    }
    const text = body.slice(i, j);
    const last = out[out.length - 1];
    // Runs of operator characters ("}}-", "==", "|") join one token: fewer spans.
    if (kind === 'op' && last?.kind === 'op') out[out.length - 1] = { kind, text: last.text + text };
    else out.push({ kind, text });
    i = j;
  }
}

/** Delimiter length with Jinja's whitespace control (`{%-`, `-%}`, `{%+`). */
function openLength(src: string, at: number): number {
  const c = src[at + 2];
  return c === '-' || c === '+' ? 3 : 2;
}

function closeLength(src: string, end: number, closedAt: number): number {
  if (end !== closedAt) return 0;
  const c = src[end - 3];
  return c === '-' || c === '+' ? 3 : 2;
}

export function jinjaTokens(src: string): JinjaToken[] {
  const out: JinjaToken[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{', i);
    const next = open < 0 ? -1 : src[open + 1];
    if (open < 0) {
      out.push({ kind: 'text', text: src.slice(i) });
      break;
    }
    if (next !== '%' && next !== '{' && next !== '#') {
      // A lone brace is text; keep scanning from past it.
      const last = out[out.length - 1];
      const text = src.slice(i, open + 1);
      if (last?.kind === 'text') out[out.length - 1] = { kind: 'text', text: last.text + text };
      else out.push({ kind: 'text', text });
      i = open + 1;
      continue;
    }
    if (open > i) {
      const last = out[out.length - 1];
      const text = src.slice(i, open);
      if (last?.kind === 'text') out[out.length - 1] = { kind: 'text', text: last.text + text };
      else out.push({ kind: 'text', text });
    }
    if (next === '#') {
      const end = closeOf(src, open, '#}', false);
      out.push({ kind: 'comment', text: src.slice(open, end) });
      i = end;
      continue;
    }
    const kind: JinjaTokenKind = next === '%' ? 'tag' : 'expr';
    const close = next === '%' ? '%}' : '}}';
    const end = closeOf(src, open, close, true);
    const closed = src.slice(end - 2, end) === close && end - open >= 4;
    const ol = openLength(src, open);
    const cl = closed ? closeLength(src, end, end) : 0;
    out.push({ kind, text: src.slice(open, open + ol) });
    inner(src.slice(open + ol, Math.max(open + ol, end - cl)), out);
    if (cl) out.push({ kind, text: src.slice(end - cl, end) });
    i = end;
  }
  return out;
}
