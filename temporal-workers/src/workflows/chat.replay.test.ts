// Chat runs are open while workers are deployed: a history recorded before the patch
// `chat-all-local` (prepare + hold as local activities, model call and settle as activities) and
// one recorded after it (everything local) must both replay with this chatMessageWorkflow.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../worker.ts';

const FIXTURES = ['chat-history-before-all-local.json', 'chat-history-all-local.json'];

function fixture(name: string) {
  const { workflowId, historyBase64 } = JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as { workflowId: string; historyBase64: string };
  return { workflowId, history: proto.temporal.api.history.v1.History.decode(Buffer.from(historyBase64, 'base64')) };
}

describe('chatMessageWorkflow replay', () => {
  it('the fixtures are the two versions: activity tasks before the patch, none after it', () => {
    const [before, after] = FIXTURES.map((name) => fixture(name).history.events ?? []);
    expect(before!.filter((e) => e.activityTaskScheduledEventAttributes).length).toBe(2);
    expect(after!.filter((e) => e.activityTaskScheduledEventAttributes).length).toBe(0);
    expect(after!.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length).toBe(3);
  });

  it('replays the recorded histories of the earlier and the current version', async () => {
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, FIXTURES.map(fixture))) {
      expect(result.error, result.workflowId).toBeUndefined();
      replayed++;
    }
    expect(replayed).toBe(FIXTURES.length);
  });
});
