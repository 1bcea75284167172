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
  /** The step ran out of budget while deleting (events, expired groups or ids): more may go right away. */
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
  /** The last tenant visited: each step goes on from the next one, round the tenant list. */
  private lastTenant = 0
  private readonly s

  constructor(
    db: Database,
    private readonly limits: RetentionLimits,
    /** Drops a staged group as the store does (its events' publisher ids too). */
    private readonly dropGroup: (tenant: number, groupId: string) => void,
  ) {
    this.s = {
      lastSeq: prepare<[], number>(db, LAST_SEQ, 'pluck'),
      keepLastSeq: prepare<[number]>(
        db,
        "UPDATE herald_meta SET value = max(value, ?) WHERE key = 'last_seq'",
      ),
      tenantsAfter: prepare<[number, number], number>(
        db,
        'SELECT id FROM tenants WHERE id > ? ORDER BY id LIMIT ?',
        'pluck',
      ),
      cursorFloor: prepare<[number], number | null>(
        db,
        'SELECT min(cursor) FROM subscriptions WHERE tenant = ?',
        'pluck',
      ),
      // The oldest delivery leased or retrying; a batch's first seq still leased is its key plus
      // the first difference of its list (see ledger.ts).
      activeFloor: prepare<[number, number], number | null>(
        db,
        `SELECT min(seq) FROM (
           SELECT d.seq AS seq FROM subscriptions s JOIN deliveries d ON d.sub = s.key WHERE s.tenant = ? AND d.due_at IS NOT NULL
           UNION ALL
           SELECT l.batch + CAST(substr(l.seqs, 1, instr(l.seqs || ',', ',') - 1) AS INTEGER)
           FROM subscriptions s JOIN leases l ON l.sub = s.key WHERE s.tenant = ?
         )`,
        'pluck',
      ),
      candidates: prepare<[number, number, number, number], [number, number]>(
        db,
        'SELECT seq, at FROM events WHERE tenant = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?',
        'raw',
      ),
      deadLetterOf: prepare<[number], number>(
        db,
        "SELECT 1 FROM deliveries WHERE seq = ? AND state = 'dead' LIMIT 1",
        'pluck',
      ),
      deleteEvent: prepare<[number]>(db, 'DELETE FROM events WHERE seq = ?'),
      expiredGroups: prepare<[number, number], [number, string]>(
        db,
        'SELECT tenant, group_id FROM groups WHERE expires_at <= ? LIMIT ?',
        'raw',
      ),
      forgetIds: prepare<[number, number]>(
        db,
        'DELETE FROM dedupe WHERE (tenant, id) IN (SELECT tenant, id FROM dedupe WHERE until <= ? LIMIT ?)',
      ),
    }
  }

  /** One bounded step; runs inside a write transaction. */
  step(now: number): RetentionStep {
    const { s } = this
    const { batch, maxAge, maxEvents } = this.limits
    const expired = s.expiredGroups.all(now, batch)
    for (const [tenant, groupId] of expired) {
      this.dropGroup(tenant, groupId)
    }
    // A full batch of expired groups or ids: more may be waiting, so the next step comes soon;
    // at the regular pace, publishers faster than batch/interval would outgrow the cleanup.
    const forgotten = s.forgetIds.run(now, batch).changes
    const behind = expired.length >= batch || forgotten >= batch
    if (maxAge === Infinity && maxEvents === Infinity) return { deleted: 0, more: behind }

    const lastSeq = s.lastSeq.get() ?? 0
    const overCount = maxEvents === Infinity ? 0 : lastSeq - maxEvents
    const tooOld = now - maxAge
    let budget = batch
    let deleted = 0
    let tenants = s.tenantsAfter.all(this.lastTenant, TENANTS_PER_STEP)
    if (tenants.length === 0) tenants = s.tenantsAfter.all(0, TENANTS_PER_STEP)
    for (const tenant of tenants) {
      if (budget <= 0) break
      this.lastTenant = tenant
      const floor = this.floor(tenant)
      let position = this.positions.get(tenant) ?? 0
      const rows = s.candidates.all(tenant, position, floor, budget)
      budget -= rows.length
      let done = budget > 0
      for (const [seq, at] of rows) {
        if (seq > overCount && at > tooOld) {
          done = true
          break
        }
        position = seq
        if (s.deadLetterOf.get(seq) !== undefined) continue
        if (deleted === 0) s.keepLastSeq.run(lastSeq) // the counter outlives the newest event
        s.deleteEvent.run(seq)
        deleted++
      }
      if (done) this.positions.delete(tenant)
      else {
        this.positions.set(tenant, position)
        this.lastTenant = tenant - 1 // the next step goes on with this tenant
      }
    }
    if (tenants.length < TENANTS_PER_STEP && budget > 0) this.lastTenant = 0 // round the list again
    return { deleted, more: (budget <= 0 && deleted > 0) || behind }
  }

  /** The tenant's last seq no subscription owes (no bound when it has no subscription). */
  private floor(tenant: number): number {
    const cursor = this.s.cursorFloor.get(tenant) ?? null
    if (cursor === null) return NO_BOUND
    const active = this.s.activeFloor.get(tenant, tenant) ?? null
    return active === null ? cursor : Math.min(cursor, active - 1)
  }
}
