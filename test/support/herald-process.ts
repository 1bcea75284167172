import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** tsx's loader by URL, so a child started in another directory still finds it. */
export const TSX = new URL('../../node_modules/tsx/dist/loader.mjs', import.meta.url).href

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `herald <args>` from the sources (tsx), to completion. */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, `${ROOT}/src/cli.ts`, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, HERALD_URL: '', HERALD_TOKEN: '', ...options.env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(options.input ?? '')
  })
}

export interface ServerProcess {
  child: ChildProcess
  url: string
  output: () => string
  exited: Promise<number | null>
  /** Sends SIGKILL if still running (cleanup). */
  kill(): void
}

/** Starts `herald serve` as a child process (port 0) and resolves once it listens. */
export function spawnServer(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; execArgv?: string[] } = {},
): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [...(options.execArgv ?? []), '--import', TSX, `${ROOT}/src/cli.ts`, 'serve', '--port', '0', ...args],
    {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    // A server that never says it listens is killed, never left behind.
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`herald serve did not listen within 20 s:\n${output}`))
    }, 20_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const match = /"url":"(http:\/\/[^"]+)","store"/.exec(output)
      if (!match) return
      clearTimeout(timer)
      resolve({
        child,
        url: match[1]!,
        output: () => output,
        exited,
        kill: () => child.exitCode === null && child.kill('SIGKILL'),
      })
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`herald serve exited (${code}) before listening:\n${output}`))
    })
  })
}
