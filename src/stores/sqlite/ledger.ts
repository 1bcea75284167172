import type { Settlement } from '../store.js'
import type { Database } from './schema.js'
import { parseSeq } from './seq.js'
import { prepare } from './statements.js'

/**
 * Where a subscription's deliveries stand, in two shapes:
 * - a **lease batch** per claim for the first attempts it leased: one row holding the seqs still
 *   in flight, their consumer and one lease end. A claim writes one row and a settlement of the
 *   whole batch deletes it, instead of a row written and deleted per delivery (the hot path);
 * - a **record** per delivery that is not simply in its first attempt: leased again (a retry, or a
 *   batch whose consumer went quiet), retrying, or dead.
 * A delivery leaves its batch when it is settled; one that failed becomes a record.
 *
 * All methods run inside the store's write transactions.
 */
export class DeliveryLedger {
  private readonly s

  constructor(db: Database) {
    this.s = {
      batchAt: prepare<
        [number, number],
        { batch: number; consumer: string; lease_until: number; claimed_at: number; seqs: string }
      >(
        db,
        'SELECT batch, consumer, lease_until, claimed_at, seqs FROM leases WHERE sub = ? AND batch <= ? ORDER BY batch DESC LIMIT 1',
      ),
      insertBatch: prepare<[number, number, string, number, number, string]>(
        db,
        'INSERT INTO leases (sub, batch, consumer, lease_until, claimed_at, seqs) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      shrinkBatch: prepare<[string, number, number]>(
        db,
        'UPDATE leases SET seqs = ? WHERE sub = ? AND batch = ?',
      ),
      renewBatch: prepare<[number, number, number, string]>(
        db,
        'UPDATE leases SET lease_until = ? WHERE sub = ? AND batch = ? AND consumer = ?',
      ),
      deleteBatch: prepare<[number, number]>(db, 'DELETE FROM leases WHERE sub = ? AND batch = ?'),
      expiredBatches: prepare<[number, number], [number, string, number, number, string]>(
        db,
        'SELECT batch, consumer, lease_until, claimed_at, seqs FROM leases WHERE sub = ? AND lease_until <= ?',
        'raw',
      ),
      firstBatchEnd: prepare<[number], number | null>(
        db,
        'SELECT min(lease_until) FROM leases WHERE sub = ?',
        'pluck',
      ),

      dueRecords: prepare<[number, number, number], [number, number]>(
        db,
        // Through the index of due records: the table also holds dead letters, any number of them.
        'SELECT seq, attempts FROM deliveries INDEXED BY deliveries_due WHERE sub = ? AND due_at <= ? ORDER BY seq LIMIT ?',
        'raw',
      ),
      firstRecordDue: prepare<[number], number | null>(
        db,
        'SELECT min(due_at) FROM deliveries WHERE sub = ? AND due_at IS NOT NULL',
        'pluck',
      ),
      nextRecordDue: prepare<[number, number], number | null>(
        db,
        'SELECT min(due_at) FROM deliveries WHERE sub = ? AND due_at > ?',
        'pluck',
      ),
      insertRecord: prepare<[number, number, string, string | null, number | null, string | null, number]>(
        db,
        'INSERT INTO deliveries (sub, seq, state, attempts, consumer, due_at, last_error, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?)',
      ),
      leaseAgain: prepare<[string, number, number, number, number]>(
        db,
        "UPDATE deliveries SET state = 'leased', attempts = attempts + 1, consumer = ?, due_at = ?, updated_at = ? WHERE sub = ? AND seq = ?",
      ),
      dropRecord: prepare<[number, number]>(db, 'DELETE FROM deliveries WHERE sub = ? AND seq = ?'),
      renewRecord: prepare<[number, number, number, string]>(
        db,
        "UPDATE deliveries SET due_at = ? WHERE sub = ? AND seq = ? AND state = 'leased' AND consumer = ?",
      ),
      delivered: prepare<[number, number, string]>(
        db,
        "DELETE FROM deliveries WHERE sub = ? AND seq = ? AND state = 'leased' AND consumer = ?",
      ),
      retry: prepare<[number, string, number, number, number, string]>(
        db,
        "UPDATE deliveries SET state = 'retrying', due_at = ?, last_error = ?, consumer = NULL, updated_at = ? WHERE sub = ? AND seq = ? AND state = 'leased' AND consumer = ?",
      ),
      dead: prepare<[string, number, number, number, string]>(
        db,
        "UPDATE deliveries SET state = 'dead', due_at = NULL, last_error = ?, consumer = NULL, updated_at = ? WHERE sub = ? AND seq = ? AND state = 'leased' AND consumer = ?",
      ),
      removeRecords: prepare<[number]>(db, 'DELETE FROM deliveries WHERE sub = ?'),
      removeBatches: prepare<[number]>(db, 'DELETE FROM leases WHERE sub = ?'),
    }
  }

