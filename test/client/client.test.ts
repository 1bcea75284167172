import WebSocket from 'ws'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { HeraldClient, type HeraldEvent, type SubscriptionState } from '../../src/client/index.js'
import { backoffWait } from '../../src/client/subscription.js'
import { sleep, waitFor } from '../helpers.js'
import { ACME, ORDERS_ONLY, TOKENS, startTestServer, type TestServer } from '../server/helpers.js'
import { startProxy, type Proxy } from './proxy.js'

let server: TestServer
let proxy: Proxy
const clients: HeraldClient[] = []
beforeEach(async () => {
  server = await startTestServer({ tokens: TOKENS })
  proxy = await startProxy(Number(new URL(server.url).port))
})
afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
  await proxy.close()
  await server.close()
})

function client(url: string, token: string): HeraldClient {
  const made = new HeraldClient({ url, token, WebSocket, reconnect: { initialDelay: 50, maxDelay: 200 } })
  clients.push(made)
  return made
}

describe('HeraldClient', () => {
  it('publishes over HTTP and refuses with the server’s error code', async () => {
    const publisher = client(server.url, ORDERS_ONLY)
    const ids = await publisher.publish([
      { topic: 'orders/1', data: 1 },
      { topic: 'orders/2', data: 2 },
    ])
    expect(ids).toHaveLength(2)
    await expect(publisher.publish({ topic: 'invoices/1', data: 1 })).rejects.toMatchObject({
      name: 'HeraldError',
      code: 'forbidden',
    })
    await expect(
      client(server.url, 'not-a-token-0123456789').publish({ topic: 'a', data: 1 }),
    ).rejects.toMatchObject({
      code: 'unauthorized',
    })
    // A server out of reach is a HeraldError too, naming where and why.
    proxy.down()
    await expect(client(proxy.url, ACME).publish({ topic: 'a', data: 1 })).rejects.toMatchObject({
      name: 'HeraldError',
      code: 'store_unavailable',
      message: expect.stringContaining(`cannot reach the server at ${proxy.url}/v1/events`),
    })
  })

  it('resumes after the server drops its connection and misses nothing, none twice', async () => {
    const publisher = client(server.url, ACME)
    const received: HeraldEvent[] = []
    const states: SubscriptionState[] = []
    const subscription = client(proxy.url, ACME).subscribe('orders', (event) => void received.push(event), {
      onState: (state) => states.push(state),
    })
    await subscription.ready
    const before = await publisher.publish([1, 2, 3].map((n) => ({ topic: `orders/${n}`, data: n })))
    await waitFor(() => received.length === 3, 5000, 'the first three')

    // The network between the subscriber and the server goes away for a while.
    proxy.down()
    proxy.cut()
    await waitFor(() => states.includes('reconnecting'), 5000, 'the client to notice')
    const during = await publisher.publish([4, 5, 6, 7, 8].map((n) => ({ topic: `orders/${n}`, data: n })))
    await new Promise((resolve) => setTimeout(resolve, 300)) // a few refused reconnections
    proxy.up()
    await waitFor(() => received.length === 8, 10_000, 'the events stored while away')
    const after = await publisher.publish({ topic: 'orders/9', data: 9 })
    await waitFor(() => received.length === 9, 5000, 'the next live event')

    expect(received.map((event) => event.id)).toEqual([...before, ...during, ...after])
    expect(received.map((event) => event.data)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(subscription.position).toBe(received.at(-1)!.seq)
    expect(states.at(-1)).toBe('live')
    expect(proxy.connections).toBeGreaterThanOrEqual(2)
  })

  it('resumes without a gap even when the connection drops before the first event', async () => {
    const received: unknown[] = []
    const states: SubscriptionState[] = []
    const subscription = client(proxy.url, ACME).subscribe(
      'orders',
      (event) => void received.push(event.data),
      {
        onState: (state) => states.push(state),
      },
    )
    await subscription.ready
    proxy.down()
    proxy.cut()
    await waitFor(() => states.includes('reconnecting'), 5000, 'the client to notice')
    await client(server.url, ACME).publish({ topic: 'orders/1', data: 'while away' })
    proxy.up()
    await waitFor(() => received.length === 1, 10_000, 'the event stored while away')
    expect(received).toEqual(['while away'])
  })

  it('replays from a saved position with since', async () => {
    const publisher = client(server.url, ACME)
    const seen: HeraldEvent[] = []
    const first = client(server.url, ACME).subscribe('orders', (event) => void seen.push(event))
    await first.ready
    await publisher.publish({ topic: 'orders/1', data: 1 })
    await waitFor(() => seen.length === 1)
    const saved = first.position!
    first.close()
    await publisher.publish<unknown>([
      { topic: 'orders/2', data: 2 },
      { topic: 'invoices/1', data: 'not subscribed' },
      { topic: 'orders/3', data: 3 },
    ])
    const replayed: unknown[] = []
    const second = client(server.url, ACME).subscribe('orders', (event) => void replayed.push(event.data), {
      since: saved,
    })
    await second.ready
    await waitFor(() => replayed.length === 2)
    expect(replayed).toEqual([2, 3])
  })

  it('refuses reconnect policies that would hammer a failing server, and never waits past maxDelay', async () => {
    for (const reconnect of [
      { initialDelay: 0 },
      { initialDelay: Number.NaN },
      { maxDelay: -1 },
      { factor: 0.5 },
      { initialDelay: 500, maxDelay: 100 },
    ]) {
      expect(() => new HeraldClient({ url: server.url, WebSocket, reconnect })).toThrow(
        expect.objectContaining({ code: 'invalid_option' }),
      )
    }
    // Jitter stays within maxDelay: at the cap it goes below it instead of above.
    expect(backoffWait(100, 10_000, 1)).toBe(120)
    expect(backoffWait(200, 200, 1)).toBe(200)
    expect(backoffWait(200, 200, 0.5)).toBe(180)
    const attempts: number[] = []
    class Unreachable {
      constructor() {
        attempts.push(performance.now())
        throw new Error('unreachable')
      }
    }
    // The largest jitter, every time: the old cap-then-jitter waited 240 ms here.
    const random = vi.spyOn(Math, 'random').mockReturnValue(1)
    try {
      const failing = new HeraldClient({
        url: server.url,
        // An explicit undefined keeps the default rather than turning the delay into NaN.
        reconnect: { initialDelay: 200, maxDelay: 200, factor: undefined },
        WebSocket: Unreachable as never,
      })
      const subscription = failing.subscribe('orders', () => {})
      await waitFor(() => attempts.length === 4, 5000)
      subscription.close()
    } finally {
      random.mockRestore()
    }
    const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!)
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(195)
    expect(Math.min(...gaps)).toBeLessThan(236)
  })

  it('ends with unauthorized when a browser-like WebSocket hides why the handshake failed (asked over HTTP)', async () => {
    // As a browser's: the error event carries no message, so the refusal's status is unknown;
    // and no ping events either.
    type Listener = ((event: never) => void) | null
    class BrowserLike {
      private readonly socket: WebSocket
      constructor(url: string) {
        this.socket = new WebSocket(url)
      }
      get readyState(): number {
        return this.socket.readyState
      }
      send(data: string): void {
        this.socket.send(data)
      }
      close(code?: number, reason?: string): void {
        this.socket.close(code, reason)
      }
      set onopen(listener: Listener) {
        this.socket.onopen = listener && (() => listener({} as never))
      }
      set onmessage(listener: Listener) {
        this.socket.onmessage = listener && ((event) => listener({ data: event.data } as never))
      }
      set onclose(listener: Listener) {
        this.socket.onclose =
          listener && ((event) => listener({ code: event.code, reason: event.reason } as never))
      }
      set onerror(listener: Listener) {
        this.socket.onerror = listener && (() => listener({ type: 'error' } as never))
      }
    }
    const refused = new HeraldClient({
      url: server.url,
      token: 'wrong-token-0123456789',
      WebSocket: BrowserLike,
      reconnect: { initialDelay: 50, maxDelay: 200 },
    })
    clients.push(refused)
    const subscription = refused.subscribe('orders', () => {})
    await expect(subscription.ready).rejects.toMatchObject({ code: 'unauthorized' })
    expect(subscription.state).toBe('closed')
    // With a good token the same WebSocket subscribes as usual.
    const accepted = new HeraldClient({ url: server.url, token: ACME, WebSocket: BrowserLike })
    clients.push(accepted)
    await accepted.subscribe('orders', () => {}).ready
  })

  it('says why each reconnection failed when the WebSocket tells (a wrong path, a refused port)', async () => {
    const errors: string[] = []
    const wrongPath = client(`${server.url}/nope/`, ACME).subscribe('orders', () => {}, {
      onError: (error) => void errors.push(error.message),
    })
    await waitFor(() => errors.length > 0)
    wrongPath.close()
    expect(errors[0]).toContain('Unexpected server response: 404')
    proxy.down()
    const refused: string[] = []
    const down = client(proxy.url, ACME).subscribe('orders', () => {}, {
      onError: (error) => void refused.push(error.message),
    })
    await waitFor(() => refused.length > 0)
    down.close()
    expect(refused[0]).toMatch(/the stream closed \(\d+ .+\); reconnecting/)
  })

  it('notices a connection gone silent without closing (half-open), cuts it and resumes, missing nothing', async () => {
    const quick = await startTestServer({ tokens: TOKENS, pingInterval: 1000 })
    const halfOpen = await startProxy(Number(new URL(quick.url).port))
    try {
      const seen: unknown[] = []
      const errors: string[] = []
      const subscriber = new HeraldClient({
        url: halfOpen.url,
        token: ACME,
        WebSocket,
        reconnect: { initialDelay: 50, maxDelay: 200, heartbeatTimeout: 2500 },
      })
      clients.push(subscriber)
      const subscription = subscriber.subscribe('orders', (event) => void seen.push(event.data), {
        onError: (error) => void errors.push(error.message),
      })
      await subscription.ready
      const publisher = client(quick.url, ACME)
      await publisher.publish({ topic: 'orders/1', data: 'before' })
      await waitFor(() => seen.length === 1)
      halfOpen.freeze()
      await publisher.publish({ topic: 'orders/1', data: 'after' })
      await waitFor(() => seen.length === 2, 10_000, 'the event published after the freeze')
      expect(seen).toEqual(['before', 'after'])
      expect(errors.some((message) => message.includes('not even a ping'))).toBe(true)
      expect(subscription.state).toBe('live')
    } finally {
      await halfOpen.close()
      await quick.close()
    }
  })

  it('refuses a since that is not a position of the log (an event id, a bare number), rejecting ready', async () => {
    const publisher = client(server.url, ACME)
    const [id] = await publisher.publish({ topic: 'orders/1', data: 1 })
    for (const since of [id!, '42']) {
      const subscription = client(server.url, ACME).subscribe('orders', () => {}, { since })
      await expect(subscription.ready).rejects.toMatchObject({ code: 'invalid_request' })
      expect(subscription.state).toBe('closed')
    }
  })

  it('resumes from the head of a log wiped while it was away (a memory store restarted), saying so', async () => {
    const port = Number(new URL(server.url).port)
    const seen: unknown[] = []
    const errors: string[] = []
    const subscription = client(proxy.url, ACME).subscribe('orders', (event) => void seen.push(event.data), {
      onError: (error) => void errors.push(error.message),
    })
    await subscription.ready
    await client(server.url, ACME).publish([
      { topic: 'orders/a', data: 'A0' },
      { topic: 'orders/a', data: 'A1' },
    ])
    await waitFor(() => seen.length === 2)
    await server.close()
    server = await startTestServer({ tokens: TOKENS, port })
    await waitFor(() => errors.some((message) => message.includes('does not reach')), 10_000)
    await waitFor(() => subscription.state === 'live')
    await client(server.url, ACME).publish({ topic: 'orders/b', data: 'B0' })
    await waitFor(() => seen.length === 3)
    expect(seen).toEqual(['A0', 'A1', 'B0'])
  })

  it('reports refused patterns and keeps the allowed ones', async () => {
    const errors: Error[] = []
    const got: unknown[] = []
    const subscription = client(server.url, ORDERS_ONLY).subscribe(
      'orders;invoices',
      (e) => void got.push(e.data),
      {
        onError: (error) => errors.push(error),
      },
    )
    await subscription.ready
    await waitFor(() => errors.length === 1)
    expect(errors[0]).toMatchObject({ code: 'forbidden' })
    await client(server.url, ACME).publish([
      { topic: 'invoices/1', data: 'no' },
      { topic: 'orders/1', data: 'yes' },
    ])
    await waitFor(() => got.length === 1)
    expect(got).toEqual(['yes'])
  })

  it('closing a subscription while it still connects settles it, without an unhandled error', async () => {
    const subscription = client(server.url, ACME).subscribe('orders', () => {})
    subscription.close()
    await expect(subscription.ready).rejects.toMatchObject({ code: 'closed' })
    expect(subscription.state).toBe('closed')
    await sleep(100) // `ws` would raise its error on a later tick
  })

  it('gives up, saying why, when no reconnection could help', async () => {
    const cases = [
      { token: 'wrong-token-0123456789', patterns: 'orders', code: 'unauthorized' },
      { token: ACME, patterns: 'orders//x', code: 'invalid_pattern' },
      { token: ORDERS_ONLY, patterns: 'invoices', code: 'forbidden' },
    ]
    for (const { token, patterns, code } of cases) {
      const errors: Error[] = []
      const subscription = client(server.url, token).subscribe(patterns, () => {}, {
        onError: (error) => errors.push(error),
      })
      await expect(subscription.ready, patterns).rejects.toMatchObject({ code })
      expect(subscription.state).toBe('closed')
      await sleep(300) // reconnecting (every 50-200 ms here) would report again
      expect(errors.length, `${code}: ${errors.map((e) => e.message).join('; ')}`).toBeLessThanOrEqual(2)
    }
  })

  it('an onState callback that throws is reported, and the subscription goes on', async () => {
    const errors: Error[] = []
    const got: unknown[] = []
    const subscription = client(server.url, ACME).subscribe('state/*', (e) => void got.push(e.data), {
      onState: () => {
        throw new Error('observer broke')
      },
      onError: (error) => errors.push(error),
    })
    await subscription.ready
    expect(subscription.state).toBe('live')
    await client(server.url, ACME).publish({ topic: 'state/1', data: 1 })
    await waitFor(() => got.length === 1)
    subscription.close()
    expect(subscription.state).toBe('closed')
    expect(errors.map((e) => e.message)).toContain('observer broke')
  })
})
