import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { memoryStore, type Store } from '../../src/index.js'
import { sleep, waitFor } from '../helpers.js'
import { signedWith, startReceiver, type Receiver } from '../service/receiver.js'
import {
  ACME,
  ADMIN,
  GLOBEX,
  ORDERS_ONLY,
  TOKENS,
  request,
  startTestServer,
  type TestServer,
} from './helpers.js'

interface DeliveryStatus {
  subscriptionId: string
  state: string
  attempts?: number
  lastError?: string
}

let server: TestServer
let receiver: Receiver
beforeEach(async () => {
  server = await startTestServer({ tokens: TOKENS })
  receiver = await startReceiver()
})
afterEach(async () => {
  await server.close()
  await receiver.close()
})

async function publish(token: string, events: unknown): Promise<string[]> {
  const answer = await request<{ ids: string[] }>(`${server.url}/v1/events`, { token, body: events })
  expect(answer.status).toBe(202)
  return answer.body.ids
}

async function deliveries(id: string): Promise<DeliveryStatus[]> {
  const answer = await request<{ deliveries: DeliveryStatus[] }>(`${server.url}/v1/events/${id}`, {
    token: ADMIN,
  })
  return answer.body.deliveries
}

async function putApp(app: string, body: Record<string, unknown>) {
  return request<{ secret: string; handlers: { subscriptionId: string }[] }>(`${server.url}/v1/apps/${app}`, {
    method: 'PUT',
    token: ADMIN,
    body,
  })
}

