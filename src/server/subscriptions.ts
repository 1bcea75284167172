import type { EventBus } from '../bus.js'
import type { HeraldEvent } from '../event.js'
import type { Tail } from '../tail.js'

/**
 * Live events a stream holds back while it replays for a client; past them the client is closed
 * as too slow and resumes from its last seq (its replay is then shorter by what it did read).
 */
export const MAX_HELD_EVENTS = 5_000
/** Why such a client is closed, in its close reason and the log. */
export const HELD_BACK = `more than ${MAX_HELD_EVENTS} live events held back behind its replay`

/**
 * The patterns one stream connection listens to, served by a single tail over their union, so
 * an event matching several patterns still arrives once. Changing the set swaps the tail
 * synchronously: stores hand events to tails synchronously, so nothing is lost or repeated
 * in between.
 */
export class StreamSubscriptions {
  private patterns: string[] = []
  private tail: Tail | undefined
  private lastPosition: string | undefined

  constructor(
    private readonly bus: EventBus,
    private readonly listener: (event: HeraldEvent) => void,
    /** Paces replays: a promise while the client still has too much to read. */
    private readonly backpressure: () => Promise<void> | undefined,
    /** Too many live events waited behind a replay the client reads too slowly: close it as slow. */
    private readonly overflow: () => void,
  ) {}

  get list(): readonly string[] {
    return this.patterns
  }

  /** Seq of the last event handed to the listener. */
  get position(): string | undefined {
    return this.tail?.position ?? this.lastPosition
  }

  /**
   * Adds patterns; with `since`, the whole stream (old patterns too) replays after that seq.
   * Resolves once the replay is done and the stream is live.
   */
  add(patterns: readonly string[], since?: string): Promise<void> {
    return this.replace([...new Set([...this.patterns, ...patterns])], since)
  }

  /** Removes patterns (those subscribed); returns the ones removed. */
  remove(patterns: readonly string[]): string[] {
    const current = new Set(this.patterns)
    const removed = patterns.filter((pattern) => current.has(pattern))
    if (removed.length > 0) {
      const gone = new Set(removed)
      void this.replace(
        this.patterns.filter((pattern) => !gone.has(pattern)),
        undefined,
      )
    }
    return removed
  }

  private replace(patterns: string[], since: string | undefined): Promise<void> {
    this.close()
    this.patterns = patterns
    if (patterns.length === 0) return Promise.resolve()
    this.tail = this.bus.tail(
      patterns,
      this.listener,
      since === undefined
        ? {}
        : { since, backpressure: this.backpressure, maxHeld: MAX_HELD_EVENTS, onOverflow: this.overflow },
    )
    return this.tail.ready
  }

  close(): void {
    if (!this.tail) return
    // A tail that saw nothing since it replaced another leaves the last seq sent as it was.
    this.lastPosition = this.tail.position ?? this.lastPosition
    this.tail.close()
    this.tail = undefined
  }
}
