import type { Turn } from '../clock.js'
import { NonRetriableError, RetryLaterError, describeError } from '../errors.js'
import type { HeraldEvent, Tenant } from '../event.js'
import { senderMatches } from '../event.js'
import type { Logger } from '../logger.js'
import { compileMatcher } from '../topic.js'
import { Attempt, AttemptTimeoutError, InFlight, type Handler } from './attempt.js'
import { MAX_BACKOFF_DELAY, attemptTimeout, backoffDelay, type RetryPolicy } from './policy.js'

export interface WorkerSpec {
  id: string
  tenant: Tenant
  patterns: string[]
  sender: string | undefined
  handler: Handler
  policy: RetryPolicy
  logger: Logger
  observer: DeliveryObserver | undefined
}

/** How one attempt ended, for metrics. */
export interface AttemptReport {
  subscriptionId: string
  durable: boolean
  event: HeraldEvent
  /** 0-based index of the attempt. */
  attempt: number
  outcome: 'delivered' | 'retry' | 'dead'
  durationMs: number
  error?: string
}

export interface DeliveryObserver {
  attempted(report: AttemptReport): void
}

/** How a failed attempt ends: retried at a time, or dead. */
export type FailureVerdict = { retryAt: number; error: string } | { dead: true; error: string }

export type DeliveryState = 'pending' | 'delivered' | 'retrying' | 'dead'

/** Where one subscription stands with one event. */
export interface DeliveryStatus {
  subscriptionId: string
  durable: boolean
  state: DeliveryState
  /** Attempts started; absent once a delivered event has left no record. */
  attempts?: number
  lastError?: string
  /** ISO time of the next attempt of a retrying delivery. */
  nextAttemptAt?: string
}

/**
 * The part of the Dispatcher every subscription shares: running attempts with their timeouts,
 * and deciding what a failure leads to. Subclasses decide where deliveries come from (pushed
 * in memory, or claimed from the store) and where their outcome is recorded.
 */
export abstract class Worker {
  readonly id: string
  readonly tenant: Tenant
  readonly patterns: string[]
  readonly sender: string | undefined
  readonly handler: Handler
  readonly policy: RetryPolicy
  protected readonly logger: Logger
  private readonly observer: DeliveryObserver | undefined
  protected readonly inFlight = new InFlight()
  private topicMatches: (topic: string) => boolean
  private sweepTimer: ReturnType<typeof setTimeout> | undefined
  private sweepAt = Infinity
  private drainWaiters: (() => void)[] = []

  abstract readonly durable: boolean

  constructor(spec: WorkerSpec) {
    this.id = spec.id
    this.tenant = spec.tenant
    this.patterns = spec.patterns
    this.sender = spec.sender
    this.handler = spec.handler
    this.policy = spec.policy
    this.logger = spec.logger
    this.observer = spec.observer
    this.topicMatches = compileMatcher(spec.patterns)
  }

  /** Does this subscription want the event (topic and sender)? Tenancy is checked by the caller. */
  readonly matches = (event: HeraldEvent): boolean =>
    this.topicMatches(event.topic) && (this.sender === undefined || senderMatches(this.sender, event.sender))

  /** Narrows the patterns (an unsubscribe from some of them); what it matches follows. */
  setPatterns(patterns: readonly string[]): void {
    this.patterns.splice(0, this.patterns.length, ...patterns)
    this.topicMatches = compileMatcher(this.patterns)
  }

  /** The sender filter alone; `offer` gets only events whose topic the index already matched. */
  protected senderAccepts(event: HeraldEvent): boolean {
    return this.sender === undefined || senderMatches(this.sender, event.sender)
  }

  /** An event whose topic matches was stored. */
  abstract offer(event: HeraldEvent, now: number, turn: Turn): void
  /** Stop starting deliveries that are not already due; keep running those in flight. */
  abstract stop(): void
  /** Everything due has been started and nothing is in flight. */
  protected abstract idle(): boolean
  /** Release timers and flush state; called after the drain. */
  abstract dispose(): Promise<void>
  protected abstract onSuccess(attempt: Attempt): void
  protected abstract onFailure(attempt: Attempt, error: unknown): void

