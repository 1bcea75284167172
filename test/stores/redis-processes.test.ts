/**
 * Several Herald processes sharing one Redis: real child processes (test/stores/fixtures/redis-herald.ts),
 * real Redis, one durable subscription shared among them, and live subscribers across processes.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_TENANT, createBus, redisStore, silentLogger, type HeraldEvent } from '../../src/index.js'
import { waitFor } from '../helpers.js'
import { useRedis } from '../support/redis.js'

const redis = await useRedis('processes')
const FIXTURE = fileURLToPath(new URL('./fixtures/redis-herald.ts', import.meta.url))

interface Message {
  ready?: true
  subscribed?: string
  published?: string[]
  handled?: [string, number][]
  holding?: string[]
  closed?: true
  error?: string
}

/** One Herald process and what it reported. */
class HeraldProcess {
  readonly child: ChildProcess
  readonly handled: [string, number][] = []
  readonly holding: string[] = []
  private readonly waiting: ((message: Message) => boolean)[] = []
  readonly exited: Promise<void>

  constructor(prefix: string, leaseTime: number) {
    this.child = fork(FIXTURE, [], {
      execArgv: ['--import', 'tsx'],
      env: {
        ...process.env,
        REDIS_URL: redis!.url,
        HERALD_PREFIX: prefix,
        HERALD_LEASE_TIME: String(leaseTime),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
    this.child.on('message', (message: Message) => {
      if (message.error) throw new Error(`herald process ${this.child.pid}: ${message.error}`)
      if (message.handled) this.handled.push(...message.handled)
      if (message.holding) this.holding.push(...message.holding)
      for (let i = this.waiting.length - 1; i >= 0; i--)
        if (this.waiting[i]!(message)) this.waiting.splice(i, 1)
    })
  }

  private next<T>(pick: (message: Message) => T | undefined, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`herald process ${this.child.pid}: no ${what} within 30 s`)),
        30_000,
      )
      this.waiting.push((message) => {
        const value = pick(message)
        if (value === undefined) return false
        clearTimeout(timer)
        resolve(value)
        return true
      })
    })
  }

  ready(): Promise<true> {
    return this.next((m) => m.ready, 'ready')
  }

  async subscribe(spec: { id: string; pattern: string; concurrency: number; hold?: boolean }): Promise<void> {
    const done = this.next((m) => m.subscribed, 'subscribed')
    this.child.send({ subscribe: spec })
    await done
  }

  async publish(topic: string, count: number, batch = 50): Promise<string[]> {
    const done = this.next((m) => m.published, 'published')
    this.child.send({ publish: { topic, count, batch } })
    return done
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const closed = this.next((m) => m.closed, 'closed')
    this.child.send({ close: true })
    await closed
    await this.exited
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exited
  }
}

const started: HeraldProcess[] = []
async function spawnHerald(prefix: string, leaseTime = 30_000): Promise<HeraldProcess> {
  const herald = new HeraldProcess(prefix, leaseTime)
  started.push(herald)
  await herald.ready()
  return herald
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((herald) => herald.close().catch(() => herald.kill())))
})

describe.skipIf(!redis)('several Herald processes on one Redis', () => {
  it('share one durable subscription: 3,000 events published from three processes are each handled exactly once', async () => {
    const prefix = redis!.subPrefix('once')
    const heralds = await Promise.all([0, 1, 2].map(() => spawnHerald(prefix)))
    for (const herald of heralds) await herald.subscribe({ id: 'workers', pattern: 'jobs', concurrency: 20 })

    const published = (await Promise.all(heralds.map((herald) => herald.publish('jobs', 1000)))).flat()
    expect(new Set(published).size).toBe(3000)
    const handledCount = (): number => heralds.reduce((sum, herald) => sum + herald.handled.length, 0)
    await waitFor(() => handledCount() >= 3000, 60_000, '3,000 deliveries')
    // Let anything delivered twice arrive before counting.
    await Promise.all(heralds.map((herald) => herald.close()))

    const times = new Map<string, number>()
    for (const herald of heralds) for (const [id] of herald.handled) times.set(id, (times.get(id) ?? 0) + 1)
    expect([...times.keys()].sort()).toEqual([...published].sort())
    expect([...times.values()].filter((n) => n !== 1)).toEqual([])
    expect(heralds.filter((herald) => herald.handled.length > 0).length).toBeGreaterThanOrEqual(2)
  })

  it('deliveries held by a process killed with SIGKILL are delivered by the others once the lease runs out; nothing is lost', async () => {
    const prefix = redis!.subPrefix('crash')
    const lease = 1000
    const victim = await spawnHerald(prefix, lease)
    await victim.subscribe({ id: 'crashy', pattern: 'work', concurrency: 10, hold: true })
    const early = await victim.publish('work', 30, 30)
    await waitFor(() => victim.holding.length === 10, 15_000, 'the victim to hold 10 deliveries')

    const survivors = await Promise.all([0, 1].map(() => spawnHerald(prefix, lease)))
    for (const herald of survivors) await herald.subscribe({ id: 'crashy', pattern: 'work', concurrency: 10 })
    await waitFor(
      () => survivors.reduce((sum, herald) => sum + herald.handled.length, 0) === 20,
      15_000,
      'the survivors to take the other 20',
    )
    // While the victim lives and renews its leases, nobody else touches what it holds.
    const held = new Set(victim.holding)
    expect(survivors.some((herald) => herald.handled.some(([id]) => held.has(id)))).toBe(false)
    await victim.kill()
    const late = (await Promise.all(survivors.map((herald) => herald.publish('work', 100)))).flat()

    const all = [...early, ...late]
    const seen = (): Set<string> => new Set(survivors.flatMap((herald) => herald.handled.map(([id]) => id)))
    await waitFor(() => all.every((id) => seen().has(id)), 30_000, 'every event delivered by the survivors')
    const attempts = new Map(survivors.flatMap((herald) => herald.handled))
    // The held ones come back as their second attempt: the first one died with the victim.
    for (const id of victim.holding) expect(attempts.get(id)).toBe(1)
    expect(seen().size).toBe(all.length)
  })

  it('a live subscriber in one process receives, in order, what another process publishes', async () => {
    const prefix = redis!.subPrefix('live')
    const bus = createBus({
      store: redisStore({ url: redis!.url, prefix, logger: silentLogger }),
      logger: silentLogger,
    })
    try {
      const received: HeraldEvent[] = []
      bus.subscribe('news', async (event) => {
        received.push(event)
      })
      // The store's connection answers in order: once this read returns, the watch that the bus
      // started is in place, and anything published from now on reaches it.
      await bus.store.head(DEFAULT_TENANT)
      const publisher = await spawnHerald(prefix)
      const ids = await publisher.publish('news', 120, 7)
      await waitFor(() => received.length >= ids.length, 15_000, 'live events from the other process')
      expect(received.map((event) => event.id)).toEqual(ids)
      const seqs = received.map((event) => event.seq!)
      expect([...seqs].sort()).toEqual(seqs)
    } finally {
      await bus.close()
    }
  })
})
