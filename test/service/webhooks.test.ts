import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  NonRetriableError,
  createBus,
  memoryStore,
  silentLogger,
  type Bus,
  type RetryPolicy,
  type Tenant,
} from '../../src/index.js'
import { EndpointGoneError, generateSecret, webhookHandler } from '../../src/service/index.js'
import { WebhookRegistry } from '../../src/service/webhooks.js'
import { sleep, waitFor } from '../helpers.js'
import { signedWith, startReceiver, type Receiver } from './receiver.js'

const ACME: Tenant = { account: 'acme', workspace: 'master' }
const GLOBEX: Tenant = { account: 'globex', workspace: 'master' }

let bus: Bus
let registry: WebhookRegistry
let receiver: Receiver
beforeEach(async () => {
  bus = createBus({ logger: silentLogger, pollInterval: 50 })
  registry = new WebhookRegistry(bus, { logger: silentLogger })
  receiver = await startReceiver()
})
afterEach(async () => {
  await bus.close()
  await receiver.close()
})

/** Two processes (buses with their registries) sharing one store; `close` ends all three. */
function twoProcessesOnOneStore() {
  const store = memoryStore()
  const a = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
  const b = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
  return {
    store,
    a,
    b,
    registryA: new WebhookRegistry(a, { logger: silentLogger }),
    registryB: new WebhookRegistry(b, { logger: silentLogger }),
    close: async () => {
      await a.close()
      await b.close()
      await store.close()
    },
  }
}

