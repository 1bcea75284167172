import type { Event as MedusaEvent } from '@medusajs/framework/types'
import type { HeraldEvent } from '../../src/index.js'
import {
  HeraldEventBusService,
  type HeraldMedusaOptions,
  type HeraldModuleDeclaration,
} from '../../src/medusa/index.js'
import { waitFor } from '../helpers.js'

export interface CapturedLogger {
  info: string[]
  warn: string[]
  error: string[]
  debug: string[]
  sink: { info(m: string): void; warn(m: string): void; error(m: string): void; debug(m: string): void }
}

/** A Medusa-shaped logger that keeps what it is told. */
export function captureLogger(): CapturedLogger {
  const logs: CapturedLogger = {
    info: [],
    warn: [],
    error: [],
    debug: [],
    sink: {
      info: (m) => void logs.info.push(m),
      warn: (m) => void logs.warn.push(m),
      error: (m) => void logs.error.push(m),
      debug: (m) => void logs.debug.push(m),
    },
  }
  return logs
}

export interface Started {
  service: HeraldEventBusService
  logs: CapturedLogger
}

/** Services started by a test, shut down after it the way Medusa shuts modules down. */
export class Services {
  private readonly started: HeraldEventBusService[] = []

  start(
    options: HeraldMedusaOptions,
    declaration: HeraldModuleDeclaration = { worker_mode: 'shared' },
  ): Started {
    const logs = captureLogger()
    const service = new HeraldEventBusService({ logger: logs.sink }, options, declaration)
    this.started.push(service)
    return { service, logs }
  }

  async shutdown(service: HeraldEventBusService): Promise<void> {
    await service.__hooks.onApplicationPrepareShutdown()
    await service.__hooks.onApplicationShutdown()
  }

  async shutdownAll(): Promise<void> {
    await Promise.all(this.started.splice(0).map((service) => this.shutdown(service)))
  }
}

/** What a Medusa subscriber received, in order. */
export function collector(): {
  events: MedusaEvent[]
  subscriber: (event: MedusaEvent) => Promise<void>
  names: () => string[]
} {
  const events: MedusaEvent[] = []
  return {
    events,
    subscriber: async (event) => void events.push(event),
    names: () => events.map((event) => event.name),
  }
}

/** Every event in the service's tenant log, read back from the store. */
export async function storedEvents(service: HeraldEventBusService): Promise<HeraldEvent[]> {
  const events: HeraldEvent[] = []
  const tail = service.bus.tail('*', (event) => void events.push(event), { since: '' })
  try {
    await tail.ready
  } finally {
    tail.close()
  }
  return events
}

/** A promise the test resolves when it chooses. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => (open = resolve))
  return { promise, open }
}

export async function waitForCount(
  list: { length: number },
  count: number,
  what: string,
  timeout = 10_000,
): Promise<void> {
  await waitFor(() => list.length >= count, timeout, `${count} ${what} (have ${list.length})`)
}

let accounts = 0
/** A tenant of its own for each service group, so suites can share a SQLite file or a Redis. */
export function freshAccount(): string {
  return `medusa${process.pid}x${++accounts}`
}

/** Retries quick enough for tests. */
export const FAST_RETRY = {
  retries: 2,
  initialBackoffDelay: 10,
  exponentialBackoffCoefficient: 1,
  timeout: 5_000,
}
