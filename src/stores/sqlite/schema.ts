import { mkdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import { HeraldError } from '../../errors.js'

export type Database = BetterSqlite3.Database

/** 'HRLD': marks a SQLite file as Herald's (PRAGMA application_id). */
export const HERALD_APPLICATION_ID = 0x48524c44
/** Bumped with every change of the tables below; a newer file is refused, an older one migrated. */
export const SCHEMA_VERSION = 1

/**
 * One database per store. Seqs are a counter shared by all tenants (`events.seq`), kept in
 * `herald_meta.last_seq` as well as in the table so that retention emptying the log never lets a
 * seq be given out twice. Deliveries that are not simply done are either in a lease batch
 * (`leases`: first attempts leased by one claim) or have a record (`deliveries`), whose `due_at`
 * is the lease's end for a leased record and the next attempt's time for a retrying one (null
 * for a dead letter); see ledger.ts.
 */
const SCHEMA = `
CREATE TABLE herald_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE tenants (
  id INTEGER PRIMARY KEY,
  account TEXT NOT NULL,
  workspace TEXT NOT NULL,
  UNIQUE (account, workspace)
);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  tenant INTEGER NOT NULL,
  id TEXT NOT NULL,
  at INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant, seq);
CREATE INDEX events_by_id ON events (tenant, id);
CREATE TABLE subscriptions (
  key INTEGER PRIMARY KEY,
  tenant INTEGER NOT NULL,
  id TEXT NOT NULL,
  patterns TEXT NOT NULL,
  sender TEXT,
  meta TEXT,
  created_at INTEGER NOT NULL,
  start_seq INTEGER NOT NULL,
  cursor INTEGER NOT NULL,
  UNIQUE (tenant, id)
);
CREATE TABLE deliveries (
  sub INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  consumer TEXT,
  due_at INTEGER,
  last_error TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (sub, seq)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (sub, due_at) WHERE due_at IS NOT NULL;
CREATE TABLE leases (
  sub INTEGER NOT NULL,
  batch INTEGER NOT NULL,
  consumer TEXT NOT NULL,
  lease_until INTEGER NOT NULL,
  claimed_at INTEGER NOT NULL,
  seqs TEXT NOT NULL,
  PRIMARY KEY (sub, batch)
) WITHOUT ROWID;
CREATE INDEX dead_letters ON deliveries (seq) WHERE state = 'dead';
CREATE TABLE groups (
  tenant INTEGER NOT NULL,
  group_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (tenant, group_id)
) WITHOUT ROWID;
CREATE INDEX groups_by_expiry ON groups (expires_at);
CREATE TABLE staged (
  n INTEGER PRIMARY KEY,
  tenant INTEGER NOT NULL,
  group_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX staged_by_group ON staged (tenant, group_id, n);
CREATE TABLE dedupe (
  tenant INTEGER NOT NULL,
  id TEXT NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX dedupe_by_expiry ON dedupe (until);
INSERT INTO herald_meta (key, value) VALUES ('last_seq', 0);
`

export interface OpenOptions {
  path: string
  busyTimeout: number
  synchronous: 'normal' | 'full'
}

type Driver = typeof BetterSqlite3

/** Loads better-sqlite3 on first use, so that importing Herald loads no native module. */
function loadDriver(): Driver {
  try {
    return createRequire(import.meta.url)('better-sqlite3') as Driver
  } catch (error) {
    throw new HeraldError(
      'store_unavailable',
      `sqliteStore needs the better-sqlite3 package, which could not be loaded: ${messageOf(error)}`,
    )
  }
}

/**
 * Opens (creating if need be) a Herald database and checks it is one this version can use.
 * Every failure is one HeraldError: `store_unavailable` when the file cannot be opened or
 * written, `store_incompatible` when it holds something else.
 */
export function openDatabase(options: OpenOptions): Database {
  const path = resolve(options.path)
  const where = `sqliteStore: ${path}`
  const Driver = loadDriver()
  try {
    mkdirSync(dirname(path), { recursive: true })
  } catch (error) {
    throw new HeraldError('store_unavailable', `${where}: cannot create its directory: ${messageOf(error)}`)
  }
  try {
    if (statSync(path).isDirectory())
      throw new HeraldError('store_unavailable', `${where} is a directory, not a database file`)
  } catch (error) {
    if (error instanceof HeraldError) throw error // a missing file is created below
  }
  let db: Database
  try {
    db = new Driver(path, { timeout: options.busyTimeout })
  } catch (error) {
    throw new HeraldError('store_unavailable', `${where}: cannot open: ${messageOf(error)}`)
  }
  try {
    checkOwnership(db, where)
    setPragmas(db, options, where)
    initialize(db, where)
    return db
  } catch (error) {
    db.close()
    throw error
  }
}

/** Refuses, before changing anything, a file that is not SQLite or is another program's database. */
function checkOwnership(db: Database, where: string): void {
  let applicationId: number
  let version: number
  let tables: string[]
  try {
    // One read transaction: another process creating the file meanwhile is seen whole or not at
    // all (read apart, its tables could show up without the application id read just before).
    ;[applicationId, version, tables] = db.transaction(
      () =>
        [
          db.pragma('application_id', { simple: true }) as number,
          db.pragma('user_version', { simple: true }) as number,
          db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 5").pluck().all() as string[],
        ] as const,
    )()
  } catch (error) {
    if (sqliteCode(error) === 'SQLITE_NOTADB')
      throw new HeraldError('store_incompatible', `${where} is not a SQLite database`)
    throw new HeraldError(
      'store_unavailable',
      `${where}: cannot open it for reading and writing: ${messageOf(error)}`,
    )
  }
  if (applicationId === HERALD_APPLICATION_ID) {
    if (version > SCHEMA_VERSION) {
      throw new HeraldError(
        'store_incompatible',
        `${where} has schema version ${version}, written by a newer Herald; this one understands up to ${SCHEMA_VERSION}`,
      )
    }
    return
  }
  if (applicationId !== 0) {
    throw new HeraldError(
      'store_incompatible',
      `${where} belongs to another program (application_id 0x${applicationId.toString(16)}), not Herald`,
    )
  }
  if (tables.length > 0) {
    throw new HeraldError(
      'store_incompatible',
      `${where} is a SQLite database but not Herald's (it has tables ${tables.join(', ')})`,
    )
  }
}

function setPragmas(db: Database, options: OpenOptions, where: string): void {
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true })
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, WAL is required`)
    db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
    // A bigger page cache keeps the indexes that every append and claim touch in memory.
    db.pragma('cache_size = -32768')
    db.pragma('temp_store = MEMORY')
    // Checkpoints run on a helper thread (checkpointer.ts); this one is only the safety net.
    db.pragma('wal_autocheckpoint = 16384')
    // Let a checkpointed WAL shrink back instead of staying at its high-water mark.
    db.pragma('journal_size_limit = 67108864')
  } catch (error) {
    throw new HeraldError(
      'store_unavailable',
      `${where}: cannot set up write-ahead logging: ${messageOf(error)}`,
    )
  }
}

/** Creates the schema in a fresh file; in every case proves the file is writable by writing to it. */
function initialize(db: Database, where: string): void {
  try {
    db.transaction(() => {
      // Checked again under the write lock: another process may have created it meanwhile.
      const applicationId = db.pragma('application_id', { simple: true }) as number
      if (applicationId !== HERALD_APPLICATION_ID) {
        db.exec(SCHEMA)
        db.pragma(`application_id = ${HERALD_APPLICATION_ID}`)
        db.pragma(`user_version = ${SCHEMA_VERSION}`)
      }
      db.prepare("INSERT OR REPLACE INTO herald_meta (key, value) VALUES ('opened_at', ?)").run(Date.now())
    }).immediate()
  } catch (error) {
    throw new HeraldError('store_unavailable', `${where}: cannot write: ${messageOf(error)}`)
  }
}

export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
