import { afterAll, beforeAll, expect, it } from 'vitest'
import { NonRetriableError } from '../../src/index.js'
import { waitFor } from '../helpers.js'
import {
  ADMIN,
  ACME,
  SseClient,
  StreamClient,
  TOKENS,
  request,
  startTestServer,
  type TestServer,
} from './helpers.js'

let t: TestServer
beforeAll(async () => {
  t = await startTestServer({ tokens: TOKENS })
})
afterAll(async () => {
  await t.close()
})

async function metrics(): Promise<string> {
  const answer = await request<string>(`${t.url}/metrics`, { token: ADMIN })
  expect(answer.status).toBe(200)
  expect(answer.headers.get('content-type')).toMatch(/^text\/plain/)
  return answer.body
}

it('answers /healthz and /readyz without a token', async () => {
  expect(await request(`${t.url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } })
  expect(await request(`${t.url}/readyz`)).toMatchObject({
    status: 200,
    body: { status: 'ready', store: 'memory' },
  })
})

it('counts published, delivered, retried and dead-lettered events by topic root, connections, and delivery latency', async () => {
  const tenant = t.server.bus.scope({ account: 'acme', workspace: 'master' })
  let calls = 0
  tenant.subscribe('billing', async () => {}, {})
  tenant.subscribe(
    'audit',
    async () => {
      if (++calls === 1) throw new Error('once')
      throw new NonRetriableError('then never')
    },
    { retry: { retries: 3, initialBackoffDelay: 10 } },
  )
  const ws = await StreamClient.open(`${t.wsUrl}/v1/stream?token=${ACME}`)
  await ws.call({ subscribe: ['*'] })
  const sse = await SseClient.open(`${t.url}/v1/sse?topics=*&token=${ACME}`)
  await request(`${t.url}/v1/events`, {
    token: ACME,
    body: [
      { topic: 'billing/invoice', data: 1 },
      { topic: 'billing/refund', data: 2 },
      { topic: 'audit', data: 3 },
    ],
  })
  await waitFor(
    async () => /herald_events_dead_lettered_total\{root="audit"\} 1/.test(await metrics()),
    5000,
    'the dead letter',
  )
  const text = await metrics()
  expect(text).toMatch(/herald_events_published_total\{root="billing"\} 2/)
  expect(text).toMatch(/herald_events_published_total\{root="audit"\} 1/)
  expect(text).toMatch(/herald_events_delivered_total\{root="billing"\} 2/)
  expect(text).toMatch(/herald_events_retried_total\{root="audit"\} 1/)
  expect(text).toMatch(/herald_connections\{transport="websocket"\} 1/)
  expect(text).toMatch(/herald_connections\{transport="sse"\} 1/)
  expect(text).toMatch(/herald_stream_events_total\{transport="websocket"\} 3/)
  expect(text).toMatch(/herald_delivery_duration_seconds_count\{outcome="delivered"\} 2/)
  expect(text).toMatch(/process_resident_memory_bytes/)
  ws.close()
  sse.close()
  await waitFor(async () => /herald_connections\{transport="websocket"\} 0/.test(await metrics()))
})
