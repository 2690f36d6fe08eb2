import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sampleReport } from './quantReportFixture';
import { escapeHtml, formatBytes, formatMetric, isQuantReportToHostMessage, quantReportCsp, quantReportHtml } from '../../src/vscode/quantReportHtml';

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

test('escaping covers markup and both quote kinds', () => {
  assert.equal(escapeHtml(`<img src=x onerror="a('b')">&`), '&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;');
});

test('the page: strict CSP with the nonce on its one style and one script, totals, quantized rows and skipped tensors with reasons', () => {
  const html = quantReportHtml(sampleReport(), { nonce: 'N0nce', title: 'Quantization report: model.safetensors' });
  assert.equal(quantReportCsp('N0nce'), "default-src 'none'; style-src 'nonce-N0nce'; script-src 'nonce-N0nce'");
  assert.ok(html.includes(`content="${escapeHtml(quantReportCsp('N0nce'))}"`));
  assert.equal(html.match(/<style\b/g)?.length, 1);
  assert.equal(html.match(/<script\b/g)?.length, 1);
  assert.ok(html.includes('<style nonce="N0nce">'));
  assert.ok(html.includes('<script nonce="N0nce">'));
  assert.ok(!/ style=|<link|src=/.test(html), 'no inline style attributes and nothing loaded');
  assert.ok(html.includes('<dd>3.0 MiB → 1.6 MiB</dd>'));
  assert.ok(html.includes('<dd>8.53 overall, 8.50 in quantized tensors</dd>'));
  assert.ok(html.includes('RMSE 0.001230 · max |err| 0.007100 · SNR 41.3 dB · cosine 0.999961'));
  const quantized = html.slice(html.indexOf('<table id="quant-tensors">'), html.indexOf('</table>'));
  assert.equal(quantized.match(/<tr>/g)?.length, 2, 'the header and one quantized tensor');
  assert.ok(quantized.includes('<td class="num">0.001200</td><td class="num">0.006900</td><td class="num">41.3</td><td class="num">0.999960</td>'));
  const skipped = html.slice(html.indexOf('<table id="quant-skipped">'));
  assert.ok(skipped.includes('<td class="name">model.norm.weight</td><td>BF16 [128]</td><td>kept</td><td>norm or bias</td>'));
  assert.ok(html.includes('Skipped tensors (1)'));
});

test('every string from the report is escaped: paths, tensor names, reasons, the title and the nonce', () => {
  const evil = '<script>alert(1)</script>"\'&';
  const r = sampleReport({
    input: evil,
    outputs: [evil],
    missing: [evil],
    tensors: [
      { name: evil, outputName: evil + '2', dtype: 'BF16', shape: [64, 128], action: 'quantized', scheme: 'q8_0', bytesBefore: 1, bytesAfter: 1, snrDb: Infinity },
      { name: evil, dtype: 'BF16', shape: [3], action: 'kept', reason: evil, bytesBefore: 1, bytesAfter: 1 },
    ],
  });
  const html = quantReportHtml(r, { nonce: 'a"b', title: evil });
  assert.equal(html.match(/<script\b/g)?.length, 1, 'only the page script');
  assert.ok(!html.includes('alert(1)</script>'));
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;'));
  assert.ok(html.includes('nonce="a&quot;b"'));
  assert.ok(html.includes('<td class="num">∞</td>'), 'a lossless tensor shows ∞ dB');
});

test('the page message guard accepts only openMarkdown', () => {
  assert.ok(isQuantReportToHostMessage({ type: 'openMarkdown' }));
  for (const m of [null, undefined, 'openMarkdown', {}, { type: 'ready' }]) assert.ok(!isQuantReportToHostMessage(m));
});