describe('app webhooks (VTEX IO protocol)', () => {
  it('an app gets exactly the events whose sender and key match, with every wire header and a valid signature', async () => {
    const { app } = await registry.putApp(ACME, 'shop', {
      url: `${receiver.url}/`,
      credential: 'app-token-1',
      manifest: {
        events: {
          onOrder: { sender: 'acme.orders', keys: ['order-created'] },
          onInvoice: { topics: ['invoice'] },
        },
      },
    })
    expect(app.secret).toMatch(/^whsec_/)
    expect(app.handlers.map((h) => h.subscriptionId)).toEqual(['app:shop:onOrder', 'app:shop:onInvoice'])
    const acme = bus.scope(ACME)
    const [orderId] = await acme.emit({
      topic: 'order-created',
      sender: 'acme.orders@1.2.0',
      data: { orderId: 'o-1' },
      metadata: { operationId: 'op-77' },
    })
    await acme.emit([
      { topic: 'order-created', sender: 'globex.orders', data: { wrong: 'sender' } },
      { topic: 'order-updated', sender: 'acme.orders', data: { wrong: 'key' } },
      { topic: 'order-created', data: { wrong: 'no sender' } },
    ])
    const [invoiceId] = await acme.emit({ topic: 'invoice/paid', data: { invoice: 9 } })
    await bus.scope(GLOBEX).emit({ topic: 'order-created', sender: 'acme.orders', data: { wrong: 'tenant' } })

    await waitFor(() => receiver.requests.length >= 2, 5000, 'two deliveries')
    await sleep(200) // anything that should not have come would have by now
    expect(receiver.requests).toHaveLength(2)
    const order = receiver.requests.find((r) => r.headers['x-event-handler-id'] === 'onOrder')!
    const invoice = receiver.requests.find((r) => r.headers['x-event-handler-id'] === 'onInvoice')!
    expect(order.method).toBe('POST')
    expect(order.url).toBe('/acme/master/_events')
    expect(JSON.parse(order.body)).toEqual({ orderId: 'o-1' })
    expect(order.headers).toMatchObject({
      'content-type': 'application/json',
      'x-event-handler-id': 'onOrder',
      'x-event-sender': 'acme.orders@1.2.0',
      'x-event-key': 'order-created',
      'x-event-subject': 'acme.orders@1.2.0',
      'x-vtex-account': 'acme',
      'x-vtex-workspace': 'master',
      'x-vtex-credential': 'app-token-1',
      'x-vtex-operation-id': 'op-77',
      'x-herald-event-id': orderId,
      'x-herald-attempt': '0',
      'webhook-id': `acme/master/app:shop:onOrder:${orderId}`,
    })
    expect(order.headers['x-request-id']).toMatch(/^[0-9A-Z]{26}$/)
    expect(signedWith(app.secret!, order)).toBe(true)
    expect(signedWith(`whsec_${Buffer.alloc(32, 7).toString('base64')}`, order)).toBe(false)

    expect(JSON.parse(invoice.body)).toEqual({ invoice: 9 })
    expect(invoice.headers).toMatchObject({
      'x-event-key': 'invoice/paid',
      'x-event-sender': '',
      'x-vtex-operation-id': invoiceId,
      'x-herald-event-id': invoiceId,
    })
    expect(signedWith(app.secret!, invoice)).toBe(true)

    await waitFor(async () => (await acme.status(orderId!))?.deliveries[0]?.state === 'delivered')
    const status = await acme.status(orderId!)
    expect(status?.deliveries).toEqual([
      { subscriptionId: 'app:shop:onOrder', durable: true, state: 'delivered' },
    ])
  })

  it('a failing app is retried on the policy schedule and ends as a dead letter', async () => {
    receiver.reply = () => 503
    await registry.putApp(ACME, 'flaky', {
      url: receiver.url,
      manifest: { events: { onEvent: { keys: ['ping'] } } },
      retry: { retries: 2, initialBackoffDelay: 150, exponentialBackoffCoefficient: 2, timeout: 5000 },
    })
    const acme = bus.scope(ACME)
    const [id] = await acme.emit({ topic: 'ping', data: { n: 1 } })
    await waitFor(
      async () => (await acme.status(id!))?.deliveries[0]?.state === 'dead',
      10_000,
      'a dead letter',
    )
    expect(receiver.requests.map((r) => r.headers['x-herald-attempt'])).toEqual(['0', '1', '2'])
    const [first, second, third] = receiver.requests.map((r) => r.at) as [number, number, number]
    // Retry n waits initialBackoffDelay × 2^(n-1), plus up to 20 % jitter (and some slack for a busy machine).
    expect(second - first).toBeGreaterThanOrEqual(150 - 5)
    expect(second - first).toBeLessThan(150 * 1.2 + 1000)
    expect(third - second).toBeGreaterThanOrEqual(300 - 5)
    expect(third - second).toBeLessThan(300 * 1.2 + 1000)
    // Every attempt is the same signed message.
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(1)
    const status = await acme.status(id!)
    expect(status?.deliveries[0]).toMatchObject({ state: 'dead', attempts: 3 })
    expect(status?.deliveries[0]?.lastError).toContain('503')
    const dead = await acme.deadLetters.list()
    expect(dead.map((d) => [d.subscriptionId, d.event.id])).toEqual([['app:flaky:onEvent', id]])
    await sleep(300)
    expect(receiver.requests).toHaveLength(3)
  })

  /** Registers an app whose one handler listens to `ping`, emits one ping, waits for `state`. */
  async function pingUntil(
    retry: Partial<RetryPolicy>,
    state: 'dead' | 'delivered',
  ): Promise<{ lastError?: string }> {
    await registry.putApp(ACME, 'pinged', {
      url: receiver.url,
      manifest: { events: { onEvent: { keys: ['ping'] } } },
      retry,
    })
    const acme = bus.scope(ACME)
    const [id] = await acme.emit({ topic: 'ping', data: null })
    const stateOf = async () => (await acme.status(id!))?.deliveries[0]
    await waitFor(async () => (await stateOf())?.state === state, 5000, state)
    return (await stateOf())!
  }

  it.each([400, 401, 404, 410, 422])(
    'a %i answer is not retried: the delivery is dead at once',
    async (code) => {
      receiver.reply = () => code
      const status = await pingUntil({ retries: 3, initialBackoffDelay: 20 }, 'dead')
      await sleep(150)
      expect(receiver.requests).toHaveLength(1)
      expect(status.lastError).toContain(String(code))
    },
  )

  it.each([408, 429, 500])('a %i answer is retried', async (code) => {
    receiver.reply = () => (receiver.requests.length === 1 ? code : 204)
    await pingUntil({ retries: 3, initialBackoffDelay: 20 }, 'delivered')
    expect(receiver.requests).toHaveLength(2)
  })

  it.each([
    ['429', 'delay-seconds', 429, () => '1', 1000],
    ['503', 'an HTTP date', 503, () => new Date(Date.now() + 2500).toUTCString(), 1000],
  ])(
    "a %s answer's Retry-After (%s) holds the next attempt back at least that long",
    async (_code, _form, code, retryAfter, atLeast) => {
      receiver.reply = () =>
        receiver.requests.length === 1 ? { status: code, headers: { 'retry-after': retryAfter() } } : 204
      await pingUntil({ retries: 3, initialBackoffDelay: 20 }, 'delivered')
      const [first, second] = receiver.requests.map((r) => r.at) as [number, number]
      expect(second - first).toBeGreaterThanOrEqual(atLeast - 5)
    },
  )

  it('a Retry-After that is neither seconds nor a date is ignored: the policy decides', async () => {
    receiver.reply = () =>
      receiver.requests.length === 1 ? { status: 503, headers: { 'retry-after': 'soon' } } : 204
    await pingUntil({ retries: 3, initialBackoffDelay: 20 }, 'delivered')
    const [first, second] = receiver.requests.map((r) => r.at) as [number, number]
    expect(second - first).toBeLessThan(900)
  })

  it('an attempt that outlives its timeout is aborted and retried', async () => {
    receiver.reply = async () => {
      if (receiver.requests.length > 1) return 204
      await sleep(1500)
      return 204
    }
    await pingUntil({ retries: 2, initialBackoffDelay: 20, timeout: 200 }, 'delivered')
    expect(receiver.requests).toHaveLength(2)
    await waitFor(() => receiver.abandoned === 1, 2000, 'the first request to be abandoned')
  })

  it('registering again moves deliveries to the new URL and drops handlers left out of the manifest', async () => {
    const other = await startReceiver()
    try {
      const manifest = { events: { a: { keys: ['a'] }, b: { keys: ['b'] } } }
      const first = await registry.putApp(ACME, 'moving', { url: receiver.url, manifest })
      const second = await registry.putApp(ACME, 'moving', {
        url: other.url,
        manifest: { events: { a: { keys: ['a'] } } },
      })
      expect(second.created).toBe(false)
      expect(second.app.secret).toBe(first.app.secret) // kept, not rotated behind the app's back
      await bus.scope(ACME).emit([
        { topic: 'a', data: 1 },
        { topic: 'b', data: 2 },
      ])
      await waitFor(() => other.requests.length === 1)
      await sleep(200)
      expect(receiver.requests).toHaveLength(0)
      expect(other.requests).toHaveLength(1)
      expect((await registry.getApp(ACME, 'moving'))?.handlers.map((h) => h.handler)).toEqual(['a'])
      expect(await registry.listApps(GLOBEX)).toEqual([])
    } finally {
      await other.close()
    }
  })

  it('an app handler whose endpoint answers 410 Gone is disabled; the app’s other handlers go on', async () => {
    receiver.reply = (request) => (request.headers['x-event-handler-id'] === 'gone' ? 410 : 204)
    await registry.putApp(ACME, 'half', {
      url: receiver.url,
      manifest: { events: { gone: { keys: ['a'] }, kept: { keys: ['b'] } } },
    })
    const acme = bus.scope(ACME)
    await acme.emit({ topic: 'a', data: 1 })
    await waitFor(
      async () => (await registry.getApp(ACME, 'half'))?.handlers[0]?.disabled !== undefined,
      5000,
      'the handler to be disabled',
    )
    const [gone, kept] = (await registry.getApp(ACME, 'half'))!.handlers
    expect(gone).toMatchObject({ handler: 'gone', disabled: { reason: expect.stringContaining('410') } })
    expect(kept?.disabled).toBeUndefined()
    await acme.emit([
      { topic: 'a', data: 2 },
      { topic: 'b', data: 3 },
    ])
    await waitFor(() => receiver.requests.length === 2, 5000, 'the other handler’s delivery')
    await sleep(200)
    expect(receiver.requests.map((r) => [r.headers['x-event-handler-id'], JSON.parse(r.body)])).toEqual([
      ['gone', 1],
      ['kept', 3],
    ])
  })

  it('refuses a bad registration with an error naming the field, changing nothing', async () => {
    await expect(
      registry.putApp(ACME, 'bad', { url: receiver.url, manifest: { events: { h: { keys: [] } } } }),
    ).rejects.toMatchObject({ code: 'invalid_option', message: expect.stringContaining('events.h.keys') })
    await expect(
      registry.putApp(ACME, 'bad', { url: 'ftp://x', manifest: { events: { h: { keys: ['k'] } } } }),
    ).rejects.toMatchObject({ code: 'invalid_option', message: expect.stringContaining('http') })
    await expect(
      registry.putApp(ACME, 'bad', {
        url: receiver.url,
        manifest: { events: { h: { keys: ['k'] } } },
        retry: { retries: -1 },
      }),
    ).rejects.toMatchObject({ code: 'invalid_option', message: expect.stringContaining('retry.retries') })
    await expect(
      registry.putApp(ACME, 'bad', {
        url: receiver.url,
        manifest: { events: { h: { keys: ['k'] } } },
        secret: 'x',
      }),
    ).rejects.toMatchObject({ code: 'invalid_option', message: expect.stringContaining('whsec_') })
    expect(await registry.listApps(ACME)).toEqual([])
  })
})

