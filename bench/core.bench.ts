/**
 * `npm run bench core`: the in-memory bus against Medusa's local event bus and a raw EventEmitter.
 * 1,000,000 events to one async handler, emitted one per `await emit()` and as arrays of 1,000,
 * timed from the first emit to the last delivery; then the fan-out cost of 10 against 10,000
 * subscriptions that do not match.
 */
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import { createBus, silentLogger } from '../src/index.js'
import { deliveredAll, deliveryRate } from './lib/load.js'
import { measureInChild, measurement, reportFigure } from './lib/isolated.js'
import { header, median, medianOf, quietLogger, table } from './lib/report.js'

const N = Number(process.env.BENCH_EVENTS ?? 1_000_000)
const BATCH = 1000
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const require = createRequire(new URL('./package.json', import.meta.url))

interface Contender {
  name: string
  /** Sets up a fresh bus with one async handler; resolves the rate once all N were handled. */
  run(mode: 'single' | 'batch'): Promise<number>
}

const herald: Contender = {
  name: 'herald (memory)',
  async run(mode) {
    const bus = createBus({ logger: silentLogger })
    const { handler, done } = deliveredAll(N)
    bus.subscribe('bench/event', handler, { retry: { concurrency: 1000 } })
    const rate = await deliveryRate(
      (events) => bus.emit(events as never),
      mode,
      N,
      BATCH,
      (i) => ({ topic: 'bench/event', data: { i } }),
      done,
    )
    await bus.close()
    return rate
  },
}

const medusa: Contender = {
  name: 'medusa event-bus-local',
  async run(mode) {
    const Service = require('@medusajs/event-bus-local').service
    const bus = new Service({ logger: quietLogger }, {}, { worker_mode: 'shared' })
    const { handler, done } = deliveredAll(N)
    bus.subscribe('bench.event', handler, { subscriberId: 'bench-sub' })
    const rate = await deliveryRate(
      (events) => bus.emit(events),
      mode,
      N,
      BATCH,
      (i) => ({ name: 'bench.event', data: { i } }),
      done,
    )
    bus.unsubscribe('bench.event', handler, { subscriberId: 'bench-sub' })
    return rate
  },
}

const emitter: Contender = {
  name: 'raw EventEmitter',
  async run(mode) {
    const ee = new EventEmitter()
    const { handler, done } = deliveredAll(N)
    ee.on('bench.event', handler)
    const start = performance.now()
    if (mode === 'single') {
      for (let i = 0; i < N; i++) {
        ee.emit('bench.event', { i })
        await undefined
      }
    } else {
      for (let i = 0; i < N; i += BATCH) {
        for (let j = 0; j < BATCH; j++) ee.emit('bench.event', { i: i + j })
        await undefined
      }
    }
    await done
    return N / ((performance.now() - start) / 1000)
  },
}

async function fanout(nonMatching: number): Promise<number> {
  const bus = createBus({ logger: silentLogger })
  const noop = async () => {}
  for (let s = 0; s < nonMatching; s++) bus.subscribe(`other/${s}/thing`, noop)
  const count = N
  const { handler, done } = deliveredAll(count)
  bus.subscribe('bench/event', handler, { retry: { concurrency: 1000 } })
  // Collect the garbage of creating the subscriptions now, so that the timed part measures
  // routing events, not promoting 10,000 new subscriptions to the old generation.
  globalThis.gc?.()
  const rate = await deliveryRate(
    (events) => bus.emit(events as never),
    'batch',
    count,
    BATCH,
    (i) => ({ topic: 'bench/event', data: { i } }),
    done,
  )
  await bus.close()
  return rate
}

type Key = `${'herald' | 'medusa' | 'emitter'}:${'single' | 'batch'}` | `fanout:${number}`
const contenders = { herald, medusa, emitter }

/** `<key>@<runs>`: the median of that many runs (after a warm-up run) in one child process. */
async function measure(spec: string): Promise<number> {
  const [key, runs] = spec.split('@') as [Key, string]
  const [what, arg] = key.split(':') as [string, string]
  if (what === 'fanout') return medianOf(Number(runs), () => fanout(Number(arg)))
  const contender = contenders[what as keyof typeof contenders]
  return medianOf(Number(runs), () => contender.run(arg as 'single' | 'batch'))
}

const spec = measurement()
if (spec !== undefined) reportFigure(await measure(spec))
else {
  header(
    `bench core: ${N.toLocaleString('en')} events to one async handler; each contender measured in ${RUNS} fresh processes, taking turns with the others (so that a machine whose speed drifts weighs on all alike); the median of those`,
  )
  const figure = (k: Key) => measureInChild(import.meta.url, `${k}@${RUNS}`)
  const names = Object.keys(contenders) as (keyof typeof contenders)[]
  for (const mode of ['single', 'batch'] as const) {
    const rounds = names.map(() => [] as number[])
    for (let round = 0; round < RUNS; round++)
      names.forEach((name, i) => rounds[i]!.push(measureInChild(import.meta.url, `${name}:${mode}@1`)))
    table(
      mode === 'single' ? 'one `await emit(event)` per event' : `arrays of ${BATCH} per emit`,
      names.map((name, i) => ({
        name: contenders[name].name,
        value: median(rounds[i]!),
        unit: 'events/s',
      })),
      'medusa event-bus-local',
    )
  }
  const ten = figure('fanout:10')
  const tenThousand = figure('fanout:10000')
  table(
    'fan-out: one matching subscription among N that do not match (arrays of 1,000)',
    [
      { name: '10 non-matching', value: ten, unit: 'events/s' },
      {
        name: '10,000 non-matching',
        value: tenThousand,
        unit: 'events/s',
        note: `${(ten / tenThousand).toFixed(2)}× slower (goal ≤ 1.5×)`,
      },
    ],
    '10 non-matching',
  )
}
