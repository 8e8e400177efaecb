#!/usr/bin/env node
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('syncmesh: not built yet (run npm install, or npm run build)\n')
  } else {
    process.stderr.write(`syncmesh: ${err && err.message ? err.message.split('\n')[0] : err}\n`)
  }
  process.exit(1)
})
