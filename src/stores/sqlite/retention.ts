import type { Database } from './schema.js'
import { LAST_SEQ, prepare } from './statements.js'

export interface RetentionLimits {
  /** Events older than this (ms since they were stored) may go; Infinity keeps them. */
  maxAge: number
  /** Only the newest this many seqs are kept; Infinity keeps all. */
  maxEvents: number
  /** At most this many rows are looked at per step. */
  batch: number
}

export interface RetentionStep {
  deleted: number
  /** The step ran out of budget while deleting: more may go right away. */
  more: boolean
}

const NO_BOUND = Number.MAX_SAFE_INTEGER
/** Tenants visited per step, so that a database with many tenants still takes bounded steps. */
const TENANTS_PER_STEP = 256

/**
 * Removes old events in small steps, each inside one write transaction of the store, and never
 * an event a durable subscription still owes: every event after a subscription's cursor, every
 * event from its oldest leased or retrying delivery on (in its tenant), and every dead letter's
 * event stay.
 * Also drops expired staged groups and forgotten dedupe ids.
 *
 * Each tenant is walked oldest first from where the last step stopped (events kept for a dead
 * letter are stepped over, not looked at again and again), back to its start once done.
 */
export class Retention {
  private readonly positions = new Map<number, number>()
  private nextTenant = 0
  private readonly lastSeq
  private readonly keepLastSeq
  private readonly cursorFloors
  private readonly activeFloors
  private readonly tenants
  private readonly candidates
  private readonly deadLetterOf
  private readonly deleteEvent
  private readonly expiredGroups
  private readonly deleteStaged
  private readonly deleteGroup
  private readonly forgetIds

  constructor(
    db: Database,
    private readonly limits: RetentionLimits,
  ) {
    this.lastSeq = prepare<[], number>(db, LAST_SEQ, 'pluck')
    this.keepLastSeq = prepare<[number]>(db, "UPDATE herald_meta SET value = ? WHERE key = 'last_seq'")
    this.cursorFloors = prepare<[], [number, number]>(
      db,
      'SELECT tenant, min(cursor) FROM subscriptions GROUP BY tenant',
      'raw',
    )
    this.activeFloors = prepare<[], [number, number]>(
      db,
      `SELECT s.tenant, min(x.seq) FROM (SELECT sub, seq FROM deliveries WHERE due_at IS NOT NULL UNION ALL SELECT sub, batch + CAST(substr(seqs, 1, instr(seqs || ',', ',') - 1) AS INTEGER) FROM leases) x
       JOIN subscriptions s ON s.key = x.sub GROUP BY s.tenant`,
      'raw',
    )
    this.tenants = prepare<[], number>(db, 'SELECT id FROM tenants ORDER BY id', 'pluck')
    this.candidates = prepare<[number, number, number, number], [number, number]>(
      db,
      'SELECT seq, at FROM events WHERE tenant = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?',
      'raw',
    )
    this.deadLetterOf = prepare<[number], number>(
      db,
      "SELECT 1 FROM deliveries WHERE seq = ? AND state = 'dead' LIMIT 1",
      'pluck',
    )
    this.deleteEvent = prepare<[number]>(db, 'DELETE FROM events WHERE seq = ?')
    this.expiredGroups = prepare<[number, number], [number, string]>(
      db,
      'SELECT tenant, group_id FROM groups WHERE expires_at <= ? LIMIT ?',
      'raw',
    )
    this.deleteStaged = prepare<[number, string]>(db, 'DELETE FROM staged WHERE tenant = ? AND group_id = ?')
    this.deleteGroup = prepare<[number, string]>(db, 'DELETE FROM groups WHERE tenant = ? AND group_id = ?')
    this.forgetIds = prepare<[number, number]>(
      db,
      'DELETE FROM dedupe WHERE (tenant, id) IN (SELECT tenant, id FROM dedupe WHERE until <= ? LIMIT ?)',
    )
  }

  /** One bounded step; runs inside a write transaction. */
  step(now: number): RetentionStep {
    const { batch } = this.limits
    for (const [tenant, groupId] of this.expiredGroups.all(now, batch)) {
      this.deleteStaged.run(tenant, groupId)
      this.deleteGroup.run(tenant, groupId)
    }
    this.forgetIds.run(now, batch)
    if (this.limits.maxAge === Infinity && this.limits.maxEvents === Infinity)
      return { deleted: 0, more: false }

    const lastSeq = this.lastSeq.get() ?? 0
    const overCount = this.limits.maxEvents === Infinity ? 0 : lastSeq - this.limits.maxEvents
    const tooOld = now - this.limits.maxAge
    const floors = this.floors()
    const tenants = this.tenants.all()
    let budget = batch
    let deleted = 0
    for (let visited = 0; visited < Math.min(tenants.length, TENANTS_PER_STEP) && budget > 0; visited++) {
      const tenant = tenants[this.nextTenant++ % tenants.length]!
      const floor = floors.get(tenant) ?? NO_BOUND
      let position = this.positions.get(tenant) ?? 0
      const rows = this.candidates.all(tenant, position, floor, budget)
      budget -= rows.length
      let done = rows.length === 0 || budget > 0
      for (const [seq, at] of rows) {
        if (seq > overCount && at > tooOld) {
          done = true
          break
        }
        position = seq
        if (this.deadLetterOf.get(seq) !== undefined) continue
        if (deleted === 0) this.keepLastSeq.run(lastSeq) // the counter outlives the newest event
        this.deleteEvent.run(seq)
        deleted++
      }
      if (done) this.positions.delete(tenant)
      else this.positions.set(tenant, position)
    }
    this.nextTenant %= Math.max(1, tenants.length)
    return { deleted, more: budget <= 0 && deleted > 0 }
  }

  /** Per tenant, the last seq no subscription owes (Infinity-like when it has none). */
  private floors(): Map<number, number> {
    const floors = new Map<number, number>()
    for (const [tenant, cursor] of this.cursorFloors.all()) floors.set(tenant, cursor)
    for (const [tenant, oldest] of this.activeFloors.all())
      floors.set(tenant, Math.min(floors.get(tenant) ?? NO_BOUND, oldest - 1))
    return floors
  }
}
