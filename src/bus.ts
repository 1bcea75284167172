import { now as clock, turn as currentTurn } from './clock.js'
import { DurableWorker } from './delivery/durable.js'
import { LiveWorker } from './delivery/live.js'
import { DEFAULT_RETRY_POLICY, resolveRetryPolicy, type RetryPolicy } from './delivery/policy.js'
import type { Handler } from './delivery/attempt.js'
import type { AttemptReport, DeliveryObserver, DeliveryStatus } from './delivery/worker.js'
import { HeraldError, describeError } from './errors.js'
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_TENANT,
  assertTenant,
  prepareBatch,
  senderMatches,
  tenantKey,
  type EventInput,
  type HeraldEvent,
  type PreparedBatch,
  type Tenant,
} from './event.js'
import { ulid } from './ids.js'
import { consoleLogger, type Logger } from './logger.js'
import { memoryStore } from './stores/memory.js'
import type { AppendOptions, DeliveryRecord, Store, SubscriptionRecord } from './stores/store.js'
import { TailReceiver, type Receiver, type Tail, type TailOptions } from './tail.js'
import { TopicIndex, compileMatcher, splitPatterns } from './topic.js'

export interface BusOptions {
  /** Where events and durable delivery state live (default: `memoryStore()`). */
  store?: Store
  /** The retry policy of subscriptions that do not give their own (fields default to DEFAULT_RETRY_POLICY). */
  retry?: Partial<RetryPolicy>
  /** How long a publisher-supplied event id is remembered, in ms (default 5 minutes). */
  dedupeWindow?: number
  /** How long grouped events wait for release before they expire, in ms (default 10 minutes). */
  groupTtl?: number
  /** Largest event (data + metadata as JSON), in bytes (default 1 MiB). */
  maxPayloadBytes?: number
  /** How long `close()` waits for deliveries already due, in ms (default 10 s). */
  drainTimeout?: number
  /** Lease on a durable delivery, renewed while it runs; a crashed process's deliveries return after it (default 30 s). */
  leaseTime?: number
  /** How often a durable subscription checks the store when nothing woke it, in ms (default 1 s). */
  pollInterval?: number
  logger?: Logger
  /** Close the store when the bus closes (default true). */
  closeStore?: boolean
  /** Told of publishes and delivery attempts, for metrics. Must not throw or block. */
  observer?: BusObserver
}

export interface BusObserver extends Partial<DeliveryObserver> {
  /** Events this bus stored (by emit or by releasing a group), in log order. */
  published?(events: readonly HeraldEvent[]): void
}

export const BUS_DEFAULTS = Object.freeze({
  dedupeWindow: 5 * 60_000,
  groupTtl: 10 * 60_000,
  maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
  drainTimeout: 10_000,
  leaseTime: 30_000,
  pollInterval: 1_000,
})

export interface SubscribeOptions {
  /** Names the subscription; on the store it makes it durable and shared by every bus using that id. */
  subscriberId?: string
  /** Only events from this sender (an `@version` suffix is ignored on either side). */
  sender?: string
  retry?: Partial<RetryPolicy>
  /** Kept with a durable subscription in the store (a webhook's URL, say); returned by `subscriptions()`. JSON. */
  meta?: Record<string, unknown>
}

export interface UnsubscribeOptions {
  subscriberId?: string
  /**
   * Detach the durable subscription from this process but keep it in the store, cursor and
   * deliveries included (to re-subscribe it with another handler or meta). Default false: forget it.
   */
  keep?: boolean
}

/** Medusa's emit-level options; accepted for compatibility, not used by the core. */
export type EmitOptions = Record<string, unknown>

export interface EventStatus {
  event: HeraldEvent
  deliveries: DeliveryStatus[]
}

export interface DeadLetter {
  /** Opaque; pass it to `redrive` or `delete`. */
  id: string
  subscriptionId: string
  durable: boolean
  event: HeraldEvent
  attempts: number
  lastError: string
  failedAt: string
}

