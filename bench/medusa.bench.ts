/**
 * `npm run bench medusa`: Medusa's Event Module API, served by Medusa's local event bus and by
 * Herald's module (`herald/medusa`) on the memory store, with a live subscriber (no id) and a
 * durable one (with an id). 300,000 events to one async subscriber, emitted one per
 * `await emit()` and as arrays of 1,000, timed from the first emit to the last delivery.
 */
import { createRequire } from 'node:module'
import { HeraldEventBusService } from '../src/medusa/index.js'
import { deliveredAll, deliveryRate } from './lib/load.js'
import { measureInChild, measurement, reportFigure } from './lib/isolated.js'
import { header, medianOf, quietLogger, table } from './lib/report.js'

const N = Number(process.env.BENCH_EVENTS ?? 300_000)
const BATCH = 1000
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const require = createRequire(new URL('./package.json', import.meta.url))

interface MedusaBus {
  subscribe(name: string, subscriber: () => Promise<void>, context?: { subscriberId: string }): unknown
  emit(messages: unknown): Promise<void>
}

interface Contender {
  name: string
  open(): { bus: MedusaBus; close(): Promise<void> }
  subscriberId?: string
}

async function rate(contender: Contender, mode: 'single' | 'batch'): Promise<number> {
  const { bus, close } = contender.open()
  const { handler, done } = deliveredAll(N)
  bus.subscribe(
    'bench.event',
    handler,
    contender.subscriberId ? { subscriberId: contender.subscriberId } : undefined,
  )
  const result = await deliveryRate(
    (events) => bus.emit(events),
    mode,
    N,
    BATCH,
    (i) => ({ name: 'bench.event', data: { i } }),
    done,
  )
  await close()
  return result
}

const heraldModule: Contender['open'] = () => {
  const service = new HeraldEventBusService(
    { logger: quietLogger },
    { retry: { concurrency: 1000 } },
    { worker_mode: 'shared' },
  )
  return { bus: service as unknown as MedusaBus, close: () => service.__hooks.onApplicationShutdown() }
}

const contenders: Contender[] = [
  {
    name: 'medusa event-bus-local',
    subscriberId: 'bench-sub',
    open: () => {
      const Service = require('@medusajs/event-bus-local').service
      return {
        bus: new Service({ logger: quietLogger }, {}, { worker_mode: 'shared' }) as MedusaBus,
        close: async () => {},
      }
    },
  },
  { name: 'herald/medusa live (memory)', open: heraldModule },
  { name: 'herald/medusa durable (memory)', subscriberId: 'bench-sub', open: heraldModule },
]

const key = measurement()
if (key !== undefined) {
  const [index, mode] = key.split(':') as [string, 'single' | 'batch']
  reportFigure(await medianOf(RUNS, () => rate(contenders[Number(index)]!, mode)))
  // The Herald module's durable worker keeps a poll timer; the figure is out, so leave now.
  process.exit(0)
} else {
  header(
    `medusa: ${N.toLocaleString()} events to one async subscriber through Medusa's Event Module API (median of ${RUNS}, each contender in its own process)`,
  )
  for (const mode of ['single', 'batch'] as const) {
    table(
      mode === 'single' ? 'one event per await emit()' : `arrays of ${BATCH}`,
      contenders.map((contender, index) => ({
        name: contender.name,
        value: measureInChild(import.meta.url, `${index}:${mode}`),
        unit: 'events/s',
      })),
      'medusa event-bus-local',
    )
  }
}
