/** Shared by every benchmark: timing, percentiles, and the side-by-side table with ratios. */
import { cpus } from 'node:os'

export interface Row {
  name: string
  /** The measured figure; larger is better unless `lowerIsBetter`. */
  value: number
  unit: string
  note?: string
}

export function header(title: string): void {
  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  console.log(`${title}\nnode ${process.version}, ${cpus().length} × ${cpu}, ${new Date().toISOString()}`)
}

const fmt = (value: number): string =>
  value >= 1e6
    ? `${(value / 1e6).toFixed(2)} M`
    : value >= 1e4
      ? `${(value / 1e3).toFixed(1)} k`
      : value >= 100
        ? value.toFixed(0)
        : value.toFixed(2)

/** Prints rows with each one's ratio to `baseline` (a row name). */
export function table(
  title: string,
  rows: Row[],
  baseline: string,
  options: { lowerIsBetter?: boolean } = {},
): void {
  const base = rows.find((row) => row.name === baseline)
  const lines = rows.map((row) => {
    const ratio = base ? (options.lowerIsBetter ? base.value / row.value : row.value / base.value) : NaN
    return [
      row.name,
      `${fmt(row.value)} ${row.unit}`,
      Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '',
      row.note ?? '',
    ]
  })
  const head = ['', 'result', `vs ${baseline}`, '']
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const print = (cells: string[]) =>
    console.log('| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |')
  console.log(`\n${title}`)
  print(head)
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
  for (const line of lines) print(line)
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Median of `runs` measurements of `fn` (each returns a rate), after one warm-up. */
export async function medianOf(runs: number, fn: () => Promise<number>): Promise<number> {
  await fn()
  const values: number[] = []
  for (let i = 0; i < runs; i++) {
    globalThis.gc?.()
    values.push(await fn())
  }
  return median(values)
}

/** The middle value (the upper one of an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

export const quietLogger = {
  error: () => {},
  warn: () => {},
  info: () => {},
  debug: () => {},
  log: () => {},
  activity: () => '',
  progress: () => {},
  success: () => {},
  failure: () => {},
  shouldLog: () => false,
  setLogLevel: () => {},
  unsetLogLevel: () => {},
  panic: () => {},
}