export interface DeadLetterQuery {
  subscriptionId?: string
  limit?: number
}

export interface DeadLetters {
  list(query?: DeadLetterQuery): Promise<DeadLetter[]>
  /** Delivers the event to its subscription again, with a fresh set of attempts. */
  redrive(id: string): Promise<boolean>
  delete(id: string): Promise<boolean>
}

/** The bus API bound to one tenant. */
export interface EventBus {
  readonly tenant: Tenant
  emit<T = unknown>(events: EmitInput<T> | readonly EmitInput<T>[], options?: EmitOptions): Promise<string[]>
  subscribe<T = unknown>(
    patterns: string | readonly string[],
    handler: Handler<T>,
    options?: SubscribeOptions,
  ): this
  unsubscribe<T = unknown>(
    patterns: string | readonly string[],
    handler?: Handler<T>,
    options?: UnsubscribeOptions,
  ): this
  releaseGroupedEvents(groupId: string): Promise<void>
  clearGroupedEvents(groupId: string, options?: { eventNames?: readonly string[] }): Promise<void>
  status(eventId: string): Promise<EventStatus | undefined>
  readonly deadLetters: DeadLetters
  /** Durable subscriptions of this tenant in the store, whether or not attached in this process. */
  subscriptions(): Promise<SubscriptionInfo[]>
  /**
   * The seq of this tenant's newest stored event ('' for an empty log): a position that a stream
   * can resume from without a gap, before it has seen any event.
   */
  head(): Promise<string>
  /**
   * Hands each stored event matching `patterns` to `listener`, synchronously and in log order,
   * from the next one stored (or replaying after `since`). For streams; no retries.
   */
  tail(
    patterns: string | readonly string[],
    listener: (event: HeraldEvent) => void,
    options?: TailOptions,
  ): Tail
  scope(tenant: Tenant): EventBus
}

export interface SubscriptionInfo extends SubscriptionRecord {
  /** A handler for it is attached in this process. */
  attached: boolean
}

export interface Bus extends EventBus {
  readonly store: Store
  /** Durable subscriptions of every tenant (for a server restoring its webhooks at start). */
  allSubscriptions(): Promise<SubscriptionInfo[]>
  /** Refuses new emits, waits (up to `drainTimeout`) for deliveries already due, then closes the store. */
  close(): Promise<void>
}

export type EmitInput<T = unknown> = EventInput<T>

const SUBSCRIBER_ID = /^[^\s\u0000-\u001f]{1,256}$/

interface TenantRuntime {
  tenant: Tenant
  index: TopicIndex<Receiver>
  workers: Map<string, LiveWorker | DurableWorker>
  tails: Set<TailReceiver>
}

interface Settings {
  policy: RetryPolicy
  dedupeWindow: number
  groupTtl: number
  maxPayloadBytes: number
  drainTimeout: number
  leaseTime: number
  pollInterval: number
  logger: Logger
  closeStore: boolean
  observer: BusObserver | undefined
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HeraldError(
      'invalid_option',
      `${name} must be a positive number of milliseconds, got ${JSON.stringify(value)}`,
    )
  }
  return value
}

/** State shared by the root bus and every scope of it. */
class BusCore {
  readonly store: Store
  readonly settings: Settings
  readonly consumer = `bus_${ulid()}`
  readonly runtimes = new Map<string, TenantRuntime>()
  readonly scopes = new Map<string, ScopedBus>()
  readonly scopesByObject = new WeakMap<Tenant, ScopedBus>()
  closed = false
  closing: Promise<void> | undefined
  /** Durable subscriptions being created: an emit waits for them, so they owe it. */
  private readonly opening = new Set<Promise<unknown>>()
  private readonly unwatch: () => void

