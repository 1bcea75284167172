import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createInterface } from 'node:readline'
import { waitFor } from '../helpers.js'

/** A TypeScript script run in its own Node process (through tsx), with its stdout as lines. */
export interface Child {
  readonly process: ChildProcess
  /** Every line printed so far. */
  readonly lines: string[]
  /** Resolves with the first line (already printed or to come) that `match` accepts. */
  line(match: (line: string) => boolean, timeout?: number, what?: string): Promise<string>
  /** Resolves with the exit code (or signal) once the process ended and its output was read. */
  readonly exited: Promise<number | NodeJS.Signals | null>
  /** SIGKILL, and wait for the process to be gone. */
  kill(): Promise<void>
}

export function runScript(script: string, args: string[], options: SpawnOptions = {}): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  })
  const lines: string[] = []
  let stderr = ''
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal)),
  )
  let ended = false
  void exited.then(() => (ended = true))
  return {
    process: child,
    lines,
    exited,
    async line(match, timeout = 15_000, what = 'a line') {
      await waitFor(
        () => {
          if (lines.some(match)) return true
          if (ended) throw new Error(`the child process ended before printing ${what}; stderr:\n${stderr}`)
          return false
        },
        timeout,
        `${what} from the child process`,
      )
      return lines.find(match)!
    },
    async kill() {
      if (!ended) child.kill('SIGKILL')
      await exited
    },
  }
}
