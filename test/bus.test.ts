import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  NonRetriableError,
  RetryLaterError,
  createBus,
  isHeraldError,
  memoryStore,
  silentLogger,
  type Bus,
  type BusOptions,
  type HeraldEvent,
  type RetryPolicy,
} from '../src/index.js'
import { recorder, sleep, waitFor } from './helpers.js'
import { runScript } from './support/child.js'
import { ROOT } from './support/herald-process.js'

const buses: Bus[] = []
function bus(options: BusOptions = {}): Bus {
  const created = createBus({ logger: silentLogger, ...options })
  buses.push(created)
  return created
}
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()))
})

/** Subscribes to `topic` a handler that always throws what `error` makes; counts its calls. */
function alwaysThrowing(
  b: Bus,
  topic: string,
  error: () => Error,
  retry: Partial<RetryPolicy>,
): { calls: number } {
  const handler = { calls: 0 }
  b.subscribe(
    topic,
    async () => {
      handler.calls++
      throw error()
    },
    { retry },
  )
  return handler
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (error) {
    return isHeraldError(error) ? error.code : `not a HeraldError: ${String(error)}`
  }
  return undefined
}

describe('matching', () => {
  it('one event and an array reach every subscriber whose pattern matches, and no other', async () => {
    const b = bus()
    const subscribers = {
      all: recorder(),
      transaction: recorder(),
      paid: recorder(),
      user: recorder(),
      userCreated: recorder(),
    }
    b.subscribe('*', subscribers.all.handler)
    b.subscribe('transaction', subscribers.transaction.handler)
    b.subscribe('order/*/paid', subscribers.paid.handler)
    b.subscribe('user', subscribers.user.handler)
    b.subscribe('user.created', subscribers.userCreated.handler)
    await b.emit({ topic: 'transaction/credit', data: 1 })
    await b.emit([
      { topic: 'order/1/paid', data: 2 },
      { topic: 'order/1/paid/partial', data: 3 },
      { topic: 'order/1/refunded', data: 4 },
      { name: 'user.created', data: 5 },
    ])
    await waitFor(() => subscribers.all.events.length === 5)
    await sleep(10)
    expect(subscribers.all.topics()).toEqual([
      'transaction/credit',
      'order/1/paid',
      'order/1/paid/partial',
      'order/1/refunded',
      'user.created',
    ])
    expect(subscribers.transaction.topics()).toEqual(['transaction/credit'])
    expect(subscribers.paid.topics()).toEqual(['order/1/paid', 'order/1/paid/partial'])
    expect(subscribers.user.topics()).toEqual([])
    expect(subscribers.userCreated.topics()).toEqual(['user.created'])
  })

  it('a subscription with several patterns gets a matching event once', async () => {
    const b = bus()
    const got = recorder()
    b.subscribe('orders;orders/*;*', got.handler)
    await b.emit({ topic: 'orders/9', data: null })
    await waitFor(() => got.events.length === 1)
    await sleep(10)
    expect(got.events).toHaveLength(1)
  })

  it('emit resolves with the ids once stored, without waiting for handlers', async () => {
    const b = bus()
    let release!: () => void
    let started = 0
    b.subscribe('slow', () => {
      started++
      return new Promise<void>((resolve) => (release = resolve))
    })
    const ids = await b.emit([{ topic: 'slow', data: 1 }])
    expect(ids).toHaveLength(1)
    expect(started).toBe(1)
    expect((await b.status(ids[0]!))!.deliveries[0]!.state).toBe('pending')
    release()
  })
})

