import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { WebSocket } from 'ws'
import { isHeraldError } from '../errors.js'
import { parsePattern } from '../topic.js'
import { authenticate, type Principal } from './auth.js'
import { limitOpenStreams } from './stream-limit.js'
import { eventsBodySchema, jsonEventsParser, type EventsBody } from './bodies.js'
import type { ServerContext } from './context.js'
import { toHeraldError } from './errors.js'
import { IdsSchema } from './events.js'
import { voltmxEventFrame } from './frames.js'
import { partitionByPermission, publish, type WireEvent } from './publish.js'
import { checkFrame, MAX_PATTERNS_PER_CONNECTION, parseFrame } from './stream.js'
import { HELD_BACK, StreamSubscriptions } from './subscriptions.js'
import { openConnection, type WsConnection } from './ws-connection.js'

/** Volt MX server event codes (its client SDK's wire format; DESIGN §7). */
export const VOLTMX_CODES = {
  subscribed: 620001,
  subscribeFailed: 620002,
  subscribedPartly: 620003,
  published: 620004,
  publishFailed: 620005,
  publishedPartly: 620006,
  unsubscribed: 620007,
  unsubscribeFailed: 620008,
  unsubscribedPartly: 620009,
  event: 620010,
  authenticationFailed: 620011,
  missingParameter: 620012,
  badPayload: 620014,
} as const

/** Topics as the SDK sends them: a list, a `;`-separated string, or `{"topics":{"private":[…]}}` with the token repeated. */
const TopicSelection = Type.Union([
  Type.String(),
  Type.Array(Type.String()),
  Type.Object({
    'X-Voltmx-Authorization': Type.Optional(Type.String()),
    clientUUID: Type.Optional(Type.String()),
    topics: Type.Optional(
      Type.Object({
        private: Type.Optional(Type.Array(Type.String())),
        public: Type.Optional(Type.Array(Type.String())),
      }),
    ),
  }),
])

const VoltmxEvent = Type.Object({
  topic: Type.Optional(Type.String()),
  data: Type.Optional(Type.Unknown()),
  additionalMetadata: Type.Optional(Type.Union([Type.Object({}), Type.Null()])),
})

const VoltmxFrame = Type.Object({
  subscribe: Type.Optional(TopicSelection),
  unsubscribe: Type.Optional(TopicSelection),
  events: Type.Optional(Type.Array(VoltmxEvent)),
  ack: Type.Optional(Type.Object({ eventId: Type.Optional(Type.Union([Type.String(), Type.Number()])) })),
})
type TopicSelection = Static<typeof TopicSelection>
type VoltmxEvent = Static<typeof VoltmxEvent>
const voltmxFrame = TypeCompiler.Compile(VoltmxFrame)

/** A Volt MX event (`additionalMetadata`) as Herald's wire event (`metadata`). */
function fromVoltmx(input: VoltmxEvent & WireEvent): WireEvent {
  if (input.additionalMetadata !== undefined && input.metadata === undefined) {
    const { additionalMetadata, ...rest } = input
    return { ...rest, metadata: additionalMetadata }
  }
  return input
}

interface Outcome {
  code: number
  message: string
  /** Absent from a full failure. */
  successTopics?: string[]
  failedTopics: string[]
}

function outcome(
  codes: readonly [number, number, number],
  verb: string,
  success: string[],
  failed: string[],
  reason?: string,
): Outcome {
  const [all, none, partly] = codes
  if (failed.length === 0)
    return { code: all, message: `${verb} successfully`, successTopics: success, failedTopics: [] }
  const why = reason ? `: ${reason}` : ''
  // Volt MX lists only the failed topics of a full failure.
  if (success.length === 0) return { code: none, message: `${verb} failed${why}`, failedTopics: failed }
  return { code: partly, message: `${verb} partially${why}`, successTopics: success, failedTopics: failed }
}

/** The Volt MX stream protocol on one connection. */
class VoltmxStream {
  private readonly subscriptions: StreamSubscriptions

