#!/usr/bin/env node
/**
 * The `herald` command (DESIGN §10): `serve` runs the server; the others talk to one, at
 * --url / HERALD_URL with --token / HERALD_TOKEN. Errors are one line on stderr and exit 1.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Command, InvalidArgumentError, Option } from 'commander'
import { CliError, call, tail, type Target } from './cli/client.js'
import type { ServerConfigInput } from './server/config.js'

const DEFAULT_URL = 'http://127.0.0.1:8080'

function integer(value: string): number {
  const number = Number(value)
  if (!Number.isInteger(number) || number < 0) throw new InvalidArgumentError('must be a whole number')
  return number
}

/** 0 (never), or at least a second: below that a quiet stream would count as gone between two pings. */
function heartbeatTimeout(value: string): number {
  const ms = integer(value)
  if (ms !== 0 && ms < 1000) throw new InvalidArgumentError('must be 0 (never) or at least 1000 ms')
  return ms
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new CliError(`${what} is not JSON: ${(error as Error).message}`)
  }
}

function print(value: unknown): void {
  process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`)
}

const program = new Command()
program
  .name('herald')
  .description('Server-side events: run the server, or publish, tail and inspect events on one.')
  .option('--url <url>', 'server URL (env HERALD_URL)', process.env.HERALD_URL || DEFAULT_URL)
  // Read from the environment by name, not given as a default: help would print a default.
  .addOption(new Option('--token <token>', 'token').env('HERALD_TOKEN'))
  // A usage error is one line, as every other error is (`herald: …`), not the whole help.
  .configureOutput({
    outputError: (message, write) =>
      write(
        `herald: ${message
          .replace(/^error: /, '')
          .trim()
          .replace(/\s*\n\s*/g, ' ')} (herald --help lists the usage)\n`,
      ),
  })

// `herald tail … | head -1`: the reader went away; that ends the output, it is not a failure.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0)
  process.stderr.write(`herald: cannot write the output: ${error.message}\n`)
  process.exit(1)
})

function target(): Target {
  const options = program.opts<{ url: string; token?: string }>()
  return { url: options.url, token: options.token }
}

program
  .command('serve')
  .description('run the server (settings: flags > HERALD_* > config file > defaults)')
  .option('-c, --config <path>', 'configuration file (env HERALD_CONFIG)')
  .option('--host <host>', 'address to bind (default 127.0.0.1)')
  .option('-p, --port <port>', 'port (default 8080)', integer)
  .option(
    '--store <url>',
    'memory | sqlite:<path> | redis://host:port (default sqlite:./herald-data/herald.db)',
  )
  .option('--ping-interval <ms>', 'WebSocket ping interval in ms (default 30000)', integer)
  .option('--log-level <level>', 'fatal | error | warn | info | debug | trace | silent')
  .action(
    async (options: {
      config?: string
      host?: string
      port?: number
      store?: string
      pingInterval?: number
      logLevel?: string
    }) => {
      const { startServer } = await import('./server/index.js')
      const flags: ServerConfigInput = {}
      if (options.host !== undefined) flags.host = options.host
      if (options.port !== undefined) flags.port = options.port
      if (options.store !== undefined) flags.store = options.store
      if (options.pingInterval !== undefined) flags.pingInterval = options.pingInterval
      if (options.logLevel !== undefined) flags.logLevel = options.logLevel as ServerConfigInput['logLevel']
      await startServer({ flags, ...(options.config !== undefined ? { configPath: options.config } : {}) })
    },
  )

program
  .command('publish <topic> [json]')
  .description('publish one event; its data is the JSON argument, else standard input, else null')
  .action(async (topic: string, json: string | undefined) => {
    let data: unknown = null
    if (json !== undefined) data = parseJson(json, 'the data argument')
    else if (!process.stdin.isTTY) {
      const text = readFileSync(0, 'utf8').trim()
      if (text !== '') data = parseJson(text, 'standard input')
    }
    const { ids } = await call<{ ids: string[] }>(target(), 'POST', 'v1/events', { topic, data })
    for (const id of ids) print(id)
  })

program
  .command('tail <patterns...>')
  .description('print events matching the patterns as they are stored, one JSON line each')
  .option('--since <seq>', 'first replay the events stored after this seq')
  .option(
    '--heartbeat-timeout <ms>',
    'give up (exit 1) after this long with neither an event nor a ping from the server; 0: never',
    heartbeatTimeout,
    100_000,
  )
  .action(async (patterns: string[], options: { since?: string; heartbeatTimeout: number }) => {
    const stream = tail(target(), patterns, options.since, {
      onEvent: (event) => print(event),
      heartbeatTimeout: options.heartbeatTimeout,
    })
    process.once('SIGINT', () => stream.stop())
    process.once('SIGTERM', () => stream.stop())
    await stream.done
  })

program
  .command('status <eventId>')
  .description('the event and its delivery status per subscription')
  .action(async (id: string) => {
    print(await call(target(), 'GET', `v1/events/${encodeURIComponent(id)}`))
  })

program
  .command('dead-letters [action] [id]')
  .description('list dead letters (default), or redrive <id>, or delete <id> (admin token)')
  .option('--subscription <id>', 'only this subscription (list)')
  .option('--limit <n>', 'at most this many (list)', integer)
  .action(
    async (
      action: string | undefined,
      id: string | undefined,
      options: { subscription?: string; limit?: number },
    ) => {
      const verb = action ?? 'list'
      if (verb === 'list') {
        const query = new URLSearchParams()
        if (options.subscription) query.set('subscriptionId', options.subscription)
        if (options.limit !== undefined) query.set('limit', String(options.limit))
        const { deadLetters } = await call<{ deadLetters: unknown[] }>(
          target(),
          'GET',
          `v1/dead-letters${query.size ? `?${query}` : ''}`,
        )
        for (const dead of deadLetters) print(dead)
        return
      }
      if (verb !== 'redrive' && verb !== 'delete')
        throw new CliError(
          `unknown dead-letters action ${JSON.stringify(verb)}: use list, redrive <id> or delete <id>`,
        )
      if (!id) throw new CliError(`dead-letters ${verb} needs the dead letter's id`)
      if (verb === 'redrive') {
        await call(target(), 'POST', `v1/dead-letters/${encodeURIComponent(id)}/redrive`)
        print(`redriven ${id}`)
      } else {
        await call(target(), 'DELETE', `v1/dead-letters/${encodeURIComponent(id)}`)
        print(`deleted ${id}`)
      }
    },
  )

program
  .command('bench [names...]')
  .description(
    'run the side-by-side benchmarks (core, medusa, sqlite, redis, server, apps) from a checkout of Herald',
  )
  .action(async (names: string[]) => {
    // The benchmarks and their peers live in the repository, not in the published package.
    const runner = fileURLToPath(new URL('../bench/run.mjs', import.meta.url))
    if (!existsSync(runner))
      throw new CliError(
        'benchmarks run from a checkout of the Herald repository (bench/run.mjs is not here)',
      )
    const child = spawn(process.execPath, [runner, ...names], { stdio: 'inherit' })
    const [code] = (await once(child, 'exit')) as [number | null]
    if (code !== 0) throw new CliError(`benchmarks failed (exit ${code})`)
  })

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error)
  process.stderr.write(`herald: ${message.split('\n')[0]}\n`)
  process.exit(1)
})
