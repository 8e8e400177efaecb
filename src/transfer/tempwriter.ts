/**
 * Writes the temp files of small pulled files, and renames them into place, on a thread
 * of its own.
 *
 * A small file costs the receiver five system calls before it is renamed into place
 * (create, write, mode, times, close), and the create is the dear one: 19 µs on a quiet
 * disk, several times that while other programs create files on the same file system
 * (measured during the live small-file benchmark: the receiver's event loop spent a third
 * of its time in `open`). Through the libuv thread pool each call is a round trip and a
 * promise (measured: 2.6-4.0 CPU-s per 10,000 files, against 1.0-1.2 s synchronously), so
 * the puller made them synchronously on the event loop, where they held up the protocol,
 * the hashing and the store. Here they are made by one thread, a batch of files per
 * message: what is asked for in one turn of the event loop goes together (a group of 256
 * small files arrives in a few turns), the bytes copied into one transferred buffer.
 *
 * `write`: create or truncate the temp file, write it whole, set its mode and times, fstat
 * and close it (the caller gets the temp file's state without a stat of its own). A failed
 * file is removed, and its error (with its code) goes to that file's caller alone.
 *
 * `replace`: the puller's last step for a path, the look at the target and the rename, as
 * one synchronous step on this thread (a local write cannot land between the two any more
 * than it could on the event loop). The store calls it under its install lock, so the
 * version installed is still the current one; the comparison is the store's own
 * `sameObserved` (its source is put into the thread's code).
 */
import { Worker } from 'node:worker_threads'
import type { Uint8ArrayList } from 'uint8arraylist'
import { observedFromStat, sameObserved, type Observed } from '../store/datafolder.js'

/** Content given to `write` with its SHA-256 did not match it: no file was made. */
export class CorruptContentError extends Error {
  override name = 'CorruptContentError'
}

/** The target of a `replace` was not as expected: changed since the puller looked. */
export class TargetChangedError extends Error {
  override name = 'TargetChangedError'
}

const TYPES = ['file', 'dir', 'symlink'] as const
/** In a write batch's hashes, a file whose content is not checked. */
const NO_HASH = ' '.repeat(64)

/** Write buffers: at least this large when made, kept for reuse up to SPARE_KEPT of at most SPARE_MAX. */
const SPARE_MIN = 1024 * 1024
const SPARE_KEPT = 4
const SPARE_MAX = 8 * 1024 * 1024

