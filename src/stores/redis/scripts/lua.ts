/**
 * What the scripts share: the script builder and Lua helpers. Every change of the store that
 * touches several keys is one named script (BullMQ's habit), atomic on the server. Key names
 * follow `keys.ts`; scripts that reach per-subscription or per-item keys build them from the
 * tenant base with the same suffixes, which is why the store needs one Redis server (or a
 * primary with replicas), not a Cluster.
 *
 * Deliveries in flight come in two shapes:
 * - A lease: one claim's batch of first deliveries (the hot path: most deliveries are leased
 *   once, then done), kept as a set of seqs, its holder, and one entry in the due set, so a
 *   claim and its settlements cost a few commands per batch, not per delivery.
 * - A record: a JSON object per delivery for everything else, with short fields: s state
 *   ('leased' | 'retrying' | 'dead'), a attempts started, e event id, c consumer, l lease until,
 *   n next attempt at, r last error, u updated at, v the event's JSON (kept by dead letters and
 *   their redrives, so the log may be trimmed under them).
 * Times are the caller's milliseconds, integers; cjson writes them exactly up to 14 digits.
 */
import { SUFFIX } from '../keys.js'
import { LUA_SEQ, MAX_PER_ENTRY } from '../seq.js'
import { Script } from './script.js'

/** Error replies scripts raise on purpose; the store maps them to HeraldErrors. */
export const NOT_FOUND_REPLY = 'HERALD_NOT_FOUND'

export const script = (name: string, body: string, ...helpers: string[]): Script =>
  new Script(name, [LUA_SEQ, ...helpers, body].join('\n'))

/** Commands with many arguments, adding a log entry, and reading an event's id from the log. */
export const COMMON = `
-- Adds an entry to the log at the caller's clock, never below the log's newest entry: an event
-- id made by Herald carries the time it was emitted, so that time tells where the event is.
-- Falls back to the server's clock if the stream holds an entry the store did not record.
local function add_entry(log, meta, now, count, ids_joined, json)
  local ms = tonumber(now)
  local last = redis.call('HGET', meta, 'last')
  if last then
    local last_ms = tonumber(string.sub(last, 1, 15))
    if last_ms > ms then ms = last_ms end
  end
  local id = redis.pcall('XADD', log, string.format('%d', ms) .. '-*', 'n', count, 'i', ids_joined, 'e', json)
  if type(id) == 'table' then id = redis.call('XADD', log, '*', 'n', count, 'i', ids_joined, 'e', json) end
  return id
end
-- One command with many arguments, in slices Lua's unpack can take.
local function call_many(command, key, list)
  for i = 1, #list, 1000 do redis.call(command, key, unpack(list, i, math.min(i + 999, #list))) end
end
-- The id of the event at seq, from its log entry ('' when the entry is gone).
local function event_id_at(log, seq)
  local entry = redis.call('XRANGE', log, entry_of(seq), entry_of(seq))[1]
  if not entry then return '' end
  local index, k = tonumber(string.sub(seq, 28)), 0
  for id in string.gmatch(entry[2][4], '%S+') do
    if k == index then return id end
    k = k + 1
  end
  return ''
end
`

/** Leases of first deliveries (see above). */
export const LEASES = `
-- A lease's holder and when it was taken, from its entry "<leased at>\\n<consumer>".
local function lease_holder(meta)
  local nl = string.find(meta, '\\n', 1, true)
  return string.sub(meta, nl + 1), tonumber(string.sub(meta, 1, nl - 1))
end
-- The lease of this consumer (or, without one, of anyone) that still holds seq, if any.
local function find_lease(leases, lease_prefix, seq, consumer)
  local all = redis.call('HGETALL', leases)
  for i = 1, #all, 2 do
    local id = all[i]
    if not seq_lt(seq, id) and (consumer == nil or lease_holder(all[i + 1]) == consumer)
      and redis.call('SISMEMBER', lease_prefix .. id, seq) == 1 then
      return id, all[i + 1]
    end
  end
  return nil
end
-- Leases these first deliveries (seqs ascending) to the consumer as one lease, named after the first.
local function open_lease(leases, due, lease_prefix, seqs, now, lease_until, consumer)
  local id = seqs[1]
  call_many('SADD', lease_prefix .. id, seqs)
  redis.call('HSET', leases, id, now .. '\\n' .. consumer)
  redis.call('ZADD', due, lease_until, '~' .. id)
end
-- Drops a lease once nothing is left in flight under it.
local function close_lease_if_done(leases, due, lease_prefix, id)
  if redis.call('SCARD', lease_prefix .. id) == 0 then
    redis.call('DEL', lease_prefix .. id)
    redis.call('HDEL', leases, id)
    redis.call('ZREM', due, '~' .. id)
  end
end
`

