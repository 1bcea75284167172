import type { EventBus } from '../bus.js'
import type { HandlerContext } from '../delivery/attempt.js'
import { resolveRetryPolicy, retryFieldsOf, type RetryPolicy } from '../delivery/policy.js'
import { HeraldError } from '../errors.js'
import type { HeraldEvent } from '../event.js'
import { ulid } from '../ids.js'
import { consoleLogger, type Logger } from '../logger.js'
import { compose, createContext, type EventContext, type EventHandler, type VtexFields } from './context.js'
import { listenForEvents, type ListenOptions, type ServiceServer } from './listen.js'
import { appSubscriptionId, assertAppName, assertHandlerName, parseManifest } from './manifest.js'
import { operationIdOf, subjectOf } from './wire.js'

export interface ServiceConfig {
  /**
   * VTEX IO's place for client options; `clients.options.events` is the retry policy of the
   * app's event deliveries (`retries`, `timeout`, `initialBackoffDelay`, ... in milliseconds).
   */
  clients?: {
    /**
     * `@vtex/api`'s place for the app's clients class: made per delivery as
     * `new implementation(options, ctx.vtex)`, it is the handler's `ctx.clients`.
     */
    implementation?: new (options: Record<string, unknown>, context: VtexFields) => unknown
    options?: { events?: Partial<RetryPolicy>; [client: string]: unknown }
  }
  /** Where `ctx.vtex.logger` writes (default: warnings and errors to stderr). */
  logger?: Logger
  /** Handler name → handler (or an array of middlewares run in order). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each handler picks its body type
  events: Record<string, EventHandler<any> | readonly EventHandler<any>[]>
}

export interface AttachOptions {
  /** The app's name: its handlers become durable subscriptions `app:<app>:<handler>`. */
  app: string
}

/** What `attach` did. */
export interface Attachment {
  readonly subscriptionIds: readonly string[]
  /**
   * Removes the handlers from the bus. The durable subscriptions are forgotten, unless `keep`:
   * then they stay in the store and collect events until the app attaches again.
   */
  detach(options?: { keep?: boolean }): void
}

/**
 * A VTEX-style app: named event handlers plus the retry policy their deliveries follow. The same
 * service runs in process against a bus (`attach`) or behind HTTP (`listen`), where Herald
 * delivers to it with the VTEX IO wire protocol.
 */
export class Service {
  /** The retry policy asked for in `clients.options.events` (unset fields: the bus's defaults). */
  readonly retry: Partial<RetryPolicy> | undefined
  /** Where handlers' `ctx.vtex.logger` writes. */
  readonly logger: Logger
  private readonly runners = new Map<string, (ctx: EventContext) => Promise<void>>()
  private readonly clients: ServiceConfig['clients']

  constructor(config: ServiceConfig) {
    if (typeof config !== 'object' || config === null) {
      throw new HeraldError('invalid_option', 'Service needs a config object { events, clients? }')
    }
    const retry = config.clients?.options?.events
    if (retry !== undefined) resolveRetryPolicy(retry) // fail now, naming the field, not at attach
    // VTEX keeps other client options beside these (`memoryCache`, `verbose`...): a registration
    // carries the retry options alone, since the server refuses fields it does not know.
    this.retry = retry === undefined ? undefined : retryFieldsOf(retry)
    const implementation = config.clients?.implementation
    if (implementation !== undefined && typeof implementation !== 'function')
      throw new HeraldError('invalid_option', 'Service clients.implementation must be a class')
    this.clients = config.clients
    this.logger = config.logger ?? consoleLogger
    const events: unknown = config.events
    if (typeof events !== 'object' || events === null || Array.isArray(events)) {
      throw new HeraldError('invalid_option', 'Service config.events must map handler names to functions')
    }
    for (const [name, value] of Object.entries(events)) {
      assertHandlerName(name, 'Service events')
      const list: unknown[] = Array.isArray(value) ? value : [value]
      if (list.length === 0 || list.some((handler) => typeof handler !== 'function')) {
        throw new HeraldError(
          'invalid_option',
          `Service events.${name} must be a function or a non-empty array of functions`,
        )
      }
      this.runners.set(name, compose(list as EventHandler[]))
    }
  }