describe('failure isolation', () => {
  it('a handler that throws or rejects never breaks emit or another handler', async () => {
    const b = bus()
    const good = recorder()
    b.subscribe(
      'x',
      () => {
        throw new Error('sync boom')
      },
      { retry: { retries: 0 } },
    )
    b.subscribe(
      'x',
      async () => {
        throw new Error('async boom')
      },
      { retry: { retries: 0 } },
    )
    b.subscribe('x', good.handler)
    const ids = await b.emit([
      { topic: 'x', data: 1 },
      { topic: 'x', data: 2 },
    ])
    expect(ids).toHaveLength(2)
    await waitFor(() => good.events.length === 2)
    await waitFor(async () => (await b.deadLetters.list()).length === 4)
  })

  it('a tail listener that throws keeps no event from the subscribers, nor from itself', async () => {
    const b = bus()
    const all = recorder()
    const tailed: unknown[] = []
    b.tail('x', (event) => {
      tailed.push(event.data)
      throw new Error('listener boom')
    })
    b.subscribe('*', all.handler)
    await b.emit([
      { topic: 'x', data: 1 },
      { topic: 'y', data: 2 },
      { topic: 'x', data: 3 },
    ])
    await waitFor(() => all.events.length === 3)
    expect(all.events.map((event) => event.data)).toEqual([1, 2, 3])
    expect(tailed).toEqual([1, 3])
  })

  it('a synchronous handler works off a backlog of 50,000 one after another, not in one deep stack', async () => {
    const b = bus()
    let release!: () => void
    let calls = 0
    b.subscribe(
      'backlog',
      () => {
        calls++
        // The first delivery holds the only slot while the backlog builds up behind it.
        if (calls === 1) return new Promise<void>((resolve) => (release = resolve))
        return undefined
      },
      { retry: { concurrency: 1 } },
    )
    await b.emit(Array.from({ length: 50_000 }, (_, i) => ({ topic: 'backlog', data: i })))
    release()
    await waitFor(() => calls === 50_000, 10_000, 'the whole backlog')
    await b.emit({ topic: 'backlog', data: 'after' })
    await waitFor(() => calls === 50_001, 5000, 'a later event')
  })

  it('events a handler emits reach every subscriber after the event it was handling', async () => {
    const b = bus()
    const order: string[] = []
    b.subscribe('x', () => void b.emit({ topic: 'y', data: null }))
    b.subscribe('*', (event) => void order.push(event.topic))
    await b.emit({ topic: 'x', data: null })
    await waitFor(() => order.length === 2)
    expect(order).toEqual(['x', 'y'])
  })
})

