/** The log: appends, staged groups, reading one event back. */
import { SUFFIX } from '../keys.js'
import { COMMON, TRIM, WRITE_LOG, script } from './lua.js'

/**
 * Staged items (`topic\nid\njson`) dropped unreleased (cleared, or their group expired) were
 * never stored: their publisher ids may come again, so their dedupe keys go with them.
 */
const FORGET_STAGED = `
local function staged_id(item)
  local a = string.find(item, '\\n', 1, true)
  local b = a and string.find(item, '\\n', a + 1, true)
  return b and string.sub(item, a + 1, b - 1)
end
local function forget_staged(base, items)
  for _, item in ipairs(items) do
    local id = staged_id(item)
    if id then redis.call('DEL', base .. '${SUFFIX.dedupe}' .. id) end
  end
end
`

/**
 * A publisher id's dedupe key holds the time until which it counts as a repeat and the topic of
 * its event ("until topic"; topics hold no spaces) and, while that event waits in a group, the
 * group's name ("until topic\ngroup"). A repeat of an id held by a group is one only while the
 * group still holds it: the group may have expired unreleased, and Redis may have dropped its keys
 * (and with them the list of ids to forget) before anyone looked. Keys written before topics were
 * kept hold the time alone.
 */
const DEDUPE = `
local function held_by_group(base, id, group, now)
  local list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
  local expires = redis.call('GET', expiry)
  local items = redis.call('LRANGE', list, 0, -1)
  if expires and tonumber(expires) > now then
    for _, item in ipairs(items) do if staged_id(item) == id then return true end end
    return false
  end
  forget_staged(base, items)
  redis.call('DEL', list, expiry)
  return false
end
-- The topic of the event a publisher id still stands for at 'now' ('' when the key predates
-- topics), or nil when the id is free.
local function repeat_of(base, id, now)
  local value = redis.call('GET', base .. '${SUFFIX.dedupe}' .. id)
  if not value then return nil end
  local newline = string.find(value, '\\n', 1, true)
  local head = newline and string.sub(value, 1, newline - 1) or value
  local space = string.find(head, ' ', 1, true)
  if tonumber(space and string.sub(head, 1, space - 1) or head) <= now then return nil end
  if newline and not held_by_group(base, id, string.sub(value, newline + 1), now) then return nil end
  return space and string.sub(head, space + 1) or ''
end
-- Released: the id's event is in the log, so it is a repeat for the rest of its window.
local function unmark_released(base, items)
  for _, item in ipairs(items) do
    local key = base .. '${SUFFIX.dedupe}' .. staged_id(item)
    local value = redis.call('GET', key)
    local newline = value and string.find(value, '\\n', 1, true)
    if newline then
      local ttl = redis.call('PTTL', key)
      if ttl > 0 then redis.call('SET', key, string.sub(value, 1, newline - 1), 'PX', ttl) end
    end
  end
end
`

/** How far past the time in a Herald id its log entry may lie (clocks of Herald processes disagreeing). */
export const CLOCK_SKEW_MS = 300_000

/** Log entries one get-event call looks through before it hands the search back to the caller. */
export const GET_EVENT_SCAN_ENTRIES = 1024

/**
 * KEYS log, ids, feed, meta. ARGV base, tenant, now, dedupe window, group ttl, feed length,
 * keep, chunk, then the mode:
 * - 'batch' (nothing to dedupe or stage, at most MAX_PER_ENTRY events, all with ids Herald made):
 *   the events as one JSON array, their ids joined by spaces, how many, and what the feed entry
 *   says of the appender's claims ('' for nothing: see own.ts). Returns {feed id, seq of the
 *   newest event before, entry id}.
 * - 'each': five per input: dedupe ('1' | ''), group id ('' for none), event id, topic ('' unless
 *   deduped or grouped), JSON. Returns {feed id ('' when nothing was appended), seq of the newest
 *   event before, then per input its seq, 'D' for a repeat within the dedupe window, or 'S' for
 *   staged}, or {'conflict', id, earlier topic} when a publisher id stands for another topic.
 */
