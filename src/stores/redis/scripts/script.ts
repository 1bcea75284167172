import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

export type Arg = string | number

/**
 * One named Lua script: every multi-key change of the store is one of these, so it is atomic on
 * the server and never spread over several round trips. Runs by SHA and falls back to sending the
 * source when the server does not know it (first use, or after a restart emptied its cache).
 */
export class Script {
  readonly sha: string

  constructor(
    readonly name: string,
    readonly lua: string,
  ) {
    this.sha = createHash('sha1').update(lua).digest('hex')
  }

  async run(redis: Redis, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    // ioredis flattens an array argument, so large batches never go through a spread call.
    // (Its typings want keys there; numbers are sent as their decimal strings all the same.)
    const rest = (keys.length === 0 ? args : [...keys, ...args]) as string[]
    try {
      return await redis.evalsha(this.sha, keys.length, rest)
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return redis.eval(this.lua, keys.length, rest)
    }
  }
}
