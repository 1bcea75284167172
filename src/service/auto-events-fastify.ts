import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onSendHookHandler,
} from 'fastify'
import fp from 'fastify-plugin'
import { describeError } from '../errors.js'
import {
  cleanHeaders,
  cleanQuery,
  compileSpec,
  decodePayload,
  raiseAll,
  type AutoEventData,
  type AutoEventSpec,
  type CompiledSpec,
} from './auto-events-routes.js'
import type { Observer } from './auto-events.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The events this route raises (`herald/service` autoEvents). */
    autoEvents?: AutoEventSpec
  }
}

/** How long closing the Fastify app waits for auto events still being published. */
const CLOSE_FLUSH_TIMEOUT = 5000

interface Observed {
  spec: CompiledSpec
  route: string
  operationId: string
  response: unknown
}

function splitUrl(url: string): { path: string; search: URLSearchParams } {
  const q = url.indexOf('?')
  return q === -1
    ? { path: url, search: new URLSearchParams() }
    : { path: url.slice(0, q), search: new URLSearchParams(url.slice(q + 1)) }
}

function bodyPayload(body: unknown, contentType: string | undefined): unknown {
  if (body === undefined) return null
  if (typeof body === 'string' || Buffer.isBuffer(body)) return decodePayload(body, contentType)
  return body
}

/** The Fastify side of `autoEvents`: hooks that observe each route with events to raise. */
export function fastifyAutoEvents(observer: Observer) {
  const specs = new Map<string, Observed | null>()
  const observed = new WeakMap<FastifyRequest, Observed>()

  /** The route's events, from its `config.autoEvents` or the plugin's routes; cached per route. */
  function resolve(request: FastifyRequest): Observed | undefined {
    const { url, method, config, schema } = request.routeOptions
    if (url === undefined) return undefined // no route matched (404)
    const key = `${request.method} ${url}`
    let found = specs.get(key)
    if (found === undefined) {
      const declared = config.autoEvents
      const entry = declared
        ? { route: url, spec: compileSpec(declared, `route ${key} config.autoEvents`) }
        : observer.table.byDeclaration(request.method, url)
      const schemaOperation = (schema as { operationId?: unknown } | undefined)?.operationId
      found = entry
        ? {
            ...entry,
            operationId:
              entry.spec.operationId ??
              (typeof schemaOperation === 'string' ? schemaOperation : `${String(method)} ${url}`),
            response: undefined,
          }
        : null
      specs.set(key, found)
    }
    return found ?? undefined
  }

  function data(request: FastifyRequest, state: Observed, payload: unknown): AutoEventData {
    const { path, search } = splitUrl(request.url)
    return {
      serviceId: observer.serviceId,
      operationId: state.operationId,
      method: request.method,
      path,
      route: state.route,
      headers: cleanHeaders(request.headers, observer.redaction.headers),
      query: cleanQuery(search, observer.redaction.query),
      payload,
    }
  }

  const onRequest = (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    try {
      const found = resolve(request)
      if (found) observed.set(request, { ...found })
    } catch (error) {
      observer.failed(error)
    }
    done()
  }

  const preHandler = (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const state = observed.get(request)
    if (state && state.spec.request.length > 0) {
      try {
        // Too large to carry: left out now, not held by reference until the event is published.
        const length = Number(request.headers['content-length'])
        const payload =
          length > observer.maxPayloadBytes
            ? null
            : bodyPayload(request.body, request.headers['content-type'])
        raiseAll(
          state.spec.request,
          'request',
          data(request, state, payload),
          observer.sender,
          observer.raise,
        )
      } catch (error) {
        observer.failed(error)
      }
    }
    done()
  }

  const onSend: onSendHookHandler<unknown> = (request, reply, payload, done) => {
    const state = observed.get(request)
    if (state && state.spec.response.length > 0) {
      try {
        const type = reply.getHeader('content-type')
        // A stream is not buffered for an event, nor is a body too large to carry parsed.
        state.response =
          (typeof payload === 'string' || Buffer.isBuffer(payload)) &&
          payload.length <= observer.maxPayloadBytes
            ? decodePayload(payload, typeof type === 'string' ? type : undefined)
            : null
      } catch (error) {
        observer.failed(error)
      }
    }
    done(null, payload)
  }

  const onResponse = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const state = observed.get(request)
    if (state && state.spec.response.length > 0) {
      try {
        const event = data(request, state, state.response ?? null)
        event.status = reply.statusCode
        event.durationMs = Math.round(reply.elapsedTime * 1000) / 1000
        raiseAll(state.spec.response, 'response', event, observer.sender, observer.raise)
      } catch (error) {
        observer.failed(error)
      }
    }
    done()
  }

  return fp(
    async (app: FastifyInstance) => {
      app.addHook('onRequest', onRequest)
      app.addHook('preHandler', preHandler)
      app.addHook('onSend', onSend)
      app.addHook('onResponse', onResponse)
      app.addHook('onClose', async () => {
        await observer
          .flush(CLOSE_FLUSH_TIMEOUT)
          .catch((error: unknown) =>
            observer.logger.warn({ error: describeError(error) }, 'auto events: flushing at close failed'),
          )
      })
    },
    { name: 'herald-auto-events', fastify: '5.x' },
  )
}
