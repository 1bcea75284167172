/**
 * What the Redis store does beyond the Store contract: retention, large appends, lookups by id,
 * failing fast without Redis, and loading its driver only when it is used.
 */
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import {
  createBus,
  isHeraldError,
  redisStore,
  silentLogger,
  type HeraldEvent,
  type Store,
} from '../../src/index.js'
import { freshTenant, prepared, sleep, waitFor } from '../helpers.js'
import { useRedis } from '../support/redis.js'

const redis = await useRedis('store')
const OPTS = { dedupeWindowMs: 60_000, groupTtlMs: 60_000 }
const all = (): boolean => true

describe.skipIf(!redis)('redis store', () => {
  const stores: Store[] = []
  const open = (options: { maxEvents?: number } = {}): Store => {
    const store = redisStore({
      url: redis!.url,
      prefix: redis!.subPrefix('s'),
      logger: silentLogger,
      ...options,
    })
    stores.push(store)
    return store
  }
  afterAll(async () => {
    await Promise.all(stores.map((store) => store.close()))
  })

  it('delivers a backlog larger than a process keeps in memory completely, each event once', async () => {
    const bus = createBus({ store: open(), logger: silentLogger })
    const seen = new Map<number, number>()
    bus.subscribe(
      'backlog',
      async (event) => {
        const i = (event.data as { i: number }).i
        seen.set(i, (seen.get(i) ?? 0) + 1)
      },
      { subscriberId: 'backlog', retry: { concurrency: 200 } },
    )
    await waitFor(async () => (await bus.subscriptions()).length === 1, 5000, 'the subscription')
    const total = 25_000
    for (let i = 0; i < total; i += 500)
      await bus.emit(Array.from({ length: 500 }, (_, j) => ({ topic: 'backlog', data: { i: i + j } })))
    await waitFor(() => seen.size === total, 60_000, 'every event of the backlog')
    await bus.close()
    expect([...seen.values()].every((n) => n === 1)).toBe(true)
  })

  it('keeps the order and seqs of an append larger than one stream entry holds', async () => {
    const store = open()
    const tenant = freshTenant('big')
    const { appended } = await store.append(
      tenant,
      prepared(
        tenant,
        Array.from({ length: 10_001 }, (_, i) => ({ topic: 'big', data: i })),
      ),
      { now: Date.now(), ...OPTS },
    )
    expect(appended).toHaveLength(10_001)
    const read: HeraldEvent[] = []
    for (let after: string | undefined; ;) {
      const page = await store.read(tenant, { after, limit: 3000 })
      if (page.length === 0) break
      read.push(...page)
      after = page.at(-1)!.seq
    }
    expect(read.map((event) => event.data)).toEqual(appended.map((event) => event.data))
    expect(read.map((event) => event.seq)).toEqual(appended.map((event) => event.seq))
    const seqs = read.map((event) => event.seq!)
    expect([...seqs].sort()).toEqual(seqs)
    expect(await store.head(tenant)).toBe(seqs.at(-1))
  })

  it('trims a log entry of 9,000 events and goes on appending (Lua cannot unpack that many ids at once)', async () => {
    const store = open({ maxEvents: 10 })
    const tenant = freshTenant('trim-big')
    const now = Date.now()
    await store.append(
      tenant,
      prepared(
        tenant,
        Array.from({ length: 9000 }, (_, i) => ({ topic: 'big', data: i })),
      ),
      { now, ...OPTS },
    )
    for (let i = 0; i < 20; i++)
      await store.append(tenant, prepared(tenant, [{ topic: 'small', data: i }]), { now, ...OPTS })
    // A trim that found nothing to drop (the big entry was not yet all excess) waits a second.
    await sleep(1100)
    await store.append(tenant, prepared(tenant, [{ topic: 'small', data: 20 }]), { now, ...OPTS })
    await store.append(tenant, prepared(tenant, [{ topic: 'small', data: 21 }]), { now, ...OPTS })
    const kept = await store.read(tenant, { limit: 100_000 })
    expect(kept.length).toBeLessThan(100)
    expect(kept.at(-1)?.data).toBe(21)
  })

  it('forgets a tenant in its list of tenants with subscriptions once its last subscription is deleted', async () => {
    const prefix = redis!.subPrefix('tenants')
    const store = redisStore({ url: redis!.url, prefix, logger: silentLogger })
    stores.push(store)
    const client = new Redis(redis!.url)
    try {
      const tenant = freshTenant('gone')
      const now = Date.now()
      await store.openSubscription({ tenant, id: 'one', patterns: ['*'] }, now)
      await store.openSubscription({ tenant, id: 'two', patterns: ['*'] }, now)
      const key = `${tenant.account}/${tenant.workspace}`
      expect(await client.smembers(`${prefix}:tenants`)).toEqual([key])
      await store.deleteSubscription(tenant, 'one')
      expect(await client.smembers(`${prefix}:tenants`)).toEqual([key])
      await store.deleteSubscription(tenant, 'two')
      expect(await client.smembers(`${prefix}:tenants`)).toEqual([])
    } finally {
      client.disconnect()
    }
  })

  it('finds events by id: ids Herald made, publishers’ own ids, and ids of released groups', async () => {
    const store = open()
    const tenant = freshTenant('ids')
    const now = Date.now()
    const [made] = (
      await store.append(tenant, prepared(tenant, [{ topic: 'a', data: 1 }], now), { now, ...OPTS })
    ).appended
    const [own] = (
      await store.append(tenant, prepared(tenant, [{ topic: 'b', data: 2, id: 'order-7' }], now), {
        now,
        ...OPTS,
      })
    ).appended
    await store.append(
      tenant,
      prepared(tenant, [{ topic: 'c', data: 3, metadata: { eventGroupId: 'g' } }], now),
      { now, ...OPTS },
    )
    const [released] = await store.releaseGroup(tenant, 'g', now + 1000)
    expect((await store.getEvent(tenant, made!.id))?.data).toBe(1)
    expect((await store.getEvent(tenant, 'order-7'))?.seq).toBe(own!.seq)
    expect((await store.getEvent(tenant, released!.id))?.data).toBe(3)
    expect(await store.getEvent(tenant, '01ARZ3NDEKTSV4RRFFQ69G5FAV')).toBeUndefined()
  })

  it('finds an event Herald made whose entry lies thousands of entries past its time (a process with a clock ahead)', async () => {
    const store = open({ maxEvents: 100_000 })
    const tenant = freshTenant('skew')
    const now = Date.now()
    // Its id carries `now`; it is stored only after another process, a minute ahead, pushed the
    // log's ids on and 1,500 more appends followed. (That process's event has an id of its own:
    // ids made here with a later time would make every later id of this process carry it.)
    const late = prepared(tenant, [{ topic: 'late', data: 'found' }], now)
    const ahead = now + 60_000
    await store.append(tenant, prepared(tenant, [{ topic: 'ahead', data: 0, id: 'ahead' }], ahead), {
      now: ahead,
      ...OPTS,
    })
    const batches = Array.from({ length: 1500 }, (_, i) => prepared(tenant, [{ topic: 'x', data: i }], now))
    await Promise.all(batches.map((batch) => store.append(tenant, batch, { now, ...OPTS })))
    const [stored] = (await store.append(tenant, late, { now, ...OPTS })).appended
    expect(stored!.id).toBe(late.events[0]!.id)
    expect((await store.getEvent(tenant, stored!.id))?.data).toBe('found')
  })

  it('takes a publisher id again once Redis has expired the group that held it, and not once it was released', async () => {
    const store = open()
    const tenant = freshTenant('held')
    const ttl = { dedupeWindowMs: 60_000, groupTtlMs: 50 }
    const input = (id: string, group?: string) =>
      prepared(tenant, [
        { id, topic: 't', data: id, ...(group ? { metadata: { eventGroupId: group } } : {}) },
      ])
    await store.append(tenant, input('expired', 'g'), { now: Date.now(), ...ttl })
    await store.append(tenant, input('released', 'h'), { now: Date.now(), ...OPTS })
    await store.releaseGroup(tenant, 'h', Date.now())
    await sleep(150) // Redis drops the keys of group g itself
    expect(await store.append(tenant, input('expired'), { now: Date.now(), ...ttl })).toMatchObject({
      appended: [{ id: 'expired' }],
      duplicates: [],
    })
    expect(await store.append(tenant, input('released'), { now: Date.now(), ...ttl })).toMatchObject({
      appended: [],
      duplicates: ['released'],
    })
    expect(await store.append(tenant, input('expired'), { now: Date.now(), ...ttl })).toMatchObject({
      duplicates: ['expired'],
    })
  })

  it('trims each tenant’s log to about maxEvents, but never an event a durable subscription still owes', async () => {
    const store = open({ maxEvents: 50 })
    const tenant = freshTenant('trim')
    let now = Date.now()
    const append = async (count: number) =>
      (
        await store.append(
          tenant,
          prepared(
            tenant,
            Array.from({ length: count }, (_, i) => ({ topic: 'trim', data: i })),
            now,
          ),
          { now, ...OPTS },
        )
      ).appended
    const count = async () => (await store.read(tenant, { limit: 100_000 })).length
    await store.openSubscription({ tenant, id: 'slow', patterns: ['*'] }, now)
    const owed: HeraldEvent[] = []
    for (let i = 0; i < 30; i++) owed.push(...(await append(10)))
    expect(await count()).toBe(300) // the subscription has claimed nothing yet

    // Claim everything; keep the first as a retry, which must stay, and settle the rest.
    const { deliveries } = await store.claim(tenant, 'slow', {
      consumer: 'c',
      limit: 1000,
      leaseMs: 60_000,
      now,
      match: all,
    })
    expect(deliveries).toHaveLength(300)
    const [kept, ...done] = deliveries
    await store.settle(
      tenant,
      'slow',
      'c',
      [
        { seq: kept!.event.seq!, outcome: 'retry', retryAt: now + 60_000, error: 'later' },
        ...done.map((delivery) => ({ seq: delivery.event.seq!, outcome: 'delivered' as const })),
      ],
      now,
    )
    for (let i = 0; i < 30; i++) await append(10)
    // The retry pins its entry and what follows it; once it is settled the log shrinks.
    expect((await store.getEvent(tenant, kept!.event.id))?.data).toEqual(kept!.event.data)
    now += 60_000
    const again = await store.claim(tenant, 'slow', {
      consumer: 'c',
      limit: 1,
      leaseMs: 60_000,
      now,
      match: all,
    })
    expect(again.deliveries.map((delivery) => [delivery.event.id, delivery.attempt])).toEqual([
      [kept!.event.id, 1],
    ])
    await store.settle(tenant, 'slow', 'c', [{ seq: kept!.event.seq!, outcome: 'delivered' }], now)
    const rest = await store.claim(tenant, 'slow', {
      consumer: 'c',
      limit: 1000,
      leaseMs: 60_000,
      now,
      match: all,
    })
    await store.settle(
      tenant,
      'slow',
      'c',
      rest.deliveries.map((delivery) => ({ seq: delivery.event.seq!, outcome: 'delivered' as const })),
      now,
    )
    await new Promise((resolve) => setTimeout(resolve, 1100)) // a pinned trim looks again after a second
    for (let i = 0; i < 10; i++) await append(10)
    const left = await count()
    expect(left).toBeGreaterThanOrEqual(50)
    expect(left).toBeLessThan(200)
    expect(await store.getEvent(tenant, owed[0]!.id)).toBeUndefined()
  })

  it('reads back another process’s appends only for tenants a watcher needs, and tells the others', async () => {
    const prefix = redis!.subPrefix('w')
    const [a, b] = [0, 1].map(() => {
      const store = redisStore({ url: redis!.url, prefix, logger: silentLogger })
      stores.push(store)
      return store
    }) as [Store, Store]
    const [needed, skipped] = [freshTenant('need'), freshTenant('skip')]
    const key = (t: typeof needed): string => `${t.account}/${t.workspace}`
    const seen: string[] = []
    const notices: string[] = []
    b.watch((events) => seen.push(...events.map((event) => event.topic)), {
      needs: (t) => t === key(needed),
      appended: (t) => notices.push(t),
    })
    await sleep(100) // the feed reader finds where the feed ends
    const now = Date.now()
    for (const t of [skipped, needed])
      await a.append(t, prepared(t, [{ topic: `${t.account}/x`, data: 1 }]), { now, ...OPTS })
    await waitFor(() => seen.length === 1 && notices.length === 1, 5000, 'the event and the notice')
    expect(seen).toEqual([`${needed.account}/x`])
    expect(notices).toEqual([key(skipped)])
  })

  it('shares a durable subscription between stores whose watchers need no events: each event once', async () => {
    const prefix = redis!.subPrefix('d')
    const tenant = freshTenant('durable')
    const seen: string[] = []
    const roots = [0, 1].map(() =>
      createBus({
        store: redisStore({ url: redis!.url, prefix, logger: silentLogger }),
        logger: silentLogger,
        pollInterval: 5_000, // deliveries must come from the feed's wake-ups, not from polling
      }),
    )
    const buses = roots.map((root) => root.scope(tenant))
    for (const bus of buses)
      bus.subscribe('jobs', async (event) => void seen.push(event.id), { subscriberId: 'w' })
    while ((await buses[0]!.subscriptions()).length === 0) await sleep(5)
    const ids = (
      await Promise.all(
        buses.map(async (bus, b) => {
          const out: string[] = []
          for (let i = 0; i < 10; i++)
            out.push(
              ...(await bus.emit(
                Array.from({ length: 25 }, (_, j) => ({ topic: `jobs/${b}`, data: i * 25 + j })),
              )),
            )
          return out
        }),
      )
    ).flat()
    await waitFor(() => seen.length >= ids.length, 10_000, 'every job')
    await sleep(100)
    expect([...seen].sort()).toEqual([...ids].sort())
    for (const root of roots) await root.close()
  })

  it('settles a delivery whose lease ran out and that the same consumer leased again', async () => {
    const store = open()
    const tenant = freshTenant('relet')
    const now = Date.now()
    await store.openSubscription({ tenant, id: 's', patterns: ['*'] }, now)
    const [event] = (
      await store.append(tenant, prepared(tenant, [{ topic: 'x', data: 1 }], now), { now, ...OPTS })
    ).appended
    await store.claim(tenant, 's', { consumer: 'c', limit: 10, leaseMs: 1000, now, match: all })
    const again = await store.claim(tenant, 's', {
      consumer: 'c',
      limit: 10,
      leaseMs: 1000,
      now: now + 1000,
      match: all,
    })
    expect(again.deliveries.map((delivery) => delivery.attempt)).toEqual([1])
    await store.settle(tenant, 's', 'c', [{ seq: event!.seq!, outcome: 'delivered' }], now + 1000)
    expect(await store.deliveryRecords(tenant, event!.seq!)).toEqual([])
    expect(
      (
        await store.claim(tenant, 's', {
          consumer: 'c',
          limit: 10,
          leaseMs: 1000,
          now: now + 5000,
          match: all,
        })
      ).deliveries,
    ).toEqual([])
  })

  describe('claim affinity: a process leases what it appended itself first', () => {
    const claimOf =
      (store: Store, tenant: ReturnType<typeof freshTenant>, consumer: string) =>
      (limit: number, now = Date.now()) =>
        store.claim(tenant, 's', { consumer, limit, leaseMs: 30_000, now, match: all })
    const seqs = (result: { deliveries: { event: HeraldEvent }[] }): string[] =>
      result.deliveries.map((delivery) => delivery.event.seq!)
    /** Two stores on one prefix, both watching (as a bus does), a subscription, and a way to append. */
    const pair = async (name: string) => {
      const prefix = redis!.subPrefix(name)
      const [a, b] = [0, 1].map(() => {
        const store = redisStore({ url: redis!.url, prefix, logger: silentLogger })
        stores.push(store)
        return store
      }) as [Store, Store]
      const tenant = freshTenant(name)
      const noticed = { a: 0, b: 0 }
      a.watch(() => {}, { needs: () => false, appended: () => void noticed.a++ })
      b.watch(() => {}, { needs: () => false, appended: () => void noticed.b++ })
      await sleep(100) // the feed readers find where the feed ends
      await a.openSubscription({ tenant, id: 's', patterns: ['*'] }, Date.now())
      const append = async (store: Store, count: number): Promise<HeraldEvent[]> =>
        (
          await store.append(
            tenant,
            prepared(
              tenant,
              Array.from({ length: count }, (_, i) => ({ topic: 'job', data: i })),
            ),
            { now: Date.now(), ...OPTS },
          )
        ).appended
      return { a, b, tenant, noticed, append }
    }

    it('leases its own append ahead of another process’s, and reports it delivered before the cursor gets there', async () => {
      const { a, b, tenant, noticed, append } = await pair('own')
      const [claimA, claimB] = [claimOf(a, tenant, 'ca'), claimOf(b, tenant, 'cb')]
      // Each claims once, and so says in the feed that it claims this subscription.
      expect(seqs(await claimA(10))).toEqual([])
      expect(seqs(await claimB(10))).toEqual([])
      const first = await append(b, 3)
      const second = await append(a, 4)
      await waitFor(() => noticed.a >= 1, 5000, 'the feed to bring b’s append to a')

      // a takes its own append, though b's lies before it, which b leases itself.
      const mine = await claimA(4)
      expect(seqs(mine)).toEqual(second.map((event) => event.seq))
      await a.settle(
        tenant,
        's',
        'ca',
        second.map((event) => ({ seq: event.seq!, outcome: 'delivered' })),
        Date.now(),
      )
      const [subscription] = await a.listSubscriptions(tenant)
      expect(subscription!.cursor < second[0]!.seq!).toBe(true)
      expect((await a.deliveryRecords(tenant, second[0]!.seq!)).map((record) => record.state)).toEqual([
        'delivered',
      ])

      expect(seqs(await claimB(10))).toEqual(first.map((event) => event.seq))
      const [after] = await a.listSubscriptions(tenant)
      // The cursor took in the stretch a leased ahead once b's claim reached it.
      expect(after!.cursor).toBe(second.at(-1)!.seq)
      expect(await a.deliveryRecords(tenant, second[0]!.seq!)).toEqual([])
    })

    it('a process whose own appends fill every claim still reaches what another process appended before them', async () => {
      const { a, b, tenant, append } = await pair('busy')
      const claimA = claimOf(a, tenant, 'ca')
      expect(seqs(await claimA(5))).toEqual([])
      // b only publishes (an HTTP server, say): its event is anyone's at once.
      const [other] = await append(b, 1)
      const got = new Set<string>()
      // Claims go on back to back for about a second, each filled by a's own appends.
      for (let round = 0; round < 40 && !got.has(other!.seq!); round++) {
        await sleep(25)
        await append(a, 5) // as many as a claim takes: a handler emitting one event per delivery
        const { deliveries } = await claimA(5)
        for (const { event } of deliveries) got.add(event.seq!)
        await a.settle(
          tenant,
          's',
          'ca',
          deliveries.map(({ event }) => ({ seq: event.seq!, outcome: 'delivered' })),
          Date.now(),
        )
      }
      expect(got.has(other!.seq!)).toBe(true)
    })

    it('a claim that stops at another process’s append in the middle of a log entry skips nothing after it', async () => {
      const { a, b, tenant, noticed, append } = await pair('mid')
      const [claimA, claimB] = [claimOf(a, tenant, 'ca'), claimOf(b, tenant, 'cb')]
      expect(seqs(await claimB(10))).toEqual([]) // b's first claim: it knows no cursor yet
      expect(seqs(await claimA(10))).toEqual([])
      const first = await append(a, 50)
      const second = await append(a, 50)
      await waitFor(() => noticed.b >= 2, 5000, 'the feed to bring a’s appends to b')
      // a takes part of its first entry ahead; b, whose view of the cursor is where it started,
      // must neither take the rest of that entry while a may still take it, nor step over it.
      expect(seqs(await claimA(20))).toEqual(first.slice(0, 20).map((event) => event.seq))
      const delivered = new Map<string, number>()
      const count = (result: { deliveries: { event: HeraldEvent }[] }): void => {
        for (const seq of seqs(result)) delivered.set(seq, (delivered.get(seq) ?? 0) + 1)
      }
      count({ deliveries: first.slice(0, 20).map((event) => ({ event })) })
      count(await claimB(20))
      await sleep(60) // past the grace: what is left is anyone's
      for (let round = 0; round < 10 && delivered.size < 100; round++) {
        count(await claimB(20))
        count(await claimA(20))
      }
      expect([...delivered.keys()].sort()).toEqual([...first, ...second].map((event) => event.seq))
      expect([...delivered.values()].every((n) => n === 1)).toBe(true)
    })
  })

  it('fails with store_unavailable within its timeout when Redis cannot be reached', async () => {
    const port = await closedPort()
    const store = redisStore({
      url: `redis://127.0.0.1:${port}`,
      prefix: 'nowhere',
      timeout: 300,
      logger: silentLogger,
    })
    const tenant = freshTenant()
    const started = Date.now()
    const error = await store
      .append(tenant, prepared(tenant, [{ topic: 'x', data: 1 }]), { now: Date.now(), ...OPTS })
      .catch((e: unknown) => e)
    expect(isHeraldError(error, 'store_unavailable')).toBe(true)
    expect(Date.now() - started).toBeLessThan(10_000)
    await store.close()
  })
})

describe('loading', () => {
  it('importing herald loads no Redis driver; creating a redisStore does', () => {
    const script = `
      const herald = await import('./src/index.ts')
      const loaded = () => Object.keys(require.cache).some((file) => file.includes('/node_modules/ioredis/'))
      const before = loaded()
      const store = herald.redisStore({ url: 'redis://127.0.0.1:1', timeout: 50, logger: herald.silentLogger })
      const after = loaded()
      await store.close()
      console.log(JSON.stringify({ before, after }))
    `
    const result = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url); ${script}`,
      ],
      {
        cwd: new URL('../..', import.meta.url),
        encoding: 'utf8',
      },
    )
    expect(result.stderr).not.toMatch(/Error/)
    expect(JSON.parse(result.stdout.trim().split('\n').at(-1)!)).toEqual({ before: false, after: true })
  })
})

/** A loopback port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 1))
    })
  })
}
