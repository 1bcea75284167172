/**
 * A Fastify service that raises Volt MX-style auto events: `orders/received` when an order is
 * posted (with the request's payload) and `orders/answered` once the response is sent (with its
 * status and payload). Events go to Herald through the client; the service never waits for them.
 *
 *   npx tsx examples/fastify-auto-events/index.ts        (env: HERALD_URL, HERALD_TOKEN, PORT)
 *   curl -X POST localhost:3000/orders/42 -H 'content-type: application/json' -d '{"item":"book"}'
 *
 * Outside this repository the imports are `herald/client` and `herald/service`.
 */
import Fastify from 'fastify'
import { HeraldClient } from '../../src/client/index.js'
import { autoEvents } from '../../src/service/index.js'

const herald = new HeraldClient({
  url: process.env.HERALD_URL ?? 'http://127.0.0.1:8080',
  token: process.env.HERALD_TOKEN ?? 'orders-service-token-0001',
})

const app = Fastify({ logger: { level: 'info' } })
await app.register(
  autoEvents({
    publisher: herald,
    serviceId: 'orders-service',
    routes: [
      { method: 'POST', path: '/orders/:id', request: 'orders/received', response: 'orders/answered' },
    ],
  }),
)

app.post<{ Params: { id: string }; Body: { item?: string } }>('/orders/:id', async (request, reply) =>
  reply.code(201).send({ id: request.params.id, item: request.body?.item ?? null, accepted: true }),
)
// A route can also declare its events itself.
app.get<{ Params: { id: string } }>(
  '/orders/:id',
  { config: { autoEvents: { response: 'orders/looked-up' } } },
  async (request) => ({ id: request.params.id, state: 'accepted' }),
)

await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