export const appendEvents = script(
  'append',
  `
local log, ids, feed, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, tenant = ARGV[1], ARGV[2]
local now, window, ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local previous = redis.call('HGET', meta, 'last') or ''
if ARGV[9] == 'batch' then
  local count = tonumber(ARGV[12])
  local id = add_entry(log, meta, now, count, ARGV[11], ARGV[10])
  redis.call('HINCRBY', meta, 'events', count)
  local first, last = seq_of(id, 0), seq_of(id, count - 1)
  redis.call('HSET', meta, 'last', last)
  local feed_id
  if ARGV[13] ~= '' then
    feed_id = redis.call('XADD', feed, 'MAXLEN', '~', ARGV[6], '*', 't', tenant, 'p', previous, 'a', first, 'b', last, 'o', ARGV[13])
  else
    feed_id = redis.call('XADD', feed, 'MAXLEN', '~', ARGV[6], '*', 't', tenant, 'p', previous, 'a', first, 'b', last)
  end
  trim(log, ids, meta, base, tonumber(ARGV[7]), tonumber(ARGV[8]))
  return { feed_id, previous, id }
end
-- A publisher id used again for another topic refuses the whole append before anything changes.
-- What each id stands for is read here once; the loop below takes repeats from it.
local topics_of, stored = {}, {}
for i = 10, #ARGV, 5 do
  if ARGV[i] == '1' then
    local id, topic = ARGV[i + 2], ARGV[i + 3]
    local earlier = topics_of[id]
    if earlier == nil then
      earlier = repeat_of(base, id, now)
      stored[id] = earlier ~= nil
    end
    if earlier ~= nil and earlier ~= '' and earlier ~= topic then return { 'conflict', id, earlier } end
    topics_of[id] = topic
  end
end
local taken = {}
local out = { '', previous }
local event_ids, jsons, slots, indexed = {}, {}, {}, {}
for i = 10, #ARGV, 5 do
  local dedupe, group, id, topic, json = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local result = nil
  local list, expiry
  if group ~= '' then
    -- A group whose TTL passed is gone: its items (and their ids) go before this one is checked.
    list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
    local expires = redis.call('GET', expiry)
    if not expires or tonumber(expires) <= now then
      forget_staged(base, redis.call('LRANGE', list, 0, -1))
      redis.call('DEL', list)
    end
  end
  if dedupe == '1' then
    -- A repeat of an event stored before, or of one earlier in this append.
    if stored[id] or taken[id] then
      result = 'D'
    else
      taken[id] = true
      local value = tostring(now + window) .. ' ' .. topic
      if group ~= '' then value = value .. '\\n' .. group end
      redis.call('SET', base .. '${SUFFIX.dedupe}' .. id, value, 'PX', window)
    end
  end
  if result == nil and group ~= '' then
    redis.call('RPUSH', list, topic .. '\\n' .. id .. '\\n' .. json)
    redis.call('SET', expiry, tostring(now + ttl), 'PX', ttl)
    redis.call('PEXPIRE', list, ttl)
    result = 'S'
  end
  out[#out + 1] = result or ''
  if result == nil then
    event_ids[#event_ids + 1] = id
    jsons[#jsons + 1] = json
    slots[#slots + 1] = #out
    indexed[#event_ids] = dedupe == '1'
  end
end
if #event_ids > 0 then
  local seqs, _, feed_id = write_log(log, ids, meta, feed, ARGV[6], tenant, now, event_ids, jsons, indexed)
  for k, slot in ipairs(slots) do out[slot] = seqs[k] end
  out[1] = feed_id
  trim(log, ids, meta, base, tonumber(ARGV[7]), tonumber(ARGV[8]))
end
return out
`,
  COMMON,
  TRIM,
  WRITE_LOG,
  FORGET_STAGED,
  DEDUPE,
)

/**
 * KEYS log, ids, feed, meta. ARGV base, tenant, group id, now, feed length, keep, chunk. The
 * released events are indexed by id: their ids carry the time they were emitted, not released.
 * Returns {feed id ('' when nothing was released), seq of the newest event before, then entry id
 * and JSON array per entry written}.
 */
