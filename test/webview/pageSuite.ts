/**
 * The setup every page test file shares: one static server and one headless Chromium per test
 * file (started before its tests, closed after them), the viewer's scripted replies for a
 * summary, and the check that a page raised nothing and broke no CSP rule.
 */
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { ARTIFACTS, launch, openPage, openViewer, pageErrors, startServer, violations, type ReplyTable } from './harness';
import { heatmapReply, statsReply } from './fixtures';
import { tensorEntries, type SummaryReplyMessage } from '../../src/shared/protocol';

type OpenOptions = Parameters<typeof openPage>[4];

export interface PageSuite {
  /** Opens the viewer page with `replies` scripted; resolves once it has sent 'ready'. */
  openViewer(replies: ReplyTable, opts?: OpenOptions): Promise<Page>;
  /** Opens the page of bundle `name` with `replies` scripted; resolves once it has sent 'ready'. */
  openPage(name: string, replies: ReplyTable, opts?: OpenOptions): Promise<Page>;
}

/** Registers the file's before and after hooks; `cleanup` runs after the browser and server close. */
export function pageSuite(cleanup?: () => Promise<unknown>): PageSuite {
  let browser: Browser;
  let server: Server;
  let origin: string;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    ({ server, origin } = await startServer());
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
    await cleanup?.();
  });
  return {
    openViewer: (replies, opts) => openViewer(browser, origin, replies, opts),
    openPage: (name, replies, opts) => openPage(browser, origin, name, replies, opts),
  };
}

/** The summary, and the statistics and heatmap of its first `limit` tensors, as the viewer asks for them. */
export function viewerReplies(s: SummaryReplyMessage, limit = Infinity): ReplyTable {
  const table: ReplyTable = { summary: { body: s } };
  for (const t of tensorEntries(s.tensors).slice(0, limit)) {
    table[`tensorStats:${t.name}`] = { body: statsReply(t.name, t.shape) };
    table[`heatmap:${t.name}`] = { body: heatmapReply(t.name) };
  }
  return table;
}

export async function assertClean(page: Page): Promise<void> {
  assert.deepEqual(pageErrors(page), [], 'no uncaught errors in the page');
  assert.deepEqual(await violations(page), [], 'no CSP violations');
}
