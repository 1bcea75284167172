import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers.js'
import {
  ACME,
  ORDERS_ONLY,
  SseClient,
  StreamClient,
  TOKENS,
  request,
  startTestServer,
  type TestServer,
} from './helpers.js'

let t: TestServer

beforeAll(async () => {
  t = await startTestServer({ tokens: TOKENS, sseHeartbeatInterval: 1000 })
})
afterAll(async () => {
  await t.close()
})

const auth = { headers: { authorization: `Bearer ${ACME}` } }

async function publish(topic: string, data: unknown, token = ACME): Promise<string> {
  const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, { token, body: { topic, data } })
  expect(answer.status).toBe(202)
  return answer.body.ids[0]!
}

describe('native WebSocket /v1/stream', () => {
  it('replies to subscribe, pushes matching events with their seq, echoes ref', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    const reply = await client.call({ subscribe: ['ws1/orders', 'ws1/invoice/*'] }, 'sub-1')
    // position: the log's head when the stream began, to resume from should it drop before any event.
    expect(reply).toEqual({
      subscribed: ['ws1/orders', 'ws1/invoice/*'],
      position: expect.any(String),
      ref: 'sub-1',
    })
    await publish('ws1/other', 0)
    const paid = await publish('ws1/orders/42/paid', { amount: 1 })
    const sent = await publish('ws1/invoice/9', 'x')
    const events = await client.events(2)
    expect(events.map((event) => event.id)).toEqual([paid, sent])
    expect(events[0]).toMatchObject({ topic: 'ws1/orders/42/paid', data: { amount: 1 }, account: 'acme' })
    expect(events[0]!.seq! < events[1]!.seq!).toBe(true)
    client.close()
  })

  it('replies to every later subscribe with the seq of the last event sent, however many came between', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await client.call({ subscribe: ['wsp/a'] })
    await publish('wsp/a', 1)
    const [sent] = await client.events(1)
    for (const pattern of ['wsp/b', 'wsp/c'])
      expect(await client.call({ subscribe: [pattern] })).toMatchObject({ position: sent!.seq })
    await client.call({ unsubscribe: ['wsp/a', 'wsp/b', 'wsp/c'] })
    expect(await client.call({ subscribe: ['wsp/d'] })).toMatchObject({ position: sent!.seq })
    client.close()
  })

  it('delivers an event matching several patterns once', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await client.call({ subscribe: ['ws2'] })
    await client.call({ subscribe: 'ws2/a;ws2/*' })
    const id = await publish('ws2/a', 1)
    const last = await publish('ws2/b', 2)
    const events = await client.events(2)
    expect(events.map((event) => event.id)).toEqual([id, last])
    client.close()
  })

  it('stops events after unsubscribe', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await client.call({ subscribe: ['ws3/a', 'ws3/b'] })
    expect(await client.call({ unsubscribe: ['ws3/a', 'ws3/never'] })).toMatchObject({
      unsubscribed: ['ws3/a'],
    })
    await publish('ws3/a', 1)
    const b = await publish('ws3/b', 2)
    const events = await client.events(1)
    expect(events.map((event) => event.id)).toEqual([b])
    client.close()
  })

  it('publishes {"events":[...]} frames and answers with the ids', async () => {
    const watcher = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await watcher.call({ subscribe: ['ws4'] })
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    const reply = await client.call(
      {
        events: [
          { topic: 'ws4/x', data: 1 },
          { topic: 'ws4/y', data: 2 },
        ],
      },
      7 as unknown as string,
    )
    expect(reply.ref).toBe(7)
    const ids = reply.published as string[]
    expect(ids).toHaveLength(2)
    expect((await watcher.events(2)).map((event) => event.id)).toEqual(ids)
    watcher.close()
    client.close()
  })

  it('sends several events per frame with batch:true, in order', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await client.call({ subscribe: ['ws5'], batch: true })
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: Array.from({ length: 20 }, (_, i) => ({ topic: 'ws5/n', data: i })),
    })
    const frame = await client.next((f) => Array.isArray(f.events))
    expect((frame.events as { id: string }[]).map((event) => event.id)).toEqual(answer.body.ids)
    client.close()
  })

  it('resumes after a disconnect from the last seq without losing what was stored meanwhile', async () => {
    const first = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await first.call({ subscribe: ['ws6'] })
    const before = await publish('ws6/a', 1)
    const [seen] = await first.events(1)
    expect(seen!.id).toBe(before)
    first.close()
    await first.closed
    const missed = [await publish('ws6/b', 2), await publish('ws6/c', 3)]
    await publish('ws6-elsewhere', 0)
    const second = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    expect(await second.call({ subscribe: ['ws6'], since: seen!.seq })).toMatchObject({ subscribed: ['ws6'] })
    const live = await publish('ws6/d', 4)
    const events = await second.events(3)
    expect(events.map((event) => event.id)).toEqual([...missed, live])
    second.close()
  })

  it('refuses a since past the log’s head (an event id, a bare number) before confirming the subscribe', async () => {
    const id = await publish('ws7/a', 1)
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    for (const since of [id, '42', 'abc']) {
      expect(await client.call({ subscribe: ['ws7'], since })).toMatchObject({
        error: { code: 'invalid_request', details: { since } },
      })
    }
    // The connection stays usable, and nothing was subscribed.
    expect(await client.call({ subscribe: ['ws7'], since: '' })).toMatchObject({ subscribed: ['ws7'] })
    expect((await client.events(1))[0]).toMatchObject({ id })
    client.close()
  })

  it('refuses patterns outside the token list with a forbidden error frame and honours the rest', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, {
      headers: { authorization: `Bearer ${ORDERS_ONLY}` },
    })
    client.send({ subscribe: ['orders', 'invoice'], ref: 'f' })
    const error = await client.next((f) => f.error !== undefined)
    expect(error).toMatchObject({
      ref: 'f',
      error: { code: 'forbidden', details: { patterns: ['invoice'] } },
    })
    expect(await client.next((f) => f.subscribed !== undefined)).toEqual({
      subscribed: ['orders'],
      position: expect.any(String),
      ref: 'f',
    })
    const id = await publish('orders/1', 1)
    await publish('invoice/1', 1)
    expect((await client.events(1)).map((e) => e.id)).toEqual([id])
    client.close()
  })

  it('answers a malformed frame with an error frame and stays open', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    client.send('{"subscribe":')
    const error = await client.next()
    expect(error).toMatchObject({ error: { code: 'invalid_request' } })
    expect(String((error.error as { message: string }).message)).toMatch(/not JSON/)
    expect(await client.call({ subscribe: 5 })).toMatchObject({ error: { code: 'invalid_request' } })
    expect(await client.call({ hello: 1 })).toMatchObject({ error: { code: 'invalid_request' } })
    expect(await client.call({ subscribe: ['bad//pattern'] })).toMatchObject({
      error: { code: 'invalid_pattern' },
    })
    expect(await client.call({ events: [{ topic: 'x' }] })).toMatchObject({
      error: { code: 'invalid_event' },
    })
    expect(await client.call({ events: [null, 5] })).toMatchObject({ error: { code: 'invalid_event' } })
    expect(await client.call({ subscribe: ['still-open'] })).toMatchObject({ subscribed: ['still-open'] })
    client.close()
  })

  it('refuses a frame of more patterns than a connection may hold before looking at them one by one', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    // About 190 KiB: within the frame limit, and all distinct.
    const many = Array.from({ length: 30_000 }, (_, i) => `p${i}`).join(';')
    for (const frame of [{ subscribe: many }, { unsubscribe: many }]) {
      const answer = await client.call(frame)
      expect(answer).toMatchObject({ error: { code: 'invalid_request' } })
      expect(String((answer.error as { message: string }).message)).toContain('at most 1000 patterns')
    }
    expect(await client.call({ subscribe: ['still-open'] })).toMatchObject({ subscribed: ['still-open'] })
    client.close()
  })

  it('accepts the token as a query parameter', async () => {
    const client = await StreamClient.open(`${t.wsUrl}/v1/stream?token=${ACME}`)
    expect(await client.call({ subscribe: ['q'] })).toMatchObject({ subscribed: ['q'] })
    client.close()
  })
})

