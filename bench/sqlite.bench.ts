/**
 * `npm run bench sqlite`: durable emit → handler, end to end, on the SQLite store, against raw
 * better-sqlite3 inserts of the same rows batched 1,000 per transaction.
 *
 * Herald: one bus with `sqliteStore` (defaults: WAL, synchronous=NORMAL) and one durable
 * subscription (`subscriberId`, retry.concurrency 512 so that one claim can lease a whole batch);
 * 1 or 16 publishers each `await emit(event)` in a loop. Timed from the first emit to the last
 * handler call; each emit's latency is recorded. Raw: the same event envelopes, JSON.stringify
 * included, inserted into a table with the columns of Herald's `events` table, 1,000 rows per
 * transaction, with the same pragmas: once into a bare table (rowid only) and once with Herald's
 * two indexes.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import { createBus, silentLogger, sqliteStore } from '../src/index.js'
import { ulid } from '../src/ids.js'
import { header, medianOf, percentile, table } from './lib/report.js'

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

function tempPath(): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-sqlite-'))
  return { path: join(dir, 'herald.db'), remove: () => rmSync(dir, { recursive: true, force: true }) }
}

interface Run {
  rate: number
  latencies: number[]
}

async function herald(publishers: number): Promise<Run> {
  const { path, remove } = tempPath()
  const bus = createBus({ store: sqliteStore({ path }), logger: silentLogger })
  let seen = 0
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  bus.subscribe(
    'bench',
    async () => {
      if (++seen === N) resolve()
    },
    { subscriberId: 'bench-audit', retry: { concurrency: CONCURRENCY } },
  )
  await bus.subscriptions() // the subscription exists before the first emit
  const latencies = new Array<number>(N)
  let next = 0
  const publisher = async (): Promise<void> => {
    for (let i = next++; i < N; i = next++) {
      const start = performance.now()
      await bus.emit({ topic: 'bench/order', data: payload(i) })
      latencies[i] = performance.now() - start
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: publishers }, publisher))
  await done
  const rate = N / ((performance.now() - start) / 1000)
  await bus.close()
  remove()
  return { rate, latencies }
}

function raw(indexed: boolean): number {
  const { path, remove } = tempPath()
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('cache_size = -32768')
  db.exec(
    'CREATE TABLE events (seq INTEGER PRIMARY KEY, tenant INTEGER NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL)',
  )
  if (indexed)
    db.exec(
      'CREATE INDEX events_by_tenant ON events (tenant, seq); CREATE INDEX events_by_id ON events (tenant, id)',
    )
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
  const start = performance.now()
  for (let i = 0; i < N; i += BATCH) insertBatch(i, Math.min(N, i + BATCH))
  const rate = N / ((performance.now() - start) / 1000)
  db.close()
  remove()
  return rate
}

header(
  `bench sqlite: ${N.toLocaleString('en')} events, durable emit → handler vs raw inserts, median of ${RUNS} runs`,
)
const latencyNotes = new Map<number, string>()
const heraldRate = async (publishers: number): Promise<number> =>
  medianOf(RUNS, async () => {
    const run = await herald(publishers)
    const sorted = run.latencies.sort((a, b) => a - b)
    latencyNotes.set(
      publishers,
      `emit p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms`,
    )
    return run.rate
  })
const one = await heraldRate(1)
const oneNote = latencyNotes.get(1)!
const sixteen = await heraldRate(16)
const sixteenNote = latencyNotes.get(16)!
const bare = await medianOf(RUNS, async () => raw(false))
const indexed = await medianOf(RUNS, async () => raw(true))
table(
  'durable emit → handler (sqliteStore, one subscriberId subscription) vs raw batched inserts',
  [
    { name: 'herald, 1 publisher', value: one, unit: 'events/s', note: oneNote },
    {
      name: 'herald, 16 publishers',
      value: sixteen,
      unit: 'events/s',
      note: `${sixteenNote} (goal ≥ 100 k/s and ≥ 0.30×)`,
    },
    {
      name: 'raw insert, bare table',
      value: bare,
      unit: 'rows/s',
      note: `${BATCH} rows per transaction, no index`,
    },
    {
      name: 'raw insert, herald indexes',
      value: indexed,
      unit: 'rows/s',
      note: `${BATCH} rows per transaction, Herald's two indexes`,
    },
  ],
  'raw insert, bare table',
)
console.log('(latency notes are from the last of the runs)')
