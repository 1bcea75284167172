import Fastify, { type FastifyInstance, type FastifySchema } from 'fastify'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  HeraldError,
  createBus,
  memoryStore,
  silentLogger,
  type Bus,
  type HeraldEvent,
  type Logger,
  type Store,
} from '../../src/index.js'
import { autoEvents, type AutoEventsOptions } from '../../src/service/index.js'
import { waitFor } from '../helpers.js'

const cleanups: (() => Promise<unknown> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** A bus and every event stored on it. */
function busWithLog(store?: Store): { bus: Bus; events: HeraldEvent[] } {
  const bus = createBus({ logger: silentLogger, ...(store ? { store } : {}) })
  const events: HeraldEvent[] = []
  bus.tail('*', (event) => events.push(event))
  cleanups.push(() => bus.close())
  return { bus, events }
}

/** Records what autoEvents logs. */
function logLines(): { logger: Logger; lines: string[] } {
  const lines: string[] = []
  const log = (fields: Record<string, unknown>, message: string): void => {
    lines.push(`${message} ${JSON.stringify(fields)}`)
  }
  return { logger: { error: log, warn: log, info: log, debug: log }, lines }
}

/** A store whose appends fail, as an unreachable database's would. */
function failingStore(): Store {
  const store = memoryStore()
  const refuse = (): never => {
    throw new HeraldError('store_unavailable', 'the store cannot be reached')
  }
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'appendNow') return undefined
      if (property === 'append')
        return () => Promise.reject(new HeraldError('store_unavailable', 'unreachable'))
      if (property === 'releaseGroup') return refuse
      return Reflect.get(target, property, receiver) as unknown
    },
  })
}

const ROUTES: AutoEventsOptions['routes'] = [
  { method: 'POST', path: '/orders/:id', request: 'orders/received; audit', response: 'orders/answered' },
]

const REQUEST_HEADERS = {
  'content-type': 'application/json',
  authorization: 'Bearer secret-token',
  cookie: 'session=abc',
  'x-voltmx-authorization': 'vmx-token',
  'x-trace': 'trace-1',
}

async function postOrder(base: string): Promise<Response> {
  // Credentials in the query never reach an event: the defaults, `[]` forms, and redactQuery's own.
  const secrets = 'token=secret&password=hunter2&client_secret=abc&token[]=t2&ticket=t3'
  return fetch(`${base}/orders/42?verbose=1&${secrets}&tag=a&tag=b`, {
    method: 'POST',
    headers: REQUEST_HEADERS,
    body: JSON.stringify({ item: 'book', qty: 2 }),
  })
}

function expectDocumentedPayload(events: HeraldEvent[], operationId: string): void {
  const byTopic = Object.fromEntries(events.map((event) => [event.topic, event]))
  expect(Object.keys(byTopic).sort()).toEqual(['audit', 'orders/answered', 'orders/received'])
  for (const topic of ['orders/received', 'audit']) {
    const event = byTopic[topic]!
    expect(event.type).toBe('request')
    expect(event.sender).toBe('acme.orders')
    expect(event.data).toEqual({
      serviceId: 'orders-svc',
      operationId,
      method: 'POST',
      path: '/orders/42',
      route: '/orders/:id',
      headers: expect.objectContaining({ 'content-type': 'application/json', 'x-trace': 'trace-1' }),
      query: { verbose: '1', tag: ['a', 'b'] },
      payload: { item: 'book', qty: 2 },
    })
  }
  const answered = byTopic['orders/answered']!
  expect(answered.type).toBe('response')
  expect(answered.data).toMatchObject({
    serviceId: 'orders-svc',
    operationId,
    method: 'POST',
    path: '/orders/42',
    query: { verbose: '1', tag: ['a', 'b'] },
    status: 201,
    payload: { id: '42', accepted: true },
    durationMs: expect.any(Number),
  })
  for (const event of events) {
    const headers = (event.data as { headers: Record<string, unknown> }).headers
    expect(headers).not.toHaveProperty('authorization')
    expect(headers).not.toHaveProperty('cookie')
    expect(headers).not.toHaveProperty('x-voltmx-authorization')
  }
}

async function fastifyApp(options: AutoEventsOptions): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify()
  await app.register(autoEvents(options))
  app.post<{ Params: { id: string } }>('/orders/:id', async (request, reply) =>
    reply.code(201).send({ id: request.params.id, accepted: true }),
  )
  app.get(
    '/health',
    {
      schema: { operationId: 'health' } as FastifySchema,
      config: { autoEvents: { response: 'health/checked' } },
    },
    async () => 'ok',
  )
  app.get('/quiet', async () => ({ nothing: 'raised' }))
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  cleanups.push(() => app.close())
  return { app, url }
}