  /**
   * Starts an attempt. `now` defaults to a fresh reading; a caller passing a coarse one passes
   * the `turn` it was taken in, and the deadline then counts from that turn's end.
   */
  protected run(event: HeraldEvent, attemptIndex: number, now: number = Date.now(), turn?: Turn): void {
    const timeout = attemptIndex === 0 ? this.policy.timeout : attemptTimeout(this.policy, attemptIndex)
    const attempt = new Attempt(event, attemptIndex, this.id, now, timeout, turn)
    this.inFlight.add(attempt)
    // Armed for the earliest the deadline can be; the sweep re-arms when it learns the exact one.
    const earliest = now + timeout
    if (earliest < this.sweepAt) this.armSweep(earliest)
    let result: unknown
    try {
      result = this.handler(event, attempt)
    } catch (error) {
      this.finish(attempt, error, true)
      return
    }
    if (
      result !== null &&
      typeof result === 'object' &&
      typeof (result as PromiseLike<unknown>).then === 'function'
    ) {
      ;(result as PromiseLike<unknown>).then(
        () => this.finish(attempt, undefined, false),
        (error: unknown) => this.finish(attempt, error, true),
      )
    } else this.finish(attempt, undefined, false)
  }

  private finish(attempt: Attempt, error: unknown, failed: boolean): void {
    if (attempt.done) return // the attempt timed out before: its late result does not count
    attempt.done = true
    this.inFlight.delete(attempt)
    if (failed) this.onFailure(attempt, error)
    else this.onSuccess(attempt)
    this.checkDrained()
  }

  /**
   * One timer per subscription, armed for the earliest deadline in flight. Attempts mostly end
   * long before it fires; when it does, it aborts the expired ones and re-arms for the next.
   */
  private armSweep(at: number): void {
    if (this.sweepTimer) clearTimeout(this.sweepTimer)
    this.sweepAt = at
    this.sweepTimer = setTimeout(this.sweep, Math.max(0, at - Date.now()))
    this.sweepTimer.unref?.()
  }

  private readonly sweep = (): void => {
    this.sweepTimer = undefined
    this.sweepAt = Infinity
    const now = Date.now()
    let next = Infinity
    for (const attempt of this.inFlight) {
      const deadline = attempt.deadline
      if (deadline <= now && attempt.deadlineKnown) {
        const error = new AttemptTimeoutError(attempt.timeout)
        attempt.abort(error)
        this.finish(attempt, error, true)
      } else if (deadline < next) next = Math.max(deadline, now + 1)
    }
    if (next !== Infinity) this.armSweep(next)
  }

  /** What a failure of `attempt` leads to under the policy. */
  protected verdict(attempt: Attempt, error: unknown): FailureVerdict {
    const message = describeError(error)
    const attemptsMade = attempt.attempt + 1
    if (error instanceof NonRetriableError) return { dead: true, error: message }
    if (attemptsMade > this.policy.retries) return { dead: true, error: message }
    let wait = backoffDelay(this.policy, attemptsMade)
    // A handler (a webhook's Retry-After, say) may ask for a longer wait, never for a shorter one.
    if (error instanceof RetryLaterError)
      wait = Math.max(wait, Math.min(error.retryAfterMs, MAX_BACKOFF_DELAY))
    return { retryAt: Date.now() + wait, error: message }
  }

  protected observe(attempt: Attempt, verdict: FailureVerdict | undefined): void {
    if (!this.observer) return
    const report: AttemptReport = {
      subscriptionId: this.id,
      durable: this.durable,
      event: attempt.event,
      attempt: attempt.attempt,
      outcome: verdict === undefined ? 'delivered' : 'dead' in verdict ? 'dead' : 'retry',
      durationMs: Date.now() - attempt.startedAt,
    }
    if (verdict) report.error = verdict.error
    try {
      this.observer.attempted(report)
    } catch (error) {
      this.logger.warn({ error: describeError(error) }, 'delivery observer threw')
    }
  }

  protected logFailure(attempt: Attempt, verdict: FailureVerdict): void {
    this.observe(attempt, verdict)
    const fields = {
      subscriptionId: this.id,
      eventId: attempt.event.id,
      topic: attempt.event.topic,
      attempt: attempt.attempt,
      error: verdict.error,
    }
    if ('dead' in verdict) this.logger.error(fields, 'delivery failed for good; it is now a dead letter')
    else
      this.logger.warn(
        { ...fields, retryAt: new Date(verdict.retryAt).toISOString() },
        'delivery attempt failed; will retry',
      )
  }

  /** Resolves once nothing due remains and nothing is in flight. */
  drained(): Promise<void> {
    if (this.idle()) return Promise.resolve()
    return new Promise((resolve) => this.drainWaiters.push(resolve))
  }

  protected checkDrained(): void {
    if (this.drainWaiters.length === 0 || !this.idle()) return
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** Abort whatever is still running (close gave up waiting). */
  protected abandonInFlight(): void {
    if (this.sweepTimer) clearTimeout(this.sweepTimer)
    this.sweepTimer = undefined
    this.sweepAt = Infinity
    for (const attempt of this.inFlight) {
      attempt.done = true
      attempt.abort(new Error('the bus closed before this attempt finished'))
    }
    this.inFlight.clear()
  }

  abstract statusOf(event: HeraldEvent): DeliveryStatus | undefined
}