describe('webhook subscriptions', () => {
  it('delivers Herald JSON and CloudEvents structured mode, signed', async () => {
    const plain = await registry.putSubscription(ACME, {
      id: 'audit',
      patterns: 'orders',
      url: `${receiver.url}/plain`,
    })
    const ce = await registry.putSubscription(ACME, {
      id: 'ce',
      patterns: ['orders'],
      url: `${receiver.url}/ce`,
      format: 'cloudevents',
    })
    const [id] = await bus.scope(ACME).emit({
      topic: 'orders/1',
      sender: 'acme.orders',
      type: 'transaction',
      data: { total: 3 },
      metadata: { trace: 't' },
    })
    await waitFor(() => receiver.requests.length === 2)
    const herald = receiver.requests.find((r) => r.url === '/plain')!
    const cloud = receiver.requests.find((r) => r.url === '/ce')!
    expect(herald.headers['content-type']).toBe('application/json')
    expect(JSON.parse(herald.body)).toMatchObject({
      id,
      topic: 'orders/1',
      data: { total: 3 },
      sender: 'acme.orders',
      account: 'acme',
      workspace: 'master',
      seq: expect.any(String),
    })
    expect(signedWith(plain.subscription.secret!, herald)).toBe(true)
    expect(cloud.headers['content-type']).toBe('application/cloudevents+json')
    expect(JSON.parse(cloud.body)).toMatchObject({
      specversion: '1.0',
      id,
      type: 'orders/1',
      source: 'acme.orders',
      data: { total: 3 },
      heraldaccount: 'acme',
      heraldworkspace: 'master',
      heraldtype: 'transaction',
      heraldmetadata: '{"trace":"t"}',
    })
    expect(signedWith(ce.subscription.secret!, cloud)).toBe(true)
    expect((await registry.listSubscriptions(ACME)).map((s) => [s.id, s.format, 'secret' in s])).toEqual([
      ['audit', 'herald', false],
      ['ce', 'cloudevents', false],
    ])
    expect(await registry.deleteSubscription(ACME, 'audit')).toBe(true)
    expect(await registry.deleteSubscription(ACME, 'audit')).toBe(false)
    expect((await registry.listSubscriptions(ACME)).map((s) => s.id)).toEqual(['ce'])
  })

  /** A store holding webhook subscription `id`, registered by a process that has stopped since. */
  async function registeredByAnEarlierProcess(id: string) {
    const store = memoryStore()
    const first = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    const { subscription } = await new WebhookRegistry(first, { logger: silentLogger }).putSubscription(
      ACME,
      {
        id,
        patterns: 'orders',
        url: receiver.url,
      },
    )
    await first.close()
    return { store, subscription }
  }

  it('a restarted process restores webhooks from the store and delivers what was stored meanwhile', async () => {
    const { store, subscription } = await registeredByAnEarlierProcess('kept')
    const second = createBus({ store, logger: silentLogger, pollInterval: 50 })
    try {
      // Stored while no process delivered: owed to the subscription all the same.
      await second.scope(ACME).emit({ topic: 'orders', data: 'while down' })
      expect(await new WebhookRegistry(second, { logger: silentLogger }).restore()).toBe(1)
      await waitFor(() => receiver.requests.length === 1)
      expect(JSON.parse(receiver.requests[0]!.body).data).toBe('while down')
      expect(signedWith(subscription.secret!, receiver.requests[0]!)).toBe(true)
    } finally {
      await second.close()
    }
  })

  it('processes sharing a store follow each other’s registrations, changes and deletions', async () => {
    const store = memoryStore()
    const other = await startReceiver()
    const a = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    const b = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    try {
      const registryA = new WebhookRegistry(a, { logger: silentLogger })
      const registryB = new WebhookRegistry(b, { logger: silentLogger })
      const manifest = { events: { h: { keys: ['k'] } } }
      await registryA.putApp(ACME, 'shared', { url: receiver.url, manifest })
      expect(await registryB.restore()).toBe(1)
      expect(await registryB.restore()).toBe(0) // nothing changed since
      await registryA.putApp(ACME, 'shared', { url: other.url, manifest })
      expect(await registryB.restore()).toBe(1) // the new URL
      await b.scope(ACME).emit(Array.from({ length: 20 }, (_, i) => ({ topic: 'k', data: i })))
      await waitFor(() => other.requests.length === 20, 5000, 'all at the new URL')
      expect(receiver.requests).toHaveLength(0)

      expect(await registryA.deleteApp(ACME, 'shared')).toBe(true)
      await registryB.restore()
      await b.scope(ACME).emit({ topic: 'k', data: 'after the deletion' })
      await sleep(300)
      expect(other.requests).toHaveLength(20)
    } finally {
      await a.close()
      await b.close()
      await store.close()
      await other.close()
    }
  })

  it('processes sharing a store take turns registering one app: it ends with one manifest and one secret', async () => {
    const { store, registryA, registryB, close } = twoProcessesOnOneStore()
    try {
      const first = { events: { one: { keys: ['a'] }, two: { keys: ['b'] } } }
      const second = { events: { three: { keys: ['c'] } } }
      // Replicas of an app starting at once, each registering through its own server.
      const answers = await Promise.all([
        registryA.putApp(ACME, 'racing', { url: receiver.url, manifest: first }),
        registryB.putApp(ACME, 'racing', { url: receiver.url, manifest: second }),
        registryA.putApp(ACME, 'racing', { url: receiver.url, manifest: first }),
        registryB.putApp(ACME, 'racing', { url: receiver.url, manifest: second }),
      ])
      const stored = (await store.listSubscriptions(ACME)).filter((record) =>
        record.id.startsWith('app:racing:'),
      )
      const handlers = stored.map((record) => record.id).sort()
      expect([['app:racing:one', 'app:racing:two'], ['app:racing:three']]).toContainEqual(handlers)
      const secrets = new Set(stored.map((record) => (record.meta as { secret: string }).secret))
      expect(secrets.size).toBe(1)
      // Every answer gave the secret the app is signed with: the first one made it, the rest kept it.
      expect(new Set(answers.map(({ app }) => app.secret))).toEqual(secrets)
    } finally {
      await close()
    }
  })

  it('an endpoint that answers 410 Gone is disabled: nothing more is sent, what is stored meanwhile waits, and registering again resumes it', async () => {
    receiver.reply = () => 410
    await registry.putSubscription(ACME, {
      id: 'gone',
      patterns: 'orders',
      url: receiver.url,
      retry: { retries: 3, initialBackoffDelay: 20 },
    })
    const acme = bus.scope(ACME)
    const [first] = await acme.emit({ topic: 'orders', data: 1 })
    await waitFor(
      async () => (await registry.getSubscription(ACME, 'gone'))?.disabled !== undefined,
      5000,
      'the subscription to be disabled',
    )
    const disabled = (await registry.getSubscription(ACME, 'gone'))!.disabled!
    expect(disabled.reason).toContain('410')
    expect(Date.parse(disabled.at)).toBeGreaterThan(Date.now() - 10_000)
    // The event that met the 410 is a dead letter, not retried.
    expect((await acme.deadLetters.list()).map((d) => d.event.id)).toEqual([first])

    receiver.reply = () => 204
    await acme.emit([
      { topic: 'orders', data: 2 },
      { topic: 'orders', data: 3 },
    ])
    await sleep(300)
    expect(receiver.requests).toHaveLength(1)

    const again = await registry.putSubscription(ACME, { id: 'gone', patterns: 'orders', url: receiver.url })
    expect(again.created).toBe(false)
    expect(again.subscription.disabled).toBeUndefined()
    await waitFor(() => receiver.requests.length === 3, 5000, 'what was stored while disabled')
    expect(receiver.requests.slice(1).map((r) => JSON.parse(r.body).data)).toEqual([2, 3])
    const [dead] = await acme.deadLetters.list()
    expect(await acme.deadLetters.redrive(dead!.id)).toBe(true)
    await waitFor(() => receiver.requests.length === 4, 5000, 'the redriven dead letter')
    expect(JSON.parse(receiver.requests[3]!.body).data).toBe(1)
  })

  it('a disabled endpoint stays disabled in every process sharing the store, and after a restart', async () => {
    const { store, a, b, registryA, registryB, close } = twoProcessesOnOneStore()
    try {
      receiver.reply = () => 410
      await registryA.putSubscription(ACME, { id: 'gone', patterns: 'orders', url: receiver.url })
      expect(await registryB.restore()).toBe(1)
      await a.scope(ACME).emit({ topic: 'orders', data: 'first' })
      await waitFor(
        async () => (await registryA.getSubscription(ACME, 'gone'))?.disabled !== undefined,
        5000,
        'the subscription to be disabled',
      )
      // Whichever process met the 410 disabled it in the store; the other detaches at its next restore.
      await registryA.restore()
      await registryB.restore()
      receiver.reply = () => 204
      await b.scope(ACME).emit({ topic: 'orders', data: 'while disabled' })
      await sleep(300)
      expect(receiver.requests).toHaveLength(1)
      // A process starting afresh leaves it alone too.
      const c = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
      try {
        expect(await new WebhookRegistry(c, { logger: silentLogger }).restore()).toBe(0)
        await sleep(200)
        expect(receiver.requests).toHaveLength(1)
      } finally {
        await c.close()
      }
      await registryB.putSubscription(ACME, { id: 'gone', patterns: 'orders', url: receiver.url })
      expect(await registryA.restore()).toBe(1)
      await waitFor(() => receiver.requests.length === 2, 5000, 'the event stored while disabled')
      expect(JSON.parse(receiver.requests[1]!.body).data).toBe('while disabled')
    } finally {
      await close()
    }
  })

  it('registering an app again with the same settings leaves deliveries in flight alone, here and on another process (sealed secrets)', async () => {
    const store = memoryStore()
    const key = 'a passphrase for the secrets'
    const a = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    const b = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    try {
      const registryA = new WebhookRegistry(a, { logger: silentLogger, secretsKey: key })
      const registryB = new WebhookRegistry(b, { logger: silentLogger, secretsKey: key })
      receiver.reply = async () => {
        await sleep(600)
        return 204
      }
      const registration = { url: receiver.url, manifest: { events: { onOrder: { keys: ['orders'] } } } }
      const { app } = await registryA.putApp(ACME, 'shop', registration)
      expect(await registryB.restore()).toBe(1)
      const [id] = await a.scope(ACME).emit({ topic: 'orders', data: 1 })
      await waitFor(() => receiver.requests.length === 1, 5000, 'the delivery to start')
      // Each replica of an app registers at boot, with what it always registers.
      await registryA.putApp(ACME, 'shop', { ...registration, secret: app.secret })
      expect(await registryB.restore()).toBe(0)
      await waitFor(
        async () => (await a.scope(ACME).status(id!))?.deliveries[0]?.state === 'delivered',
        3000,
        'the delivery in flight to finish',
      )
      // Delivered by its first attempt: nothing was aborted and sent again.
      await sleep(300)
      expect(receiver.requests).toHaveLength(1)
      expect(receiver.requests[0]!.headers['x-herald-attempt']).toBe('0')
    } finally {
      await a.close()
      await b.close()
      await store.close()
    }
  })

  it('with a secretsKey the store holds secrets sealed; deliveries are signed with the real ones, after a restart too', async () => {
    const store = memoryStore()
    const key = 'a passphrase for the secrets'
    const first = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    const sealing = new WebhookRegistry(first, { logger: silentLogger, secretsKey: key })
    const { subscription } = await sealing.putSubscription(ACME, {
      id: 'sealed',
      patterns: 'orders',
      url: receiver.url,
    })
    const { app } = await sealing.putApp(ACME, 'shop', {
      url: receiver.url,
      credential: 'app-credential-4711',
      manifest: { events: { onOrder: { keys: ['orders'] } } },
    })
    const stored = await store.listSubscriptions(ACME)
    expect(stored.map((record) => String(record.meta?.secret).slice(0, 10))).toEqual([
      'sealed:v1:',
      'sealed:v1:',
    ])
    expect(JSON.stringify(stored)).not.toContain(subscription.secret!.slice(6))
    expect(JSON.stringify(stored)).not.toContain(app.secret!.slice(6))
    expect(JSON.stringify(stored)).not.toContain('app-credential-4711')
    await first.scope(ACME).emit({ topic: 'orders', data: 1 })
    await waitFor(() => receiver.requests.length === 2, 5000, 'both deliveries')
    expect(receiver.requests.map((r) => r.headers['x-vtex-credential']).filter(Boolean)).toEqual([
      'app-credential-4711',
    ])
    // Registering again without a secret keeps the one sealed in the store.
    const again = await sealing.putSubscription(ACME, { id: 'sealed', patterns: 'orders', url: receiver.url })
    expect(again.subscription.secret).toBe(subscription.secret)
    await first.close()

    const logged: string[] = []
    const logger = { ...silentLogger, error: (_fields: unknown, message: string) => logged.push(message) }
    const second = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
    try {
      // A process without the key cannot sign, so it delivers nothing and says why, once.
      const keyless = new WebhookRegistry(second, { logger })
      expect(await keyless.restore()).toBe(0)
      expect(await keyless.restore()).toBe(0)
      expect(logged).toEqual([
        'a webhook subscription in the store could not be restored',
        'a webhook subscription in the store could not be restored',
      ])
      await expect(
        keyless.putSubscription(ACME, { id: 'sealed', patterns: 'orders', url: receiver.url }),
      ).rejects.toThrow(/sealed: configure the secretsKey/)
    } finally {
      await second.close()
    }
    const third = createBus({ store, logger: silentLogger, pollInterval: 50 })
    try {
      expect(await new WebhookRegistry(third, { logger: silentLogger, secretsKey: key }).restore()).toBe(2)
      await third.scope(ACME).emit({ topic: 'orders', data: 2 })
      await waitFor(() => receiver.requests.length === 4, 5000, 'both deliveries after the restart')
      const signed = receiver.requests.map((request) =>
        request.headers['x-event-handler-id'] === undefined
          ? signedWith(subscription.secret!, request)
          : signedWith(app.secret!, request),
      )
      expect(signed).toEqual([true, true, true, true])
    } finally {
      await third.close()
    }
  })

  it('secrets stored in plain text before a secretsKey was set are sealed when next attached', async () => {
    const { store, subscription } = await registeredByAnEarlierProcess('old')
    expect((await store.listSubscriptions(ACME))[0]?.meta?.secret).toBe(subscription.secret)
    const second = createBus({ store, logger: silentLogger, pollInterval: 50 })
    try {
      const registry = new WebhookRegistry(second, {
        logger: silentLogger,
        secretsKey: 'a passphrase for the secrets',
      })
      expect(await registry.restore()).toBe(1)
      await waitFor(
        async () => String((await store.listSubscriptions(ACME))[0]?.meta?.secret).startsWith('sealed:v1:'),
        5000,
        'the secret to be sealed in the store',
      )
      expect(await registry.restore()).toBe(0) // what it stored is what it runs with
      await second.scope(ACME).emit({ topic: 'orders', data: 1 })
      await waitFor(() => receiver.requests.length === 1)
      expect(signedWith(subscription.secret!, receiver.requests[0]!)).toBe(true)
    } finally {
      await second.close()
    }
  })

  it('refuses ids reserved for apps and ids of other subscriptions', async () => {
    await expect(
      registry.putSubscription(ACME, { id: 'app:x:y', patterns: 'a', url: receiver.url }),
    ).rejects.toMatchObject({ code: 'invalid_option' })
    bus.scope(ACME).subscribe('a', () => {}, { subscriberId: 'library-sub' })
    await expect(
      registry.putSubscription(ACME, { id: 'library-sub', patterns: 'a', url: receiver.url }),
    ).rejects.toMatchObject({ code: 'duplicate_subscription' })
  })
})

