/**
 * Redis for tests: one policy for every test file that needs a real Redis (never a mock).
 *
 * Which server: `REDIS_URL` when set; else 127.0.0.1:6379 if it answers; else a throwaway
 * `redis-server` on a free loopback port, started here and stopped after the file. With no Redis
 * at all, `useRedis` throws under `CI=true` (the file fails) and elsewhere returns undefined after
 * printing a loud notice, so the file's tests are skipped, visibly.
 *
 * Keys: each file gets its own prefix (`redis.prefix`); every key under it is removed after the
 * file. Give a store that prefix, or `redis.subPrefix('name')` for a keyspace of its own.
 *
 *   import { useRedis } from '../support/redis.js'
 *
 *   const redis = await useRedis('orders')           // top level: vitest allows await there
 *   describe.skipIf(!redis)('orders on Redis', () => {
 *     it('...', async () => {
 *       const store = redisStore({ url: redis!.url, prefix: redis!.prefix })
 *     })
 *   })
 *
 * Fault tests (restarts, crashes) start a server of their own, with the persistence they need:
 *
 *   const server = await startRedisServer({ appendonly: true, appendfsync: 'always' })
 *   await server.restart({ kill: true })              // SIGKILL, then start again on the same port and dir
 *   await server.stop()                               // also done after the file
 *
 * and skip the same way when there is no `redis-server` binary: `describe.skipIf(!canStartRedisServer())`
 * (under CI=true that throws instead).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll } from 'vitest'

export interface TestRedis {
  /** `redis://127.0.0.1:<port>` (or REDIS_URL). */
  readonly url: string
  /** This file's key prefix; everything under `<prefix>:` is removed after the file. */
  readonly prefix: string
  /** A prefix under this file's, for a store or test that wants a keyspace of its own. */
  subPrefix(name?: string): string
}

const inCI = (): boolean => process.env.CI === 'true' || process.env.CI === '1'
let sequence = 0

/** The Redis this test file uses, with its own key prefix; undefined (tests skipped) when there is none outside CI. */
export async function useRedis(name: string): Promise<TestRedis | undefined> {
  const url = await locateRedis()
  if (!url) {
    const why =
      'no Redis: REDIS_URL is unset, nothing answers on 127.0.0.1:6379, and there is no redis-server binary to start'
    if (inCI()) throw new Error(`${why} (CI=true, so this fails instead of skipping)`)
    notice(`SKIPPED "${name}": ${why}. Install redis-server or set REDIS_URL to run these tests.`)
    return undefined
  }
  const prefix = `herald-test:${name.replace(/[^\w.-]/g, '_')}:${process.pid}:${Date.now().toString(36)}`
  const admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 })
  afterAll(async () => {
    try {
      await removeKeys(admin, prefix)
    } finally {
      admin.disconnect()
      await throwaway?.stop()
      throwaway = undefined
    }
  })
  return {
    url,
    prefix,
    subPrefix: (part = 'x') => `${prefix}:${part.replace(/[^\w.-]/g, '_')}${++sequence}`,
  }
}

let throwaway: RedisServer | undefined

async function locateRedis(): Promise<string | undefined> {
  if (process.env.REDIS_URL) {
    const url = process.env.REDIS_URL
    const { hostname, port } = new URL(url)
    if (!(await answers(Number(port || 6379), hostname || '127.0.0.1')))
      throw new Error(`REDIS_URL=${url} does not answer PING`)
    return url
  }
  if (await answers(6379)) return 'redis://127.0.0.1:6379'
  if (!hasRedisServerBinary()) return undefined
  throwaway = await startRedisServer()
  notice(
    `no Redis on 127.0.0.1:6379: started a throwaway redis-server on port ${throwaway.port} for this file`,
  )
  return throwaway.url
}

export interface RedisServerOptions {
  /** Default: a free loopback port. */
  port?: number
  /** Turn on the append-only file (default off: nothing survives a restart). */
  appendonly?: boolean
  /** When the AOF is fsynced (default 'always' when appendonly is on). */
  appendfsync?: 'always' | 'everysec' | 'no'
}

/** A redis-server this test started, with its own data directory; stopped after the file. */
export interface RedisServer {
  readonly url: string
  readonly port: number
  readonly dir: string
  /** Shuts it down (SIGTERM) and waits for the process to exit. */
  stop(): Promise<void>
  /** SIGKILL: a crash, nothing flushed beyond what fsync already wrote. */
  kill(): Promise<void>
  /** Starts it again on the same port and directory and waits until it answers PING. */
  start(): Promise<void>
  /** Stops (or, with `kill`, crashes) it and starts it again. */
  restart(options?: { kill?: boolean }): Promise<void>
  /**
   * Kills it for good and removes its directory. A test that starts a server in its own body
   * calls this in a `finally`: vitest does not run an `afterAll` registered while a test runs.
   */
  dispose(): Promise<void>
}

/** True when a redis-server binary is on PATH. Under CI=true a missing one throws, so fault tests fail rather than skip. */
export function canStartRedisServer(): boolean {
  if (hasRedisServerBinary()) return true
  if (inCI())
    throw new Error('redis-server is not installed (CI=true, so fault tests fail instead of skipping)')
  notice('SKIPPED fault tests: no redis-server binary on PATH to start a server of their own.')
  return false
}

function hasRedisServerBinary(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'herald-redis-'))
  const appendonly = options.appendonly ?? false
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    appendonly ? 'yes' : 'no',
    '--appendfsync',
    options.appendfsync ?? (appendonly ? 'always' : 'everysec'),
    '--dir',
    dir,
    '--logfile',
    join(dir, 'redis.log'),
  ]
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const start = async (): Promise<void> => {
    const proc = spawn('redis-server', args, { stdio: 'ignore' })
    child = proc
    running.add(proc)
    exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    void exited.then(() => running.delete(proc))
    const until = Date.now() + 15_000
    while (!(await answers(port))) {
      if (proc.exitCode !== null)
        throw new Error(
          `redis-server on port ${port} exited with ${proc.exitCode}; see ${join(dir, 'redis.log')}`,
        )
      if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer within 15 s`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    child.kill(signal)
    await exited
  }

  await start()
  let stopped = false
  const dispose = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await halt('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    start,
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    restart: async ({ kill = false } = {}) => {
      await halt(kill ? 'SIGKILL' : 'SIGTERM')
      await start()
    },
    dispose,
  }
  afterAll(dispose)
  return server
}

/** True when something on host:port answers PING with PONG (not LOADING, not an error). */
function answers(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host })
    let reply = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1000, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

async function scanKeys(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

async function removeKeys(redis: Redis, prefix: string): Promise<void> {
  const keys = await scanKeys(redis, prefix)
  for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500))
}

function notice(message: string): void {
  const bar = '!'.repeat(Math.min(100, message.length + 6))
  console.warn(`\n${bar}\n!! ${message}\n${bar}\n`)
}
