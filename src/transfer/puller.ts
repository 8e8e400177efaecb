/**
 * The puller: puts the winning version of every needed path on the local disk.
 *
 *   store 'need' ──▶ queue ──▶ workers (files at once: `concurrency`)
 *                                 │
 *        deleted / dir / symlink / metadata-only: done locally
 *                                 │ file content
 *                                 ▼
 *   partial file  <hash>.part ──▶ re-hash what it holds (resume)
 *                                 │ blocks still missing
 *                                 ├─▶ block index: copy from a local file (rename/copy costs no transfer)
 *                                 └─▶ peers: spread over every peer, bytes in flight bounded per peer,
 *                                     each block verified (SHA-256); NOT_FOUND, errors and lies → next peer
 *                                 ▼
 *   chmod, utimes, check the target was not changed unrecorded, rename into place, markInstalled
 */
import { createHash } from 'node:crypto'
import { chmod, mkdir, open, rm, symlink, utimes, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { blockLength, readAt } from '../store/blocks.js'
import { isErrno, observedFromStat, sameObserved, type DataFolder, type Observed } from '../store/datafolder.js'
import { lstatSync, renameSync, rmdirSync, unlinkSync } from 'node:fs'
import type { Scanner } from '../store/scanner.js'
import type { Store } from '../store/store.js'
import type { StoredRecord } from '../store/types.js'
import { BlockUnavailableError, type PeerBlockClient } from './protocol.js'

export interface PullerInit {
  /**
   * Paths worked on at once (many small files need many in flight).
   *
   * @default 64
   */
  concurrency?: number
  /**
   * Blocks of one file requested at once (the bytes in flight per peer bound it too).
   *
   * @default 64
   */
  blocksPerFile?: number
  /**
   * A peer that sent this many blocks that did not match their hash is not asked again
   * for `banMs`.
   *
   * @default 3
   */
  maxStrikes?: number
  /** @default 600_000 */
  banMs?: number
  /** @default 30_000 */
  maxRetryDelayMs?: number
}

export interface PullerComponents {
  store: Store
  data: DataFolder
  scanner: Scanner
  /** The peers that can be asked for blocks now. */
  peers: () => PeerBlockClient[]
  log?: (msg: string) => void
}

export class PullError extends Error {
  override name = 'PullError'
}

/** What the puller is doing, for status and progress. */
export interface PullProgress {
  path: string
  size: number
  done: number
}

export class Puller {
  private readonly store: Store
  private readonly data: DataFolder
  private readonly scanner: Scanner
  private readonly peers: () => PeerBlockClient[]
  private readonly log: (msg: string) => void
  private readonly concurrency: number
  private readonly blocksPerFile: number
  private readonly maxStrikes: number
  private readonly banMs: number
  private readonly maxRetryDelayMs: number
  /** Paths to create or update, and paths to delete: deletes run only when the first is
   * drained, so a rename's new path copies its blocks from the old file before it goes. */
  private readonly queue = new Set<string>()
  private readonly deletes = new Set<string>()
  private activeWrites = 0
  private readonly active = new Map<string, PullProgress>()
  private readonly retry = new Map<string, { timer: NodeJS.Timeout | null }>()
  private readonly attempts = new Map<string, number>()
  private readonly strikes = new Map<string, number>()
  private readonly banned = new Map<string, number>()
  private readonly onNeed = (recs: StoredRecord[]): void => { this.enqueueRecords(recs) }
  private workers = 0
  private started = false
  private idleWaiters: Array<() => void> = []
  readonly stats = { blocksFetched: 0, bytesFetched: 0, blocksCopiedLocally: 0, blocksReused: 0, badBlocks: 0, filesInstalled: 0 }
  lastError: string | null = null

  constructor (components: PullerComponents, init: PullerInit = {}) {
    this.store = components.store
    this.data = components.data
    this.scanner = components.scanner
    this.peers = components.peers
    this.log = components.log ?? (() => {})
    this.concurrency = init.concurrency ?? 64
    this.blocksPerFile = init.blocksPerFile ?? 64
    this.maxStrikes = init.maxStrikes ?? 3
    this.banMs = init.banMs ?? 600_000
    this.maxRetryDelayMs = init.maxRetryDelayMs ?? 30_000
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.store.on('need', this.onNeed)
    const recs = (await this.store.getMany(await this.store.neededPaths())).filter((r): r is StoredRecord => r != null)
    this.enqueueRecords(recs)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.store.off('need', this.onNeed)
    this.queue.clear()
    this.deletes.clear()
    for (const r of this.retry.values()) if (r.timer != null) clearTimeout(r.timer)
    this.retry.clear()
    this.attempts.clear()
    while (this.workers > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  /** Files being pulled now, with bytes done. */
  progress (): PullProgress[] {
    return [...this.active.values()].map((p) => ({ ...p }))
  }

  /** Paths waiting (queued or backing off). */
  get waiting (): number {
    return this.queue.size + this.deletes.size + this.retry.size
  }

  /** Peers currently skipped for serving bad blocks. */
  bannedPeers (): string[] {
    const now = Date.now()
    return [...this.banned].filter(([, until]) => until > now).map(([p]) => p)
  }

  /** New peers (or a reconnect): try everything that is backing off now. */
  retryNow (): void {
    const paths = [...this.retry.keys()]
    for (const r of this.retry.values()) if (r.timer != null) clearTimeout(r.timer)
    this.retry.clear()
    void this.store.getMany(paths).then((recs) => { this.enqueueRecords(recs.filter((r): r is StoredRecord => r != null)) }, () => {})
  }

  private enqueueRecords (recs: StoredRecord[]): void {
    const ordered = orderForInstall(recs)
    this.enqueue(ordered.filter((r) => !r.deleted).map((r) => r.path), false)
    this.enqueue(ordered.filter((r) => r.deleted).map((r) => r.path), true)
  }

  /** Queue paths (their current record decides what happens; `deletion` only orders). */
  enqueue (paths: string[], deletion = false): void {
    if (!this.started) return
    for (const p of paths) {
      const r = this.retry.get(p)
      if (r != null) { if (r.timer != null) clearTimeout(r.timer); this.retry.delete(p) }
      if (deletion) { if (!this.queue.has(p)) this.deletes.add(p) } else { this.deletes.delete(p); this.queue.add(p) }
    }
    this.pump()
  }

  private next (): { path: string, write: boolean } | null {
    for (const p of this.queue) if (!this.active.has(p)) { this.queue.delete(p); return { path: p, write: true } }
    if (this.queue.size > 0 || this.activeWrites > 0) return null
    for (const p of this.deletes) if (!this.active.has(p)) { this.deletes.delete(p); return { path: p, write: false } }
    return null
  }

  private pump (): void {
    while (this.started && this.workers < this.concurrency) {
      const job = this.next()
      if (job == null) return
      const { path, write } = job
      this.workers++
      if (write) this.activeWrites++
      this.active.set(path, { path, size: 0, done: 0 })
      void this.work(path).finally(() => {
        this.active.delete(path)
        this.workers--
        if (write) this.activeWrites--
        if (this.workers === 0) for (const w of this.idleWaiters.splice(0)) w()
        this.pump()
      })
    }
  }

  private async work (path: string): Promise<void> {
    try {
      await this.materialize(path)
      this.attempts.delete(path)
    } catch (err) {
      if (!this.started || (err as Error).name === 'StoreClosedError') return
      const msg = `${path}: ${(err as Error).message}`
      this.lastError = msg
      this.log(`pull failed: ${msg}`)
      const attempts = (this.attempts.get(path) ?? 0) + 1
      this.attempts.set(path, attempts)
      const r: { timer: NodeJS.Timeout | null } = { timer: null }
      const delay = Math.min(this.maxRetryDelayMs, 125 * 2 ** Math.min(attempts, 10))
      r.timer = setTimeout(() => {
        r.timer = null
        this.retry.delete(path)
        void this.store.get(path).then((rec) => { if (rec != null) this.enqueueRecords([rec]) }, () => {})
      }, delay)
      r.timer.unref()
      this.retry.set(path, r)
    }
  }

  /** Put the winning version of `path` on disk, unless a local write got there first. */
  private async materialize (path: string): Promise<void> {
    let rec = await this.store.get(path)
    if (rec == null || rec.have) return
    let observed = await this.data.observe(path)
    if (!sameDisk(observed, rec)) {
      // the disk changed and the store has not seen it: record it first (it takes part
      // in the conflict rule instead of being overwritten)
      await this.scanner.scanPaths([path])
      rec = await this.store.get(path)
      if (rec == null || rec.have) return
      observed = await this.data.observe(path)
      if (!sameDisk(observed, rec)) throw new PullError('local file changes while it is being recorded')
    }
    this.scanner.hold(path)
    try {
      const abs = this.data.abs(path)
      const r = rec
      // Every change to the path runs inside store.install: only while `rec` is still the
      // winning version, under the store lock, with the last check that the path is as
      // the store last saw it and the change itself in one synchronous step (no local
      // write can land in between), and the state recorded is the one this step made.
      const unchanged = (): Observed | null => {
        const now = this.data.observeSync(path)
        if (!sameObserved(now, observed)) throw new PullError('changed locally during the pull; recording it first')
        return now
      }
      if (rec.deleted) {
        await this.data.checkParents(path)
        await this.store.install(rec, async () => await this.atomically(path, () => {
          const now = unchanged()
          if (now?.type === 'dir') rmdirSync(abs)
          else if (now != null) unlinkSync(abs)
          return null
        }))
        return
      }
      if (rec.type === 'dir') {
        await this.data.checkParents(path)
        await this.store.install(rec, async () => {
          await this.atomically(path, () => {
            const now = unchanged()
            if (now != null && now.type !== 'dir') unlinkSync(abs)
          })
          await mkdir(abs, { recursive: true })
          await chmod(abs, r.mode)
          return this.data.observeSync(path)
        })
        return
      }
      if (rec.type === 'symlink') {
        const tmp = join(this.data.tmpDir, `${rec.hash}.${process.pid}.${Math.random().toString(36).slice(2)}.lnk`)
        await symlink(rec.target, tmp)
        await this.replace(tmp, rec, observed)
        return
      }
      if (observed?.type === 'file' && rec.disk?.hash === rec.hash) {
        // same content, new metadata
        await this.data.checkParents(path)
        await this.store.install(rec, async () => {
          const now = await this.atomically(path, unchanged)
          await chmod(abs, r.mode)
          await utimes(abs, r.mtimeMs / 1000, r.mtimeMs / 1000)
          // what we set, not a fresh look: a write landing meanwhile must show as a change
          return now == null ? null : { ...now, mode: r.mode, mtimeMs: r.mtimeMs }
        })
        return
      }
      const tmp = rec.blocks.length <= 1 ? await this.fetchSmall(rec) : await this.fetchContent(rec)
      await this.replace(tmp, rec, observed)
      this.stats.filesInstalled++
    } finally {
      this.scanner.release(path)
    }
  }

  /** Rename a finished temp file or link over `rec.path`, if the target is unchanged. */
  private async replace (tmp: string, rec: StoredRecord, observed: Observed | null): Promise<void> {
    const abs = this.data.abs(rec.path)
    const installed = await this.data.ensureParent(rec.path).then(async () => await this.store.install(rec, async () => await this.atomically(rec.path, () => {
      const now = this.data.observeSync(rec.path)
      // written locally meanwhile: the store records it first (conflict rule), then we retry
      if (!sameObserved(now, observed)) throw new PullError('changed locally during the pull; recording it first')
      // the temp file's own state: a rename keeps inode, size, mode and mtime
      const ready = observedFromStat(lstatSync(tmp))
      if (now?.type === 'dir') rmdirSync(abs)
      renameSync(tmp, abs)
      return ready
    }))).catch(async (err: Error) => { await rm(tmp, { force: true }); throw err })
    // superseded by a newer version meanwhile: that one is queued already
    if (!installed) await rm(tmp, { force: true })
  }

  /**
   * The last check that `path` is as the store saw it and the change itself, as one synchronous step. With
   * a FUSE mount (scanner.writes) also: nothing done through the mount lands in between (the step runs under
   * the mount's ordering lock, after what its FUSE threads queued was taken), and a file a program has open
   * for writing through the mount is left alone even when its content is still the recorded one: replaced,
   * its later writes would go to the old file and be lost. Its release records it and the conflict rule
   * decides; the pull is tried again.
   */
  private async atomically<T> (path: string, step: () => T): Promise<T> {
    const w = this.scanner.writes
    if (w == null) return step()
    const guarded = (): T => {
      if (w.isOpenForWrite(path)) throw new PullError('open for writing through the mount; installing once it is closed')
      return step()
    }
    if (w.exclusive === undefined) return guarded()
    for (let tries = 1; ; tries++) {
      try {
        return w.exclusive(guarded)
      } catch (err) {
        if ((err as Error).name !== 'MountBusyError') throw err
        // a request through the mount is being served (it may be waiting for this event loop): a moment later
        if (tries >= 50) throw new PullError('the mount stays busy; trying again later')
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    }
  }

  /**
   * A file of at most one block: fetched into memory and written to its temp file in one
   * go, mode and times set on the open handle (a burst of small files is syscall-bound).
   */
  private async fetchSmall (rec: StoredRecord): Promise<string> {
    const tmp = this.data.partialPath(rec.hash, rec.path)
    const data = rec.blocks.length === 0 ? new Uint8Array(0) : await this.obtainBlock(rec, 0, rec.size)
    const fh = await open(tmp, 'w', rec.mode)
    try {
      await writeAll(fh, data, 0)
      await fh.chmod(rec.mode)
      await fh.utimes(rec.mtimeMs / 1000, rec.mtimeMs / 1000)
    } catch (err) {
      await fh.close().catch(() => {})
      await rm(tmp, { force: true })
      throw err
    }
    await fh.close()
    return tmp
  }

  /** Fill the partial file of `rec` until every block is there and verified. */
  private async fetchContent (rec: StoredRecord): Promise<string> {
    const partial = this.data.partialPath(rec.hash, rec.path)
    const progress = this.active.get(rec.path)
    if (progress != null) progress.size = rec.size
    let fh: FileHandle
    try {
      fh = await open(partial, 'r+')
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      fh = await open(partial, 'w+')
    }
    try {
      const n = rec.blocks.length
      const missing: number[] = []
      const st = await fh.stat()
      if (st.size > 0) {
        // resume: keep every block the partial file already holds
        for (let i = 0; i < n; i++) {
          const len = blockLength(rec.size, rec.blockSize, i)
          const off = i * rec.blockSize
          if (off + len <= st.size && await blockMatches(fh, off, len, rec.blocks[i])) {
            this.stats.blocksReused++
            if (progress != null) progress.done += len
          } else {
            missing.push(i)
          }
        }
      } else {
        for (let i = 0; i < n; i++) missing.push(i)
      }
      if (st.size !== rec.size) await fh.truncate(rec.size)
      const failures: Error[] = []
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < missing.length) {
          // stopping: keep the partial file as it is, the next start resumes it
          if (!this.started) { failures.push(new PullError('node stopping')); return }
          const i = missing[next++]
          const len = blockLength(rec.size, rec.blockSize, i)
          try {
            const data = await this.obtainBlock(rec, i, len)
            await writeAll(fh, data, i * rec.blockSize)
            if (progress != null) progress.done += len
          } catch (err) {
            failures.push(err as Error)
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(this.blocksPerFile, missing.length) }, worker))
      if (failures.length > 0) {
        const full = failures.find((e) => isErrno(e, 'ENOSPC', 'EDQUOT'))
        if (full != null) {
          // a full disk: give the space of this partial back so other files can still
          // sync; the pull starts over when it is retried
          await fh.truncate(0).catch(() => {})
          throw new PullError(`no space left on the device for ${rec.path} (${rec.size} bytes); will retry`)
        }
        throw new PullError(`${failures.length} of ${n} blocks unavailable (${failures[0].message})`)
      }
      await fh.chmod(rec.mode)
      await fh.utimes(rec.mtimeMs / 1000, rec.mtimeMs / 1000)
    } finally {
      await fh.close()
    }
    return partial
  }

  /** One block, from a local file if any holds it, else from the peers. */
  private async obtainBlock (rec: StoredRecord, i: number, len: number): Promise<Uint8Array> {
    const hash = rec.blocks[i]
    for (const src of await this.store.blockSources(hash, 4)) {
      const data = await readLocal(this.data.abs(src.path), src.offset, len).catch(() => null)
      if (data != null && sha256(data) === hash) {
        this.stats.blocksCopiedLocally++
        return data
      }
    }
    const tried = new Set<string>()
    let lastErr: Error = new PullError('no connected peer has it')
    for (;;) {
      const now = Date.now()
      const candidates = this.peers().filter((p) => {
        const id = p.peer.toString()
        return !tried.has(id) && (this.banned.get(id) ?? 0) < now
      })
      if (candidates.length === 0) throw lastErr
      // spread over the peers: the least loaded first
      candidates.sort((a, b) => a.load - b.load)
      const peer = candidates[0]
      const id = peer.peer.toString()
      tried.add(id)
      try {
        const data = await peer.request(hash, len, rec.path, i * rec.blockSize)
        if (data.byteLength !== len || sha256(data) !== hash) {
          this.stats.badBlocks++
          const s = (this.strikes.get(id) ?? 0) + 1
          this.strikes.set(id, s)
          this.log(`peer ${id} sent a block of ${rec.path} that does not match its hash (strike ${s})`)
          if (s >= this.maxStrikes) {
            this.banned.set(id, Date.now() + this.banMs)
            this.strikes.delete(id)
            this.log(`peer ${id} skipped for ${Math.round(this.banMs / 1000)} s: too many bad blocks`)
          }
          lastErr = new PullError(`peer ${id} sent a corrupt block`)
          continue
        }
        this.stats.blocksFetched++
        this.stats.bytesFetched += len
        return data
      } catch (err) {
        lastErr = err instanceof BlockUnavailableError ? err : new PullError(`peer ${id}: ${(err as Error).message}`)
      }
    }
  }
}

/** Whether the disk at a path is what the store last saw there. */
function sameDisk (observed: Observed | null, rec: StoredRecord): boolean {
  if (rec.disk == null) return observed == null
  return sameObserved(observed, rec.disk)
}

/** Parents before children for what appears; children before parents for what goes. */
export function orderForInstall (recs: StoredRecord[]): StoredRecord[] {
  const present = recs.filter((r) => !r.deleted).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  const gone = recs.filter((r) => r.deleted).sort((a, b) => (a.path < b.path ? 1 : a.path > b.path ? -1 : 0))
  return [...present, ...gone]
}

function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

async function writeAll (fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let written = 0
  while (written < data.byteLength) {
    const { bytesWritten } = await fh.write(data, written, data.byteLength - written, position + written)
    written += bytesWritten
  }
}

async function readLocal (abs: string, offset: number, len: number): Promise<Buffer> {
  const fh = await open(abs, 'r')
  try {
    const buf = await readAt(fh, offset, len)
    if (buf == null) throw new Error('short read')
    return buf
  } finally {
    await fh.close()
  }
}

async function blockMatches (fh: FileHandle, offset: number, len: number, hash: string): Promise<boolean> {
  const buf = await readAt(fh, offset, len)
  return buf != null && sha256(buf) === hash
}
