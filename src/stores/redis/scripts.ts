/**
 * The store's Lua scripts, one per change that touches several keys (BullMQ's habit): each runs
 * atomically on the server. Key names follow `keys.ts`; scripts that reach per-subscription or
 * per-item keys build them from the tenant base with the same suffixes, which is why the store
 * needs one Redis server (or a primary with replicas), not a Cluster.
 *
 * Delivery records come in two forms:
 * - A first lease (the hot path: most deliveries are leased once and then deleted) is a short
 *   string, `L<updatedAt>|<event id>\n<consumer>`, built and checked without JSON; attempts
 *   is 1 and the lease time is the record's score in the due set.
 * - Every other record is a JSON object with short fields: s state ('leased' | 'retrying' |
 *   'dead'), a attempts started, e event id, c consumer, l lease until, n next attempt at,
 *   r last error, u updated at, v the event's JSON (kept by dead letters and their redrives, so
 *   the log may be trimmed under them).
 * Times are the caller's milliseconds, integers; cjson writes them exactly up to 14 digits.
 */
import { LUA_SEQ } from './seq.js'
import { Script } from './script.js'
import { SUFFIX } from './keys.js'

/** Error replies scripts raise on purpose; the store maps them to HeraldErrors. */
export const NOT_FOUND_REPLY = 'HERALD_NOT_FOUND'

const TRIM = `
-- Drops the tenant's oldest log entries beyond 'keep', a chunk at a time so the cost spreads
-- over many appends, and never one a durable subscription still owes: an entry after its cursor,
-- or one with a leased or retrying delivery record.
local function trim(log, ids, base, keep, chunk)
  if keep <= 0 then return end
  local excess = redis.call('XLEN', log) - keep
  if excess < chunk then return end
  if redis.call('EXISTS', base .. '${SUFFIX.trimWait}') == 1 then return end
  local floor = nil
  for _, sub in ipairs(redis.call('SMEMBERS', base .. '${SUFFIX.subs}')) do
    local cursor = redis.call('HGET', base .. '${SUFFIX.sub}' .. sub, 'cursor')
    if cursor and (floor == nil or seq_lt(cursor, floor)) then floor = cursor end
    for _, seq in ipairs(redis.call('ZRANGE', base .. '${SUFFIX.due}' .. sub, 0, -1)) do
      if floor == nil or seq_lt(seq, floor) then floor = seq end
    end
  end
  local count = math.min(excess, chunk * 4)
  local entries = redis.call('XRANGE', log, '-', '+', 'COUNT', count + 1)
  local first_kept = nil
  local removed = 0
  for i = 1, #entries do
    local entry = entries[i]
    if i > count or (floor ~= nil and not seq_lt(seq_of(entry[1]), floor)) then
      first_kept = entry[1]
      break
    end
    local id = entry[2][2]
    if redis.call('HGET', ids, id) == entry[1] then redis.call('HDEL', ids, id) end
    removed = removed + 1
  end
  if removed == 0 or first_kept == nil then
    -- Pinned by a subscription that has not caught up: look again in a second, not on every append.
    redis.call('SET', base .. '${SUFFIX.trimWait}', '1', 'PX', 1000)
    return
  end
  redis.call('XTRIM', log, 'MINID', first_kept)
end
`

const RECORDS = `
local function is_first_lease(raw) return string.byte(raw, 1) == 76 end -- 'L'
-- The consumer holding a delivery, or nil when the record is not leased.
local function holder(raw)
  if is_first_lease(raw) then return string.sub(raw, string.find(raw, '\\n', 1, true) + 1) end
  local r = cjson.decode(raw)
  if r.s == 'leased' then return r.c end
  return nil
end
-- Any record as a table; a first lease gets its lease time from the due set.
local function decode(raw, due, seq)
  if not is_first_lease(raw) then return cjson.decode(raw) end
  local bar = string.find(raw, '|', 1, true)
  local nl = string.find(raw, '\\n', bar, true)
  return { s = 'leased', a = 1, u = tonumber(string.sub(raw, 2, bar - 1)), e = string.sub(raw, bar + 1, nl - 1),
    c = string.sub(raw, nl + 1), l = tonumber(redis.call('ZSCORE', due, seq)) }
end
-- One command with many arguments, in slices Lua's unpack can take.
local function call_many(command, key, list)
  for i = 1, #list, 1000 do redis.call(command, key, unpack(list, i, math.min(i + 999, #list))) end
end
`

