/**
 * The chat-template highlighter's tokens: hand-written expectations for tags, expressions,
 * comments, whitespace control, strings holding delimiters, unterminated constructs and
 * lone braces; the tokens always join back to the template; a large crafted template is linear.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jinjaTokens, type JinjaToken } from '../../src/shared/protocol';

const k = (kind: JinjaToken['kind'], text: string): JinjaToken => ({ kind, text });

test('tags, expressions and comments split into their parts', () => {
  assert.deepEqual(jinjaTokens("a{# c #}{%- if x == 'y' -%}<b>{{ m.content | trim }}{% endif %}"), [
    k('text', 'a'),
    k('comment', '{# c #}'),
    k('tag', '{%-'),
    k('space', ' '),
    k('keyword', 'if'),
    k('space', ' '),
    k('name', 'x'),
    k('space', ' '),
    k('op', '=='),
    k('space', ' '),
    k('string', "'y'"),
    k('space', ' '),
    k('tag', '-%}'),
    k('text', '<b>'),
    k('expr', '{{'),
    k('space', ' '),
    k('name', 'm'),
    k('op', '.'),
    k('name', 'content'),
    k('space', ' '),
    k('op', '|'),
    k('space', ' '),
    k('name', 'trim'),
    k('space', ' '),
    k('expr', '}}'),
    k('tag', '{%'),
    k('space', ' '),
    k('keyword', 'endif'),
    k('space', ' '),
    k('tag', '%}'),
  ]);
});

test('a delimiter inside a string does not close the tag; numbers and lone braces', () => {
  assert.deepEqual(jinjaTokens("{{ '}}' + 12.5 }}{x}"), [
    k('expr', '{{'),
    k('space', ' '),
    k('string', "'}}'"),
    k('space', ' '),
    k('op', '+'),
    k('space', ' '),
    k('number', '12.5'),
    k('space', ' '),
    k('expr', '}}'),
    k('text', '{x}'),
  ]);
});

test('an unterminated tag, string or comment runs to the end', () => {
  assert.deepEqual(jinjaTokens('x{% for'), [k('text', 'x'), k('tag', '{%'), k('space', ' '), k('keyword', 'for')]);
  assert.deepEqual(jinjaTokens('{# open'), [k('comment', '{# open')]);
  assert.deepEqual(jinjaTokens("{{ 'abc }}"), [k('expr', '{{'), k('space', ' '), k('string', "'abc }}")]);
});

test('the tokens join back to the template, for any input', () => {
  const alphabet = ['{', '}', '%', '#', '-', '+', "'", '"', '\\', ' ', '\n', 'a', 'if', '1', '.', '|', '<', '>'];
  let s = 7;
  for (let n = 0; n < 2000; n++) {
    let text = '';
    const len = n % 40;
    for (let i = 0; i < len; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      text += alphabet[s % alphabet.length];
    }
    assert.equal(jinjaTokens(text).map((t) => t.text).join(''), text, JSON.stringify(text));
  }
});

test('a 1 MB template of open delimiters and quotes is tokenized in linear time', () => {
  const text = "{{ '".repeat(1 << 18);
  const t0 = performance.now();
  const tokens = jinjaTokens(text);
  const ms = performance.now() - t0;
  assert.equal(tokens.map((t) => t.text).join(''), text);
  // Quadratic rescanning of 1 MB would take minutes; linear is milliseconds.
  assert.ok(ms < 2000, `${ms.toFixed(0)} ms`);
});
