import type { Database } from './schema.js'

/** A delivery record as stored, with its subscription's id and its event's id. */
export interface DeliveryRow {
  subscription: string
  seq: number
  state: 'leased' | 'retrying' | 'dead'
  attempts: number
  consumer: string | null
  due_at: number | null
  last_error: string | null
  updated_at: number
  event_id: string | null
}

export interface DeadLetterRow extends DeliveryRow {
  body: string
}

export interface SubscriptionRow {
  account: string
  workspace: string
  id: string
  patterns: string
  sender: string | null
  meta: string | null
  created_at: number
  start_seq: number
  cursor: number
}

const DELIVERY_COLUMNS =
  's.id AS subscription, d.seq, d.state, d.attempts, d.consumer, d.due_at, d.last_error, d.updated_at'
const SUBSCRIPTION_COLUMNS =
  't.account, t.workspace, s.id, s.patterns, s.sender, s.meta, s.created_at, s.start_seq, s.cursor'

/** The last seq given out: the newest event's, or the one kept when retention removed it. */
export const LAST_SEQ =
  "SELECT max(coalesce((SELECT max(seq) FROM events), 0), (SELECT value FROM herald_meta WHERE key = 'last_seq'))"

/** The part of a prepared statement the store uses, typed by its parameters and result row. */
export interface Statement<P extends unknown[], R> {
  run(...params: P): { changes: number }
  get(...params: P): R | undefined
  all(...params: P): R[]
}

/** Prepares `sql`; `pluck` gives rows as their one column, `raw` as arrays. */
export function prepare<P extends unknown[] = [], R = unknown>(
  db: Database,
  sql: string,
  shape?: 'pluck' | 'raw',
): Statement<P, R> {
  const statement = db.prepare(sql)
  if (shape === 'pluck') statement.pluck()
  else if (shape === 'raw') statement.raw()
  return statement as unknown as Statement<P, R>
}

