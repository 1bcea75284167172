import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { HeraldError } from '../errors.js'

/**
 * Standard Webhooks signatures (symmetric `v1`): the signed content is `id.timestamp.body`, the
 * signature is `v1,<base64 HMAC-SHA256>` keyed with the base64 bytes after a `whsec_` prefix,
 * and `webhook-signature` may list several space-separated signatures (key rotation).
 */
export const SECRET_PREFIX = 'whsec_'
const MIN_KEY_BYTES = 24
const MAX_KEY_BYTES = 64
/** A receiver refuses a timestamp further than this from its clock (replay protection). */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60

export const WEBHOOK_HEADERS = {
  id: 'webhook-id',
  timestamp: 'webhook-timestamp',
  signature: 'webhook-signature',
} as const

/** A fresh secret: `whsec_` + 32 random bytes in base64. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64')
}

/** The key bytes of a secret; throws `invalid_option` for a malformed one. */
export function secretKey(secret: string): Buffer {
  if (typeof secret !== 'string' || !secret.startsWith(SECRET_PREFIX)) {
    throw new HeraldError('invalid_option', `secret must start with "${SECRET_PREFIX}"`)
  }
  const encoded = secret.slice(SECRET_PREFIX.length)
  const key = Buffer.from(encoded, 'base64')
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new HeraldError(
      'invalid_option',
      `secret must be "${SECRET_PREFIX}" followed by ${MIN_KEY_BYTES}-${MAX_KEY_BYTES} bytes in base64`,
    )
  }
  return key
}

function hmac(key: Buffer, id: string, timestamp: number, body: string): string {
  return createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')
}

/** The three headers that sign one request. `timestamp` is in seconds. */
export function signatureHeaders(
  secret: string | Buffer,
  id: string,
  body: string,
  timestamp: number = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const key = typeof secret === 'string' ? secretKey(secret) : secret
  return {
    [WEBHOOK_HEADERS.id]: id,
    [WEBHOOK_HEADERS.timestamp]: String(timestamp),
    [WEBHOOK_HEADERS.signature]: `v1,${hmac(key, id, timestamp, body)}`,
  }
}

export type HeaderBag = Record<string, string | string[] | undefined>

function header(headers: HeaderBag, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/**
 * Checks a request's signature. Returns undefined when it is valid, else why not (for a 401).
 * `headers` have lower-case names, as Node gives them.
 */
export function verifySignature(
  secret: string | Buffer,
  headers: HeaderBag,
  body: string,
  options: { toleranceSeconds?: number; now?: number } = {},
): string | undefined {
  const id = header(headers, WEBHOOK_HEADERS.id)
  const timestampText = header(headers, WEBHOOK_HEADERS.timestamp)
  const signatures = header(headers, WEBHOOK_HEADERS.signature)
  if (!id || !timestampText || !signatures)
    return 'missing webhook-id, webhook-timestamp or webhook-signature'
  const timestamp = Number(timestampText)
  if (!/^\d{1,12}$/.test(timestampText)) return 'webhook-timestamp is not a number of seconds'
  const now = Math.floor((options.now ?? Date.now()) / 1000)
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS
  // NaN would turn the check off: every comparison with it is false.
  if (!Number.isFinite(tolerance) || tolerance < 0)
    throw new HeraldError('invalid_option', 'toleranceSeconds must be a number of seconds, 0 or more')
  if (Math.abs(now - timestamp) > tolerance) return 'webhook-timestamp is too far from the current time'
  const key = typeof secret === 'string' ? secretKey(secret) : secret
  const expected = Buffer.from(hmac(key, id, timestamp, body), 'base64')
  for (const candidate of signatures.split(' ')) {
    const comma = candidate.indexOf(',')
    if (comma === -1 || candidate.slice(0, comma) !== 'v1') continue
    const given = Buffer.from(candidate.slice(comma + 1), 'base64')
    if (given.length === expected.length && timingSafeEqual(given, expected)) return undefined
  }
  return 'no valid v1 signature'
}
