import type { HeraldEvent } from '../../event.js'

/**
 * Recently stored events by seq, as objects, so that claiming and reading what this process just
 * stored does not parse its JSON again. A fixed ring indexed by seq: recent seqs are dense, so an
 * entry lives until a seq `capacity` later takes its slot. The database stays the truth: the
 * cache is only asked for seqs a query returned.
 */
export class EventCache {
  private readonly seqs: Float64Array
  private readonly events: (HeraldEvent | undefined)[]

  constructor(private readonly capacity: number) {
    this.seqs = new Float64Array(capacity).fill(-1)
    this.events = new Array<HeraldEvent | undefined>(capacity).fill(undefined)
  }

  get(seq: number): HeraldEvent | undefined {
    if (this.capacity === 0) return undefined
    const slot = seq % this.capacity
    return this.seqs[slot] === seq ? this.events[slot] : undefined
  }

  add(seq: number, event: HeraldEvent): void {
    if (this.capacity === 0) return
    const slot = seq % this.capacity
    this.seqs[slot] = seq
    this.events[slot] = event
  }

  clear(): void {
    this.seqs.fill(-1)
    this.events.fill(undefined)
  }
}
