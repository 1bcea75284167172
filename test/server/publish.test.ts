import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ACME,
  ORDERS_ONLY,
  StreamClient,
  TOKENS,
  request,
  startTestServer,
  type Frame,
  type TestServer,
} from './helpers.js'

let t: TestServer
let watcher: StreamClient

beforeAll(async () => {
  t = await startTestServer({ tokens: TOKENS })
  watcher = await StreamClient.open(`${t.wsUrl}/v1/stream`, { headers: { authorization: `Bearer ${ACME}` } })
  await watcher.call({ subscribe: ['*'] })
})
afterAll(async () => {
  watcher.close()
  await t.close()
})

async function published(ids: string[]): Promise<Frame[]> {
  const events = await watcher.events(ids.length)
  expect(events.map((event) => event.id)).toEqual(ids)
  return events
}

describe('POST /v1/events', () => {
  it('accepts one event and answers 202 with its id once stored', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: { topic: 'orders/created', data: { n: 1 } },
    })
    expect(answer.status).toBe(202)
    expect(answer.body.ids).toHaveLength(1)
    const [event] = await published(answer.body.ids)
    expect(event).toMatchObject({
      topic: 'orders/created',
      data: { n: 1 },
      account: 'acme',
      workspace: 'master',
    })
    expect(typeof event!.seq).toBe('string')
    const status = await request<{ event: Frame }>(`${t.url}/v1/events/${answer.body.ids[0]}`, {
      token: ACME,
    })
    expect(status.status).toBe(200)
    expect(status.body.event).toMatchObject({ id: answer.body.ids[0], topic: 'orders/created' })
  })

  it('answers with a JSON body that carries publisher ids with quotes, backslashes and non-ASCII intact', async () => {
    const id = `order-"7"\\é-${Date.now()}`
    const answer = await fetch(`${t.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ACME}`, 'content-type': 'application/json' },
      body: JSON.stringify({ topic: 'orders/created', id, data: 1 }),
    })
    expect(answer.status).toBe(202)
    expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8')
    const text = await answer.text()
    expect(Number(answer.headers.get('content-length'))).toBe(Buffer.byteLength(text))
    expect(JSON.parse(text)).toEqual({ ids: [id] })
    await published([id])
  })

  it('accepts an array of events, in order', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: [
        { topic: 'a', data: 1 },
        { name: 'b', data: 2 },
      ],
    })
    expect(answer.status).toBe(202)
    const events = await published(answer.body.ids)
    expect(events.map((event) => event.topic)).toEqual(['a', 'b'])
  })

  it('accepts {"events":[...]} and ignores unknown fields', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: { events: [{ topic: 'c', data: null, colour: 'blue' }], extra: true },
    })
    expect(answer.status).toBe(202)
    const [event] = await published(answer.body.ids)
    expect(event).not.toHaveProperty('colour')
  })

  it('accepts a structured CloudEvent', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      headers: { 'content-type': 'application/cloudevents+json' },
      body: {
        specversion: '1.0',
        id: 'ce-1',
        source: 'acme.billing',
        type: 'invoice/paid',
        data: { total: 3 },
        heraldmetadata: '{"k":"v"}',
      },
    })
    expect(answer.status).toBe(202)
    expect(answer.body.ids).toEqual(['ce-1'])
    const [event] = await published(['ce-1'])
    expect(event).toMatchObject({
      topic: 'invoice/paid',
      sender: 'acme.billing',
      data: { total: 3 },
      metadata: { k: 'v' },
    })
  })

  it('accepts a CloudEvents batch', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: [
        { specversion: '1.0', id: 'ce-2', source: 's', type: 'x/1', data: 1 },
        { specversion: '1.0', id: 'ce-3', source: 's', type: 'x/2', data: 2 },
      ],
    })
    expect(answer.status).toBe(202)
    expect((await published(['ce-2', 'ce-3'])).map((e) => e.topic)).toEqual(['x/1', 'x/2'])
  })

  it('accepts a CloudEvent in binary mode, JSON or text data', async () => {
    const json = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      headers: {
        'ce-specversion': '1.0',
        'ce-type': 'bin/json',
        'ce-id': 'ce-4',
        'ce-source': 'acme.bin',
        'content-type': 'application/json',
      },
      raw: '{"amount":5}',
    })
    expect(json.status).toBe(202)
    const text = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      headers: {
        'ce-specversion': '1.0',
        'ce-type': 'bin/text',
        'ce-id': 'ce-5',
        'ce-source': 'acme.bin',
        'content-type': 'text/plain',
      },
      raw: 'hello',
    })
    expect(text.status).toBe(202)
    const vendor = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      headers: {
        'ce-specversion': '1.0',
        'ce-type': 'bin/vendor',
        'ce-id': 'ce-6',
        'ce-source': 'acme.bin',
        'content-type': 'application/vnd.acme.order+json; charset=utf-8',
      },
      raw: '{"order":7}',
    })
    expect(vendor.status).toBe(202)
    const events = await published(['ce-4', 'ce-5', 'ce-6'])
    expect(events[0]).toMatchObject({ topic: 'bin/json', data: { amount: 5 }, sender: 'acme.bin' })
    expect(events[1]).toMatchObject({ topic: 'bin/text', data: 'hello' })
    expect(events[2]).toMatchObject({ topic: 'bin/vendor', data: { order: 7 } })
    // Without ce-* headers such a type is not an event shape Herald knows.
    const plain = await request(`${t.url}/v1/events`, {
      token: ACME,
      headers: { 'content-type': 'application/vnd.acme.order+json' },
      raw: '{"order":7}',
    })
    expect(plain.status).toBe(415)
  })

  it("stamps the token's sender whatever the event claims", async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ORDERS_ONLY,
      body: { topic: 'orders/1', data: {}, sender: 'someone.else' },
    })
    expect(answer.status).toBe(202)
    const [event] = await published(answer.body.ids)
    expect(event!.sender).toBe('acme.orders')
  })
})

