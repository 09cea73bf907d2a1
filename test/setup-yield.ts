/**
 * Lets the worker's event loop turn between tests. Many e2e tests drive the
 * kernel with spawnSync; a run of synchronous tests never reaches the poll
 * phase, so the reply to vitest's own onTaskUpdate RPC (a fixed 60 s timeout
 * in vitest's worker) sits unread and the run fails with "Timeout calling
 * onTaskUpdate" although every test passed. A macrotask turn before and after
 * each test reads it.
 */
import {afterEach, beforeEach} from 'vitest'

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))
beforeEach(turn)
afterEach(turn)
