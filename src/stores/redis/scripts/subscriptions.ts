/** Durable subscriptions: creating, listing and removing them. */
import { SUFFIX } from '../keys.js'
import { script } from './lua.js'

/**
 * KEYS sub, subs, tenants, meta. ARGV subscription id, tenant, spec JSON, now.
 * Creates the subscription at the log's head, or updates its spec; returns spec, createdAt, startSeq, cursor.
 */
export const openSubscription = script(
  'open-subscription',
  `
local sub = KEYS[1]
if redis.call('EXISTS', sub) == 1 then
  redis.call('HSET', sub, 'spec', ARGV[3])
else
  local head = redis.call('HGET', KEYS[4], 'last') or ''
  redis.call('HSET', sub, 'spec', ARGV[3], 'createdAt', ARGV[4], 'startSeq', head, 'cursor', head)
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[2])
end
return redis.call('HMGET', sub, 'spec', 'createdAt', 'startSeq', 'cursor')
`,
)

/**
 * KEYS sub, rec, due, dead, subs, leases, ahead, tenants. ARGV subscription id, lease key prefix,
 * tenant. Removes the subscription with its records and leases, and the tenant from the list of
 * tenants with subscriptions when it was its last; returns 1 if it existed.
 */
export const deleteSubscription = script(
  'delete-subscription',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, id in ipairs(redis.call('HKEYS', KEYS[6])) do redis.call('UNLINK', ARGV[2] .. id) end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7])
redis.call('SREM', KEYS[5], ARGV[1])
if redis.call('SCARD', KEYS[5]) == 0 then redis.call('SREM', KEYS[8], ARGV[3]) end
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