const script = (name: string, body: string, helpers = ''): Script => new Script(name, `${LUA_SEQ}${helpers}\n${body}`)

/**
 * KEYS log, ids, feed. ARGV base, tenant, now, dedupe window, group ttl, feed length, keep, chunk,
 * then five per input: dedupe ('1' | ''), group id ('' for none), event id, topic, JSON.
 * Returns the feed entry id ('' when nothing was appended), the id of the log's newest entry before
 * this append ('' for none), then per input its stream id, 'D' for a repeat within the dedupe
 * window, or 'S' for staged.
 */
export const appendEvents = script(
  'append',
  `
local log, ids, feed = KEYS[1], KEYS[2], KEYS[3]
local base, tenant = ARGV[1], ARGV[2]
local now, window, ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local out = { '', newest[1] and newest[1][1] or '' }
local first, last
local index = {}
for i = 9, #ARGV, 5 do
  local dedupe, group, id, topic, json = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local result = nil
  if dedupe == '1' then
    local key = base .. '${SUFFIX.dedupe}' .. id
    local until_ = redis.call('GET', key)
    if until_ and tonumber(until_) > now then
      result = 'D'
    else
      redis.call('SET', key, tostring(now + window), 'PX', window)
    end
  end
  if result == nil then
    if group ~= '' then
      local list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
      local expires = redis.call('GET', expiry)
      if not expires or tonumber(expires) <= now then redis.call('DEL', list) end
      redis.call('RPUSH', list, topic .. '\\n' .. id .. '\\n' .. json)
      redis.call('SET', expiry, tostring(now + ttl), 'PX', ttl)
      redis.call('PEXPIRE', list, ttl)
      result = 'S'
    else
      result = redis.call('XADD', log, '*', 'i', id, 'e', json)
      index[#index + 1] = id
      index[#index + 1] = result
      first = first or result
      last = result
    end
  end
  out[#out + 1] = result
end
if first then
  call_many('HSET', ids, index)
  out[1] = redis.call('XADD', feed, 'MAXLEN', '~', ARGV[6], '*', 't', tenant, 'f', first, 'l', last)
  trim(log, ids, base, tonumber(ARGV[7]), tonumber(ARGV[8]))
end
return out
`,
  TRIM + RECORDS,
)

/**
 * KEYS log, ids, feed. ARGV base, tenant, group id, now, feed length, keep, chunk.
 * Returns the feed entry id ('' when nothing was released), the id of the log's newest entry
 * before the release ('' for none), then stream id and JSON per event.
 */
export const releaseGroup = script(
  'release-group',
  `
local log, ids, feed = KEYS[1], KEYS[2], KEYS[3]
local base, tenant, group, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
local expires = redis.call('GET', expiry)
local items = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list, expiry)
local out = { '', '' }
if not expires or tonumber(expires) <= now or #items == 0 then return out end
local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
if newest[1] then out[2] = newest[1][1] end
local first, last
for _, item in ipairs(items) do
  local a = string.find(item, '\\n', 1, true)
  local b = string.find(item, '\\n', a + 1, true)
  local id, json = string.sub(item, a + 1, b - 1), string.sub(item, b + 1)
  local sid = redis.call('XADD', log, '*', 'i', id, 'e', json)
  redis.call('HSET', ids, id, sid)
  first = first or sid
  last = sid
  out[#out + 1] = sid
  out[#out + 1] = json
end
out[1] = redis.call('XADD', feed, 'MAXLEN', '~', ARGV[5], '*', 't', tenant, 'f', first, 'l', last)
trim(log, ids, base, tonumber(ARGV[6]), tonumber(ARGV[7]))
return out
`,
  TRIM,
)

