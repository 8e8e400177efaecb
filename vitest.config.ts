import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // One test file at a time: the multi-node, FUSE and simulation tests each keep both
    // cores busy, and run side by side on a 2-core machine they starve each other's
    // event loops into timeouts (seen in CI). Sequential costs about a minute more.
    fileParallelism: false
  }
})