  /**
   * Leases, to `consumer`, deliveries due again: retries whose time came and leases whose
   * consumer went quiet (a batch whose lease ran out first turns into records), oldest first, as
   * [seq, attempts already started]; and the earliest later time one of this subscription's
   * leases or retries falls due. Two index lookups when nothing is due, the usual case.
   */
  leaseDue(
    sub: number,
    consumer: string,
    now: number,
    leaseUntil: number,
    limit: number,
  ): { due: [number, number][]; nextDueAt: number | undefined } {
    const s = this.s
    let batchEnd = s.firstBatchEnd.get(sub) ?? null
    if (batchEnd !== null && batchEnd <= now) {
      for (const [batch, owner, until, claimedAt, seqs] of s.expiredBatches.all(sub, now)) {
        for (const seq of decodeBatch(batch, seqs))
          s.insertRecord.run(sub, seq, 'leased', owner, until, null, claimedAt)
        s.deleteBatch.run(sub, batch)
      }
      batchEnd = s.firstBatchEnd.get(sub) ?? null
    }
    let due: [number, number][] = []
    let recordDue = s.firstRecordDue.get(sub) ?? null
    if (recordDue !== null && recordDue <= now) {
      due = s.dueRecords.all(sub, now, limit)
      for (const [seq] of due) s.leaseAgain.run(consumer, leaseUntil, now, sub, seq)
      recordDue = s.nextRecordDue.get(sub, now) ?? null
    }
    const nextDueAt =
      recordDue === null ? batchEnd : batchEnd === null ? recordDue : Math.min(recordDue, batchEnd)
    return { due, nextDueAt: nextDueAt ?? undefined }
  }

  /** First attempts of `seqs` (ascending), leased to `consumer` as one batch. */
  leaseNew(sub: number, seqs: readonly number[], consumer: string, leaseUntil: number, now: number): void {
    if (seqs.length > 0)
      this.s.insertBatch.run(sub, seqs[0]!, consumer, leaseUntil, now, encodeBatch(seqs[0]!, seqs))
  }

  /** A record that cannot be delivered any more (its event is gone). */
  drop(sub: number, seq: number): void {
    this.s.dropRecord.run(sub, seq)
  }

  settle(sub: number, consumer: string, settlements: readonly Settlement[], now: number): void {
    const s = this.s
    const batches = new BatchCursor(this.s, sub, consumer)
    for (const [seq, settlement] of bySeq(settlements, (item) => item.seq)) {
      if (batches.take(seq)) {
        if (settlement.outcome === 'retry')
          s.insertRecord.run(sub, seq, 'retrying', null, settlement.retryAt, settlement.error, now)
        else if (settlement.outcome === 'dead')
          s.insertRecord.run(sub, seq, 'dead', null, null, settlement.error, now)
        continue
      }
      if (settlement.outcome === 'delivered') s.delivered.run(sub, seq, consumer)
      else if (settlement.outcome === 'retry')
        s.retry.run(settlement.retryAt, settlement.error, now, sub, seq, consumer)
      else s.dead.run(settlement.error, now, sub, seq, consumer)
    }
    batches.save()
  }

  /** Pushes the lease of deliveries `consumer` still holds; returns the seqs it does not. */
  renew(sub: number, consumer: string, seqs: readonly string[], leaseUntil: number): string[] {
    const lost: string[] = []
    const renewed = new Set<number>()
    const batches = new BatchCursor(this.s, sub, consumer)
    for (const [seq, text] of bySeq(seqs, (item) => item)) {
      const batch = batches.holding(seq)
      if (batch !== undefined) {
        if (!renewed.has(batch)) this.s.renewBatch.run(leaseUntil, sub, batch, consumer)
        renewed.add(batch)
      } else if (this.s.renewRecord.run(leaseUntil, sub, seq, consumer).changes === 0) lost.push(text)
    }
    for (const text of seqs) if (parseSeq(text) === undefined) lost.push(text)
    return lost
  }

