import { HeraldError } from '../errors.js'

/**
 * How a subscription's deliveries are retried (VTEX IO names and meaning; times in milliseconds).
 * - Attempt k (0-based) may run for `timeout × exponentialTimeoutCoefficient^k`.
 * - Retry n (1-based) starts `initialBackoffDelay × exponentialBackoffCoefficient^(n−1)` after
 *   the failure, plus up to 20 % random jitter.
 * - After `retries` failed retries the delivery becomes a dead letter.
 * - `concurrency` caps the subscription's deliveries in flight.
 */
export interface RetryPolicy {
  retries: number
  timeout: number
  initialBackoffDelay: number
  exponentialBackoffCoefficient: number
  exponentialTimeoutCoefficient: number
  concurrency: number
}

/** Safe defaults: bounded retries over about 6 s of backoff, a finite timeout, a small concurrency. */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  retries: 5,
  timeout: 30_000,
  initialBackoffDelay: 200,
  exponentialBackoffCoefficient: 2,
  exponentialTimeoutCoefficient: 1,
  concurrency: 10,
})

/** No single backoff waits longer than a day, whatever the coefficients say. */
export const MAX_BACKOFF_DELAY = 24 * 60 * 60 * 1000
/** No attempt runs longer than an hour. */
export const MAX_ATTEMPT_TIMEOUT = 60 * 60 * 1000
export const JITTER = 0.2

const LIMITS: Record<keyof RetryPolicy, { min: number; max: number; integer: boolean }> = {
  retries: { min: 0, max: 100, integer: true },
  timeout: { min: 1, max: MAX_ATTEMPT_TIMEOUT, integer: false },
  initialBackoffDelay: { min: 0, max: MAX_BACKOFF_DELAY, integer: false },
  exponentialBackoffCoefficient: { min: 1, max: 100, integer: false },
  exponentialTimeoutCoefficient: { min: 1, max: 100, integer: false },
  concurrency: { min: 1, max: 10_000, integer: true },
}

/** Fills a partial policy from `base` and checks every field; throws `invalid_option` naming the field. */
export function resolveRetryPolicy(
  partial: Partial<RetryPolicy> | undefined,
  base: Readonly<RetryPolicy> = DEFAULT_RETRY_POLICY,
): RetryPolicy {
  if (partial !== undefined && (typeof partial !== 'object' || partial === null)) {
    throw new HeraldError('invalid_option', 'retry policy must be an object')
  }
  const policy: RetryPolicy = { ...base }
  for (const field of Object.keys(LIMITS) as (keyof RetryPolicy)[]) {
    const value = partial?.[field]
    if (value === undefined) continue
    const { min, max, integer } = LIMITS[field]
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < min ||
      value > max ||
      (integer && !Number.isInteger(value))
    ) {
      throw new HeraldError(
        'invalid_option',
        `retry.${field} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(value)}`,
      )
    }
    policy[field] = value
  }
  return policy
}

/**
 * Throws `invalid_option` naming a field of `partial` that is not a retry option: where a policy
 * arrives as data (a registration over HTTP), a misspelt `retrys` would otherwise be dropped
 * and deliveries quietly follow the defaults.
 */
export function assertOnlyRetryFields(partial: object, where = 'retry'): void {
  for (const field of Object.keys(partial)) {
    if (!Object.hasOwn(LIMITS, field)) {
      throw new HeraldError(
        'invalid_option',
        `${where}.${field} is not a retry option (${Object.keys(LIMITS).join(', ')})`,
      )
    }
  }
}

/** The retry options of `options`, leaving out whatever else shares its object (VTEX client options). */
export function retryFieldsOf(options: Partial<RetryPolicy>): Partial<RetryPolicy> {
  const picked: Partial<RetryPolicy> = {}
  for (const field of Object.keys(LIMITS) as (keyof RetryPolicy)[])
    if (options[field] !== undefined) picked[field] = options[field]
  return picked
}

/** How long attempt `attempt` (0-based) may run. */
export function attemptTimeout(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.timeout * policy.exponentialTimeoutCoefficient ** attempt, MAX_ATTEMPT_TIMEOUT)
}

/** The wait before retry `retry` (1-based), jitter included; `random` is injectable for tests. */
export function backoffDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const base = Math.min(
    policy.initialBackoffDelay * policy.exponentialBackoffCoefficient ** (retry - 1),
    MAX_BACKOFF_DELAY,
  )
  return base + base * JITTER * random()
}