  constructor(
    private readonly connection: WsConnection,
    private readonly principal: Principal,
    private readonly context: ServerContext,
  ) {
    this.subscriptions = new StreamSubscriptions(
      context.bus.scope(principal.tenant),
      (event) => connection.sendEvents(voltmxEventFrame(event), 1),
      connection.backpressure,
      () => connection.closeAsSlow(HELD_BACK),
    )
    connection.onFrame((text, isBinary) => this.frame(text, isBinary))
    connection.onClose(() => this.subscriptions.close())
  }

  private send(body: object): void {
    this.connection.reply(JSON.stringify(body))
  }

  private async frame(text: string, isBinary: boolean): Promise<void> {
    // Every frame counts once, a malformed one too: each is answered, so each costs the server.
    let limited: string | undefined
    try {
      this.principal.charge()
    } catch (error) {
      limited = (error as Error).message
    }
    let frame: Static<typeof VoltmxFrame>
    try {
      frame = checkFrame(parseFrame(text, isBinary), voltmxFrame)
    } catch (error) {
      return this.send({
        code: VOLTMX_CODES.badPayload,
        message: limited ?? `Invalid request payload: ${(error as Error).message}`,
      })
    }
    if (limited !== undefined) {
      // Refused as the operations it asked for would have been, each with its failure code.
      if (frame.subscribe !== undefined) this.send({ code: VOLTMX_CODES.subscribeFailed, message: limited })
      if (frame.unsubscribe !== undefined)
        this.send({ code: VOLTMX_CODES.unsubscribeFailed, message: limited })
      if (frame.events !== undefined) this.send({ code: VOLTMX_CODES.publishFailed, message: limited })
      return
    }
    if (
      frame.ack !== undefined &&
      frame.subscribe === undefined &&
      frame.unsubscribe === undefined &&
      frame.events === undefined
    )
      return
    if (frame.subscribe === undefined && frame.unsubscribe === undefined && frame.events === undefined) {
      return this.send({
        code: VOLTMX_CODES.badPayload,
        message: 'Invalid request payload: expected subscribe, unsubscribe, events or ack',
      })
    }
    if (frame.subscribe !== undefined) this.subscribe(frame.subscribe)
    if (frame.unsubscribe !== undefined) this.unsubscribe(frame.unsubscribe)
    if (frame.events !== undefined) await this.publish(frame.events)
  }

  /** The topics of a selection, or a reply explaining why there are none usable. */
  private topics(selection: TopicSelection): string[] | undefined {
    let topics: string[]
    if (typeof selection === 'string') topics = selection.split(';')
    else if (Array.isArray(selection)) topics = selection.flatMap((entry) => entry.split(';'))
    else {
      const token = selection['X-Voltmx-Authorization']
      if (token !== undefined && !this.sameToken(token)) {
        this.send({
          code: VOLTMX_CODES.authenticationFailed,
          message: 'Authentication failed, Please Re-Subscribe/Unsubscribe.',
        })
        return undefined
      }
      topics = [...(selection.topics?.private ?? []), ...(selection.topics?.public ?? [])]
    }
    topics = [...new Set(topics.map((topic) => topic.trim()).filter((topic) => topic !== ''))]
    if (topics.length === 0) {
      this.send({ code: VOLTMX_CODES.missingParameter, message: 'Missing mandatory parameter: topics' })
      return undefined
    }
    if (topics.length > MAX_PATTERNS_PER_CONNECTION) {
      this.send({
        code: VOLTMX_CODES.badPayload,
        message: `at most ${MAX_PATTERNS_PER_CONNECTION} topics at once`,
      })
      return undefined
    }
    return topics
  }

  /** A token repeated inside a frame must be the connection's own. */
  private sameToken(token: string): boolean {
    try {
      return this.context.auth.resolve(token) === this.principal
    } catch {
      return false
    }
  }

