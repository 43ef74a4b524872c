-- Audit rows for requests made before authentication (failed logins, rejected keys).
ALTER TYPE "ActorType" ADD VALUE IF NOT EXISTS 'anonymous';
