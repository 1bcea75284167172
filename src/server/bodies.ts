import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import {
  CLOUDEVENTS_BATCH_JSON,
  CLOUDEVENTS_JSON,
  fromBinaryCloudEvent,
  fromCloudEvent,
  isBinaryCloudEvent,
} from '../cloudevents.js'
import { HeraldError } from '../errors.js'
import type { WireEvent } from './publish.js'

/** An event on the wire: the shape is checked here, the content (topic syntax, data, sizes) by the bus. Unknown fields are ignored. */
export const WireEventSchema = Type.Object(
  {
    topic: Type.Optional(Type.String()),
    name: Type.Optional(Type.String()),
    data: Type.Optional(Type.Unknown()),
    metadata: Type.Optional(Type.Union([Type.Object({}), Type.Null()])),
    type: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    sender: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    id: Type.Optional(Type.String()),
    time: Type.Optional(Type.String()),
    account: Type.Optional(Type.String()),
    workspace: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
)

/** Every publish body, once its content-type parser has normalised it. */
export function eventsBodySchema(eventsPerRequest: number) {
  return Type.Object({ events: Type.Array(WireEventSchema, { maxItems: eventsPerRequest }) })
}

export interface EventsBody {
  events: WireEvent[]
}

export type JsonParser = (
  request: FastifyRequest,
  body: string,
  done: (error: Error | null, value?: unknown) => void,
) => void

function parseWith(parser: JsonParser, request: FastifyRequest, body: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    parser(request, body, (error, value) => (error ? reject(error) : resolve(value))),
  )
}

/** One event, an array, or `{"events":[...]}` (Volt MX and Herald) → `{ events }`. */
export function normaliseEvents(body: unknown): EventsBody {
  if (Array.isArray(body)) return { events: body as WireEvent[] }
  if (typeof body === 'object' && body !== null && Array.isArray((body as { events?: unknown }).events))
    return body as EventsBody
  return { events: [body as WireEvent] }
}

/**
 * Fastify's JSON parser (which refuses `__proto__` keys), answering a body it cannot parse with
 * the reason (where the JSON broke) rather than Fastify's bare "not valid JSON".
 */
export function explainingJsonParser(app: FastifyInstance): JsonParser {
  const json = app.getDefaultJsonParser('error', 'ignore') as unknown as JsonParser
  return (request, body, done) =>
    json(request, body, (error, value) => {
      if (error && (error as { code?: string }).code === 'FST_ERR_CTP_INVALID_JSON_BODY')
        return done(new HeraldError('invalid_request', `the body is not valid JSON: ${whyNotJson(body)}`))
      done(error, value)
    })
}

/** Only on the error path: JSON.parse's message names the position; a body it takes held a prototype key. */
function whyNotJson(body: string): string {
  try {
    JSON.parse(body)
    return 'it has a __proto__ or constructor.prototype key, which is refused'
  } catch (error) {
    return (error as Error).message
  }
}

/**
 * A JSON body of events (one, an array or `{"events":[...]}`; CloudEvents binary mode with `ce-*`
 * headers) as `{ events }`. The hot path: callback style, no promise per request.
 */
export function jsonEventsParser(app: FastifyInstance): JsonParser {
  const json = explainingJsonParser(app)
  return (request, body, done) =>
    json(request, body, (error, value) => {
      if (error) return done(error)
      try {
        done(
          null,
          isBinaryCloudEvent(request.headers)
            ? { events: [fromBinaryCloudEvent(request.headers, value)] }
            : normaliseEvents(value),
        )
      } catch (failure) {
        done(failure as Error)
      }
    })
}

/**
 * Content-type parsers for publish endpoints, registered in their plugin only: JSON (one event,
 * an array or `{"events":[...]}`), CloudEvents structured and batch, and CloudEvents binary mode
 * (`ce-*` headers, the data as JSON or text). Anything else is 415.
 */
export function registerEventBodyParsers(app: FastifyInstance): void {
  const json = explainingJsonParser(app)
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonEventsParser(app))
  app.addContentTypeParser(
    CLOUDEVENTS_JSON,
    { parseAs: 'string' },
    async (request: FastifyRequest, body: string | Buffer) => ({
      events: [fromCloudEvent(await parseWith(json, request, body as string))],
    }),
  )
  app.addContentTypeParser(
    CLOUDEVENTS_BATCH_JSON,
    { parseAs: 'string' },
    async (request: FastifyRequest, body: string | Buffer) => {
      const value = await parseWith(json, request, body as string)
      if (!Array.isArray(value))
        throw new HeraldError(
          'invalid_request',
          `${CLOUDEVENTS_BATCH_JSON} must be a JSON array of CloudEvents`,
        )
      return { events: value.map((ce, i) => fromCloudEvent(ce, i + 1)) }
    },
  )
  // Binary mode with text data: the body is the data, as a string.
  app.addContentTypeParser(
    /^text\//,
    { parseAs: 'string' },
    async (request: FastifyRequest, body: string | Buffer) => {
      assertBinaryMode(request)
      return { events: [fromBinaryCloudEvent(request.headers, body)] }
    },
  )
  // Binary mode with a JSON type of the publisher's own (`application/vnd.acme.order+json`).
  app.addContentTypeParser(
    /^application\/[\w.!#$&^-]+\+json\s*(;|$)/i,
    { parseAs: 'string' },
    async (request: FastifyRequest, body: string | Buffer) => {
      assertBinaryMode(request)
      const data = await parseWith(json, request, body as string)
      return { events: [fromBinaryCloudEvent(request.headers, data)] }
    },
  )
}

function assertBinaryMode(request: FastifyRequest): void {
  if (!isBinaryCloudEvent(request.headers)) {
    throw new HeraldError(
      'unsupported_media_type',
      `${request.headers['content-type']} is accepted only as CloudEvents binary mode (with ce-* headers)`,
    )
  }
}