  /** The handler names this service defines. */
  get handlers(): string[] {
    return [...this.runners.keys()]
  }

  has(handler: string): boolean {
    return this.runners.has(handler)
  }

  /** Runs one handler with a context; rejects with whatever it threw. */
  run(handler: string, ctx: EventContext): Promise<void> {
    const runner = this.runners.get(handler)
    if (!runner) {
      return Promise.reject(new HeraldError('not_found', `event handler not found for ${handler}`))
    }
    const implementation = this.clients?.implementation
    if (implementation !== undefined) {
      try {
        ctx.clients = new implementation(this.clients?.options ?? {}, ctx.vtex)
      } catch (error) {
        return Promise.reject(error as Error)
      }
    }
    return runner(ctx)
  }

  /**
   * Runs the service in process: each handler of the manifest becomes the durable subscription
   * `app:<app>:<handler>` on `bus` (its tenant), for the manifest's keys and sender, with this
   * service's retry policy. A manifest handler the service does not define is an error.
   */
  attach(bus: EventBus, manifest: unknown, options: AttachOptions): Attachment {
    const app = assertAppName(options?.app)
    const { events } = parseManifest(manifest)
    for (const name of Object.keys(events)) {
      if (!this.runners.has(name)) {
        throw new HeraldError(
          'invalid_option',
          `manifest handler ${JSON.stringify(name)} is not defined in the Service's events`,
        )
      }
    }
    const attached: {
      id: string
      keys: string[]
      handler: (event: HeraldEvent, ctx: HandlerContext) => Promise<void>
    }[] = []
    try {
      for (const [name, entry] of Object.entries(events)) {
        const id = appSubscriptionId(app, name)
        const handler = (event: HeraldEvent, attempt: HandlerContext): Promise<void> =>
          this.run(name, inProcessContext(name, event, attempt, this.logger))
        bus.subscribe(entry.keys, handler, {
          subscriberId: id,
          ...(entry.sender !== undefined ? { sender: entry.sender } : {}),
          ...(this.retry !== undefined ? { retry: this.retry } : {}),
        })
        attached.push({ id, keys: entry.keys, handler })
      }
    } catch (error) {
      for (const { id, keys, handler } of attached) bus.unsubscribe(keys, handler, { subscriberId: id })
      throw error
    }
    return {
      subscriptionIds: attached.map(({ id }) => id),
      detach: (detachOptions = {}) => {
        for (const { id, keys, handler } of attached.splice(0))
          bus.unsubscribe(keys, handler, { subscriberId: id, keep: detachOptions.keep === true })
      },
    }
  }

  /**
   * Serves the VTEX IO inbound protocol (`POST|PUT /:account/:workspace/_events`, dispatched by
   * `x-event-handler-id`) so that Herald, or the VTEX platform, delivers to this service.
   */
  listen(port = 5050, options: ListenOptions = {}): Promise<ServiceServer> {
    return listenForEvents(this, port, options)
  }
}

function inProcessContext(
  handler: string,
  event: HeraldEvent,
  attempt: HandlerContext,
  logger: Logger,
): EventContext {
  return createContext({
    handler,
    body: event.data,
    key: event.topic,
    sender: event.sender,
    subject: subjectOf(event),
    account: event.account,
    workspace: event.workspace,
    eventId: event.id,
    requestId: ulid(),
    operationId: operationIdOf(event),
    attempt: attempt.attempt,
    signal: () => attempt.signal,
    authToken: undefined,
    event,
    production: false,
    userAgent: 'herald',
    logger,
  })
}