/** ARGV base, group id, then the topics to drop (none: the whole group). Returns how many were dropped. */
export const clearGroup = script(
  'clear-group',
  `
local base, group = ARGV[1], ARGV[2]
local list, expiry = base .. '${SUFFIX.group}' .. group, base .. '${SUFFIX.groupTtl}' .. group
if #ARGV == 2 then
  local n = redis.call('LLEN', list)
  redis.call('DEL', list, expiry)
  return n
end
local drop = {}
for i = 3, #ARGV do drop[ARGV[i]] = true end
local items = redis.call('LRANGE', list, 0, -1)
local keep = {}
for _, item in ipairs(items) do
  local topic = string.sub(item, 1, string.find(item, '\\n', 1, true) - 1)
  if not drop[topic] then keep[#keep + 1] = item end
end
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
)

/** KEYS ids, log. ARGV event id. Returns {stream id, JSON} or nil. */
export const getEvent = script(
  'get-event',
  `
local sid = redis.call('HGET', KEYS[1], ARGV[1])
if not sid then return false end
local entries = redis.call('XRANGE', KEYS[2], sid, sid)
if #entries == 0 then return false end
return { sid, entries[1][2][4] }
`,
)

/**
 * KEYS sub, subs, tenants, log. ARGV subscription id, tenant, spec JSON, now.
 * Creates the subscription at the log's head, or updates its spec; returns spec, createdAt, startSeq, cursor.
 */
export const openSubscription = script(
  'open-subscription',
  `
local sub = KEYS[1]
if redis.call('EXISTS', sub) == 1 then
  redis.call('HSET', sub, 'spec', ARGV[3])
else
  local newest = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
  local head = ''
  if #newest > 0 then head = seq_of(newest[1][1]) end
  redis.call('HSET', sub, 'spec', ARGV[3], 'createdAt', ARGV[4], 'startSeq', head, 'cursor', head)
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[2])
end
return redis.call('HMGET', sub, 'spec', 'createdAt', 'startSeq', 'cursor')
`,
)

/** KEYS sub, rec, due, dead, subs. ARGV subscription id. Returns 1 if it existed. */
export const deleteSubscription = script(
  'delete-subscription',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SREM', KEYS[5], ARGV[1])
return 1
`,
)

/**
 * ARGV key prefix, tenant ('' for every tenant). Returns flat groups of
 * tenant, id, spec, createdAt, startSeq, cursor.
 */
export const listSubscriptions = script(
  'list-subscriptions',
  `
local prefix = ARGV[1]
local tenants = { ARGV[2] }
if ARGV[2] == '' then tenants = redis.call('SMEMBERS', prefix .. ':tenants') end
local out = {}
for _, tenant in ipairs(tenants) do
  local base = prefix .. ':' .. tenant .. ':'
  for _, id in ipairs(redis.call('SMEMBERS', base .. '${SUFFIX.subs}')) do
    local fields = redis.call('HMGET', base .. '${SUFFIX.sub}' .. id, 'spec', 'createdAt', 'startSeq', 'cursor')
    if fields[1] then
      out[#out + 1] = tenant
      out[#out + 1] = id
      for j = 1, 4 do out[#out + 1] = fields[j] end
    end
  end
end
return out
`,
)

/**
 * The read half of a claim (no writes). KEYS sub, due, log. ARGV now, how many log entries to
 * read, and the first and last seq of the stretch of the log the caller holds in memory ('' for
 * none). When the cursor lies inside that stretch, the log is read after its end instead.
 * Returns {cursor, records due now, earliest future due time or nil, entries, 1 if read after the held stretch}.
 */
export const scanSubscription = script(
  'scan-subscription',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('${NOT_FOUND_REPLY}') end
local cursor = redis.call('HGET', KEYS[1], 'cursor')
local due = redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1])
local later = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local held_first, held_last = ARGV[3], ARGV[4]
local start, held = '-', 0
if held_first ~= '' and cursor ~= '' and not seq_lt(cursor, held_first) and not seq_lt(held_last, cursor) then
  start, held = '(' .. id_of(held_last), 1