  constructor(options: BusOptions) {
    this.store = options.store ?? memoryStore()
    this.settings = {
      policy: resolveRetryPolicy(options.retry, DEFAULT_RETRY_POLICY),
      dedupeWindow: positive('dedupeWindow', options.dedupeWindow, BUS_DEFAULTS.dedupeWindow),
      groupTtl: positive('groupTtl', options.groupTtl, BUS_DEFAULTS.groupTtl),
      maxPayloadBytes: positive('maxPayloadBytes', options.maxPayloadBytes, BUS_DEFAULTS.maxPayloadBytes),
      drainTimeout: positive('drainTimeout', options.drainTimeout, BUS_DEFAULTS.drainTimeout),
      leaseTime: positive('leaseTime', options.leaseTime, BUS_DEFAULTS.leaseTime),
      pollInterval: positive('pollInterval', options.pollInterval, BUS_DEFAULTS.pollInterval),
      logger: options.logger ?? consoleLogger,
      closeStore: options.closeStore ?? true,
      observer: options.observer,
    }
    // Durable subscriptions claim their events from the store and need only a wake-up; live
    // subscriptions and tails need the events themselves. Saying which tenants need them lets a
    // shared store skip reading back what other processes appended elsewhere.
    this.unwatch = this.store.watch(this.dispatch, { needs: this.needsEvents, appended: this.wakeDurable })
  }

  private readonly needsEvents = (tenant: string): boolean => {
    const runtime = this.runtimes.get(tenant)
    if (!runtime || runtime.index.size === 0) return false
    if (runtime.tails.size > 0) return true
    for (const worker of runtime.workers.values()) if (!worker.durable) return true
    return false
  }

  private readonly wakeDurable = (tenant: string): void => {
    const runtime = this.runtimes.get(tenant)
    if (runtime) for (const worker of runtime.workers.values()) if (worker.durable) worker.wake()
  }

  runtime(tenant: Tenant): TenantRuntime {
    const key = tenantKey(tenant)
    let runtime = this.runtimes.get(key)
    if (!runtime)
      this.runtimes.set(
        key,
        (runtime = { tenant, index: new TopicIndex(), workers: new Map(), tails: new Set() }),
      )
    return runtime
  }

  private lastRuntime: TenantRuntime | undefined

  /** A dispatch is running; batches stored meanwhile (a handler that emits) wait their turn. */
  private dispatching = false
  private readonly waiting: (readonly HeraldEvent[])[] = []

  /**
   * Every stored event passes here once, in log order: a handler that emits synchronously stores
   * its events after the running batch, so they reach every subscriber after that batch too.
   */
  private readonly dispatch = (events: readonly HeraldEvent[]): void => {
    if (this.dispatching) {
      this.waiting.push(events)
      return
    }
    this.dispatching = true
    try {
      this.dispatchNow(events)
      for (let next = this.waiting.shift(); next; next = this.waiting.shift()) this.dispatchNow(next)
    } finally {
      this.dispatching = false
    }
  }

  /** The index finds the subscriptions that want each event. */
  private dispatchNow(events: readonly HeraldEvent[]): void {
    // A coarse reading may be as old as the running turn, so attempts started here take their
    // deadlines from the turn's end instead (never early); the reading is only their lower bound.
    const now = clock()
    const turn = currentTurn()
    // Consecutive events mostly share a tenant, whose strings are then the very same objects.
    let runtime = this.lastRuntime
    for (let e = 0; e < events.length; e++) {
      const event = events[e]!
      if (
        runtime === undefined ||
        event.account !== runtime.tenant.account ||
        event.workspace !== runtime.tenant.workspace
      ) {
        runtime = this.runtimes.get(`${event.account}/${event.workspace}`)
        if (runtime) this.lastRuntime = runtime
      }
      if (!runtime || runtime.index.size === 0) continue
      const receivers = runtime.index.match(event.topic)
      for (let i = 0; i < receivers.length; i++) receivers[i]!.offer(event, now, turn)
    }
  }

