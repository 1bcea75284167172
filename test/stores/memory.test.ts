import { memoryStore } from '../../src/index.js'
import { describeStoreContract } from './contract.js'

describeStoreContract('memory', { create: () => memoryStore() })
