import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatMetric } from '../../webview/quantReport/format';
import { webviewCsp, webviewHtml } from '../../src/vscode/webviewHtml';
import { fromWire, isToHostMessage, toWire } from '../../src/shared/protocol';
import { sampleReport } from './quantReportFixture';

test('numbers: sizes in binary units, metrics with fixed digits, tiny ones in exponent form, ∞ and absent spelled out', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(3 * 2 ** 20), '3.0 MiB');
  assert.equal(formatBytes(5 * 2 ** 30), '5.00 GiB');
  assert.equal(formatMetric(41.27, 1), '41.3');
  assert.equal(formatMetric(0.999961, 6), '0.999961');
  assert.equal(formatMetric(0.0000123, 6), '1.23e-5');
  assert.equal(formatMetric(0, 6), '0.000000');
  assert.equal(formatMetric(Infinity, 1), '∞');
  assert.equal(formatMetric(-Infinity, 1), '−∞');
  assert.equal(formatMetric(undefined, 1), '–');
  assert.equal(formatMetric(NaN, 1), '–');
});

test('the page shell: strict CSP, its bundle and stylesheet by nonce, no chart styles, the title escaped', () => {
  const csp = webviewCsp('https://webview.example', 'N0nce');
  assert.match(csp, /^default-src 'none'; script-src 'nonce-N0nce'; style-src https:\/\/webview.example 'nonce-N0nce'/);
  const html = webviewHtml({ scriptUri: 'https://webview.example/quantReport.js', styleUri: 'https://webview.example/quantReport.css', cspSource: 'https://webview.example', nonce: 'N0nce', title: '<script>alert(1)</script>' });
  assert.equal(html.match(/<script\b/g)?.length, 1, 'one script: the bundle');
  assert.ok(html.includes('<script nonce="N0nce" src="https://webview.example/quantReport.js"></script>'));
  assert.ok(html.includes('<link rel="stylesheet" href="https://webview.example/quantReport.css" nonce="N0nce">'));
  assert.ok(!html.includes('<style'), 'no chart style elements on a page without charts');
  assert.ok(!html.includes('alert(1)</script>'));
});

test('the report crosses JSON intact: ±∞ and NaN survive, strings that look like numbers stay strings', () => {
  const r = sampleReport({ tensors: [{ name: 'Infinity', dtype: 'BF16', shape: [64, 128], action: 'quantized', scheme: 'q8_0', bytesBefore: 1, bytesAfter: 1, snrDb: Infinity, rmse: NaN, cosine: -Infinity }] });
  const back = fromWire(JSON.parse(JSON.stringify(toWire(r))) as typeof r);
  assert.deepEqual(back, r);
  assert.equal(back.tensors[0]!.snrDb, Infinity);
  assert.equal(back.tensors[0]!.name, 'Infinity');
  const plain = sampleReport();
  assert.equal(toWire(plain), plain, 'a report with finite numbers only is passed as it is, not copied');
});

test('the host accepts only protocol envelopes from the page', () => {
  assert.ok(isToHostMessage({ type: 'request', id: 1, body: { type: 'openMarkdown' } }));
  assert.ok(isToHostMessage({ type: 'ready' }));
  for (const m of [null, undefined, 'openMarkdown', {}, { type: 'openMarkdown' }, { type: 'request', id: '1', body: { type: 'report' } }, { type: 'request', id: 1, body: null }]) assert.ok(!isToHostMessage(m));
});
