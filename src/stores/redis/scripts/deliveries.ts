/** Deliveries of durable subscriptions: claiming, renewing and settling them, and dead letters. */
import { SUFFIX } from '../keys.js'
import { AHEAD, COMMON, DUE, LEASES, NOT_FOUND_REPLY, script } from './lua.js'

/**
 * The read half of a claim (no writes). KEYS sub, due, log. ARGV now, how many log entries to
 * read, and the stretch of the log the caller holds in memory (every event after the first seq
 * up to the last; '' '' for none). Reads from the entry holding the cursor on, unless the cursor lies inside the held
 * stretch: then the caller takes the events from there (and reads on after it if it needs more).
 * Returns {cursor, records due now, earliest future due time or nil, entries, 1 if the cursor is held}.
 */
export const scanSubscription = script(
  'scan-subscription',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('${NOT_FOUND_REPLY}') end
local cursor = redis.call('HGET', KEYS[1], 'cursor')
local due = redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1])
local later = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local held_from, held_last = ARGV[3], ARGV[4]
local start, held = '-', 0
if held_last ~= '' and not seq_lt(cursor, held_from) and not seq_lt(held_last, cursor) then
  held = 1
elseif cursor ~= '' then
  start = entry_of(cursor)
end
local entries = {}
if held == 0 and tonumber(ARGV[2]) > 0 then entries = redis.call('XRANGE', KEYS[3], start, '+', 'COUNT', ARGV[2]) end
return { cursor, due, later[2] or false, entries, held }
`,
)

/**
 * The write half of a claim. KEYS sub, rec, due, leases, log, ahead. ARGV now, lease until, consumer,
 * limit, the cursor the scan saw, the last seq it looked at, the lease key prefix, then the seqs
 * it chose, in log order.
 *
 * First re-leases what is due, one record per delivery: retries whose time came, and deliveries
 * whose lease ran out (their consumer died). Then leases the chosen events the cursor has not
 * passed yet, as one lease named after the first of them: if another claim moved the cursor into
 * the scanned range meanwhile, only the part after it is still ours (a compare-and-set on the
 * cursor, widened to the overlap). Chosen events in ranges that claims took ahead of the cursor
 * (lease-ahead) are skipped: they are leased already. The cursor ends at the last seq looked
 * at, or at the last chosen event when the limit cut the list, and then past the ranges taken
 * ahead that continue from there.
 * Returns {re-leased as seq, attempt, event JSON ('' when the log has it)..., index of the first
 * chosen event the cursor had not passed (0-based), how many were leased from there on (the
 * skipped ones aside), conflict (1 when none of the scan was ours any more), truncated (1 when
 * the limit cut), next due time or nil, the cursor now, the chosen seqs skipped}.
 */
export const leaseDeliveries = script(
  'lease-deliveries',
  `
local sub, rec, due, leases, log, ahead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('EXISTS', sub) == 0 then return redis.error_reply('${NOT_FOUND_REPLY}') end
local now, lease_until, consumer, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local expected, scanned, lease_prefix = ARGV[5], ARGV[6], ARGV[7]
local redue, count = relet_due(rec, due, leases, log, lease_prefix, now, lease_until, consumer, limit)
local cursor = redis.call('HGET', sub, 'cursor')
local from = nil
if cursor == expected then
  from = expected
elseif seq_lt(expected, cursor) and seq_lt(cursor, scanned) then
  from = cursor
end
local first, taken, conflict, truncated = 8, 0, 0, 0
local skipped = {}
if from == nil then
  conflict = 1
