/**
 * Runs each contender of a benchmark in a fresh child process, so that one contender's heap (a
 * framework it loads, the garbage it leaves) does not slow the next: the figures are still taken
 * side by side in one `npm run bench` run. A benchmark file calls `measurement()` first: in a
 * child it returns the key to measure; in the parent it returns undefined, and the parent asks
 * for figures with `measureInChild(key)`.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const FLAG = '--measure'

export function measurement(): string | undefined {
  const at = process.argv.indexOf(FLAG)
  return at === -1 ? undefined : process.argv[at + 1]
}

/** In a child: hands the figure to the parent. */
export function reportFigure(value: number): void {
  console.log(JSON.stringify({ figure: value }))
}

/** In the parent: runs this benchmark file again in a child for `key` and returns its figure. */
export function measureInChild(benchFile: string, key: string): number {
  const result = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', fileURLToPath(benchFile), FLAG, key],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 16 * 1024 * 1024,
    },
  )
  const line = result.stdout.trim().split('\n').pop() ?? ''
  if (result.status !== 0 || !line.startsWith('{')) {
    throw new Error(
      `measuring ${key} failed (exit ${result.status ?? result.signal}): ${result.stdout.slice(-500)}`,
    )
  }
  return (JSON.parse(line) as { figure: number }).figure
}
