import { HeraldError } from '../errors.js'
import { assertTenant, DEFAULT_TENANT, type Tenant } from '../event.js'
import {
  DEFAULT_RETRY_POLICY,
  MAX_ATTEMPT_TIMEOUT,
  resolveRetryPolicy,
  type RetryPolicy,
} from '../delivery/policy.js'
import type { StoreSpec } from './open-store.js'

/** The module's `options` in `medusa-config`. Every key is optional. */
export interface HeraldMedusaOptions {
  /** `'memory'` (default), `'sqlite:<path>'`, `'redis://…'` / `'rediss://…'` (as the server reads them), or a Herald Store object. */
  store?: StoreSpec
  /** Key prefix of a Redis store (wins over `?prefix=` in the URL), so several apps can share one Redis. */
  prefix?: string
  /** Retry policy of every subscriber (fields default to MEDUSA_RETRY_POLICY). */
  retry?: Partial<RetryPolicy>
  /** How long grouped events wait for release, in seconds (Medusa's unit and default: 600). */
  groupedEventsTTL?: number
  /** Tenant the module's events live in (default `default` / `master`): isolates apps sharing a store. */
  account?: string
  workspace?: string
  /** How long shutdown waits for deliveries in flight, in ms (default 10 s). */
  drainTimeout?: number
  /**
   * Largest event (data + metadata as JSON), in bytes (default 16 MiB). Medusa's modules emit
   * one event with every id a bulk change touched, so the limit sits well above the core's 1 MiB.
   */
  maxPayloadBytes?: number
}

export interface ResolvedOptions {
  store: StoreSpec | undefined
  prefix: string | undefined
  retry: RetryPolicy
  groupTtlMs: number
  tenant: Tenant
  drainTimeout: number | undefined
  maxPayloadBytes: number
}

export const DEFAULT_GROUPED_EVENTS_TTL_SECONDS = 600
export const MEDUSA_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

/**
 * Herald's default policy with the longest attempt timeout it allows (1 hour). Medusa's
 * subscribers were written for buses that never time an attempt out (the Index module's full
 * sync runs for minutes); a timeout that fires while a subscriber keeps working starts a retry
 * alongside it. Lower `retry.timeout` where subscribers are known to be quick.
 */
export const MEDUSA_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  ...DEFAULT_RETRY_POLICY,
  timeout: MAX_ATTEMPT_TIMEOUT,
})

const KNOWN = new Set<string>([
  'store',
  'prefix',
  'retry',
  'groupedEventsTTL',
  'account',
  'workspace',
  'drainTimeout',
  'maxPayloadBytes',
])

/** Hints for keys that belong to Medusa's own event modules. */
const MOVED: Record<string, string> = {
  redisUrl: "give the Redis URL as store: 'redis://…'",
  redisOptions: 'Herald opens its own Redis connection from the store URL',
  jobOptions: 'retries come from the retry option (a Herald retry policy)',
  queueName: 'use prefix to separate apps sharing one Redis',
  queueOptions: 'Herald has no BullMQ queue to configure',
  workerOptions: 'concurrency is retry.concurrency, per subscriber',
}

function positiveNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HeraldError('invalid_option', `${name} must be a positive number, got ${JSON.stringify(value)}`)
  }
  return value
}

/** Checks the module options once, at construction, so a typo fails the boot with a clear message. */
export function resolveOptions(input: unknown): ResolvedOptions {
  const options = (input ?? {}) as Record<string, unknown>
  if (typeof options !== 'object' || Array.isArray(options))
    throw new HeraldError('invalid_option', 'module options must be an object')
  for (const key of Object.keys(options)) {
    if (KNOWN.has(key)) continue
    const hint = MOVED[key]
    throw new HeraldError(
      'invalid_option',
      `unknown option ${JSON.stringify(key)}${hint ? `: ${hint}` : ''}; known options: ${[...KNOWN].join(', ')}`,
    )
  }
  const { prefix, account, workspace } = options
  if (prefix !== undefined && (typeof prefix !== 'string' || prefix === ''))
    throw new HeraldError('invalid_option', 'prefix must be a non-empty string')
  const tenant =
    account === undefined && workspace === undefined
      ? DEFAULT_TENANT
      : assertTenant({
          account: account ?? DEFAULT_TENANT.account,
          workspace: workspace ?? DEFAULT_TENANT.workspace,
        })
  const ttl =
    options.groupedEventsTTL === undefined
      ? DEFAULT_GROUPED_EVENTS_TTL_SECONDS
      : positiveNumber('groupedEventsTTL', options.groupedEventsTTL)
  return {
    store: options.store as StoreSpec | undefined,
    prefix: prefix as string | undefined,
    retry: resolveRetryPolicy(options.retry as Partial<RetryPolicy> | undefined, MEDUSA_RETRY_POLICY),
    groupTtlMs: ttl * 1000,
    tenant,
    drainTimeout:
      options.drainTimeout === undefined ? undefined : positiveNumber('drainTimeout', options.drainTimeout),
    maxPayloadBytes:
      options.maxPayloadBytes === undefined
        ? MEDUSA_MAX_PAYLOAD_BYTES
        : positiveNumber('maxPayloadBytes', options.maxPayloadBytes),
  }
}