export const releaseGroup = script(
  'release-group',
  `
local log, ids, feed, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, tenant, group, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
local expires = redis.call('GET', expiry)
local items = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list, expiry)
local previous = redis.call('HGET', meta, 'last') or ''
if not expires or tonumber(expires) <= now then
  forget_staged(base, items)
  return { '', previous }
end
if #items == 0 then return { '', previous } end
unmark_released(base, items)
local event_ids, jsons, indexed = {}, {}, {}
for _, item in ipairs(items) do
  local a = string.find(item, '\\n', 1, true)
  local b = string.find(item, '\\n', a + 1, true)
  event_ids[#event_ids + 1] = string.sub(item, a + 1, b - 1)
  jsons[#jsons + 1] = string.sub(item, b + 1)
  indexed[#event_ids] = true
end
local _, entries, feed_id = write_log(log, ids, meta, feed, ARGV[5], tenant, now, event_ids, jsons, indexed)
trim(log, ids, meta, base, tonumber(ARGV[6]), tonumber(ARGV[7]))
local out = { feed_id, previous }
for _, value in ipairs(entries) do out[#out + 1] = value end
return out
`,
  COMMON,
  TRIM,
  WRITE_LOG,
  FORGET_STAGED,
  DEDUPE,
)

/** ARGV base, group id, then the topics to drop (none: the whole group). Returns how many were dropped. */
export const clearGroup = script(
  'clear-group',
  `
local base, group = ARGV[1], ARGV[2]
local list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
if #ARGV == 2 then
  local items = redis.call('LRANGE', list, 0, -1)
  forget_staged(base, items)
  redis.call('DEL', list, expiry)
  return #items
end
local drop = {}
for i = 3, #ARGV do drop[ARGV[i]] = true end
local items = redis.call('LRANGE', list, 0, -1)
local keep, dropped = {}, {}
for _, item in ipairs(items) do
  local topic = string.sub(item, 1, string.find(item, '\\n', 1, true) - 1)
  if drop[topic] then dropped[#dropped + 1] = item else keep[#keep + 1] = item end
end
forget_staged(base, dropped)
local removed = #items - #keep
if removed == 0 then return 0 end
local pttl = redis.call('PTTL', expiry)
redis.call('DEL', list)
if #keep == 0 then
  redis.call('DEL', expiry)
  return removed
end
for i = 1, #keep, 1000 do redis.call('RPUSH', list, unpack(keep, i, math.min(i + 999, #keep))) end
if pttl > 0 then redis.call('PEXPIRE', list, pttl) end
return removed
`,
  FORGET_STAGED,
)

/**
 * KEYS ids, log. ARGV event id, the time in it when Herald made it ('' otherwise), and where an
 * earlier call stopped scanning ('' at first). Returns the log entry holding its latest event,
 * nil when there is none, or a stream id to go on from. Ids publishers chose (and those of
 * released groups) are indexed; an id Herald made is found from its time: its entry's id is that
 * time or later, by as much as the clocks of Herald processes disagree (the log's ids never go
 * back, so a process with a clock ahead pushes them on). One call scans at most SCAN_ENTRIES
 * entries, so that a long search never holds Redis up; the caller goes on from where it stopped.
 */
export const getEvent = script(
  'get-event',
  `
if ARGV[3] == '' then
  local id = redis.call('HGET', KEYS[1], ARGV[1])
  if id then return redis.call('XRANGE', KEYS[2], id, id)[1] or false end
end
if ARGV[2] == '' then return false end
local until_ = string.format('%d', tonumber(ARGV[2]) + ${CLOCK_SKEW_MS}) .. '-18446744073709551615'
local start = ARGV[3]
if start == '' then start = string.format('%d', tonumber(ARGV[2])) .. '-0' else start = '(' .. start end
local wanted = ' ' .. ARGV[1] .. ' '
local scanned = 0
while scanned < ${GET_EVENT_SCAN_ENTRIES} do
  local entries = redis.call('XRANGE', KEYS[2], start, until_, 'COUNT', 64)
  for _, entry in ipairs(entries) do
    if string.find(' ' .. entry[2][4] .. ' ', wanted, 1, true) then return entry end
  end
  if #entries < 64 then return false end
  scanned = scanned + #entries
  start = '(' .. entries[#entries][1]
end
return string.sub(start, 2)
`,
)