/**
 * Records that fall due again (retries whose time came, and deliveries whose lease ran out: their
 * consumer died) are leased one by one, oldest seq first, before anything new. Returns them as
 * seq, attempt, event JSON ('' when the log has it), flat, and how many.
 */
export const DUE = `
local function relet_due(rec, due, leases, log, lease_prefix, now, lease_until, consumer, limit)
  local redue, count = {}, 0
  local function relet(seq, r)
    redue[#redue + 1] = seq
    redue[#redue + 1] = r.a
    redue[#redue + 1] = r.v or ''
    r.a = r.a + 1
    r.s = 'leased'
    r.l = tonumber(lease_until)
    r.c = consumer
    r.u = tonumber(now)
    r.n = nil
    redis.call('HSET', rec, seq, cjson.encode(r))
    redis.call('ZADD', due, lease_until, seq)
    count = count + 1
  end
  local function position(member)
    if string.byte(member, 1) == 126 then return string.sub(member, 2) end
    return member
  end
  local ready = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)
  table.sort(ready, function(a, b) return seq_lt(position(a), position(b)) end)
  for _, member in ipairs(ready) do
    if count >= limit then break end
    if string.byte(member, 1) == 126 then
      -- A lease whose holder stopped renewing it: each of its deliveries becomes a record of its own.
      local id = string.sub(member, 2)
      local outstanding = redis.call('SMEMBERS', lease_prefix .. id)
      table.sort(outstanding, seq_lt)
      local taken = {}
      for _, seq in ipairs(outstanding) do
        if count >= limit then break end
        relet(seq, { s = 'leased', a = 1, e = event_id_at(log, seq), u = tonumber(now) })
        taken[#taken + 1] = seq
      end
      if #taken > 0 then call_many('SREM', lease_prefix .. id, taken) end
      close_lease_if_done(leases, due, lease_prefix, id)
    else
      local raw = redis.call('HGET', rec, member)
      if raw then relet(member, cjson.decode(raw)) else redis.call('ZREM', due, member) end
    end
  end
  return redue, count
end
`

/**
 * Ranges of the log after a subscription's cursor that a claim took ahead of it: every event of
 * a range that the subscription wants is leased (or was, and is settled). A sorted set of
 * "<first>|<last>|<seq before first>" (seqs have a fixed width, so members sort by first seq).
 * Ranges never overlap; the cursor absorbs a range once it reaches the seq before it.
 */
export const AHEAD = `
local function ahead_range(member)
  return string.match(member, '^([^|]*)|([^|]*)|(.*)$')
end
-- The range with the greatest first seq not after seq, if any.
local function ahead_at_or_before(ahead, seq)
  local member = redis.call('ZREVRANGEBYLEX', ahead, '[' .. seq .. '|~', '-', 'LIMIT', 0, 1)[1]
  if member then return ahead_range(member) end
  return nil
end
-- The ranges that start at or before seq, in order, as {first, last}: every range lies after the
-- cursor, so these are the ones a claim's choice up to seq may run into.
local function ahead_until(ahead, seq)
  local ranges = {}
  for _, member in ipairs(redis.call('ZRANGEBYLEX', ahead, '-', '[' .. seq .. '|~')) do
    local first, last = ahead_range(member)
    ranges[#ranges + 1] = { first, last }
  end
  return ranges
end
local function ahead_holding(ahead, seq)
  local first, last = ahead_at_or_before(ahead, seq)
  return first ~= nil and not seq_lt(last, seq)
end
local function ahead_overlaps(ahead, first, last)
  local other_first, other_last = ahead_at_or_before(ahead, last)
  return other_first ~= nil and not seq_lt(other_last, first)
end
-- Moves the cursor over the ranges it reaches (and drops those it passed); returns where it ends.
local function absorb_ahead(ahead, cursor)
  while true do
    local member = redis.call('ZRANGE', ahead, 0, 0)[1]
    if not member then return cursor end
    local first, last, previous = ahead_range(member)
    if seq_lt(cursor, last) then
      if previous ~= cursor and seq_lt(cursor, first) then return cursor end
      cursor = last
    end
    redis.call('ZREM', ahead, member)
  end
end
`

