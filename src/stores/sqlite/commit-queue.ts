import { HeraldError, isHeraldError } from '../../errors.js'
import { messageOf, type Database } from './schema.js'

/**
 * One write: runs inside a transaction the queue opens. It may throw a HeraldError only before
 * it has changed anything (that rejects it alone); any other error aborts the transaction.
 */
export type WriteOp<C, T> = (context: C) => T

interface Pending<C> {
  op: WriteOp<C, unknown>
  weight: number
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

export interface TransactionHooks<C> {
  /** A fresh context for one transaction. */
  begin(): C
  /** Last writes of the transaction, before COMMIT. */
  beforeCommit(context: C): void
  /** After COMMIT, before the ops' promises resolve (watchers, caches). */
  afterCommit(context: C): void
  /** The transaction is over, committed or rolled back. */
  end(context: C): void
}

/**
 * Group commit: every write queued during one turn of the event loop (or until `maxWeight` is
 * reached) runs in one `BEGIN IMMEDIATE` transaction, and each write's promise settles only
 * after that transaction committed. Many concurrent emits then cost one commit, not one each,
 * and a write never resolves before it is as durable as the database's `synchronous` setting
 * makes it.
 */
export class CommitQueue<C> {
  private pending: Pending<C>[] = []
  private weight = 0
  private scheduled = false
  private running = false
  private readonly begin: () => void
  private readonly commit: () => void
  private readonly rollback: () => void

  constructor(
    private readonly db: Database,
    private readonly hooks: TransactionHooks<C>,
    private readonly maxWeight: number,
  ) {
    const begin = db.prepare('BEGIN IMMEDIATE')
    const commit = db.prepare('COMMIT')
    const rollback = db.prepare('ROLLBACK')
    this.begin = () => begin.run()
    this.commit = () => commit.run()
    this.rollback = () => {
      if (db.inTransaction) rollback.run()
    }
  }

  /** Queues a write; `weight` (events, say) lets a big batch trigger an early flush. */
  enqueue<T>(op: WriteOp<C, T>, weight = 1): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, weight, resolve: resolve as (value: unknown) => void, reject })
      this.weight += weight
      if (this.weight >= this.maxWeight && !this.running) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        setImmediate(this.flushScheduled)
      }
    })
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = false
    this.flush()
  }

  /** Runs everything queued now; synchronous, like the driver. */
  flush(): void {
    while (this.pending.length > 0 && !this.running) {
      const batch = this.pending
      this.pending = []
      this.weight = 0
      this.running = true
      try {
        if (!this.runBatch(batch) && batch.length > 1) {
          // Something failed mid-way and took the transaction with it: give every write its own
          // transaction, so only the one at fault fails.
          for (const one of batch) this.runBatch([one])
        }
      } finally {
        this.running = false
      }
    }
  }

  /** False when the transaction failed after it began (its writes are rolled back, not settled). */
  private runBatch(batch: Pending<C>[]): boolean {
    try {
      this.begin()
    } catch (error) {
      const failure = unavailable(error)
      for (const item of batch) item.reject(failure)
      return true
    }
    const context = this.hooks.begin()
    const outcomes: { ok: boolean; value: unknown }[] = new Array(batch.length)
    try {
      for (let i = 0; i < batch.length; i++) {
        try {
          outcomes[i] = { ok: true, value: batch[i]!.op(context) }
        } catch (error) {
          if (!isHeraldError(error)) throw error
          outcomes[i] = { ok: false, value: error }
        }
      }
      this.hooks.beforeCommit(context)
      this.commit()
    } catch (error) {
      try {
        this.rollback()
      } catch {
        // The connection is unusable; the writes fail below either way.
      }
      this.hooks.end(context)
      if (batch.length === 1) {
        batch[0]!.reject(unavailable(error))
        return true
      }
      return false
    }
    this.hooks.end(context)
    this.hooks.afterCommit(context)
    for (let i = 0; i < batch.length; i++) {
      const outcome = outcomes[i]!
      if (outcome.ok) batch[i]!.resolve(outcome.value)
      else batch[i]!.reject(outcome.value)
    }
    return true
  }

  /** Fails everything still queued (the store is closing and cannot write). */
  abandon(error: HeraldError): void {
    const batch = this.pending
    this.pending = []
    this.weight = 0
    for (const item of batch) item.reject(error)
  }
}

function unavailable(error: unknown): HeraldError {
  if (isHeraldError(error)) return error
  return new HeraldError('store_unavailable', `sqliteStore: write failed: ${messageOf(error)}`)
}