else
  -- The chosen seqs ascend: skip the ones the cursor already passed, and those in ranges other
  -- claims took ahead of the cursor; lease the rest up to the limit.
  while first <= #ARGV and not seq_lt(from, ARGV[first]) do first = first + 1 end
  local ranges = first <= #ARGV and ahead_until(ahead, ARGV[#ARGV]) or {}
  local chosen = {}
  local last_chosen = first - 1
  local r = 1
  for i = first, #ARGV do
    if count + #chosen >= limit then break end
    local seq = ARGV[i]
    while ranges[r] and seq_lt(ranges[r][2], seq) do r = r + 1 end
    if ranges[r] and not seq_lt(seq, ranges[r][1]) then
      skipped[#skipped + 1] = seq
    else
      chosen[#chosen + 1] = seq
    end
    last_chosen = i
  end
  local moved_to = scanned
  if #chosen > 0 then
    open_lease(leases, due, lease_prefix, chosen, now, lease_until, consumer)
    taken = #chosen
    count = count + taken
  end
  if last_chosen < #ARGV then
    truncated = 1
    if last_chosen >= first then moved_to = ARGV[last_chosen] else moved_to = from end
  end
  local stored = cursor
  if seq_lt(cursor, moved_to) then cursor = moved_to end
  cursor = absorb_ahead(ahead, cursor)
  if cursor ~= stored then redis.call('HSET', sub, 'cursor', cursor) end
end
local later = redis.call('ZRANGEBYSCORE', due, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return { redue, first - 8, taken, conflict, truncated, later[2] or false, cursor, skipped }
`,
  COMMON,
  LEASES,
  DUE,
  AHEAD,
)

/**
 * A claim of events its own process appended, ahead of the cursor: a process holds what it
 * appended, so leasing it there costs no read of the log and no parse. KEYS sub, rec, due,
 * leases, log, ahead. ARGV now, lease until, consumer, limit, lease key prefix, then ranges:
 * the seq before the range, its first and last seq, how many it chose, and those seqs.
 *
 * Re-leases what is due first (as the other claim does). A range is taken only if the cursor
 * has not reached it and no other claim took any of it; its chosen events are leased (all
 * ranges' together, as one lease) and the range is noted in the ahead set, which the other claim
 * skips and the cursor absorbs once it reaches it. Returns {re-leased as in lease-deliveries,
 * per range 1 (taken), 0 (another claim has it) or 2 (no room under the limit), how many were
 * leased, next due time or nil, the cursor now}.
 */
export const leaseAhead = script(
  'lease-ahead',
  `
local sub, rec, due, leases, log, ahead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('EXISTS', sub) == 0 then return redis.error_reply('${NOT_FOUND_REPLY}') end
local now, lease_until, consumer, limit, lease_prefix = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local redue, count = relet_due(rec, due, leases, log, lease_prefix, now, lease_until, consumer, limit)
local cursor = redis.call('HGET', sub, 'cursor')
local results, chosen, full = {}, {}, false
local i = 6
while i <= #ARGV do
  local previous, first, last, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local result = 1
  if full or count + #chosen + n > limit then
    -- Ranges are taken in order: once one does not fit, the ones after it wait too.
    result = 2
    full = true
  elseif not seq_lt(cursor, first) or ahead_overlaps(ahead, first, last) then
    result = 0
  else
    redis.call('ZADD', ahead, 0, first .. '|' .. last .. '|' .. previous)
    for k = i + 4, i + 3 + n do chosen[#chosen + 1] = ARGV[k] end
  end
  results[#results + 1] = result
  i = i + 4 + n
end
if #chosen > 0 then open_lease(leases, due, lease_prefix, chosen, now, lease_until, consumer) end
local moved = absorb_ahead(ahead, cursor)
if moved ~= cursor then redis.call('HSET', sub, 'cursor', moved) end
local later = redis.call('ZRANGEBYSCORE', due, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return { redue, results, #chosen, later[2] or false, moved }
`,
  COMMON,
  LEASES,
  DUE,
  AHEAD,
)

/**
 * KEYS rec, due, leases. ARGV consumer, lease until, lease key prefix, then per seq: the seq and
 * the lease it was taken under ('' when not known). Returns the seqs no longer held by the consumer.
 */
export const renewLeases = script(
  'renew-leases',
  `
local rec, due, leases = KEYS[1], KEYS[2], KEYS[3]
local consumer, lease_until, lease_prefix = ARGV[1], ARGV[2], ARGV[3]
local lost, renewed = {}, {}
for i = 4, #ARGV, 2 do
  local seq, id = ARGV[i], ARGV[i + 1]
  local held = false
  if id ~= '' then
    local meta = redis.call('HGET', leases, id)
    held = meta ~= false and lease_holder(meta) == consumer and redis.call('SISMEMBER', lease_prefix .. id, seq) == 1
  end
  if not held then
    local raw = redis.call('HGET', rec, seq)
    local r = raw and cjson.decode(raw)
    if r and r.s == 'leased' and r.c == consumer then
      r.l = tonumber(lease_until)
      redis.call('HSET', rec, seq, cjson.encode(r))
      redis.call('ZADD', due, lease_until, seq)
      held = true
      id = ''
    elseif id == '' and not r then
      id = find_lease(leases, lease_prefix, seq, consumer)
      held = id ~= nil
    end
  end
  if held then
    if id ~= '' then renewed[id] = true end
  else
    lost[#lost + 1] = seq
  end
end
for id in pairs(renewed) do redis.call('ZADD', due, lease_until, '~' .. id) end
return lost
`,
  COMMON,
  LEASES,
)

/**
 * KEYS sub, rec, due, dead, leases, log. ARGV now, consumer, lease key prefix, then groups:
 * - 'L', lease, n, then n seqs: deliveries done, all taken under that lease (the hot path);
 * - 'R', seq, outcome ('delivered' | 'retry' | 'dead'), the retry time for 'retry' or the
 *   event's JSON for 'dead' (a dead letter keeps its event, so the log may be trimmed under it),
 *   error, and the lease it was taken under ('' when not known).
 * A settlement for a delivery the consumer no longer holds is ignored.
 */
export const settleDeliveries = script(
  'settle-deliveries',
  `
local sub, rec, due, dead, leases, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('EXISTS', sub) == 0 then return 0 end
local now, consumer, lease_prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local touched, holders = {}, {}
local function held_by_consumer(id)
  if holders[id] == nil then
    local meta = redis.call('HGET', leases, id)
    holders[id] = meta ~= false and lease_holder(meta) == consumer
  end
  return holders[id]
end
-- Settles one delivery that is not simply done under a known lease.
local function settle_one(seq, outcome, arg, error, id)
  local r, under = nil, nil
  if id ~= '' and held_by_consumer(id) then
    if redis.call('SREM', lease_prefix .. id, seq) == 1 then under = id end
  else
    local raw = redis.call('HGET', rec, seq)
    r = raw and cjson.decode(raw)
    if not (r and r.s == 'leased' and r.c == consumer) then
      r = nil
      -- Not told which lease, and not a record: look through this consumer's leases.
      if id == '' and not raw then
        under = find_lease(leases, lease_prefix, seq, consumer)
        if under then redis.call('SREM', lease_prefix .. under, seq) end
      end
    end
  end
  if under then
    touched[under] = true
    if outcome == 'delivered' then return end
    r = { s = 'leased', a = 1, e = event_id_at(log, seq) }
  end
  if not r then return end
  if outcome == 'delivered' then
    redis.call('HDEL', rec, seq)
    redis.call('ZREM', due, seq)
    return
  end
  r.l = nil
  r.c = nil
  r.u = now
  r.r = error
  if outcome == 'retry' then
    r.s = 'retrying'
    r.n = tonumber(arg)
    redis.call('ZADD', due, r.n, seq)
  else
    r.s = 'dead'
    if not r.v and arg ~= '' then r.v = arg end
    redis.call('ZREM', due, seq)
    redis.call('ZADD', dead, 0, seq)
  end
  redis.call('HSET', rec, seq, cjson.encode(r))
end
local i = 4
while i <= #ARGV do
  if ARGV[i] == 'L' then
    local id, n = ARGV[i + 1], tonumber(ARGV[i + 2])
    local removed = 0
    if n > 0 and held_by_consumer(id) then
      for j = i + 3, i + 2 + n, 1000 do removed = removed + redis.call('SREM', lease_prefix .. id, unpack(ARGV, j, math.min(j + 999, i + 2 + n))) end
      touched[id] = true
    end
    if removed < n then
      -- Some were no longer under that lease (it ran out and they were leased again, maybe to
      -- this consumer): settle those one by one.
      for j = i + 3, i + 2 + n do settle_one(ARGV[j], 'delivered', '', '', '') end
    end
    i = i + 3 + n
  else
    settle_one(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    i = i + 6
  end
end
for id in pairs(touched) do close_lease_if_done(leases, due, lease_prefix, id) end
return 1
`,
  COMMON,
  LEASES,
)

/**
 * KEYS subs. ARGV tenant base, seq. Returns subscription id and delivery record (as JSON) for
 * every subscription with one for this event, flat; 'delivered' for one done in a range claimed
 * ahead of the cursor.
 */
export const deliveryRecords = script(
  'delivery-records',
  `
local base, seq = ARGV[1], ARGV[2]
local out = {}
for _, sub in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local raw = redis.call('HGET', base .. '${SUFFIX.rec}' .. sub, seq)
  if not raw then
    local id, meta = find_lease(base .. '${SUFFIX.leases}' .. sub, base .. '${SUFFIX.lease}' .. sub .. ':', seq, nil)
    if id then
      local holder, leased_at = lease_holder(meta)
      raw = cjson.encode({ s = 'leased', a = 1, e = event_id_at(base .. '${SUFFIX.log}', seq), c = holder, u = leased_at,
        l = tonumber(redis.call('ZSCORE', base .. '${SUFFIX.due}' .. sub, '~' .. id)) })
    elseif ahead_holding(base .. '${SUFFIX.ahead}' .. sub, seq) then
      -- Claimed ahead of the cursor and no longer in flight: done, though the cursor is behind it.
      raw = cjson.encode({ s = 'delivered', a = 1, e = event_id_at(base .. '${SUFFIX.log}', seq), u = 0 })
    end
  end
  if raw then
    out[#out + 1] = sub
    out[#out + 1] = raw
  end
end
return out
`,
  COMMON,
  LEASES,
  AHEAD,
)

/**
 * KEYS subs. ARGV tenant base, subscription id ('' for all), after ('' for the start), limit.
 * Returns subscription id, seq and record JSON, flat: at most `limit` per subscription, the caller merges.
 */
export const listDeadLetters = script(
  'list-dead-letters',
  `
local base, only, after, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ids = { only }
if only == '' then ids = redis.call('SMEMBERS', KEYS[1]) end
local start = '-'
if after ~= '' then start = '(' .. after end
local out = {}
for _, id in ipairs(ids) do
  local seqs = redis.call('ZRANGEBYLEX', base .. '${SUFFIX.dead}' .. id, start, '+', 'LIMIT', 0, limit)
  for _, seq in ipairs(seqs) do
    local raw = redis.call('HGET', base .. '${SUFFIX.rec}' .. id, seq)
    if raw then
      out[#out + 1] = id
      out[#out + 1] = seq
      out[#out + 1] = raw
    end
  end
end
return out
`,
)

/** KEYS rec, due, dead. ARGV seq, now. Makes a dead letter due now with fresh attempts; 1 if there was one. */
export const redrive = script(
  'redrive',
  `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local r = raw and cjson.decode(raw)
if not r or r.s ~= 'dead' then return 0 end
r.s = 'retrying'
r.a = 0
r.n = tonumber(ARGV[2])
r.u = r.n
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], r.n, ARGV[1])
return 1
`,
)

/** KEYS rec, dead. ARGV seq. Removes a dead letter; 1 if there was one. */
export const deleteDeadLetter = script(
  'delete-dead-letter',
  `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw).s ~= 'dead' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`,
)
