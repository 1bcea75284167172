import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  NonRetriableError,
  RetryLaterError,
  createBus,
  silentLogger,
  type Bus,
  type Tenant,
} from '../../src/index.js'
import {
  Service,
  generateSecret,
  loadManifest,
  parseManifest,
  signatureHeaders,
  type EventContext,
  type ServiceServer,
} from '../../src/service/index.js'
import { WebhookRegistry } from '../../src/service/webhooks.js'
import { sleep, waitFor } from '../helpers.js'

const ACME: Tenant = { account: 'acme', workspace: 'master' }

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function newBus(): Bus {
  const bus = createBus({ logger: silentLogger, pollInterval: 50 })
  cleanups.push(() => bus.close())
  return bus
}

async function listen(
  service: Service,
  options: Parameters<Service['listen']>[1] = {},
): Promise<ServiceServer> {
  const server = await service.listen(0, { logger: silentLogger, ...options })
  cleanups.push(() => server.close())
  return server
}

function messageOf(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    return `${(error as { code?: string }).code}: ${(error as Error).message}`
  }
  return 'no error'
}

describe('manifests', () => {
  it('accept keys or topics, with or without a sender, from a whole service.json', () => {
    expect(
      parseManifest({
        memory: 256,
        routes: {},
        events: {
          example: { sender: 'vtex.events-example', keys: ['send-event'] },
          orders: { sender: 'vtex.orders-broadcast', topics: ['cancel', 'order-created'] },
          anything: { keys: ['invoice/*/paid'], settingsType: 'workspace' },
          // VTEX's keys are optional: a sender alone means every event it sends.
          everything: { sender: 'vtex.orders-broadcast' },
        },
      }),
    ).toEqual({
      events: {
        example: { sender: 'vtex.events-example', keys: ['send-event'] },
        orders: { sender: 'vtex.orders-broadcast', keys: ['cancel', 'order-created'] },
        anything: { keys: ['invoice/*/paid'] },
        everything: { sender: 'vtex.orders-broadcast', keys: ['*'] },
      },
    })
  })

  it.each([
    [null, 'manifest must be an object'],
    [{}, 'manifest.events must be an object'],
    [{ events: {} }, 'declares no handler'],
    [{ events: { 'bad name': { keys: ['a'] } } }, 'handler name "bad name"'],
    [{ events: { h: 'send-event' } }, 'events.h must be an object'],
    [{ events: { h: {} } }, 'events.h needs keys (the topics it listens to), a sender, or both'],
    [{ events: { h: { keys: [] } } }, 'events.h.keys must be a non-empty array'],
    [{ events: { h: { keys: 'send-event' } } }, 'events.h.keys must be a non-empty array'],
    [{ events: { h: { keys: ['ok', 'a b'] } } }, 'events.h.keys[1]'],
    [{ events: { h: { topics: ['ok', 7] } } }, 'events.h.topics[1]'],
    [{ events: { h: { keys: ['a'], topics: ['b'] } } }, 'not both'],
    [{ events: { h: { keys: ['a'], sender: '' } } }, 'events.h.sender'],
  ])('refuse %j naming the bad field', (input, expected) => {
    const message = messageOf(() => parseManifest(input))
    expect(message).toContain('invalid_option')
    expect(message).toContain(expected)
  })

  it('load from a service.json file, with a clear error for a file that is not JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'herald-manifest-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'service.json'), JSON.stringify({ events: { h: { keys: ['k'] } } }))
    await writeFile(join(dir, 'broken.json'), '{ "events": ')
    expect(await loadManifest(join(dir, 'service.json'))).toEqual({ events: { h: { keys: ['k'] } } })
    await expect(loadManifest(join(dir, 'broken.json'))).rejects.toMatchObject({
      code: 'invalid_option',
      message: expect.stringContaining('is not JSON'),
    })
  })
})

