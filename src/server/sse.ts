import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'
import { HeraldError } from '../errors.js'
import { assertPosition } from '../tail.js'
import { splitPatterns } from '../topic.js'
import { authenticate, type Principal } from './auth.js'
import { limitOpenStreams } from './stream-limit.js'
import type { ServerContext } from './context.js'
import { sseMessage } from './frames.js'
import { HELD_BACK, StreamSubscriptions } from './subscriptions.js'
import { waitForDrain, type Closable } from './ws-connection.js'
import { MAX_PATTERNS_PER_CONNECTION } from './stream.js'

const SseQuery = Type.Object(
  {
    topics: Type.String({ minLength: 1 }),
    /** For clients that cannot send Last-Event-ID. */
    since: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
)

const HEARTBEAT = Buffer.from(': heartbeat\n\n')

/** One SSE client: events as messages, a comment as heartbeat, closed when it reads too slowly. */
class SseConnection implements Closable {
  private readonly subscriptions: StreamSubscriptions
  private readonly heartbeat: ReturnType<typeof setInterval>
  private closed = false

  constructor(
    private readonly response: ServerResponse,
    private readonly principal: Principal,
    private readonly context: ServerContext,
  ) {
    this.subscriptions = new StreamSubscriptions(
      context.bus.scope(principal.tenant),
      (event) => this.write(sseMessage(event), 1),
      () =>
        !this.closed && response.writableLength > context.config.limits.wsBufferBytes / 4
          ? waitForDrain(response)
          : undefined,
      () => this.closeAsSlow(HELD_BACK),
    )
    this.heartbeat = setInterval(() => this.write(HEARTBEAT, 0), context.config.sseHeartbeatInterval)
    this.heartbeat.unref()
    context.streams.add(this)
    context.metrics.connectionOpened('sse')
    response.once('close', () => this.cleanUp())
  }

  start(patterns: string[], since: string | undefined): void {
    this.subscriptions.add(patterns, since).catch((error: unknown) => {
      this.write(Buffer.from(`: replay failed: ${(error as Error).message.replace(/\n/g, ' ')}\n\n`), 0)
      this.end()
    })
  }

  private write(chunk: Buffer, events: number): void {
    if (this.closed) return
    this.response.write(chunk)
    if (events > 0) this.context.metrics.eventsStreamed('sse', events)
    if (this.response.writableLength > this.context.config.limits.wsBufferBytes)
      this.closeAsSlow(`more than ${this.context.config.limits.wsBufferBytes} bytes waiting to be sent`)
  }

  private closeAsSlow(why: string): void {
    if (this.closed) return
    this.context.metrics.slowClientClosed('sse')
    this.context.logger.warn(
      { principal: this.principal.name, transport: 'sse', buffered: this.response.writableLength, why },
      'closing a stream client that reads too slowly',
    )
    // An SSE client has no close code: the stream just ends; it resumes with Last-Event-ID.
    this.cleanUp()
    this.response.destroy()
  }

  private end(): void {
    if (this.closed) return
    this.cleanUp()
    this.response.end()
  }

  async shutdown(): Promise<void> {
    this.end()
  }

  private cleanUp(): void {
    if (this.closed) return
    this.closed = true
    clearInterval(this.heartbeat)
    this.subscriptions.close()
    this.context.streams.delete(this)
    this.context.metrics.connectionClosed('sse')
  }
}

/** `GET /v1/sse?topics=a;b`: Server-Sent Events, resumable with Last-Event-ID. */
export const ssePlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  app.addHook('onRequest', authenticate(context.auth, { query: true }))
  limitOpenStreams(app)
  app.get<{ Querystring: { topics: string; since?: string } }>(
    '/v1/sse',
    // No HEAD twin: a stream has no headers-only form, and one would stay open, never written.
    { schema: { querystring: SseQuery }, exposeHeadRoute: false },
    async (request, reply) => {
      const { principal } = request
      const patterns = splitPatterns(request.query.topics, MAX_PATTERNS_PER_CONNECTION)
      const refused = patterns.filter((pattern) => !principal.maySubscribe(pattern))
      if (refused.length > 0) {
        throw new HeraldError(
          'forbidden',
          `${principal.name} may not subscribe to ${refused.map((p) => JSON.stringify(p)).join(', ')}`,
          { patterns: refused },
        )
      }
      const lastEventId = request.headers['last-event-id']
      const since =
        (typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : undefined) ??
        request.query.since
      // Answered before the stream opens: an EventSource gives up on a 400, where a stream that
      // ended at once would have it reconnect with the same Last-Event-ID forever.
      if (since !== undefined) await assertPosition(context.bus.store, principal.tenant, since)
      // Headers set by hooks (CORS) are kept: hijacking hands the raw response over without them.
      const hooked: OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(reply.getHeaders()))
        if (value !== undefined) hooked[name] = value
      reply.hijack()
      const response = reply.raw
      // The client may have gone while the store was read: its 'close' has come and gone, and
      // nothing would ever close the stream opened now.
      if (response.destroyed || request.raw.socket.destroyed) return
      response.writeHead(200, {
        ...hooked,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      })
      response.write(': connected\n\n')
      new SseConnection(response, principal, context).start(patterns, since)
    },
  )
}
