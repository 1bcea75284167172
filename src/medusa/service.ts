import type {
  IEventBusModuleService,
  InterceptorSubscriber,
  InternalModuleDeclaration,
  Message,
  ModuleJoinerConfig,
  Subscriber,
  SubscriberContext,
} from '@medusajs/framework/types'
import { createBus, type Bus, type EventBus, type SubscribeOptions } from '../bus.js'
import type { Handler, HandlerContext } from '../delivery/attempt.js'
import type { RetryPolicy } from '../delivery/policy.js'
import { HeraldError, describeError } from '../errors.js'
import { isoTime, prepareBatch, type EventInput, type HeraldEvent, type Tenant } from '../event.js'
import { now as clock } from '../clock.js'
import { ulid } from '../ids.js'
import { WILDCARD } from '../topic.js'
import { heraldLoggerFor, medusaLoggerFrom, type MedusaLogSink } from './logger.js'
import { emitSettings, toEventInput, toMedusaEvent, type EmitSettings } from './message.js'
import { eventNameOf, subscriptionIdFor } from './names.js'
import { openStore } from './open-store.js'
import { resolveOptions, type HeraldMedusaOptions } from './options.js'

/**
 * What `subscribe` accepts as its third argument: Medusa's `{ subscriberId }`, plus Herald's own
 * keys (a subscriber file's `config.context` is passed through by Medusa's loader, so they can be
 * set there too).
 */
export interface HeraldSubscriberContext extends Partial<SubscriberContext> {
  /** This subscriber's retry policy (fields default to the module's `retry`). */
  retry?: Partial<RetryPolicy>
  /** `false` keeps a subscriber with an id live (nothing kept in the store for it). */
  durable?: boolean
}

/** Medusa passes `worker_mode` in the module declaration; the rest of it is not used here. */
export type HeraldModuleDeclaration = Partial<Pick<InternalModuleDeclaration, 'worker_mode'>>

interface Registration {
  event: string
  /** Medusa's subscriber id (given, or generated like Medusa does). */
  id: string
  subscriber: Subscriber
  /** The Herald subscription id when durable. */
  subscriptionId: string | undefined
  /** The handler attached to the bus; undefined where this process does not run subscribers. */
  handler: Handler | undefined
}

interface Pending {
  message: Message
  settings: EmitSettings
  /** Emit time in ms; a Date is made from it only where Medusa hands one out. */
  createdMs: number
  /** The same instant as ISO, computed once per emit call. */
  createdIso: string
}

/** The container key Medusa resolves the Event Module by (`Modules.EVENT_BUS`). */
export const EVENT_BUS_MODULE = 'event_bus'

/** Release times of recent groups, for `published_at`; bounded, since groups come and go. */
const RELEASE_TIMES_KEPT = 1000

/**
 * Medusa v2's Event Module (`IEventBusModuleService`) over a Herald bus. Medusa constructs it as
 * it constructs every module service: `new Service(container, options, moduleDeclaration)`.
 *
 * Where Medusa's local and Redis modules drop or lose events, this one does not: every emitted
 * event is stored whether or not anyone listens yet, a subscriber with an id is a durable Herald
 * subscription (it gets what was emitted while its process was down), a failing subscriber is
 * retried on its own per the retry policy and ends as a dead letter, and a group is released
 * into the log in one atomic step.
 */
export class HeraldEventBusService implements IEventBusModuleService {
  /** The Herald bus behind the module, bound to its tenant: dead letters, delivery status, tail. */
  readonly bus: EventBus
  readonly __hooks = {
    onApplicationPrepareShutdown: (): Promise<void> => this.flushDelayed(),
    onApplicationShutdown: (): Promise<void> => this.close(),
  }