async function plainServer(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server: Server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('autoEvents for Fastify', () => {
  it('raises on the request and on the response with the documented payload', async () => {
    const { bus, events } = busWithLog()
    const { url } = await fastifyApp({
      publisher: bus,
      serviceId: 'orders-svc',
      sender: 'acme.orders',
      routes: ROUTES,
      redactQuery: ['Ticket'],
    })
    const response = await postOrder(url)
    expect(response.status).toBe(201)
    await waitFor(() => events.length === 3)
    expectDocumentedPayload(events, 'POST /orders/:id')
  })

  it('carries no body larger than maxPayloadBytes, of the request or of the response', async () => {
    const { bus, events } = busWithLog()
    const { app, url } = await fastifyApp({
      publisher: bus,
      serviceId: 'svc',
      routes: ROUTES,
      maxPayloadBytes: 100,
    })
    app.log.level = 'silent'
    const big = { item: 'x'.repeat(500) }
    const response = await fetch(`${url}/orders/7`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(big),
    })
    expect(response.status).toBe(201)
    await waitFor(() => events.length === 3)
    expect(events.map((event) => (event.data as { payload: unknown }).payload)).toEqual([
      null,
      null,
      {
        id: '7',
        accepted: true,
      },
    ])
  })

  it("takes a route's config.autoEvents and its schema operationId; routes without events raise none", async () => {
    const { bus, events } = busWithLog()
    const { url } = await fastifyApp({ publisher: bus, serviceId: 'svc', routes: ROUTES })
    expect(await (await fetch(`${url}/quiet`)).json()).toEqual({ nothing: 'raised' })
    expect(await (await fetch(`${url}/health`)).text()).toBe('ok')
    await waitFor(() => events.length === 1)
    expect(events[0]).toMatchObject({
      topic: 'health/checked',
      type: 'response',
      data: { operationId: 'health', route: '/health', status: 200, payload: 'ok' },
    })
  })

  it('a failing store does not fail the observed request; the failure is logged', async () => {
    const { bus } = busWithLog(failingStore())
    const { logger, lines } = logLines()
    const raise = autoEvents({ publisher: bus, serviceId: 'orders-svc', routes: ROUTES, logger })
    const app = Fastify()
    await app.register(raise)
    app.post('/orders/:id', async (_request, reply) => reply.code(201).send({ ok: true }))
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    cleanups.push(() => app.close())
    for (let i = 0; i < 3; i++) {
      const response = await postOrder(url)
      expect(response.status).toBe(201)
      expect(await response.json()).toEqual({ ok: true })
    }
    await waitFor(
      () => lines.some((line) => line.includes('publishing failed') && line.includes('store_unavailable')),
      5000,
      'the failure to be logged',
    )
  })
})

describe('autoEvents for plain http', () => {
  it('raises on the request and on the response with the documented payload', async () => {
    const { bus, events } = busWithLog()
    const raise = autoEvents({
      publisher: bus,
      serviceId: 'orders-svc',
      sender: 'acme.orders',
      routes: ROUTES,
      redactQuery: ['Ticket'],
    })
    const url = await plainServer(
      raise.wrap(async (request, response) => {
        // The handler reads its body as it always would.
        let body = ''
        for await (const chunk of request) body += chunk
        const { item } = JSON.parse(body) as { item: string }
        response.writeHead(201, { 'content-type': 'application/json' })
        response.end(
          JSON.stringify({ id: request.url!.split('/')[2]!.split('?')[0], accepted: item === 'book' }),
        )
      }),
    )
    const response = await postOrder(url)
    expect(response.status).toBe(201)
    expect(await response.json()).toEqual({ id: '42', accepted: true })
    await waitFor(() => events.length === 3)
    expectDocumentedPayload(events, 'POST /orders/:id')
  })

  it('a publisher that never answers neither fails requests nor holds a flush; overflow is dropped and counted', async () => {
    const stuck = { emit: () => new Promise<never>(() => {}) }
    const { logger, lines } = logLines()
    const raise = autoEvents({ publisher: stuck, serviceId: 's', routes: ROUTES, maxPending: 4, logger })
    const url = await plainServer(
      raise.wrap((request, response) => {
        request.resume()
        request.on('end', () => {
          response.writeHead(201, { 'content-type': 'application/json' })
          response.end('{"ok":true}')
        })
      }),
    )
    for (let i = 0; i < 8; i++) expect((await postOrder(url)).status).toBe(201)
    expect(raise.dropped).toBeGreaterThan(0)
    expect(lines.some((line) => line.includes('queue is full'))).toBe(true)
    // A shutdown does not wait for it forever either.
    await raise.flush(100)
    expect(lines.some((line) => line.includes('did not answer in time'))).toBe(true)
  })

  it('a failing store does not fail the observed request', async () => {
    const { bus } = busWithLog(failingStore())
    const { logger, lines } = logLines()
    const raise = autoEvents({ publisher: bus, serviceId: 's', routes: ROUTES, logger })
    const url = await plainServer(
      raise.wrap((_request, response) => {
        response.statusCode = 201
        response.end('done')
      }),
    )
    const response = await postOrder(url)
    expect(response.status).toBe(201)
    expect(await response.text()).toBe('done')
    await waitFor(
      () => lines.some((line) => line.includes('publishing failed')),
      5000,
      'the failure to be logged',
    )
  })

  it('refuses bad topics and routes up front, naming them', () => {
    const { bus } = busWithLog()
    expect(() =>
      autoEvents({ publisher: bus, serviceId: 's', routes: [{ path: '/a', request: 'ok;bad topic' }] }),
    ).toThrow(/routes\[0\]\.request/)
    expect(() =>
      autoEvents({ publisher: bus, serviceId: 's', routes: [{ path: 'a', request: 'x' }] }),
    ).toThrow(/routes\[0\]\.path/)
    expect(() => autoEvents({ publisher: {} as never, serviceId: 's' })).toThrow(/publisher/)
  })
})