describe('POST /services/ServerEvents (Volt MX)', () => {
  it('publishes {"events":[{topic,data,additionalMetadata}]} with the X-VoltMX-Authorization header', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/services/ServerEvents`, {
      headers: { 'x-voltmx-authorization': ACME },
      body: {
        events: [
          { topic: 'transaction/credit', data: { amount: 10 }, additionalMetadata: { channel: 'mobile' } },
        ],
      },
    })
    expect(answer.status).toBe(202)
    const [event] = await published(answer.body.ids)
    expect(event).toMatchObject({
      topic: 'transaction/credit',
      data: { amount: 10 },
      metadata: { channel: 'mobile' },
    })
  })
})

describe('POST /services/ServerEvents (Volt MX), as its sample sends it', () => {
  it('takes the JSON body whatever its content type says, or with none, and the Volt MX header beside a proxy’s Authorization', async () => {
    const { request: httpRequest } = await import('node:http')
    const body = JSON.stringify({ events: [{ topic: 'vmx-http/a', data: 1 }] })
    const post = (headers: Record<string, string>) =>
      new Promise<{ status: number; ids: string[] }>((resolve, reject) => {
        const call = httpRequest(
          `${t.url}/services/ServerEvents`,
          { method: 'POST', headers },
          (response) => {
            let text = ''
            response.on('data', (chunk: Buffer) => (text += chunk.toString()))
            response.on('end', () =>
              resolve({
                status: response.statusCode ?? 0,
                ids: (JSON.parse(text) as { ids?: string[] }).ids ?? [],
              }),
            )
          },
        )
        call.on('error', reject)
        call.end(body)
      })
    const answers = []
    for (const headers of <Record<string, string>[]>[
      { 'x-voltmx-authorization': ACME },
      { 'x-voltmx-authorization': ACME, 'content-type': 'application/x-www-form-urlencoded' },
      { 'x-voltmx-authorization': ACME, 'content-type': 'text/plain' },
      { 'x-voltmx-authorization': ACME, authorization: 'Basic cHJveHk6c2VjcmV0' },
      { authorization: 'Basic cHJveHk6c2VjcmV0' },
    ])
      answers.push(await post(headers))
    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 202, 202, 401])
    const events = await published(answers.flatMap((answer) => answer.ids))
    expect(events.map((event) => event.topic)).toEqual(Array(4).fill('vmx-http/a'))
  })
})

describe('PUT /courier/v0/:account/:workspace/events/:key (VTEX)', () => {
  it('publishes the body as data, the key as topic, the user agent app as sender', async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/courier/v0/acme/master/events/send-event`, {
      method: 'PUT',
      token: ACME,
      headers: { 'user-agent': 'vtex.events-example@0.0.1' },
      body: { relayed: { n: 1 } },
    })
    expect(answer.status).toBe(202)
    const [event] = await published(answer.body.ids)
    expect(event).toMatchObject({
      topic: 'send-event',
      data: { relayed: { n: 1 } },
      sender: 'vtex.events-example@0.0.1',
    })
  })

  it('takes what sendEvent sends without a message (an empty form: data {}), forms and text, and keeps the operation id', async () => {
    const put = (contentType: string, body: string) =>
      request<{ ids: string[] }>(`${t.url}/courier/v0/acme/master/events/send-event`, {
        method: 'PUT',
        token: ACME,
        raw: body,
        headers: { 'content-type': contentType, 'x-vtex-operation-id': 'op-789' },
      })
    const answers = [
      await put('application/x-www-form-urlencoded', ''),
      await put('application/json', ''),
      await put('application/x-www-form-urlencoded', 'order=7&state=paid'),
      await put('text/plain', 'hello'),
    ]
    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 202, 202])
    const events = await published(answers.map((answer) => answer.body.ids[0]!))
    expect(events.map((event) => event.data)).toEqual([{}, {}, { order: '7', state: 'paid' }, 'hello'])
    expect(events.map((event) => (event.metadata as { operationId?: string }).operationId)).toEqual(
      Array(4).fill('op-789'),
    )
    expect((await put('application/octet-stream', 'x')).status).toBe(415)
  })

  it("prefers the token's app over the user agent", async () => {
    const answer = await request<{ ids: string[] }>(`${t.url}/courier/v0/acme/master/events/orders`, {
      method: 'PUT',
      token: ORDERS_ONLY,
      headers: { 'user-agent': 'vtex.events-example@0.0.1' },
      body: { n: 2 },
    })
    expect(answer.status).toBe(202)
    const [event] = await published(answer.body.ids)
    expect(event!.sender).toBe('acme.orders')
  })
})
