-- Knowledge bases: ingestion states as the product shows them (queued → parsing → embedding →
-- indexed | failed), what each document was indexed with (embedding model, generation of the
-- ingestion that wrote its chunks), progress, and citations kept on assistant messages.
ALTER TABLE "documents" ALTER COLUMN "status" DROP DEFAULT;
ALTER TYPE "DocumentStatus" RENAME TO "DocumentStatus_old";
CREATE TYPE "DocumentStatus" AS ENUM ('queued', 'parsing', 'embedding', 'indexed', 'failed');
ALTER TABLE "documents" ALTER COLUMN "status" TYPE "DocumentStatus" USING (
  CASE "status"::text WHEN 'pending' THEN 'queued' WHEN 'processing' THEN 'parsing' WHEN 'ready' THEN 'indexed' ELSE 'failed' END
)::"DocumentStatus";
ALTER TABLE "documents" ALTER COLUMN "status" SET DEFAULT 'queued';
DROP TYPE "DocumentStatus_old";

ALTER TABLE "documents"
  ADD COLUMN "error_code" TEXT,
  ADD COLUMN "generation" INTEGER NOT NULL DEFAULT 1,
  ADD COLUMN "embedding_model" TEXT,
  ADD COLUMN "page_count" INTEGER,
  ADD COLUMN "token_count" INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN "embedded_chunks" INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN "cost_micros" BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN "trace_id" TEXT,
  ADD COLUMN "workflow_id" TEXT,
  ADD COLUMN "created_by" TEXT,
  ADD COLUMN "indexed_at" TIMESTAMPTZ(3);
CREATE INDEX "documents_knowledge_base_id_created_at_idx" ON "documents"("knowledge_base_id", "created_at");
CREATE INDEX "documents_project_id_idx" ON "documents"("project_id");

ALTER TABLE "knowledge_bases" ADD COLUMN "created_by" TEXT;
CREATE UNIQUE INDEX "knowledge_bases_project_id_name_key" ON "knowledge_bases"("project_id", "name") WHERE "archived_at" IS NULL;

-- Policy: the largest upload a project accepts, and whether workflow http steps may reach
-- private/loopback/link-local addresses (organization-level allowance).
ALTER TABLE "policies"
  ADD COLUMN "max_upload_bytes" BIGINT,
  ADD COLUMN "allow_private_http" BOOLEAN;

ALTER TABLE "chat_messages" ADD COLUMN "citations" JSONB;
