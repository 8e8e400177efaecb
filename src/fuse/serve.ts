/**
 * Child-process server for tests and benchmarks:
 *
 *   node dist/src/fuse/serve.js DATADIR MOUNTPOINT
 *
 * Mounts DATADIR at MOUNTPOINT and writes one JSON line per event to stdout:
 *   {"op":"ready","fusePatch":1,"fuseAddon":"..."}    once mounted (the fuse-native addon in use: Syncmesh patch level, 0 = stock)
 *   {"op":"changed","path":"a/b","kind":"write","ranges":[[0,5]]}
 *   {"op":"removed","path":"a","isDir":false}
 *   {"op":"renamed","from":"a","to":"b"}
 *   {"op":"error","name":"MountError","message":"..."} when mounting fails (exit code 1)
 *   {"op":"stopped","openForWrite":0}                  unmounted (paths JS still counted as open for writing)
 * Unmounts on SIGTERM/SIGINT and exits 0. Log lines go to stderr.
 *
 * stdout is written with async fs.write on fd 1 (process.stdout is synchronous for pipes on Linux, and a
 * reader that stops reading must not stall the file system's event loop).
 */
import fs from 'node:fs'
import { SyncMount } from './mount.js'
import type { ChangeKind, ChangeSink } from './types.js'

class LineWriter {
  private queue: string[] = []
  private writing = false
  private idle: Array<() => void> = []

  push (obj: unknown): void {
    this.queue.push(JSON.stringify(obj) + '\n')
    if (!this.writing) this.flushSome()
  }

  /** Resolves when everything queued has been written. */
  drain (): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve()
    return new Promise(resolve => this.idle.push(resolve))
  }

  private flushSome (): void {
    if (this.queue.length === 0) {
      this.writing = false
      const idle = this.idle
      this.idle = []
      for (const f of idle) f()
      return
    }
    this.writing = true
    const buf = Buffer.from(this.queue.join(''))
    this.queue = []
    this.writeAll(buf, 0)
  }

  private writeAll (buf: Buffer, off: number): void {
    fs.write(1, buf, off, buf.length - off, null, (err, n) => {
      if (err !== null) {
        if (err.code === 'EAGAIN') { setTimeout(() => this.writeAll(buf, off), 5); return }
        this.queue = [] // reader gone: drop events
        this.flushSome()
        return
      }
      if (off + n < buf.length) this.writeAll(buf, off + n)
      else this.flushSome()
    })
  }
}

const [dataDir, mountPoint] = process.argv.slice(2)
if (dataDir === undefined || mountPoint === undefined) {
  process.stderr.write('usage: node dist/src/fuse/serve.js DATADIR MOUNTPOINT\n')
  process.exit(2)
}

const out = new LineWriter()
const sink: ChangeSink = {
  changed (path: string, kind: ChangeKind, ranges?: Array<[number, number]>) {
    out.push(ranges === undefined ? { op: 'changed', path, kind } : { op: 'changed', path, kind, ranges })
  },
  removed (path: string, isDir: boolean) {
    out.push({ op: 'removed', path, isDir })
  },
  renamed (from: string, to: string) {
    out.push({ op: 'renamed', from, to })
  }
}

const mount = new SyncMount({ sink, log: msg => process.stderr.write(`[fuse] ${msg}\n`) }, { dataDir, mountPoint })

let exiting = false
async function shutdown (signal: string): Promise<void> {
  if (exiting) return
  exiting = true
  let code = 0
  try {
    await mount.stop()
    out.push({ op: 'stopped', openForWrite: mount.lastOpenForWrite })
  } catch (err) {
    process.stderr.write(`[fuse] stop on ${signal} failed: ${err instanceof Error ? err.message : String(err)}\n`)
    code = 1
  }
  await out.drain()
  process.exit(code)
}
process.on('SIGTERM', () => { void shutdown('SIGTERM') })
process.on('SIGINT', () => { void shutdown('SIGINT') })

try {
  await mount.start()
  out.push({ op: 'ready', fusePatch: mount.binding?.patch ?? 0, fuseAddon: mount.binding?.file ?? '' })
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err))
  out.push({ op: 'error', name: e.name, message: e.message })
  process.stderr.write(`[fuse] ${e.name}: ${e.message}\n`)
  await out.drain()
  process.exit(1)
}
