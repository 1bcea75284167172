import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import { NonRetriableError } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ACME, TOKENS, startTestServer, type TestServer } from './server/helpers.js'
import { ROOT, TSX, runCli } from './support/herald-process.js'

let t: TestServer
beforeAll(async () => {
  t = await startTestServer({ tokens: TOKENS })
})
afterAll(async () => {
  await t.close()
})

const env = (token = ACME) => ({ HERALD_URL: t.url, HERALD_TOKEN: token })

/** `herald tail <pattern>` in a child process, once it has printed an event published to `topic`. */
async function liveTail(pattern: string, topic: string, data: string) {
  const child = spawn(process.execPath, ['--import', TSX, `${ROOT}/src/cli.ts`, 'tail', pattern], {
    cwd: ROOT,
    env: { ...process.env, ...env() },
  })
  const out = { stdout: '', stderr: '' }
  child.stdout.on('data', (chunk: Buffer) => (out.stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (out.stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  // The tail is live once its subscription exists: publish until one comes through.
  await waitFor(
    async () => {
      await runCli(['publish', topic, data], { env: env() })
      return out.stdout.includes('\n')
    },
    15_000,
    'the tail to print an event',
  )
  return { child, out, exited }
}

describe('herald CLI', () => {
  it('publish prints the id; status shows the stored event', async () => {
    const published = await runCli(['publish', 'cli/orders', '{"n":1}'], { env: env() })
    expect(published.stderr).toBe('')
    expect(published.code).toBe(0)
    const id = published.stdout.trim()
    expect(id).toMatch(/^[0-9A-Z]{26}$/)
    const status = await runCli(['status', id], { env: env() })
    expect(status.code).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({
      event: { id, topic: 'cli/orders', data: { n: 1 }, account: 'acme' },
      deliveries: [],
    })
  })

  it('publish reads the data from standard input, and takes --url and --token flags', async () => {
    const published = await runCli(['--url', t.url, '--token', ACME, 'publish', 'cli/stdin'], {
      input: '{"from":"stdin"}',
    })
    expect(published.code).toBe(0)
    const status = await runCli(['status', published.stdout.trim()], { env: env() })
    expect(JSON.parse(status.stdout).event.data).toEqual({ from: 'stdin' })
  })

  it('tail prints events as they are stored, one JSON line each', async () => {
    const { child, out, exited } = await liveTail('cli/tail', 'cli/tail/x', '{"k":2}')
    const first = JSON.parse(out.stdout.split('\n')[0]!)
    expect(first).toMatchObject({ topic: 'cli/tail/x', data: { k: 2 } })
    child.kill('SIGINT')
    expect(await exited).toBe(0)
  })

  it('dead-letters lists, redrives and deletes', async () => {
    let fail = true
    t.server.bus.scope({ account: 'acme', workspace: 'master' }).subscribe('cli/doomed', async () => {
      if (fail) throw new NonRetriableError('refused')
    })
    await runCli(['publish', 'cli/doomed', '1'], { env: env() })
    let lines: string[] = []
    await waitFor(async () => {
      lines = (await runCli(['dead-letters'], { env: env(ADMIN) })).stdout.trim().split('\n').filter(Boolean)
      return lines.length === 1
    }, 10_000)
    const dead = JSON.parse(lines[0]!)
    expect(dead).toMatchObject({
      event: { topic: 'cli/doomed' },
      lastError: expect.stringContaining('refused'),
    })
    fail = false
    const redriven = await runCli(['dead-letters', 'redrive', dead.id], { env: env(ADMIN) })
    expect(redriven).toMatchObject({ code: 0, stdout: `redriven ${dead.id}\n` })
    await waitFor(async () => (await runCli(['dead-letters'], { env: env(ADMIN) })).stdout === '', 10_000)
    const gone = await runCli(['dead-letters', 'delete', dead.id], { env: env(ADMIN) })
    expect(gone.code).toBe(1)
    expect(gone.stderr).toMatch(/^herald: 404 not_found: /)
  })

  it('never prints the token from HERALD_TOKEN, in help or after a usage error', async () => {
    const help = await runCli(['--help'], { env: env() })
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('HERALD_TOKEN')
    expect(help.stdout).not.toContain(ACME)
    const wrong = await runCli(['frobnicate'], { env: env() })
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).not.toContain(ACME)
  })

  it('says so when --url answers something that is not Herald', async () => {
    const other = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' })
      response.end('<html>a login page</html>')
    })
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}`
      const run = await runCli(['status', 'x'], { env: { HERALD_URL: url, HERALD_TOKEN: ACME } })
      expect(run.code).toBe(1)
      expect(run.stderr).toMatch(
        /^herald: unexpected answer from .* \(200 text\/html\): is --url a Herald server\?\n$/,
      )
    } finally {
      other.close()
    }
  })

  it('tail ends quietly when its reader goes away (`herald tail … | head -1`)', async () => {
    const { child, out, exited } = await liveTail('cli/pipe', 'cli/pipe', '1')
    child.stdout.destroy() // as `head -1` exits after its line
    let code: number | null | undefined
    void exited.then((c) => (code = c))
    await waitFor(
      async () => {
        if (code === undefined) await runCli(['publish', 'cli/pipe', '2'], { env: env() })
        return code !== undefined
      },
      15_000,
      'the tail to exit',
    )
    expect(code).toBe(0)
    expect(out.stderr).toBe('')
  })

  it('tail gives up, in one line, on a server that goes silent without closing (no events, no pings)', async () => {
    // Accepts the stream, then says nothing, as a half-open connection looks from the client.
    const mute = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise((resolve) => mute.once('listening', resolve))
    try {
      const url = `http://127.0.0.1:${(mute.address() as AddressInfo).port}`
      const run = await runCli(['tail', 'x', '--heartbeat-timeout', '1500'], {
        env: { HERALD_URL: url, HERALD_TOKEN: ACME },
      })
      expect(run.code).toBe(1)
      expect(run.stderr).toBe(
        'herald: nothing from the server for 1.5 s, not even a ping: the connection is gone\n',
      )
    } finally {
      for (const socket of mute.clients) socket.terminate()
      mute.close()
    }
  })

  it('reports an error as one line on stderr and exits 1', async () => {
    const cases = [
      { args: ['publish', 'x', '{nope'], env: env(), error: /^herald: the data argument is not JSON: .*\n$/ },
      {
        args: ['publish', 'x', '1'],
        env: env('wrong-token-0123456789'),
        error: /^herald: 401 unauthorized: unknown token\n$/,
      },
      {
        args: ['dead-letters'],
        env: env(ACME),
        error: /^herald: 403 forbidden: this endpoint needs an admin token\n$/,
      },
      {
        args: ['status', 'x'],
        env: { HERALD_URL: 'http://127.0.0.1:2', HERALD_TOKEN: ACME },
        error: /^herald: cannot reach http:\/\/127\.0\.0\.1:2: ECONNREFUSED\n$/,
      },
      {
        args: ['tail', 'x'],
        env: env('wrong-token-0123456789'),
        error: /^herald: 401 unauthorized: unknown token\n$/,
      },
      {
        args: ['dead-letters', 'explode'],
        env: env(ADMIN),
        error: /^herald: unknown dead-letters action "explode"/,
      },
      { args: ['serve', '--store', 'bogus'], env: {}, error: /^herald: store "bogus" is not a store URL/ },
      // Usage errors too, rather than the whole help.
      {
        args: ['frobnicate'],
        env: env(),
        error: /^herald: unknown command 'frobnicate' \(herald --help .*\)\n$/,
      },
      {
        args: ['publish', 'x', '1', 'extra'],
        env: env(),
        error:
          /^herald: too many arguments for 'publish'\. Expected 2 arguments but got 3\. \(herald --help .*\)\n$/,
      },
      { args: ['status'], env: env(), error: /^herald: missing required argument 'eventId' .*\n$/ },
    ]
    const runs = await Promise.all(cases.map((c) => runCli(c.args, { env: c.env })))
    runs.forEach((run, i) => {
      expect(run.code, cases[i]!.args.join(' ')).toBe(1)
      expect(run.stderr, cases[i]!.args.join(' ')).toMatch(cases[i]!.error)
    })
  })
})
