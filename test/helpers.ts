import type { EventInput, HeraldEvent, Tenant } from '../src/index.js'
import { prepareBatch, type PreparedBatch } from '../src/event.js'

let tenants = 0
/** A tenant no other test uses, so tests can share one store. */
export function freshTenant(prefix = 't'): Tenant {
  return { account: `${prefix}${process.pid}x${++tenants}`, workspace: 'master' }
}

export function prepared(tenant: Tenant, inputs: EventInput[], now = Date.now()): PreparedBatch {
  return prepareBatch(inputs, tenant, { maxPayloadBytes: 1 << 20, now })
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns true or `timeout` passes; fails with `message` then. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeout = 5000,
  message = 'condition',
): Promise<void> {
  const until = Date.now() + timeout
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeout} ms waiting for ${message}`)
    await sleep(5)
  }
}

/** A handler that records what it received. */
export function recorder(): {
  events: HeraldEvent[]
  topics: () => string[]
  handler: (event: HeraldEvent) => Promise<void>
} {
  const events: HeraldEvent[] = []
  return {
    events,
    topics: () => events.map((e) => e.topic),
    handler: async (event) => {
      events.push(event)
    },
  }
}
