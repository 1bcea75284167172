/**
 * `npm run bench sqlite`: durable emit → handler, end to end, on the SQLite store, side by side
 * with raw better-sqlite3 inserts of the same rows batched 1,000 per transaction.
 *
 * Herald: a fresh database, one bus with `sqliteStore` (defaults: WAL, synchronous=NORMAL) and one
 * durable subscription (`subscriberId`; retry.concurrency 512, so that one claim can lease all the
 * new events at once), and 1 or 16 publishers each doing `await emit(event)` in a loop. Timed from
 * the first emit to the last handler call; every emit's latency is recorded. Raw: the same event
 * envelopes (JSON.stringify included) as rows with the columns of Herald's `events` table, 1,000
 * per transaction, same pragmas: into a bare table (rowid only), and with Herald's two indexes.
 *
 * Besides the rates it prints the main thread's CPU time per event (Linux), which says more than
 * the rate on a machine shared with other work. BENCH_EVENTS (default 200,000; the one-publisher
 * run uses a tenth) and BENCH_RUNS (default 3, after one warm-up) tune it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import { createBus, silentLogger, sqliteStore } from '../src/index.js'
import { ulid } from '../src/ids.js'
import { header, percentile, table } from './lib/report.js'

const N = Number(process.env.BENCH_EVENTS ?? 200_000)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const CONCURRENCY = 512
const BATCH = 1000
const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3

const payload = (i: number) => ({
  orderId: i,
  customer: 'c-0001234',
  amount: 129.95,
  currency: 'EUR',
  lines: [{ sku: 'sku-1', qty: 2 }],
})

interface Run {
  rate: number
  /** Main-thread CPU µs per event, when the OS tells. */
  cpu: number | undefined
  latencies?: number[]
}

/** CPU time of this process's main thread in µs (Linux), so helper threads are not counted. */
function mainThreadCpu(): number | undefined {
  try {
    const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100 // USER_HZ is 100 on Linux
  } catch {
    return undefined
  }
}

async function measure(events: number, fn: () => Promise<void> | void): Promise<Run> {
  globalThis.gc?.()
  const cpu = mainThreadCpu()
  const start = performance.now()
  await fn()
  const seconds = (performance.now() - start) / 1000
  const used = mainThreadCpu()
  return {
    rate: events / seconds,
    cpu: cpu === undefined || used === undefined ? undefined : (used - cpu) / events,
  }
}

function tempPath(): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-sqlite-'))
  return { path: join(dir, 'herald.db'), remove: () => rmSync(dir, { recursive: true, force: true }) }
}

async function herald(publishers: number, events: number): Promise<Run> {
  const { path, remove } = tempPath()
  const bus = createBus({ store: sqliteStore({ path }), logger: silentLogger })
  let seen = 0
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  // emit waits for this subscription to exist in the store, so it owes every event emitted.
  bus.subscribe(
    'bench',
    async () => {
      if (++seen === events) resolve()
    },
    { subscriberId: 'bench-audit', retry: { concurrency: CONCURRENCY } },
  )
  const latencies = new Array<number>(events)
  let next = 0
  const publisher = async (): Promise<void> => {
    for (let i = next++; i < events; i = next++) {
      const start = performance.now()
      await bus.emit({ topic: 'bench/order', data: payload(i) })
      latencies[i] = performance.now() - start
    }
  }
  const run = await measure(events, async () => {
    await Promise.all(Array.from({ length: publishers }, publisher))
    await done
  })
  await bus.close()
  remove()
  return { ...run, latencies: latencies.sort((a, b) => a - b) }
}

async function raw(indexed: boolean): Promise<Run> {
  const { path, remove } = tempPath()
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('cache_size = -32768')
  db.exec(
    'CREATE TABLE events (seq INTEGER PRIMARY KEY, tenant INTEGER NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL)',
  )
  if (indexed) {
    db.exec(
      'CREATE INDEX events_by_tenant ON events (tenant, seq); CREATE INDEX events_by_id ON events (tenant, id)',
    )
  }
  const insert = db.prepare('INSERT INTO events (seq, tenant, id, at, body) VALUES (?, ?, ?, ?, ?)')
  const insertBatch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const now = Date.now()
      const event = {
        id: ulid(now),
        topic: 'bench/order',
        data: payload(i),
        metadata: {},
        account: 'default',
        workspace: 'master',
        time: new Date(now).toISOString(),
      }
      insert.run(i + 1, 1, event.id, now, JSON.stringify(event))
    }
  })
  const run = await measure(N, () => {
    for (let i = 0; i < N; i += BATCH) insertBatch(i, Math.min(N, i + BATCH))
  })
  db.close()
  remove()
  return run
}

/** One warm-up, then the median (by rate) of RUNS runs. */
async function median(fn: () => Promise<Run>): Promise<Run> {
  await fn()
  const runs: Run[] = []
  for (let i = 0; i < RUNS; i++) runs.push(await fn())
  return runs.sort((a, b) => a.rate - b.rate)[Math.floor(runs.length / 2)]!
}

const describe = (run: Run): string => {
  const parts: string[] = []
  if (run.latencies) {
    parts.push(
      `emit p50 ${percentile(run.latencies, 50).toFixed(2)} ms, p99 ${percentile(run.latencies, 99).toFixed(2)} ms`,
    )
  }
  if (run.cpu !== undefined) parts.push(`main thread ${run.cpu.toFixed(1)} µs/event`)
  return parts.join('; ')
}

header(
  `bench sqlite: durable emit → handler (${N.toLocaleString('en')} events; ${(N / 10).toLocaleString('en')} with one publisher) ` +
    `vs raw inserts of the same rows, median of ${RUNS} runs`,
)
const one = await median(() => herald(1, N / 10))
const sixteen = await median(() => herald(16, N))
const bare = await median(() => raw(false))
const indexed = await median(() => raw(true))
table(
  'sqliteStore, one durable subscription (retry.concurrency 512), vs raw better-sqlite3 inserts batched 1,000 per transaction',
  [
    { name: 'herald, 1 publisher', value: one.rate, unit: 'events/s', note: describe(one) },
    { name: 'herald, 16 publishers', value: sixteen.rate, unit: 'events/s', note: describe(sixteen) },
    { name: 'raw insert, bare table', value: bare.rate, unit: 'rows/s', note: describe(bare) },
    { name: 'raw insert, two indexes', value: indexed.rate, unit: 'rows/s', note: describe(indexed) },
  ],
  'raw insert, bare table',
)
const ratio = sixteen.rate / bare.rate
console.log(
  `\ngoals, 16 publishers: ≥ 100 k events/s: ${(sixteen.rate / 1000).toFixed(1)} k (${sixteen.rate >= 100_000 ? 'met' : 'not met'}); ` +
    `≥ 0.30× the raw batched insert rate: ${ratio.toFixed(2)}× (${ratio >= 0.3 ? 'met' : 'not met'})`,
)
