// Chat runs are open while workers are deployed: histories of every earlier shape must replay with
// this chatMessageWorkflow — before `chat-all-local` (prepare + hold as local activities, model call
// and settle as activities), with it (three local activities), and with `chat-one-call` (prepare
// and call in one local activity, then settle).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../worker.ts';

const FIXTURES = ['chat-history-before-all-local.json', 'chat-history-all-local.json', 'chat-history-one-call.json'];

function fixture(name: string) {
  const { workflowId, historyBase64 } = JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as { workflowId: string; historyBase64: string };
  return { workflowId, history: proto.temporal.api.history.v1.History.decode(Buffer.from(historyBase64, 'base64')) };
}

describe('chatMessageWorkflow replay', () => {
  it('the fixtures are the three versions: activity tasks before the patches, then 3, then 2 local activities', () => {
    const [before, allLocal, oneCall] = FIXTURES.map((name) => fixture(name).history.events ?? []);
    const localActivities = (events: typeof before) => events!.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length;
    expect(before!.filter((e) => e.activityTaskScheduledEventAttributes).length).toBe(2);
    for (const events of [allLocal, oneCall]) expect(events!.filter((e) => e.activityTaskScheduledEventAttributes).length).toBe(0);
    expect(localActivities(allLocal)).toBe(3);
    expect(localActivities(oneCall)).toBe(2);
  });

  it('replays the recorded histories of the earlier versions and the current one', async () => {
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, FIXTURES.map(fixture))) {
      expect(result.error, result.workflowId).toBeUndefined();
      replayed++;
    }
    expect(replayed).toBe(FIXTURES.length);
  });
});