  describe(records: SubscriptionRecord[]): SubscriptionInfo[] {
    return records.map((record) => ({
      ...record,
      attached:
        this.runtimes.get(`${record.account}/${record.workspace}`)?.workers.get(record.id)?.durable === true,
    }))
  }

  /** Tells the observer about events this bus stored. */
  published(events: readonly HeraldEvent[]): void {
    const observer = this.settings.observer
    if (observer === undefined || !observer.published || events.length === 0) return
    try {
      observer.published(events)
    } catch (error) {
      this.settings.logger.warn({ error: describeError(error) }, 'bus observer threw')
    }
  }

  deliveryObserver(): DeliveryObserver | undefined {
    const attempted = this.settings.observer?.attempted
    return attempted
      ? { attempted: (report: AttemptReport) => attempted.call(this.settings.observer, report) }
      : undefined
  }

  assertOpen(): void {
    if (this.closed) throw new HeraldError('closed', 'the bus is closed')
  }

  track(promise: Promise<unknown>): void {
    const tracked: Promise<unknown> = promise.then(
      (): unknown => this.opening.delete(tracked),
      (): unknown => this.opening.delete(tracked),
    )
    this.opening.add(tracked)
  }

  /** Resolves once durable subscriptions created so far exist in the store. */
  settled(): Promise<unknown> | undefined {
    return this.opening.size === 0 ? undefined : Promise.all(this.opening)
  }

  /**
   * Resolves once the last log write that had to wait its turn (see `inTurn`) has been handed to
   * the store; undefined when none waits.
   */
  private waitingWrite: Promise<void> | undefined

  /** A log write made now would have to wait its turn. */
  writesWait(): boolean {
    return this.opening.size > 0 || this.waitingWrite !== undefined
  }

  /**
   * Runs a log write (emit, release, clear) now, or, while durable subscriptions are being
   * created or earlier writes wait for them, after all of those: writes reach the store in the
   * order they were made, so a later emit never takes an earlier seq and a clear is never
   * overtaken by the release after it. Undefined when nothing is waiting: run at once.
   *
   * A write waits for the one before it to be handed to the store, not to complete: stores take
   * writes in the order they are handed them (as they do every write that does not wait), and
   * waiting for each to commit would leave one write per commit for as long as publishers keep
   * the queue busy.
   */
  inTurn<T>(write: () => Promise<T>): Promise<T> | undefined {
    const pending = this.settled()
    const before = this.waitingWrite
    if (pending === undefined && before === undefined) return undefined
    const turn = pending && before ? Promise.all([pending, before]) : (pending ?? before)!
    let handedOver!: () => void
    const issued = new Promise<void>((resolve) => (handedOver = resolve))
    const result = turn.then(() => {
      try {
        return write() // hands the write to the store before it returns
      } finally {
        handedOver()
      }
    })
    this.waitingWrite = issued
    void issued.then(() => {
      if (this.waitingWrite === issued) this.waitingWrite = undefined
    })
    return result
  }

  async close(): Promise<void> {
    this.closed = true
    const workers = [...this.runtimes.values()].flatMap((runtime) => [...runtime.workers.values()])
    for (const runtime of this.runtimes.values()) for (const tail of [...runtime.tails]) tail.close()
    for (const worker of workers) worker.stop()
    await this.settled()
    let timer: ReturnType<typeof setTimeout> | undefined
    const drained = await Promise.race([
      Promise.all(workers.map((worker) => worker.drained())).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(resolve, this.settings.drainTimeout, false))),
    ])
    if (timer) clearTimeout(timer)
    if (!drained) {
      this.settings.logger.warn(
        { drainTimeout: this.settings.drainTimeout },
        'close: deliveries still running after the drain timeout were abandoned',
      )
    }
    await Promise.all(workers.map((worker) => worker.dispose()))
    this.unwatch()
    if (this.settings.closeStore) await this.store.close()
  }
}

function idsOf(events: readonly HeraldEvent[]): string[] {
  if (events.length === 1) return [events[0]!.id]
  const ids = new Array<string>(events.length)
  for (let i = 0; i < events.length; i++) ids[i] = events[i]!.id
  return ids
}