/** The thread: CommonJS evaluated as a worker (no file to find next to the compiled code). */
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads')
const lock = workerData.lock // see ReplaceLock
const withReplacesHeld = ${withReplacesHeld.toString()}
const { openSync, writeSync, fchmodSync, futimesSync, fstatSync, closeSync, rmSync, lstatSync, renameSync, rmdirSync } = require('node:fs')
const { hash } = require('node:crypto')
const sameObserved = ${sameObserved.toString()}
const observedFromStat = ${observedFromStat.toString()}
const TYPES = ${JSON.stringify(TYPES)}
function write ({ buf, paths, nums, hashes }, out, errors) {
  const bytes = new Uint8Array(buf)
  // per file: offset, length, mode, mtime in; inode, size, mode, mtime out
  paths.split('\\0').forEach((tmp, i) => {
    const off = nums[4 * i], len = nums[4 * i + 1], mode = nums[4 * i + 2], mtimeMs = nums[4 * i + 3]
    // the content's SHA-256 given with it (64 hex digits, or 64 spaces): checked first
    const expect = hashes.slice(64 * i, 64 * i + 64)
    if (expect.charCodeAt(0) !== 32 && hash('sha256', bytes.subarray(off, off + len), 'hex') !== expect) {
      errors[i] = { code: 'ECORRUPT', message: 'content does not match its hash' }
      return
    }
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
      errors[i] = { code: err.code, message: err.message }
    }
  })
}
function replace ({ paths, nums }, out, errors) {
  // per file: the temp file and the target; what the target should be (type index or -1
  // for none, mode, size, mtime, inode or NaN)
  const p = paths.split('\\0')
  for (let i = 0; i < p.length / 2; i++) {
    const tmp = p[2 * i], target = p[2 * i + 1]
    const t = nums[5 * i]
    const expected = t < 0 ? null : { type: TYPES[t], mode: nums[5 * i + 1], size: nums[5 * i + 2], mtimeMs: nums[5 * i + 3], ino: Number.isNaN(nums[5 * i + 4]) ? undefined : nums[5 * i + 4] }
    // 1: the target is not as expected (nothing done), 0: renamed
    const step = () => {
      let now = null
      try {
        const st = lstatSync(target, { throwIfNoEntry: false })
        now = st === undefined ? null : observedFromStat(st)
      } catch (err) {
        if (err.code !== 'ENOTDIR') throw err
      }
      if (!sameObserved(now, expected)) return 1
      if (now !== null && now.type === 'dir') rmdirSync(target)
      renameSync(tmp, target)
      return 0
    }
    try {
      out[i] = lock ? withReplacesHeld(lock, step) : step()
    } catch (err) {
      errors[i] = { code: err.code, message: err.message }
    }
  }
}
parentPort.on('message', (m) => {
  const n = m.op === 'write' ? m.nums.length / 4 : m.nums.length / 5
  const out = new Float64Array(m.op === 'write' ? 4 * n : n)
  const errors = {}
  if (m.op === 'write') {
    write(m, out, errors)
    // the buffer goes back for the next batch
    parentPort.postMessage({ id: m.id, out, errors, buf: m.buf }, [out.buffer, m.buf])
  } else {
    replace(m, out, errors)
    parentPort.postMessage({ id: m.id, out, errors }, [out.buffer])
  }
})
`

interface Pending<T> {
  resolve: (v: T) => void
  reject: (err: Error) => void
}
interface PendingWrite extends Pending<Observed> {
  tmp: string
  data: Uint8Array | Uint8ArrayList
  mode: number
  mtimeMs: number
  /** SHA-256 (hex) the data must have, checked on the thread; null: not checked. */
  sha256: string | null
}
interface PendingReplace extends Pending<void> {
  tmp: string
  target: string
  expected: Observed | null
}

type Answer = (out: Float64Array, errors: Record<number, { code?: string, message: string }>) => void

/**
 * For simulations, which run the nodes and a workload of synchronous file operations in
 * one process and rely on no node work landing in the middle of one such operation: an
 * Int32Array on a SharedArrayBuffer (one element, 0 when free) that the thread holds from
 * its look at a target to the rename, and `withReplacesHeld` holds around an operation.
 * A program in another process has the same short window between the look and the rename
 * as with the step on the event loop; the lock only makes the thread as exclusive of the
 * workload as the event loop is.
 */
export type ReplaceLock = Int32Array

export function newReplaceLock (): ReplaceLock {
  return new Int32Array(new SharedArrayBuffer(4))
}

/** Run `fn` (synchronous) with no thread's look-and-rename in progress on `lock`. */
export function withReplacesHeld<T> (lock: ReplaceLock, fn: () => T): T {
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) Atomics.wait(lock, 0, 1)
  try {
    return fn()
  } finally {
    Atomics.store(lock, 0, 0)
    Atomics.notify(lock, 0)
  }
}

export class TempWriter {
  private worker: Worker | null = null
  private writes: PendingWrite[] = []
  private replaces: PendingReplace[] = []
  private scheduled = false
  private nextId = 1
  private readonly inFlight = new Map<number, { answer: Answer, fail: (err: Error) => void }>()
  /** Write buffers the thread gave back, for the next batches (at most SPARE_KEPT). */
  private readonly spare: ArrayBuffer[] = []
  private readonly lock: ReplaceLock | null

  constructor (lock: ReplaceLock | null = null) {
    this.lock = lock
  }

  /**
   * Write `data` to `tmp` (created or truncated) with `mode` and `mtimeMs`, closed; resolves
   * with the temp file's state. Rejects with the system call's error (the file removed).
   * With `sha256` (hex), the data is hashed on the thread first, and if it does not match,
   * nothing is written and the write rejects with CorruptContentError: a receiver's check
   * of each small block it pulls, off its event loop (3-5% of a receiving node's event
   * loop in a catch-up of small files), on the thread that has the bytes anyway.
   */
  write (tmp: string, data: Uint8Array | Uint8ArrayList, mode: number, mtimeMs: number, sha256: string | null = null): Promise<Observed> {
    // not async: one promise per file, not two (thousands of small files a second)
    if (sha256 != null && !/^[0-9a-f]{64}$/.test(sha256)) return Promise.reject(new Error(`not a SHA-256: ${sha256}`))
    return new Promise<Observed>((resolve, reject) => {
      this.writes.push({ tmp, data, mode, mtimeMs, sha256, resolve, reject })
      this.schedule()
    })
  }

  /**
   * Rename `tmp` over `target` if the target is as `expected` (null: absent; an empty
   * directory is removed first). Rejects with TargetChangedError if it is not (nothing
   * done), else with the system call's error.
   */
  replace (tmp: string, target: string, expected: Observed | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.replaces.push({ tmp, target, expected, resolve, reject })
      this.schedule()
    })
  }

  /** Stop the thread (a later call starts another); what is not answered yet fails. */
  async close (): Promise<void> {
    const w = this.worker
    this.worker = null
    const err = new Error('temp writer closed')
    for (const p of [...this.writes.splice(0), ...this.replaces.splice(0)]) p.reject(err)
    this.failAll(err)
    if (w != null) await w.terminate()
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.flushWrites()
      this.flushReplaces()
    })
  }

  private flushWrites (): void {
    const batch = this.writes
    if (batch.length === 0) return
    this.writes = []
    let total = 0
    for (const p of batch) total += p.data.byteLength
    // a buffer the thread gave back when one is large enough: a new one is zeroed, and on
    // this project's virtual machines each first touch of a fresh page costs ~10 µs
    const i = this.spare.findIndex((b) => b.byteLength >= total)
    const buf = i >= 0 ? this.spare.splice(i, 1)[0] : new ArrayBuffer(Math.max(total, SPARE_MIN))
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
    const hashes = batch.map((p) => p.sha256 ?? NO_HASH).join('')
    this.send({ op: 'write', buf, paths, nums, hashes }, [buf, nums.buffer], batch, (out, errors) => {
      batch.forEach((p, i) => {
        const e = errors[i]
        if (e?.code === 'ECORRUPT') p.reject(new CorruptContentError(`${p.tmp}: ${e.message}`))
        else if (e != null) p.reject(Object.assign(new Error(e.message), { code: e.code }))
        else p.resolve({ type: 'file', ino: out[4 * i], size: out[4 * i + 1], mode: out[4 * i + 2], mtimeMs: out[4 * i + 3] })
      })
    })
  }

  private flushReplaces (): void {
    const batch = this.replaces
    if (batch.length === 0) return
    this.replaces = []
    const nums = new Float64Array(batch.length * 5)
    batch.forEach((p, i) => {
      const e = p.expected
      nums.set(e == null ? [-1, 0, 0, 0, NaN] : [TYPES.indexOf(e.type), e.mode, e.size, e.mtimeMs, e.ino ?? NaN], 5 * i)
    })
    const paths = batch.map((p) => `${p.tmp}\0${p.target}`).join('\0')
    this.send({ op: 'replace', paths, nums }, [nums.buffer], batch, (out, errors) => {
      batch.forEach((p, i) => {
        const e = errors[i]
        if (e != null) p.reject(Object.assign(new Error(e.message), { code: e.code }))
        else if (out[i] === 1) p.reject(new TargetChangedError(`${p.target} changed`))
        else p.resolve()
      })
    })
  }

  private send (msg: Record<string, unknown>, transfer: ArrayBuffer[], batch: Array<Pending<never>>, answer: Answer): void {
    const id = this.nextId++
    this.inFlight.set(id, { answer, fail: (err) => { for (const p of batch) p.reject(err) } })
    try {
      this.thread().postMessage({ ...msg, id }, transfer)
    } catch (err) {
      this.inFlight.delete(id)
      for (const p of batch) p.reject(err as Error)
    }
  }

  private thread (): Worker {
    if (this.worker != null) return this.worker
    const w = new Worker(WRITER, { eval: true, workerData: { lock: this.lock } })
    w.unref()
    w.on('message', ({ id, out, errors, buf }: { id: number, out: Float64Array, errors: Record<number, { code?: string, message: string }>, buf?: ArrayBuffer }) => {
      if (buf != null && this.spare.length < SPARE_KEPT && buf.byteLength <= SPARE_MAX) this.spare.push(buf)
      const f = this.inFlight.get(id)
      if (f == null) return
      this.inFlight.delete(id)
      f.answer(out, errors)
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
    for (const f of this.inFlight.values()) f.fail(err)
    this.inFlight.clear()
  }
}
