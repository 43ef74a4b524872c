// Work a handler finishes after its response was sent (a /v1 call's capture when
// V1_SETTLE_BEFORE_RESPONSE=false). Shutdown waits for it before closing the database pool, so a
// stopping gateway settles every call it answered; only a hard kill leaves one to the hold expiry.
const pending = new Set<Promise<void>>();

export function trackAfterResponse(work: Promise<void>): void {
  const tracked = work.finally(() => pending.delete(tracked));
  pending.add(tracked);
}

/** Resolves once every tracked settlement has finished (each one handles its own errors). */
export async function settleAfterResponses(): Promise<void> {
  while (pending.size > 0) await Promise.allSettled([...pending]);
}

export function pendingAfterResponse(): number {
  return pending.size;
}
