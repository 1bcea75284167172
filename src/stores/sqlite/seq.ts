/**
 * Seqs are SQLite integer keys shown as 16-digit zero-padded strings, so that plain string
 * comparison (the Store contract's order) agrees with the integer order.
 */
export const SEQ_WIDTH = 16
const SEQ = /^\d{16}$/

export function formatSeq(n: number): string {
  return String(n).padStart(SEQ_WIDTH, '0')
}

/** A cursor or start seq: '' stands for "before every event". */
export function formatPosition(n: number): string {
  return n === 0 ? '' : formatSeq(n)
}

/** The integer of a seq this store gave out, or undefined for anything else. */
export function parseSeq(seq: string): number | undefined {
  return typeof seq === 'string' && SEQ.test(seq) ? Number(seq) : undefined
}

/**
 * The largest integer whose seq string sorts at or before `after`, so that "seq > after" on
 * strings is "n > bound" on integers. Resume tokens come from clients, so any string is handled
 * the way the contract's string comparison would handle it.
 */
export function seqBound(after: string | undefined): number {
  if (after === undefined || after === '') return -1
  const exact = parseSeq(after)
  if (exact !== undefined) return exact
  let digits = 0
  while (
    digits < after.length &&
    digits < SEQ_WIDTH &&
    after.charCodeAt(digits) >= 48 &&
    after.charCodeAt(digits) <= 57
  )
    digits++
  if (digits === SEQ_WIDTH) return Math.min(Number(after.slice(0, SEQ_WIDTH)), Number.MAX_SAFE_INTEGER)
  const prefix = digits === 0 ? 0 : Number(after.slice(0, digits))
  const scale = 10 ** (SEQ_WIDTH - digits)
  // A character after the digits that sorts below '0' (or none) puts `after` before every seq
  // with this prefix; one that sorts above '9' puts it after all of them.
  const next = after.charCodeAt(digits)
  const above = digits < after.length && next > 57
  return Math.min((prefix + (above ? 1 : 0)) * scale - 1, Number.MAX_SAFE_INTEGER)
}
