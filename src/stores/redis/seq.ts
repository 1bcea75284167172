/**
 * Positions in a tenant's log. The log is a Redis stream with one entry per append (an array of
 * events), so an event's `seq` is its entry's stream id plus its index in the entry, every part
 * zero-padded to a fixed width: `<ms:15>-<n:10>-<index:5>`. Plain string comparison then orders
 * seqs as the log does. Stream ids come from the server clock, and Redis never hands out an id
 * below the stream's last one (even when its clock steps back), so seqs keep growing across
 * restarts of a persistent Redis.
 */
const MS_WIDTH = 15
const N_WIDTH = 10
const INDEX_WIDTH = 5
/** Events per stream entry at most (an append of more is split over several entries). */
export const MAX_PER_ENTRY = 10_000
const ZEROS = '0'.repeat(MS_WIDTH)
const SEQ = /^\d{15}-\d{10}-\d{5}$/

/** The seq prefix shared by every event of the entry `id`; `seqAt(prefix, i)` completes it. */
export function seqPrefix(id: string): string {
  const dash = id.indexOf('-')
  const ms = id.slice(0, dash)
  const n = id.slice(dash + 1)
  return ZEROS.slice(0, MS_WIDTH - ms.length) + ms + '-' + ZEROS.slice(0, N_WIDTH - n.length) + n + '-'
}

export function seqAt(prefix: string, index: number): string {
  const i = String(index)
  return prefix + ZEROS.slice(0, INDEX_WIDTH - i.length) + i
}

export function seqOf(id: string, index: number): string {
  return seqAt(seqPrefix(id), index)
}

/** The stream id of the entry holding the event at `seq`. */
export function entryOf(seq: string): string {
  return `${strip(seq.slice(0, MS_WIDTH))}-${strip(seq.slice(MS_WIDTH + 1, MS_WIDTH + 1 + N_WIDTH))}`
}

/** How many events lie from `first` to `last`, both included, when they are in one entry; undefined otherwise. */
export function eventsBetween(first: string, last: string): number | undefined {
  const index = MS_WIDTH + N_WIDTH + 2
  if (first.slice(0, index) !== last.slice(0, index)) return undefined
  return Number(last.slice(index)) - Number(first.slice(index)) + 1
}

export function isSeq(value: string): boolean {
  return SEQ.test(value)
}

function strip(digits: string): string {
  let i = 0
  while (i < digits.length - 1 && digits.charCodeAt(i) === 48) i++
  return digits.slice(i)
}

/** Lua twins of the functions above, for the scripts. */
export const LUA_SEQ = `
local function seq_of(id, index)
  local ms, n = string.match(id, '^(%d+)%-(%d+)$')
  local i = tostring(index)
  return string.rep('0', ${MS_WIDTH} - #ms) .. ms .. '-' .. string.rep('0', ${N_WIDTH} - #n) .. n .. '-' .. string.rep('0', ${INDEX_WIDTH} - #i) .. i
end
local function entry_of(seq)
  local ms, n = string.match(seq, '^0*(%d+)%-0*(%d+)%-')
  return ms .. '-' .. n
end
-- Seqs compare part by part as numbers, not with Lua's '<' on strings, which follows the server's locale.
local function seq_lt(a, b)
  if b == '' then return false end
  if a == '' then return true end
  local x, y = tonumber(string.sub(a, 1, ${MS_WIDTH})), tonumber(string.sub(b, 1, ${MS_WIDTH}))
  if x ~= y then return x < y end
  x, y = tonumber(string.sub(a, ${MS_WIDTH + 2}, ${MS_WIDTH + 1 + N_WIDTH})), tonumber(string.sub(b, ${MS_WIDTH + 2}, ${MS_WIDTH + 1 + N_WIDTH}))
  if x ~= y then return x < y end
  return tonumber(string.sub(a, ${MS_WIDTH + N_WIDTH + 3})) < tonumber(string.sub(b, ${MS_WIDTH + N_WIDTH + 3}))
end
`