describe('Service', () => {
  it('refuses bad handlers and retry policies up front, naming them', () => {
    expect(messageOf(() => new Service({ events: { h: 'nope' as never } }))).toContain('events.h')
    expect(
      messageOf(() => new Service({ clients: { options: { events: { timeout: 0 } } }, events: {} })),
    ).toContain('retry.timeout')
  })

  it('takes the retry options from clients.options.events and leaves the other VTEX client options there', () => {
    const options = { retries: 2, timeout: 500, memoryCache: {}, verbose: true }
    const service = new Service({ clients: { options: { events: options as never } }, events: {} })
    expect(service.retry).toEqual({ retries: 2, timeout: 500 })
  })

  it('in process: each manifest handler gets the matching events with a VTEX-style context', async () => {
    const bus = newBus()
    const seen: EventContext[] = []
    const service = new Service({
      clients: { options: { events: { retries: 1, initialBackoffDelay: 10 } } },
      events: {
        example: async (ctx) => {
          seen.push(ctx)
        },
        unused: async () => {},
      },
    })
    const attachment = service.attach(
      bus.scope(ACME),
      { events: { example: { sender: 'vtex.events-example', keys: ['send-event'] } } },
      { app: 'listener' },
    )
    expect(attachment.subscriptionIds).toEqual(['app:listener:example'])
    const acme = bus.scope(ACME)
    const [id] = await acme.emit({
      topic: 'send-event',
      sender: 'vtex.events-example@0.0.1',
      data: { random: '42' },
    })
    await acme.emit({ topic: 'send-event', sender: 'someone.else', data: {} })
    await waitFor(() => seen.length === 1)
    await sleep(50)
    expect(seen).toHaveLength(1)
    const ctx = seen[0]!
    expect(ctx).toMatchObject({
      handler: 'example',
      body: { random: '42' },
      key: 'send-event',
      sender: 'vtex.events-example@0.0.1',
      account: 'acme',
      workspace: 'master',
      eventId: id,
      operationId: id,
      attempt: 0,
      vtex: { account: 'acme', workspace: 'master', route: { id: 'example', type: 'event' } },
    })
    expect(ctx.requestId).toMatch(/^[0-9A-Z]{26}$/)
    expect(ctx.signal).toBeInstanceOf(AbortSignal)
    expect(ctx.event?.id).toBe(id)
    expect((await acme.subscriptions()).map((s) => s.id)).toEqual(['app:listener:example'])
  })

  it("in process: a failing handler is retried on the service's policy, then dead", async () => {
    const bus = newBus()
    const attempts: number[] = []
    new Service({
      clients: { options: { events: { retries: 2, initialBackoffDelay: 10 } } },
      events: {
        h: (ctx) => {
          attempts.push(ctx.attempt)
          throw new Error('boom')
        },
      },
    }).attach(bus, { events: { h: { keys: ['k'] } } }, { app: 'a' })
    const [id] = await bus.emit({ topic: 'k', data: 1 })
    await waitFor(async () => (await bus.status(id!))?.deliveries[0]?.state === 'dead')
    expect(attempts).toEqual([0, 1, 2])
  })

  it('in process: refuses a manifest naming a handler the service lacks', () => {
    const service = new Service({ events: { a: () => {} } })
    expect(
      messageOf(() => service.attach(newBus(), { events: { b: { keys: ['k'] } } }, { app: 'x' })),
    ).toContain('"b" is not defined')
  })

  it('runs handler code written for @vtex/api as it is: ctx.clients, ctx.vtex.logger and eventInfo, state.body, timings', async () => {
    const lines: string[] = []
    const logger = {
      ...silentLogger,
      info: (fields: Record<string, unknown>, message: string) =>
        void lines.push(`${String(fields.requestId)} ${message}`),
    }
    class Clients {
      constructor(
        readonly options: Record<string, unknown>,
        readonly context: { account: string },
      ) {}
      get orders() {
        return { accountOf: () => this.context.account, timeout: this.options.default }
      }
    }
    const done: string[] = []
    const service = new Service({
      clients: { implementation: Clients, options: { default: { timeout: 800 } } },
      logger,
      events: {
        // The shape of a handler in VTEX's own course app.
        onSend: async (ctx: EventContext<{ n: number }>) => {
          ctx.vtex.logger.info(`${ctx.vtex.eventInfo.sender} sent ${ctx.vtex.eventInfo.key}`)
          ctx.timings.handler = [0, 1]
          const clients = ctx.clients as Clients
          done.push(
            `${clients.orders.accountOf()} ${JSON.stringify(clients.orders.timeout)} ${JSON.stringify(ctx.state.body)} ${String(ctx.vtex.production)}`,
          )
        },
      },
    })
    const bus = newBus()
    service.attach(bus.scope(ACME), { events: { onSend: { keys: ['send-event'] } } }, { app: 'course' })
    await bus.scope(ACME).emit({ topic: 'send-event', sender: 'vtex.events-example', data: { n: 1 } })
    await waitFor(() => done.length === 1)
    expect(done).toEqual(['acme {"timeout":800} {"n":1} false'])
    expect(lines).toEqual([expect.stringMatching(/^[0-9A-Z]{26} vtex.events-example sent send-event$/)])

    const server = await listen(service)
    const response = await fetch(`${server.url}/acme/master/_events`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-event-handler-id': 'onSend',
        'x-event-sender': 'vtex.orders',
        'x-event-key': 'send-event',
        'x-vtex-workspace-is-production': 'true',
        'x-request-id': 'req-1',
      },
      body: '{"n":2}',
    })
    expect(response.status).toBe(204)
    expect(done[1]).toBe('acme {"timeout":800} {"n":2} true')
    expect(lines[1]).toBe('req-1 vtex.orders sent send-event')
  })

  it('handler arrays run as middlewares sharing state', async () => {
    const order: string[] = []
    const service = new Service({
      events: {
        h: [
          async (ctx, next) => {
            order.push('first')
            ctx.state.user = 'u1'
            await next()
            order.push('first again')
          },
          async (ctx) => {
            order.push(`second saw ${String(ctx.state.user)}`)
          },
        ],
      },
    })
    const bus = newBus()
    service.attach(bus, { events: { h: { keys: ['k'] } } }, { app: 'mw' })
    await bus.emit({ topic: 'k', data: null })
    await waitFor(() => order.length === 3)
    expect(order).toEqual(['first', 'second saw u1', 'first again'])
  })
})