elseif cursor ~= '' then
  start = '(' .. id_of(cursor)
end
local entries = {}
if tonumber(ARGV[2]) > 0 then entries = redis.call('XRANGE', KEYS[3], start, '+', 'COUNT', ARGV[2]) end
return { cursor, due, later[2] or false, entries, held }
`,
)

/**
 * The write half of a claim. KEYS sub, rec, due, log. ARGV now, lease until, consumer, limit,
 * the cursor the scan saw, the last seq it looked at, then seq and event id of each event it
 * chose, in log order.
 *
 * Leases due records first (earliest due, then by seq), then the chosen events the cursor has not
 * passed yet: if another claim moved the cursor into the scanned range meanwhile, only the part
 * after it is still ours (a compare-and-set on the cursor, widened to the overlap). The cursor
 * ends at the last seq looked at, or at the last chosen event leased when the limit cut the list.
 * Returns {due leases as seq, attempt, JSON..., index of the first chosen event leased (0-based),
 * how many were leased from there on, conflict (1 when none of the scan was ours any more),
 * truncated (1 when the limit cut), next due time or nil}.
 */
export const leaseDeliveries = script(
  'lease-deliveries',
  `
local sub, rec, due, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', sub) == 0 then return redis.error_reply('${NOT_FOUND_REPLY}') end
local now, lease_until, consumer, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local expected, scanned = ARGV[5], ARGV[6]
local count = 0
local redue = {}
local ready = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)
table.sort(ready, seq_lt)
for _, seq in ipairs(ready) do
  local raw = redis.call('HGET', rec, seq)
  local r = raw and decode(raw, due, seq)
  local json = r and r.v
  if r and not json then
    local entries = redis.call('XRANGE', log, id_of(seq), id_of(seq))
    if #entries > 0 then json = entries[1][2][4] end
  end
  if json then
    redue[#redue + 1] = seq
    redue[#redue + 1] = r.a
    redue[#redue + 1] = json
    r.a = r.a + 1
    r.s = 'leased'
    r.l = tonumber(lease_until)
    r.c = consumer
    r.u = tonumber(now)
    r.n = nil
    redis.call('HSET', rec, seq, cjson.encode(r))
    redis.call('ZADD', due, lease_until, seq)
    count = count + 1
  else
    -- No record, or its event is gone from the log: nothing left to deliver.
    redis.call('HDEL', rec, seq)
    redis.call('ZREM', due, seq)
  end
end
local cursor = redis.call('HGET', sub, 'cursor')
local from = nil
if cursor == expected then
  from = expected
elseif seq_lt(expected, cursor) and seq_lt(cursor, scanned) then
  from = cursor
end
local first, taken, conflict, truncated = 7, 0, 0, 0
if from == nil then
  conflict = 1
else
  -- The chosen seqs ascend: skip the ones the cursor already passed, lease the rest up to the limit.
  while first <= #ARGV and not seq_lt(from, ARGV[first]) do first = first + 2 end
  local moved_to = scanned
  local fields, scores = {}, {}
  local head = 'L' .. now .. '|'
  local tail = '\\n' .. consumer
  for i = first, #ARGV, 2 do
    if count >= limit then
      truncated = 1
      if taken > 0 then moved_to = ARGV[i - 2] else moved_to = from end
      break
    end
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = head .. ARGV[i + 1] .. tail
    scores[#scores + 1] = lease_until
    scores[#scores + 1] = ARGV[i]
    taken = taken + 1
    count = count + 1
  end
  if taken > 0 then
    call_many('HSET', rec, fields)
    call_many('ZADD', due, scores)
  end
  if seq_lt(cursor, moved_to) then redis.call('HSET', sub, 'cursor', moved_to) end
end
local later = redis.call('ZRANGEBYSCORE', due, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return { redue, (first - 7) / 2, taken, conflict, truncated, later[2] or false }
`,
  RECORDS,
)

/** KEYS rec, due. ARGV consumer, lease until, seqs. Returns the seqs no longer leased by the consumer. */
export const renewLeases = script(
  'renew-leases',
  `
local rec, due = KEYS[1], KEYS[2]
local consumer, lease_until = ARGV[1], ARGV[2]
local seqs = {}
for i = 3, #ARGV do seqs[#seqs + 1] = ARGV[i] end
local lost, scores = {}, {}
for i = 1, #seqs, 1000 do
  local raws = redis.call('HMGET', rec, unpack(seqs, i, math.min(i + 999, #seqs)))
  for j, raw in ipairs(raws) do
    local seq = seqs[i + j - 1]
    if raw and holder(raw) == consumer then
      if not is_first_lease(raw) then
        local r = cjson.decode(raw)
        r.l = tonumber(lease_until)
        redis.call('HSET', rec, seq, cjson.encode(r))
      end
      scores[#scores + 1] = lease_until
      scores[#scores + 1] = seq
    else
      lost[#lost + 1] = seq
    end
  end
end
if #scores > 0 then call_many('ZADD', due, scores) end
return lost
`,
  RECORDS,
)

/**
 * KEYS sub, rec, due, dead, log. ARGV now, consumer, then four per settlement: seq, outcome
 * ('delivered' | 'retry' | 'dead'), retry time ('' unless retry), error ('' when delivered).
 * A settlement for a delivery the consumer no longer holds is ignored.
 */
export const settleDeliveries = script(
  'settle-deliveries',
  `
local sub, rec, due, dead, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', sub) == 0 then return 0 end
local now, consumer = tonumber(ARGV[1]), ARGV[2]
local seqs = {}
for i = 3, #ARGV, 4 do seqs[#seqs + 1] = ARGV[i] end
local done = {}
for i = 1, #seqs, 1000 do
  local raws = redis.call('HMGET', rec, unpack(seqs, i, math.min(i + 999, #seqs)))
  for j, raw in ipairs(raws) do
    local k = i + j - 1
    local seq, outcome, arg = seqs[k], ARGV[4 * k], 4 * k
    if raw and holder(raw) == consumer then
      if outcome == 'delivered' then
        done[#done + 1] = seq
      else
        local r = decode(raw, due, seq)
        r.l = nil
        r.c = nil
        r.u = now
        r.r = ARGV[arg + 2]
        if outcome == 'retry' then
          r.s = 'retrying'
          r.n = tonumber(ARGV[arg + 1])
          redis.call('ZADD', due, r.n, seq)
        else
          r.s = 'dead'
          if not r.v then
            local entries = redis.call('XRANGE', log, id_of(seq), id_of(seq))
            if #entries > 0 then r.v = entries[1][2][4] end
          end
          redis.call('ZREM', due, seq)
          redis.call('ZADD', dead, 0, seq)
        end
        redis.call('HSET', rec, seq, cjson.encode(r))
      end
    end
  end
end
if #done > 0 then
  call_many('HDEL', rec, done)
  call_many('ZREM', due, done)
end
return 1
`,
  RECORDS,
)

/** KEYS subs. ARGV tenant base, seq. Returns subscription id and record (as JSON), flat. */
export const deliveryRecords = script(
  'delivery-records',
  `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local raw = redis.call('HGET', ARGV[1] .. '${SUFFIX.rec}' .. id, ARGV[2])
  if raw then
    out[#out + 1] = id
    out[#out + 1] = cjson.encode(decode(raw, ARGV[1] .. '${SUFFIX.due}' .. id, ARGV[2]))
  end
end
return out
`,
  RECORDS,
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
local r = raw and decode(raw, KEYS[2], ARGV[1])
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
  RECORDS,
)

/** KEYS rec, due, dead. ARGV seq. Removes a dead letter; 1 if there was one. */
export const deleteDeadLetter = script(
  'delete-dead-letter',
  `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or decode(raw, KEYS[2], ARGV[1]).s ~= 'dead' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
`,
  RECORDS,
)
