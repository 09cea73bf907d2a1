import {defineConfig} from 'vitest/config'

// Unit tests of pure logic: no root, no system packages, so no host guard.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    pool: 'forks',
    // some unit tests start real processes (exec'd plugins, a DNS server): 5 s, vitest's
    // default, is too tight on a loaded 2-core machine (two failed at load 12); `npm test`
    // runs them under vitest.config.ts's 120 s
    testTimeout: 60_000,
  },
})
