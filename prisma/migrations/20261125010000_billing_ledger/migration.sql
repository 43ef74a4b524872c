-- Billing ledger (issue 4): what the ledger needs on top of the initial billing tables.
--
-- request_hash: sha256 of an operation's parameters (without its idempotency key). A replay with
--   the same key and the same hash returns the first result; the same key with another hash is an
--   idempotency conflict. NULL for rows written outside the ledger (the demo seed's credit).
-- details: structured facts about a row, e.g. a capture's requested cost, what was charged, what
--   was released and what could not be collected under the overage rule (amounts as strings).
ALTER TABLE "wallet_transactions" ADD COLUMN "request_hash" TEXT;
ALTER TABLE "wallet_transactions" ADD COLUMN "details" JSONB NOT NULL DEFAULT '{}';

-- Every row's sign follows its kind. `amount_micros` is the effect on the balance for
-- topup / adjust / capture / refund; for hold and release (which move money between available and
-- frozen without touching the balance) it is the amount frozen or unfrozen, always positive.
ALTER TABLE "wallet_transactions" ADD CONSTRAINT "wallet_transactions_amount_sign" CHECK (
  CASE "kind"
    WHEN 'topup' THEN "amount_micros" > 0
    WHEN 'hold' THEN "amount_micros" > 0
    WHEN 'release' THEN "amount_micros" > 0
    WHEN 'capture' THEN "amount_micros" <= 0
    WHEN 'refund' THEN "amount_micros" > 0
    WHEN 'adjust' THEN "amount_micros" <> 0
  END
);
-- The balances a row records obey the wallet's own rules.
ALTER TABLE "wallet_transactions" ADD CONSTRAINT "wallet_transactions_balances_valid" CHECK (
  "balance_after_micros" >= 0 AND "frozen_after_micros" >= 0 AND "frozen_after_micros" <= "balance_after_micros"
);
-- Hold-related rows always name their hold; wallet-level rows never do.
ALTER TABLE "wallet_transactions" ADD CONSTRAINT "wallet_transactions_hold_link" CHECK (
  ("kind" IN ('hold', 'capture', 'release', 'refund')) = ("hold_id" IS NOT NULL)
);
ALTER TABLE "wallet_transactions" ADD CONSTRAINT "wallet_transactions_hold_id_fkey"
  FOREIGN KEY ("hold_id") REFERENCES "holds"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- A settled hold has a settlement time; an active one does not.
ALTER TABLE "holds" ADD CONSTRAINT "holds_settled_at_matches_status" CHECK (
  ("status" = 'active') = ("settled_at" IS NULL)
);
-- Only a captured hold has captured anything.
ALTER TABLE "holds" ADD CONSTRAINT "holds_captured_only_when_captured" CHECK (
  "status" = 'captured' OR "captured_micros" = 0
);
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_hold_id_fkey"
  FOREIGN KEY ("hold_id") REFERENCES "holds"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
