#!/usr/bin/env node
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
