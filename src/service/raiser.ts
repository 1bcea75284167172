import { describeError, isHeraldError } from '../errors.js'
import type { EventInput } from '../event.js'
import type { Logger } from '../logger.js'

/** Where raised events go: a bus (or a scope of one) or a `HeraldClient`. */
export type EventPublisher =
  { emit(events: EventInput[]): Promise<unknown> } | { publish(events: EventInput[]): Promise<unknown> }

export interface RaiserOptions {
  /** Events waiting to be published beyond this are dropped (and counted, and logged). */
  maxPending: number
  /** Events handed to the publisher in one call. */
  batchSize: number
  logger: Logger
  /** Runs on each event just before it is published, off the observed request's path. */
  prepare?: (event: EventInput) => EventInput
}

/**
 * Publishes events in the background so that whoever raises them never waits and never fails:
 * `raise` only appends to a bounded queue; a single drain loop publishes batches. A failed
 * publish is logged with the number of events it lost; a full queue drops new events, counted
 * in `dropped` and logged once per burst.
 */
export class Raiser {
  dropped = 0
  private queue: EventInput[] = []
  private draining: Promise<void> | undefined
  private dropLogged = false
  private readonly publish: (events: EventInput[]) => Promise<unknown>

  constructor(
    publisher: EventPublisher,
    private readonly options: RaiserOptions,
  ) {
    this.publish =
      'emit' in publisher
        ? (events) => publisher.emit(events)
        : (events) => (publisher as { publish(events: EventInput[]): Promise<unknown> }).publish(events)
  }

  get pending(): number {
    return this.queue.length
  }

  raise(event: EventInput): void {
    if (this.queue.length >= this.options.maxPending) {
      this.dropped++
      if (!this.dropLogged) {
        this.dropLogged = true
        this.options.logger.error(
          { maxPending: this.options.maxPending },
          'auto events: the publish queue is full; dropping events until it drains',
        )
      }
      return
    }
    this.queue.push(event)
    // Deferred: the request being observed goes on before any publishing work starts.
    this.draining ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.drain())
  }

  /**
   * Resolves once everything raised so far was handed to the publisher (and it answered), or
   * after `timeout` ms with the events still waiting counted in the log: a publisher that never
   * answers must not hold a shutdown forever.
   */
  async flush(timeout = Infinity): Promise<void> {
    const drained = (async () => {
      while (this.draining) await this.draining
    })()
    if (timeout === Infinity) return drained
    let timer: ReturnType<typeof setTimeout> | undefined
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, timeout, false)))
    const done = await Promise.race([drained.then(() => true), expired])
    clearTimeout(timer)
    if (!done) {
      this.options.logger.error(
        { pending: this.queue.length, timeout },
        'auto events: the publisher did not answer in time; events still waiting are lost',
      )
    }
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.options.batchSize)
        const prepare = this.options.prepare
        await this.send(prepare ? batch.map(prepare) : batch)
        this.dropLogged = false
      }
    } finally {
      this.draining = undefined
    }
  }

  private async send(batch: EventInput[]): Promise<void> {
    try {
      await this.publish(batch)
    } catch (error) {
      // One bad event refuses a whole batch: publish the rest one by one so only it is lost.
      if (batch.length > 1 && isHeraldError(error) && error.status < 500) {
        for (const event of batch) await this.send([event])
        return
      }
      this.options.logger.error(
        {
          events: batch.length,
          topics: [...new Set(batch.map((e) => e.topic))],
          error: describeError(error),
          ...(isHeraldError(error) ? { code: error.code } : {}),
        },
        'auto events: publishing failed; these events are lost',
      )
    }
  }
}
