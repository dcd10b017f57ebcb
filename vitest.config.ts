import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Tests that run guests on /dev/kvm start native vCPU threads; separate processes keep a
    // crashed or hung guest from taking other test files with it.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
