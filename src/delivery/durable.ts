import { describeError, isHeraldError } from '../errors.js'
import type { HeraldEvent } from '../event.js'
import type { Settlement, Store, SubscriptionRecord, SubscriptionSpec } from '../stores/store.js'
import type { Attempt } from './attempt.js'
import { Worker, type DeliveryStatus, type WorkerSpec } from './worker.js'

export interface DurableWorkerOptions {
  store: Store
  /** This bus's name for itself when it leases deliveries. */
  consumer: string
  /** How long a lease lasts; renewed while the attempt runs, so a dead consumer's deliveries come back after at most this. */
  leaseMs: number
  /** How often an idle subscription looks at the store anyway (retries falling due elsewhere, redrives, expired leases). */
  pollMs: number
}

/** A claim failed (store unreachable): try again after this long. */
const CLAIM_RETRY_MS = 1000

/**
 * A subscription whose deliveries live in the store: it claims them (leased, so that several
 * processes share the work and a dead one's deliveries come back), runs them, and settles the
 * outcome. Claims ask only for as many deliveries as there are free slots, so everything leased
 * is really in flight.
 */
export class DurableWorker extends Worker {
  readonly durable = true as const
  private readonly store: Store
  private readonly consumer: string
  private readonly leaseMs: number
  private readonly pollMs: number
  private opened: Promise<SubscriptionRecord> | undefined
  private meta: Record<string, unknown> | undefined
  private stopped = false
  /** Detached from this process (unsubscribed, or the bus closed after its drain). */
  private disposed = false
  private claiming = false
  private wanted = false
  private pumpScheduled = false
  private settlements: Settlement[] = []
  private flushing: Promise<void> | undefined
  private dueTimer: ReturnType<typeof setTimeout> | undefined
  private dueAt = Infinity
  private pollTimer: ReturnType<typeof setInterval> | undefined
  private renewTimer: ReturnType<typeof setInterval> | undefined

  constructor(spec: WorkerSpec, options: DurableWorkerOptions) {
    super(spec)
    this.store = options.store
    this.consumer = options.consumer
    this.leaseMs = options.leaseMs
    this.pollMs = options.pollMs
  }

  /** Creates or updates the subscription in the store, then starts claiming. */
  open(now: number, meta?: Record<string, unknown>): Promise<SubscriptionRecord> {
    this.meta = meta
    this.opened ??= this.store.openSubscription(this.spec(), now).then((record) => {
      // Unsubscribed while the store was creating it: nothing to start, no timers to leak.
      if (this.stopped) return record
      this.pollTimer = setInterval(this.wake, this.pollMs)
      this.pollTimer.unref?.()
      this.renewTimer = setInterval(this.renew, Math.max(10, Math.floor(this.leaseMs / 3)))
      this.renewTimer.unref?.()
      this.wake()
      return record
    })
    return this.opened
  }

  private spec(): SubscriptionSpec {
    const spec: SubscriptionSpec = { tenant: this.tenant, id: this.id, patterns: [...this.patterns] }
    if (this.sender !== undefined) spec.sender = this.sender
    if (this.meta !== undefined) spec.meta = this.meta
    return spec
  }

  /** Writes the current patterns to the store (after `setPatterns`), keeping the cursor and meta. */
  storePatterns(now: number): Promise<SubscriptionRecord> {
    return this.store.openSubscription(this.spec(), now)
  }

  offer(event: HeraldEvent): void {
    if (this.senderAccepts(event)) this.wake()
  }

  readonly wake = (): void => {
    if (this.stopped || !this.opened) return
    this.wanted = true
    if (this.claiming || this.pumpScheduled) return
    this.pumpScheduled = true
    // Coalesce: many wakes in one tick become one claim, which then takes a whole batch.
    setImmediate(this.pump)
  }

