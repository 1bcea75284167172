/**
 * ULIDs (https://github.com/ulid/spec): 48-bit millisecond time + 80 random bits, Crockford
 * base32, 26 characters, sortable by time. Within one millisecond the random part is incremented
 * (the spec's monotonic mode), so ids of one process sort in creation order and an id costs an
 * increment and a few string joins, not a trip to the random source. Uses only
 * `globalThis.crypto`, so it runs in browsers too.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
/** Every pair of base32 digits, so the fastest-changing 10 bits cost one lookup. */
const PAIRS: string[] = []
for (const a of ALPHABET) for (const b of ALPHABET) PAIRS.push(a + b)

let lastTime = -1
let prefix = '' // time (10 chars) + high random bits (8 chars)
let middle = 0 // bits 10..39 of the low random part, as a number
let head = '' // prefix + those bits as 6 base32 digits: all but the last two characters
let tail = 0 // bits 0..9: the part incremented per id

function encode(value: number, length: number): string {
  let out = ''
  for (let i = 0; i < length; i++) {
    out = ALPHABET[value % 32] + out
    value = Math.floor(value / 32)
  }
  return out
}

/** Random bytes are fetched in bulk: a call to the random source costs microseconds. */
const pool = new Uint8Array(1024)
let poolAt = pool.length

function random(bits: number): number {
  const count = Math.ceil(bits / 8)
  if (poolAt + count > pool.length) {
    globalThis.crypto.getRandomValues(pool)
    poolAt = 0
  }
  let value = 0
  for (let i = 0; i < count; i++) value = value * 256 + pool[poolAt++]!
  return value % 2 ** bits
}

function newMiddle(value: number): void {
  middle = value
  // Flattened once here, so that each id is a single join.
  head = (prefix + encode(value, 6)).split('').join('')
}

export function ulid(now: number = Date.now()): string {
  if (now > lastTime) {
    lastTime = now
    prefix = encode(now, 10) + encode(random(40), 8)
    // The top bit stays clear, leaving room to count up within this millisecond.
    newMiddle(random(29))
    tail = random(10)
  } else if (++tail === 1024) {
    tail = 0
    // 2^39 ids in one millisecond cannot happen; this only keeps ids unique if the clock stalls.
    if (middle + 1 >= 2 ** 30) {
      prefix = prefix.slice(0, 10) + encode(random(40), 8)
      newMiddle(0)
    } else newMiddle(middle + 1)
  }
  return head + PAIRS[tail]
}