describe('PUT /v1/apps/:app', () => {
  it('an app gets exactly the events whose sender and key match, with every wire header and a valid signature', async () => {
    const registered = await putApp('shop', {
      url: receiver.url,
      credential: 'cred-9',
      manifest: {
        events: {
          onOrder: { sender: 'acme.orders', keys: ['orders/created'] },
          onAnything: { topics: ['invoice'] },
        },
      },
    })
    expect(registered.status).toBe(201)
    expect(registered.body.secret).toMatch(/^whsec_/)
    expect(registered.body.handlers.map((h) => h.subscriptionId)).toEqual([
      'app:shop:onOrder',
      'app:shop:onAnything',
    ])

    // ORDERS_ONLY names its app: its events carry the sender acme.orders whatever they claim.
    const [orderId] = await publish(ORDERS_ONLY, { topic: 'orders/created', data: { order: 1 } })
    await publish(ACME, [
      { topic: 'orders/created', sender: 'globex.orders', data: { wrong: 'sender' } },
      { topic: 'orders/updated', sender: 'acme.orders', data: { wrong: 'key' } },
    ])
    await publish(GLOBEX, { topic: 'orders/created', sender: 'acme.orders', data: { wrong: 'tenant' } })
    const [invoiceId] = await publish(ACME, { topic: 'invoice/paid', data: { invoice: 2 } })

    await waitFor(() => receiver.requests.length >= 2, 5000, 'two deliveries')
    await sleep(200)
    expect(receiver.requests).toHaveLength(2)
    const order = receiver.requests.find((r) => r.headers['x-event-handler-id'] === 'onOrder')!
    expect(order.method).toBe('POST')
    expect(order.url).toBe('/acme/master/_events')
    expect(JSON.parse(order.body)).toEqual({ order: 1 })
    expect(order.headers).toMatchObject({
      'content-type': 'application/json',
      'x-event-handler-id': 'onOrder',
      'x-event-sender': 'acme.orders',
      'x-event-key': 'orders/created',
      'x-event-subject': 'acme.orders',
      'x-vtex-account': 'acme',
      'x-vtex-workspace': 'master',
      'x-vtex-credential': 'cred-9',
      'x-vtex-operation-id': orderId,
      'x-herald-event-id': orderId,
      'webhook-id': `acme/master/app:shop:onOrder:${orderId}`,
    })
    expect(order.headers['x-request-id']).toMatch(/^[0-9A-Z]{26}$/)
    expect(signedWith(registered.body.secret, order)).toBe(true)
    const invoice = receiver.requests.find((r) => r.headers['x-event-handler-id'] === 'onAnything')!
    expect(invoice.headers['x-herald-event-id']).toBe(invoiceId)
    expect(signedWith(registered.body.secret, invoice)).toBe(true)

    await waitFor(async () => (await deliveries(orderId!))[0]?.state === 'delivered')
    expect(await deliveries(orderId!)).toEqual([
      { subscriptionId: 'app:shop:onOrder', durable: true, state: 'delivered' },
    ])
  })

  it('a failing app is retried on its policy schedule and ends as a dead letter; other 4xx are not retried', async () => {
    receiver.reply = (received) => (received.headers['x-event-handler-id'] === 'flaky' ? 503 : 404)
    await putApp('failing', {
      url: receiver.url,
      manifest: { events: { flaky: { keys: ['ping'] }, gone: { keys: ['pong'] } } },
      retry: { retries: 2, initialBackoffDelay: 150, exponentialBackoffCoefficient: 2 },
    })
    const [ping, pong] = await publish(ACME, [
      { topic: 'ping', data: 1 },
      { topic: 'pong', data: 2 },
    ])
    await waitFor(async () => (await deliveries(ping!))[0]?.state === 'dead', 10_000, 'ping dead')
    await waitFor(async () => (await deliveries(pong!))[0]?.state === 'dead', 10_000, 'pong dead')
    const flaky = receiver.requests.filter((r) => r.headers['x-event-handler-id'] === 'flaky')
    const gone = receiver.requests.filter((r) => r.headers['x-event-handler-id'] === 'gone')
    expect(flaky.map((r) => r.headers['x-herald-attempt'])).toEqual(['0', '1', '2'])
    const [a, b, c] = flaky.map((r) => r.at) as [number, number, number]
    expect(b - a).toBeGreaterThanOrEqual(145)
    expect(b - a).toBeLessThan(150 * 1.2 + 1000)
    expect(c - b).toBeGreaterThanOrEqual(295)
    expect(c - b).toBeLessThan(300 * 1.2 + 1000)
    expect(gone).toHaveLength(1)
    expect((await deliveries(ping!))[0]).toMatchObject({ state: 'dead', attempts: 3 })
    expect((await deliveries(pong!))[0]).toMatchObject({ state: 'dead', attempts: 1 })
    expect((await deliveries(pong!))[0]?.lastError).toContain('404')
    const dead = await request<{ deadLetters: { subscriptionId: string }[] }>(
      `${server.url}/v1/dead-letters`,
      {
        token: ADMIN,
      },
    )
    expect(dead.body.deadLetters.map((d) => d.subscriptionId).sort()).toEqual([
      'app:failing:flaky',
      'app:failing:gone',
    ])
  })

  it('lists, shows and deletes apps in the tenant, never showing the secret again', async () => {
    const manifest = { events: { h: { keys: ['k'] } } }
    expect((await putApp('one', { url: receiver.url, manifest })).status).toBe(201)
    expect((await putApp('one', { url: receiver.url, manifest })).status).toBe(200)
    const listed = await request<{ apps: Record<string, unknown>[] }>(`${server.url}/v1/apps`, {
      token: ADMIN,
    })
    expect(listed.body.apps).toEqual([
      {
        app: 'one',
        url: receiver.url,
        handlers: [{ handler: 'h', subscriptionId: 'app:one:h', keys: ['k'] }],
      },
    ])
    expect((await request(`${server.url}/v1/apps/one`, { token: ADMIN })).body).not.toHaveProperty('secret')
    expect((await request(`${server.url}/v1/apps/one`, { method: 'DELETE', token: ADMIN })).status).toBe(204)
    expect((await request(`${server.url}/v1/apps/one`, { token: ADMIN })).status).toBe(404)
    expect((await request(`${server.url}/v1/apps/one`, { method: 'DELETE', token: ADMIN })).status).toBe(404)
  })

  it('refuses non-admin tokens and bad registrations with errors naming the field', async () => {
    const body = { url: receiver.url, manifest: { events: { h: { keys: ['k'] } } } }
    expect((await request(`${server.url}/v1/apps/x`, { method: 'PUT', token: ACME, body })).status).toBe(403)
    expect((await request(`${server.url}/v1/apps/x`, { method: 'PUT', body })).status).toBe(401)
    const bad = await putApp('x', { url: receiver.url, manifest: { events: { h: { keys: ['a b'] } } } })
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).toContain('events.h.keys[0]')
    const badRetry = await putApp('x', { ...body, retry: { timeout: -1 } })
    expect(badRetry.status).toBe(400)
    expect(JSON.stringify(badRetry.body)).toContain('retry.timeout')
    // A misspelt option would leave the deliveries on the default policy without a word.
    const misspelt = await putApp('x', { ...body, retry: { retrys: 3 } })
    expect(misspelt.status).toBe(400)
    expect(JSON.stringify(misspelt.body)).toContain('retry.retrys is not a retry option')
    const webhook = await request(`${server.url}/v1/subscriptions`, {
      token: ADMIN,
      body: { id: 'typo', patterns: ['orders'], url: receiver.url, retry: { retrys: 9 } },
    })
    expect(webhook.status).toBe(400)
    expect(JSON.stringify(webhook.body)).toContain('retry.retrys is not a retry option')
    const extra = await putApp('x', { ...body, retyr: {} })
    expect(extra.status).toBe(400)
    expect(JSON.stringify(extra.body)).toContain('\\"retyr\\" is not a known field')
    expect((await putApp('bad name!', body)).status).toBe(400)
  })
})

