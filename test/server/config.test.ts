import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG, loadConfig, parseStoreUrl } from '../../src/server/index.js'
import { createServer } from '../../src/server/index.js'

const dir = mkdtempSync(join(tmpdir(), 'herald-config-'))
function file(content: unknown): string {
  const path = join(dir, `c${Math.random()}.json`)
  writeFileSync(path, JSON.stringify(content))
  return path
}

describe('configuration', () => {
  it('defaults to 127.0.0.1:8080, the SQLite store in ./herald-data, 30 s pings and the documented limits', () => {
    expect(loadConfig({ env: {} })).toEqual({
      ...DEFAULT_CONFIG,
      host: '127.0.0.1',
      port: 8080,
      store: 'sqlite:./herald-data/herald.db',
      pingInterval: 30_000,
      limits: {
        bodyBytes: 262_144,
        eventsPerRequest: 1000,
        wsBufferBytes: 8_388_608,
        requestsPerSecond: 10_000,
        streamsPerToken: 1000,
      },
      tokens: [],
    })
  })

  it('takes flags over HERALD_* over the file over defaults, key by key', () => {
    const path = file({
      host: '0.0.0.0',
      port: 1,
      store: 'memory',
      pingInterval: 5000,
      limits: { bodyBytes: 2048, eventsPerRequest: 7 },
      tokens: [{ token: 'file-token-0123456789' }],
    })
    const config = loadConfig({
      configPath: path,
      env: {
        HERALD_PORT: '2',
        HERALD_PING_INTERVAL: '4000',
        HERALD_EVENTS_PER_REQUEST: '9',
        HERALD_STREAMS_PER_TOKEN: '12',
        HERALD_TOKENS: '[{"token":"env-token-0123456789abc"}]',
      },
      flags: { port: 3 },
    })
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 3,
      store: 'memory',
      pingInterval: 4000,
      limits: { bodyBytes: 2048, eventsPerRequest: 9, streamsPerToken: 12 },
    })
    expect(config.tokens).toEqual([{ token: 'env-token-0123456789abc' }])
  })

  it('finds the file through HERALD_CONFIG', () => {
    expect(loadConfig({ env: { HERALD_CONFIG: file({ port: 4444 }) } }).port).toBe(4444)
  })

  it('refuses bad settings with one clear line', () => {
    expect(() => loadConfig({ env: { HERALD_PORT: 'eighty' } })).toThrow(/HERALD_PORT must be a number/)
    expect(() => loadConfig({ configPath: file({ port: 70000 }), env: {} })).toThrow(/\/port/)
    expect(() => loadConfig({ configPath: file({ tokens: [{ token: 'short' }] }), env: {} })).toThrow(
      /tokens\/0\/token/,
    )
    expect(() => loadConfig({ configPath: join(dir, 'missing.json'), env: {} })).toThrow(
      /cannot read the configuration file .*ENOENT/,
    )
    expect(() => loadConfig({ env: { HERALD_TOKENS: 'nope' } })).toThrow(/HERALD_TOKENS must be a JSON array/)
    expect(() => loadConfig({ env: { HERALD_LOG_LEVEL: 'loud' } })).toThrow(
      /\/logLevel: must be one of fatal, error, warn, info, debug, trace, silent/,
    )
  })

  it('refuses a misspelt key, in the file, its limits and its tokens (a token’s `acount` would act in the default tenant)', () => {
    const token = '0123456789abcdef'
    expect(() => loadConfig({ configPath: file({ prot: 9000 }), env: {} })).toThrow(
      /\/prot: Unexpected property/,
    )
    expect(() => loadConfig({ configPath: file({ limits: { bodyByte: 10 } }), env: {} })).toThrow(
      /\/limits\/bodyByte/,
    )
    expect(() => loadConfig({ configPath: file({ tokens: [{ token, acount: 'acme' }] }), env: {} })).toThrow(
      /\/tokens\/0\/acount/,
    )
    expect(() =>
      loadConfig({ env: { HERALD_TOKENS: JSON.stringify([{ token, workspce: 'dev' }]) } }),
    ).toThrow(/workspce/)
  })

  it('takes a secretsKey for webhook secrets from the file or HERALD_SECRETS_KEY, and refuses a short one', () => {
    expect(loadConfig({ env: {} }).secretsKey).toBeUndefined()
    expect(
      loadConfig({ configPath: file({ secretsKey: 'from the file, long enough' }), env: {} }).secretsKey,
    ).toBe('from the file, long enough')
    expect(
      loadConfig({
        configPath: file({ secretsKey: 'from the file, long enough' }),
        env: { HERALD_SECRETS_KEY: 'from the environment' },
      }).secretsKey,
    ).toBe('from the environment')
    expect(() => loadConfig({ env: { HERALD_SECRETS_KEY: 'short' } })).toThrow(/\/secretsKey/)
  })

  it('parses store URLs', () => {
    expect(parseStoreUrl('memory')).toEqual({ kind: 'memory' })
    expect(parseStoreUrl('memory:?maxEvents=10')).toEqual({ kind: 'memory', maxEvents: 10 })
    expect(parseStoreUrl('sqlite:./herald-data/herald.db')).toEqual({
      kind: 'sqlite',
      path: './herald-data/herald.db',
    })
    expect(parseStoreUrl('sqlite:///var/lib/herald.db')).toEqual({
      kind: 'sqlite',
      path: '/var/lib/herald.db',
    })
    expect(parseStoreUrl('redis://127.0.0.1:6379?prefix=h1')).toEqual({
      kind: 'redis',
      url: 'redis://127.0.0.1:6379',
      prefix: 'h1',
    })
    expect(() => parseStoreUrl('mysql://x')).toThrow(/not a store URL/)
  })

  it('refuses to listen beyond loopback without tokens', async () => {
    const server = await createServer({ host: '0.0.0.0', port: 0, store: 'memory', logLevel: 'silent' })
    await expect(server.listen()).rejects.toThrow(/only listens on loopback/)
    await server.close()
  })

  it('refuses a token in another tenant name form or repeated', async () => {
    await expect(
      createServer({
        store: 'memory',
        logLevel: 'silent',
        tokens: [{ token: 'a-token-0123456789abcdef', account: 'bad name' }],
      }),
    ).rejects.toThrow(/tokens\[0\]/)
    const token = { token: 'a-token-0123456789abcdef' }
    await expect(
      createServer({ store: 'memory', logLevel: 'silent', tokens: [token, token] }),
    ).rejects.toThrow(/repeats/)
  })
})
