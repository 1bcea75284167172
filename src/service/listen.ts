import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import type { AddressInfo } from 'node:net'
import { NonRetriableError, RetryLaterError, describeError } from '../errors.js'
import { consoleLogger, type Logger } from '../logger.js'
import { ulid } from '../ids.js'
import { createContext } from './context.js'
import type { Service } from './service.js'
import { secretKey, verifySignature, type HeaderBag } from './signature.js'
import { EVENT_HEADERS } from './wire.js'

export interface ListenOptions {
  /** Default 127.0.0.1. */
  host?: string
  /** When given, every request must carry a valid Standard Webhooks signature made with it (else 401). */
  secret?: string
  /** How far `webhook-timestamp` may be from this clock, in seconds (default 300). */
  toleranceSeconds?: number
  /** Largest accepted body in bytes (default 2 MiB). */
  bodyLimit?: number
  logger?: Logger
}

export interface ServiceServer {
  /** `http://host:port`: the base URL to register with Herald. */
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

const DEFAULT_BODY_LIMIT = 2 * 1024 * 1024

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
  return 500
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
  const logger = options.logger ?? consoleLogger
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
      const problem = verifySignature(signingKey, headers, raw, {
        toleranceSeconds: options.toleranceSeconds,
      })
      if (problem !== undefined) return reply.code(401).send({ error: `signature refused: ${problem}` })
    }
    const name = first(headers, EVENT_HEADERS.handler)
    if (!name) return reply.code(400).send({ error: `missing ${EVENT_HEADERS.handler}` })
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
    const eventId = first(headers, EVENT_HEADERS.eventId) ?? ''
    const topic = first(headers, EVENT_HEADERS.key) ?? ''
    const sender = first(headers, EVENT_HEADERS.sender) || undefined
    const attempt = Number(first(headers, EVENT_HEADERS.attempt) ?? 0)
    const ctx = createContext({
      handler: name,
      body: parsed.body,
      key: topic,
      sender,
      subject: first(headers, EVENT_HEADERS.subject) ?? '',
      account,
      workspace,
      eventId,
      requestId: first(headers, EVENT_HEADERS.requestId) ?? ulid(),
      operationId: first(headers, EVENT_HEADERS.operationId) ?? ulid(),
      attempt: Number.isInteger(attempt) && attempt >= 0 ? attempt : 0,
      signal: () => controller.signal,
      authToken: first(headers, EVENT_HEADERS.credential) || undefined,
      event: undefined,
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
      return reply.code(status).send({ error: describeError(error) })
    }
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
