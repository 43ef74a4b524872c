-- One row per executed step of a workflow run (nested steps keyed by their path, e.g.
-- `research[1]/investigate[0]/answer`): status, the rendered input, output, error, attempt and cost.
-- Reproducibility, the run view, and resume/fork (completed outputs reused, never re-billed).
CREATE TABLE "workflow_run_steps" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "run_id" UUID NOT NULL,
    "step_key" TEXT NOT NULL,
    "step_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL DEFAULT 1,
    "input" JSONB,
    "output" JSONB,
    "detail" JSONB,
    "error" JSONB,
    "model" TEXT,
    "hold_id" TEXT,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "cost_micros" BIGINT NOT NULL DEFAULT 0,
    "reused_from_run_id" UUID,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),
    CONSTRAINT "workflow_run_steps_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "workflow_run_steps_run_id_fkey" FOREIGN KEY ("run_id") REFERENCES "workflow_runs"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "workflow_run_steps_status_check" CHECK ("status" IN ('running', 'waiting', 'succeeded', 'failed', 'skipped'))
);
CREATE UNIQUE INDEX "workflow_run_steps_run_id_step_key_key" ON "workflow_run_steps"("run_id", "step_key");

-- Resume and fork: the run whose completed outputs a new run reuses.
ALTER TABLE "workflow_runs" ADD COLUMN "source_run_id" UUID;
