import type { HeraldEvent } from '../event.js'

/** What a handler receives besides the event. */
export interface HandlerContext {
  /** Fires when this attempt's timeout passes (or the delivery is abandoned); stop work then. */
  readonly signal: AbortSignal
  /** 0-based: 0 for the first attempt, 1 for the first retry, ... */
  readonly attempt: number
  readonly subscriptionId: string
  readonly event: HeraldEvent
}

export type Handler<T = unknown> = (event: HeraldEvent<T>, ctx: HandlerContext) => unknown

export class AttemptTimeoutError extends Error {
  override readonly name = 'AttemptTimeoutError'
  constructor(readonly timeout: number) {
    super(`attempt timed out after ${timeout} ms`)
  }
}

/**
 * One attempt at one delivery; it is the handler's `ctx`. The AbortController is created only
 * when the handler reads `signal`, since most handlers never do and the controller is the most
 * expensive part of an attempt.
 */
export class Attempt implements HandlerContext {
  /** Settled: succeeded, failed or timed out. A late result after that is ignored. */
  done = false
  private controller: AbortController | undefined
  private abortReason: unknown

  constructor(
    readonly event: HeraldEvent,
    readonly attempt: number,
    readonly subscriptionId: string,
    readonly deadline: number,
    readonly timeout: number,
  ) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController()
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason)
    }
    return this.controller.signal
  }

  abort(reason: unknown): void {
    if (this.abortReason !== undefined) return
    this.abortReason = reason
    this.controller?.abort(reason)
  }
}
