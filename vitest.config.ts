import { defineConfig } from 'vitest/config'

// Three tiers, each runnable alone (`pnpm test:unit`, `test:kvm`, `test:e2e`; `pnpm test` runs
// all), told apart by a test file's name or place:
//  - unit: everything else; needs no /dev/kvm (the test hypervisor, parsers, builders, the CLI).
//  - kvm: `*.kvm.test.ts` beside the unit tests: tiny guests on the real /dev/kvm.
//  - e2e: test/e2e/**: Linux guests booted with the default guest, and clients from outside.
const kvm = ['packages/*/test/**/*.kvm.test.ts', 'examples/*/test/**/*.kvm.test.ts']
const e2e = ['test/e2e/**/*.test.ts']

export default defineConfig({
  test: {
    // Tests that run guests on /dev/kvm start native vCPU threads; separate processes keep a
    // crashed or hung guest from taking other test files with it.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...kvm, ...e2e, '**/node_modules/**'],
        },
      },
      { extends: true, test: { name: 'kvm', include: kvm } },
      { extends: true, test: { name: 'e2e', include: e2e } },
    ],
  },
})
