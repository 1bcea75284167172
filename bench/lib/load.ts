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

/** Emits `count` events made by `make`: one per `await emit(event)`, or in arrays of `batch`. */
export async function emitAll(
  emit: (events: unknown) => Promise<unknown>,
  mode: 'single' | 'batch',
  count: number,
  batch: number,
  make: (i: number) => unknown,
): Promise<void> {
  if (mode === 'single') {
    for (let i = 0; i < count; i++) await emit(make(i))
    return
  }
  for (let i = 0; i < count; i += batch) {
    const events = new Array(batch)
    for (let j = 0; j < batch; j++) events[j] = make(i + j)
    await emit(events)
  }
}

/**
 * Emits `count` events as `emitAll` does and resolves with the rate, in events/s, from the first
 * emit until `done` (the handler's last delivery).
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
  await emitAll(emit, mode, count, batch, make)
  await done
  return count / ((performance.now() - start) / 1000)
}