function encodeDeadLetterId(subscriptionId: string, seq: string): string {
  return Buffer.from(`${subscriptionId}\n${seq}`, 'utf8').toString('base64url')
}

function decodeDeadLetterId(id: string): { subscriptionId: string; seq: string } | undefined {
  if (typeof id !== 'string' || id.length === 0) return undefined
  const text = Buffer.from(id, 'base64url').toString('utf8')
  const newline = text.lastIndexOf('\n')
  if (newline <= 0) return undefined
  return { subscriptionId: text.slice(0, newline), seq: text.slice(newline + 1) }
}

function statusFromRecord(
  subscription: SubscriptionRecord,
  record: DeliveryRecord | undefined,
  seq: string,
): DeliveryStatus {
  const base = { subscriptionId: subscription.id, durable: true }
  if (record?.state === 'delivered') return { ...base, state: 'delivered' }
  if (!record)
    return subscription.cursor >= seq
      ? { ...base, state: 'delivered' }
      : { ...base, state: 'pending', attempts: 0 }
  const status: DeliveryStatus = { ...base, state: 'pending', attempts: record.attempts }
  if (record.lastError !== undefined) status.lastError = record.lastError
  if (record.state === 'dead') status.state = 'dead'
  else if (record.state === 'retrying') {
    status.state = record.attempts === 0 ? 'pending' : 'retrying'
    if (record.nextAttemptAt !== undefined)
      status.nextAttemptAt = new Date(record.nextAttemptAt).toISOString()
  } else if (record.attempts > 1) status.state = 'retrying'
  return status
}

class ScopedBus implements EventBus {
  readonly tenant: Tenant
  readonly deadLetters: DeadLetters
  private readonly prepareOptions: { maxPayloadBytes: number; now: number }
  private readonly syncAppendOptions: AppendOptions

  constructor(
    protected readonly core: BusCore,
    tenant: Tenant,
  ) {
    this.tenant = Object.freeze({ ...tenant })
    this.prepareOptions = { maxPayloadBytes: core.settings.maxPayloadBytes, now: 0 }
    this.syncAppendOptions = {
      now: 0,
      dedupeWindowMs: core.settings.dedupeWindow,
      groupTtlMs: core.settings.groupTtl,
    }
    this.deadLetters = {
      list: (query) => this.listDeadLetters(query),
      redrive: (id) => this.redrive(id),
      delete: (id) => this.deleteDeadLetter(id),
    }
  }

  get store(): Store {
    return this.core.store
  }

  scope(tenant: Tenant): EventBus {
    // Transports scope every request by the same tenant object (a token's): skip re-validating it.
    const known = this.core.scopesByObject.get(tenant)
    if (known && known.tenant.account === tenant.account && known.tenant.workspace === tenant.workspace)
      return known
    const checked = assertTenant(tenant)
    const key = tenantKey(checked)
    let scoped = this.core.scopes.get(key)
    if (!scoped) this.core.scopes.set(key, (scoped = new ScopedBus(this.core, checked)))
    this.core.scopesByObject.set(tenant, scoped)
    return scoped
  }

  emit<T = unknown>(
    events: EmitInput<T> | readonly EmitInput<T>[],
    _options?: EmitOptions,
  ): Promise<string[]> {
    const core = this.core
    let batch: PreparedBatch
    const now = clock()
    try {
      core.assertOpen()
      // Reused: prepareBatch reads it synchronously and keeps nothing.
      const options = this.prepareOptions
      options.now = now
      batch = prepareBatch(events, this.tenant, options)
    } catch (error) {
      return Promise.reject(error)
    }
    // Taken now: the store may hand the events array on as its result.
    const ids = idsOf(batch.events)
    if (ids.length === 0) return Promise.resolve(ids)
    // The common case checks two fields and makes no closure.
    if (core.writesWait()) return core.inTurn(() => this.append(batch, ids, now))!
    const store = core.store
    if (store.appendNow) {
      // A store that appends without I/O saves the promise and the tick of an async append.
      try {
        // A synchronous append keeps nothing of its options, so one object serves every call.
        const options = this.syncAppendOptions
        options.now = now
        core.published(store.appendNow(this.tenant, batch, options))
      } catch (error) {
        return Promise.reject(error)
      }
      return Promise.resolve(ids)
    }
    return this.append(batch, ids, now)
  }

