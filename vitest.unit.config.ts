import {defineConfig} from 'vitest/config'

// Unit tests of pure logic: no root, no system packages, so no host guard.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    pool: 'forks',
  },
})
