import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    server: 'src/server/index.ts',
    cli: 'src/cli.ts',
    service: 'src/service/index.ts',
    // Runs in browsers too: it imports nothing from Node.
    client: 'src/client/index.ts',
    // In a folder of its own: Medusa's loader scans the folder of a module for services/, models/ ...
    'medusa/index': 'src/medusa/index.ts',
  },
  format: ['esm'],
  target: 'node20',
  dts: {
    entry: {
      index: 'src/index.ts',
      server: 'src/server/index.ts',
      service: 'src/service/index.ts',
      client: 'src/client/index.ts',
      'medusa/index': 'src/medusa/index.ts',
    },
  },
  sourcemap: true,
  clean: true,
  splitting: true,
  // Native and network drivers stay external so that importing 'herald' loads none of them
  // until a store that needs one is created. Medusa's framework is only ever imported as types.
  external: ['better-sqlite3', 'ioredis', /^@medusajs\//],
})