  private appendOptions(now: number): AppendOptions {
    const { dedupeWindow, groupTtl } = this.core.settings
    return { now, dedupeWindowMs: dedupeWindow, groupTtlMs: groupTtl }
  }

  private append(batch: PreparedBatch, ids: string[], now: number): Promise<string[]> {
    return this.core.store.append(this.tenant, batch, this.appendOptions(now)).then((result) => {
      this.core.published(result.appended)
      return ids
    })
  }

  subscribe<T = unknown>(
    patterns: string | readonly string[],
    handler: Handler<T>,
    options: SubscribeOptions = {},
  ): this {
    this.core.assertOpen()
    if (typeof handler !== 'function') throw new HeraldError('invalid_option', 'handler must be a function')
    const list = splitPatterns(patterns)
    const { subscriberId, sender } = options
    if (
      subscriberId !== undefined &&
      (typeof subscriberId !== 'string' || !SUBSCRIBER_ID.test(subscriberId))
    ) {
      throw new HeraldError('invalid_option', 'subscriberId must be 1-256 characters without whitespace')
    }
    if (sender !== undefined && (typeof sender !== 'string' || sender.length === 0)) {
      throw new HeraldError('invalid_option', 'sender must be a non-empty string')
    }
    const runtime = this.core.runtime(this.tenant)
    const id = subscriberId ?? `sub_${ulid()}`
    if (runtime.workers.has(id)) {
      throw new HeraldError(
        'duplicate_subscription',
        `subscription ${JSON.stringify(id)} is already attached in ${tenantKey(this.tenant)}`,
      )
    }
    const { settings } = this.core
    const spec = {
      id,
      tenant: this.tenant,
      patterns: list,
      sender,
      handler: handler as Handler,
      policy: resolveRetryPolicy(options.retry, settings.policy),
      logger: settings.logger,
      observer: this.core.deliveryObserver(),
    }
    let worker: LiveWorker | DurableWorker
    if (subscriberId === undefined) worker = new LiveWorker(spec)
    else {
      const durable = new DurableWorker(spec, {
        store: this.core.store,
        consumer: this.core.consumer,
        leaseMs: settings.leaseTime,
        pollMs: settings.pollInterval,
      })
      const opened = durable.open(Date.now(), options.meta)
      this.core.track(opened)
      opened.catch((error: unknown) =>
        settings.logger.error(
          { subscriptionId: id, error: describeError(error) },
          'creating the durable subscription in the store failed',
        ),
      )
      worker = durable
    }
    runtime.workers.set(id, worker)
    for (const pattern of list) runtime.index.add(pattern, worker)
    return this
  }

  unsubscribe<T = unknown>(
    patterns: string | readonly string[],
    handler?: Handler<T>,
    options: UnsubscribeOptions = {},
  ): this {
    const runtime = this.core.runtimes.get(tenantKey(this.tenant))
    if (options.subscriberId !== undefined) {
      const worker = runtime?.workers.get(options.subscriberId)
      if (worker && (handler === undefined || worker.handler === handler))
        this.detach(runtime!, worker, options.keep !== true)
      else if (!worker && options.keep !== true) {
        // Not attached here, but it may exist in the store (created by an earlier run): remove it there.
        this.core.track(this.core.store.deleteSubscription(this.tenant, options.subscriberId))
      }
      return this
    }
    if (!runtime || handler === undefined) return this
    const list = splitPatterns(patterns)
    for (const worker of [...runtime.workers.values()]) {
      if (worker.handler !== handler) continue
      const remaining = worker.patterns.filter((pattern) => !list.includes(pattern))
      if (remaining.length === worker.patterns.length) continue
      if (remaining.length === 0) this.detach(runtime, worker, true)
      else {
        for (const pattern of worker.patterns)
          if (!remaining.includes(pattern)) runtime.index.remove(pattern, worker)
        worker.setPatterns(remaining)
        // Claims filter by the worker's patterns; the store's record must say the same to others.
        if (worker.durable) this.core.track(worker.storePatterns(Date.now()))
      }
    }
    return this
  }

