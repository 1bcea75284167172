import type { HeraldEvent } from '../../event.js'

/**
 * Recently stored events by seq, as objects, so that claiming and reading what this process just
 * stored does not parse its JSON again. A fixed ring indexed by seq: recent seqs are dense, so an
 * entry lives until a seq `capacity` later takes its slot. The events' JSON may weigh at most
 * `maxBytes` in all (events run up to the body limit each: a count alone would not bound memory);
 * an event that does not fit is not cached. The database stays the truth: the cache is only asked
 * for seqs a query returned.
 */
export class EventCache {
  private readonly seqs: Float64Array
  private readonly sizes: Float64Array
  private readonly events: (HeraldEvent | undefined)[]
  private bytes = 0

  constructor(
    private readonly capacity: number,
    private readonly maxBytes: number,
  ) {
    this.seqs = new Float64Array(capacity).fill(-1)
    this.sizes = new Float64Array(capacity)
    this.events = new Array<HeraldEvent | undefined>(capacity).fill(undefined)
  }

  get(seq: number): HeraldEvent | undefined {
    if (this.capacity === 0) return undefined
    const slot = seq % this.capacity
    return this.seqs[slot] === seq ? this.events[slot] : undefined
  }

  /** `bytes`: the length of the event's JSON. */
  add(seq: number, event: HeraldEvent, bytes: number): void {
    if (this.capacity === 0) return
    const slot = seq % this.capacity
    this.bytes -= this.sizes[slot]!
    if (this.bytes + bytes > this.maxBytes) {
      this.seqs[slot] = -1
      this.sizes[slot] = 0
      this.events[slot] = undefined
      return
    }
    this.seqs[slot] = seq
    this.sizes[slot] = bytes
    this.events[slot] = event
    this.bytes += bytes
  }

  /** The JSON length of the events held (for tests and metrics). */
  get heldBytes(): number {
    return this.bytes
  }

  clear(): void {
    this.seqs.fill(-1)
    this.sizes.fill(0)
    this.events.fill(undefined)
    this.bytes = 0
  }
}
