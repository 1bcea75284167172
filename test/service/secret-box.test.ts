import { describe, expect, it } from 'vitest'
import { SecretBox, isSealed, openSecret } from '../../src/service/secret-box.js'
import { generateSecret } from '../../src/service/signature.js'

const KEY = 'correct horse battery staple'

describe('SecretBox', () => {
  it('seals a secret so that the stored text does not contain it, and opens it again', () => {
    const box = new SecretBox(KEY)
    const secret = generateSecret()
    const sealed = box.seal(secret)
    expect(isSealed(sealed)).toBe(true)
    expect(sealed).not.toContain(secret.slice(6, 20))
    expect(box.open(sealed)).toBe(secret)
    // A fresh nonce each time: two seals of one secret differ, and both open.
    const again = box.seal(secret)
    expect(again).not.toBe(sealed)
    expect(new SecretBox(KEY).open(again)).toBe(secret)
  })

  it('refuses to open with another key, or a damaged value, with a clear error', () => {
    const sealed = new SecretBox(KEY).seal(generateSecret())
    expect(() => new SecretBox('another key, just as long').open(sealed)).toThrow(
      expect.objectContaining({
        code: 'invalid_option',
        message: expect.stringContaining('another secretsKey'),
      }),
    )
    // One character of the sealed text changed (not the last, whose low bits may be padding).
    const at = sealed.length - 2
    const flipped = sealed.slice(0, at) + (sealed[at] === 'A' ? 'B' : 'A') + sealed.slice(at + 1)
    expect(() => new SecretBox(KEY).open(flipped)).toThrow(/another secretsKey \(or is damaged\)/)
    expect(() => new SecretBox(KEY).open('sealed:v1:AAAA')).toThrow(/damaged/)
  })

  it('passes a secret stored before sealing through; without a key, a sealed one is refused', () => {
    const plain = generateSecret()
    expect(new SecretBox(KEY).open(plain)).toBe(plain)
    expect(openSecret(undefined, plain)).toBe(plain)
    expect(() => openSecret(undefined, new SecretBox(KEY).seal(plain))).toThrow(
      /sealed: configure the secretsKey it was sealed with/,
    )
  })

  it('refuses a passphrase shorter than 16 characters', () => {
    expect(() => new SecretBox('too short')).toThrow(/at least 16 characters/)
  })
})
