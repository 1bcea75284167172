import type { Turn } from '../clock.js'
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
  /** Links in the subscription's in-flight list. */
  prev: Attempt | undefined = undefined
  next: Attempt | undefined = undefined
  private controller: AbortController | undefined
  private abortReason: unknown

  constructor(
    readonly event: HeraldEvent,
    readonly attempt: number,
    readonly subscriptionId: string,
    /** When it started, by a reading that may be early (see `turn`). */
    readonly startedAt: number,
    readonly timeout: number,
    /**
     * Set when `startedAt` is a coarse reading: the turn it started in, whose end (once over) is
     * the start its deadline counts from, so that the deadline is never early.
     */
    readonly turn: Turn | undefined,
  ) {}

  /** When the attempt times out: exact once its turn is over; until then a lower bound. */
  get deadline(): number {
    const turn = this.turn
    return (turn === undefined || turn.end === Infinity ? this.startedAt : turn.end) + this.timeout
  }

  /** The deadline is known (not merely a lower bound). */
  get deadlineKnown(): boolean {
    return this.turn === undefined || this.turn.end !== Infinity
  }

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

/**
 * A subscription's attempts in flight: an intrusive doubly-linked list, so adding and removing
 * one (twice per delivery) allocates nothing and hashes nothing.
 */
export class InFlight implements Iterable<Attempt> {
  private head: Attempt | undefined = undefined
  size = 0

  add(attempt: Attempt): void {
    attempt.prev = undefined
    attempt.next = this.head
    if (this.head) this.head.prev = attempt
    this.head = attempt
    this.size++
  }

  delete(attempt: Attempt): void {
    if (attempt.prev) attempt.prev.next = attempt.next
    else if (this.head === attempt) this.head = attempt.next
    else return // not in the list
    if (attempt.next) attempt.next.prev = attempt.prev
    attempt.prev = attempt.next = undefined
    this.size--
  }

  clear(): void {
    this.head = undefined
    this.size = 0
  }

  *[Symbol.iterator](): Iterator<Attempt> {
    // Read `next` before yielding: the consumer may remove the attempt it was handed.
    let attempt = this.head
    while (attempt) {
      const next = attempt.next
      yield attempt
      attempt = next
    }
  }
}
