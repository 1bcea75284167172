import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type BetterSqlite3 from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import {
  createBus,
  isHeraldError,
  silentLogger,
  sqliteStore,
  type HeraldEvent,
  type Store,
  type Tenant,
} from '../../src/index.js'
import { runScript, type Child } from '../support/child.js'
import { freshTenant, prepared, recorder, waitFor } from '../helpers.js'
import { describeStoreContract } from './contract.js'
import { EventCache } from '../../src/stores/sqlite/event-cache.js'

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3
const PROCESS = fileURLToPath(new URL('./fixtures/sqlite-process.ts', import.meta.url))
const OPTS = { dedupeWindowMs: 60_000, groupTtlMs: 60_000 }

const dirs: string[] = []
const freshDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-sqlite-'))
  dirs.push(dir)
  return dir
}
const freshPath = (): string => join(freshDir(), 'herald.db')
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describeStoreContract('sqlite', { create: () => sqliteStore({ path: freshPath() }) })

/** What the child printed after `prefix` on its lines that start with it (ids, here). */
const printedAfter = (child: Child, prefix: string): string[] =>
  child.lines.filter((line) => line.startsWith(prefix)).map((line) => line.slice(prefix.length))

/**
 * Attaches the emit-loop processes' durable subscription in a bus over `store` and waits until
 * every id of `printed` was handled, here or (as `handled` says) in the processes before.
 */
async function deliverEvery(
  store: Store,
  tenant: Tenant,
  printed: string[],
  handled: Set<string>,
): Promise<void> {
  const bus = createBus({ store, logger: silentLogger, pollInterval: 20 })
  bus.scope(tenant).subscribe('crash', async (event) => void handled.add(event.id), {
    subscriberId: 'crash-audit',
    retry: { concurrency: 256 },
  })
  await waitFor(() => printed.every((id) => handled.has(id)), 20_000, 'every printed id to be delivered')
  await bus.close()
}

/** Opening `path` fails with a HeraldError; returns it. */
function openError(path: string): { code: string; message: string } {
  try {
    sqliteStore({ path })
  } catch (error) {
    if (isHeraldError(error)) return { code: error.code, message: error.message }
    throw error
  }
  throw new Error(`sqliteStore opened ${path}`)
}

async function append(
  store: Store,
  tenant: Tenant,
  topics: string[],
  now = Date.now(),
): Promise<HeraldEvent[]> {
  const inputs = prepared(
    tenant,
    topics.map((topic) => ({ topic, data: { topic } })),
    now,
  )
  return (await store.append(tenant, inputs, { now, ...OPTS })).appended
}

