import type { HeraldEvent } from '../../event.js'
import { ulid } from '../../ids.js'
import { indexAfter } from './recent.js'

/** Events kept per tenant for the subscriptions claiming here; older appends are left to ordinary claims. */
const KEEP = 10_000
/** A subscription nobody claimed here for this long no longer counts as claiming here. */
const IDLE_MS = 60_000

/** One append of this process: the events after `previous`, contiguous in the log. */
interface OwnChunk {
  readonly previous: string
  readonly events: HeraldEvent[]
}

/** The part of an own append a subscription may still claim ahead: its events after `previous`. */
export interface OwnPart {
  readonly previous: string
  readonly events: readonly HeraldEvent[]
}

interface Claimer {
  /** Own events up to this seq are not this subscription's to claim ahead any more ('' for none). */
  passed: string
  at: number
}

interface TenantAppends {
  chunks: OwnChunk[]
  held: number
  claimers: Map<string, Claimer>
}

/**
 * What this process appended to the tenants it claims durable subscriptions for, so that a claim
 * can lease those events ahead of the cursor without reading or parsing them (claim affinity:
 * with several processes, each delivers mostly what it published itself). The feed tells other
 * processes which subscriptions the appender claims (`claimers`), and they leave those events to
 * it for a moment before they take them.
 */
export class OwnAppends {
  /** This process's (this store's) name in the feed. */
  readonly instance = ulid()
  private readonly tenants = new Map<string, TenantAppends>()

  /** A claim of `subscriptionId` here: from now on this process keeps what it appends to the tenant. */
  claiming(tenant: string, subscriptionId: string, now: number): void {
    let appends = this.tenants.get(tenant)
    if (!appends) this.tenants.set(tenant, (appends = { chunks: [], held: 0, claimers: new Map() }))
    const claimer = appends.claimers.get(subscriptionId)
    if (claimer) claimer.at = now
    else appends.claimers.set(subscriptionId, { passed: '', at: now })
  }

  /**
   * What the feed says of an append here: this store's instance, a newline, and the subscriptions
   * claiming here, space-separated (ids have no whitespace); undefined when none claims here.
   */
  claimers(tenant: string, now: number): string | undefined {
    const appends = this.tenants.get(tenant)
    if (!appends) return undefined
    let ids: string | undefined
    for (const [id, claimer] of appends.claimers) {
      if (now - claimer.at > IDLE_MS) appends.claimers.delete(id)
      else ids = ids === undefined ? id : `${ids} ${id}`
    }
    if (ids === undefined) {
      this.tenants.delete(tenant)
      return undefined
    }
    return `${this.instance}\n${ids}`
  }

  /** An append of this process, which the claimers said they claim. */
  add(tenant: string, previous: string, events: HeraldEvent[]): void {
    const appends = this.tenants.get(tenant)
    if (!appends || events.length === 0) return
    appends.chunks.push({ previous, events })
    appends.held += events.length
    while (appends.held > KEEP) appends.held -= appends.chunks.shift()!.events.length
  }

  /** The own events after `cursor` that `subscriptionId` has not claimed or given up yet, in log order. */
  after(tenant: string, subscriptionId: string, cursor: string | undefined): OwnPart[] {
    const appends = this.tenants.get(tenant)
    const claimer = appends?.claimers.get(subscriptionId)
    if (!appends || !claimer || appends.chunks.length === 0) return []
    const from = cursor !== undefined && cursor > claimer.passed ? cursor : claimer.passed
    const parts: OwnPart[] = []
    for (const chunk of appends.chunks) {
      const events = chunk.events
      if (events[events.length - 1]!.seq! <= from) continue
      if (events[0]!.seq! > from) parts.push(chunk)
      else {
        const start = indexAfter(events, from, false)
        parts.push({ previous: events[start - 1]!.seq!, events: events.slice(start) })
      }
    }
    return parts
  }

  /** `subscriptionId` claimed (or found taken) the own events up to `seq`; forgets what every claimer passed. */
  passed(tenant: string, subscriptionId: string, seq: string): void {
    const appends = this.tenants.get(tenant)
    const claimer = appends?.claimers.get(subscriptionId)
    if (!appends || !claimer || seq <= claimer.passed) return
    claimer.passed = seq
    let slowest = seq
    for (const other of appends.claimers.values()) if (other.passed < slowest) slowest = other.passed
    const chunks = appends.chunks
    let drop = 0
    while (drop < chunks.length && chunks[drop]!.events[chunks[drop]!.events.length - 1]!.seq! <= slowest)
      appends.held -= chunks[drop++]!.events.length
    if (drop > 0) chunks.splice(0, drop)
  }
}