describe('retries', () => {
  it.each([
    ['live', undefined],
    ['durable', 'always-fails'],
  ] as const)(
    'retries 2 with 50 ms backoff ×2: 3 attempts at about 0, 50 and 150 ms, then a dead letter; status on the way; redrive delivers (%s)',
    async (_kind, subscriberId) => {
      const b = bus({ pollInterval: 20 })
      const starts: number[] = []
      const states: string[] = []
      let heal = false
      let delivered = 0
      b.subscribe(
        'pay',
        async (event, ctx) => {
          starts.push(performance.now())
          const status = await b.status(event.id)
          states.push(`${ctx.attempt}:${status!.deliveries[0]!.state}`)
          if (heal) {
            delivered++
            return
          }
          throw new Error(`declined ${ctx.attempt}`)
        },
        {
          retry: { retries: 2, initialBackoffDelay: 50, exponentialBackoffCoefficient: 2 },
          ...(subscriberId ? { subscriberId } : {}),
        },
      )
      const [id] = await b.emit({ topic: 'pay', data: { amount: 1 } })
      await waitFor(async () => (await b.status(id!))!.deliveries[0]!.state === 'dead', 5000, 'dead letter')
      expect(starts).toHaveLength(3)
      const gap1 = starts[1]! - starts[0]!
      const gap2 = starts[2]! - starts[0]!
      // Lower bounds are the schedule, less the rounding of millisecond timers against the
      // sub-millisecond clock measured here; upper bounds add the 20 % jitter plus slack for a
      // loaded machine.
      expect(gap1).toBeGreaterThanOrEqual(47)
      expect(gap1).toBeLessThan(60 + 60)
      expect(gap2).toBeGreaterThanOrEqual(147)
      expect(gap2).toBeLessThan(60 + 120 + 90)
      expect(states).toEqual(['0:pending', '1:retrying', '2:retrying'])
      const [letter] = await b.deadLetters.list()
      expect(letter).toMatchObject({ attempts: 3, lastError: 'Error: declined 2', event: { id } })
      expect((await b.status(id!))!.deliveries[0]).toMatchObject({
        state: 'dead',
        attempts: 3,
        lastError: 'Error: declined 2',
      })

      heal = true
      expect(await b.deadLetters.redrive(letter!.id)).toBe(true)
      await waitFor(() => delivered === 1, 5000, 'redelivery')
      await waitFor(async () => (await b.status(id!))!.deliveries[0]!.state === 'delivered')
      expect(await b.deadLetters.list()).toEqual([])
    },
  )

  it('shows a retrying delivery with its next attempt time and last error', async () => {
    const b = bus()
    b.subscribe(
      'later',
      async () => {
        throw new Error('not yet')
      },
      { retry: { retries: 1, initialBackoffDelay: 60_000 } },
    )
    const [id] = await b.emit({ topic: 'later', data: 1 })
    await waitFor(async () => (await b.status(id!))!.deliveries[0]!.state === 'retrying')
    const [delivery] = (await b.status(id!))!.deliveries
    expect(delivery).toMatchObject({
      state: 'retrying',
      attempts: 1,
      lastError: 'Error: not yet',
      durable: false,
    })
    const next = Date.parse(delivery!.nextAttemptAt!)
    expect(next - Date.now()).toBeGreaterThan(50_000)
    expect(next - Date.now()).toBeLessThanOrEqual(72_000)
  })

  it('NonRetriableError goes straight to the dead letters', async () => {
    const b = bus()
    const handler = alwaysThrowing(b, 'bad', () => new NonRetriableError('malformed order'), {
      retries: 5,
      initialBackoffDelay: 1,
    })
    const [id] = await b.emit({ topic: 'bad', data: {} })
    await waitFor(async () => (await b.deadLetters.list()).length === 1)
    await sleep(30)
    expect(handler.calls).toBe(1)
    expect((await b.deadLetters.list())[0]).toMatchObject({
      attempts: 1,
      lastError: 'NonRetriableError: malformed order',
      event: { id },
    })
  })

  it.each([
    ['a live', undefined],
    ['a durable', 'later-sub'],
  ])(
    'RetryLaterError makes %s subscription wait what it asks when that is longer than the backoff',
    async (_kind, subscriberId) => {
      const b = bus()
      const attempts: number[] = []
      b.subscribe(
        'busy',
        async () => {
          attempts.push(Date.now())
          if (attempts.length === 1) throw new RetryLaterError('the bank is closed', 400)
          if (attempts.length === 2) throw new RetryLaterError('still busy', 0) // shorter than the backoff: the backoff wins
        },
        { subscriberId, retry: { retries: 3, initialBackoffDelay: 100, exponentialBackoffCoefficient: 1 } },
      )
      const [id] = await b.emit({ topic: 'busy', data: {} })
      await waitFor(
        async () => (await b.status(id!))?.deliveries[0]?.state === 'delivered',
        5000,
        'delivered',
      )
      expect(attempts).toHaveLength(3)
      const [first, second, third] = attempts as [number, number, number]
      expect(second - first).toBeGreaterThanOrEqual(400 - 5)
      expect(third - second).toBeGreaterThanOrEqual(100 - 5)
      expect(third - second).toBeLessThan(400)
    },
  )

  it('a RetryLaterError is still an attempt: it counts toward the retries, and the last one is a dead letter', async () => {
    const b = bus()
    const handler = alwaysThrowing(b, 'busy', () => new RetryLaterError('busy', 30), {
      retries: 1,
      initialBackoffDelay: 1,
    })
    await b.emit({ topic: 'busy', data: {} })
    await waitFor(async () => (await b.deadLetters.list()).length === 1)
    expect(handler.calls).toBe(2)
    expect((await b.deadLetters.list())[0]).toMatchObject({ attempts: 2, lastError: 'RetryLaterError: busy' })
  })

  it('delete removes a dead letter', async () => {
    const b = bus()
    b.subscribe('bad', async () => {
      throw new NonRetriableError('no')
    })
    await b.emit({ topic: 'bad', data: {} })
    await waitFor(async () => (await b.deadLetters.list()).length === 1)
    const [letter] = await b.deadLetters.list()
    expect(await b.deadLetters.delete(letter!.id)).toBe(true)
    expect(await b.deadLetters.delete(letter!.id)).toBe(false)
    expect(await b.deadLetters.list()).toEqual([])
    expect(await b.deadLetters.redrive('garbage')).toBe(false)
  })
})

