#!/usr/bin/env node
// V8's compile cache (Node 22.1+; on disk in the system's temporary folder, checked
// against each module's source): a node starts and a CLI command answers without parsing
// and compiling its ~1,000 modules again. Measured on the benchmark machine: `syncmesh
// status` answered in 0.31-0.44 s with it, 0.38-0.57 s without (module loading and
// linking take most of the rest). NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import module from 'node:module'
module.enableCompileCache?.()
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
