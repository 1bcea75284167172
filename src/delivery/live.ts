import type { Turn } from '../clock.js'
import type { HeraldEvent } from '../event.js'
import type { Attempt } from './attempt.js'
import { Worker, type DeliveryStatus, type WorkerSpec } from './worker.js'

interface RetryState {
  event: HeraldEvent
  /** Attempts made so far. */
  attempts: number
  lastError: string
  dueAt: number
  timer: ReturnType<typeof setTimeout> | undefined
  running: boolean
}

interface DeadState {
  event: HeraldEvent
  attempts: number
  lastError: string
  failedAt: number
}

export interface LiveDeadLetter extends DeadState {
  subscriptionId: string
}

/** Dead letters a live subscription keeps; beyond this the oldest are dropped, with an error logged. */
export const LIVE_DEAD_LETTER_LIMIT = 10_000

/**
 * A live subscription: events are pushed to it in log order as they are stored, and its state
 * lives in this process only. Deliveries start in log order; retries wait on their own timers
 * and go before new events when a slot frees up.
 */
export class LiveWorker extends Worker {
  readonly durable = false as const
  private queue: HeraldEvent[] = []
  private head = 0
  private readonly dueRetries: RetryState[] = []
  private readonly retries = new Map<string, RetryState>()
  private readonly dead = new Map<string, DeadState>()
  /** Seq of the first event offered, and of the last one started from the queue. */
  private firstSeq: string | undefined
  private frontier = ''
  private stopped = false
  private disposed = false
  /** A pump is running: a handler that settles synchronously must not start another within it. */
  private pumping = false

  constructor(spec: WorkerSpec) {
    super(spec)
  }

  offer(event: HeraldEvent, now: number, turn: Turn): void {
    if (this.stopped || !this.senderAccepts(event)) return
    this.firstSeq ??= event.seq
    if (
      this.inFlight.size < this.policy.concurrency &&
      this.head === this.queue.length &&
      this.dueRetries.length === 0
    ) {
      this.frontier = event.seq!
      this.run(event, 0, now, turn)
    } else this.queue.push(event)
  }

  private pump(): void {
    // Re-entered from a synchronous handler's outcome: the running loop takes the next event, so
    // a backlog is worked off in a loop rather than in one stack frame per event.
    if (this.pumping) return
    this.pumping = true
    try {
      this.pumpLoop()
    } finally {
      this.pumping = false
    }
  }

  private pumpLoop(): void {
    while (this.inFlight.size < this.policy.concurrency) {
      const retry = this.dueRetries.shift()
      if (retry) {
        retry.running = true
        this.run(retry.event, retry.attempts)
        continue
      }
      if (this.head === this.queue.length) break
      const event = this.queue[this.head++]!
      if (this.head === this.queue.length) {
        this.queue = []
        this.head = 0
      } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head)
        this.head = 0
      }
      this.frontier = event.seq!
      this.run(event, 0)
    }
  }

  protected onSuccess(attempt: Attempt): void {
    this.observe(attempt, undefined)
    if (this.retries.size > 0) this.retries.delete(attempt.event.seq!)
    this.pump()
  }

  protected onFailure(attempt: Attempt, error: unknown): void {
    const verdict = this.verdict(attempt, error)
    this.logFailure(attempt, verdict)
    const seq = attempt.event.seq!
    if ('dead' in verdict) {
      this.retries.delete(seq)
      this.addDead(seq, {
        event: attempt.event,
        attempts: attempt.attempt + 1,
        lastError: verdict.error,
        failedAt: Date.now(),
      })
    } else if (!this.disposed) {
      const state: RetryState = this.retries.get(seq) ?? {
        event: attempt.event,
        attempts: 0,
        lastError: '',
        dueAt: 0,
        timer: undefined,
        running: false,
      }
      state.attempts = attempt.attempt + 1
      state.lastError = verdict.error
      state.dueAt = verdict.retryAt
      state.running = false
      state.timer = setTimeout(
        () => {
          state.timer = undefined
          if (this.stopped) return
          this.dueRetries.push(state)
          this.pump()
        },
        Math.max(0, verdict.retryAt - Date.now()),
      )
      this.retries.set(seq, state)
    }
    this.pump()
  }

  private addDead(seq: string, state: DeadState): void {
    this.dead.set(seq, state)
    if (this.dead.size > LIVE_DEAD_LETTER_LIMIT) {
      const [oldestSeq, oldest] = this.dead.entries().next().value as [string, DeadState]
      this.dead.delete(oldestSeq)
      this.logger.error(
        { subscriptionId: this.id, eventId: oldest.event.id, limit: LIVE_DEAD_LETTER_LIMIT },
        'live subscription holds too many dead letters; dropped the oldest (use a subscriberId for durable dead letters)',
      )
    }
  }

  deadLetters(): LiveDeadLetter[] {
    return [...this.dead.values()].map((dead) => ({ ...dead, subscriptionId: this.id }))
  }

  /** Delivers a dead letter again with a fresh set of attempts. */
  redrive(seq: string): boolean {
    const dead = this.dead.get(seq)
    if (!dead || this.stopped) return false
    this.dead.delete(seq)
    const state: RetryState = {
      event: dead.event,
      attempts: 0,
      lastError: dead.lastError,
      dueAt: Date.now(),
      timer: undefined,
      running: false,
    }
    this.retries.set(seq, state)
    this.dueRetries.push(state)
    this.pump()
    return true
  }

  deleteDeadLetter(seq: string): boolean {
    return this.dead.delete(seq)
  }

  statusOf(event: HeraldEvent): DeliveryStatus | undefined {
    const seq = event.seq!
    if (this.firstSeq === undefined || seq < this.firstSeq || !this.matches(event)) return undefined
    const base = { subscriptionId: this.id, durable: false }
    const dead = this.dead.get(seq)
    if (dead) return { ...base, state: 'dead', attempts: dead.attempts, lastError: dead.lastError }
    const retry = this.retries.get(seq)
    if (retry) {
      if (retry.attempts === 0) return { ...base, state: 'pending', attempts: 0, lastError: retry.lastError }
      const status: DeliveryStatus = {
        ...base,
        state: 'retrying',
        attempts: retry.attempts,
        lastError: retry.lastError,
      }
      if (!retry.running) status.nextAttemptAt = new Date(retry.dueAt).toISOString()
      return status
    }
    for (const attempt of this.inFlight)
      if (attempt.event.seq === seq) return { ...base, state: 'pending', attempts: attempt.attempt + 1 }
    if (seq <= this.frontier) return { ...base, state: 'delivered' }
    return { ...base, state: 'pending', attempts: 0 }
  }

  stop(): void {
    // Events already queued are due: they still run. Only new offers and scheduled retries stop.
    this.stopped = true
    for (const state of this.retries.values()) if (state.timer) clearTimeout(state.timer)
  }

  protected idle(): boolean {
    return this.inFlight.size === 0 && this.head === this.queue.length && this.dueRetries.length === 0
  }

  async dispose(): Promise<void> {
    this.stop()
    this.disposed = true
    const lost = this.queue.length - this.head + [...this.retries.values()].filter((r) => !r.running).length
    if (lost > 0) {
      this.logger.warn(
        { subscriptionId: this.id, deliveries: lost },
        'live subscription closed with deliveries not yet made (queued or waiting to retry); they are dropped — use a subscriberId on a durable store to keep them',
      )
    }
    this.queue = []
    this.head = 0
    this.dueRetries.length = 0
    this.abandonInFlight()
  }
}