describe('timeouts', () => {
  it('attempt k is aborted at timeout × exponentialTimeoutCoefficient^k, and its signal fires', async () => {
    const b = bus()
    const aborted: { attempt: number; after: number; reason: unknown }[] = []
    b.subscribe(
      'hang',
      (_event, ctx) =>
        new Promise<void>((_resolve, reject) => {
          const started = performance.now()
          ctx.signal.addEventListener('abort', () => {
            aborted.push({
              attempt: ctx.attempt,
              after: performance.now() - started,
              reason: ctx.signal.reason,
            })
            reject(ctx.signal.reason)
          })
        }),
      { retry: { retries: 2, timeout: 40, exponentialTimeoutCoefficient: 2, initialBackoffDelay: 1 } },
    )
    const [id] = await b.emit({ topic: 'hang', data: 1 })
    await waitFor(async () => (await b.status(id!))!.deliveries[0]!.state === 'dead', 5000, 'dead letter')
    expect(aborted.map((a) => a.attempt)).toEqual([0, 1, 2])
    const expected = [40, 80, 160]
    aborted.forEach((a, k) => {
      expect(a.after).toBeGreaterThanOrEqual(expected[k]! - 2)
      expect(a.after).toBeLessThan(expected[k]! + 60)
      expect(String(a.reason)).toMatch(/timed out/)
    })
    expect((await b.deadLetters.list())[0]!.lastError).toMatch(/timed out after 160 ms/)
  })

  it('a handler gets its whole timeout even when the turn that emitted it had been running for a while', async () => {
    const b = bus()
    let startedAt = 0
    let abortedAfter = -1
    b.subscribe(
      'hang',
      (_event, ctx) =>
        new Promise<void>((_resolve, reject) => {
          startedAt = performance.now()
          ctx.signal.addEventListener('abort', () => {
            abortedAfter = performance.now() - startedAt
            reject(ctx.signal.reason)
          })
        }),
      { retry: { retries: 0, timeout: 50 } },
    )
    // One turn: an emit reads the clock, the turn stays busy for 30 ms, then the emit that matters.
    await b.emit({ topic: 'warm', data: 1 })
    const busyUntil = Date.now() + 30
    while (Date.now() < busyUntil) {
      // a long synchronous stretch, as a busy process has
    }
    await b.emit({ topic: 'hang', data: 1 })
    await waitFor(() => abortedAfter >= 0, 2000, 'the abort')
    expect(abortedAfter).toBeGreaterThanOrEqual(48)
  })

  it('a handler emitted from a setImmediate callback of an idle process is aborted at its timeout, not twice it', async () => {
    // In a process of its own: here the test runner's own activity wakes the loop and hides it.
    const child = runScript(`${ROOT}/test/fixtures/idle-timeout.ts`, [], { cwd: ROOT })
    const printed = await child.line(() => true, 10_000, 'the time of the abort')
    expect(await child.exited).toBe(0)
    const abortedAfter = Number(printed)
    expect(abortedAfter).toBeGreaterThanOrEqual(148)
    // The turn's end came only with the next timer (the sweep at the deadline): about 300 ms.
    expect(abortedAfter).toBeLessThan(280)
  })

  it('a late success of an aborted attempt does not count', async () => {
    const b = bus()
    b.subscribe('late', () => sleep(80), { retry: { retries: 0, timeout: 20 } })
    const [id] = await b.emit({ topic: 'late', data: 1 })
    await waitFor(async () => (await b.status(id!))!.deliveries[0]!.state === 'dead')
    await sleep(120)
    expect((await b.status(id!))!.deliveries[0]!.state).toBe('dead')
  })

  it('a timed-out attempt frees its concurrency slot even if the handler never settles', async () => {
    const b = bus()
    const got: number[] = []
    b.subscribe(
      'q',
      (event) => {
        if (event.data === 0) return new Promise<void>(() => {}) // hangs forever
        got.push(event.data as number)
      },
      { retry: { retries: 0, timeout: 30, concurrency: 1 } },
    )
    await b.emit([0, 1, 2].map((data) => ({ topic: 'q', data })))
    await waitFor(() => got.length === 2, 3000, 'the queue to move past the hung handler')
    expect(got).toEqual([1, 2])
  })
})