describe('/v1/subscriptions', () => {
  it('a failing webhook’s error names its URL without the credentials in it, and only admins read it', async () => {
    receiver.reply = () => 404
    const url = receiver.url.replace('http://', 'http://hookuser:HOOK-PASSWORD@')
    const created = await request(`${server.url}/v1/subscriptions`, {
      token: ADMIN,
      body: { id: 'leaky', patterns: ['orders'], url: `${url}/hook?apikey=HOOK-API-KEY` },
    })
    expect(created.status).toBe(201)
    const [id] = await publish(ORDERS_ONLY, { topic: 'orders/8', data: 1 })
    await waitFor(async () => (await deliveries(id!))[0]?.state === 'dead', 10_000, 'the delivery to fail')
    const [failed] = await deliveries(id!)
    expect(failed!.lastError).toContain(`POST ${receiver.url}/hook?… answered 404`)
    expect(server.logs()).toContain('answered 404')
    for (const secret of ['HOOK-PASSWORD', 'HOOK-API-KEY']) {
      expect(failed!.lastError).not.toContain(secret)
      expect(server.logs()).not.toContain(secret)
    }
    // The publisher sees where its event stands, not what the endpoint answered.
    const seen = await request<{ deliveries: DeliveryStatus[] }>(`${server.url}/v1/events/${id}`, {
      token: ORDERS_ONLY,
    })
    expect(seen.body.deliveries).toEqual([
      { subscriptionId: 'leaky', durable: true, state: 'dead', attempts: 1 },
    ])
  })

  it('creates, lists and deletes a webhook; deliveries are CloudEvents when asked, signed', async () => {
    const created = await request<{ id: string; secret: string; format: string }>(
      `${server.url}/v1/subscriptions`,
      {
        token: ADMIN,
        body: { id: 'audit', patterns: ['orders'], url: `${receiver.url}/hook`, format: 'cloudevents' },
      },
    )
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({
      id: 'audit',
      format: 'cloudevents',
      secret: expect.stringMatching(/^whsec_/),
    })
    const [id] = await publish(ORDERS_ONLY, { topic: 'orders/7', data: { total: 3 } })
    await waitFor(() => receiver.requests.length === 1)
    const hook = receiver.requests[0]!
    expect(hook.url).toBe('/hook')
    expect(hook.headers['content-type']).toBe('application/cloudevents+json')
    expect(JSON.parse(hook.body)).toMatchObject({
      specversion: '1.0',
      id,
      type: 'orders/7',
      source: 'acme.orders',
      data: { total: 3 },
      heraldaccount: 'acme',
    })
    expect(signedWith(created.body.secret, hook)).toBe(true)
    await waitFor(async () => (await deliveries(id!))[0]?.state === 'delivered')

    const list = await request<{ subscriptions: Record<string, unknown>[] }>(
      `${server.url}/v1/subscriptions`,
      {
        token: ADMIN,
      },
    )
    expect(list.body.subscriptions).toEqual([
      expect.objectContaining({ id: 'audit', patterns: ['orders'], format: 'cloudevents' }),
    ])
    expect(list.body.subscriptions[0]).not.toHaveProperty('secret')
    expect(
      (await request(`${server.url}/v1/subscriptions/audit`, { method: 'DELETE', token: ADMIN })).status,
    ).toBe(204)
    expect((await request(`${server.url}/v1/subscriptions/audit`, { token: ADMIN })).status).toBe(404)
    expect((await request(`${server.url}/v1/subscriptions`, { token: ACME })).status).toBe(403)
    const bad = await request(`${server.url}/v1/subscriptions`, {
      token: ADMIN,
      body: { patterns: 'a', url: receiver.url, format: 'xml' },
    })
    expect(bad.status).toBe(400)
  })

  it('a webhook whose endpoint answers 410 Gone is listed as disabled and gets nothing until POSTed again', async () => {
    receiver.reply = () => 410
    const body = { id: 'gone', patterns: ['orders'], url: receiver.url }
    expect((await request(`${server.url}/v1/subscriptions`, { token: ADMIN, body })).status).toBe(201)
    await publish(ORDERS_ONLY, { topic: 'orders/1', data: 1 })
    const listed = async () =>
      (
        await request<{ disabled?: { at: string; reason: string } }>(`${server.url}/v1/subscriptions/gone`, {
          token: ADMIN,
        })
      ).body
    await waitFor(async () => (await listed()).disabled !== undefined, 5000, 'the webhook to be disabled')
    expect((await listed()).disabled?.reason).toContain('answered 410')
    receiver.reply = () => 204
    await publish(ORDERS_ONLY, { topic: 'orders/2', data: 2 })
    await sleep(300)
    expect(receiver.requests).toHaveLength(1)
    const again = await request<{ disabled?: unknown }>(`${server.url}/v1/subscriptions`, {
      token: ADMIN,
      body,
    })
    expect(again.status).toBe(200)
    expect(again.body).not.toHaveProperty('disabled')
    await waitFor(() => receiver.requests.length === 2, 5000, 'the event published while disabled')
    expect(JSON.parse(receiver.requests[1]!.body).data).toBe(2)
  })

  it('a server with a secretsKey keeps webhook secrets sealed in its store and says so at start', async () => {
    const store = memoryStore()
    const sealing = await startTestServer(
      { tokens: TOKENS, secretsKey: 'a passphrase for the secrets' },
      { store },
    )
    try {
      expect(sealing.logs()).toContain('"webhookSecrets":"sealed"')
      const created = await request<{ secret: string }>(`${sealing.url}/v1/subscriptions`, {
        token: ADMIN,
        body: { id: 'sealed', patterns: ['orders'], url: receiver.url },
      })
      expect(created.status).toBe(201)
      const [record] = await store.listSubscriptions({ account: 'acme', workspace: 'master' })
      expect(String(record?.meta?.secret)).toMatch(/^sealed:v1:/)
      expect(JSON.stringify(record)).not.toContain(created.body.secret.slice(6))
      await request(`${sealing.url}/v1/events`, { token: ORDERS_ONLY, body: { topic: 'orders/1', data: 1 } })
      await waitFor(() => receiver.requests.length === 1)
      expect(signedWith(created.body.secret, receiver.requests[0]!)).toBe(true)
    } finally {
      await sealing.close()
    }
    expect(server.logs()).toContain('"webhookSecrets":"plain text"')
  })

  it('a restarted server restores its webhooks from the store and delivers what was stored meanwhile', async () => {
    // One store outliving a server, as a SQLite file or Redis does.
    const shared = memoryStore()
    const store = new Proxy(shared, {
      get: (target, property, receiver) =>
        property === 'close' ? async () => {} : (Reflect.get(target, property, receiver) as unknown),
    }) as Store
    const first = await startTestServer({ tokens: TOKENS }, { store })
    const created = await request<{ secret: string }>(`${first.url}/v1/subscriptions`, {
      token: ADMIN,
      body: { id: 'kept', patterns: 'orders', url: receiver.url },
    })
    await first.close()
    const second = await startTestServer({ tokens: TOKENS }, { store })
    try {
      const answer = await request<{ ids: string[] }>(`${second.url}/v1/events`, {
        token: ACME,
        body: { topic: 'orders/1', data: 'after the restart' },
      })
      await waitFor(() => receiver.requests.length === 1)
      expect(JSON.parse(receiver.requests[0]!.body)).toMatchObject({
        id: answer.body.ids[0],
        data: 'after the restart',
      })
      expect(signedWith(created.body.secret, receiver.requests[0]!)).toBe(true)
    } finally {
      await second.close()
      await shared.close()
    }
  })
})
