import type { HeraldEvent } from '../../event.js'

/**
 * Recently stored events by seq, as objects, so that claiming and reading what this process just
 * appended does not parse its JSON again. Bounded; the oldest entries go first. The database
 * stays the truth: the cache is only asked for seqs a query returned.
 */
export class EventCache {
  private readonly events = new Map<number, HeraldEvent>()

  constructor(private readonly capacity: number) {}

  get(seq: number): HeraldEvent | undefined {
    return this.events.get(seq)
  }

  add(seq: number, event: HeraldEvent): void {
    if (this.capacity === 0) return
    this.events.set(seq, event)
    if (this.events.size > this.capacity) {
      // Map iteration is insertion order: drop the oldest eighth at once, not one per add.
      let drop = Math.max(1, this.capacity >>> 3)
      for (const key of this.events.keys()) {
        this.events.delete(key)
        if (--drop === 0) break
      }
    }
  }

  clear(): void {
    this.events.clear()
  }
}
