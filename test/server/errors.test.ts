import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryStore, type Store } from '../../src/index.js'
import { sleep, waitFor } from '../helpers.js'
import {
  ACME,
  ADMIN,
  ORDERS_ONLY,
  StreamClient,
  TOKENS,
  request,
  startTestServer,
  type TestServer,
} from './helpers.js'

let t: TestServer
const LIMITED = 'rate-limited-token-0123456789'

beforeAll(async () => {
  t = await startTestServer({
    tokens: [...TOKENS!, { token: LIMITED, account: 'acme', workspace: 'master', requestsPerSecond: 3 }],
    limits: { bodyBytes: 4096, eventsPerRequest: 5 },
  })
})
afterAll(async () => {
  await t.close()
})

const events = `/v1/events`

describe('limits and errors, with their statuses', () => {
  it('413 for a body over limits.bodyBytes', async () => {
    const answer = await request(`${t.url}${events}`, {
      token: ACME,
      body: { topic: 'big', data: 'x'.repeat(5000) },
    })
    expect(answer.status).toBe(413)
    expect(answer.body).toMatchObject({ error: { code: 'payload_too_large' } })
  })

  it('400 for more events than limits.eventsPerRequest', async () => {
    const answer = await request(`${t.url}${events}`, {
      token: ACME,
      body: Array.from({ length: 6 }, () => ({ topic: 'a', data: 1 })),
    })
    expect(answer.status).toBe(400)
    expect(answer.body).toMatchObject({
      error: { code: 'invalid_request', message: expect.stringMatching(/more than 5 items/) },
    })
  })

  it("400 for malformed JSON, with the parser's message", async () => {
    const answer = await request<{ error: { message: string } }>(`${t.url}${events}`, {
      token: ACME,
      raw: '{"topic": "a", "data": }',
      headers: { 'content-type': 'application/json' },
    })
    expect(answer.status).toBe(400)
    expect(answer.body).toMatchObject({ error: { code: 'invalid_request' } })
    // Where it broke, as JSON.parse says it (Fastify alone says only "not valid JSON").
    expect(answer.body.error.message).toMatch(/the body is not valid JSON: Unexpected token '}'/)
    for (const [path, method, token] of [
      ['/v1/apps/shop', 'PUT', ADMIN],
      ['/courier/v0/acme/master/events/order', 'PUT', ACME],
      ['/services/ServerEvents', 'POST', ACME],
    ] as const) {
      const elsewhere = await request<{ error: { message: string } }>(`${t.url}${path}`, {
        method,
        token,
        raw: '{"a": [1, }',
        headers: { 'content-type': 'application/json' },
      })
      expect([path, elsewhere.status, JSON.stringify(elsewhere.body)]).toEqual([
        path,
        400,
        expect.stringMatching(/Unexpected token/),
      ])
    }
    const poisoned = await request<{ error: { message: string } }>(`${t.url}${events}`, {
      token: ACME,
      raw: '{"topic": "a", "data": {"__proto__": {"admin": true}}}',
      headers: { 'content-type': 'application/json' },
    })
    expect(poisoned.status).toBe(400)
    expect(poisoned.body.error.message).toMatch(/__proto__/)
  })

  it('400 naming the problem for an invalid event; nothing of the request is stored', async () => {
    const answer = await request<{ error: { message: string } }>(`${t.url}${events}`, {
      token: ACME,
      body: [
        { topic: 'fine', data: 1 },
        { topic: 'bad//topic', data: 1 },
      ],
    })
    expect(answer.status).toBe(400)
    expect(answer.body).toMatchObject({ error: { code: 'invalid_topic' } })
    const noData = await request(`${t.url}${events}`, { token: ACME, body: { topic: 'x' } })
    expect(noData.body).toMatchObject({ error: { code: 'invalid_event' } })
    const typed = await request(`${t.url}${events}`, { token: ACME, body: { topic: 5, data: 1 } })
    expect(typed.status).toBe(400)
  })

  it('415 for a content type Herald does not accept', async () => {
    const answer = await request(`${t.url}${events}`, {
      token: ACME,
      raw: 'topic=a',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    })
    expect(answer.status).toBe(415)
    expect(answer.body).toMatchObject({ error: { code: 'unsupported_media_type' } })
    const text = await request(`${t.url}${events}`, {
      token: ACME,
      raw: 'hello',
      headers: { 'content-type': 'text/plain' },
    })
    expect(text.status).toBe(415)
  })

  it('401 for a missing or unknown token, on every endpoint', async () => {
    for (const [method, path] of [
      ['POST', events],
      ['GET', `${events}/x`],
      ['GET', '/v1/sse?topics=a'],
      ['GET', '/v1/dead-letters'],
      ['GET', '/metrics'],
      ['POST', '/services/ServerEvents'],
      ['PUT', '/courier/v0/acme/master/events/k'],
    ] as const) {
      const body = method === 'GET' ? undefined : { topic: 'a', data: 1 }
      const missing = await request(`${t.url}${path}`, { method, body })
      expect(missing.status, `${method} ${path}`).toBe(401)
      expect(missing.body).toMatchObject({ error: { code: 'unauthorized' } })
      const unknown = await request(`${t.url}${path}`, { method, body, token: 'nobody-knows-this-token' })
      expect(unknown.status, `${method} ${path}`).toBe(401)
    }
  })

  it('refuses a WebSocket handshake without a valid token with HTTP 401', async () => {
    await expect(StreamClient.open(`${t.wsUrl}/v1/stream`)).rejects.toThrow(/401/)
    await expect(StreamClient.open(`${t.wsUrl}/v1/stream?token=wrong-token-value`)).rejects.toThrow(/401/)
    await expect(
      StreamClient.open(`${t.wsUrl}/services/ServerEvents/Stream?X-Voltmx-Authorization=wrong`),
    ).rejects.toThrow(/401/)
  })

  it('403 for a topic outside the publish list, and for admin endpoints without admin', async () => {
    const answer = await request(`${t.url}${events}`, {
      token: ORDERS_ONLY,
      body: [
        { topic: 'orders/1', data: 1 },
        { topic: 'invoice/1', data: 1 },
      ],
    })
    expect(answer.status).toBe(403)
    expect(answer.body).toMatchObject({ error: { code: 'forbidden' } })
    for (const path of ['/metrics', '/v1/dead-letters']) {
      const refused = await request(`${t.url}${path}`, { token: ACME })
      expect(refused.status, path).toBe(403)
    }
    expect((await request(`${t.url}/metrics`, { token: ADMIN })).status).toBe(200)
  })

  it('answers a dead-letter limit out of range with the range, whatever its size', async () => {
    for (const limit of ['0', '99999999']) {
      const answer = await request(`${t.url}/v1/dead-letters?limit=${limit}`, { token: ADMIN })
      expect(answer.status).toBe(400)
      expect(JSON.stringify(answer.body)).toContain('limit must be an integer from 1 to 10000')
    }
  })

  it('429 with retry-after past the per-token rate limit, other tokens unaffected', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 6; i++)
      statuses.push(
        (await request(`${t.url}${events}`, { token: LIMITED, body: { topic: 'r', data: i } })).status,
      )
    expect(statuses.slice(0, 3)).toEqual([202, 202, 202])
    expect(statuses).toContain(429)
    const limited = await request(`${t.url}${events}`, { token: LIMITED, body: { topic: 'r', data: 0 } })
    expect(limited.status).toBe(429)
    expect(limited.body).toMatchObject({ error: { code: 'rate_limited' } })
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect((await request(`${t.url}${events}`, { token: ACME, body: { topic: 'r', data: 0 } })).status).toBe(
      202,
    )
  })

  it('404 for an event whose topic the token may neither publish nor read', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}${events}`, {
      token: ACME,
      body: { topic: 'invoice/9', data: 1 },
    })
    expect((await request(`${t.url}${events}/${answer.body.ids[0]}`, { token: ORDERS_ONLY })).status).toBe(
      404,
    )
    expect((await request(`${t.url}${events}/${answer.body.ids[0]}`, { token: ACME })).status).toBe(200)
  })

  it('404 for an unknown event and an unknown route', async () => {
    expect((await request(`${t.url}${events}/01NOPE`, { token: ACME })).status).toBe(404)
    const route = await request(`${t.url}/v2/nothing`, { token: ACME })
    expect(route.status).toBe(404)
    expect(route.body).toMatchObject({ error: { code: 'not_found' } })
  })

  it('closes a WebSocket whose frame is over limits.bodyBytes with 1009, logged as a refusal', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, {
      headers: { authorization: `Bearer ${ACME}` },
    })
    client.send({ events: [{ topic: 'big', data: 'x'.repeat(5000) }] })
    expect((await client.closed).code).toBe(1009)
    await waitFor(() => t.logs().includes('broke the WebSocket protocol'))
    const line = t
      .logs()
      .split('\n')
      .find((entry) => entry.includes('broke the WebSocket protocol'))!
    // A warning naming the cause, not an error with a stack: the server did nothing wrong.
    expect(JSON.parse(line)).toMatchObject({ level: 40, code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' })
    expect(line).not.toContain('stack')
  })

  /** A stream for the rate-limited token. The handshake counts too (refused with 429 while its bucket is empty). */
  async function limitedStream(): Promise<StreamClient> {
    let client: StreamClient | undefined
    await waitFor(
      async () => {
        client = await StreamClient.open(`${t.wsUrl}/v1/stream`, {
          headers: { authorization: `Bearer ${LIMITED}` },
        }).catch((error: Error) => {
          expect(error.message).toMatch(/429/)
          return undefined
        })
        return client !== undefined
      },
      5000,
      'the rate limit to let a handshake through',
    )
    return client!
  }

  it('rate-limits stream frames with an error frame, keeping the connection', async () => {
    const client = await limitedStream()
    const replies = []
    for (let i = 0; i < 6; i++) replies.push(await client.call({ subscribe: [`rl${i}`] }))
    expect(
      replies.some((reply) => (reply.error as { code?: string } | undefined)?.code === 'rate_limited'),
    ).toBe(true)
    client.close()
  })

  it('counts malformed stream frames against the rate limit too', async () => {
    const client = await limitedStream()
    const codes: unknown[] = []
    for (let i = 0; i < 6; i++) {
      const reply = await client.call({ subscribe: 5 })
      codes.push((reply.error as { code?: string } | undefined)?.code)
    }
    // Refused as malformed while the bucket lasts (an earlier test may have emptied it), then as over the limit.
    expect(codes.every((code) => code === 'invalid_request' || code === 'rate_limited')).toBe(true)
    expect(codes).toContain('rate_limited')
    client.close()
  })

  it('has no HEAD form of the SSE stream, which would hold a connection open unwritten', async () => {
    const answer = await request(`${t.url}/v1/sse?topics=orders`, { method: 'HEAD', token: ACME })
    expect(answer.status).toBe(404)
  })

  it('never writes a token to the log', () => {
    const logs = t.logs()
    for (const token of [ACME, ADMIN, ORDERS_ONLY, LIMITED]) expect(logs).not.toContain(token)
  })
})

describe('WebSocket upgrades aimed at plain routes', () => {
  it('are refused or closed, and leave nothing that holds up shutdown', async () => {
    const other = await startTestServer({ tokens: TOKENS })
    await expect(StreamClient.open(`${other.wsUrl}/nowhere?token=${ACME}`)).rejects.toThrow(/404/)
    await expect(StreamClient.open(`${other.wsUrl}/v1/events?token=${ACME}`)).rejects.toThrow(/40\d/)
    const sse = await StreamClient.open(`${other.wsUrl}/v1/sse?topics=a&token=${ACME}`).then(
      (client) => client.closed,
      (error: Error) => error.message,
    )
    expect(sse).toBeDefined()
    const health = await StreamClient.open(`${other.wsUrl}/healthz?token=${ACME}`).then(
      (client) => client.closed,
      (error: Error) => error.message,
    )
    expect(health).toBeDefined()
    // @fastify/websocket logs such an upgrade by its URL: the token in it is masked.
    expect(other.logs()).toContain('no websocket handler')
    expect(other.logs()).not.toContain(ACME)
    const started = Date.now()
    await other.close()
    // Well before the drain timeout (500 ms in tests) would cut what is left.
    expect(Date.now() - started).toBeLessThan(400)
  })
})

describe('during shutdown', () => {
  it('refuses new requests with 503 and Herald’s error body, /readyz included', async () => {
    const store = memoryStore()
    // A slow append keeps a stream frame in progress, which holds the shutdown open meanwhile.
    Object.defineProperty(store, 'appendNow', { value: undefined })
    const append = store.append.bind(store)
    store.append = async (...args: Parameters<Store['append']>) => {
      await sleep(800)
      return append(...args)
    }
    const server = await startTestServer({ tokens: TOKENS }, { store })
    const client = await StreamClient.open(`${server.wsUrl}/v1/stream`, {
      headers: { authorization: `Bearer ${ACME}` },
    })
    client.send({ events: [{ topic: 'orders', data: 1 }], ref: 'slow' })
    await sleep(50)
    const closing = server.close()
    await sleep(50)
    const ready = await request(`${server.url}/readyz`)
    expect(ready.status).toBe(503)
    expect(ready.body).toEqual({ error: { code: 'closed', message: 'the server is shutting down' } })
    const publish = await request(`${server.url}/v1/events`, {
      token: ACME,
      body: { topic: 'orders', data: 2 },
    })
    expect(publish.status).toBe(503)
    expect(publish.body).toMatchObject({ error: { code: 'closed' } })
    expect(await client.next((frame) => frame.ref === 'slow')).toMatchObject({
      published: [expect.any(String)],
    })
    await closing
  })
})
