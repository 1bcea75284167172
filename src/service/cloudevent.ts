import type { HeraldEvent } from '../event.js'

/**
 * A stored event as a CloudEvents 1.0 structured-mode event (DESIGN §3): `type` = topic,
 * `source` = sender, the tenant in the extensions `heraldaccount`/`heraldworkspace`, metadata as
 * one JSON string in `heraldmetadata`, the event's own `type` in `heraldtype`, its log position
 * in `heraldseq`.
 */
export interface OutgoingCloudEvent {
  specversion: '1.0'
  id: string
  source: string
  type: string
  time: string
  datacontenttype: 'application/json'
  data: unknown
  heraldaccount: string
  heraldworkspace: string
  heraldmetadata?: string
  heraldtype?: string
  heraldseq?: string
}

export function toCloudEvent(event: HeraldEvent): OutgoingCloudEvent {
  const out: OutgoingCloudEvent = {
    specversion: '1.0',
    id: event.id,
    // A CloudEvent needs a source; an event without a sender comes from its tenant.
    source: event.sender ?? `/herald/${event.account}/${event.workspace}`,
    type: event.topic,
    time: event.time,
    datacontenttype: 'application/json',
    data: event.data,
    heraldaccount: event.account,
    heraldworkspace: event.workspace,
  }
  if (Object.keys(event.metadata).length > 0) out.heraldmetadata = JSON.stringify(event.metadata)
  if (event.type !== undefined) out.heraldtype = event.type
  if (event.seq !== undefined) out.heraldseq = event.seq
  return out
}
