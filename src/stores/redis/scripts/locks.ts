/** Locks: let go only by the holder that took them (a lapsed lock may be someone else's). */
import { script } from './lua.js'

/** KEYS lock. ARGV the holder's token. Deletes the lock if that holder still has it. */
export const releaseLock = script(
  'release-lock',
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`,
)