describe('Volt MX WebSocket /services/ServerEvents/Stream', () => {
  const url = () => `${t.wsUrl}/services/ServerEvents/Stream?X-Voltmx-Authorization=${ACME}&clientUUID=c-1`

  it('subscribes with the SDK frame, pushes 620010 events, takes acks', async () => {
    const client = await StreamClient.open(url())
    client.send({
      subscribe: {
        'X-Voltmx-Authorization': ACME,
        clientUUID: 'c-1',
        topics: { private: ['vmx/transaction'] },
      },
    })
    expect(await client.next()).toEqual({
      code: 620001,
      message: 'Subscribed successfully',
      successTopics: ['vmx/transaction'],
      failedTopics: [],
    })
    const id = await publish('vmx/transaction/credit', { amount: 5 })
    const event = await client.next()
    expect(event).toEqual({ code: 620010, eventId: id, topic: 'vmx/transaction/credit', data: { amount: 5 } })
    client.send({ ack: { eventId: id } })
    client.send({ unsubscribe: ['vmx/transaction', 'vmx/nope'] })
    expect(await client.next()).toMatchObject({
      code: 620009,
      successTopics: ['vmx/transaction'],
      failedTopics: ['vmx/nope'],
    })
    client.send({ unsubscribe: ['vmx/nope'] })
    // A full failure lists only the failed topics, as Volt MX's does.
    expect(await client.next()).toEqual({
      code: 620008,
      message: 'Unsubscribed failed',
      failedTopics: ['vmx/nope'],
    })
    client.close()
  })

  it('publishes {"events":[...]} with 620004, and answers partial and failed publishes', async () => {
    const watcher = await StreamClient.open(`${t.wsUrl}/v1/stream`, auth)
    await watcher.call({ subscribe: ['vmx2'] })
    const client = await StreamClient.open(url())
    client.send({ events: [{ topic: 'vmx2/a', data: { x: 1 }, additionalMetadata: { m: 1 } }] })
    expect(await client.next()).toMatchObject({ code: 620004, successTopics: ['vmx2/a'], failedTopics: [] })
    const [event] = await watcher.events(1)
    expect(event).toMatchObject({ topic: 'vmx2/a', metadata: { m: 1 } })
    client.send({ events: [{ topic: 'vmx2/b' }] })
    expect(await client.next()).toMatchObject({ code: 620005, failedTopics: ['vmx2/b'] })
    // An event without its topic is a missing mandatory parameter; nothing of the frame is published.
    client.send({ events: [{ topic: 'vmx2/c', data: 1 }, { data: 2 }] })
    expect(await client.next()).toEqual({
      code: 620012,
      message: 'Missing mandatory parameter: topic (event 2)',
    })
    watcher.close()
    client.close()

    const limited = await StreamClient.open(
      `${t.wsUrl}/services/ServerEvents/Stream?X-Voltmx-Authorization=${ORDERS_ONLY}`,
    )
    limited.send({
      events: [
        { topic: 'orders/1', data: 1 },
        { topic: 'invoice/1', data: 1 },
      ],
    })
    expect(await limited.next()).toMatchObject({
      code: 620006,
      successTopics: ['orders/1'],
      failedTopics: ['invoice/1'],
    })
    limited.send({ subscribe: ['orders', 'invoice'] })
    expect(await limited.next()).toMatchObject({
      code: 620003,
      successTopics: ['orders'],
      failedTopics: ['invoice'],
    })
    limited.send({ subscribe: ['invoice'] })
    expect(await limited.next()).toEqual({
      code: 620002,
      message: 'Subscribed failed',
      failedTopics: ['invoice'],
    })
    limited.close()
  })

  it('answers 620011, 620012 and 620014 for a wrong token in the frame, no topics, and a bad payload', async () => {
    const client = await StreamClient.open(url())
    client.send({ subscribe: { 'X-Voltmx-Authorization': 'not-the-token', topics: { private: ['a'] } } })
    expect(await client.next()).toMatchObject({ code: 620011 })
    client.send({ subscribe: { topics: { private: [] } } })
    expect(await client.next()).toMatchObject({ code: 620012 })
    client.send('not json')
    expect(await client.next()).toMatchObject({ code: 620014 })
    client.send({ hello: 1 })
    expect(await client.next()).toMatchObject({ code: 620014 })
    client.send({ subscribe: Array.from({ length: 30_000 }, (_, i) => `p${i}`).join(';') })
    expect(await client.next()).toMatchObject({ code: 620014, message: 'at most 1000 topics at once' })
    client.close()
  })
})