/**
 * Drops a tenant's oldest log entries while the log holds more than 'keep' events, a chunk at
 * a time so the cost spreads over many appends, and never an entry holding an event a durable
 * subscription still owes: one after its cursor, or one still in flight or waiting for a retry.
 */
export const TRIM = `
local function trim(log, ids, meta, base, keep, chunk)
  if keep <= 0 then return end
  local excess = (tonumber(redis.call('HGET', meta, 'events')) or 0) - keep
  if excess < chunk then return end
  if redis.call('EXISTS', base .. '${SUFFIX.trimWait}') == 1 then return end
  local floor = nil
  local function lower(seq)
    if floor == nil or seq_lt(seq, floor) then floor = seq end
  end
  for _, sub in ipairs(redis.call('SMEMBERS', base .. '${SUFFIX.subs}')) do
    local cursor = redis.call('HGET', base .. '${SUFFIX.sub}' .. sub, 'cursor')
    if cursor then lower(cursor) end
    -- Records and leases in the due set; a lease's id is the first seq it leased.
    for _, member in ipairs(redis.call('ZRANGE', base .. '${SUFFIX.due}' .. sub, 0, -1)) do
      if string.byte(member, 1) == 126 then lower(string.sub(member, 2)) else lower(member) end
    end
  end
  local entries = redis.call('XRANGE', log, '-', '+', 'COUNT', 16)
  local removed, first_kept, last_removed = 0, nil, nil
  for _, entry in ipairs(entries) do
    local n = tonumber(entry[2][2])
    if removed + n > excess or (floor ~= nil and not seq_lt(seq_of(entry[1], n - 1), floor)) then
      first_kept = entry[1]
      break
    end
    local listed = {}
    for id in string.gmatch(entry[2][4], '%S+') do listed[#listed + 1] = id end
    local gone = {}
    -- In slices: Lua cannot unpack an entry's 8,000 or more ids into one call.
    for i = 1, #listed, 1000 do
      local last = math.min(i + 999, #listed)
      local where = redis.call('HMGET', ids, unpack(listed, i, last))
      for k = i, last do
        if where[k - i + 1] == entry[1] then gone[#gone + 1] = listed[k] end
      end
    end
    if #gone > 0 then call_many('HDEL', ids, gone) end
    removed = removed + n
    last_removed = entry[1]
  end
  if first_kept == nil and last_removed ~= nil then
    local after = redis.call('XRANGE', log, '(' .. last_removed, '+', 'COUNT', 1)
    if after[1] then first_kept = after[1][1] end
  end
  if removed == 0 or first_kept == nil then
    -- Pinned by a subscription that has not caught up: look again in a second, not on every append.
    redis.call('SET', base .. '${SUFFIX.trimWait}', '1', 'PX', 1000)
    return
  end
  redis.call('XTRIM', log, 'MINID', first_kept)
  redis.call('HINCRBY', meta, 'events', -removed)
end
`

/**
 * Appends events to the log, at most ${MAX_PER_ENTRY} to a stream entry, indexes the ids of those
 * in `indexed` (ids the time in a Herald id cannot find: publishers' own, and released groups'),
 * and announces them on the feed with the seq before them. Returns their seqs, the entries
 * written as id, JSON pairs, and the feed entry's id.
 */
export const WRITE_LOG = `
local function write_log(log, ids, meta, feed, feed_length, tenant, now, event_ids, jsons, indexed)
  local previous = redis.call('HGET', meta, 'last') or ''
  local seqs, entries, index = {}, {}, {}
  for from = 1, #event_ids, ${MAX_PER_ENTRY} do
    local to = math.min(from + ${MAX_PER_ENTRY} - 1, #event_ids)
    local json = '[' .. table.concat(jsons, ',', from, to) .. ']'
    local id = add_entry(log, meta, now, to - from + 1, table.concat(event_ids, ' ', from, to), json)
    for k = from, to do
      seqs[#seqs + 1] = seq_of(id, k - from)
      if indexed[k] then
        index[#index + 1] = event_ids[k]
        index[#index + 1] = id
      end
    end
    entries[#entries + 1] = id
    entries[#entries + 1] = json
  end
  if #index > 0 then call_many('HSET', ids, index) end
  redis.call('HINCRBY', meta, 'events', #seqs)
  redis.call('HSET', meta, 'last', seqs[#seqs])
  local feed_id = redis.call('XADD', feed, 'MAXLEN', '~', feed_length, '*', 't', tenant, 'p', previous, 'a', seqs[1], 'b', seqs[#seqs])
  return seqs, entries, feed_id
end
`
