import { memoryStore } from '../../src/index.js'
import { describeMedusaEventBus } from './suite.js'

describeMedusaEventBus({
  name: 'memory',
  shared: false,
  place() {
    // One store object per test, handed to every service the test starts: a "restart" keeps it.
    const store = memoryStore()
    return { options: () => ({ store }), cleanup: () => store.close() }
  },
})