  private readonly root: Bus
  private readonly tenant: Tenant
  private readonly logger: MedusaLogSink
  /** Server instances of a shared store leave running subscribers to the workers, as Medusa's modes mean. */
  private readonly runsSubscribers: boolean
  /** A subscriber with an id is a durable subscription in the store (not on the module's own memory store: see `subscribe`). */
  private readonly durableIds: boolean
  private readonly maxPayloadBytes: number
  private readonly registrations = new Map<string, Registration[]>()
  private readonly interceptors = new Set<InterceptorSubscriber>()
  private readonly releaseTimes = new Map<string, Date>()
  private readonly delayed = new Map<ReturnType<typeof setTimeout>, Pending>()
  /** Durable subscriptions a server instance is creating in the store: emits wait for them. */
  private readonly opening = new Set<Promise<unknown>>()
  private readonly ignoredNoted = new Set<string>()
  private closing: Promise<void> | undefined

  constructor(
    container: unknown,
    options?: HeraldMedusaOptions,
    moduleDeclaration?: HeraldModuleDeclaration,
  ) {
    const settings = resolveOptions(options)
    this.logger = medusaLoggerFrom(container)
    const logger = heraldLoggerFor(this.logger)
    const { store, owned } = openStore(settings.store, {
      logger,
      ...(settings.prefix === undefined ? {} : { prefix: settings.prefix }),
    })
    this.root = createBus({
      store,
      closeStore: owned,
      retry: settings.retry,
      groupTtl: settings.groupTtlMs,
      maxPayloadBytes: settings.maxPayloadBytes,
      logger,
      observer: { published: (events) => this.published(events) },
      ...(settings.drainTimeout === undefined ? {} : { drainTimeout: settings.drainTimeout }),
    })
    this.tenant = settings.tenant
    this.bus = this.root.scope(settings.tenant)
    // A memory store lives in this process only: nobody else could run its subscribers.
    this.runsSubscribers = moduleDeclaration?.worker_mode !== 'server' || store.kind === 'memory'
    this.durableIds = !(store.kind === 'memory' && owned)
    this.maxPayloadBytes = settings.maxPayloadBytes
    if (store.kind === 'memory' && owned) {
      this.logger.warn(
        'herald: the Medusa event module uses the memory store; events do not survive a restart. Use a sqlite: or redis:// store in production.',
      )
    }
  }

  /**
   * What Medusa's `Module(Modules.EVENT_BUS, …)` would attach: `defineConfig` reads the module
   * key from `serviceName` when `medusa-config` lists the module without a `key`.
   */
  __joinerConfig(): ModuleJoinerConfig {
    return { serviceName: EVENT_BUS_MODULE, primaryKeys: ['id'], schema: '', linkableKeys: {}, alias: [] }
  }

  // ── emit ─────────────────────────────────────────────────────────────────────────────────

  /**
   * Stores the messages and resolves once they are stored; subscribers run afterwards, never
   * awaited. A message with `delay` is stored when its delay has passed (flushed early at shutdown).
   */
  async emit<T>(data: Message<T> | Message<T>[], options?: Record<string, unknown>): Promise<void> {
    const messages = (Array.isArray(data) ? data : [data]) as Message[]
    const createdMs = clock()
    const createdIso = isoTime(createdMs)
    const now: Pending[] = []
    const later: Pending[] = []
    for (const message of messages) {
      const settings = emitSettings(options, message)
      this.noteIgnored(settings.ignored)
      const pending = { message, settings, createdMs, createdIso }
      // A grouped event is staged at once, as Medusa stages it: delayed, it could reach its group
      // after the release and expire there. Its group's release decides when it is delivered;
      // Medusa would wait its delay after the release, which this module does not (said once).
      const grouped = Boolean(message.metadata?.eventGroupId)
      if (settings.delay > 0 && grouped) this.noteIgnored(['delay (grouped)'])
      if (settings.delay > 0 && !grouped) {
        // Checked now, so a bad event fails its emit rather than its timer.
        prepareBatch(toEventInput(message, settings, createdIso, createdIso), this.tenant, {
          maxPayloadBytes: this.maxPayloadBytes,
          now: Date.now(),
        })
        later.push(pending)
      } else now.push(pending)
    }
    if (this.closing) throw new HeraldError('closed', 'the Herald event module is shut down')
    for (const pending of later) this.schedule(pending)
    if (now.length > 0) return this.store(now)
  }

