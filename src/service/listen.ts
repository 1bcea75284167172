import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import type { AddressInfo } from 'node:net'
import { HeraldError, NonRetriableError, RetryLaterError, describeError } from '../errors.js'
import type { Logger } from '../logger.js'
import { ulid } from '../ids.js'
import { createContext } from './context.js'
import type { Service } from './service.js'
import {
  DEFAULT_TOLERANCE_SECONDS,
  WEBHOOK_HEADERS,
  secretKey,
  verifySignature,
  type HeaderBag,
} from './signature.js'
import { EVENT_HEADERS, fromHeader } from './wire.js'

export interface ListenOptions {
  /** Default 127.0.0.1. */
  host?: string
  /** When given, every request must carry a valid Standard Webhooks signature made with it (else 401). */
  secret?: string
  /** How far `webhook-timestamp` may be from this clock, in seconds (default 300). */
  toleranceSeconds?: number
  /** Largest accepted body in bytes (default 2 MiB). */
  bodyLimit?: number
  /** Where failed handlers are logged (default: the Service's `logger`). */
  logger?: Logger
}

export interface ServiceServer {
  /** `http://host:port`: the base URL to register with Herald. */
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

const DEFAULT_BODY_LIMIT = 2 * 1024 * 1024
/** Deliveries remembered as handled (their webhook-ids), so that a repeat runs nothing twice. */
const HANDLED_LIMIT = 100_000

/**
 * Webhook-ids of deliveries handled lately, for as long as a signature stays valid: a repeat
 * (Herald retrying after losing the answer, or someone replaying a captured request) is
 * acknowledged without running the handler again. The oldest go first past the limit.
 */
class HandledDeliveries {
  private readonly until = new Map<string, number>()

  constructor(private readonly keepMs: number) {}

  has(id: string, now: number): boolean {
    const until = this.until.get(id)
    return until !== undefined && until > now
  }

