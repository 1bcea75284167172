/**
 * One HTTP contender of `npm run bench server`, in a process of its own, so that the server
 * under load shares its event loop and heap with nothing else (not the benchmark, not the other
 * contenders). Prints its URL on the first line of stdout and serves until stdin closes.
 *
 * Kinds: `bare` (a Fastify route that parses the JSON and answers 204), `bare-ids` (the same,
 * answering 202 with a body shaped like Herald's), `herald:memory`, `herald:sqlite` (the
 * server's default store, in a scratch directory).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import { createServer } from '../../src/server/index.js'

export const BENCH_TOKEN = 'bench-token-0123456789abcdef'

async function serve(kind: string): Promise<{ url: string; close: () => Promise<void> }> {
  if (kind === 'bare' || kind === 'bare-ids') {
    const app = Fastify({ logger: false })
    const ids = { ids: ['01JD6Z8S4Y3V0G3W2Q1N5K7M9P'] }
    app.post('/v1/events', async (_request, reply) =>
      kind === 'bare-ids' ? reply.code(202).send(ids) : reply.code(204).send(),
    )
    const url = await app.listen({ host: '127.0.0.1', port: 0 })
    return { url, close: () => app.close() }
  }
  const store = kind.slice('herald:'.length)
  const scratch = store === 'sqlite' ? mkdtempSync(join(tmpdir(), 'herald-bench-')) : undefined
  const server = await createServer({
    host: '127.0.0.1',
    port: 0,
    store: scratch ? `sqlite:${join(scratch, 'bench.db')}` : store,
    logLevel: 'silent',
    limits: { requestsPerSecond: 0, wsBufferBytes: 64 * 1024 * 1024 },
    tokens: [{ token: BENCH_TOKEN, account: 'bench', workspace: 'master' }],
  })
  const url = await server.listen()
  return {
    url,
    close: async () => {
      await server.close()
      if (scratch) rmSync(scratch, { recursive: true, force: true })
    },
  }
}

const kind = process.argv[2]
if (kind !== undefined) {
  const target = await serve(kind)
  console.log(target.url)
  process.stdin.resume()
  process.stdin.on('end', () => {
    void target.close().then(() => process.exit(0))
  })
}
