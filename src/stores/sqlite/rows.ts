import type { HeraldEvent } from '../../event.js'
import type { DeliveryRecord, DeliveryRecordState, SubscriptionRecord } from '../store.js'
import { formatPosition, formatSeq } from './seq.js'
import type { DeliveryRow, SubscriptionRow } from './statements.js'

/** Rows as the Store contract shows them. */
export function parseEvent(seq: number, body: string): HeraldEvent {
  const event = JSON.parse(body) as HeraldEvent
  event.seq = formatSeq(seq)
  return event
}

export function toSubscription(row: SubscriptionRow): SubscriptionRecord {
  const record: SubscriptionRecord = {
    account: row.account,
    workspace: row.workspace,
    id: row.id,
    patterns: JSON.parse(row.patterns) as string[],
    createdAt: row.created_at,
    startSeq: formatPosition(row.start_seq),
    cursor: formatPosition(row.cursor),
  }
  if (row.sender !== null) record.sender = row.sender
  if (row.meta !== null) record.meta = JSON.parse(row.meta) as Record<string, unknown>
  return record
}

export function toRecord(row: DeliveryRow): DeliveryRecord {
  const record: DeliveryRecord = {
    subscriptionId: row.subscription,
    seq: formatSeq(row.seq),
    eventId: row.event_id ?? '',
    state: row.state as DeliveryRecordState,
    attempts: row.attempts,
    updatedAt: row.updated_at,
  }
  if (row.last_error !== null) record.lastError = row.last_error
  if (row.state === 'leased') {
    if (row.due_at !== null) record.leaseUntil = row.due_at
    if (row.consumer !== null) record.consumer = row.consumer
  } else if (row.state === 'retrying' && row.due_at !== null) record.nextAttemptAt = row.due_at
  return record
}
