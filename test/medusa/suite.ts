/**
 * The behaviour of Herald's Medusa event module, run against every store. It covers what
 * Medusa's own local and Redis event modules test (their unit and integration suites; the
 * reference cases are noted as [A1], [C32], ... after the test names' subject), adapted where
 * Herald does something else on purpose, plus the cases where Herald keeps what Medusa loses.
 */
import { CommonEvents, composeMessage } from '@medusajs/framework/utils'
import type { Event as MedusaEvent, Message } from '@medusajs/framework/types'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { HeraldMedusaOptions } from '../../src/medusa/index.js'
import { sleep, waitFor } from '../helpers.js'
import { collector, FAST_RETRY, freshAccount, gate, Services, storedEvents, waitForCount } from './support.js'

export interface StorePlace {
  /** Options that reach this place's data; every call within one test reaches the same data. */
  options(): HeraldMedusaOptions
  cleanup(): Promise<void>
}

export interface SuiteTarget {
  name: string
  /** Several processes can share the store, so server instances leave subscribers to workers. */
  shared: boolean
  place(): StorePlace
}

function message(name: string, data: unknown, extra: Partial<Message> = {}): Message {
  return { name, data, ...extra }
}

function grouped(name: string, data: unknown, eventGroupId: string): Message {
  return { name, data, metadata: { eventGroupId } }
}

