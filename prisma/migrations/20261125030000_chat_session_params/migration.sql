-- Per-session model parameters (temperature, max_tokens, system prompt).
ALTER TABLE "chat_sessions" ADD COLUMN "params" JSONB NOT NULL DEFAULT '{}';