/** Every statement the store runs, prepared once: the SQL of the store, in one place. */
export function prepareStatements(db: Database) {
  return {
    // tenants
    tenantId: prepare<[string, string], number>(
      db,
      'SELECT id FROM tenants WHERE account = ? AND workspace = ?',
      'pluck',
    ),
    addTenant: prepare<[string, string]>(
      db,
      'INSERT OR IGNORE INTO tenants (account, workspace) VALUES (?, ?)',
    ),

    // the log
    lastSeq: prepare<[], number>(db, LAST_SEQ, 'pluck'),
    eventBody: prepare<[number], string>(db, 'SELECT body FROM events WHERE seq = ?', 'pluck'),
    readAfter: prepare<[number, number, number], [number, string]>(
      db,
      'SELECT seq, body FROM events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?',
      'raw',
    ),
    seqsAfter: prepare<[number, number, number], number>(
      db,
      'SELECT seq FROM events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?',
      'pluck',
    ),
    eventById: prepare<[number, string], [number, string]>(
      db,
      'SELECT seq, body FROM events WHERE tenant = ? AND id = ? ORDER BY seq DESC LIMIT 1',
      'raw',
    ),
    head: prepare<[number], number | null>(db, 'SELECT max(seq) FROM events WHERE tenant = ?', 'pluck'),

    // locks: 'lock:<tenant>\n<name>' → '<holder's token> <time it lapses>'
    lockHolder: prepare<[string], string>(db, 'SELECT value FROM herald_meta WHERE key = ?', 'pluck'),
    setLock: prepare<[string, string]>(db, 'INSERT OR REPLACE INTO herald_meta (key, value) VALUES (?, ?)'),
    dropLock: prepare<[string, string]>(db, 'DELETE FROM herald_meta WHERE key = ? AND value LIKE ?'),

    // dedupe
    dedupeUntil: prepare<[number, string], number>(
      db,
      'SELECT until FROM dedupe WHERE tenant = ? AND id = ?',
      'pluck',
    ),
    // The topic a publisher id was last used for: stored, or staged in a group.
    storedTopic: prepare<[number, string], string>(
      db,
      "SELECT json_extract(body, '$.topic') FROM events WHERE tenant = ? AND id = ? ORDER BY seq DESC LIMIT 1",
      'pluck',
    ),
    stagedTopic: prepare<[number, string], string>(
      db,
      "SELECT topic FROM staged WHERE tenant = ? AND json_extract(body, '$.id') = ? LIMIT 1",
      'pluck',
    ),
    remember: prepare<[number, string, number]>(
      db,
      'INSERT OR REPLACE INTO dedupe (tenant, id, until) VALUES (?, ?, ?)',
    ),

    // staged groups
    groupExpiry: prepare<[number, string], number>(
      db,
      'SELECT expires_at FROM groups WHERE tenant = ? AND group_id = ?',
      'pluck',
    ),
    expiredGroupsOf: prepare<[number, number], string>(
      db,
      'SELECT group_id FROM groups WHERE tenant = ? AND expires_at <= ?',
      'pluck',
    ),
    upsertGroup: prepare<[number, string, number]>(
      db,
      'INSERT INTO groups (tenant, group_id, expires_at) VALUES (?, ?, ?) ON CONFLICT (tenant, group_id) DO UPDATE SET expires_at = excluded.expires_at',
    ),
    deleteGroup: prepare<[number, string]>(db, 'DELETE FROM groups WHERE tenant = ? AND group_id = ?'),
    stage: prepare<[number, string, string, string]>(
      db,
      'INSERT INTO staged (tenant, group_id, topic, body) VALUES (?, ?, ?, ?)',
    ),
    stagedBodies: prepare<[number, string], string>(
      db,
      'SELECT body FROM staged WHERE tenant = ? AND group_id = ? ORDER BY n',
      'pluck',
    ),
    deleteStaged: prepare<[number, string]>(db, 'DELETE FROM staged WHERE tenant = ? AND group_id = ?'),
    // Staged events never stored: their publisher ids may come again (run before deleteStaged…).
    forgetStagedIds: prepare<[number, number, string]>(
      db,
      "DELETE FROM dedupe WHERE tenant = ? AND id IN (SELECT json_extract(body, '$.id') FROM staged WHERE tenant = ? AND group_id = ?)",
    ),
    forgetStagedTopicIds: prepare<[number, number, string, string]>(
      db,
      "DELETE FROM dedupe WHERE tenant = ? AND id IN (SELECT json_extract(body, '$.id') FROM staged WHERE tenant = ? AND group_id = ? AND topic = ?)",
    ),
    deleteStagedTopic: prepare<[number, string, string]>(
      db,
      'DELETE FROM staged WHERE tenant = ? AND group_id = ? AND topic = ?',
    ),
    stagedCount: prepare<[number, string], number>(
      db,
      'SELECT count(*) FROM staged WHERE tenant = ? AND group_id = ?',
      'pluck',
    ),

    // subscriptions
    subscriptionKey: prepare<[number, string], number>(
      db,
      'SELECT key FROM subscriptions WHERE tenant = ? AND id = ?',
      'pluck',
    ),
    subscriptionKeysOf: prepare<[number], [number, string]>(
      db,
      'SELECT key, id FROM subscriptions WHERE tenant = ? ORDER BY id',
      'raw',
    ),
    subscriptionForClaim: prepare<[number, string], { key: number; cursor: number }>(
      db,
      'SELECT key, cursor FROM subscriptions WHERE tenant = ? AND id = ?',
    ),
    subscription: prepare<[number, string], SubscriptionRow>(
      db,
      `SELECT ${SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN tenants t ON t.id = s.tenant WHERE s.tenant = ? AND s.id = ?`,
    ),
    subscriptionsOf: prepare<[number], SubscriptionRow>(
      db,
      `SELECT ${SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN tenants t ON t.id = s.tenant WHERE s.tenant = ? ORDER BY s.id`,
    ),
    allSubscriptions: prepare<[], SubscriptionRow>(
      db,
      `SELECT ${SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN tenants t ON t.id = s.tenant ORDER BY t.account, t.workspace, s.id`,
    ),
    insertSubscription: prepare<
      [number, string, string, string | null, string | null, number, number, number]
    >(
      db,
      'INSERT INTO subscriptions (tenant, id, patterns, sender, meta, created_at, start_seq, cursor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    updateSubscription: prepare<[string, string | null, string | null, number, string]>(
      db,
      'UPDATE subscriptions SET patterns = ?, sender = ?, meta = ? WHERE tenant = ? AND id = ?',
    ),
    deleteSubscription: prepare<[number]>(db, 'DELETE FROM subscriptions WHERE key = ?'),
    moveCursor: prepare<[number, number]>(db, 'UPDATE subscriptions SET cursor = ? WHERE key = ?'),

    // delivery records (the rest is in ledger.ts)
    recordsOfEvent: prepare<[number, number], DeliveryRow>(
      db,
      `SELECT ${DELIVERY_COLUMNS}, e.id AS event_id FROM subscriptions s JOIN deliveries d ON d.sub = s.key AND d.seq = ?
       LEFT JOIN events e ON e.seq = d.seq WHERE s.tenant = ? ORDER BY s.id`,
    ),

    // dead letters
    deadLetters: prepare<
      [{ tenant: number; after: number; subscription: string | null; limit: number }],
      DeadLetterRow
    >(
      db,
      `SELECT ${DELIVERY_COLUMNS}, e.id AS event_id, e.body FROM deliveries d JOIN subscriptions s ON s.key = d.sub JOIN events e ON e.seq = d.seq
       WHERE d.state = 'dead' AND s.tenant = @tenant AND d.seq > @after AND (@subscription IS NULL OR s.id = @subscription)
       ORDER BY d.seq, s.id LIMIT @limit`,
    ),
    redrive: prepare<[number, number, number, number]>(
      db,
      "UPDATE deliveries SET state = 'retrying', attempts = 0, due_at = ?, consumer = NULL, updated_at = ? WHERE sub = ? AND seq = ? AND state = 'dead'",
    ),
    deleteDeadLetter: prepare<[number, number]>(
      db,
      "DELETE FROM deliveries WHERE sub = ? AND seq = ? AND state = 'dead'",
    ),
  }
}

export type Statements = ReturnType<typeof prepareStatements>
