import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // multi-node tests are CPU-heavy on 2 cores: run files one or two at a time
    maxWorkers: 2,
    fileParallelism: true
  }
})