describe('concurrency', () => {
  it.each([
    ['live', undefined],
    ['durable', 'capped'],
  ] as const)(
    'a subscription never has more than `concurrency` deliveries in flight (%s)',
    async (_kind, subscriberId) => {
      const b = bus({ pollInterval: 20 })
      let inFlight = 0
      let peak = 0
      let done = 0
      b.subscribe(
        'work',
        async () => {
          peak = Math.max(peak, ++inFlight)
          await sleep(5)
          inFlight--
          done++
        },
        { retry: { concurrency: 3 }, ...(subscriberId ? { subscriberId } : {}) },
      )
      await b.emit(Array.from({ length: 30 }, (_, i) => ({ topic: 'work', data: i })))
      await waitFor(() => done === 30, 10_000, 'all deliveries')
      expect(peak).toBe(3)
    },
  )

  it('a slow subscription does not hold back another', async () => {
    const b = bus()
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const fast = recorder()
    b.subscribe('e', () => gate, { retry: { concurrency: 1 } })
    b.subscribe('e', fast.handler, { retry: { concurrency: 1 } })
    await b.emit(Array.from({ length: 10 }, (_, i) => ({ topic: 'e', data: i })))
    await waitFor(() => fast.events.length === 10, 3000, 'the fast subscription')
    release()
  })

  it('deliveries start in log order', async () => {
    const b = bus()
    const order: number[] = []
    b.subscribe(
      'o',
      async (event) => {
        order.push(event.data as number)
        await sleep(Math.random() * 3)
      },
      { retry: { concurrency: 2 } },
    )
    for (let i = 0; i < 5; i++)
      await b.emit(Array.from({ length: 10 }, (_, j) => ({ topic: 'o', data: i * 10 + j })))
    await waitFor(() => order.length === 50)
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })
})

describe('grouped events', () => {
  it('while a durable subscription is being created, emits, clears and releases keep the order they were made in', async () => {
    const b = bus({ pollInterval: 20 })
    const got: unknown[] = []
    b.subscribe('*', (event) => void got.push(event.data), { subscriberId: 'being-created' })
    // Each waits for the creation; the later ones must not overtake the earlier once it is done.
    const first = b.emit({ topic: 'o', data: 'first' })
    await Promise.resolve()
    await Promise.resolve()
    const second = b.emit({ topic: 'o', data: 'second' })
    const [[firstId], [secondId]] = await Promise.all([first, second])
    const seqOf = async (id: string) => (await b.status(id))!.event.seq!
    expect((await seqOf(firstId!)) < (await seqOf(secondId!))).toBe(true)

    b.subscribe('other', () => {}, { subscriberId: 'also-being-created' })
    const staged = b.emit({ topic: 'o', data: 'cleared', metadata: { eventGroupId: 'tx' } })
    const cleared = b.clearGroupedEvents('tx')
    const released = b.releaseGroupedEvents('tx')
    await Promise.all([staged, cleared, released])
    await waitFor(() => got.length === 2)
    await sleep(100)
    expect(got).toEqual(['first', 'second'])
  })

  it('are not delivered before release, then arrive in emit order; cleared ones never', async () => {
    const b = bus()
    const got = recorder()
    b.subscribe('*', got.handler)
    await b.emit([
      { topic: 'a', data: 1, metadata: { eventGroupId: 'tx' } },
      { topic: 'plain', data: 0 },
      { topic: 'b', data: 2, metadata: { eventGroupId: 'tx' } },
      { topic: 'c', data: 3, metadata: { eventGroupId: 'other' } },
    ])
    await b.emit({ topic: 'd', data: 4, metadata: { eventGroupId: 'tx' } })
    await waitFor(() => got.events.length === 1)
    await sleep(20)
    expect(got.topics()).toEqual(['plain'])
    await b.clearGroupedEvents('other')
    await b.releaseGroupedEvents('tx')
    await waitFor(() => got.events.length === 4)
    await b.releaseGroupedEvents('other')
    await sleep(20)
    expect(got.topics()).toEqual(['plain', 'a', 'b', 'd'])
    expect(got.events[1]!.metadata).toEqual({ eventGroupId: 'tx' })
  })

  it('clearing with eventNames drops only those topics', async () => {
    const b = bus()
    const got = recorder()
    b.subscribe('*', got.handler)
    await b.emit(
      ['keep', 'drop', 'keep'].map((topic) => ({ topic, data: null, metadata: { eventGroupId: 'g' } })),
    )
    await b.clearGroupedEvents('g', { eventNames: ['drop'] })
    await b.releaseGroupedEvents('g')
    await waitFor(() => got.events.length === 2)
    await sleep(20)
    expect(got.topics()).toEqual(['keep', 'keep'])
  })

  it('releasing an unknown group is a no-op', async () => {
    const b = bus()
    await expect(b.releaseGroupedEvents('never-staged')).resolves.toBeUndefined()
    await expect(b.clearGroupedEvents('never-staged')).resolves.toBeUndefined()
  })

  it('an expired group is dropped', async () => {
    const b = bus({ groupTtl: 30 })
    const got = recorder()
    b.subscribe('*', got.handler)
    await b.emit({ topic: 'stale', data: 1, metadata: { eventGroupId: 'slow-tx' } })
    await sleep(60)
    await b.releaseGroupedEvents('slow-tx')
    await sleep(20)
    expect(got.events).toEqual([])
  })
})

