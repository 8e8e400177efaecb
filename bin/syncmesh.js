#!/usr/bin/env node
// V8's compile cache (Node 22.1+, checked against each module's source): a node starts and
// a CLI command answers without parsing and compiling its ~1,000 modules again. Measured
// on the benchmark machine: `syncmesh status` answered in 0.31-0.44 s with it, 0.38-0.57 s
// without (module loading and linking take most of the rest). It is kept in the user's
// own cache folder, never in the shared temporary folder (Node's default), where another
// local user could plant code for a node running as root to load. No home folder: no
// cache. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import module from 'node:module'
import { mkdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
try {
  const dir = resolve(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'syncmesh', 'compile-cache')
  // made here first, a level at a time: Node's recursive mkdir (its own and the cache's)
  // spins forever where a level cannot be made (measured under /proc)
  for (let i = dir.indexOf('/', 1); ; i = dir.indexOf('/', i + 1)) {
    try { mkdirSync(i < 0 ? dir : dir.slice(0, i)) } catch (err) { if (err.code !== 'EEXIST') throw err }
    if (i < 0) break
  }
  module.enableCompileCache?.(dir)
} catch {} // no home folder, or the folder cannot be made: no cache
// `syncmesh start` re-executes itself (same process) with V8's heap floor first: src/node/gc.ts
import('../dist/src/node/gc.js').then((gc) => {
  gc.reexecWithHeapFloor(process.argv.slice(2))
  return import('../dist/src/cli/main.js')
}).then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('syncmesh: not built yet (run npm install, or npm run build)\n')
  } else {
    process.stderr.write(`syncmesh: ${err && err.message ? err.message.split('\n')[0] : err}\n`)
  }
  process.exit(1)
})