  private readonly pump = async (): Promise<void> => {
    this.pumpScheduled = false
    if (this.claiming) return
    this.claiming = true
    try {
      while (this.wanted && !this.stopped && this.inFlight.size < this.policy.concurrency) {
        this.wanted = false
        const now = Date.now()
        const result = await this.store.claim(this.tenant, this.id, {
          consumer: this.consumer,
          limit: this.policy.concurrency - this.inFlight.size,
          leaseMs: this.leaseMs,
          now,
          match: this.matches,
        })
        // Leased means due: even if the bus began closing during the claim, these run (close waits
        // for them). Not once the subscription is detached: its handler is not to be called any
        // more, and the leases expire and bring the deliveries back to whoever attaches it.
        for (const delivery of result.deliveries) {
          if (this.disposed) break
          this.run(delivery.event, delivery.attempt)
        }
        if (result.nextDueAt !== undefined) this.armDue(result.nextDueAt)
        if (result.more) this.wanted = true
      }
    } catch (error) {
      if (isHeraldError(error, 'not_found')) {
        // Another process unsubscribed it: nothing is owed any more, so stop asking.
        this.logger.warn(
          { subscriptionId: this.id },
          'the durable subscription was deleted from the store; this process stops delivering it',
        )
        this.stop()
      } else {
        this.logger.error(
          { subscriptionId: this.id, error: describeError(error) },
          'claiming deliveries failed; will try again',
        )
        this.armDue(Date.now() + CLAIM_RETRY_MS)
      }
    } finally {
      this.claiming = false
      this.checkDrained()
    }
  }

  private armDue(at: number): void {
    if (at >= this.dueAt) return
    if (this.dueTimer) clearTimeout(this.dueTimer)
    this.dueAt = at
    this.dueTimer = setTimeout(
      () => {
        this.dueTimer = undefined
        this.dueAt = Infinity
        this.wake()
      },
      Math.max(0, at - Date.now()),
    )
  }

  private readonly renew = (): void => {
    if (this.inFlight.size === 0) return
    const seqs = [...this.inFlight].map((attempt) => attempt.event.seq!)
    this.store.renew(this.tenant, this.id, this.consumer, seqs, Date.now() + this.leaseMs).then(
      (lost) => {
        if (lost.length > 0) {
          this.logger.warn(
            { subscriptionId: this.id, seqs: lost },
            'lost the lease of deliveries still running; another consumer may deliver them too',
          )
        }
      },
      (error: unknown) =>
        this.logger.warn({ subscriptionId: this.id, error: describeError(error) }, 'renewing leases failed'),
    )
  }

  protected onSuccess(attempt: Attempt): void {
    this.observe(attempt, undefined)
    this.record({ seq: attempt.event.seq!, outcome: 'delivered' })
  }

  protected onFailure(attempt: Attempt, error: unknown): void {
    const verdict = this.verdict(attempt, error)
    this.logFailure(attempt, verdict)
    const seq = attempt.event.seq!
    this.record(
      'dead' in verdict
        ? { seq, outcome: 'dead', error: verdict.error }
        : { seq, outcome: 'retry', retryAt: verdict.retryAt, error: verdict.error },
    )
  }

  private record(settlement: Settlement): void {
    this.settlements.push(settlement)
    this.scheduleFlush()
    this.wake()
  }

  private scheduleFlush(): void {
    if (this.flushing) return
    this.flushing = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      while (this.settlements.length > 0) {
        const batch = this.settlements
        this.settlements = []
        try {
          await this.store.settle(this.tenant, this.id, this.consumer, batch, Date.now())
        } catch (error) {
          // The leases will expire and the deliveries come back: at least once, never lost.
          this.logger.error(
            { subscriptionId: this.id, deliveries: batch.length, error: describeError(error) },
            'recording delivery outcomes failed',
          )
        }
      }
      this.flushing = undefined
      this.wake()
      this.checkDrained()
    })
  }

  statusOf(): DeliveryStatus | undefined {
    return undefined // durable status comes from the store, for every process's subscriptions alike
  }

  stop(): void {
    this.stopped = true
  }

  protected idle(): boolean {
    return this.inFlight.size === 0 && !this.claiming && this.settlements.length === 0 && !this.flushing
  }

  async dispose(): Promise<void> {
    this.stop()
    this.disposed = true
    for (const timer of [this.dueTimer, this.pollTimer, this.renewTimer]) if (timer) clearTimeout(timer)
    this.abandonInFlight()
    if (this.flushing) await this.flushing
    if (this.settlements.length > 0) this.scheduleFlush()
    if (this.flushing) await this.flushing
  }
}