  private subscribe(selection: TopicSelection): void {
    const topics = this.topics(selection)
    if (!topics) return
    const success: string[] = []
    const failed: string[] = []
    for (const topic of topics) {
      let valid = true
      try {
        parsePattern(topic)
      } catch {
        valid = false
      }
      if (valid && this.principal.maySubscribe(topic)) success.push(topic)
      else failed.push(topic)
    }
    if (new Set([...this.subscriptions.list, ...success]).size > MAX_PATTERNS_PER_CONNECTION) {
      return this.send(
        outcome(
          [VOLTMX_CODES.subscribed, VOLTMX_CODES.subscribeFailed, VOLTMX_CODES.subscribedPartly],
          'Subscribed',
          [],
          topics,
          'too many topics',
        ),
      )
    }
    if (success.length > 0) void this.subscriptions.add(success)
    this.send(
      outcome(
        [VOLTMX_CODES.subscribed, VOLTMX_CODES.subscribeFailed, VOLTMX_CODES.subscribedPartly],
        'Subscribed',
        success,
        failed,
      ),
    )
  }

  private unsubscribe(selection: TopicSelection): void {
    const topics = this.topics(selection)
    if (!topics) return
    const removed = this.subscriptions.remove(topics)
    const gone = new Set(removed)
    const failed = topics.filter((topic) => !gone.has(topic))
    this.send(
      outcome(
        [VOLTMX_CODES.unsubscribed, VOLTMX_CODES.unsubscribeFailed, VOLTMX_CODES.unsubscribedPartly],
        'Unsubscribed',
        removed,
        failed,
      ),
    )
  }

  private async publish(events: VoltmxEvent[]): Promise<void> {
    const untitled = events.findIndex((event) => {
      const { topic, name } = event as { topic?: unknown; name?: unknown }
      return (topic === undefined || topic === '') && (name === undefined || name === '')
    })
    if (untitled !== -1) {
      this.send({
        code: VOLTMX_CODES.missingParameter,
        message: `Missing mandatory parameter: topic (event ${untitled + 1})`,
      })
      return
    }
    const inputs = events.map((event) => fromVoltmx(event as VoltmxEvent & WireEvent))
    const { allowed, refusedTopics } = partitionByPermission(this.principal, inputs)
    const codes = [VOLTMX_CODES.published, VOLTMX_CODES.publishFailed, VOLTMX_CODES.publishedPartly] as const
    const allowedTopics = allowed.map((event) => String(event.topic))
    try {
      if (allowed.length > 0)
        await publish(this.context.bus, this.principal, allowed, this.context.config.limits.eventsPerRequest)
      this.send(
        outcome(
          codes,
          'Published',
          allowedTopics,
          refusedTopics,
          refusedTopics.length ? 'topics not allowed for this token' : undefined,
        ),
      )
    } catch (error) {
      const herald = toHeraldError(error)
      if (!isHeraldError(error)) this.context.logger.error({ error: String(error) }, 'Volt MX publish failed')
      this.send(outcome(codes, 'Published', [], [...allowedTopics, ...refusedTopics], herald.message))
    }
  }
}

/** `POST /services/ServerEvents` (Volt MX compatible publish; answers like `POST /v1/events`). */
export const voltmxPublishPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (
  app,
  { context },
) => {
  const { bus, config } = context
  // Volt MX's own sample sends its JSON with no content type at all (and curl -d says form): the
  // body is JSON whatever the header claims.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, jsonEventsParser(app))
  app.addHook('onRequest', authenticate(context.auth))
  app.post<{ Body: EventsBody }>(
    '/services/ServerEvents',
    { schema: { body: eventsBodySchema(config.limits.eventsPerRequest), response: { 202: IdsSchema } } },
    async (request, reply) => {
      const events = request.body.events.map((event) => fromVoltmx(event as VoltmxEvent & WireEvent))
      const ids = await publish(bus, request.principal, events, config.limits.eventsPerRequest)
      return reply.code(202).send({ ids })
    },
  )
}

/** The `/services/ServerEvents/Stream` WebSocket (Volt MX compatible). */
export const voltmxStreamPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (
  app,
  { context },
) => {
  app.addHook('onRequest', authenticate(context.auth, { query: true }))
  limitOpenStreams(app)
  app.get('/services/ServerEvents/Stream', { websocket: true }, (socket: WebSocket, request) => {
    new VoltmxStream(openConnection(context, socket, request.principal, 'voltmx'), request.principal, context)
  })
}
