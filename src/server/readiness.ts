import { HeraldError, isHeraldError } from '../errors.js'
import { DEFAULT_TENANT } from '../event.js'
import type { Store } from '../stores/store.js'

/** How long `/readyz` waits for the store before it answers 503. */
export const READY_PROBE_MS = 2000

/**
 * Asks the store for something cheap (the default tenant's head) to learn whether it answers.
 * Probes asked for while one is running share it, so a burst of readiness checks costs the
 * store one read, not one each.
 */
export class StoreProbe {
  private running: Promise<void> | undefined

  constructor(
    private readonly store: Store,
    private readonly timeoutMs = READY_PROBE_MS,
  ) {}

  /** Resolves when the store answered; rejects with `store_unavailable` when it failed or took too long. */
  check(): Promise<void> {
    this.running ??= this.probe().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  private async probe(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new HeraldError(
              'store_unavailable',
              `the ${this.store.kind} store did not answer within ${this.timeoutMs} ms`,
            ),
          ),
        this.timeoutMs,
      )
    })
    try {
      await Promise.race([this.store.head(DEFAULT_TENANT), late])
    } catch (error) {
      if (isHeraldError(error, 'store_unavailable')) throw error
      throw new HeraldError(
        'store_unavailable',
        `the ${this.store.kind} store failed: ${error instanceof Error ? error.message : String(error)}`,
      )
    } finally {
      clearTimeout(timer)
    }
  }
}
