import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { WebSocket } from 'ws'
import { HeraldError } from '../errors.js'
import type { HeraldEvent } from '../event.js'
import { assertPosition } from '../tail.js'
import { splitPatterns } from '../topic.js'
import { authenticate, type Principal } from './auth.js'
import { limitOpenStreams } from './stream-limit.js'
import type { ServerContext } from './context.js'
import { toHeraldError } from './errors.js'
import { errorFrame, eventJson, nativeBatchFrame, nativeEventFrame, replyFrame } from './frames.js'
import { publish, type WireEvent } from './publish.js'
import { HELD_BACK, StreamSubscriptions } from './subscriptions.js'
import { openConnection, type WsConnection } from './ws-connection.js'

const Patterns = Type.Union([Type.String(), Type.Array(Type.String())])

/** A client frame on `/v1/stream`; unknown fields are ignored. */
const ClientFrame = Type.Object(
  {
    ref: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Number()])),
    subscribe: Type.Optional(Patterns),
    since: Type.Optional(Type.String({ maxLength: 256 })),
    batch: Type.Optional(Type.Boolean()),
    unsubscribe: Type.Optional(Patterns),
    events: Type.Optional(Type.Array(Type.Unknown())),
  },
  { additionalProperties: true },
)
type ClientFrame = Static<typeof ClientFrame>
const clientFrame = TypeCompiler.Compile(ClientFrame)

/** Patterns one connection may hold at once. */
export const MAX_PATTERNS_PER_CONNECTION = 1000
/** Events in one batch frame at most. */
const MAX_BATCH = 1000

interface FrameCheck<T> {
  Check(value: unknown): value is T
  Errors(value: unknown): { First(): { path: string; message: string } | undefined }
}

/** Parses a text frame as JSON, or throws `invalid_request` with the parser's reason. */
export function parseFrame(text: string, isBinary: boolean): unknown {
  if (isBinary) throw new HeraldError('invalid_request', 'frames must be JSON text frames')
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new HeraldError('invalid_request', `frame is not JSON: ${(error as Error).message}`)
  }
}

/** Checks a parsed frame against its declared shape, or throws `invalid_request` naming the first problem. */
export function checkFrame<T>(value: unknown, check: FrameCheck<T>): T {
  if (check.Check(value)) return value
  const first = check.Errors(value).First()
  throw new HeraldError(
    'invalid_request',
    `frame ${first ? `${first.path || '/'}: ${first.message}` : 'has the wrong shape'}`,
  )
}

/** The native protocol on one connection (DESIGN §7 "Native stream frames"). */
class NativeStream {
  private readonly subscriptions: StreamSubscriptions
  private batch = false
  private pending: string[] = []

  constructor(
    private readonly connection: WsConnection,
    private readonly principal: Principal,
    private readonly context: ServerContext,
  ) {
    this.subscriptions = new StreamSubscriptions(
      context.bus.scope(principal.tenant),
      (event) => this.deliver(event),
      connection.backpressure,
      () => connection.closeAsSlow(HELD_BACK),
    )
    connection.onFrame((text, isBinary) => this.frame(text, isBinary))
    connection.onClose(() => this.subscriptions.close())
  }

  private deliver(event: HeraldEvent): void {
    if (!this.batch) return this.connection.sendEvents(nativeEventFrame(event), 1)
    // Events stored together reach the listener in one synchronous run: one frame carries them.
    if (this.pending.push(eventJson(event)) === 1) queueMicrotask(() => this.flush())
    else if (this.pending.length >= MAX_BATCH) this.flush()
  }

  private flush(): void {
    if (this.pending.length === 0) return
    const events = this.pending
    this.pending = []
    this.connection.sendEvents(nativeBatchFrame(events), events.length)
  }

