/**
 * ULIDs (https://github.com/ulid/spec): 48-bit millisecond time + 80 random bits, Crockford
 * base32, 26 characters, sortable by time. Within one millisecond the random part is incremented
 * (the spec's monotonic mode), so ids of one process sort in creation order and generating one
 * costs an increment, not a trip to the random source. Uses only `globalThis.crypto`, so it runs
 * in browsers too.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const LOW_CHARS = 8 // the low 40 random bits, as 8 base32 digits
const LOW_LIMIT = 2 ** 40

let lastTime = -1
let timePart = ''
let highPart = '' // the high 40 random bits, fixed within a millisecond
let low = 0

function encode(value: number, length: number): string {
  let out = ''
  for (let i = 0; i < length; i++) {
    out = ALPHABET[value % 32] + out
    value = Math.floor(value / 32)
  }
  return out
}

function random40(): number {
  const bytes = new Uint8Array(5)
  globalThis.crypto.getRandomValues(bytes)
  let value = 0
  for (const byte of bytes) value = value * 256 + byte
  return value
}

export function ulid(now: number = Date.now()): string {
  if (now > lastTime) {
    lastTime = now
    timePart = encode(now, 10)
    highPart = encode(random40(), 8)
    // Leave headroom so increments within this millisecond cannot overflow the low part.
    low = Math.floor(random40() / 2)
  } else {
    low++
    if (low >= LOW_LIMIT) {
      // 2^39 ids in one millisecond cannot happen; this keeps the id unique if the clock stalls.
      highPart = encode(random40(), 8)
      low = 0
    }
  }
  return timePart + highPart + encode(low, LOW_CHARS)
}