describe('sqliteStore', () => {
  it('loads no native module when Herald is imported, only when a store is created', async () => {
    const child = runScript(PROCESS, ['native-load', freshPath()])
    expect(JSON.parse(await child.line((line) => line.startsWith('{'), 20_000, 'the result'))).toEqual({
      afterImport: false,
      afterCreate: true,
    })
    await child.exited
  })

  describe('crash safety', () => {
    it('keeps every event whose emit resolved, across SIGKILL at a random moment, and delivers each at least once', async () => {
      const path = freshPath()
      const tenant = freshTenant('crash')
      const printed: string[] = []
      const handled = new Set<string>()
      for (let round = 0; round < 2; round++) {
        const child = runScript(PROCESS, ['emit-loop', path, tenant.account])
        await child.line((line) => line === 'ready', 20_000, 'ready')
        await child.line((line) => line.startsWith('e '), 10_000, 'a first emitted id')
        const delay = 50 + Math.floor(Math.random() * 400)
        await new Promise((resolve) => setTimeout(resolve, delay))
        await child.kill()
        const emitted = printedAfter(child, 'e ')
        expect(
          emitted.length,
          `round ${round}: ids printed before the kill after ${delay} ms`,
        ).toBeGreaterThan(0)
        printed.push(...emitted)
        for (const id of printedAfter(child, 'd ')) handled.add(id)
      }

      const store = sqliteStore({ path })
      const missing: string[] = []
      for (const id of printed) if (!(await store.getEvent(tenant, id))) missing.push(id)
      expect(missing, `of ${printed.length} ids printed`).toEqual([])

      await deliverEvery(store, tenant, printed, handled)
    }, 60_000)

    it('lets two processes emit into one file at once and share a durable subscription, through a crash of both', async () => {
      const path = freshPath()
      const tenant = freshTenant('pair')
      const children = [0, 1].map(() => runScript(PROCESS, ['emit-loop', path, tenant.account]))
      await Promise.all(children.map((child) => child.line((line) => line === 'ready', 20_000, 'ready')))
      // Both have emitted, and both have handled deliveries of the shared subscription.
      for (const child of children) {
        await child.line((line) => line.startsWith('e '), 10_000, 'an emitted id')
        await child.line((line) => line.startsWith('d '), 10_000, 'a delivery')
      }
      await Promise.all(children.map((child) => child.kill()))
      const printed = children.flatMap((child) => printedAfter(child, 'e '))
      const handled = new Set(children.flatMap((child) => printedAfter(child, 'd ')))

      const store = sqliteStore({ path })
      const log = await store.read(tenant, { limit: 1_000_000 })
      const stored = new Set(log.map((event) => event.id))
      expect(
        printed.filter((id) => !stored.has(id)),
        `of ${printed.length} ids printed`,
      ).toEqual([])
      // One order for both writers: every seq given out once, increasing.
      expect(log.every((event, i) => i === 0 || event.seq! > log[i - 1]!.seq!)).toBe(true)
      await deliverEvery(store, tenant, printed, handled)
    }, 60_000)

    it('retries a delivery that was in flight at the crash, keeping its attempt count', async () => {
      const path = freshPath()
      const tenant = freshTenant('flight')
      const child = runScript(PROCESS, ['in-flight', path, tenant.account])
      const started = await child.line(
        (line) => line.startsWith('started ') && line.endsWith(' 1'),
        20_000,
        'the second attempt',
      )
      await child.kill()
      const eventId = started.split(' ')[1]!

      const store = sqliteStore({ path })
      const event = await store.getEvent(tenant, eventId)
      expect(await store.deliveryRecords(tenant, event!.seq!)).toMatchObject([
        {
          subscriptionId: 'slow-worker',
          state: 'leased',
          attempts: 2,
          lastError: 'Error: first attempt fails',
        },
      ])
      const bus = createBus({ store, logger: silentLogger, pollInterval: 20 })
      const scoped = bus.scope(tenant)
      const attempts: number[] = []
      scoped.subscribe('slow', async (_event, ctx) => void attempts.push(ctx.attempt), {
        subscriberId: 'slow-worker',
      })
      await waitFor(() => attempts.length > 0, 10_000, 'the delivery to come back after the lease ran out')
      expect(attempts).toEqual([2])
      await waitFor(
        async () => (await scoped.status(eventId))?.deliveries[0]?.state === 'delivered',
        5000,
        'delivered status',
      )
      await bus.close()
    })

    it('keeps staged groups across a crash: they can be released or cleared, and expired ones are gone', async () => {
      const path = freshPath()
      const tenant = freshTenant('groups')
      const setup = createBus({ store: sqliteStore({ path }), logger: silentLogger })
      setup.scope(tenant).subscribe('order', () => {}, { subscriberId: 'orders' })
      await setup.close()
      const child = runScript(PROCESS, ['stage', path, tenant.account])
      const stagedAt = Number(
        (await child.line((line) => line.startsWith('staged '), 20_000, 'staged')).split(' ')[1],
      )
      await child.kill()

      const store = sqliteStore({ path, retentionInterval: 20 })
      const raw = new Database(path, { readonly: true })
      const stagedRows = (group: string) =>
        raw.prepare('SELECT count(*) FROM staged WHERE group_id = ?').pluck().get(group) as number
      expect([stagedRows('keep'), stagedRows('clear-me'), stagedRows('short')]).toEqual([2, 1, 1])
      const bus = createBus({ store, logger: silentLogger, pollInterval: 20 })
      const scoped = bus.scope(tenant)
      const got = recorder()
      scoped.subscribe('order', got.handler, { subscriberId: 'orders' })

      await scoped.clearGroupedEvents('clear-me')
      await scoped.releaseGroupedEvents('keep')
      await waitFor(() => got.events.length >= 2, 5000, 'the released group')
      expect(got.events.map((event) => [event.topic, event.data])).toEqual([
        ['order/created', 1],
        ['order/paid', 2],
      ])
      // The short group's TTL (300 ms) has passed once the clock is beyond it: retention removes it.
      await waitFor(
        () => Date.now() > stagedAt + 300 && stagedRows('short') === 0,
        5000,
        'the expired group to be removed',
      )
      await scoped.releaseGroupedEvents('short')
      await scoped.releaseGroupedEvents('clear-me')
      expect((await store.read(tenant, { limit: 10 })).map((event) => event.data)).toEqual([1, 2])
      raw.close()
      await bus.close()
    })
  })

  describe('durable subscriptions across restarts', () => {
    it('one unsubscribed by another connection while its process was down gets nothing; one created gets everything after its creation', async () => {
      const path = freshPath()
      const tenant = freshTenant('restart')
      const first = createBus({ store: sqliteStore({ path }), logger: silentLogger, pollInterval: 20 })
      const before = recorder()
      first.scope(tenant).subscribe('news', before.handler, { subscriberId: 'audit' })
      await first.scope(tenant).emit({ topic: 'news/0', data: 0 })
      await waitFor(() => before.events.length === 1, 5000, 'the first delivery')
      await first.close() // the process is down

      const admin = createBus({ store: sqliteStore({ path }), logger: silentLogger })
      admin.scope(tenant).unsubscribe('news', undefined, { subscriberId: 'audit' })
      await admin.scope(tenant).subscriptions() // the removal is stored
      await admin.store.openSubscription({ tenant, id: 'late', patterns: ['news'] }, Date.now())
      await admin.scope(tenant).emit([
        { topic: 'news/1', data: 1 },
        { topic: 'news/2', data: 2 },
      ])
      expect((await admin.scope(tenant).subscriptions()).map((s) => s.id)).toEqual(['late'])
      await admin.close()

      const restarted = createBus({ store: sqliteStore({ path }), logger: silentLogger, pollInterval: 20 })
      const scoped = restarted.scope(tenant)
      const audit = recorder()
      const late = recorder()
      scoped.subscribe('news', audit.handler, { subscriberId: 'audit' })
      scoped.subscribe('news', late.handler, { subscriberId: 'late' })
      await scoped.emit({ topic: 'news/3', data: 3 })
      await waitFor(
        () => audit.events.length >= 1 && late.events.length >= 3,
        5000,
        'deliveries after the restart',
      )
      expect(audit.events.map((event) => event.data)).toEqual([3])
      expect(late.events.map((event) => event.data)).toEqual([1, 2, 3])
      await restarted.close()
    })
  })

  describe('retention', () => {
    it('a position whose events retention removed still counts as one: a stream resumes from it', async () => {
      const store = sqliteStore({ path: freshPath(), maxAge: 1, retentionInterval: 10 })
      const bus = createBus({ store, logger: silentLogger })
      const tenant = freshTenant('aged')
      const [id] = await bus.scope(tenant).emit({ topic: 'feed', data: 1 })
      const seq = (await bus.scope(tenant).status(id!))!.event.seq!
      await waitFor(async () => (await store.head(tenant)) === undefined, 5000, 'retention to empty the log')
      const seen: unknown[] = []
      const tail = bus.scope(tenant).tail('feed', (event) => void seen.push(event.data), { since: seq })
      await tail.ready
      await bus.scope(tenant).emit({ topic: 'feed', data: 2 })
      await waitFor(() => seen.length === 1)
      expect(seen).toEqual([2])
      // Past every seq the store handed out, it is still refused.
      const past = String(Number(seq) + 1000).padStart(16, '0')
      await expect(bus.scope(tenant).tail('feed', () => {}, { since: past }).ready).rejects.toMatchObject({
        code: 'invalid_request',
      })
      tail.close()
      await bus.close()
    })

    it('removes old events, but never one a subscription still owes', async () => {
      const store = sqliteStore({ path: freshPath(), maxAge: 1, retentionInterval: 10 })
      const tenant = freshTenant('keep')
      const bystander = freshTenant('gone')
      const now = Date.now()
      await store.openSubscription({ tenant, id: 's', patterns: ['*'] }, now)
      const [dead, delivered, retrying, leased, later, owed] = await append(
        store,
        tenant,
        ['dead', 'delivered', 'retrying', 'leased', 'later', 'owed'],
        now,
      )
      const others = await append(store, bystander, ['a', 'b', 'c'], now)
      const claim = (limit: number) =>
        store.claim(tenant, 's', { consumer: 'c1', limit, leaseMs: 60_000, now, match: () => true })
      await claim(5) // everything but `owed`: the cursor stays behind it
      await store.settle(
        tenant,
        's',
        'c1',
        [
          { seq: dead!.seq!, outcome: 'dead', error: 'no' },
          { seq: delivered!.seq!, outcome: 'delivered' },
          { seq: retrying!.seq!, outcome: 'retry', retryAt: now + 60_000, error: 'later' },
        ],
        now,
      )

      await waitFor(
        async () => (await store.read(bystander, { limit: 10 })).length === 0,
        5000,
        'the unowed tenant to be emptied',
      )
      expect(others).toHaveLength(3)
      await waitFor(
        async () => (await store.getEvent(tenant, delivered!.id)) === undefined,
        5000,
        'the delivered event to go',
      )
      const kept = async () => (await store.read(tenant, { limit: 10 })).map((event) => event.topic)
      expect(await kept()).toEqual(expect.arrayContaining(['dead', 'retrying', 'leased', 'owed']))
      expect(
        (await store.listDeadLetters(tenant, { limit: 10 })).map((letter) => letter.event.topic),
      ).toEqual(['dead'])

      // Once nothing is owed any more, everything goes.
      expect(await store.deleteDeadLetter(tenant, 's', dead!.seq!)).toBe(true)
      await store.settle(
        tenant,
        's',
        'c1',
        [leased!, later!].map((event) => ({ seq: event.seq!, outcome: 'delivered' as const })),
        now,
      )
      const afterRetry = Date.now() + 60_000
      const again = await store.claim(tenant, 's', {
        consumer: 'c2',
        limit: 10,
        leaseMs: 1000,
        now: afterRetry,
        match: () => true,
      })
      expect(again.deliveries.map((d) => d.event.topic)).toEqual(['retrying', 'owed'])
      await store.settle(
        tenant,
        's',
        'c2',
        again.deliveries.map((d) => ({ seq: d.event.seq!, outcome: 'delivered' as const })),
        afterRetry,
      )
      await waitFor(async () => (await kept()).length === 0, 5000, 'the rest to go')
      expect(owed!.topic).toBe('owed')
      await store.close()
    })

    it('keeps only the newest maxEvents, except those owed', async () => {
      const store = sqliteStore({ path: freshPath(), maxEvents: 3, retentionInterval: 10 })
      const free = freshTenant('free')
      const pinned = freshTenant('pinned')
      await store.openSubscription({ tenant: pinned, id: 'behind', patterns: ['*'] }, Date.now())
      await append(store, pinned, ['p1', 'p2'])
      await append(store, free, ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'])
      // The newest three seqs are f4..f6; everything older goes unless owed.
      await waitFor(
        async () => (await store.read(free, { limit: 10 })).length === 3,
        5000,
        'the free tenant to be trimmed',
      )
      expect((await store.read(free, { limit: 10 })).map((event) => event.topic)).toEqual(['f4', 'f5', 'f6'])
      expect((await store.read(pinned, { limit: 10 })).map((event) => event.topic)).toEqual(['p1', 'p2'])
      await store.close()
    })

    it('never gives out a seq twice, even after retention emptied the log', async () => {
      const path = freshPath()
      const tenant = freshTenant('seq')
      const store = sqliteStore({ path, maxAge: 1, retentionInterval: 10 })
      const [first] = await append(store, tenant, ['one'])
      await waitFor(async () => (await store.head(tenant)) === undefined, 5000, 'the log to be emptied')
      await store.close()
      const reopened = sqliteStore({ path })
      const [second] = await append(reopened, tenant, ['two'])
      expect(second!.seq! > first!.seq!).toBe(true)
      await reopened.close()
    })
    it('forgets expired publisher ids faster than one batch per interval when they pile up', async () => {
      const path = freshPath()
      const tenant = freshTenant('dedupe')
      const store = sqliteStore({ path, retentionInterval: 300, retentionBatch: 100 })
      const inputs = Array.from({ length: 1000 }, (_, i) => ({ id: `pub-${i}`, topic: 'ids', data: i }))
      await store.append(tenant, prepared(tenant, inputs), {
        now: Date.now(),
        dedupeWindowMs: 1,
        groupTtlMs: 1,
      })
      const db = new Database(path, { readonly: true })
      try {
        const remembered = () => (db.prepare('SELECT count(*) AS n FROM dedupe').get() as { n: number }).n
        expect(remembered()).toBe(1000)
        // One batch per interval would take ten intervals (3 s); catching up takes a fraction of one more.
        await waitFor(() => remembered() === 0, 2000, 'the expired ids to be forgotten')
      } finally {
        db.close()
        await store.close()
      }
    })

    it('a second close resolves only once the file is closed', async () => {
      const store = sqliteStore({ path: freshPath() })
      await store.append(freshTenant('close'), prepared(freshTenant('close'), [{ topic: 't', data: 1 }]), {
        now: Date.now(),
        ...OPTS,
      })
      let first = false
      void store.close().then(() => (first = true))
      await store.close()
      expect(first).toBe(true)
    })
  })

  describe('opening', () => {
    it('fails with store_unavailable when the directory cannot be created', () => {
      const dir = freshDir()
      writeFileSync(join(dir, 'file'), 'not a directory')
      const error = openError(join(dir, 'file', 'herald.db'))
      expect(error.code).toBe('store_unavailable')
      expect(error.message).toContain('cannot create its directory')
    })

    it('fails with store_unavailable when the path is a directory', () => {
      const dir = freshDir()
      mkdirSync(join(dir, 'herald.db'))
      expect(openError(join(dir, 'herald.db'))).toMatchObject({
        code: 'store_unavailable',
        message: expect.stringContaining('is a directory'),
      })
    })

    it('fails with store_unavailable in a directory it may not write, or on a file it may not write', async () => {
      const dir = freshDir()
      const existing = join(dir, 'existing.db')
      await sqliteStore({ path: existing }).close()
      chmodSync(existing, 0o444)
      chmodSync(dir, 0o555)
      try {
        // Root may write anywhere: then the check runs as the unprivileged user `nobody`.
        const options = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}
        for (const path of [join(dir, 'new.db'), existing]) {
          const child = runScript(PROCESS, ['open', path], options)
          const line = await child.line(() => true, 20_000, 'the outcome')
          expect(line, path).toMatch(/^store_unavailable: /)
          await child.exited
        }
      } finally {
        chmodSync(dir, 0o755)
      }
    })

    it('fails with store_incompatible on a file that is not SQLite', () => {
      const path = freshPath()
      writeFileSync(path, 'these are my notes, not a database\n'.repeat(200))
      expect(openError(path)).toMatchObject({
        code: 'store_incompatible',
        message: expect.stringContaining('not a SQLite database'),
      })
      expect(readFileSync(path, 'utf8')).toBe('these are my notes, not a database\n'.repeat(200))
    })

    it('fails with store_incompatible on another program’s SQLite database, and leaves it untouched', () => {
      const path = freshPath()
      const other = new Database(path)
      other.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada')")
      other.close()
      expect(openError(path)).toMatchObject({
        code: 'store_incompatible',
        message: expect.stringContaining("not Herald's"),
      })
      const check = new Database(path, { readonly: true })
      expect(check.pragma('journal_mode', { simple: true })).toBe('delete')
      expect(check.prepare('SELECT name FROM users').pluck().all()).toEqual(['ada'])
      check.close()

      const marked = freshPath()
      const app = new Database(marked)
      app.pragma('application_id = 1234')
      app.close()
      expect(openError(marked)).toMatchObject({
        code: 'store_incompatible',
        message: expect.stringContaining('belongs to another program'),
      })
    })

    it('fails with store_incompatible on a database written by a newer Herald', async () => {
      const path = freshPath()
      await sqliteStore({ path }).close()
      const db = new Database(path)
      db.pragma('user_version = 99')
      db.close()
      expect(openError(path)).toMatchObject({
        code: 'store_incompatible',
        message: expect.stringContaining('schema version 99'),
      })
    })

    it('refuses bad options with invalid_option', () => {
      for (const options of [
        { path: '' },
        { path: ':memory:' },
        { path: freshPath(), maxEvents: 0 },
        { path: freshPath(), synchronous: 'off' as 'full' },
      ]) {
        expect(() => sqliteStore(options)).toThrow(expect.objectContaining({ code: 'invalid_option' }))
      }
    })

    it('reopens its own database with everything in it', async () => {
      const path = freshPath()
      const tenant = freshTenant('reopen')
      const store = sqliteStore({ path, synchronous: 'full' })
      const now = Date.now()
      await store.openSubscription(
        { tenant, id: 'sub', patterns: ['a'], sender: 'x.app', meta: { url: 'http://127.0.0.1:1' } },
        now,
      )
      const [event] = await append(store, tenant, ['a/1'], now)
      await store.close()
      const again = sqliteStore({ path })
      expect(await again.getEvent(tenant, event!.id)).toEqual(event)
      expect(await again.listSubscriptions(tenant)).toMatchObject([
        { id: 'sub', patterns: ['a'], sender: 'x.app', meta: { url: 'http://127.0.0.1:1' } },
      ])
      await again.close()
    })
  })

  describe('delivery state', () => {
    it('settles one claim’s deliveries a few at a time, and hands what its consumer left to another', async () => {
      const store = sqliteStore({ path: freshPath() })
      const tenant = freshTenant('parts')
      let now = Date.now()
      await store.openSubscription({ tenant, id: 's', patterns: ['*'] }, now)
      const events = await append(
        store,
        tenant,
        Array.from({ length: 8 }, (_, i) => `p/${i}`),
        now,
      )
      const seq = (i: number) => events[i]!.seq!
      const claim = (consumer: string, leaseMs = 1000) =>
        store.claim(tenant, 's', { consumer, limit: 100, leaseMs, now, match: () => true })
      expect((await claim('c1')).deliveries).toHaveLength(8)
      await store.settle(
        tenant,
        's',
        'c1',
        [
          { seq: seq(5), outcome: 'delivered' },
          { seq: seq(0), outcome: 'delivered' },
        ],
        now,
      )
      await store.settle(
        tenant,
        's',
        'c1',
        [
          { seq: seq(1), outcome: 'retry', retryAt: now + 60_000, error: 'later' },
          { seq: seq(2), outcome: 'dead', error: 'never' },
          { seq: seq(3), outcome: 'delivered' },
        ],
        now,
      )
      expect(await store.renew(tenant, 's', 'c1', [seq(4), seq(5), seq(6)], now + 5000)).toEqual([seq(5)])
      const state = async (i: number) =>
        (await store.deliveryRecords(tenant, seq(i))).map((r) => [r.state, r.attempts, r.consumer])
      expect(await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(state))).toEqual([
        [],
        [['retrying', 1, undefined]],
        [['dead', 1, undefined]],
        [],
        [['leased', 1, 'c1']],
        [],
        [['leased', 1, 'c1']],
        [['leased', 1, 'c1']],
      ])
      // c1 goes quiet: after its lease, what it still held goes to c2, as second attempts.
      now += 5000
      const taken = await claim('c2')
      expect(taken.deliveries.map((d) => [d.event.topic, d.attempt])).toEqual([
        ['p/4', 1],
        ['p/6', 1],
        ['p/7', 1],
      ])
      await store.settle(tenant, 's', 'c1', [{ seq: seq(4), outcome: 'delivered' }], now) // too late: ignored
      expect(await state(4)).toEqual([['leased', 2, 'c2']])
      await store.close()
    })
  })

  describe('group commit', () => {
    it('a failed transaction that created a tenant leaves no trace of it: another tenant never inherits its id', async () => {
      const path = freshPath()
      const store = sqliteStore({ path })
      const acme: Tenant = { account: 'acme', workspace: 'prod' }
      const other: Tenant = { account: 'other', workspace: 'prod' }
      const now = Date.now()
      // One group commit for a new tenant: a subscription, an append, and a claim that fails the
      // transaction (its match throws); each is then retried in a transaction of its own.
      const settled = await Promise.allSettled([
        store.openSubscription({ tenant: acme, id: 's', patterns: ['*'] }, now),
        store.append(acme, prepared(acme, [{ topic: 'orders', data: 'of acme' }]), { now, ...OPTS }),
        store.claim(acme, 's', {
          consumer: 'c',
          limit: 10,
          leaseMs: 1000,
          now,
          match: () => {
            throw new Error('boom')
          },
        }),
      ])
      expect(settled.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'rejected'])
      await store.append(other, prepared(other, [{ topic: 'x', data: 'of other' }]), { now, ...OPTS })
      const readBoth = async (s: Store) => [
        (await s.read(acme, { limit: 10 })).map((event) => event.data),
        (await s.read(other, { limit: 10 })).map((event) => event.data),
        (await s.listSubscriptions()).map((record) => `${record.account}/${record.id}`),
      ]
      expect(await readBoth(store)).toEqual([['of acme'], ['of other'], ['acme/s']])
      await store.close()
      const reopened = sqliteStore({ path })
      expect(await readBoth(reopened)).toEqual([['of acme'], ['of other'], ['acme/s']])
      await reopened.close()
    })

    it('stores many concurrent appends, each resolving with its own events, in one order for all', async () => {
      const store = sqliteStore({ path: freshPath() })
      const tenant = freshTenant('group')
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => append(store, tenant, [`g/${i}`, `g/${i}/b`])),
      )
      results.forEach((events, i) =>
        expect(events.map((event) => event.topic)).toEqual([`g/${i}`, `g/${i}/b`]),
      )
      const stored = await store.read(tenant, { limit: 1000 })
      expect(stored.map((event) => event.topic)).toEqual(results.flat().map((event) => event.topic))
      expect(stored.map((event) => event.seq)).toEqual(results.flat().map((event) => event.seq))
      await store.close()
    })

    it('lets a second connection on the same file see committed events and share a durable subscription', async () => {
      const path = freshPath()
      const tenant = freshTenant('shared')
      const one = sqliteStore({ path })
      const two = sqliteStore({ path })
      const now = Date.now()
      await one.openSubscription({ tenant, id: 'work', patterns: ['*'] }, now)
      const events = await append(
        two,
        tenant,
        Array.from({ length: 30 }, (_, i) => `job/${i}`),
        now,
      )
      const claims = await Promise.all(
        [one, two, one, two].map((store, i) =>
          store.claim(tenant, 'work', {
            consumer: `c${i}`,
            limit: 10,
            leaseMs: 60_000,
            now,
            match: () => true,
          }),
        ),
      )
      const seqs = claims.flatMap((claim) => claim.deliveries.map((d) => d.event.seq))
      expect(new Set(seqs).size).toBe(seqs.length)
      expect(seqs.sort()).toEqual(events.map((event) => event.seq).sort())
      await Promise.all([one.close(), two.close()])
    })
  })
})