  private detach(runtime: TenantRuntime, worker: LiveWorker | DurableWorker, forget: boolean): void {
    runtime.workers.delete(worker.id)
    for (const pattern of worker.patterns) runtime.index.remove(pattern, worker)
    worker.stop()
    void worker.dispose()
    if (forget && worker.durable) this.core.track(this.core.store.deleteSubscription(this.tenant, worker.id))
  }

  tail(
    patterns: string | readonly string[],
    listener: (event: HeraldEvent) => void,
    options: TailOptions = {},
  ): Tail {
    this.core.assertOpen()
    if (typeof listener !== 'function') throw new HeraldError('invalid_option', 'listener must be a function')
    const list = splitPatterns(patterns)
    const runtime = this.core.runtime(this.tenant)
    const tail = new TailReceiver(
      list,
      listener,
      options,
      { store: this.core.store, tenant: this.tenant, logger: this.core.settings.logger },
      (closed) => {
        runtime.tails.delete(closed)
        for (const pattern of list) runtime.index.remove(pattern, closed)
      },
    )
    runtime.tails.add(tail)
    for (const pattern of list) runtime.index.add(pattern, tail)
    return tail
  }

  async head(): Promise<string> {
    this.core.assertOpen()
    return (await this.core.store.head(this.tenant)) ?? ''
  }

  async subscriptions(): Promise<SubscriptionInfo[]> {
    this.core.assertOpen()
    await this.core.settled() // those being created count, as they do for emit
    return this.core.describe(await this.core.store.listSubscriptions(this.tenant))
  }

  async releaseGroupedEvents(groupId: string): Promise<void> {
    this.core.assertOpen()
    if (typeof groupId !== 'string' || groupId === '')
      throw new HeraldError('invalid_option', 'groupId must be a non-empty string')
    const release = () => this.core.store.releaseGroup(this.tenant, groupId, Date.now())
    this.core.published(await (this.core.inTurn(release) ?? release()))
  }

  async clearGroupedEvents(groupId: string, options: { eventNames?: readonly string[] } = {}): Promise<void> {
    this.core.assertOpen()
    if (typeof groupId !== 'string' || groupId === '')
      throw new HeraldError('invalid_option', 'groupId must be a non-empty string')
    const names = options.eventNames
    if (names !== undefined && (!Array.isArray(names) || names.some((name) => typeof name !== 'string'))) {
      throw new HeraldError('invalid_option', 'eventNames must be an array of topics')
    }
    const clear = () =>
      this.core.store.clearGroup(this.tenant, groupId, names && names.length > 0 ? names : undefined)
    await (this.core.inTurn(clear) ?? clear())
  }

  async status(eventId: string): Promise<EventStatus | undefined> {
    this.core.assertOpen()
    const event = await this.core.store.getEvent(this.tenant, eventId)
    if (!event || event.seq === undefined) return undefined
    const deliveries: DeliveryStatus[] = []
    const runtime = this.core.runtimes.get(tenantKey(this.tenant))
    for (const worker of runtime?.workers.values() ?? []) {
      const status = worker.statusOf(event)
      if (status) deliveries.push(status)
    }
    const [subscriptions, records] = await Promise.all([
      this.core.store.listSubscriptions(this.tenant),
      this.core.store.deliveryRecords(this.tenant, event.seq),
    ])
    for (const subscription of subscriptions) {
      if (event.seq <= subscription.startSeq) continue
      if (
        !compileMatcher(subscription.patterns)(event.topic) ||
        !senderMatches(subscription.sender, event.sender)
      )
        continue
      const record = records.find((r) => r.subscriptionId === subscription.id)
      deliveries.push(statusFromRecord(subscription, record, event.seq))
    }
    return { event, deliveries }
  }