describe('Service.listen (the VTEX IO inbound protocol)', () => {
  it('receives signed deliveries from Herald and answers by outcome', async () => {
    const seen: EventContext[] = []
    const service = new Service({
      events: {
        onOrder: async (ctx) => {
          seen.push(ctx)
        },
        rejects: () => {
          throw new NonRetriableError('bad order')
        },
        busy: () => {
          throw Object.assign(new Error('slow down'), { status: 429 })
        },
        later: () => {
          throw new RetryLaterError('the ledger is closing', 2500)
        },
      },
    })
    const secret = generateSecret()
    const server = await listen(service, { secret })
    const bus = newBus()
    const registry = new WebhookRegistry(bus, { logger: silentLogger })
    const { app } = await registry.putApp(ACME, 'shop', {
      url: server.url,
      secret,
      credential: 'cred-1',
      manifest: {
        events: { onOrder: { sender: 'acme.orders', keys: ['orders'] }, rejects: { keys: ['bad'] } },
      },
      retry: { retries: 3, initialBackoffDelay: 10 },
    })
    const acme = bus.scope(ACME)
    const [id] = await acme.emit({ topic: 'orders/1', sender: 'acme.orders', data: { n: 1 } })
    const [bad] = await acme.emit({ topic: 'bad', data: null })
    await waitFor(() => seen.length === 1)
    expect(seen[0]).toMatchObject({
      handler: 'onOrder',
      body: { n: 1 },
      key: 'orders/1',
      sender: 'acme.orders',
      account: 'acme',
      workspace: 'master',
      eventId: id,
      operationId: id,
      attempt: 0,
      vtex: { authToken: 'cred-1', route: { id: 'onOrder', type: 'event' } },
    })
    // NonRetriableError answers 422: Herald does not retry it.
    await waitFor(async () => (await acme.status(bad!))?.deliveries[0]?.state === 'dead')
    expect((await acme.status(bad!))?.deliveries[0]).toMatchObject({ attempts: 1 })
    expect(app.secret).toBe(secret)

    const body = JSON.stringify({ n: 2 })
    const headers = {
      'content-type': 'application/json',
      'x-event-handler-id': 'onOrder',
      'x-vtex-account': 'acme',
      'x-vtex-workspace': 'master',
    }
    const post = (extra: Record<string, string>, handler = 'onOrder', payload = body): Promise<Response> =>
      fetch(`${server.url}/acme/master/_events`, {
        method: 'POST',
        headers: { ...headers, 'x-event-handler-id': handler, ...extra },
        body: payload,
      })
    expect((await post({})).status).toBe(401) // unsigned
    expect((await post(signatureHeaders(generateSecret(), 'm1', body))).status).toBe(401) // someone else's key
    expect(
      (await post(signatureHeaders(secret, 'm1', body, Math.floor(Date.now() / 1000) - 3600))).status,
    ).toBe(401) // a replay from an hour ago
    expect((await post(signatureHeaders(secret, 'm1', '{"n":3}'))).status).toBe(401) // the body was changed
    expect((await post(signatureHeaders(secret, 'm1', body))).status).toBe(204)
    expect((await post(signatureHeaders(secret, 'm2', body), 'nope')).status).toBe(404)
    expect((await post(signatureHeaders(secret, 'm3', body), 'busy')).status).toBe(429)
    // RetryLaterError answers 503 with its wait, in whole seconds, for the deliverer to honour.
    const later = await post(signatureHeaders(secret, 'm5', body), 'later')
    expect([later.status, later.headers.get('retry-after')]).toEqual([503, '3'])
    expect((await post(signatureHeaders(secret, 'm4', '{'), 'onOrder', '{')).status).toBe(400)
    expect(seen).toHaveLength(2)

    // A failure answers without its details (they stay in the app's log).
    const busy = await post(signatureHeaders(secret, 'm6', body), 'busy')
    expect(await busy.text()).toBe('{"error":"handler busy failed (Error)"}')
    // A repeat of a handled delivery (a retry after a lost answer, or a replay) runs nothing twice.
    const replayed = signatureHeaders(secret, 'm7', body)
    expect((await post(replayed)).status).toBe(204)
    expect((await post(replayed)).status).toBe(204)
    expect(seen).toHaveLength(3)
    // Herald's signed webhook-id names the tenant, handler and event: unsigned headers cannot
    // redirect it to another handler or pass it off as another tenant's.
    const herald = signatureHeaders(secret, 'acme/master/app:shop:onOrder:E1', body)
    expect((await post({ ...herald, 'x-herald-event-id': 'E1' }, 'rejects')).status).toBe(401)
    expect((await post({ ...herald, 'x-herald-event-id': 'E2' })).status).toBe(401)
    expect((await post({ ...herald, 'x-herald-event-id': 'E1', 'x-vtex-account': 'globex' })).status).toBe(
      401,
    )
    expect((await post({ ...herald, 'x-herald-event-id': 'E1', 'x-vtex-workspace': 'dev' })).status).toBe(401)
    expect((await post({ ...herald, 'x-herald-event-id': 'E1' })).status).toBe(204)
    expect(seen).toHaveLength(4)
    // The form a Herald before the tenant was added signs is held to its handler and event too.
    const legacy = signatureHeaders(secret, 'app:shop:onOrder:E3', body)
    expect((await post({ ...legacy, 'x-herald-event-id': 'E3' }, 'rejects')).status).toBe(401)
    expect((await post({ ...legacy, 'x-herald-event-id': 'E4' })).status).toBe(401)
    expect((await post({ ...legacy, 'x-herald-event-id': 'E3' })).status).toBe(204)
    expect(seen).toHaveLength(5)
  })

  it('delivers events whose topic, sender and id are not ASCII: headers carry them percent-encoded', async () => {
    const seen: EventContext[] = []
    const service = new Service({ events: { onOrder: async (ctx) => void seen.push(ctx) } })
    const secret = generateSecret()
    const server = await listen(service, { secret })
    const bus = newBus()
    await new WebhookRegistry(bus, { logger: silentLogger }).putApp(ACME, 'shop', {
      url: server.url,
      secret,
      manifest: { events: { onOrder: { keys: ['注文'] } } },
    })
    await bus.scope(ACME).emit({ id: 'ид-1', topic: '注文/作成', sender: 'shop🛒', data: { n: 1 } })
    await waitFor(() => seen.length === 1)
    expect(seen[0]).toMatchObject({ key: '注文/作成', sender: 'shop🛒', eventId: 'ид-1', body: { n: 1 } })
  })

  it('runs both events when one app, registered in two tenants, is sent the same event id by each', async () => {
    const seen: string[] = []
    const service = new Service({
      events: { onOrder: async (ctx) => void seen.push(`${ctx.vtex.account}/${ctx.vtex.workspace}`) },
    })
    const secret = generateSecret()
    const server = await listen(service, { secret })
    const bus = newBus()
    const registry = new WebhookRegistry(bus, { logger: silentLogger })
    const GLOBEX: Tenant = { account: 'globex', workspace: 'master' }
    for (const tenant of [ACME, GLOBEX])
      await registry.putApp(tenant, 'shop', {
        url: server.url,
        secret,
        manifest: { events: { onOrder: { keys: ['orders'] } } },
      })
    await bus.scope(ACME).emit({ id: 'order-42', topic: 'orders', data: {} })
    await bus.scope(GLOBEX).emit({ id: 'order-42', topic: 'orders', data: {} })
    await waitFor(() => seen.length === 2)
    expect(seen.sort()).toEqual(['acme/master', 'globex/master'])
  })

  it("logs a handler's failure to the Service's logger when listen is given none", async () => {
    const warned: string[] = []
    const service = new Service({
      events: {
        fails: () => {
          throw new Error('the database at /srv/db is down')
        },
      },
      logger: {
        ...silentLogger,
        warn: (fields: unknown, message: string) => void warned.push(`${message} ${JSON.stringify(fields)}`),
      },
    })
    const server = await service.listen(0)
    cleanups.push(() => server.close())
    const answer = await fetch(`${server.url}/a/b/_events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-event-handler-id': 'fails' },
      body: '{}',
    })
    expect(answer.status).toBe(500)
    expect(warned.join('\n')).toContain('the database at /srv/db is down')
  })

  it('refuses a tolerance that is not a number of seconds, which would turn the timestamp check off', async () => {
    await expect(
      listen(new Service({ events: { h: () => {} } }), {
        secret: generateSecret(),
        toleranceSeconds: Number.NaN,
      }),
    ).rejects.toMatchObject({ code: 'invalid_option' })
  })

  it("answers @vtex/api's TooManyRequestsError 429 and RequestCancelledError 499, as its own event server does", async () => {
    const failing = (name: string) => () => {
      const error = new Error('from a client')
      error.name = name
      throw error
    }
    const server = await listen(
      new Service({
        events: { busy: failing('TooManyRequestsError'), gone: failing('RequestCancelledError') },
      }),
    )
    const statuses: number[] = []
    for (const handler of ['busy', 'gone']) {
      const response = await fetch(`${server.url}/a/b/_events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-event-handler-id': handler },
        body: '{}',
      })
      statuses.push(response.status)
    }
    expect(statuses).toEqual([429, 499])
  })

  it('without a secret it accepts unsigned requests, PUT as well as POST', async () => {
    const seen: unknown[] = []
    const server = await listen(new Service({ events: { h: (ctx) => void seen.push(ctx.body) } }))
    const response = await fetch(`${server.url}/a/b/_events`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-event-handler-id': 'h' },
      body: '{"x":1}',
    })
    expect(response.status).toBe(204)
    expect(seen).toEqual([{ x: 1 }])
    const missing = await fetch(`${server.url}/a/b/_events`, { method: 'POST', body: '{}' })
    expect(missing.status).toBe(400)
  })
})
