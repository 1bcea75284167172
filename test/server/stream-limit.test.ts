import { request as httpRequest } from 'node:http'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ACME,
  GLOBEX,
  ORDERS_ONLY,
  SseClient,
  StreamClient,
  startTestServer,
  type TestServer,
} from './helpers.js'

/** The status and body a WebSocket handshake is refused with, or 101 when it opens (then closed). */
function handshake(url: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } })
    socket.once('open', () => {
      socket.close()
      resolve({ status: 101, body: {} })
    })
    socket.once('unexpected-response', (_request, response) => {
      let text = ''
      response.on('data', (chunk: Buffer) => (text += chunk.toString()))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }))
    })
    socket.once('error', reject)
  })
}

/** An SSE request's status and, when refused, its error body; an accepted stream is closed at once. */
async function sse(url: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const abort = new AbortController()
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal })
  if (response.status === 200) {
    abort.abort()
    return { status: 200, body: {} }
  }
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

/** Retries `attempt` until it yields `status` (a slot is given back when the socket has closed). */
async function eventually(
  attempt: () => Promise<{ status: number }>,
  status: number,
  timeout = 3000,
): Promise<void> {
  const until = Date.now() + timeout
  for (;;) {
    const answer = await attempt()
    if (answer.status === status) return
    if (Date.now() > until) throw new Error(`still ${answer.status}, wanted ${status}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Used by one test only, so that no stream of another test is still closing when it starts. */
const NARROW = 'narrow-token-0123456789abcdef'

describe('open streams per token (limits.streamsPerToken)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({
      limits: { streamsPerToken: 2 },
      tokens: [
        { token: ACME, account: 'acme', workspace: 'master' },
        { token: GLOBEX, account: 'globex', workspace: 'master' },
        {
          token: ORDERS_ONLY,
          account: 'acme',
          workspace: 'master',
          subscribe: ['orders'],
          streamsPerToken: 1,
        },
        { token: NARROW, account: 'acme', workspace: 'master', subscribe: ['orders'], streamsPerToken: 1 },
      ],
    })
  })
  afterAll(async () => {
    await t.close()
  })

  it('counts WebSocket, Volt MX and SSE streams together and refuses one past the limit with 429, per token', async () => {
    const native = await StreamClient.open(`${t.wsUrl}/v1/stream`, {
      headers: { authorization: `Bearer ${ACME}` },
    })
    const stream = await SseClient.open(`${t.url}/v1/sse?topics=orders`, { authorization: `Bearer ${ACME}` })

    const voltmx = await handshake(`${t.wsUrl}/services/ServerEvents/Stream`, ACME)
    expect(voltmx.status).toBe(429)
    expect(voltmx.body).toMatchObject({ error: { code: 'too_many_streams' } })
    const third = await sse(`${t.url}/v1/sse?topics=orders`, ACME)
    expect(third.status).toBe(429)
    expect(third.body).toMatchObject({ error: { code: 'too_many_streams' } })
    // Another token's streams are its own.
    expect((await handshake(`${t.wsUrl}/v1/stream`, GLOBEX)).status).toBe(101)

    // Closing a stream gives its slot back, whichever kind it was.
    native.close()
    await eventually(() => handshake(`${t.wsUrl}/services/ServerEvents/Stream`, ACME), 101)
    stream.close()
    await eventually(() => sse(`${t.url}/v1/sse?topics=orders`, ACME), 200)
  })

  it('takes a token’s own limit over the server’s', async () => {
    const first = await StreamClient.open(`${t.wsUrl}/v1/stream`, {
      headers: { authorization: `Bearer ${ORDERS_ONLY}` },
    })
    expect((await handshake(`${t.wsUrl}/v1/stream`, ORDERS_ONLY)).status).toBe(429)
    first.close()
    await eventually(() => handshake(`${t.wsUrl}/v1/stream`, ORDERS_ONLY), 101)
  })

  it('gives back the slot of a handshake refused after it was counted (SSE 403, a broken WebSocket upgrade)', async () => {
    for (let i = 0; i < 3; i++) {
      const refused = await sse(`${t.url}/v1/sse?topics=payments`, NARROW)
      expect(refused.status).toBe(403)
    }
    for (let i = 0; i < 3; i++) {
      // An upgrade without Sec-WebSocket-Key passes the hooks and is then refused by the upgrade itself.
      const status = await new Promise<number>((resolve, reject) => {
        const upgrade = httpRequest(`${t.url}/v1/stream`, {
          headers: {
            authorization: `Bearer ${NARROW}`,
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
          },
        })
        upgrade.once('response', (response) => {
          response.resume()
          resolve(response.statusCode ?? 0)
        })
        upgrade.once('upgrade', () => reject(new Error('upgraded without a key')))
        upgrade.once('error', reject)
        upgrade.end()
      })
      expect(status).toBe(400)
    }
    // The limit of NARROW is 1: none of those six holds it.
    await eventually(() => sse(`${t.url}/v1/sse?topics=orders`, NARROW), 200)
  })
})