  /** The batch lease of `seq` in this subscription, if it is in one. */
  batchOf(sub: number, seq: number): { consumer: string; leaseUntil: number; claimedAt: number } | undefined {
    const row = this.s.batchAt.get(sub, seq)
    if (!row || !decodeBatch(row.batch, row.seqs).includes(seq)) return undefined
    return { consumer: row.consumer, leaseUntil: row.lease_until, claimedAt: row.claimed_at }
  }

  removeAll(sub: number): void {
    this.s.removeRecords.run(sub)
    this.s.removeBatches.run(sub)
  }
}

type Statements = DeliveryLedger['s']

/**
 * Walks a subscription's lease batches in seq order for one consumer, taking deliveries out of
 * them; `save` writes back the batches it changed.
 */
class BatchCursor {
  private batch: number | undefined
  private members: number[] = []
  /** Members taken out so far, as a parallel array. */
  private taken: boolean[] = []
  private takenCount = 0
  /** Seqs come in ascending order: members before this index are below the last one asked. */
  private index = 0
  private last = -1
  private owned = false

  constructor(
    private readonly s: Statements,
    private readonly sub: number,
    private readonly consumer: string,
  ) {}

  /** The position of `seq` among the members of the batch that would hold it, or -1. */
  private find(seq: number): number {
    if (this.batch === undefined || seq > this.last) {
      this.save()
      const row = this.s.batchAt.get(this.sub, seq)
      this.batch = row?.batch
      this.members = row ? decodeBatch(row.batch, row.seqs) : []
      this.taken = new Array<boolean>(this.members.length).fill(false)
      this.takenCount = 0
      this.index = 0
      this.last = this.members.length > 0 ? this.members[this.members.length - 1]! : seq
      this.owned = row?.consumer === this.consumer
    }
    if (!this.owned) return -1
    while (this.index < this.members.length && this.members[this.index]! < seq) this.index++
    return this.members[this.index] === seq ? this.index : -1
  }

  /** The batch of this consumer holding `seq`, if any. */
  holding(seq: number): number | undefined {
    return this.find(seq) === -1 ? undefined : this.batch
  }

  /** Takes `seq` out of this consumer's batch; false when no batch of it holds `seq`. */
  take(seq: number): boolean {
    const at = this.find(seq)
    if (at === -1 || this.taken[at]) return false
    this.taken[at] = true
    this.takenCount++
    return true
  }

  /** Writes back the batch, smaller or deleted, if deliveries were taken out of it. */
  save(): void {
    if (this.takenCount === 0 || this.batch === undefined) return
    if (this.takenCount === this.members.length) this.s.deleteBatch.run(this.sub, this.batch)
    else {
      const remaining = this.members.filter((_, i) => !this.taken[i])
      this.s.shrinkBatch.run(encodeBatch(this.batch, remaining), this.sub, this.batch)
    }
    this.takenCount = 0
  }
}

/** Items with a valid seq, ascending by it. */
function bySeq<T>(items: readonly T[], seqOf: (item: T) => string): [number, T][] {
  const out: [number, T][] = []
  for (const item of items) {
    const seq = parseSeq(seqOf(item))
    if (seq !== undefined) out.push([seq, item])
  }
  return out.sort((a, b) => a[0] - b[0])
}

/**
 * A batch's seqs (ascending, none below `batch`) as differences from the one before, starting from
 * `batch`, comma-separated: short, and quick to write and read. The first difference is how far
 * the oldest seq still leased is from the batch's key (retention reads it).
 */
export function encodeBatch(batch: number, seqs: readonly number[]): string {
  let text = ''
  let previous = batch
  for (let i = 0; i < seqs.length; i++) {
    text += i === 0 ? `${seqs[i]! - previous}` : `,${seqs[i]! - previous}`
    previous = seqs[i]!
  }
  return text
}

export function decodeBatch(batch: number, text: string): number[] {
  const parts = text.split(',')
  const seqs = new Array<number>(parts.length)
  let seq = batch
  for (let i = 0; i < parts.length; i++) seqs[i] = seq += Number(parts[i])
  return seqs
}
