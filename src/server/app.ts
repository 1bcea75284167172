import cors from '@fastify/cors'
import websocket from '@fastify/websocket'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger as PinoLogger } from 'pino'
import { HeraldError, describeError } from '../errors.js'
import { appsPlugin } from './apps.js'
import { explainingJsonParser } from './bodies.js'
import type { ServerContext } from './context.js'
import { courierPlugin } from './courier.js'
import { deadLettersPlugin } from './dead-letters.js'
import { errorBody, installErrorHandling } from './errors.js'
import { eventsPlugin } from './events.js'
import { healthPlugin } from './health.js'
import { ssePlugin } from './sse.js'
import { streamPlugin } from './stream.js'
import { voltmxPublishPlugin, voltmxStreamPlugin } from './voltmx.js'
import { webhooksPlugin } from './webhooks.js'

/**
 * Builds the Fastify app: one plugin per endpoint family, each with its own auth hook and body
 * parsers.
 */
export async function buildApp(context: ServerContext, logger: PinoLogger): Promise<FastifyInstance> {
  const { limits } = context.config
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per request would dominate the hot path; failures are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger: nothing logs per request, and creating one costs on every publish.
    childLoggerFactory: (logger) => logger,
    bodyLimit: limits.bodyBytes,
    // Types on the wire are what they claim: a topic sent as a number is an error, not "5".
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // Answered by the hook below instead, with Herald's error body (Fastify's own is its own shape).
    return503OnClosing: false,
  })
  app.decorateRequest('principal', null as never)
  installErrorHandling(app, context.logger)
  // Every JSON body (plugins with parsers of their own build theirs the same way) says where it broke.
  const json = explainingJsonParser(app)
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) =>
    json(request, body as string, done),
  )
  // Once shutdown began, a request that arrives (a kept-alive connection, say) is refused at once.
  app.addHook('onRequest', (_request, reply, done) => {
    if (context.accepting) return done()
    void reply
      .code(503)
      .header('connection', 'close')
      .send(errorBody(new HeraldError('closed', 'the server is shutting down')))
  })
  const { corsOrigins } = context.config
  if (corsOrigins.length > 0) {
    // Pages of other origins (a browser using herald/client) may call the server. Tokens travel
    // in headers or the query, never cookies, so no credentials mode; a preflight is answered
    // before any token is asked for, and the request that follows is checked as usual.
    await app.register(cors, {
      origin: corsOrigins.includes('*') ? '*' : corsOrigins,
      methods: ['GET', 'POST', 'PUT', 'DELETE'],
      exposedHeaders: ['retry-after'],
      maxAge: 600,
    })
  }

  // At the root: its hooks must see every upgrade request, so that one aimed at a route that is
  // not a WebSocket (an upgrade to /healthz, say) gets its answer and its socket closed.
  await app.register(websocket, {
    options: { maxPayload: limits.bodyBytes },
    // A client that breaks the protocol (a frame over limits.bodyBytes, say) has been answered
    // with its close code (1009, 1002) by ws: a refusal, logged as one, not as a server failure.
    errorHandler: (error, socket) => {
      const code = (error as { code?: unknown }).code
      if (typeof code === 'string' && code.startsWith('WS_ERR_'))
        context.logger.warn(
          { code, reason: error.message },
          'closed a stream client that broke the WebSocket protocol',
        )
      else context.logger.error({ error: describeError(error) }, 'a stream socket failed')
      socket.terminate()
    },
    // Shutdown: every stream (WebSocket and SSE) finishes its frames in progress, then closes with 1001.
    preClose: async function closeStreams(this: FastifyInstance) {
      await Promise.all([...context.streams].map((stream) => stream.shutdown()))
      this.websocketServer.close()
    },
  })
  const options = { context }
  await app.register(healthPlugin, options)
  await app.register(eventsPlugin, options)
  await app.register(streamPlugin, options)
  await app.register(ssePlugin, options)
  await app.register(deadLettersPlugin, options)
  await app.register(voltmxPublishPlugin, options)
  await app.register(voltmxStreamPlugin, options)
  await app.register(courierPlugin, options)
  await app.register(appsPlugin, options)
  await app.register(webhooksPlugin, options)
  return app
}
