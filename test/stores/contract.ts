/**
 * The one contract suite every Store passes. A store's own test file calls
 * `describeStoreContract` with a factory; the suite shares one store instance and gives each
 * test its own tenant, so it also exercises tenant isolation. Times are passed explicitly, so
 * expiry is tested without waiting.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createBus,
  isHeraldError,
  silentLogger,
  type HeraldEvent,
  type Store,
  type Tenant,
} from '../../src/index.js'
import { freshTenant, prepared, recorder, sleep, waitFor } from '../helpers.js'

export interface StoreFactory {
  /** A new store; the suite creates one for most tests and a few more for close/sharing checks. */
  create(): Promise<Store> | Store
  /** Removes what `create` made (files, key prefixes) after the store is closed. */
  destroy?(): Promise<void> | void
}

const DAY = 24 * 60 * 60 * 1000
const OPTS = { dedupeWindowMs: 60_000, groupTtlMs: 60_000 }
const all = (): boolean => true

export function describeStoreContract(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store
    let tenant: Tenant
    let now: number

    beforeAll(async () => {
      store = await factory.create()
    })
    afterAll(async () => {
      await store.close()
      await factory.destroy?.()
    })

    const fresh = (): Tenant => (tenant = freshTenant(name.replace(/\W/g, '')))
    const append = async (
      topics: string[],
      extra: Partial<{ id: string; groupId: string; sender: string }> = {},
    ) => {
      const inputs = prepared(
        tenant,
        topics.map((topic) => ({
          topic,
          data: { topic },
          ...(extra.id ? { id: extra.id } : {}),
          ...(extra.sender ? { sender: extra.sender } : {}),
          ...(extra.groupId ? { metadata: { eventGroupId: extra.groupId } } : {}),
        })),
        now,
      )
      return store.append(tenant, inputs, { now, ...OPTS })
    }
    const open = (id: string, patterns = ['*']) => store.openSubscription({ tenant, id, patterns }, now)
    const claim = (
      id: string,
      consumer = 'c1',
      limit = 100,
      match: (e: HeraldEvent) => boolean = all,
      leaseMs = 30_000,
    ) => store.claim(tenant, id, { consumer, limit, leaseMs, now, match })

    describe('the log', () => {
      it('gives appended events increasing seqs and returns them in input order', async () => {
        fresh()
        now = Date.now()
        const first = await append(['a', 'b', 'c'])
        const second = await append(['d'])
        const events = [...first.appended, ...second.appended]
        expect(events.map((e) => e.topic)).toEqual(['a', 'b', 'c', 'd'])
        for (let i = 1; i < events.length; i++) expect(events[i]!.seq! > events[i - 1]!.seq!).toBe(true)
        expect(first.staged).toBe(0)
        expect(first.duplicates).toEqual([])
      })

      it('keeps every field of the envelope, and JSON data exactly', async () => {
        fresh()
        now = Date.now()
        const data = {
          text: 'héllo ✓ "quoted"\n',
          n: -1.5e-7,
          big: 2 ** 53 - 1,
          list: [1, null, { deep: [true, false] }],
          empty: {},
        }
        const batch = prepared(
          tenant,
          [
            {
              topic: 'orders/created',
              data,
              metadata: { source: 'test', nested: { a: 1 } },
              type: 'audit',
              sender: 'acme.app@1.0.0',
              time: '2020-01-02T03:04:05.678Z',
            },
          ],
          now,
        )
        const [event] = batch.events
        await store.append(tenant, batch, { now, ...OPTS })
        const stored = await store.getEvent(tenant, event!.id)
        expect(stored).toMatchObject({
          id: event!.id,
          topic: 'orders/created',
          data,
          metadata: { source: 'test', nested: { a: 1 } },
          type: 'audit',
          sender: 'acme.app@1.0.0',
          time: '2020-01-02T03:04:05.678Z',
          account: tenant.account,
          workspace: tenant.workspace,
        })
        expect(typeof stored!.seq).toBe('string')
        const [read] = await store.read(tenant, { limit: 10 })
        expect(read).toEqual(stored)
      })

      it('reads after a seq, with a limit, and reports the head', async () => {
        fresh()
        now = Date.now()
        expect(await store.head(tenant)).toBeUndefined()
        expect(await store.read(tenant, { limit: 10 })).toEqual([])
        const { appended } = await append(['e1', 'e2', 'e3', 'e4', 'e5'])
        expect((await store.read(tenant, { limit: 2 })).map((e) => e.topic)).toEqual(['e1', 'e2'])
        expect(
          (await store.read(tenant, { after: appended[1]!.seq, limit: 10 })).map((e) => e.topic),
        ).toEqual(['e3', 'e4', 'e5'])
        expect(await store.read(tenant, { after: appended[4]!.seq, limit: 10 })).toEqual([])
        expect(await store.head(tenant)).toBe(appended[4]!.seq)
      })

      it('says how far it has handed out seqs (issuedUpTo, where it has it): never below the head', async () => {
        fresh()
        now = Date.now()
        const { appended } = await append(['i1', 'i2'])
        const bound = store.issuedUpTo ? await store.issuedUpTo(tenant) : await store.head(tenant)
        // Every position the store gave out lies at or below it: the streams' `since` check.
        expect(bound).toBeDefined()
        expect(bound! >= appended[1]!.seq!).toBe(true)
      })

      it('finds an event by id, and not in another tenant', async () => {
        fresh()
        now = Date.now()
        const { appended } = await append(['x'])
        const other = freshTenant()
        expect((await store.getEvent(tenant, appended[0]!.id))?.topic).toBe('x')
        expect(await store.getEvent(other, appended[0]!.id)).toBeUndefined()
        expect(await store.getEvent(tenant, 'no-such-id')).toBeUndefined()
      })

      it('keeps tenants apart: reads, heads and subscriptions see only their own tenant', async () => {
        const a = fresh()
        now = Date.now()
        await append(['shared/topic'])
        await open('sub-a')
        const b = fresh()
        await append(['shared/topic', 'other'])
        expect((await store.read(a, { limit: 10 })).map((e) => e.account)).toEqual([a.account])
        expect((await store.read(b, { limit: 10 })).map((e) => e.account)).toEqual([b.account, b.account])
        expect((await store.listSubscriptions(b)).map((s) => s.id)).toEqual([])
        expect((await store.listSubscriptions(a)).map((s) => s.id)).toEqual(['sub-a'])
        tenant = a
        const claimed = await claim('sub-a')
        expect(claimed.deliveries).toEqual([])
      })

      it('skips a publisher-supplied id seen within the dedupe window, per tenant', async () => {
        fresh()
        now = Date.now()
        const first = await append(['once'], { id: 'order-42' })
        expect(first.appended).toHaveLength(1)
        const again = await append(['once'], { id: 'order-42' })
        expect(again.appended).toEqual([])
        expect(again.duplicates).toEqual(['order-42'])
        const later = now
        now = later + OPTS.dedupeWindowMs + 1
        const afterWindow = await append(['once'], { id: 'order-42' })
        expect(afterWindow.appended).toHaveLength(1)
        const other = tenant
        fresh()
        const elsewhere = await append(['once'], { id: 'order-42' })
        expect(elsewhere.appended).toHaveLength(1)
        expect((await store.read(other, { limit: 10 })).length).toBe(2)
      })

      it('refuses a publisher id used again within its window for another topic, storing nothing of that emit', async () => {
        fresh()
        now = Date.now()
        const input = (...events: { id: string; topic: string; group?: string }[]) =>
          prepared(
            tenant,
            events.map(({ id, topic, group }) => ({
              id,
              topic,
              data: id,
              ...(group ? { metadata: { eventGroupId: group } } : {}),
            })),
            now,
          )
        const codeOf = (promise: Promise<unknown>) =>
          promise.then(
            () => 'stored',
            (error: unknown) => (isHeraldError(error) ? error.code : String(error)),
          )
        await store.append(tenant, input({ id: 'payment-42', topic: 'orders' }), { now, ...OPTS })
        await store.append(tenant, input({ id: 'staged-1', topic: 'orders', group: 'tx' }), { now, ...OPTS })
        // Another topic under a taken id: the whole emit is refused, its other events with it.
        for (const attempt of [
          input({ id: 'fresh-1', topic: 'payments' }, { id: 'payment-42', topic: 'payments' }),
          input({ id: 'staged-1', topic: 'payments' }),
          input({ id: 'twice', topic: 'a' }, { id: 'twice', topic: 'b' }),
        ])
          expect(await codeOf(store.append(tenant, attempt, { now, ...OPTS }))).toBe('id_conflict')
        expect((await store.read(tenant, { limit: 10 })).map((e) => e.id)).toEqual(['payment-42'])
        // Nothing of a refused emit was remembered, and the same topic is still a plain repeat.
        expect(
          await store.append(tenant, input({ id: 'fresh-1', topic: 'payments' }), { now, ...OPTS }),
        ).toMatchObject({
          duplicates: [],
        })
        expect(
          await store.append(tenant, input({ id: 'payment-42', topic: 'orders' }), { now, ...OPTS }),
        ).toMatchObject({
          duplicates: ['payment-42'],
        })
        // Once the window has passed, the id is free for any topic.
        now += OPTS.dedupeWindowMs + 1
        expect(
          await store.append(tenant, input({ id: 'payment-42', topic: 'payments' }), { now, ...OPTS }),
        ).toMatchObject({
          appended: [{ id: 'payment-42', topic: 'payments' }],
        })
      })

      it('calls watchers with appended events in order, until they stop watching', async () => {
        fresh()
        now = Date.now()
        const seen: string[] = []
        const stop = store.watch((events) => {
          for (const event of events) if (event.account === tenant.account) seen.push(event.topic)
        })
        await append(['w1', 'w2'])
        await append(['w3'])
        await waitFor(() => seen.length === 3, 5000, 'watched events')
        expect(seen).toEqual(['w1', 'w2', 'w3'])
        stop()
        await append(['w4'])
        await sleep(50)
        expect(seen).toEqual(['w1', 'w2', 'w3'])
      })

      it('tells a watcher of every append: with its events, or, in a tenant it does not need, maybe only that', async () => {
        fresh()
        now = Date.now()
        const key = `${tenant.account}/${tenant.workspace}`
        const seen: string[] = []
        let notices = 0
        const stop = store.watch(
          (events) => {
            for (const event of events) if (event.account === tenant.account) seen.push(event.topic)
          },
          { needs: (t) => t !== key, appended: (t) => void (t === key && notices++) },
        )
        await append(['n1', 'n2'])
        await append(['n3'])
        // A store hands over events it has in hand anyway; it may only skip those it would read back.
        const told = (): number => (seen.includes('n1') ? 1 : 0) + (seen.includes('n3') ? 1 : 0) + notices
        await waitFor(() => told() === 2, 5000, 'both appends')
        expect(seen.includes('n2')).toBe(seen.includes('n1')) // an append's events come whole
        stop()
      })
    })

    describe('staged groups', () => {
      it('keeps staged events out of the log until released, then appends them in emit order', async () => {
        fresh()
        now = Date.now()
        const staged = await append(['g1', 'g2'], { groupId: 'grp' })
        expect(staged).toMatchObject({ appended: [], staged: 2 })
        await append(['plain'])
        await append(['g3'], { groupId: 'grp' })
        expect((await store.read(tenant, { limit: 10 })).map((e) => e.topic)).toEqual(['plain'])
        const released = await store.releaseGroup(tenant, 'grp', now)
        expect(released.map((e) => e.topic)).toEqual(['g1', 'g2', 'g3'])
        expect(released.every((e) => typeof e.seq === 'string')).toBe(true)
        expect((await store.read(tenant, { limit: 10 })).map((e) => e.topic)).toEqual([
          'plain',
          'g1',
          'g2',
          'g3',
        ])
        expect(await store.releaseGroup(tenant, 'grp', now)).toEqual([])
      })

      it('releases nothing for an unknown group or another tenant’s group', async () => {
        fresh()
        now = Date.now()
        await append(['g'], { groupId: 'mine' })
        const owner = tenant
        fresh()
        expect(await store.releaseGroup(tenant, 'mine', now)).toEqual([])
        expect(await store.releaseGroup(tenant, 'never', now)).toEqual([])
        expect((await store.releaseGroup(owner, 'mine', now)).map((e) => e.topic)).toEqual(['g'])
      })

      it('clears a whole group, or only the named topics', async () => {
        fresh()
        now = Date.now()
        await append(['keep', 'drop', 'drop'], { groupId: 'g' })
        expect(await store.clearGroup(tenant, 'g', ['drop'])).toBe(2)
        expect((await store.releaseGroup(tenant, 'g', now)).map((e) => e.topic)).toEqual(['keep'])
        await append(['a', 'b'], { groupId: 'h' })
        expect(await store.clearGroup(tenant, 'h')).toBe(2)
        expect(await store.releaseGroup(tenant, 'h', now)).toEqual([])
        expect(await store.clearGroup(tenant, 'nothing')).toBe(0)
      })

      it('forgets the publisher ids of events dropped with their group, so they can be published again', async () => {
        fresh()
        now = Date.now()
        await append(['t'], { id: 'cleared-1', groupId: 'g' })
        await store.clearGroup(tenant, 'g')
        expect(await append(['t'], { id: 'cleared-1' })).toMatchObject({ duplicates: [], staged: 0 })
        expect((await store.read(tenant, { limit: 10 })).map((e) => e.id)).toEqual(['cleared-1'])

        // Only the topics cleared: the event still staged keeps its id.
        await append(['a'], { id: 'dropped-a', groupId: 'h' })
        await append(['b'], { id: 'kept-b', groupId: 'h' })
        await store.clearGroup(tenant, 'h', ['a'])
        expect((await append(['a'], { id: 'dropped-a' })).duplicates).toEqual([])
        expect((await append(['b'], { id: 'kept-b' })).duplicates).toEqual(['kept-b'])

        // Expired: staged again into the same group once its TTL passed, and released.
        const short = { dedupeWindowMs: 60_000, groupTtlMs: 10 }
        const input = () =>
          prepared(tenant, [{ id: 'expired-1', topic: 'e', data: 1, metadata: { eventGroupId: 'k' } }], now)
        expect(await store.append(tenant, input(), { now, ...short })).toMatchObject({ staged: 1 })
        now += 20
        expect(await store.append(tenant, input(), { now, ...short })).toMatchObject({
          staged: 1,
          duplicates: [],
        })
        expect((await store.releaseGroup(tenant, 'k', now)).map((e) => e.id)).toEqual(['expired-1'])
      })

      it('takes the publisher ids of a group whose TTL passed again at once, in another group or none', async () => {
        fresh()
        now = Date.now()
        const short = { dedupeWindowMs: 60_000, groupTtlMs: 10 }
        const staged = (id: string, group?: string) =>
          prepared(
            tenant,
            [{ id, topic: 'retry', data: id, ...(group ? { metadata: { eventGroupId: group } } : {}) }],
            now,
          )
        // A transaction that died without clearing its group; its retry publishes the same ids.
        await store.append(tenant, staged('grouped-1', 'first'), { now, ...short })
        await store.append(tenant, staged('grouped-2', 'first'), { now, ...short })
        now += 20
        expect(await store.append(tenant, staged('grouped-1', 'second'), { now, ...short })).toMatchObject({
          staged: 1,
          duplicates: [],
        })
        expect(await store.append(tenant, staged('grouped-2'), { now, ...short })).toMatchObject({
          appended: [{ id: 'grouped-2' }],
          duplicates: [],
        })
        expect((await store.releaseGroup(tenant, 'second', now)).map((e) => e.id)).toEqual(['grouped-1'])
        expect((await store.read(tenant, { limit: 10 })).map((e) => e.id)).toEqual(['grouped-2', 'grouped-1'])
      })

      it('drops a group whose TTL passed', async () => {
        fresh()
        now = Date.now()
        await append(['late'], { groupId: 'old' })
        expect(await store.releaseGroup(tenant, 'old', now + OPTS.groupTtlMs + 1)).toEqual([])
        expect(await store.read(tenant, { limit: 10 })).toEqual([])
      })
    })

    describe('durable subscriptions', () => {
      it('starts at the head: owes only events appended after it was created', async () => {
        fresh()
        now = Date.now()
        await append(['before'])
        const record = await open('s')
        expect(record).toMatchObject({
          id: 's',
          patterns: ['*'],
          account: tenant.account,
          workspace: tenant.workspace,
        })
        await append(['after'])
        const { deliveries } = await claim('s')
        expect(deliveries.map((d) => [d.event.topic, d.attempt])).toEqual([['after', 0]])
      })

      it('reopening keeps the cursor and takes the new patterns', async () => {
        fresh()
        now = Date.now()
        await open('s', ['a'])
        await append(['a', 'b'])
        expect((await claim('s', 'c1', 1)).deliveries.map((d) => d.event.topic)).toEqual(['a'])
        const reopened = await store.openSubscription(
          { tenant, id: 's', patterns: ['b'], sender: 'x.app' },
          now,
        )
        expect(reopened).toMatchObject({ patterns: ['b'], sender: 'x.app' })
        expect((await store.listSubscriptions(tenant)).map((s) => s.patterns)).toEqual([['b']])
        expect((await claim('s')).deliveries.map((d) => d.event.topic)).toEqual(['b'])
      })

      it('keeps meta with the subscription, and lists every tenant’s subscriptions when no tenant is given', async () => {
        const first = fresh()
        now = Date.now()
        const meta = {
          kind: 'webhook',
          url: 'http://127.0.0.1:5050',
          retry: { retries: 3 },
          tags: ['a', 'ü'],
        }
        expect(
          await store.openSubscription({ tenant, id: 'hook', patterns: ['orders'], meta }, now),
        ).toMatchObject({ meta })
        const second = fresh()
        await open('other')
        const everything = await store.listSubscriptions()
        const mine = everything.filter((s) => s.account === first.account || s.account === second.account)
        const expected = [
          [first.account, 'hook', meta],
          [second.account, 'other', undefined],
        ].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1))
        expect(mine.map((s) => [s.account, s.id, s.meta])).toEqual(expected)
        tenant = first
        await store.openSubscription(
          { tenant, id: 'hook', patterns: ['orders'], meta: { kind: 'webhook', url: 'http://elsewhere' } },
          now,
        )
        expect((await store.listSubscriptions(first))[0]!.meta).toEqual({
          kind: 'webhook',
          url: 'http://elsewhere',
        })
      })

      it('claims matching events in log order, up to the limit, moving past the rest', async () => {
        fresh()
        now = Date.now()
        await open('s')
        await append(['keep/1', 'skip', 'keep/2', 'keep/3', 'skip'])
        const match = (e: HeraldEvent) => e.topic.startsWith('keep')
        const first = await claim('s', 'c1', 2, match)
        expect(first.deliveries.map((d) => d.event.topic)).toEqual(['keep/1', 'keep/2'])
        expect(first.more).toBe(true)
        const second = await claim('s', 'c1', 10, match)
        expect(second.deliveries.map((d) => d.event.topic)).toEqual(['keep/3'])
        expect((await claim('s', 'c1', 10, match)).deliveries).toEqual([])
      })

      it('respects scanLimit and says there is more', async () => {
        fresh()
        now = Date.now()
        await open('s')
        await append(Array.from({ length: 10 }, (_, i) => `n/${i}`))
        const result = await store.claim(tenant, 's', {
          consumer: 'c',
          limit: 100,
          leaseMs: 1000,
          now,
          match: () => false,
          scanLimit: 4,
        })
        expect(result.deliveries).toEqual([])
        expect(result.more).toBe(true)
        const rest = await store.claim(tenant, 's', {
          consumer: 'c',
          limit: 100,
          leaseMs: 1000,
          now,
          match: all,
        })
        expect(rest.deliveries.map((d) => d.event.topic)).toEqual(['n/4', 'n/5', 'n/6', 'n/7', 'n/8', 'n/9'])
      })

      it('never leases one delivery to two concurrent claims', async () => {
        fresh()
        now = Date.now()
        await open('s')
        await append(Array.from({ length: 40 }, (_, i) => `e/${i}`))
        const results = await Promise.all(
          ['c1', 'c2', 'c3', 'c4'].map((consumer) => claim('s', consumer, 15)),
        )
        const seqs = results.flatMap((r) => r.deliveries.map((d) => d.event.seq))
        expect(new Set(seqs).size).toBe(seqs.length)
        const more = await claim('s', 'c5', 100)
        expect(seqs.length + more.deliveries.length).toBe(40)
      })

      it('forgets a delivered event: no record, not claimed again', async () => {
        fresh()
        now = Date.now()
        await open('s')
        const { appended } = await append(['done'])
        const { deliveries } = await claim('s')
        expect(await store.deliveryRecords(tenant, appended[0]!.seq!)).toMatchObject([
          { subscriptionId: 's', state: 'leased', attempts: 1, consumer: 'c1' },
        ])
        await store.settle(tenant, 's', 'c1', [{ seq: deliveries[0]!.event.seq!, outcome: 'delivered' }], now)
        expect(await store.deliveryRecords(tenant, appended[0]!.seq!)).toEqual([])
        expect((await claim('s', 'c1', 10, all, 0)).deliveries).toEqual([])
        const [subscription] = await store.listSubscriptions(tenant)
        expect(subscription!.cursor >= appended[0]!.seq!).toBe(true)
      })

      it('holds a retry until its time, then leases it as the next attempt', async () => {
        fresh()
        now = Date.now()
        await open('s')
        const { appended } = await append(['flaky'])
        const seq = appended[0]!.seq!
        await claim('s')
        await store.settle(
          tenant,
          's',
          'c1',
          [{ seq, outcome: 'retry', retryAt: now + 500, error: 'Error: boom' }],
          now,
        )
        expect(await store.deliveryRecords(tenant, seq)).toMatchObject([
          { state: 'retrying', attempts: 1, lastError: 'Error: boom', nextAttemptAt: now + 500 },
        ])
        const early = await claim('s')
        expect(early.deliveries).toEqual([])
        expect(early.nextDueAt).toBe(now + 500)
        now += 500
        const due = await claim('s')
        expect(due.deliveries.map((d) => [d.event.topic, d.attempt])).toEqual([['flaky', 1]])
        expect(await store.deliveryRecords(tenant, seq)).toMatchObject([{ state: 'leased', attempts: 2 }])
      })

      it('gives a delivery whose lease ran out to another consumer, and ignores the late owner', async () => {
        fresh()
        now = Date.now()
        await open('s')
        const { appended } = await append(['crashy'])
        const seq = appended[0]!.seq!
        await claim('s', 'dead-consumer', 10, all, 1000)
        expect((await claim('s', 'c2', 10, all, 1000)).deliveries).toEqual([])
        now += 1000
        const taken = await claim('s', 'c2', 10, all, 1000)
        expect(taken.deliveries.map((d) => [d.event.topic, d.attempt])).toEqual([['crashy', 1]])
        await store.settle(tenant, 's', 'dead-consumer', [{ seq, outcome: 'delivered' }], now)
        expect(await store.deliveryRecords(tenant, seq)).toMatchObject([
          { state: 'leased', consumer: 'c2', attempts: 2 },
        ])
        await store.settle(tenant, 's', 'c2', [{ seq, outcome: 'delivered' }], now)
        expect(await store.deliveryRecords(tenant, seq)).toEqual([])
      })

      it('renews leases held by the consumer and reports those it lost', async () => {
        fresh()
        now = Date.now()
        await open('s')
        const { appended } = await append(['long', 'other'])
        await claim('s', 'c1', 1, all, 1000)
        await claim('s', 'c2', 1, all, 1000)
        const lost = await store.renew(tenant, 's', 'c1', [appended[0]!.seq!, appended[1]!.seq!], now + 5000)
        expect(lost).toEqual([appended[1]!.seq])
        now += 2000
        const after = await claim('s', 'c3', 10, all, 1000)
        expect(after.deliveries.map((d) => d.event.topic)).toEqual(['other'])
      })

      it('keeps dead letters with attempts and error; redrive makes them due with fresh attempts; delete removes them', async () => {
        fresh()
        now = Date.now()
        await open('s')
        await open('t')
        const { appended } = await append(['bad', 'worse'])
        const [bad, worse] = appended.map((e) => e.seq!)
        await claim('s')
        await store.settle(
          tenant,
          's',
          'c1',
          [
            { seq: bad!, outcome: 'dead', error: 'NonRetriableError: no' },
            { seq: worse!, outcome: 'dead', error: 'x' },
          ],
          now,
        )
        const letters = await store.listDeadLetters(tenant, { limit: 10 })
        expect(
          letters.map((l) => [l.subscriptionId, l.event.topic, l.state, l.attempts, l.lastError]),
        ).toEqual([
          ['s', 'bad', 'dead', 1, 'NonRetriableError: no'],
          ['s', 'worse', 'dead', 1, 'x'],
        ])
        expect(await store.listDeadLetters(tenant, { limit: 10, subscriptionId: 't' })).toEqual([])
        expect(await store.listDeadLetters(tenant, { limit: 1 })).toHaveLength(1)
        expect(await store.listDeadLetters(freshTenant(), { limit: 10 })).toEqual([])
        expect((await claim('s')).deliveries).toEqual([])

        expect(await store.redrive(tenant, 's', bad!, now)).toBe(true)
        expect(await store.redrive(tenant, 's', bad!, now)).toBe(false)
        const again = await claim('s')
        expect(again.deliveries.map((d) => [d.event.topic, d.attempt])).toEqual([['bad', 0]])
        expect(await store.deleteDeadLetter(tenant, 's', worse!)).toBe(true)
        expect(await store.deleteDeadLetter(tenant, 's', worse!)).toBe(false)
        expect(await store.listDeadLetters(tenant, { limit: 10 })).toEqual([])
      })

      it('lists the delivery records of one event across subscriptions', async () => {
        fresh()
        now = Date.now()
        await open('one')
        await open('two')
        await open('three')
        const { appended } = await append(['multi'])
        const seq = appended[0]!.seq!
        await claim('one')
        await claim('two')
        await claim('three')
        await store.settle(
          tenant,
          'two',
          'c1',
          [{ seq, outcome: 'retry', retryAt: now + DAY, error: 'e' }],
          now,
        )
        await store.settle(tenant, 'three', 'c1', [{ seq, outcome: 'delivered' }], now)
        const records = await store.deliveryRecords(tenant, seq)
        expect(records.map((r) => [r.subscriptionId, r.state]).sort()).toEqual([
          ['one', 'leased'],
          ['two', 'retrying'],
        ])
      })

      it('deletes a subscription with its records; claiming it then fails with not_found', async () => {
        fresh()
        now = Date.now()
        await open('gone')
        await append(['x'])
        await claim('gone')
        expect(await store.deleteSubscription(tenant, 'gone')).toBe(true)
        expect(await store.deleteSubscription(tenant, 'gone')).toBe(false)
        expect(await store.listSubscriptions(tenant)).toEqual([])
        const error = await claim('gone').catch((e: unknown) => e)
        expect(isHeraldError(error, 'not_found')).toBe(true)
      })
    })

    describe('locks', () => {
      const settledWithin = async (promise: Promise<unknown>, ms: number): Promise<boolean> => {
        let settled = false
        void promise.then(
          () => (settled = true),
          () => (settled = true),
        )
        await sleep(ms)
        return settled
      }

      it('holds a name in a tenant until let go; other names and tenants are free meanwhile', async () => {
        fresh()
        const options = { ttlMs: 10_000, waitMs: 5_000 }
        const unlock = await store.lock(tenant, 'app:shop', options)
        const next = store.lock(tenant, 'app:shop', options)
        expect(await settledWithin(next, 150)).toBe(false)
        await (
          await store.lock(tenant, 'app:other', options)
        )()
        await (
          await store.lock(freshTenant('elsewhere'), 'app:shop', options)
        )()
        await unlock()
        await (
          await next
        )()
      })

      it('lapses after its ttl when the holder never lets go, and the old holder cannot free the new one’s', async () => {
        fresh()
        const stale = await store.lock(tenant, 'name', { ttlMs: 100, waitMs: 0 })
        const started = Date.now()
        const unlock = await store.lock(tenant, 'name', { ttlMs: 10_000, waitMs: 5_000 })
        expect(Date.now() - started).toBeGreaterThanOrEqual(50)
        await stale()
        const error = await store
          .lock(tenant, 'name', { ttlMs: 10_000, waitMs: 100 })
          .catch((e: unknown) => e)
        expect(isHeraldError(error) && error.code).toBe('store_unavailable')
        await unlock()
      })

      it('refuses nonsense timings', async () => {
        fresh()
        const error = await store.lock(tenant, 'name', { ttlMs: 0, waitMs: 10 }).catch((e: unknown) => e)
        expect(isHeraldError(error) && error.code).toBe('invalid_option')
      })
    })

    describe('through a bus', () => {
      it('a durable subscription receives each event emitted after it, once', async () => {
        const bus = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 })
        const scoped = bus.scope(fresh())
        const got = recorder()
        scoped.subscribe('orders', got.handler, { subscriberId: 'orders-audit' })
        await scoped.emit([
          { topic: 'orders/1', data: 1 },
          { topic: 'invoices/1', data: 2 },
          { topic: 'orders/2', data: 3 },
        ])
        await waitFor(() => got.events.length >= 2, 5000, 'deliveries')
        await sleep(50)
        expect(got.events.map((e) => e.data)).toEqual([1, 3])
        await bus.close()
      })

      it('buses sharing the store share a durable subscription: each event is handled once', async () => {
        const tenantShared = fresh()
        const roots = [0, 1, 2].map(() =>
          createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 50 }),
        )
        const buses = roots.map((root) => root.scope(tenantShared))
        const seen: string[] = []
        for (const bus of buses) {
          bus.subscribe(
            'jobs',
            async (event) => {
              seen.push(event.id)
              await sleep(1)
            },
            { subscriberId: 'workers', retry: { concurrency: 2 } },
          )
        }
        const ids = (
          await Promise.all(
            buses.map((bus, b) =>
              bus.emit(Array.from({ length: 20 }, (_, i) => ({ topic: `jobs/${b}/${i}`, data: i }))),
            ),
          )
        ).flat()
        await waitFor(() => seen.length >= ids.length, 10_000, 'all jobs')
        await sleep(100)
        expect(seen.sort()).toEqual([...ids].sort())
        for (const root of roots) await root.close()
      })

      it('a live subscriber on one bus receives what another bus on the store publishes', async () => {
        const shared = fresh()
        const [a, b] = [0, 1].map(() => createBus({ store, closeStore: false, logger: silentLogger }))
        const got = recorder()
        a!.scope(shared).subscribe('news', got.handler)
        await b!.scope(shared).emit({ topic: 'news/today', data: 'hello' })
        await waitFor(() => got.events.length === 1, 5000, 'the event from the other bus')
        expect(got.events[0]!.data).toBe('hello')
        await a!.close()
        await b!.close()
      })

      it('a durable subscription deleted through another bus stops being delivered', async () => {
        const shared = fresh()
        const [a, b] = [0, 1].map(() =>
          createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 20 }),
        )
        const got = recorder()
        a!.scope(shared).subscribe('jobs', got.handler, { subscriberId: 'doomed' })
        await a!.scope(shared).emit({ topic: 'jobs', data: 1 })
        await waitFor(() => got.events.length === 1, 5000, 'the first delivery')
        b!.scope(shared).unsubscribe('jobs', undefined, { subscriberId: 'doomed' })
        await waitFor(async () => (await store.listSubscriptions(shared)).length === 0, 5000, 'the deletion')
        await b!.scope(shared).emit({ topic: 'jobs', data: 2 })
        await sleep(150)
        expect(got.events.map((e) => e.data)).toEqual([1])
        await a!.close()
        await b!.close()
      })

      it('a failing durable delivery retries, becomes a dead letter, shows in status, and redrives', async () => {
        const bus = createBus({ store, closeStore: false, logger: silentLogger, pollInterval: 20 })
        const scoped = bus.scope(fresh())
        let calls = 0
        let heal = false
        scoped.subscribe(
          'pay',
          async () => {
            calls++
            if (!heal) throw new Error('card declined')
          },
          { subscriberId: 'payments', retry: { retries: 2, initialBackoffDelay: 10 } },
        )
        const [id] = await scoped.emit({ topic: 'pay', data: { amount: 5 } })
        await waitFor(async () => (await scoped.deadLetters.list()).length === 1, 5000, 'dead letter')
        expect(calls).toBe(3)
        const [letter] = await scoped.deadLetters.list()
        expect(letter).toMatchObject({
          subscriptionId: 'payments',
          durable: true,
          attempts: 3,
          lastError: 'Error: card declined',
        })
        expect(letter!.event.id).toBe(id)
        expect((await scoped.status(id!))!.deliveries).toMatchObject([
          { subscriptionId: 'payments', state: 'dead', attempts: 3 },
        ])
        heal = true
        expect(await scoped.deadLetters.redrive(letter!.id)).toBe(true)
        await waitFor(() => calls === 4, 5000, 'redelivery')
        await waitFor(
          async () => (await scoped.status(id!))!.deliveries[0]!.state === 'delivered',
          5000,
          'delivered status',
        )
        expect(await scoped.deadLetters.list()).toEqual([])
        await bus.close()
      })
    })

    it('refuses work once closed', async () => {
      const own = await factory.create()
      await own.close()
      const t = freshTenant()
      const error = await own
        .append(t, prepared(t, [{ topic: 'x', data: 1 }]), { now: Date.now(), ...OPTS })
        .catch((e: unknown) => e)
      expect(isHeraldError(error, 'closed')).toBe(true)
    })
  })
}
