import { HeraldError } from '../errors.js'
import { ulid } from '../ids.js'
import type { LockOptions } from './store.js'

/** A holder's mark: a lock is let go only by the holder that took it. */
export function lockToken(): string {
  return ulid()
}

const FIRST_PAUSE_MS = 5
const LONGEST_PAUSE_MS = 100

/**
 * Tries `take` (true once the lock is this caller's) until it succeeds, pausing a little longer
 * each time, for up to `options.waitMs`; then fails with `store_unavailable`. Stores take locks
 * with one atomic step each (SET NX, a write transaction), so waiting is polling.
 */
export async function takeLock(
  take: () => boolean | Promise<boolean>,
  name: string,
  options: LockOptions,
): Promise<void> {
  assertLockOptions(options)
  const until = Date.now() + options.waitMs
  let pause = FIRST_PAUSE_MS
  for (;;) {
    if (await take()) return
    const left = until - Date.now()
    if (left <= 0) {
      throw new HeraldError(
        'store_unavailable',
        `${name} is held by another process (or an earlier call) for longer than ${options.waitMs} ms; try again`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)))
    pause = Math.min(pause * 2, LONGEST_PAUSE_MS)
  }
}

function assertLockOptions({ ttlMs, waitMs }: LockOptions): void {
  if (!(Number.isFinite(ttlMs) && ttlMs >= 1) || !(Number.isFinite(waitMs) && waitMs >= 0)) {
    throw new HeraldError(
      'invalid_option',
      `a lock needs ttlMs ≥ 1 and waitMs ≥ 0, got ${JSON.stringify({ ttlMs, waitMs })}`,
    )
  }
}
