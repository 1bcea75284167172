/**
 * `/readyz` answers 503 while the store does not answer, so that a load balancer or an
 * orchestrator stops sending publishes to a server that could only refuse them.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { memoryStore, redisStore, type Store } from '../../src/index.js'
import { StoreProbe } from '../../src/server/readiness.js'
import { waitFor } from '../helpers.js'
import { canStartRedisServer, startRedisServer } from '../support/redis.js'
import { request, startTestServer, type TestServer } from './helpers.js'

/** A memory store whose `head` (the probe's read) does what the test says. */
function storeWithHead(head: () => Promise<string | undefined>): Store & { heads: number } {
  const store = memoryStore() as Store & { heads: number }
  store.heads = 0
  store.head = () => {
    store.heads++
    return head()
  }
  return store
}

describe('StoreProbe', () => {
  it('resolves when the store answers, and shares one read among the checks made meanwhile', async () => {
    let answer!: (value: string | undefined) => void
    const store = storeWithHead(() => new Promise((resolve) => (answer = resolve)))
    const probe = new StoreProbe(store, 1000)
    const checks = [probe.check(), probe.check(), probe.check()]
    answer(undefined)
    await Promise.all(checks)
    expect(store.heads).toBe(1)
    // Once settled, the next check reads again.
    const next = probe.check()
    answer(undefined)
    await next
    expect(store.heads).toBe(2)
  })

  it('rejects with store_unavailable when the store fails, naming the failure', async () => {
    const probe = new StoreProbe(
      storeWithHead(() => Promise.reject(new Error('disk on fire'))),
      1000,
    )
    await expect(probe.check()).rejects.toMatchObject({
      code: 'store_unavailable',
      message: 'the memory store failed: disk on fire',
    })
  })

  it('rejects with store_unavailable when the store does not answer in time', async () => {
    const probe = new StoreProbe(
      storeWithHead(() => new Promise(() => {})),
      50,
    )
    await expect(probe.check()).rejects.toMatchObject({
      code: 'store_unavailable',
      message: 'the memory store did not answer within 50 ms',
    })
  })
})

describe('/readyz', () => {
  let t: TestServer | undefined
  afterEach(async () => {
    await t?.close()
    t = undefined
  })

  it('answers 503 store_unavailable while the store fails, and ready again once it answers', async () => {
    let failing = true
    const store = storeWithHead(() =>
      failing ? Promise.reject(new Error('connection refused')) : Promise.resolve(undefined),
    )
    t = await startTestServer({}, { store })
    const down = await request<{ error: { code: string; message: string } }>(`${t.url}/readyz`)
    expect(down.status).toBe(503)
    expect(down.body.error).toMatchObject({
      code: 'store_unavailable',
      message: 'the memory store failed: connection refused',
    })
    failing = false
    expect(await request(`${t.url}/readyz`)).toMatchObject({
      status: 200,
      body: { status: 'ready', store: 'memory' },
    })
  })
})

describe.skipIf(!canStartRedisServer())('/readyz on Redis', () => {
  it('is 503 while Redis is down and ready again once it is back, without restarting Herald', async () => {
    const redis = await startRedisServer()
    const t = await startTestServer(
      { drainTimeout: 2000 },
      { store: redisStore({ url: redis.url, prefix: 'readyz', timeout: 1000, logger: quiet }) },
    )
    try {
      expect((await request(`${t.url}/readyz`)).body).toEqual({ status: 'ready', store: 'redis' })
      await redis.stop()
      const down = await request<{ error: { code: string } }>(`${t.url}/readyz`)
      expect(down.status).toBe(503)
      expect(down.body.error.code).toBe('store_unavailable')
      await redis.start()
      await waitFor(async () => (await request(`${t.url}/readyz`)).status === 200, 10_000, 'ready again')
    } finally {
      await t.close()
      await redis.dispose()
    }
  })
})

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} }