describe('tenants', () => {
  it('a subscriber in (acme, master) never sees events of (acme, dev) or (other, master), whatever its pattern', async () => {
    const b = bus()
    const acmeMaster = b.scope({ account: 'acme', workspace: 'master' })
    const got = recorder()
    acmeMaster.subscribe('*', got.handler)
    acmeMaster.subscribe('orders', got.handler, { subscriberId: 'durable-acme' })
    await b.scope({ account: 'acme', workspace: 'dev' }).emit({ topic: 'orders/1', data: 'dev' })
    await b.scope({ account: 'other', workspace: 'master' }).emit({ topic: 'orders/1', data: 'other' })
    await b.emit({ topic: 'orders/1', data: 'default tenant' })
    await acmeMaster.emit({ topic: 'orders/1', data: 'mine' })
    await waitFor(() => got.events.length === 2)
    await sleep(50)
    expect(got.events.map((e) => [e.data, e.account, e.workspace])).toEqual([
      ['mine', 'acme', 'master'],
      ['mine', 'acme', 'master'],
    ])
  })

  it('status, dead letters and events of one tenant are invisible from another', async () => {
    const b = bus()
    const acme = b.scope({ account: 'acme', workspace: 'master' })
    const other = b.scope({ account: 'other', workspace: 'master' })
    acme.subscribe('x', async () => {
      throw new NonRetriableError('no')
    })
    const [id] = await acme.emit({ topic: 'x', data: 1 })
    await waitFor(async () => (await acme.deadLetters.list()).length === 1)
    expect(await other.status(id!)).toBeUndefined()
    expect(await other.deadLetters.list()).toEqual([])
    const [letter] = await acme.deadLetters.list()
    expect(await other.deadLetters.redrive(letter!.id)).toBe(false)
    expect(await other.deadLetters.delete(letter!.id)).toBe(false)
    expect(await acme.deadLetters.list()).toHaveLength(1)
  })

  it('refuses malformed tenants and events naming another tenant', async () => {
    const b = bus()
    expect(() => b.scope({ account: '', workspace: 'master' })).toThrow(
      expect.objectContaining({ code: 'invalid_tenant' }),
    )
    expect(() => b.scope({ account: 'a/b', workspace: 'master' })).toThrow(
      expect.objectContaining({ code: 'invalid_tenant' }),
    )
    const acme = b.scope({ account: 'acme', workspace: 'master' })
    expect(await codeOf(acme.emit({ topic: 't', data: 1, account: 'other' }))).toBe('invalid_tenant')
  })
})

describe('sender filter', () => {
  it("a subscription with sender 'vtex.events-example' gets only that sender's events (versions ignored)", async () => {
    const b = bus()
    const got = recorder()
    b.subscribe('send-event', got.handler, { sender: 'vtex.events-example' })
    await b.emit([
      { topic: 'send-event', data: 1, sender: 'vtex.events-example' },
      { topic: 'send-event', data: 2, sender: 'vtex.other-app' },
      { topic: 'send-event', data: 3 },
      { topic: 'send-event', data: 4, sender: 'vtex.events-example@0.0.1' },
    ])
    await waitFor(() => got.events.length === 2)
    await sleep(20)
    expect(got.events.map((e) => e.data)).toEqual([1, 4])
  })
})