  add(id: string, now: number): void {
    this.until.delete(id)
    this.until.set(id, now + this.keepMs)
    for (const [old, until] of this.until) {
      if (until > now && this.until.size <= HANDLED_LIMIT) break
      this.until.delete(old)
    }
  }
}

/**
 * Herald's webhook-id of an app delivery: `<account>/<workspace>/app:<app>:<handler>:<event id>`,
 * or, from a Herald before the tenant was part of it, `app:<app>:<handler>:<event id>`.
 */
const APP_DELIVERY_ID = /^(?:([^/]+)\/([^/]+)\/)?app:[^:]*:([^:]*):(.+)$/
const APP_DELIVERY_PREFIX = /^(?:[^/]+\/[^/]+\/)?app:/

/**
 * Herald's webhook-id for an app delivery is signed, and names the tenant, handler and event: the
 * unsigned tenant, handler and event id headers must agree with it, so a captured delivery cannot
 * be sent to another handler or passed off as another tenant's. Undefined when they agree (or the
 * id is not Herald's), else why not.
 */
function mismatch(webhookId: string, headers: HeaderBag, handler: string): string | undefined {
  const parts = APP_DELIVERY_ID.exec(webhookId)
  if (!parts)
    return APP_DELIVERY_PREFIX.test(webhookId)
      ? `webhook-id ${webhookId} is not for handler ${handler}`
      : undefined
  const [, account, workspace, named, eventId] = parts
  if (named !== handler) return `webhook-id ${webhookId} is not for handler ${handler}`
  const event = first(headers, EVENT_HEADERS.eventId)
  if (event !== undefined && event !== eventId) return `webhook-id ${webhookId} is not for event ${event}`
  if (account === undefined) return undefined // the old form names no tenant
  const tenant = `${first(headers, EVENT_HEADERS.account)}/${first(headers, EVENT_HEADERS.workspace)}`
  if (tenant !== `${account}/${workspace}`) return `webhook-id ${webhookId} is not for tenant ${tenant}`
  return undefined
}

function first(headers: HeaderBag, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/**
 * The status a handler's failure answers with, as `@vtex/api` does it: an error carrying a
 * `status` from 400 to 599 answers that; `NonRetriableError` answers 422 so the deliverer does
 * not retry; `RetryLaterError` answers 503; anything else is a 500, which it retries.
 */
function failureStatus(error: unknown): number {
  const status = (error as { status?: unknown } | null)?.status
  if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599) return status
  if (error instanceof NonRetriableError) return 422
  if (error instanceof RetryLaterError) return 503
  // `@vtex/api`'s own errors carry no status; its event server answers these two so.
  const name = errorName(error)
  if (name === 'TooManyRequestsError') return 429
  if (name === 'RequestCancelledError') return 499
  return 500
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error
}

function parseBody(raw: string, contentType: string | undefined): { body: unknown } | { error: string } {
  if (raw === '') return { body: null }
  if (contentType === undefined || /\bjson\b/i.test(contentType)) {
    try {
      return { body: JSON.parse(raw) }
    } catch (error) {
      return { error: `the body is not JSON: ${describeError(error)}` }
    }
  }
  return { body: raw }
}

/** Serves `POST|PUT /:account/:workspace/_events` for a Service. */
export async function listenForEvents(
  service: Service,
  port: number,
  options: ListenOptions = {},
): Promise<ServiceServer> {
  const signingKey = options.secret === undefined ? undefined : secretKey(options.secret)
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS
  if (!Number.isFinite(tolerance) || tolerance < 0)
    throw new HeraldError('invalid_option', 'toleranceSeconds must be a number of seconds, 0 or more')
  const handled = new HandledDeliveries(tolerance * 1000)
  const logger = options.logger ?? service.logger
  const app = Fastify({ bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT })
  // The signature covers the exact bytes sent: keep the body as text and parse it here.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body))

  const handle = async (
    request: FastifyRequest<{ Params: { account: string; workspace: string } }>,
    reply: FastifyReply,
  ): Promise<void> => {
    const headers = request.headers as HeaderBag
    const raw = typeof request.body === 'string' ? request.body : ''
    if (signingKey !== undefined) {
      const problem = verifySignature(signingKey, headers, raw, { toleranceSeconds: tolerance })
      if (problem !== undefined) return reply.code(401).send({ error: `signature refused: ${problem}` })
    }
    const name = first(headers, EVENT_HEADERS.handler)
    if (!name) return reply.code(400).send({ error: `missing ${EVENT_HEADERS.handler}` })
    const webhookId = first(headers, WEBHOOK_HEADERS.id)
    if (signingKey !== undefined && webhookId !== undefined) {
      const problem = mismatch(webhookId, headers, name)
      if (problem !== undefined) return reply.code(401).send({ error: `signature refused: ${problem}` })
    }
    if (webhookId !== undefined && handled.has(webhookId, Date.now())) return reply.code(204).send()
    if (!service.has(name)) return reply.code(404).send({ error: `Event handler not found for ${name}` })
    const parsed = parseBody(raw, first(headers, 'content-type'))
    if ('error' in parsed) return reply.code(400).send({ error: parsed.error })

    // Herald aborts its request when the attempt times out: tell the handler.
    const controller = new AbortController()
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new Error('the deliverer closed the request'))
    })
    // As `@vtex/api` does, the tenant comes from the headers; the path is a fallback.
    const account = first(headers, EVENT_HEADERS.account) ?? request.params.account
    const workspace = first(headers, EVENT_HEADERS.workspace) ?? request.params.workspace
    const eventId = fromHeader(first(headers, EVENT_HEADERS.eventId) ?? '')
    const topic = fromHeader(first(headers, EVENT_HEADERS.key) ?? '')
    const sender = fromHeader(first(headers, EVENT_HEADERS.sender) ?? '') || undefined
    const attempt = Number(first(headers, EVENT_HEADERS.attempt) ?? 0)
    const ctx = createContext({
      handler: name,
      body: parsed.body,
      key: topic,
      sender,
      subject: fromHeader(first(headers, EVENT_HEADERS.subject) ?? ''),
      account,
      workspace,
      eventId,
      requestId: first(headers, EVENT_HEADERS.requestId) ?? ulid(),
      operationId: fromHeader(first(headers, EVENT_HEADERS.operationId) ?? '') || ulid(),
      attempt: Number.isInteger(attempt) && attempt >= 0 ? attempt : 0,
      signal: () => controller.signal,
      authToken: first(headers, EVENT_HEADERS.credential) || undefined,
      event: undefined,
      production: first(headers, 'x-vtex-workspace-is-production')?.toLowerCase() === 'true',
      userAgent: first(headers, 'user-agent') ?? '',
      logger: service.logger,
    })
    try {
      await service.run(name, ctx)
    } catch (error) {
      const status = failureStatus(error)
      logger.warn(
        { handler: name, eventId, account, workspace, status, error: describeError(error) },
        'event handler failed',
      )
      // Herald's deliverer waits at least this long before the next attempt.
      if (error instanceof RetryLaterError && error.retryAfterMs > 0)
        void reply.header('retry-after', String(Math.ceil(error.retryAfterMs / 1000)))
      // The details stay in this log: the answer reaches whoever called, and Herald's lastError.
      return reply.code(status).send({ error: `handler ${name} failed (${errorName(error)})` })
    }
    if (webhookId !== undefined) handled.add(webhookId, Date.now())
    return reply.code(204).send()
  }

  app.route({ method: ['POST', 'PUT'], url: '/:account/:workspace/_events', handler: handle })
  await app.listen({ port, host: options.host ?? '127.0.0.1' })
  const address = app.server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () => app.close(),
  }
}