  private async frame(text: string, isBinary: boolean): Promise<void> {
    let ref: unknown
    try {
      // Every frame counts, a malformed one too: each is answered, so each costs the server.
      let limited: unknown
      try {
        this.principal.charge()
      } catch (error) {
        limited = error
      }
      let value: unknown
      try {
        value = parseFrame(text, isBinary)
      } catch (error) {
        throw limited ?? error
      }
      if (typeof value === 'object' && value !== null) ref = (value as { ref?: unknown }).ref
      if (limited !== undefined) throw limited
      const frame = checkFrame(value, clientFrame)
      if (frame.subscribe === undefined && frame.unsubscribe === undefined && frame.events === undefined) {
        throw new HeraldError('invalid_request', 'a frame carries subscribe, unsubscribe or events')
      }
      if (frame.subscribe !== undefined) await this.subscribe(frame, ref)
      if (frame.unsubscribe !== undefined) {
        const removed = this.subscriptions.remove(
          splitPatterns(frame.unsubscribe, MAX_PATTERNS_PER_CONNECTION),
        )
        this.connection.reply(replyFrame({ unsubscribed: removed }, ref))
      }
      if (frame.events !== undefined) {
        const ids = await publish(
          this.context.bus,
          this.principal,
          frame.events as WireEvent[],
          this.context.config.limits.eventsPerRequest,
        )
        this.connection.reply(replyFrame({ published: ids }, ref))
      }
    } catch (error) {
      const herald = toHeraldError(error)
      if (herald.code === 'internal')
        this.context.logger.error({ error: String(error) }, 'stream frame failed')
      this.connection.reply(errorFrame(herald, ref))
    }
  }

  private async subscribe(frame: ClientFrame, ref: unknown): Promise<void> {
    const requested = splitPatterns(frame.subscribe!, MAX_PATTERNS_PER_CONNECTION)
    const allowed: string[] = []
    const refused: string[] = []
    for (const pattern of requested) (this.principal.maySubscribe(pattern) ? allowed : refused).push(pattern)
    if (refused.length > 0) {
      const error = new HeraldError(
        'forbidden',
        `${this.principal.name} may not subscribe to ${refused.map((p) => JSON.stringify(p)).join(', ')}`,
        {
          patterns: refused,
        },
      )
      this.connection.reply(errorFrame(error, ref))
    }
    if (new Set([...this.subscriptions.list, ...allowed]).size > MAX_PATTERNS_PER_CONNECTION) {
      throw new HeraldError(
        'invalid_request',
        `a connection holds at most ${MAX_PATTERNS_PER_CONNECTION} patterns`,
      )
    }
    let since = frame.since
    // Refused before anything changes, so that the refusal is the answer to this subscribe.
    if (since !== undefined && allowed.length > 0)
      await assertPosition(this.context.bus.store, this.principal.tenant, since)
    if (frame.batch !== undefined) {
      this.flush()
      this.batch = frame.batch
    }
    if (allowed.length === 0) {
      this.connection.reply(replyFrame({ subscribed: [] }, ref))
      return
    }
    // A first subscription without `since` starts at the log's head, told to the client as its
    // `position`: resuming from there after a dropped connection misses nothing, even when no
    // event arrived before the drop.
    if (since === undefined && this.subscriptions.list.length === 0) {
      since = await this.context.bus.scope(this.principal.tenant).head()
    }
    // The client may have gone while the store was read: nothing would close what opens now.
    if (!this.connection.isOpen) return
    const live = this.subscriptions.add(allowed, since)
    const position = since ?? this.subscriptions.position
    // The reply goes out before any replayed event: a replay starts after a store read.
    this.connection.reply(
      replyFrame(position === undefined ? { subscribed: allowed } : { subscribed: allowed, position }, ref),
    )
    await live
  }
}

/** `GET /v1/stream`: the native WebSocket stream. */
export const streamPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  app.addHook('onRequest', authenticate(context.auth, { query: true }))
  limitOpenStreams(app)
  app.get('/v1/stream', { websocket: true }, (socket: WebSocket, request) => {
    new NativeStream(
      openConnection(context, socket, request.principal, 'websocket'),
      request.principal,
      context,
    )
  })
}
