/**
 * `npm run bench redis`: end to end through one Redis (REDIS_URL, default 127.0.0.1:6379).
 * Events are published in arrays of 100 (one emit in flight per process) and handled by one
 * durable subscription (Herald) or one queue worker (Medusa's event-bus-redis, on BullMQ), with
 * the same concurrency; timed from the first emit to the last delivery. With two processes each
 * publishes half and both share the subscription / queue. Every process is a child of this one,
 * which only starts them and counts. The raw baseline is ioredis pipelining XADD, 100 per
 * pipeline, one pipeline in flight: what Redis and one client can store, with nobody reading.
 *
 * Environment: BENCH_EVENTS (Herald, 100,000), BENCH_MEDUSA_EVENTS (20,000), BENCH_RAW_EVENTS
 * (300,000), BENCH_RUNS (3), BENCH_CONCURRENCY (100: the subscription's / worker's deliveries in
 * flight; Herald claims at most that many per round trip), BENCH_ONLY (e.g. `herald1,raw`).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { createBus, redisStore, silentLogger } from '../src/index.js'
import { header, median, quietLogger, table } from './lib/report.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const N = Number(process.env.BENCH_EVENTS ?? 100_000)
const N_MEDUSA = Number(process.env.BENCH_MEDUSA_EVENTS ?? 20_000)
const N_RAW = Number(process.env.BENCH_RAW_EVENTS ?? 300_000)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const BATCH = 100
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 100)
const require = createRequire(new URL('./package.json', import.meta.url))

/** About 200 bytes of JSON, like the baseline measurements. */
const payload = (i: number) => ({
  orderId: `order-${String(i).padStart(8, '0')}`,
  customer: `c-${String(i % 10_000).padStart(7, '0')}`,
  amount: 129.95,
  currency: 'EUR',
  items: [{ sku: 'sku-0001', qty: 2 }],
  note: 'n'.repeat(64),
})

// ── child processes ────────────────────────────────────────────────────────────────────────────

type ToChild = { go: number } | { stop: true }
type FromChild = { ready: true } | { handled: number } | { published: true }

interface Participant {
  /** Publishes `count` events in arrays of BATCH, one array in flight. */
  publish(count: number): Promise<void>
  close(): Promise<void>
}

/** Emits `count` events in arrays of BATCH, one array in flight. */
async function publishInArrays<T>(
  count: number,
  make: (i: number) => T,
  emit: (events: T[]) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < count; i += BATCH) {
    const events = new Array<T>(Math.min(BATCH, count - i))
    for (let j = 0; j < events.length; j++) events[j] = make(i + j)
    await emit(events)
  }
}

async function heraldParticipant(prefix: string, onHandled: () => void): Promise<Participant> {
  const bus = createBus({
    store: redisStore({ url: REDIS_URL, prefix, logger: silentLogger }),
    logger: silentLogger,
  })
  bus.subscribe('bench/event', async () => onHandled(), {
    subscriberId: 'bench',
    retry: { concurrency: CONCURRENCY },
  })
  while ((await bus.subscriptions()).length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  return {
    publish: (count) =>
      publishInArrays(
        count,
        (i) => ({ topic: 'bench/event', data: payload(i) }),
        (events) => bus.emit(events),
      ),
    close: () => bus.close(),
  }
}

async function medusaParticipant(queue: string, onHandled: () => void): Promise<Participant> {
  const Service = require('@medusajs/event-bus-redis').default.service
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null })
  const bus = new Service(
    {
      logger: quietLogger,
      eventBusRedisConnection: connection,
      eventBusRedisQueueName: queue,
      eventBusRedisWorkerOptions: { concurrency: CONCURRENCY },
    },
    {},
    { worker_mode: 'shared' },
  )
  bus.subscribe('bench.event', async () => onHandled(), { subscriberId: 'bench-sub' })
  await bus.__hooks.onApplicationStart()
  return {
    publish: (count) =>
      publishInArrays(
        count,
        (i) => ({ name: 'bench.event', data: payload(i) }),
        (events) => bus.emit(events),
      ),
    async close() {
      await bus.__hooks.onApplicationPrepareShutdown()
      await bus.__hooks.onApplicationShutdown()
    },
  }
}

async function child(): Promise<void> {
  const send = (message: FromChild): void => void process.send?.(message)
  let handled = 0
  let reported = 0
  const report = setInterval(() => {
    if (handled === reported) return
    send({ handled: handled - reported })
    reported = handled
  }, 5)
  const onHandled = (): void => {
    handled++
  }
  const name = process.env.BENCH_NAME!
  const participant =
    process.env.BENCH_CHILD === 'herald'
      ? await heraldParticipant(name, onHandled)
      : await medusaParticipant(name, onHandled)
  process.on('message', (message: ToChild) => {
    if ('go' in message) void participant.publish(message.go).then(() => send({ published: true }))
    else {
      clearInterval(report)
      void participant.close().finally(() => process.exit(0))
    }
  })
  send({ ready: true })
}

