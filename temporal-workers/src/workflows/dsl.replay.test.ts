// Workers are deployed while runs are open: histories recorded by earlier versions of dslWorkflow
// must replay with this one. The fixtures are binary history protos (base64): one recorded before
// the patch `dsl-batched-llm-steps`, one after it (short and long llm steps).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../worker.ts';

const FIXTURES = ['dsl-history-before-batched-llm-steps.json', 'dsl-history-batched-llm-steps.json'];

function fixture(name: string) {
  const { workflowId, historyBase64 } = JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as { workflowId: string; historyBase64: string };
  return { workflowId, history: proto.temporal.api.history.v1.History.decode(Buffer.from(historyBase64, 'base64')) };
}

describe('dslWorkflow replay', () => {
  it('replays the recorded histories of earlier and current versions', async () => {
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, FIXTURES.map(fixture))) {
      expect(result.error, result.workflowId).toBeUndefined();
      replayed++;
    }
    expect(replayed).toBe(FIXTURES.length);
  });
});
