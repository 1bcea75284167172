import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { describeMedusaEventBus } from './suite.js'

const dir = mkdtempSync(join(tmpdir(), 'herald-medusa-sqlite-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

describeMedusaEventBus({
  name: 'sqlite',
  shared: true,
  place() {
    // A file per test; every service the test starts opens it anew, as a restarted process would.
    const path = join(dir, `medusa-${++files}.db`)
    return { options: () => ({ store: `sqlite:${path}` }), cleanup: async () => {} }
  },
})