export function describeMedusaEventBus(target: SuiteTarget): void {
  describe(`Herald as Medusa's event module (${target.name} store)`, () => {
    const services = new Services()
    let place: StorePlace
    let account: string

    beforeEach(() => {
      place = target.place()
      account = freshAccount()
    })

    afterEach(async () => {
      await services.shutdownAll()
      await place.cleanup()
    })

    /** A service on this test's store and tenant, with quick retries unless told otherwise. */
    const start = (extra: HeraldMedusaOptions = {}, workerMode: 'shared' | 'worker' | 'server' = 'shared') =>
      services.start(
        { ...place.options(), account, retry: FAST_RETRY, ...extra },
        { worker_mode: workerMode },
      )

    describe('emit', () => {
      it('delivers an event to its subscriber as { name, data, metadata } with created_at and published_at Dates [A1 B1 E1 C31]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('product.created', got.subscriber, { subscriberId: 'on-product' })
        await service.emit(
          composeMessage('product.created', {
            data: { id: 'prod_1' },
            action: CommonEvents.CREATED,
            source: 'product',
            object: 'product',
          }),
        )
        await waitForCount(got.events, 1, 'deliveries')
        const [event] = got.events
        expect(Object.keys(event!).sort()).toEqual(['data', 'metadata', 'name'])
        expect(event).toEqual({
          name: 'product.created',
          data: { id: 'prod_1' },
          metadata: expect.objectContaining({ source: 'product', object: 'product', action: 'created' }),
        })
        expect(event!.metadata!.created_at).toBeInstanceOf(Date)
        expect(event!.metadata!.published_at).toBeInstanceOf(Date)
      })

      it('resolves emit once the event is stored, while its subscriber is still running', async () => {
        const { service } = start()
        const release = gate()
        let started = 0
        let finished = 0
        service.subscribe('order.placed', async () => {
          started++
          await release.promise
          finished++
        })
        await service.emit(message('order.placed', { id: 'order_1' }))
        expect(finished).toBe(0)
        expect((await storedEvents(service)).map((e) => e.topic)).toEqual(['order.placed'])
        await waitFor(() => started === 1, 5000, 'the subscriber to start')
        release.open()
        await waitFor(() => finished === 1, 5000, 'the subscriber to finish')
      })

      it('logs one info line per event and none for internal events, set on the emit or on the message [A2 C10]', async () => {
        const { service, logs } = start()
        service.subscribe('cart.updated', async () => {})
        await service.emit(message('cart.updated', { n: 1 }))
        await service.emit(message('cart.updated', { n: 2 }, { options: { internal: true } }))
        await service.emit(message('cart.updated', { n: 3 }), { internal: true })
        expect(logs.info.filter((line) => line.includes('cart.updated'))).toHaveLength(1)
        expect(logs.info[0]).toContain('1 subscribers')
      })

      it('stores each message of an array as its own event and every subscriber gets them in order [A3]', async () => {
        const { service } = start()
        const first = collector()
        const second = collector()
        service.subscribe('stock.moved', first.subscriber, { subscriberId: 'first' })
        service.subscribe('stock.moved', second.subscriber)
        await service.emit([1, 2, 3].map((n) => message('stock.moved', { n })))
        await waitForCount(first.events, 3, 'deliveries to the first subscriber')
        await waitForCount(second.events, 3, 'deliveries to the second subscriber')
        expect(first.events.map((e) => (e.data as { n: number }).n)).toEqual([1, 2, 3])
        expect(second.events.map((e) => (e.data as { n: number }).n)).toEqual([1, 2, 3])
      })

      it('lets message-level options override emit-level ones [C5 C16-C19]', async () => {
        const { service, logs } = start()
        await service.emit([message('a.one', 1, { options: { internal: false } }), message('a.two', 2)], {
          internal: true,
        })
        expect(logs.info.some((line) => line.includes('a.one'))).toBe(true)
        expect(logs.info.some((line) => line.includes('a.two'))).toBe(false)
      })

      it('stores a delayed event only once its delay has passed, then delivers it [C4]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('reminder.due', got.subscriber, { subscriberId: 'reminder' })
        const emittedAt = Date.now()
        await service.emit(message('reminder.due', { id: 1 }), { delay: 300 })
        expect(await storedEvents(service)).toHaveLength(0)
        await waitForCount(got.events, 1, 'the delayed delivery')
        expect(Date.now() - emittedAt).toBeGreaterThanOrEqual(290)
        const metadata = got.events[0]!.metadata!
        expect(
          (metadata.published_at as Date).getTime() - (metadata.created_at as Date).getTime(),
        ).toBeGreaterThanOrEqual(290)
      })

      it('stages a delayed grouped event at once, so a release within its delay delivers it, and says once that the delay is not applied', async () => {
        const { service, logs } = start()
        const got = collector()
        service.subscribe('order.placed', got.subscriber, { subscriberId: 'delayed-group' })
        await service.emit(grouped('order.placed', { id: 1 }, 'tx-delay'), {
          delay: 200,
        })
        await service.emit(grouped('order.placed', { id: 2 }, 'tx-delay'), {
          delay: 200,
        })
        await service.releaseGroupedEvents('tx-delay')
        await waitForCount(got.events, 2, 'the grouped events')
        expect(got.events.map((event) => event.data)).toEqual([{ id: 1 }, { id: 2 }])
        expect(logs.warn.filter((line) => line.includes('delay of a grouped event'))).toHaveLength(1)
      })

      it('stores and delivers an event once when its jobId is emitted again', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('invoice.sent', got.subscriber, { subscriberId: 'mailer' })
        await service.emit(message('invoice.sent', { n: 1 }, { options: { jobId: 'invoice-42' } }))
        await service.emit(message('invoice.sent', { n: 2 }, { options: { jobId: 'invoice-42' } }))
        await service.emit(message('invoice.sent', { n: 3 }))
        await waitForCount(got.events, 2, 'deliveries')
        expect((await storedEvents(service)).map((e) => e.data)).toEqual([{ n: 1 }, { n: 3 }])
        expect(got.events.map((e) => e.data)).toEqual([{ n: 1 }, { n: 3 }])
      })

      it('ignores BullMQ job options (attempts, backoff, priority) with one warning each, and still delivers [C3-C19]', async () => {
        const { service, logs } = start()
        const got = collector()
        service.subscribe('order.placed', got.subscriber)
        await service.emit(message('order.placed', 1, { options: { priority: 10 } }), {
          attempts: 3,
          backoff: 5000,
        })
        await service.emit(message('order.placed', 2), { attempts: 3 })
        await waitForCount(got.events, 2, 'deliveries')
        expect(logs.warn.filter((line) => line.includes('attempts'))).toHaveLength(1)
        expect(logs.warn.filter((line) => line.includes('backoff'))).toHaveLength(1)
        expect(logs.warn.filter((line) => line.includes('priority'))).toHaveLength(1)
      })
    })

    describe('retries (Medusa retries only with BullMQ attempts; local never does)', () => {
      it('retries only the subscribers that failed; those that succeeded do not run again [C32 C33 C34]', async () => {
        const { service } = start()
        const calls: Record<string, number> = { s1: 0, s2: 0, s3: 0, s4: 0 }
        for (const id of Object.keys(calls)) {
          const fails = id === 's2' || id === 's4'
          service.subscribe(
            'payment.captured',
            async () => {
              calls[id]!++
              if (fails && calls[id] === 1) throw new Error(`${id} failed`)
            },
            { subscriberId: id },
          )
        }
        await service.emit(message('payment.captured', { id: 'pay_1' }))
        await waitFor(() => calls.s2 === 2 && calls.s4 === 2, 10_000, 'the failed subscribers to be retried')
        expect(calls).toEqual({ s1: 1, s2: 2, s3: 1, s4: 2 })
      })

      it('retries a failing subscriber per the module policy and then keeps it as a dead letter with its error', async () => {
        const { service, logs } = start({ retry: { retries: 2, initialBackoffDelay: 10, timeout: 5000 } })
        let attempts = 0
        service.subscribe(
          'fulfillment.created',
          async () => {
            attempts++
            throw new Error('carrier down')
          },
          { subscriberId: 'ship' },
        )
        await service.emit(message('fulfillment.created', { id: 'ful_1' }))
        await waitFor(
          async () => (await service.bus.deadLetters.list()).length === 1,
          10_000,
          'a dead letter',
        )
        expect(attempts).toBe(3)
        const [dead] = await service.bus.deadLetters.list()
        expect(dead).toMatchObject({ subscriptionId: 'medusa:fulfillment.created:ship', attempts: 3 })
        expect(dead!.lastError).toContain('carrier down')
        expect(dead!.event.data).toEqual({ id: 'ful_1' })
        expect(logs.error.some((line) => line.includes('dead letter'))).toBe(true)
      })

      it("takes a subscriber's own retry policy from its context over the module's", async () => {
        const { service } = start({ retry: { retries: 0 } })
        let attempts = 0
        service.subscribe(
          'customer.created',
          async () => {
            if (++attempts < 3) throw new Error('not yet')
          },
          { subscriberId: 'crm', retry: { retries: 4, initialBackoffDelay: 10 } },
        )
        await service.emit(message('customer.created', { id: 'cus_1' }))
        await waitFor(() => attempts === 3, 10_000, 'three attempts')
        expect(await service.bus.deadLetters.list()).toEqual([])
      })

      it('times out a subscriber that hangs, retries it, and keeps delivering later events meanwhile', async () => {
        const { service } = start({ retry: { retries: 2, timeout: 150, initialBackoffDelay: 10 } })
        const seen: number[] = []
        let hung = false
        service.subscribe(
          'sync.run',
          async (event: MedusaEvent) => {
            const n = (event.data as { n: number }).n
            if (n === 1 && !hung) {
              hung = true
              await new Promise(() => {}) // never settles, like the stuck handlers of medusa#14357
            }
            seen.push(n)
          },
          { subscriberId: 'sync' },
        )
        await service.emit(message('sync.run', { n: 1 }))
        await service.emit(message('sync.run', { n: 2 }))
        await waitFor(
          () => seen.includes(1) && seen.includes(2),
          10_000,
          'both events, the first after its timeout',
        )
      })

      it('keeps running the other subscribers when one throws synchronously', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('region.updated', (() => {
          throw new Error('sync throw')
        }) as never)
        service.subscribe('region.updated', got.subscriber)
        await service.emit(message('region.updated', { id: 'reg_1' }))
        await waitForCount(got.events, 1, 'the healthy subscriber')
      })
    })

    describe('grouped events', () => {
      it('holds grouped events until their group is released while ungrouped ones are delivered [A4 A5 C7 C8 B2]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('test', got.subscriber)
        await service.emit([
          grouped('test', { n: 1 }, 'group-1'),
          message('test', { n: 0 }),
          grouped('test', { n: 2 }, 'group-1'),
        ])
        await waitForCount(got.events, 1, 'the ungrouped delivery')
        await sleep(50) // let anything wrongly delivered arrive
        expect(got.events.map((e) => e.data)).toEqual([{ n: 0 }])
        await service.releaseGroupedEvents('group-1')
        await waitForCount(got.events, 3, 'the released deliveries')
        expect(got.events.map((e) => e.data)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }])
      })

      it('releases only the named group, in emit order, with eventGroupId and both timestamps [A5 C8 C23 B2 E2]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('*', got.subscriber, { subscriberId: 'all' })
        await service.emit([
          grouped('a.one', 1, 'g1'),
          grouped('a.two', 2, 'g2'),
          grouped('a.three', 3, 'g1'),
          message('a.four', 4),
        ])
        await service.emit(grouped('a.five', 5, 'g2'))
        await service.releaseGroupedEvents('g1')
        await waitForCount(got.events, 3, 'the ungrouped and g1 deliveries')
        await sleep(50)
        expect(got.names()).toEqual(['a.four', 'a.one', 'a.three'])
        for (const event of got.events.slice(1)) {
          expect(event.metadata).toMatchObject({ eventGroupId: 'g1' })
          expect(event.metadata!.created_at).toBeInstanceOf(Date)
          expect(event.metadata!.published_at).toBeInstanceOf(Date)
        }
        await service.releaseGroupedEvents('g2')
        await waitForCount(got.events, 5, 'the g2 deliveries')
        expect(got.names().slice(3)).toEqual(['a.two', 'a.five'])
      })

      it('stamps created_at at emit and published_at at release for grouped events [A6]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('order.placed', got.subscriber, { subscriberId: 'timing' })
        const beforeEmit = Date.now()
        await service.emit(grouped('order.placed', {}, 'late'))
        const afterEmit = Date.now()
        await sleep(200)
        const beforeRelease = Date.now()
        await service.releaseGroupedEvents('late')
        await waitForCount(got.events, 1, 'the released delivery')
        const { created_at: created, published_at: published } = got.events[0]!.metadata! as {
          created_at: Date
          published_at: Date
        }
        expect(created.getTime()).toBeGreaterThanOrEqual(beforeEmit)
        expect(created.getTime()).toBeLessThanOrEqual(afterEmit)
        expect(published.getTime()).toBeGreaterThanOrEqual(beforeRelease)
      })

      it('clears one group and leaves the others [A7 B3 E3]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('test', got.subscriber)
        await service.emit([grouped('test', 'one', 'g1'), grouped('test', 'two', 'g2')])
        await service.clearGroupedEvents('g1')
        await service.releaseGroupedEvents('g1')
        await service.releaseGroupedEvents('g2')
        await waitForCount(got.events, 1, 'the g2 delivery')
        await sleep(50)
        expect(got.events.map((e) => e.data)).toEqual(['two'])
      })

      it('clears only the named events of a group; the rest are still released [B4 E5 D3]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('*', got.subscriber)
        await service.emit([grouped('test', 1, 'g'), grouped('keep', 2, 'g'), grouped('test', 3, 'g')])
        await service.clearGroupedEvents('g', { eventNames: ['test'] })
        await service.releaseGroupedEvents('g')
        await waitForCount(got.events, 1, 'the kept delivery')
        await sleep(50)
        expect(got.names()).toEqual(['keep'])
      })

      it('leaves nothing to release once every event of a group was cleared by name [D2]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('*', got.subscriber)
        await service.emit([grouped('test', 1, 'g'), grouped('test', 2, 'g')])
        await service.clearGroupedEvents('g', { eventNames: ['test'] })
        await service.releaseGroupedEvents('g')
        await service.emit(message('marker', 0))
        await waitForCount(got.events, 1, 'the marker')
        expect(got.names()).toEqual(['marker'])
      })

      it('forgets a group once released: releasing it again delivers nothing more [A5 A11 C29]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('test', got.subscriber)
        await service.emit(grouped('test', 1, 'once'))
        await service.releaseGroupedEvents('once')
        await service.releaseGroupedEvents('once')
        await service.emit(message('test', 'marker'))
        await waitForCount(got.events, 2, 'the release and the marker')
        await sleep(50)
        expect(got.events.map((e) => e.data)).toEqual([1, 'marker'])
      })

      it('drops grouped events that are not released within groupedEventsTTL seconds [D1 E4]', async () => {
        const { service } = start({ groupedEventsTTL: 0.2 })
        const got = collector()
        service.subscribe('test', got.subscriber)
        await service.emit(grouped('test', 'expired', 'slow'))
        await sleep(400) // past the group's deadline: expiry is a fixed point in time, not a race
        await service.releaseGroupedEvents('slow')
        await service.emit(message('test', 'marker'))
        await waitForCount(got.events, 1, 'the marker')
        await sleep(50)
        expect(got.events.map((e) => e.data)).toEqual(['marker'])
      })

      it('treats a null or empty eventGroupId as no group, as Medusa does', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('test', got.subscriber)
        await service.emit([
          message('test', 1, { metadata: { eventGroupId: null as never } }),
          message('test', 2, { metadata: { eventGroupId: '' } }),
        ])
        await waitForCount(got.events, 2, 'both deliveries without a release')
        expect(got.events.map((e) => 'eventGroupId' in e.metadata!)).toEqual([false, false])
      })

      it('delivers a released event to a subscriber that subscribed after the emit [local module behaviour]', async () => {
        const { service } = start()
        await service.emit(grouped('order.placed', { id: 'o1' }, 'checkout'))
        const got = collector()
        service.subscribe('order.placed', got.subscriber, { subscriberId: 'late-comer' })
        await service.releaseGroupedEvents('checkout')
        await waitForCount(got.events, 1, 'the released delivery')
      })

      it('releases atomically: events emitted into a group while it is being released are each delivered exactly once', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('cart.line', got.subscriber, { subscriberId: 'lines' })
        const total = 200
        const emits = Array.from({ length: total }, (_, n) =>
          service.emit(grouped('cart.line', { n }, 'busy')),
        )
        const releases = Array.from({ length: 20 }, () => service.releaseGroupedEvents('busy'))
        await Promise.all([...emits, ...releases])
        await service.releaseGroupedEvents('busy') // whatever was staged after the last concurrent release
        await waitForCount(got.events, total, 'every line', 20_000)
        await sleep(50)
        const seen = got.events.map((e) => (e.data as { n: number }).n).sort((a, b) => a - b)
        expect(seen).toEqual(Array.from({ length: total }, (_, n) => n))
      })
    })

    describe('events nobody listens to (Medusa drops them)', () => {
      it('keeps an event emitted with no subscribers in the store [A8 C26]', async () => {
        const { service } = start()
        await service.emit(message('nobody.listens', { id: 1 }))
        expect((await storedEvents(service)).map((e) => [e.topic, e.data])).toEqual([
          ['nobody.listens', { id: 1 }],
        ])
      })

      it('calls interceptors for an event without subscribers, with isGrouped false [A9 C27]', async () => {
        const { service } = start()
        const seen: unknown[] = []
        service.addInterceptor((msg, context) => void seen.push({ name: msg.name, data: msg.data, context }))
        await service.emit(message('nobody.listens', { id: 1 }))
        expect(seen).toEqual([{ name: 'nobody.listens', data: { id: 1 }, context: { isGrouped: false } }])
      })

      it('delivers every event to a "*" subscriber under its real name [A10 C28]', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('*', got.subscriber)
        await service.emit([message('anyEvent', 1), message('other.event', 2)])
        await waitForCount(got.events, 2, 'wildcard deliveries')
        expect(got.names()).toEqual(['anyEvent', 'other.event'])
      })

      it('calls interceptors for grouped events at release, with isGrouped and eventGroupId, without subscribers [A12 C30]', async () => {
        const { service } = start()
        const seen: { name: string; context: unknown; created: unknown }[] = []
        service.addInterceptor(
          (msg, context) => void seen.push({ name: msg.name, context, created: msg.metadata?.created_at }),
        )
        await service.emit(grouped('order.placed', { id: 1 }, 'g-int'))
        expect(seen).toEqual([])
        await service.releaseGroupedEvents('g-int')
        expect(seen).toEqual([
          {
            name: 'order.placed',
            context: { isGrouped: true, eventGroupId: 'g-int' },
            created: expect.any(Date),
          },
        ])
      })

      it('never awaits interceptors, logs their errors, and stops calling one once removed', async () => {
        const { service, logs } = start()
        const never = gate()
        let calls = 0
        const slow = async (): Promise<void> => {
          calls++
          await never.promise
        }
        const failing = (): void => {
          throw new Error('interceptor broke')
        }
        const rejecting = async (): Promise<void> => {
          throw new Error('interceptor rejected')
        }
        service.addInterceptor(slow).addInterceptor(failing).addInterceptor(rejecting)
        await service.emit(message('watched', 1))
        expect(calls).toBe(1)
        await waitFor(() => logs.error.length === 2, 5000, 'both interceptor errors logged')
        expect(logs.error.join('\n')).toContain('interceptor broke')
        expect(logs.error.join('\n')).toContain('interceptor rejected')
        service.removeInterceptor(slow).removeInterceptor(failing).removeInterceptor(rejecting)
        await service.emit(message('watched', 2))
        expect(calls).toBe(1)
        never.open()
      })
    })

    describe('subscribe and unsubscribe', () => {
      it('returns the service from subscribe and refuses a subscriber that is not a function', () => {
        const { service } = start()
        expect(service.subscribe('a', async () => {})).toBe(service)
        expect(() => service.subscribe('a', 'nope' as never)).toThrow('Subscriber must be a function')
      })

      it('refuses a second subscriber with the same id on one event, and allows the id on another event', () => {
        const { service } = start()
        service.subscribe('order.placed', async () => {}, { subscriberId: 'notify' })
        expect(() => service.subscribe('order.placed', async () => {}, { subscriberId: 'notify' })).toThrow(
          'Subscriber with id notify already exists',
        )
        expect(() =>
          service.subscribe('order.canceled', async () => {}, { subscriberId: 'notify' }),
        ).not.toThrow()
      })

      it('stops deliveries after unsubscribe, by function or by subscriberId', async () => {
        const { service } = start()
        const byFunction = collector()
        const byId = collector()
        const stays = collector()
        service.subscribe('test', byFunction.subscriber)
        service.subscribe('test', byId.subscriber, { subscriberId: 'by-id' })
        service.subscribe('test', stays.subscriber, { subscriberId: 'stays' })
        await service.emit(message('test', 1))
        await waitFor(
          () => byFunction.events.length + byId.events.length + stays.events.length === 3,
          5000,
          'three deliveries',
        )
        service.unsubscribe('test', byFunction.subscriber)
        service.unsubscribe('test', byId.subscriber, { subscriberId: 'by-id' })
        await service.emit(message('test', 2))
        await waitForCount(stays.events, 2, 'the remaining subscriber')
        await sleep(50)
        expect(byFunction.events).toHaveLength(1)
        expect(byId.events).toHaveLength(1)
        expect((await service.bus.subscriptions()).map((s) => s.id)).toEqual(['medusa:test:stays'])
      })

      it('delivers only the exact event name a subscriber asked for', async () => {
        const { service } = start()
        const got = collector()
        service.subscribe('order', got.subscriber, { subscriberId: 'exact' })
        await service.emit([
          message('order.placed', 1),
          message('order/child', 2),
          message('orders', 3),
          message('order', 4),
        ])
        await waitForCount(got.events, 1, 'the exact match')
        await sleep(50)
        expect(got.events.map((e) => e.data)).toEqual([4])
      })

      it('refuses event names Herald cannot store: symbols, and "*" inside a name', () => {
        const { service } = start()
        expect(() => service.subscribe(Symbol('evt'), async () => {})).toThrow(/strings/)
        expect(() => service.subscribe('order.*', async () => {})).toThrow(/'\*'/)
      })
    })

    describe('durability (Medusa loses these events)', () => {
      it('delivers an event emitted while a durable subscriber was down once it subscribes again', async () => {
        const first = start()
        const before = collector()
        first.service.subscribe('order.placed', before.subscriber, { subscriberId: 'send-confirmation' })
        await first.service.emit(message('order.placed', { n: 0 }))
        await waitForCount(before.events, 1, 'the delivery before the shutdown')
        await services.shutdown(first.service)

        const emitter = start()
        await emitter.service.emit(message('order.placed', { n: 1 }))

        const restarted = start()
        const got = collector()
        restarted.service.subscribe('order.placed', got.subscriber, { subscriberId: 'send-confirmation' })
        await waitForCount(got.events, 1, 'the event emitted during the downtime')
        expect(got.events.map((e) => e.data)).toEqual([{ n: 1 }])
      })

      it('shares a durable subscriber between worker instances: each event is handled by one of them, once', async () => {
        const handled: number[] = []
        const workers = [start({}, 'worker'), start({}, 'worker')]
        workers.forEach(({ service }) =>
          service.subscribe(
            'order.placed',
            async (event: MedusaEvent) => {
              const n = (event.data as { n: number }).n
              handled.push(n)
            },
            { subscriberId: 'fulfil' },
          ),
        )
        const total = 60
        for (let n = 0; n < total; n += 10) {
          await workers[(n / 10) % 2]!.service.emit(
            Array.from({ length: 10 }, (_, i) => message('order.placed', { n: n + i })),
          )
        }
        await waitForCount(handled, total, 'deliveries across both workers', 20_000)
        await sleep(100)
        expect([...handled].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, n) => n))
      })

      it('leaves no durable subscription for subscribers without an id across restarts, and one for a subscriber with an id', async () => {
        for (let run = 0; run < 3; run++) {
          const { service } = start()
          service.subscribe('order.placed', async () => {})
          service.subscribe('order.placed', async () => {}, { subscriberId: 'stable' })
          service.subscribe('order.placed', async () => {}, { subscriberId: 'kept-live', durable: false })
          await service.emit(message('order.placed', { run }))
          await services.shutdown(service)
        }
        const { service } = start()
        expect((await service.bus.subscriptions()).map((s) => s.id)).toEqual(['medusa:order.placed:stable'])
      })

      it('stores delayed events at shutdown instead of dropping them', async () => {
        const first = start()
        await first.service.emit(message('reminder.due', { id: 'r1' }), { delay: 60_000 })
        await services.shutdown(first.service)
        const { service } = start()
        expect((await storedEvents(service)).map((e) => e.data)).toEqual([{ id: 'r1' }])
      })

      it('waits at shutdown for deliveries in flight, and refuses emits afterwards', async () => {
        const { service } = start()
        let finished = false
        const started = gate()
        service.subscribe(
          'long.job',
          async () => {
            started.open()
            await sleep(200)
            finished = true
          },
          { subscriberId: 'long' },
        )
        await service.emit(message('long.job', {}))
        await started.promise
        await services.shutdown(service)
        expect(finished).toBe(true)
        await expect(service.emit(message('long.job', {}))).rejects.toThrow(/shut down|closed/)
      })

      if (target.shared) {
        it('runs no subscribers on a server instance; the events wait in the store for a worker [medusa#13732]', async () => {
          const server = start({}, 'server')
          const onServer = collector()
          server.service.subscribe('order.placed', onServer.subscriber, { subscriberId: 'fulfil' })
          await server.service.emit(message('order.placed', { id: 'o1' }))

          const worker = start({}, 'worker')
          const onWorker = collector()
          worker.service.subscribe('order.placed', onWorker.subscriber, { subscriberId: 'fulfil' })
          await waitForCount(onWorker.events, 1, 'the worker delivery')
          expect(onWorker.events[0]!.data).toEqual({ id: 'o1' })
          expect(onServer.events).toHaveLength(0)
        })
      } else {
        it('runs subscribers in server mode too, since nothing else can reach a memory store', async () => {
          const { service } = start({}, 'server')
          const got = collector()
          service.subscribe('order.placed', got.subscriber, { subscriberId: 'fulfil' })
          await service.emit(message('order.placed', { id: 'o1' }))
          await waitForCount(got.events, 1, 'the delivery')
        })
      }
    })
  })
}
