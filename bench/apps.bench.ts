/**
 * `npm run bench apps`: what apps pay for Herald.
 * 1. autoEvents: requests per second of one Fastify route and one plain `http` handler, without
 *    and with auto events on the request and the response (published to an in-memory bus in the
 *    same process, or discarded to see what observing alone costs), under 32 keep-alive
 *    connections from this process.
 * 2. Webhook delivery: events per second delivered, signed, to a local HTTP endpoint (VTEX IO app
 *    format, `concurrency` 1 and 64), against the same events to an in-process handler.
 */
import Fastify from 'fastify'
import { Agent, createServer, request, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createBus, silentLogger, type Bus } from '../src/index.js'
import { WebhookRegistry, autoEvents } from '../src/service/index.js'
import { header, median, table, type Row } from './lib/report.js'
import { deliveredAll, deliveryRate } from './lib/load.js'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20_000)
const EVENTS = Number(process.env.BENCH_EVENTS ?? 5_000)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const CONNECTIONS = 32
const BODY = JSON.stringify({ item: 'book', qty: 2, note: 'x'.repeat(200) })

/** Closed loop: CONNECTIONS clients, each sending its next request when the last is answered. */
async function load(port: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })
  let sent = 0
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          agent,
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: `/orders/${sent}?source=bench`,
          headers: { 'content-type': 'application/json', authorization: 'Bearer x', 'x-trace': 't' },
        },
        (res) => {
          res.resume()
          res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`${res.statusCode}`))))
        },
      )
      req.on('error', reject)
      req.end(BODY)
    })
  const start = performance.now()
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (sent < REQUESTS) {
        sent++
        await one()
      }
    }),
  )
  const seconds = (performance.now() - start) / 1000
  agent.destroy()
  return REQUESTS / seconds
}

const ROUTES = [
  { method: 'POST', path: '/orders/:id', request: 'orders/received', response: 'orders/answered' },
]

/** Takes the events and does nothing: what observing alone costs, without storing. */
const discard = { emit: async (): Promise<void> => {} }

async function fastifyRate(withEvents: boolean | 'discard'): Promise<number> {
  const bus = createBus({ logger: silentLogger })
  const app = Fastify()
  if (withEvents) {
    const publisher = withEvents === 'discard' ? discard : bus
    await app.register(autoEvents({ publisher, serviceId: 'bench', routes: ROUTES }))
  }
  app.post<{ Params: { id: string } }>('/orders/:id', async (req, reply) =>
    reply.code(201).send({ id: req.params.id, accepted: true }),
  )
  await app.listen({ port: 0, host: '127.0.0.1' })
  const rate = await load((app.server.address() as AddressInfo).port)
  await app.close()
  await bus.close()
  return rate
}

async function httpRate(withEvents: boolean): Promise<number> {
  const bus = createBus({ logger: silentLogger })
  const handler: RequestListener = (req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk))
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ accepted: body.length > 0 }))
    })
  }
  const raise = autoEvents({ publisher: bus, serviceId: 'bench', routes: ROUTES })
  const server: Server = createServer(withEvents ? raise.wrap(handler) : handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const rate = await load((server.address() as AddressInfo).port)
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await raise.flush()
  await bus.close()
  return rate
}

/** Emits EVENTS events in arrays of 500 and resolves the delivery rate once all were delivered. */
async function busDeliveryRate(setup: (bus: Bus, delivered: () => void) => Promise<void>): Promise<number> {
  const bus = createBus({ logger: silentLogger, pollInterval: 20 })
  const { handler, done } = deliveredAll(EVENTS)
  await setup(bus, handler)
  const rate = await deliveryRate(
    (events) => bus.emit(events as never),
    'batch',
    EVENTS,
    500,
    (i) => ({ topic: 'send-event', data: { random: i } }),
    done,
  )
  await bus.close()
  return rate
}

async function receiver(onRequest: () => void): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.statusCode = 204
      res.end()
      onRequest()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

async function webhookRate(concurrency: number): Promise<number> {
  let close: () => Promise<void> = async () => {}
  const rate = await busDeliveryRate(async (bus, delivered) => {
    const endpoint = await receiver(delivered)
    close = endpoint.close
    await new WebhookRegistry(bus, { logger: silentLogger }).putApp(bus.tenant, 'bench', {
      url: endpoint.url,
      manifest: { events: { example: { keys: ['send-event'] } } },
      retry: { concurrency },
    })
  })
  await close()
  return rate
}

header('apps: autoEvents overhead and webhook delivery')

/** Runs every contender once per round, RUNS rounds (after a warm-up round), and keeps each one's median: interleaving spreads a noisy machine's slow spells over all of them. */
async function interleaved(
  contenders: readonly (readonly [string, () => Promise<number>])[],
): Promise<Row[]> {
  for (const [, run] of contenders) await run()
  const values = contenders.map(() => [] as number[])
  for (let round = 0; round < RUNS; round++) {
    for (let i = 0; i < contenders.length; i++) values[i]!.push(await contenders[i]![1]())
  }
  return contenders.map(([name], i) => ({ name, value: median(values[i]!), unit: '' }))
}

const requestRows = (
  await interleaved([
    ['fastify', () => fastifyRate(false)],
    ['fastify + autoEvents', () => fastifyRate(true)],
    ['fastify + autoEvents, discarded', () => fastifyRate('discard')],
    ['http', () => httpRate(false)],
    ['http + autoEvents', () => httpRate(true)],
  ])
).map((row) => ({ ...row, unit: 'req/s' }))
table(
  `${REQUESTS} POSTs over ${CONNECTIONS} keep-alive connections, events on request and response (median of ${RUNS})`,
  requestRows,
  'fastify',
)

const deliveryRows = (
  await interleaved([
    [
      'in-process handler',
      () =>
        busDeliveryRate(async (bus, delivered) => {
          bus.subscribe('send-event', async () => delivered(), {
            subscriberId: 'local',
            retry: { concurrency: 64 },
          })
        }),
    ],
    ['webhook, concurrency 64', () => webhookRate(64)],
    ['webhook, concurrency 1', () => webhookRate(1)],
  ])
).map((row) => ({ ...row, unit: 'events/s' }))
table(
  `${EVENTS} events delivered (VTEX IO format, signed, to a local endpoint; median of ${RUNS})`,
  deliveryRows,
  'in-process handler',
)