  private store(batch: Pending[]): Promise<void> {
    const publishedMs = clock()
    const first = batch[0]!
    // Usually stored in the millisecond it was emitted in: one ISO string serves both stamps.
    const publishedIso = publishedMs === first.createdMs ? first.createdIso : isoTime(publishedMs)
    const inputs: EventInput[] = batch.map((p) =>
      toEventInput(p.message, p.settings, p.createdIso, publishedIso),
    )
    const stored =
      this.opening.size > 0
        ? Promise.all(this.opening).then(() => this.bus.emit(inputs))
        : this.bus.emit(inputs)
    return stored.then(() => this.afterStore(batch, inputs, publishedMs))
  }

  /** The log line and the interceptors of events just stored (grouped ones wait for their release). */
  private afterStore(batch: Pending[], inputs: EventInput[], publishedMs: number): void {
    const logging = this.infoLogged()
    const intercepting = this.interceptors.size > 0
    if (!logging && !intercepting) return
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!
      const input = inputs[i]!
      if (input.metadata?.eventGroupId !== undefined) continue // staged: interceptors and the log line come with the release
      const name = input.name!
      if (logging && !p.settings.internal) {
        this.logger.info(
          `herald: emitted ${name} (${this.subscriberCount(name)} subscribers in this process)`,
        )
      }
      if (!intercepting) continue
      const { options } = p.message
      const metadata = {
        ...input.metadata,
        created_at: new Date(p.createdMs),
        published_at: new Date(publishedMs),
      }
      this.callInterceptors(
        { name, data: input.data, metadata, ...(options ? { options } : {}) },
        { isGrouped: false },
      )
    }
  }

  /** Medusa's logger can say whether info lines are wanted; building one per event is not free. */
  private infoLogged(): boolean {
    const { shouldLog } = this.logger as { shouldLog?: (level: string) => boolean }
    return typeof shouldLog !== 'function' || shouldLog.call(this.logger, 'info')
  }

  private schedule(pending: Pending): void {
    const timer = setTimeout(() => {
      this.delayed.delete(timer)
      this.store([pending]).catch((error: unknown) =>
        this.logger.error(
          `herald: storing the delayed event ${pending.message.name} failed: ${describeError(error)}`,
        ),
      )
    }, pending.settings.delay)
    this.delayed.set(timer, pending)
  }

  /** Stores delayed events now rather than lose them when the process stops. */
  private async flushDelayed(): Promise<void> {
    if (this.delayed.size === 0) return
    const pending = [...this.delayed.values()]
    for (const timer of this.delayed.keys()) clearTimeout(timer)
    this.delayed.clear()
    try {
      await this.store(pending)
    } catch (error) {
      this.logger.error(
        `herald: storing ${pending.length} delayed events at shutdown failed: ${describeError(error)}`,
      )
    }
  }

  private noteIgnored(keys: string[]): void {
    for (const key of keys) {
      if (this.ignoredNoted.has(key)) continue
      this.ignoredNoted.add(key)
      this.logger.warn(
        key === 'groupedEventsTTL'
          ? 'herald: the emit option groupedEventsTTL is ignored; set groupedEventsTTL in the module options'
          : key === 'delay (grouped)'
            ? "herald: the delay of a grouped event is not applied: it is delivered when its group is released (Medusa's modules wait the delay after the release)"
            : `herald: the emit option ${key} is ignored; retries follow the module's retry policy`,
      )
    }
  }

  // ── subscribe ────────────────────────────────────────────────────────────────────────────

  /**
   * With a `subscriberId` the subscriber is durable: a Herald subscription in the store that
   * receives every matching event stored after it first existed, across restarts. Without one it
   * is live, like Medusa's: Medusa then generates a random id, and a durable subscription per
   * random id would pile up in the store with every restart, owed events nobody will claim.
   * On the module's own memory store (the default) every subscriber is live: nothing there
   * outlives the process anyway, and a live subscriber has started by the time `emit` resolves,
   * as Medusa's local module promises. (A memory store object passed in may be shared by several
   * module instances, as workers share a store: there ids stay durable.)
   */
  subscribe(eventName: string | symbol, subscriber: Subscriber, context?: HeraldSubscriberContext): this {
    if (typeof subscriber !== 'function')
      throw new HeraldError('invalid_option', 'Subscriber must be a function')
    const event = eventNameOf(eventName)
    const given = context?.subscriberId
    if (given !== undefined && (typeof given !== 'string' || given === '')) {
      throw new HeraldError('invalid_option', 'subscriberId must be a non-empty string')
    }
    const id = given ?? `${event}-${ulid()}`
    const list = this.registrations.get(event) ?? []
    if (list.some((registration) => registration.id === id)) {
      throw new HeraldError('duplicate_subscription', `Subscriber with id ${id} already exists`)
    }
    const durable = given !== undefined && context?.durable !== false && this.durableIds
    const registration: Registration = {
      event,
      id,
      subscriber,
      subscriptionId: durable ? subscriptionIdFor(event, id) : undefined,
      handler: undefined,
    }
    this.attach(registration, context?.retry)
    // Medusa writes the id onto the function; code that unsubscribes with the function alone relies on it.
    ;(subscriber as Subscriber & { subscriberId?: string }).subscriberId = id
    list.push(registration)
    this.registrations.set(event, list)
    return this
  }

  private attach(registration: Registration, retry: Partial<RetryPolicy> | undefined): void {
    const { event, subscriptionId } = registration
    if (!this.runsSubscribers) {
      // A server instance does not run subscribers, but the events its requests emit must wait
      // for a worker: create the durable subscription in the store so they are kept for it.
      if (subscriptionId !== undefined)
        this.track(
          this.root.store.openSubscription(
            { tenant: this.tenant, id: subscriptionId, patterns: [event] },
            Date.now(),
          ),
        )
      return
    }
    const handler: Handler = (stored, ctx) => this.deliver(registration, stored, ctx)
    const options: SubscribeOptions = {}
    if (subscriptionId !== undefined) options.subscriberId = subscriptionId
    if (retry !== undefined) options.retry = retry
    this.bus.subscribe(event, handler, options)
    registration.handler = handler
  }

  private deliver(registration: Registration, event: HeraldEvent, ctx: HandlerContext): unknown {
    // A Herald pattern also matches descendants ('order' gets 'order/x'); a Medusa name matches itself only.
    if (registration.event !== WILDCARD && event.topic !== registration.event) return undefined
    const subscriber = registration.subscriber as (
      event: ReturnType<typeof toMedusaEvent>,
      ctx?: HandlerContext,
    ) => unknown
    const message = toMedusaEvent(event, () => this.publishedAtOf(event))
    // Medusa calls subscribers with the event alone (tests assert exactly that); one declared
    // with a second parameter gets Herald's context (its abort signal, the attempt).
    return subscriber.length >= 2 ? subscriber(message, ctx) : subscriber(message)
  }

  /**
   * Removes the subscriber (by `subscriberId` when given, else by the function). A durable
   * subscription is deleted from the store, also when an earlier run created it and no handler
   * for it is attached here. A no-op on server instances, as in Medusa.
   */
  unsubscribe(
    eventName: string | symbol,
    subscriber: Subscriber,
    context?: Partial<SubscriberContext>,
  ): this {
    if (!this.runsSubscribers) return this
    const event = eventNameOf(eventName)
    const id = context?.subscriberId
    const list = this.registrations.get(event) ?? []
    const index = list.findIndex((registration) =>
      id !== undefined ? registration.id === id : registration.subscriber === subscriber,
    )
    if (index === -1) {
      if (id !== undefined)
        this.bus.unsubscribe(event, undefined, { subscriberId: subscriptionIdFor(event, id) })
      return this
    }
    const [registration] = list.splice(index, 1)
    if (list.length === 0) this.registrations.delete(event)
    const { handler, subscriptionId } = registration!
    if (subscriptionId !== undefined) this.bus.unsubscribe(event, handler, { subscriberId: subscriptionId })
    else if (handler) this.bus.unsubscribe(event, handler)
    return this
  }

  private subscriberCount(name: string): number {
    return (
      (this.registrations.get(name)?.length ?? 0) +
      (name === WILDCARD ? 0 : (this.registrations.get(WILDCARD)?.length ?? 0))
    )
  }

  // ── groups ───────────────────────────────────────────────────────────────────────────────

  /** Moves the group's staged events into the log in one atomic step; its subscribers then get them. */
  async releaseGroupedEvents(eventGroupId: string): Promise<void> {
    // No group (a workflow that ran without one): nothing to release, as in Medusa.
    if (typeof eventGroupId !== 'string' || eventGroupId === '') return
    this.rememberRelease(eventGroupId, new Date())
    await this.bus.releaseGroupedEvents(eventGroupId)
  }

  async clearGroupedEvents(eventGroupId: string, options?: { eventNames?: string[] }): Promise<void> {
    if (typeof eventGroupId !== 'string' || eventGroupId === '') return
    await this.bus.clearGroupedEvents(
      eventGroupId,
      options?.eventNames ? { eventNames: options.eventNames } : {},
    )
  }

  private rememberRelease(groupId: string, at: Date): void {
    this.releaseTimes.delete(groupId)
    this.releaseTimes.set(groupId, at)
    if (this.releaseTimes.size > RELEASE_TIMES_KEPT)
      this.releaseTimes.delete(this.releaseTimes.keys().next().value!)
  }

  /**
   * `published_at` of a grouped event is when its group was released: known exactly when this
   * process released it, else taken as the moment this process delivers it.
   */
  private publishedAtOf(event: HeraldEvent): Date {
    const groupId = event.metadata.eventGroupId
    return (typeof groupId === 'string' ? this.releaseTimes.get(groupId) : undefined) ?? new Date()
  }

  /** The bus tells of every event it stored; released ones carry their group id. */
  private published(events: readonly HeraldEvent[]): void {
    let released = 0
    for (const event of events) {
      const groupId = event.metadata.eventGroupId
      if (
        typeof groupId !== 'string' ||
        event.account !== this.tenant.account ||
        event.workspace !== this.tenant.workspace
      )
        continue
      released++
      this.callInterceptors(
        toMedusaEvent(event, () => this.publishedAtOf(event)),
        { isGrouped: true, eventGroupId: groupId },
      )
    }
    if (released > 0) this.logger.info(`herald: released ${released} grouped events`)
  }

  // ── interceptors ─────────────────────────────────────────────────────────────────────────

  addInterceptor(interceptor: InterceptorSubscriber): this {
    this.interceptors.add(interceptor)
    return this
  }

  removeInterceptor(interceptor: InterceptorSubscriber): this {
    this.interceptors.delete(interceptor)
    return this
  }

  /** Interceptors watch; they are never awaited and their errors never reach the emitter. */
  private callInterceptors(message: Message, context: { isGrouped: boolean; eventGroupId?: string }): void {
    for (const interceptor of this.interceptors) {
      try {
        const result = interceptor(message, context)
        if (result && typeof (result as Promise<void>).catch === 'function') {
          ;(result as Promise<void>).catch((error: unknown) => this.interceptorFailed(error))
        }
      } catch (error) {
        this.interceptorFailed(error)
      }
    }
  }

  private interceptorFailed(error: unknown): void {
    this.logger.error(`herald: an event bus interceptor threw: ${describeError(error)}`)
  }

  // ── lifecycle ────────────────────────────────────────────────────────────────────────────

  private track(promise: Promise<unknown>): void {
    const tracked: Promise<unknown> = promise
      .catch((error: unknown) =>
        this.logger.error(`herald: creating a durable subscription failed: ${describeError(error)}`),
      )
      .finally(() => this.opening.delete(tracked))
    this.opening.add(tracked)
  }

  /**
   * Stores pending delayed events, waits (up to the drain timeout) for deliveries in flight,
   * then closes the store if the module opened it. Retries scheduled later stay in a durable store.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flushDelayed()
      if (this.opening.size > 0) await Promise.all(this.opening)
      await this.root.close()
    })()
    return this.closing
  }
}
