/**
 * Writes the temp files of small pulled files on a thread of its own.
 *
 * A small file costs the receiver five system calls before it is renamed into place
 * (create, write, mode, times, close), and the create is the dear one: 19 µs on a quiet
 * disk, several times that while other programs create files on the same file system
 * (measured during the live small-file benchmark: the receiver's event loop spent a third
 * of its time in `open`). Through the libuv thread pool each call is a round trip and a
 * promise (measured: 2.6-4.0 CPU-s per 10,000 files, against 1.0-1.2 s synchronously), so
 * the puller made them synchronously on the event loop, where they held up the protocol,
 * the hashing and the store. Here they are made by one thread, a batch of files per
 * message: the writes asked for in one turn of the event loop go together (a group of 256
 * small files arrives in a few turns), their bytes copied into one transferred buffer.
 *
 * What the thread does to each file is what `writeSmall` does, plus an fstat of the open
 * file: the caller gets the temp file's state (inode, size, mode, mtime) without a stat
 * of its own before the rename. A failed file is removed, and its error (with its code)
 * goes to that file's caller alone.
 */
import { Worker } from 'node:worker_threads'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { Observed } from '../store/datafolder.js'

/** The thread: CommonJS evaluated as a worker (no file to find next to the compiled code). */
const WRITER = `
const { parentPort } = require('node:worker_threads')
const { openSync, writeSync, fchmodSync, futimesSync, fstatSync, closeSync, rmSync } = require('node:fs')
parentPort.on('message', ({ id, buf, paths, nums }) => {
  const bytes = new Uint8Array(buf)
  const tmps = paths.split('\\0')
  // per file: offset, length, mode, mtime in; inode, size, mode, mtime out (NaN: failed)
  const out = new Float64Array(tmps.length * 4)
  const errors = {}
  for (let i = 0; i < tmps.length; i++) {
    const tmp = tmps[i]
    const off = nums[4 * i], len = nums[4 * i + 1], mode = nums[4 * i + 2], mtimeMs = nums[4 * i + 3]
    let fd = -1
    try {
      fd = openSync(tmp, 'w', mode)
      for (let pos = 0; pos < len;) pos += writeSync(fd, bytes, off + pos, len - pos, pos)
      fchmodSync(fd, mode)
      futimesSync(fd, mtimeMs / 1000, mtimeMs / 1000)
      const st = fstatSync(fd)
      const closing = fd
      fd = -1
      closeSync(closing)
      out.set([st.ino, st.size, st.mode & 0o7777, Math.floor(st.mtimeMs)], 4 * i)
    } catch (err) {
      if (fd >= 0) { try { closeSync(fd) } catch {} }
      try { rmSync(tmp, { force: true }) } catch {}
      out[4 * i] = NaN
      errors[i] = { code: err.code, message: err.message }
    }
  }
  parentPort.postMessage({ id, out, errors }, [out.buffer])
})
`

interface Pending {
  tmp: string
  data: Uint8Array | Uint8ArrayList
  mode: number
  mtimeMs: number
  resolve: (o: Observed) => void
  reject: (err: Error) => void
}

export class TempWriter {
  private worker: Worker | null = null
  private queue: Pending[] = []
  private scheduled = false
  private nextId = 1
  private readonly inFlight = new Map<number, Pending[]>()

  /**
   * Write `data` to `tmp` (created or truncated) with `mode` and `mtimeMs`, closed; resolves
   * with the temp file's state. Rejects with the system call's error (the file removed).
   */
  async write (tmp: string, data: Uint8Array | Uint8ArrayList, mode: number, mtimeMs: number): Promise<Observed> {
    return await new Promise<Observed>((resolve, reject) => {
      this.queue.push({ tmp, data, mode, mtimeMs, resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => { this.flush() })
      }
    })
  }

  /** Stop the thread (a later write starts another); writes not answered yet fail. */
  async close (): Promise<void> {
    const w = this.worker
    this.worker = null
    const err = new Error('temp writer closed')
    for (const p of this.queue.splice(0)) p.reject(err)
    this.failAll(err)
    if (w != null) await w.terminate()
  }

  private flush (): void {
    this.scheduled = false
    const batch = this.queue
    this.queue = []
    if (batch.length === 0) return
    let total = 0
    for (const p of batch) total += p.data.byteLength
    const buf = new ArrayBuffer(total)
    const bytes = new Uint8Array(buf)
    // the paths as one string and the numbers as one array: a structured clone of an
    // array per file cost more than writing the bytes
    const nums = new Float64Array(batch.length * 4)
    let off = 0
    batch.forEach((p, i) => {
      nums[4 * i] = off
      if (p.data instanceof Uint8Array) {
        bytes.set(p.data, off)
        off += p.data.byteLength
      } else {
        for (const chunk of p.data) { bytes.set(chunk, off); off += chunk.byteLength }
      }
      nums[4 * i + 1] = p.data.byteLength
      nums[4 * i + 2] = p.mode
      nums[4 * i + 3] = p.mtimeMs
    })
    const paths = batch.map((p) => p.tmp).join('\0') // no path holds a NUL
    const id = this.nextId++
    this.inFlight.set(id, batch)
    try {
      this.thread().postMessage({ id, buf, paths, nums }, [buf, nums.buffer])
    } catch (err) {
      this.inFlight.delete(id)
      for (const p of batch) p.reject(err as Error)
    }
  }

  private thread (): Worker {
    if (this.worker != null) return this.worker
    const w = new Worker(WRITER, { eval: true })
    w.unref()
    w.on('message', ({ id, out, errors }: { id: number, out: Float64Array, errors: Record<number, { code?: string, message: string }> }) => {
      const batch = this.inFlight.get(id)
      if (batch == null) return
      this.inFlight.delete(id)
      batch.forEach((p, i) => {
        const e = errors[i]
        if (e == null) {
          p.resolve({ type: 'file', ino: out[4 * i], size: out[4 * i + 1], mode: out[4 * i + 2], mtimeMs: out[4 * i + 3] })
        } else {
          p.reject(Object.assign(new Error(e.message), { code: e.code }))
        }
      })
    })
    const gone = (err: Error): void => {
      if (this.worker === w) this.worker = null
      this.failAll(err)
    }
    w.on('error', gone)
    w.on('exit', (code) => { gone(new Error(`temp-file thread exited with code ${code}`)) })
    this.worker = w
    return w
  }

  private failAll (err: Error): void {
    for (const batch of this.inFlight.values()) for (const p of batch) p.reject(err)
    this.inFlight.clear()
  }
}