describe('webhookHandler on its own', () => {
  it('a 410 Gone tells onGone, then fails the delivery with EndpointGoneError (a NonRetriableError)', async () => {
    receiver.reply = () => 410
    const gone: [EndpointGoneError, string][] = []
    const deliver = webhookHandler(
      { url: receiver.url, format: 'herald', secret: generateSecret() },
      { onGone: (error, event) => gone.push([error, event.id]) },
    )
    const acme = bus.scope(ACME)
    acme.subscribe('orders', deliver, {
      subscriberId: 'plain',
      retry: { retries: 3, initialBackoffDelay: 20 },
    })
    const [id] = await acme.emit({ topic: 'orders', data: 1 })
    await waitFor(
      async () => (await acme.status(id!))?.deliveries[0]?.state === 'dead',
      5000,
      'a dead letter',
    )
    expect(receiver.requests).toHaveLength(1)
    expect(gone.map(([error, eventId]) => [error.name, error.status, eventId])).toEqual([
      ['EndpointGoneError', 410, id],
    ])
    expect(gone[0]![0]).toBeInstanceOf(NonRetriableError)
    // On its own it disables nothing: the next event is sent as usual.
    receiver.reply = () => 204
    await acme.emit({ topic: 'orders', data: 2 })
    await waitFor(() => receiver.requests.length === 2, 5000, 'the next event')
  })
})