describe('SSE /v1/sse', () => {
  it('streams one message per event with its seq as id, and heartbeats as comments', async () => {
    const sse = await SseClient.open(`${t.url}/v1/sse?topics=sse1/a;sse1/b`, {
      authorization: `Bearer ${ACME}`,
    })
    expect(sse.response.status).toBe(200)
    expect(sse.response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    await waitFor(() => sse.comments.includes('connected'), 5000, 'the stream to open')
    const a = await publish('sse1/a/1', 1)
    await publish('sse1/c', 0)
    const b = await publish('sse1/b', 2)
    await waitFor(() => sse.messages.length === 2, 5000, 'two messages')
    expect(sse.messages.map((message) => message.data.id)).toEqual([a, b])
    expect(sse.messages[0]!.id).toBe(sse.messages[0]!.data.seq)
    await waitFor(() => sse.comments.includes('heartbeat'), 5000, 'a heartbeat')
    sse.close()
  })

  it('resumes with Last-Event-ID without losing what was stored meanwhile', async () => {
    const first = await SseClient.open(`${t.url}/v1/sse?topics=sse2`, { authorization: `Bearer ${ACME}` })
    await waitFor(() => first.comments.includes('connected'))
    await publish('sse2/a', 1)
    await waitFor(() => first.messages.length === 1)
    first.close()
    const missed = [await publish('sse2/b', 2), await publish('sse2/c', 3)]
    const second = await SseClient.open(`${t.url}/v1/sse?topics=sse2&token=${ACME}`, {
      'last-event-id': first.messages[0]!.id!,
    })
    await waitFor(() => second.messages.length === 2)
    const live = await publish('sse2/d', 4)
    await waitFor(() => second.messages.length === 3)
    expect(second.messages.map((message) => message.data.id)).toEqual([...missed, live])
    second.close()
  })

  it('refuses a pattern outside the token list with 403 and a bad one with 400', async () => {
    const forbidden = await request(`${t.url}/v1/sse?topics=orders;invoice`, { token: ORDERS_ONLY })
    expect(forbidden.status).toBe(403)
    expect(forbidden.body).toMatchObject({ error: { code: 'forbidden' } })
    const bad = await request(`${t.url}/v1/sse?topics=a//b`, { token: ACME })
    expect(bad.status).toBe(400)
    expect(bad.body).toMatchObject({ error: { code: 'invalid_pattern' } })
  })

  it('answers 400 to a Last-Event-ID past the log’s head, so that an EventSource stops rather than retry it forever', async () => {
    const id = await publish('sse9', 1)
    const answer = await request(`${t.url}/v1/sse?topics=sse9`, {
      token: ACME,
      headers: { 'last-event-id': id },
    })
    expect(answer.status).toBe(400)
    expect(answer.body).toMatchObject({ error: { code: 'invalid_request', details: { since: id } } })
  })
})

describe('slow SSE client', () => {
  it('is disconnected once more than limits.wsBufferBytes waits for it', async () => {
    const slow = await startTestServer({
      tokens: TOKENS,
      limits: { wsBufferBytes: 64 * 1024, bodyBytes: 4 * 1024 * 1024 },
    })
    const { get: httpGet } = await import('node:http')
    let ended = false
    await new Promise<void>((resolve) => {
      const call = httpGet(`${slow.url}/v1/sse?topics=flood&token=${ACME}`, (response) => {
        response.pause()
        response.on('close', () => (ended = true))
        resolve()
      })
      call.on('error', () => (ended = true))
    })
    const payload = 'x'.repeat(2000)
    for (let i = 0; i < 20 && !ended; i++) {
      const answer = await request(`${slow.url}/v1/events`, {
        token: ACME,
        body: Array.from({ length: 500 }, (_, j) => ({ topic: 'flood', data: { i, j, payload } })),
      })
      expect(answer.status).toBe(202)
    }
    const metrics = await request<string>(`${slow.url}/metrics`, { token: TOKENS![0]!.token })
    expect(metrics.body).toMatch(/herald_stream_slow_closed_total\{transport="sse"\} 1/)
    expect(metrics.body).toMatch(/herald_connections\{transport="sse"\} 0/)
    await waitFor(() => ended, 5000, 'the client to see the stream end')
    await slow.close()
  })
})

describe('a client that stops reading during its replay', () => {
  it('is disconnected once more live events wait behind the replay than a stream holds', async () => {
    const stalled = await startTestServer({
      tokens: TOKENS,
      limits: { wsBufferBytes: 64 * 1024, bodyBytes: 4 * 1024 * 1024, eventsPerRequest: 1000 },
      store: 'memory:?maxEvents=20000',
    })
    const payload = 'x'.repeat(2000)
    // A backlog bigger than the stream lets wait for the client: its replay stops for the client.
    // (10 MB: more than loopback's socket buffers take before the server sees the client stall.)
    for (let batch = 0; batch < 5; batch++) {
      const backlog = await request(`${stalled.url}/v1/events`, {
        token: ACME,
        body: Array.from({ length: 1000 }, (_, i) => ({ topic: 'held', data: { i, payload } })),
      })
      expect(backlog.status).toBe(202)
    }
    const { get: httpGet } = await import('node:http')
    let ended = false
    let reader: import('node:http').IncomingMessage | undefined
    await new Promise<void>((resolve) => {
      const call = httpGet(`${stalled.url}/v1/sse?topics=held&since=&token=${ACME}`, (response) => {
        response.pause()
        reader = response
        response.on('close', () => (ended = true))
        resolve()
      })
      call.on('error', () => (ended = true))
    })
    const slowClosed = async () =>
      (await request<string>(`${stalled.url}/metrics`, { token: TOKENS![0]!.token })).body.includes(
        'herald_stream_slow_closed_total{transport="sse"} 1',
      )
    // Small live events: the bytes waiting for the client stay under its limit; their number does not.
    for (let i = 0; i < 5 && !(await slowClosed()); i++) {
      const answer = await request(`${stalled.url}/v1/events`, {
        token: ACME,
        body: Array.from({ length: 1000 }, (_, j) => ({ topic: 'held', data: j })),
      })
      expect(answer.status).toBe(202)
    }
    expect(await slowClosed()).toBe(false) // 5,000 held: not yet
    await request(`${stalled.url}/v1/events`, { token: ACME, body: { topic: 'held', data: 'one more' } })
    await waitFor(slowClosed, 5000, 'the stalled client to be closed as slow')
    reader!.resume() // it reads what was sent before the end, then sees the end
    await waitFor(() => ended, 5000, 'the client to see the stream end')
    await stalled.close()
  })
})

describe('resuming far behind', () => {
  it('replays more than limits.wsBufferBytes to a client that reads, without closing it', async () => {
    const far = await startTestServer({
      tokens: TOKENS,
      store: 'memory:?maxEvents=50000',
      limits: { wsBufferBytes: 512 * 1024, bodyBytes: 4 * 1024 * 1024 },
    })
    const payload = 'x'.repeat(1000)
    const ids: string[] = []
    for (let i = 0; i < 10; i++) {
      const answer = await request<{ ids: string[] }>(`${far.url}/v1/events`, {
        token: ACME,
        body: Array.from({ length: 1000 }, (_, j) => ({ topic: 'behind', data: { i, j, payload } })),
      })
      ids.push(...answer.body.ids)
    }
    // About 10 MB to replay, twenty times the per-connection buffer.
    const client = await StreamClient.open(`${far.wsUrl}/v1/stream?token=${ACME}`)
    await client.call({ subscribe: ['behind'], since: '' })
    // Published while the replay is still under way: held back, then sent after it, in order.
    const live = await request<{ ids: string[] }>(`${far.url}/v1/events`, {
      token: ACME,
      body: Array.from({ length: 1000 }, (_, j) => ({ topic: 'behind', data: { live: j, payload } })),
    })
    ids.push(...live.body.ids)
    const events = await client.events(ids.length, 20_000)
    expect(events.map((event) => event.id)).toEqual(ids)
    expect(client.socket.readyState).toBe(client.socket.OPEN)
    const sse = await SseClient.open(`${far.url}/v1/sse?topics=behind&since=&token=${ACME}`)
    await waitFor(() => sse.messages.length === ids.length, 20_000, 'the SSE replay')
    sse.close()
    client.close()
    await far.close()
  }, 60_000)
})