describe('bad input', () => {
  it.each([
    ['an empty topic', { topic: '', data: 1 }, 'invalid_topic'],
    ['a//b', { topic: 'a//b', data: 1 }, 'invalid_topic'],
    ['whitespace', { topic: 'a b', data: 1 }, 'invalid_topic'],
    ['an over-long topic', { topic: 'x'.repeat(1025), data: 1 }, 'invalid_topic'],
    ['non-JSON data', { topic: 'ok', data: { f: () => 1 } }, 'invalid_event'],
    ['undefined data', { topic: 'ok' }, 'invalid_event'],
    ['an oversized payload', { topic: 'ok', data: 'x'.repeat(5000) }, 'payload_too_large'],
  ])(
    '%s gets a HeraldError with its code, and nothing of that call is stored or delivered',
    async (_what, bad, code) => {
      const store = memoryStore()
      const b = bus({ store, maxPayloadBytes: 4096 })
      const got = recorder()
      b.subscribe('*', got.handler)
      expect(await codeOf(b.emit(bad as never))).toBe(code)
      expect(await codeOf(b.emit([{ topic: 'ok', data: 'fine' }, bad as never]))).toBe(code)
      await sleep(20)
      expect(got.events).toEqual([])
      expect(await store.read(b.tenant, { limit: 10 })).toEqual([])
    },
  )

  it('refuses bad subscriptions clearly', () => {
    const b = bus()
    expect(() => b.subscribe('ord*', async () => {})).toThrow(
      expect.objectContaining({ code: 'invalid_pattern' }),
    )
    expect(() => b.subscribe('ok', 'nope' as never)).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
    expect(() => b.subscribe('ok', async () => {}, { retry: { retries: -1 } })).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
    expect(() => b.subscribe('ok', async () => {}, { retry: { concurrency: 0 } })).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
    b.subscribe('ok', async () => {}, { subscriberId: 'once' })
    expect(() => b.subscribe('ok', async () => {}, { subscriberId: 'once' })).toThrow(
      expect.objectContaining({ code: 'duplicate_subscription' }),
    )
  })
})

describe('idempotent publishing', () => {
  it('a second emit of the same id within the dedupe window is accepted but not delivered again', async () => {
    const b = bus()
    const got = recorder()
    b.subscribe('pay', got.handler)
    expect(await b.emit({ id: 'payment-1', topic: 'pay', data: 1 })).toEqual(['payment-1'])
    expect(await b.emit({ id: 'payment-1', topic: 'pay', data: 1 })).toEqual(['payment-1'])
    await waitFor(() => got.events.length === 1)
    await sleep(30)
    expect(got.events).toHaveLength(1)
  })
})

describe('unsubscribe', () => {
  it('by handler and pattern, or by subscriberId, stops deliveries', async () => {
    const b = bus()
    const first = recorder()
    const second = recorder()
    b.subscribe('a;b', first.handler)
    b.subscribe('a', second.handler, { subscriberId: 'second' })
    b.unsubscribe('a', first.handler)
    b.unsubscribe('a', undefined, { subscriberId: 'second' })
    await b.emit([
      { topic: 'a', data: 1 },
      { topic: 'b', data: 2 },
    ])
    await waitFor(() => first.events.length === 1)
    await sleep(30)
    expect(first.topics()).toEqual(['b'])
    expect(second.events).toEqual([])
    expect(await b.subscriptions()).toEqual([])
  })

  it.each([
    ['live', undefined],
    ['durable', 'narrowed'],
  ] as const)(
    'from some of its patterns, a subscription stops getting those (%s)',
    async (_kind, subscriberId) => {
      const b = bus({ pollInterval: 20 })
      const got = recorder()
      b.subscribe('a;b', got.handler, subscriberId ? { subscriberId } : {})
      b.unsubscribe('b', got.handler)
      await b.emit([
        { topic: 'b', data: 1 },
        { topic: 'a', data: 2 },
      ])
      await waitFor(() => got.events.length === 1)
      await sleep(100)
      expect(got.topics()).toEqual(['a'])
      if (subscriberId) expect((await b.subscriptions()).map((s) => s.patterns)).toEqual([['a']])
    },
  )

  it('a durable handler that unsubscribes itself is not called again', async () => {
    const b = bus({ pollInterval: 20 })
    let calls = 0
    const handler = async () => {
      calls++
      b.unsubscribe([], undefined, { subscriberId: 'once', keep: true })
    }
    b.subscribe('work', handler, { subscriberId: 'once' })
    await b.emit(Array.from({ length: 5 }, (_, i) => ({ topic: 'work', data: i })))
    await waitFor(() => calls > 0)
    await sleep(150)
    expect(calls).toBe(1)
  })

  it('unsubscribing durable subscriptions before the store created them leaves no timers behind', async () => {
    const b = bus()
    await b.subscriptions()
    const intervals = vi.spyOn(globalThis, 'setInterval')
    try {
      for (let i = 0; i < 50; i++) {
        b.subscribe('x', async () => {}, { subscriberId: `brief-${i}` })
        b.unsubscribe([], undefined, { subscriberId: `brief-${i}` })
      }
      await b.subscriptions() // every creation has settled
      expect(intervals).not.toHaveBeenCalled()
    } finally {
      intervals.mockRestore()
    }
  })
})

