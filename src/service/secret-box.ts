import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto'
import { HeraldError } from '../errors.js'

/**
 * Webhook secrets sealed at rest. Every delivery is signed with its subscription's secret, so the
 * store must give it back; with a `secretsKey` it holds only `sealed:v1:` + base64url(iv ‖ tag ‖
 * AES-256-GCM ciphertext), and reading the store (a backup, a shared Redis) no longer yields keys
 * that can forge deliveries.
 */
const SEALED = 'sealed:v1:'
const IV_BYTES = 12
const TAG_BYTES = 16
/** A passphrase shorter than this is refused: it would be the weak point of every secret. */
export const MIN_SECRETS_KEY_LENGTH = 16

export function isSealed(value: string): boolean {
  return value.startsWith(SEALED)
}

export class SecretBox {
  private readonly key: Buffer

  /** `passphrase`: the operator's `secretsKey`; stretched once (scrypt), as it may be a phrase. */
  constructor(passphrase: string) {
    if (typeof passphrase !== 'string' || passphrase.length < MIN_SECRETS_KEY_LENGTH) {
      throw new HeraldError(
        'invalid_option',
        `secretsKey must be a string of at least ${MIN_SECRETS_KEY_LENGTH} characters`,
      )
    }
    this.key = scryptSync(passphrase, 'herald webhook secrets v1', 32)
  }

  seal(secret: string): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    const text = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()])
    return SEALED + Buffer.concat([iv, cipher.getAuthTag(), text]).toString('base64url')
  }

  /** The secret in `value`; a value that is not sealed is returned as it is (stored before sealing). */
  open(value: string): string {
    if (!isSealed(value)) return value
    const bytes = Buffer.from(value.slice(SEALED.length), 'base64url')
    try {
      if (bytes.length <= IV_BYTES + TAG_BYTES) throw new Error('too short')
      const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, IV_BYTES))
      decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES))
      return Buffer.concat([
        decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8')
    } catch {
      throw new HeraldError(
        'invalid_option',
        'a webhook secret in the store was sealed with another secretsKey (or is damaged)',
      )
    }
  }
}

/** The secret in a stored value, with `box` when there is one. */
export function openSecret(box: SecretBox | undefined, value: string): string {
  if (box) return box.open(value)
  if (isSealed(value)) {
    throw new HeraldError(
      'invalid_option',
      'a webhook secret in the store is sealed: configure the secretsKey it was sealed with',
    )
  }
  return value
}
