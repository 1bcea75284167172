/**
 * A Redis stream id (`<ms>-<n>`) as a Herald `seq`: both parts zero-padded to a fixed width, so
 * that plain string comparison orders seqs as Redis orders ids. Ids come from the server clock;
 * Redis never hands out an id below the stream's last one, even when the clock steps back, so
 * seqs keep growing across restarts of a persistent Redis.
 */
const MS_WIDTH = 15
const N_WIDTH = 10
const ZEROS = '0'.repeat(MS_WIDTH)

export function seqOf(id: string): string {
  const dash = id.indexOf('-')
  const ms = id.slice(0, dash)
  const n = id.slice(dash + 1)
  return ZEROS.slice(0, MS_WIDTH - ms.length) + ms + '-' + ZEROS.slice(0, N_WIDTH - n.length) + n
}

export function idOf(seq: string): string {
  const dash = seq.indexOf('-')
  return `${strip(seq.slice(0, dash))}-${strip(seq.slice(dash + 1))}`
}

function strip(digits: string): string {
  let i = 0
  while (i < digits.length - 1 && digits.charCodeAt(i) === 48) i++
  return digits.slice(i)
}

/** Lua twins of the functions above, for scripts that read the log themselves. */
export const LUA_SEQ = `
local function seq_of(id)
  local ms, n = string.match(id, '^(%d+)%-(%d+)$')
  return string.rep('0', ${MS_WIDTH} - #ms) .. ms .. '-' .. string.rep('0', ${N_WIDTH} - #n) .. n
end
local function id_of(seq)
  local ms, n = string.match(seq, '^0*(%d+)%-0*(%d+)$')
  return ms .. '-' .. n
end
-- Seqs compare as numbers, not with Lua's '<' on strings, which follows the server's locale.
local function seq_lt(a, b)
  if b == '' then return false end
  if a == '' then return true end
  local am, bm = tonumber(string.sub(a, 1, ${MS_WIDTH})), tonumber(string.sub(b, 1, ${MS_WIDTH}))
  if am ~= bm then return am < bm end
  return tonumber(string.sub(a, ${MS_WIDTH + 2})) < tonumber(string.sub(b, ${MS_WIDTH + 2}))
end
`
