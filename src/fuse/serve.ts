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
 * For tests, SYNCMESH_SERVE_BLOCK_ON=PATH: when a change of PATH is reported, {"op":"blocking","path":PATH}
 * is written and the event loop is then blocked for SYNCMESH_SERVE_BLOCK_MS (default 3000) ms, as a busy
 * JS would be, inside the request that reported it (which waits for JS meanwhile).
 *
 * stdout is never written synchronously (process.stdout is synchronous for pipes on Linux, and a reader
 * that stops reading must not stall the file system's event loop): when it is a pipe or socket, through a
 * non-blocking stream of its own (libuv writes at once while the pipe has room, else when it has again: no
 * thread-pool round trip per batch of events, which cost the serving process a wake-up of a pool thread
 * and one of its event loop each); otherwise (a file) with async fs.write on fd 1.
 */
import fs from 'node:fs'
import net from 'node:net'
import { SyncMount } from './mount.js'
import type { ChangeKind, ChangeSink } from './types.js'

interface EventWriter {
  push: (obj: unknown) => void
  /** Writes what was pushed without waiting for the end of this tick (where the writer can). */
  flush?: () => void
  /** Resolves when everything pushed has been written (or dropped: the reader is gone). */
  drain: () => Promise<void>
}

/** JSON lines to a pipe or socket on fd 1, through a non-blocking stream. */
class PipeLineWriter implements EventWriter {
  private readonly sock: net.Socket
  private gone = false
  private corked = false

  constructor (fd: number) {
    this.sock = new net.Socket({ fd, readable: false, writable: true })
    this.sock.on('error', () => { this.gone = true }) // reader gone (EPIPE): events are dropped
  }

  /** Writes what was pushed now (as far as the pipe takes it), not at the end of this tick. */
  flush (): void {
    if (!this.corked) return
    this.corked = false
    this.sock.uncork()
  }

  push (obj: unknown): void {
    if (this.gone) return
    if (!this.corked) {
      // the events of one drain go out in one write(2)
      this.corked = true
      this.sock.cork()
      process.nextTick(() => { this.flush() })
    }
    this.sock.write(JSON.stringify(obj) + '\n')
  }

  drain (): Promise<void> {
    if (this.gone) return Promise.resolve()
    // the callback of an empty write runs once everything before it is written (or the stream failed)
    return new Promise(resolve => this.sock.write('', () => resolve()))
  }
}

/** JSON lines to fd 1 with async fs.write (when it is a file). */
class LineWriter implements EventWriter {
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

function stdoutWriter (): EventWriter {
  try {
    const st = fs.fstatSync(1)
    if (st.isFIFO() || st.isSocket()) return new PipeLineWriter(1)
  } catch {}
  return new LineWriter()
}

const out = stdoutWriter()
const blockOn = process.env.SYNCMESH_SERVE_BLOCK_ON
const blockMs = Number(process.env.SYNCMESH_SERVE_BLOCK_MS ?? 3000)

/** SYNCMESH_SERVE_BLOCK_ON (tests): a busy event loop, inside the request that reported `path`. */
function maybeBlock (path: string): void {
  if (blockOn === undefined || path !== blockOn) return
  out.push({ op: 'blocking', path })
  out.flush?.()
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, blockMs)
}

const sink: ChangeSink = {
  changed (path: string, kind: ChangeKind, ranges?: Array<[number, number]>) {
    out.push(ranges === undefined ? { op: 'changed', path, kind } : { op: 'changed', path, kind, ranges })
    maybeBlock(path)
  },
  removed (path: string, isDir: boolean) {
    out.push({ op: 'removed', path, isDir })
    maybeBlock(path)
  },
  renamed (from: string, to: string) {
    out.push({ op: 'renamed', from, to })
    maybeBlock(to)
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
