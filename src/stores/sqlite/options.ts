import { HeraldError } from '../../errors.js'

export interface SqliteStoreOptions {
  /** The database file; created (with its directory) when missing. */
  path: string
  /**
   * `'normal'` (default): a committed event survives the process being killed (SIGKILL, a crash),
   * but the last commits before a power loss or OS crash may be lost. `'full'`: every commit is
   * flushed to the disk first, so it survives power loss too, at a much lower commit rate.
   */
  synchronous?: 'normal' | 'full'
  /** How long a write waits for another process holding the database's write lock, in ms (default 5000). */
  busyTimeout?: number
  /** Events older than this many ms are removed, unless still owed (default 7 days; `Infinity` keeps them). */
  maxAge?: number
  /** Only the newest this many events are kept, unless still owed (default 1,000,000; `Infinity` keeps all). */
  maxEvents?: number
  /** How often retention runs, in ms (default 1000); it runs again soon after while it finds much to remove. */
  retentionInterval?: number
  /** Most events retention looks at in one step (default 2000). */
  retentionBatch?: number
  /** A group commit is written early once this many events wait (default 1000). */
  maxBatchEvents?: number
  /** Recently stored events kept as objects, so that claims need not parse them again (default 20,000; 0 for none). */
  cachedEvents?: number
  /** The most those cached events' JSON may weigh in all, in bytes (default 32 MiB; larger events are not cached). */
  cachedBytes?: number
}

export type ResolvedSqliteOptions = Required<SqliteStoreOptions>

export const SQLITE_DEFAULTS = Object.freeze({
  synchronous: 'normal' as const,
  busyTimeout: 5000,
  maxAge: 7 * 24 * 60 * 60 * 1000,
  maxEvents: 1_000_000,
  retentionInterval: 1000,
  retentionBatch: 2000,
  maxBatchEvents: 1000,
  cachedEvents: 20_000,
  cachedBytes: 32 * 1024 * 1024,
})

/** Fills defaults and checks every option; throws `invalid_option` naming the one at fault. */
export function resolveSqliteOptions(options: SqliteStoreOptions): ResolvedSqliteOptions {
  if (typeof options !== 'object' || options === null)
    throw new HeraldError('invalid_option', 'sqliteStore needs { path }')
  if (typeof options.path !== 'string' || options.path === '') {
    throw new HeraldError('invalid_option', 'sqliteStore path must be a non-empty string')
  }
  if (options.path === ':memory:' || options.path.startsWith('file:')) {
    throw new HeraldError(
      'invalid_option',
      'sqliteStore path must be a file path (use memoryStore() for an in-memory store)',
    )
  }
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
  const resolved: ResolvedSqliteOptions = { ...SQLITE_DEFAULTS, ...defined, path: options.path }
  if (resolved.synchronous !== 'normal' && resolved.synchronous !== 'full') {
    throw new HeraldError(
      'invalid_option',
      `sqliteStore synchronous must be 'normal' or 'full', got ${JSON.stringify(resolved.synchronous)}`,
    )
  }
  const counts: [keyof ResolvedSqliteOptions, 'positive' | 'or-infinity' | 'non-negative'][] = [
    ['busyTimeout', 'non-negative'],
    ['maxAge', 'or-infinity'],
    ['maxEvents', 'or-infinity'],
    ['retentionInterval', 'positive'],
    ['retentionBatch', 'positive'],
    ['maxBatchEvents', 'positive'],
    ['cachedEvents', 'non-negative'],
    ['cachedBytes', 'non-negative'],
  ]
  for (const [name, kind] of counts) {
    const value = resolved[name]
    const ok =
      typeof value === 'number' &&
      (kind === 'or-infinity' && value === Infinity
        ? true
        : Number.isSafeInteger(value) && (kind === 'non-negative' ? value >= 0 : value > 0))
    if (!ok) {
      const expected =
        kind === 'non-negative'
          ? 'a non-negative integer'
          : kind === 'or-infinity'
            ? 'a positive integer or Infinity'
            : 'a positive integer'
      throw new HeraldError(
        'invalid_option',
        `sqliteStore ${name} must be ${expected}, got ${JSON.stringify(value)}`,
      )
    }
  }
  return resolved
}