/** Starts `processes` children of one kind, tells each to publish its share, and measures events/s end to end. */
async function endToEnd(kind: 'herald' | 'medusa', processes: number, total: number): Promise<number> {
  const name = `herald-bench-${kind}-${process.pid}-${Date.now().toString(36)}`
  const children: ChildProcess[] = []
  let handled = 0
  let finish!: () => void
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const readies: Promise<void>[] = []
  for (let p = 0; p < processes; p++) {
    const proc = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_CHILD: kind, BENCH_NAME: name },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.push(proc)
    readies.push(
      new Promise((resolve, reject) => {
        proc.once('exit', (code) =>
          reject(new Error(`${kind} child exited with ${code} before it was ready`)),
        )
        proc.on('message', (message: FromChild) => {
          if ('ready' in message) resolve()
          else if ('handled' in message) {
            handled += message.handled
            if (handled >= total) finish()
          }
        })
      }),
    )
  }
  await Promise.all(readies)
  const start = performance.now()
  for (const proc of children) proc.send({ go: Math.floor(total / processes) } satisfies ToChild)
  await finished
  const rate = total / ((performance.now() - start) / 1000)
  await Promise.all(
    children.map((proc) => {
      proc.removeAllListeners('exit')
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.send({ stop: true } satisfies ToChild)
      return exited
    }),
  )
  await removeKeys(kind === 'herald' ? `${name}:*` : `RedisEventBusService:${name}:*`)
  return rate
}

async function rawXadd(): Promise<number> {
  const redis = new Redis(REDIS_URL)
  const key = `herald-bench:raw:${process.pid}:${Date.now().toString(36)}`
  const body = JSON.stringify(payload(0))
  const start = performance.now()
  for (let i = 0; i < N_RAW; i += BATCH) {
    const pipeline = redis.pipeline()
    for (let j = 0; j < BATCH; j++) pipeline.xadd(key, '*', 'e', body)
    await pipeline.exec()
  }
  const rate = N_RAW / ((performance.now() - start) / 1000)
  await redis.unlink(key)
  redis.disconnect()
  return rate
}

async function removeKeys(pattern: string): Promise<void> {
  const redis = new Redis(REDIS_URL)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.unlink(...keys)
  } while (cursor !== '0')
  redis.disconnect()
}

const CONTENDERS = {
  herald1: { name: 'herald redisStore, 1 process', run: () => endToEnd('herald', 1, N) },
  herald2: { name: 'herald redisStore, 2 processes', run: () => endToEnd('herald', 2, N) },
  medusa1: { name: 'medusa event-bus-redis, 1 process', run: () => endToEnd('medusa', 1, N_MEDUSA) },
  medusa2: { name: 'medusa event-bus-redis, 2 processes', run: () => endToEnd('medusa', 2, N_MEDUSA) },
  raw: { name: 'raw pipelined XADD (store only)', run: rawXadd },
} as const

async function main(): Promise<void> {
  // BENCH_ONLY=herald1,raw runs a subset (for profiling); the recorded figures come from a full run.
  const only = process.env.BENCH_ONLY?.split(',') ?? Object.keys(CONTENDERS)
  header(
    `bench redis: ${REDIS_URL}, arrays of ${BATCH} per emit, concurrency ${CONCURRENCY}; contenders take turns, the median of ${RUNS} rounds after a warm-up round`,
  )
  // Contenders take turns, one run each per round after a warm-up round, so that a machine
  // whose speed drifts during the benchmark weighs on every contender alike; each figure is the
  // median of its rounds.
  const keys = (Object.keys(CONTENDERS) as (keyof typeof CONTENDERS)[]).filter((key) => only.includes(key))
  const samples = new Map<keyof typeof CONTENDERS, number[]>(keys.map((key) => [key, []]))
  for (let round = 0; round <= RUNS; round++) {
    for (const key of keys) {
      const rate = await CONTENDERS[key].run()
      if (round > 0) samples.get(key)!.push(rate)
    }
  }
  const rates: Partial<Record<keyof typeof CONTENDERS, number>> = {}
  for (const [key, values] of samples) rates[key] = median(values)
  const unit = 'events/s'
  const ofRaw = (rate: number | undefined): string | undefined =>
    rate !== undefined && rates.raw !== undefined
      ? `${((rate / rates.raw) * 100).toFixed(0)} % of raw XADD`
      : undefined
  const rows = (Object.keys(CONTENDERS) as (keyof typeof CONTENDERS)[])
    .filter((key) => rates[key] !== undefined)
    .map((key) => {
      const note = key.startsWith('herald') ? ofRaw(rates[key]) : undefined
      return { name: CONTENDERS[key].name, value: rates[key]!, unit, ...(note ? { note } : {}) }
    })
  table(
    `end to end: emit → Redis → handler (Herald ${N.toLocaleString('en')} events, Medusa ${N_MEDUSA.toLocaleString('en')})`,
    rows,
    CONTENDERS.medusa1.name,
  )
  const { herald1, herald2, medusa1, medusa2, raw } = rates
  if (
    herald1 !== undefined &&
    herald2 !== undefined &&
    medusa1 !== undefined &&
    medusa2 !== undefined &&
    raw !== undefined
  ) {
    console.log(
      `\ngoals: ≥ 5× Medusa's Redis bus → ${(herald1 / medusa1).toFixed(1)}× (1 process), ${(herald2 / medusa2).toFixed(1)}× (2 processes); ` +
        `≥ 40 % of raw XADD → ${((herald1 / raw) * 100).toFixed(0)} % (1 process), ${((herald2 / raw) * 100).toFixed(0)} % (2 processes)`,
    )
  }
}

if (process.env.BENCH_CHILD) await child()
else await main()
