#!/usr/bin/env node
// `npm run bench [name ...]`: runs bench/<name>.bench.ts (all of them when none is named), each in
// a fresh process so one benchmark's garbage and JIT state do not colour the next. Peers used only
// by benchmarks live in bench/package.json and are installed here, on first use, so that `npm ci`
// for the tests stays lean.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')

function ensurePeers() {
  const manifest = join(here, 'package.json')
  const marker = join(here, 'node_modules', '.herald-installed')
  const wanted = readFileSync(manifest, 'utf8')
  if (existsSync(marker) && readFileSync(marker, 'utf8') === wanted) return
  console.error('bench: installing benchmark peers (bench/package.json) ...')
  const result = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: here,
    stdio: 'inherit',
  })
  if (result.status !== 0) {
    console.error('bench: installing peers failed')
    process.exit(result.status ?? 1)
  }
  writeFileSync(marker, wanted)
}

const available = readdirSync(here)
  .filter((file) => file.endsWith('.bench.ts'))
  .map((file) => file.slice(0, -'.bench.ts'.length))
  .sort()
const names = process.argv.slice(2)
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`bench: no benchmark named ${JSON.stringify(name)}; have: ${available.join(', ')}`)
    process.exit(2)
  }
}
ensurePeers()
if (
  !existsSync(join(root, 'dist', 'index.js')) ||
  statSync(join(root, 'src')).mtimeMs > statSync(join(root, 'dist', 'index.js')).mtimeMs
) {
  spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' })
}
let failed = 0
for (const name of names.length > 0 ? names : available) {
  console.log(`\n=== bench ${name} ===`)
  const result = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', join(here, `${name}.bench.ts`)],
    {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, NODE_ENV: 'production' },
    },
  )
  if (result.status !== 0) {
    console.error(`bench ${name} failed (exit ${result.status ?? result.signal})`)
    failed++
  }
}
process.exit(failed > 0 ? 1 : 0)
