import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Two cores: files run in parallel forks, a handful at a time, so timing tests stay honest.
    pool: 'forks',
    maxWorkers: 2,
  },
})
