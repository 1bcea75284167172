import type { Turn } from './clock.js'
import { HeraldError, describeError } from './errors.js'
import { senderMatches, type HeraldEvent, type Tenant } from './event.js'
import type { Logger } from './logger.js'
import type { Store } from './stores/store.js'
import { compileMatcher } from './topic.js'

/** Receives stored events as the index routes them; implemented by subscriptions and tails. */
export interface Receiver {
  /**
   * `now` is the dispatch's coarse clock reading, shared by the batch; it may be as old as
   * `turn`, the running turn of the event loop, from whose end deadlines count (see clock.ts).
   */
  offer(event: HeraldEvent, now: number, turn: Turn): void
}

export interface TailOptions {
  /** Replay events stored after this seq (exclusive), then go live. Without it, start with the next event stored. */
  since?: string
  /** Only events from this sender. */
  sender?: string
  /**
   * Asked after each replayed event; when it returns a promise, the replay waits for it before
   * going on (a stream whose client has not read what it was sent yet), so a long replay needs no
   * more memory than the stream allows. Live events that arrive meanwhile wait in the tail.
   */
  backpressure?: () => Promise<void> | undefined
  /**
   * Most live events held back while a replay runs (default: no limit). Past it the tail closes
   * and `onOverflow` is told: a listener that cannot keep up must resume from its position
   * rather than make the process hold everything stored meanwhile.
   */
  maxHeld?: number
  onOverflow?: () => void
}

/** A live view of a tenant's events for one listener: what streams (WebSocket, SSE, `herald tail`) use. */
export interface Tail {
  /** Resolves when the replay (if any) is done and the tail is live; rejects if the replay failed. */
  readonly ready: Promise<void>
  /** Seq of the last event handed to the listener. */
  readonly position: string | undefined
  close(): void
}

const REPLAY_PAGE = 500

/**
 * Throws `invalid_request` unless `since` lies within the log: at or before its head. A position
 * past the head was never handed out by this log: an event id or a malformed seq given as one,
 * or the position of a log since wiped (a memory store restarted, a database replaced). Taken as
 * given, it would match no event ever, and the stream would stay silent for good. `details.head`
 * says where the log ends (absent when it is empty).
 */
function assertInLog(since: string, head: string | undefined): void {
  if (since === '' || (head !== undefined && head !== '' && since <= head)) return
  throw new HeraldError(
    'invalid_request',
    `since ${JSON.stringify(since)} is not a position of this log, which ends at ${head === undefined || head === '' ? 'its start (it is empty)' : JSON.stringify(head)}: a seq of an event it handed out is expected (not an event id), and a log wiped since no longer has it`,
    { since, ...(head === undefined || head === '' ? {} : { head }) },
  )
}

/** `assertInLog` against the highest seq `store` has handed out in the tenant's log. */
export async function assertPosition(store: Store, tenant: Tenant, since: string): Promise<void> {
  if (since === '') return
  assertInLog(since, await (store.issuedUpTo ? store.issuedUpTo(tenant) : store.head(tenant)))
}

/**
 * Hands matching events to a listener synchronously, in log order, exactly once each: during a
 * replay, live events are held back and released after the replayed ones, skipping any the
 * replay already covered. No retries: a stream's client acknowledges nothing; it resumes by seq.
 */
export class TailReceiver implements Receiver, Tail {
  readonly ready: Promise<void>
  position: string | undefined
  private readonly topicMatches: (topic: string) => boolean
  private held: HeraldEvent[] | undefined
  private closed = false
  private readonly logger: Logger

  constructor(
    readonly patterns: string[],
    private readonly listener: (event: HeraldEvent) => void,
    private readonly options: TailOptions,
    replay: { store: Store; tenant: Tenant; logger: Logger },
    private readonly onClose: (tail: TailReceiver) => void,
  ) {
    this.logger = replay.logger
    this.topicMatches = compileMatcher(patterns)
    if (options.since === undefined) this.ready = Promise.resolve()
    else {
      this.held = []
      this.position = options.since
      this.ready = this.replay(replay.store, replay.tenant).catch((error: unknown) => {
        replay.logger.warn({ error: describeError(error) }, 'tail replay failed')
        this.close()
        throw error
      })
    }
  }

  private matches(event: HeraldEvent): boolean {
    return this.topicMatches(event.topic) && senderMatches(this.options.sender, event.sender)
  }

  offer(event: HeraldEvent): void {
    if (this.closed || !this.matches(event)) return
    if (this.held) {
      this.held.push(event)
      if (this.held.length > (this.options.maxHeld ?? Infinity)) {
        this.close()
        this.options.onOverflow?.()
      }
    }
    // The replay may have read it from the log before its live copy came (a store whose watch
    // lags its log, as Redis's feed can): a tenant's seqs only grow, so an old one was handed over.
    else if (this.position === undefined || event.seq! > this.position) this.emit(event)
  }

  private emit(event: HeraldEvent): void {
    this.position = event.seq
    try {
      this.listener(event)
    } catch (error) {
      // The listener's failure is its own: the events after it, and other subscribers, go on.
      this.logger.warn({ error: describeError(error), eventId: event.id }, 'tail listener threw')
    }
  }

  private async replay(store: Store, tenant: Tenant): Promise<void> {
    let after = this.options.since
    if (after !== undefined) await assertPosition(store, tenant, after)
    if (this.closed) return
    for (;;) {
      const page = await store.read(tenant, { after, limit: REPLAY_PAGE })
      if (this.closed) return
      for (const event of page) {
        after = event.seq
        if (this.matches(event)) this.emit(event)
        if (this.closed) return
        const wait = this.options.backpressure?.()
        if (wait) {
          await wait
          if (this.closed) return
        }
      }
      if (page.length < REPLAY_PAGE) break
    }
    // Live events that arrived meanwhile, in order; more may arrive while this waits for the
    // stream, so the array stays the holding place until it is drained.
    const held = this.held ?? []
    for (let i = 0; i < held.length; i++) {
      if (this.closed) return
      const event = held[i]!
      if (after === undefined || event.seq! > after) this.emit(event)
      const wait = this.options.backpressure?.()
      if (wait) {
        await wait
        if (this.closed) return
      }
    }
    this.held = undefined
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.held = undefined
    this.onClose(this)
  }
}