describe('the SQLite event cache', () => {
  const event = (n: number) => ({
    id: `e${n}`,
    topic: 't',
    data: n,
    metadata: {},
    account: 'a',
    workspace: 'w',
    time: '',
  })

  it('holds events up to its byte budget; one that does not fit is left to the file', () => {
    const cache = new EventCache(100, 1000)
    cache.add(1, event(1), 600)
    cache.add(2, event(2), 600) // would make 1,200
    expect(cache.get(1)?.id).toBe('e1')
    expect(cache.get(2)).toBeUndefined()
    cache.add(3, event(3), 400)
    expect(cache.get(3)?.id).toBe('e3')
    expect(cache.heldBytes).toBe(1000)
    // A later seq in the same slot frees what the old one weighed.
    cache.add(101, event(101), 300)
    expect(cache.get(1)).toBeUndefined()
    expect(cache.get(101)?.id).toBe('e101')
    expect(cache.heldBytes).toBe(700)
  })

  it('reads back every event of a store whose cache holds few of them', async () => {
    const store = sqliteStore({ path: freshPath(), cachedBytes: 2048 })
    const tenant = freshTenant('cache')
    const now = Date.now()
    const big = 'x'.repeat(1500)
    const { appended } = await store.append(
      tenant,
      prepared(
        tenant,
        Array.from({ length: 20 }, (_, i) => ({ topic: 'big', data: `${i}${big}` })),
        now,
      ),
      { now, dedupeWindowMs: 60_000, groupTtlMs: 60_000 },
    )
    const read = await store.read(tenant, { limit: 100 })
    expect(read.map((e) => e.data)).toEqual(appended.map((e) => e.data))
    await store.close()
  })
})