describe('tail', () => {
  it('replays after a seq and goes live, each event once and in order', async () => {
    const b = bus()
    const first = await b.emit([1, 2, 3].map((n) => ({ topic: 'feed', data: n })))
    const firstSeq = (await b.status(first[0]!))!.event.seq!
    const seen: number[] = []
    const tail = b.tail('feed', (event: HeraldEvent) => seen.push(event.data as number), { since: firstSeq })
    const during = b.emit({ topic: 'feed', data: 4 })
    await tail.ready
    await during
    await b.emit([
      { topic: 'other', data: 0 },
      { topic: 'feed', data: 5 },
    ])
    await waitFor(() => seen.length === 4)
    expect(seen).toEqual([2, 3, 4, 5])
    tail.close()
    await b.emit({ topic: 'feed', data: 6 })
    expect(seen).toEqual([2, 3, 4, 5])
  })

  it('hands an event over once when its live copy comes after the replay read it from the log', async () => {
    // A store whose watch lags its log, as Redis's feed can lag what another process appended.
    const store = memoryStore()
    const watch = store.watch.bind(store)
    store.watch = (listener, options) =>
      watch((events) => void setTimeout(() => listener(events), 50), options)
    const b = bus({ store })
    await b.emit({ topic: 'feed', data: 'before' })
    const seen: unknown[] = []
    const tail = b.tail('feed', (event: HeraldEvent) => seen.push(event.data), { since: '' })
    await tail.ready
    await b.emit({ topic: 'feed', data: 'after' })
    await sleep(150)
    expect(seen).toEqual(['before', 'after'])
    tail.close()
  })

  it('refuses a since past the head of the log: an event id, a bare number, any position of an empty log', async () => {
    const b = bus()
    const [id] = await b.emit({ topic: 'feed', data: 1 })
    for (const since of [id!, '42', 'zzz']) {
      const tail = b.tail('feed', () => {}, { since })
      await expect(tail.ready).rejects.toMatchObject({ code: 'invalid_request', details: { since } })
    }
    const empty = bus().tail('feed', () => {}, { since: '0000000000000001' })
    await expect(empty.ready).rejects.toMatchObject({ code: 'invalid_request' })
    // The head itself and the start are positions of the log.
    const seq = (await b.status(id!))!.event.seq!
    await expect(b.tail('feed', () => {}, { since: seq }).ready).resolves.toBeUndefined()
    await expect(b.tail('feed', () => {}, { since: '' }).ready).resolves.toBeUndefined()
  })
})

describe('close', () => {
  it('waits for in-flight deliveries; emit after close fails with `closed`', async () => {
    const b = bus()
    let finished = 0
    b.subscribe('slow', async () => {
      await sleep(80)
      finished++
    })
    await b.emit([
      { topic: 'slow', data: 1 },
      { topic: 'slow', data: 2 },
    ])
    await b.close()
    expect(finished).toBe(2)
    expect(await codeOf(b.emit({ topic: 'slow', data: 3 }))).toBe('closed')
    expect(await codeOf(b.releaseGroupedEvents('g'))).toBe('closed')
  })

  it('gives up on deliveries that outlast the drain timeout and aborts them', async () => {
    const b = bus({ drainTimeout: 50 })
    let signal: AbortSignal | undefined
    b.subscribe('stuck', (_event, ctx) => {
      signal = ctx.signal
      return new Promise(() => {})
    })
    await b.emit({ topic: 'stuck', data: 1 })
    const started = Date.now()
    await b.close()
    expect(Date.now() - started).toBeLessThan(2000)
    expect(signal!.aborted).toBe(true)
  })
})
