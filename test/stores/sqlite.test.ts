import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sqliteStore } from '../../src/index.js'
import { describeStoreContract } from './contract.js'

const dirs: string[] = []
const freshPath = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-sqlite-'))
  dirs.push(dir)
  return join(dir, 'herald.db')
}

describeStoreContract('sqlite', {
  create: () => sqliteStore({ path: freshPath() }),
  destroy: () => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  },
})
