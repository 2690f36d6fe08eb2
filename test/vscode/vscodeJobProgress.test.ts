import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressMapper, formatBytes, signalFromToken } from '../../src/vscode/jobProgress';

/** A stand-in for vscode.CancellationToken: a flag plus listeners. */
function fakeToken(cancelled = false) {
  const listeners = new Set<() => void>();
  return {
    isCancellationRequested: cancelled,
    onCancellationRequested(fn: () => void) {
      listeners.add(fn);
      return { dispose: () => listeners.delete(fn) };
    },
    cancel() {
      this.isCancellationRequested = true;
      for (const fn of listeners) fn();
    },
    listeners,
  };
}

test('signalFromToken aborts on cancel and detaches on dispose', () => {
  const t = fakeToken();
  const s = signalFromToken(t);
  assert.equal(s.signal.aborted, false);
  assert.equal(t.listeners.size, 1);
  t.cancel();
  assert.equal(s.signal.aborted, true);
  s.dispose();
  assert.equal(t.listeners.size, 0);
});

test('signalFromToken on an already cancelled token is aborted at once', () => {
  const t = fakeToken(true);
  const s = signalFromToken(t);
  assert.equal(s.signal.aborted, true);
  assert.equal(t.listeners.size, 0);
});

test('ProgressMapper increments sum to the completed percentage and never go back', () => {
  const m = new ProgressMapper();
  const total = 1000;
  // Out of order on purpose: a second pass restarts at 100, which must not move the bar back.
  const dones = [0, 100, 250, 250, 400, 100, 900, 1000];
  let sum = 0;
  let maxDone = 0;
  for (const done of dones) {
    const step = m.step({ done, total });
    if (step.increment !== undefined) {
      assert.ok(step.increment > 0);
      sum += step.increment;
    }
    maxDone = Math.max(maxDone, done);
    assert.ok(Math.abs(sum - (maxDone / total) * 100) < 1e-9, `after ${done}: ${sum}`);
  }
  assert.ok(Math.abs(sum - 100) < 1e-9);
});

test('ProgressMapper messages show counts in the job unit', () => {
  const m = new ProgressMapper();
  assert.equal(m.step({ done: 3, total: 10, unit: 'tensors', message: 'layers.3.mlp' }).message, 'layers.3.mlp · 3 / 10 tensors');
  assert.equal(new ProgressMapper().step({ done: 1_500_000, total: 2_000_000_000 }).message, '1.50 MB / 2.00 GB');
  // An unknown total moves nothing and shows only the message.
  assert.deepEqual(new ProgressMapper().step({ done: 5, total: 0, message: 'opening' }), { message: 'opening', increment: undefined });
});

test('formatBytes uses decimal units with three significant digits', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1000), '1.00 KB');
  assert.equal(formatBytes(12_345_678), '12.3 MB');
  assert.equal(formatBytes(123_456_789_012), '123 GB');
  assert.equal(formatBytes(5e15), '5000 TB');
});
