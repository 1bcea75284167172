/** The load shared by the throughput benchmarks: N events to one async handler. */

/** A handler that resolves `done` once it has been called `count` times. */
export function deliveredAll(count: number): { handler: () => Promise<void>; done: Promise<void> } {
  let seen = 0
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  return {
    handler: async () => {
      if (++seen === count) resolve()
    },
    done,
  }
}

/**
 * Emits `count` events made by `make`, one per `await emit(event)` or in arrays of `batch`, and
 * resolves with the rate, in events/s, from the first emit until `done` (the handler's last
 * delivery).
 */
export async function deliveryRate(
  emit: (events: unknown) => Promise<unknown>,
  mode: 'single' | 'batch',
  count: number,
  batch: number,
  make: (i: number) => unknown,
  done: Promise<void>,
): Promise<number> {
  const start = performance.now()
  if (mode === 'single') {
    for (let i = 0; i < count; i++) await emit(make(i))
  } else {
    for (let i = 0; i < count; i += batch) {
      const events = new Array(Math.min(batch, count - i))
      for (let j = 0; j < events.length; j++) events[j] = make(i + j)
      await emit(events)
    }
  }
  await done
  return count / ((performance.now() - start) / 1000)
}