  private liveWorkers(): LiveWorker[] {
    const runtime = this.core.runtimes.get(tenantKey(this.tenant))
    return [...(runtime?.workers.values() ?? [])].filter((worker): worker is LiveWorker => !worker.durable)
  }

  private async listDeadLetters(query: DeadLetterQuery = {}): Promise<DeadLetter[]> {
    this.core.assertOpen()
    const limit = query.limit ?? 100
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
      throw new HeraldError('invalid_option', 'limit must be an integer from 1 to 10000')
    const out: DeadLetter[] = []
    for (const worker of this.liveWorkers()) {
      if (query.subscriptionId !== undefined && worker.id !== query.subscriptionId) continue
      for (const dead of worker.deadLetters()) {
        out.push({
          id: encodeDeadLetterId(worker.id, dead.event.seq!),
          subscriptionId: worker.id,
          durable: false,
          event: dead.event,
          attempts: dead.attempts,
          lastError: dead.lastError,
          failedAt: new Date(dead.failedAt).toISOString(),
        })
      }
    }
    const stored = await this.core.store.listDeadLetters(this.tenant, {
      limit,
      ...(query.subscriptionId !== undefined ? { subscriptionId: query.subscriptionId } : {}),
    })
    for (const record of stored) {
      out.push({
        id: encodeDeadLetterId(record.subscriptionId, record.seq),
        subscriptionId: record.subscriptionId,
        durable: true,
        event: record.event,
        attempts: record.attempts,
        lastError: record.lastError ?? '',
        failedAt: new Date(record.updatedAt).toISOString(),
      })
    }
    out.sort((a, b) => (a.event.seq! < b.event.seq! ? -1 : a.event.seq! > b.event.seq! ? 1 : 0))
    return out.slice(0, limit)
  }

  private async redrive(id: string): Promise<boolean> {
    this.core.assertOpen()
    const key = decodeDeadLetterId(id)
    if (!key) return false
    const runtime = this.core.runtimes.get(tenantKey(this.tenant))
    const worker = runtime?.workers.get(key.subscriptionId)
    if (worker && !worker.durable) return worker.redrive(key.seq)
    const redriven = await this.core.store.redrive(this.tenant, key.subscriptionId, key.seq, Date.now())
    if (redriven && worker) worker.wake()
    return redriven
  }

  private async deleteDeadLetter(id: string): Promise<boolean> {
    this.core.assertOpen()
    const key = decodeDeadLetterId(id)
    if (!key) return false
    const worker = this.core.runtimes.get(tenantKey(this.tenant))?.workers.get(key.subscriptionId)
    if (worker && !worker.durable) return worker.deleteDeadLetter(key.seq)
    return this.core.store.deleteDeadLetter(this.tenant, key.subscriptionId, key.seq)
  }
}

class RootBus extends ScopedBus implements Bus {
  async allSubscriptions(): Promise<SubscriptionInfo[]> {
    this.core.assertOpen()
    await this.core.settled()
    return this.core.describe(await this.core.store.listSubscriptions())
  }

  close(): Promise<void> {
    this.core.closing ??= this.core.close()
    return this.core.closing
  }
}

/** Creates a bus over a store (an in-memory one by default), bound to the default tenant. */
export function createBus(options: BusOptions = {}): Bus {
  const core = new BusCore(options)
  const root = new RootBus(core, DEFAULT_TENANT)
  core.scopes.set(tenantKey(DEFAULT_TENANT), root)
  return root
}
