import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/**
 * Copies committed pages from the write-ahead log into the database file (a WAL checkpoint) on a
 * helper thread with its own connection. A checkpoint ends with fsyncs that take milliseconds;
 * run by the connection that commits, they would stall the event loop and every emit waiting on
 * it. The store's own connection keeps a large automatic checkpoint as a safety net, should this
 * thread fall behind or fail.
 */
export class Checkpointer {
  private readonly worker: Worker
  private readonly exited: Promise<void>

  constructor(path: string, intervalMs: number) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3')
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, path, intervalMs } })
    this.worker.unref()
    // A failed checkpointer only leaves checkpoints to the store's connection.
    this.worker.on('error', () => {})
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()))
  }

  /** Runs a last checkpoint and closes the helper's connection. */
  async close(): Promise<void> {
    this.worker.ref() // the process stays up until the helper has closed its connection
    this.worker.postMessage('close')
    await this.exited
  }
}

/** The helper thread: opens the file, checkpoints without blocking writers, until told to close. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.path, { timeout: 1000 })
db.pragma('wal_autocheckpoint = 0')
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)')
  } catch {
    // Busy or failing: the next turn tries again, and the store's own checkpoints remain.
  }
}
const timer = setInterval(checkpoint, workerData.intervalMs)
parentPort.on('message', (message) => {
  if (message !== 'close') return
  clearInterval(timer)
  checkpoint()
  db.close()
  parentPort.close()
})
`
