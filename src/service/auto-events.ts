import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { HeraldError, describeError } from '../errors.js'
import type { EventInput } from '../event.js'
import { consoleLogger, type Logger } from '../logger.js'
import { fastifyAutoEvents } from './auto-events-fastify.js'
import { wrapHttp, type RequestListener } from './auto-events-http.js'
import { RouteTable, redaction, type AutoEventRoute, type Redaction } from './auto-events-routes.js'
import { Raiser, type EventPublisher } from './raiser.js'

export interface AutoEventsOptions {
  /** Where events go: a bus (or a scope of one) or a `HeraldClient`. */
  publisher: EventPublisher
  /** Names this service in every event's data. */
  serviceId: string
  /** Routes and the topics they raise. Fastify routes may instead say so in `config.autoEvents`. */
  routes?: readonly AutoEventRoute[]
  /** Set as the events' sender. */
  sender?: string
  /** More header names to leave out of events, besides REDACTED_HEADERS. */
  redactHeaders?: readonly string[]
  /** More query parameter names to leave out of events, besides REDACTED_QUERY. */
  redactQuery?: readonly string[]
  /** Bodies larger than this are not carried (payload null); default 64 KiB. */
  maxPayloadBytes?: number
  /** Events waiting to be published beyond this are dropped, counted and logged; default 10,000. */
  maxPending?: number
  logger?: Logger
}

/** What the adapters share: configuration, the route table and the raiser. */
export interface Observer {
  readonly serviceId: string
  readonly sender: string | undefined
  readonly table: RouteTable
  readonly redaction: Redaction
  readonly maxPayloadBytes: number
  readonly logger: Logger
  raise(event: EventInput): void
  /** An observation went wrong: logged, never thrown into the observed request. */
  failed(error: unknown): void
  flush(timeout?: number): Promise<void>
}

/**
 * Volt MX auto events: raise events on a route's incoming request and/or its outgoing response.
 * Register the result as a Fastify plugin, or wrap a plain `http` listener with `.wrap()`.
 */
export interface AutoEvents extends FastifyPluginAsync {
  wrap<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>(
    handler: RequestListener<Req, Res>,
  ): RequestListener<Req, Res>
  /** Resolves once every event raised so far was published (or its failure logged), or after `timeout` ms. */
  flush(timeout?: number): Promise<void>
  /** Events dropped because the queue was full. */
  readonly dropped: number
}

const DEFAULTS = { maxPayloadBytes: 64 * 1024, maxPending: 10_000, batchSize: 500 }

function positiveInteger(value: number | undefined, field: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1) {
    throw new HeraldError(
      'invalid_option',
      `${field} must be a positive integer, got ${JSON.stringify(value)}`,
    )
  }
  return value
}

/** Leaves out a payload too large to publish, so that the rest of the event still goes. */
function capPayload(limit: number): (event: EventInput) => EventInput {
  return (event) => {
    const data = event.data as { payload?: unknown }
    if (data.payload === null || data.payload === undefined) return event
    let size: number
    try {
      size = JSON.stringify(data.payload)?.length ?? 0
    } catch {
      size = Infinity
    }
    return size <= limit ? event : { ...event, data: { ...data, payload: null } }
  }
}

export function autoEvents(options: AutoEventsOptions): AutoEvents {
  if (typeof options !== 'object' || options === null) {
    throw new HeraldError('invalid_option', 'autoEvents needs options { publisher, serviceId, routes }')
  }
  const { publisher, serviceId, sender } = options
  if (
    typeof publisher !== 'object' ||
    publisher === null ||
    (typeof (publisher as { emit?: unknown }).emit !== 'function' &&
      typeof (publisher as { publish?: unknown }).publish !== 'function')
  ) {
    throw new HeraldError('invalid_option', 'publisher must be a bus or a HeraldClient')
  }
  if (typeof serviceId !== 'string' || serviceId === '') {
    throw new HeraldError('invalid_option', 'serviceId must be a non-empty string')
  }
  if (sender !== undefined && (typeof sender !== 'string' || sender === '')) {
    throw new HeraldError('invalid_option', 'sender must be a non-empty string')
  }
  const logger = options.logger ?? consoleLogger
  const maxPayloadBytes = positiveInteger(
    options.maxPayloadBytes,
    'maxPayloadBytes',
    DEFAULTS.maxPayloadBytes,
  )
  const raiser = new Raiser(publisher, {
    maxPending: positiveInteger(options.maxPending, 'maxPending', DEFAULTS.maxPending),
    batchSize: DEFAULTS.batchSize,
    logger,
    prepare: capPayload(maxPayloadBytes),
  })
  const observer: Observer = {
    serviceId,
    sender,
    table: new RouteTable(options.routes ?? []),
    redaction: redaction(options.redactHeaders, options.redactQuery),
    maxPayloadBytes,
    logger,
    raise: (event) => raiser.raise(event),
    failed: (error) =>
      logger.warn({ error: describeError(error) }, 'auto events: observing a request failed'),
    flush: (timeout) => raiser.flush(timeout),
  }
  const plugin = fastifyAutoEvents(observer) as unknown as AutoEvents
  return Object.defineProperties(plugin, {
    wrap: { value: (handler: RequestListener) => wrapHttp(observer, handler) },
    flush: { value: (timeout?: number) => raiser.flush(timeout) },
    dropped: { get: () => raiser.dropped },
  })
}
