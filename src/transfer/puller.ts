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
import { dirname, join } from 'node:path'
import type { Uint8ArrayList } from 'uint8arraylist'
import { blockLength, readAt } from '../store/blocks.js'
import { isErrno, observedFromStat, sameObserved, type DataFolder, type Observed } from '../store/datafolder.js'
import { lstatSync, renameSync, rmdirSync, unlinkSync } from 'node:fs'
import { mapLimit, type Scanner } from '../store/scanner.js'
import type { Store } from '../store/store.js'
import type { StoredRecord } from '../store/types.js'
import { TRANSFER_LIMITS, type Want } from './codec.js'
import { BlockUnavailableError, type PeerBlockClient } from './protocol.js'
import { CorruptContentError, TargetChangedError, TempWriter, type ReplaceLock } from './tempwriter.js'
import { DirectWrites } from './direct.js'

/** A file of one block up to this size is a small file: pulled in groups, written in one go. */
export const SMALL_FILE = 128 * 1024
/** Small files pulled together (one job: one store read, one request, one install batch). */
const GROUP = 256
/** Bytes asked for in one batch request. */
const BATCH_BYTES = 4 * 1024 * 1024
/** Verified blocks waiting to be written, at most (the fetch waits beyond this). */
const MAX_UNWRITTEN = 32 * 1024 * 1024
/** Records read at once when many paths are queued (at start, and again when a peer connects). */
const REQUEUE_SLICE = 2000
/** Files from this size up have their whole fetched blocks written past the page cache (direct.ts). */
const DIRECT_MIN_BYTES = 32 * 1024 * 1024

/** One block to fetch from the peers, with what to do with it once verified. */
interface FetchJob {
  want: Want
  /** The path it is for (for logs). */
  path: string
  tried: Set<string>
  /** Why the last peer asked did not serve it (null: no peer asked yet). */
  lastErr: Error | null
  /**
   * Asked with the block hashed by the peer (Want.unhashedOk unset): after a block that did
   * not match its hash, the same peer is asked once more this way before it is struck (it
   * may have sent a block of a file changed behind its record without hashing it).
   */
  verify?: boolean
  /**
   * `deliver` checks the block against its hash itself (on the temp-file thread), returns
   * a promise, and rejects it with CorruptContentError when the block does not match: the
   * fetch then goes on as if the block had failed the check on arrival. Any other failure
   * is the deliverer's to handle.
   */
  checksOwn?: boolean
  deliver: (data: Uint8ArrayList) => Promise<unknown> | void
}

function isSmallFile (r: StoredRecord): boolean {
  return r.type === 'file' && !r.deleted && r.blocks.length <= 1 && r.size <= SMALL_FILE
}

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
  /** Simulations: the lock the temp-file thread holds while it replaces (ReplaceLock). */
  replaceLock?: ReplaceLock
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

/** Not tried: no peer is connected. The pull waits for the next peer, with no timer. */
export class NoPeerError extends PullError {
  override name = 'NoPeerError'
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
  /** Queued paths whose record (when queued) was a small file: pulled in groups. */
  private readonly smallHint = new Set<string>()
  private activeWrites = 0
  private readonly active = new Map<string, PullProgress>()
  private readonly retry = new Map<string, { timer: NodeJS.Timeout | null }>()
  /**
   * Paths whose pull found no peer connected: they wait for the next connection (retryNow)
   * without a timer or a warning each (a node started offline with thousands to pull).
   */
  private readonly parked = new Set<string>()
  private readonly attempts = new Map<string, number>()
  private readonly strikes = new Map<string, number>()
  private readonly banned = new Map<string, number>()
  private readonly onNeed = (recs: StoredRecord[]): void => { this.enqueueRecords(recs) }
  /** The temp files of small files in groups are written on a thread of its own. */
  private readonly tempWriter: TempWriter
  private workers = 0
  private started = false
  private idleWaiters: Array<() => void> = []
  readonly stats = { blocksFetched: 0, bytesFetched: 0, blocksCopiedLocally: 0, blocksReused: 0, badBlocks: 0, blocksReasked: 0, filesInstalled: 0, bytesWrittenDirect: 0 }
  lastError: string | null = null

  constructor (components: PullerComponents, init: PullerInit = {}) {
    this.tempWriter = new TempWriter(init.replaceLock ?? null)
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
    // what was still to pull at the last stop (a first sync of a large mesh, interrupted,
    // can leave hundreds of thousands)
    await this.requeue(await this.store.neededPaths())
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.store.off('need', this.onNeed)
    this.queue.clear()
    this.deletes.clear()
    this.smallHint.clear()
    for (const r of this.retry.values()) if (r.timer != null) clearTimeout(r.timer)
    this.retry.clear()
    this.parked.clear()
    this.attempts.clear()
    while (this.workers > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
    await this.tempWriter.close()
  }

  /** Files being pulled now, with bytes done. */
  progress (): PullProgress[] {
    return [...this.active.values()].map((p) => ({ ...p }))
  }

  /** Paths waiting (queued or backing off). */
  get waiting (): number {
    return this.queue.size + this.deletes.size + this.retry.size + this.parked.size
  }

  /** Paths waiting for a peer to connect (part of `waiting`). */
  get waitingForPeer (): number {
    return this.parked.size
  }

  /** Peers currently skipped for serving bad blocks. */
  bannedPeers (): string[] {
    const now = Date.now()
    return [...this.banned].filter(([, until]) => until > now).map(([p]) => p)
  }

  /** New peers (or a reconnect): try everything that is backing off now. */
  retryNow (): void {
    const paths = [...this.retry.keys(), ...this.parked]
    for (const r of this.retry.values()) if (r.timer != null) clearTimeout(r.timer)
    this.retry.clear()
    this.parked.clear()
    void this.requeue(paths).catch(() => {})
  }

  /**
   * Queue `paths` (again), their records read a slice at a time (there may be very many):
   * in path order, so parents come before children across slices, and the deletions last,
   * children before parents over all of them.
   */
  private async requeue (paths: string[]): Promise<void> {
    const sorted = [...paths].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
    const deletions: string[] = []
    for (let i = 0; i < sorted.length && this.started; i += REQUEUE_SLICE) {
      const recs = (await this.store.getMany(sorted.slice(i, i + REQUEUE_SLICE))).filter((r): r is StoredRecord => r != null)
      for (const r of recs) if (r.deleted) deletions.push(r.path)
      this.enqueueRecords(recs.filter((r) => !r.deleted))
    }
    this.enqueue(deletions.reverse(), true)
  }

  private enqueueRecords (recs: StoredRecord[]): void {
    for (const r of recs) {
      if (isSmallFile(r)) this.smallHint.add(r.path)
      else this.smallHint.delete(r.path)
    }
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
      this.parked.delete(p)
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
      // small files go in groups: the queued small files after this one come along
      const paths = [path]
      if (write && this.smallHint.has(path)) {
        for (const p of this.queue) {
          if (paths.length >= GROUP) break
          if (!this.smallHint.has(p) || this.active.has(p)) continue
          this.queue.delete(p)
          paths.push(p)
        }
      }
      this.workers++
      if (write) this.activeWrites++
      for (const p of paths) {
        this.smallHint.delete(p)
        this.active.set(p, { path: p, size: 0, done: 0 })
      }
      void (paths.length > 1 ? this.materializeGroup(paths) : this.work(path)).finally(() => {
        for (const p of paths) this.active.delete(p)
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
      this.failed(path, err as Error)
    }
  }

  /** A pull of `path` failed: log it and try again later (backing off). */
  private failed (path: string, err: Error): void {
    if (!this.started || err.name === 'StoreClosedError') return
    // no peer to ask (and none connected since): wait for one; retryNow brings it back
    if (err instanceof NoPeerError && this.peers().length === 0) {
      this.parked.add(path)
      this.attempts.delete(path)
      return
    }
    const msg = `${path}: ${err.message}`
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

  /**
   * Small files, many at once, with the same checks as `materialize` gives each path:
   * one store read for all, one look at each path (synchronous: a stat costs less than a
   * round trip through the thread pool), each parent directory checked once, the blocks
   * in batch requests, each file written in one go and renamed into place in the store's
   * install batches. A path that needs more than that (its disk changed unrecorded, its
   * record is no longer a small file, only its metadata changed) takes the one-path way,
   * which records a local change first.
   */
  private async materializeGroup (paths: string[]): Promise<void> {
    let recs: Array<StoredRecord | undefined>
    try {
      recs = await this.store.getMany(paths)
    } catch (err) {
      for (const p of paths) this.failed(p, err as Error)
      return
    }
    const items: Array<{ rec: StoredRecord, observed: Observed | null }> = []
    const alone: string[] = []
    for (let i = 0; i < paths.length; i++) {
      const rec = recs[i]
      if (rec == null || rec.have) continue
      let observed: Observed | null
      try {
        observed = this.data.observeSync(rec.path)
      } catch {
        alone.push(rec.path)
        continue
      }
      if (!isSmallFile(rec) || !sameDisk(observed, rec) || (observed?.type === 'file' && rec.disk?.hash === rec.hash)) {
        alone.push(rec.path)
        continue
      }
      items.push({ rec, observed })
    }
    await Promise.all([
      Promise.all(alone.map(async (p) => { await this.work(p) })),
      this.pullSmall(items)
    ])
  }

  private async pullSmall (items: Array<{ rec: StoredRecord, observed: Observed | null }>): Promise<void> {
    if (items.length === 0) return
    for (const { rec } of items) this.scanner.hold(rec.path)
    try {
      // each parent directory once (checked: never through a symlink; made if missing)
      const parents = new Map<string, Promise<void>>()
      const ready = await Promise.all(items.map(async ({ rec }) => {
        const dir = dirname(rec.path)
        let p = parents.get(dir)
        if (p == null) { p = this.data.ensureParent(rec.path); parents.set(dir, p) }
        try {
          await p
          return true
        } catch (err) {
          this.failed(rec.path, err as Error)
          return false
        }
      }))
      const todo = items.filter((_it, i) => ready[i])
      const installs: Array<Promise<void>> = []
      // `sha256`: check the data on the temp-file thread. The result is the write: a
      // failure other than content that does not match its hash (which the fetch asks
      // again) is handled here
      const install = (rec: StoredRecord, observed: Observed | null, data: Uint8ArrayList | Uint8Array, sha256: string | null = null): Promise<Observed> => {
        const tmp = this.data.partialPath(rec.hash, rec.path)
        const written = this.tempWriter.write(tmp, data, rec.mode, rec.mtimeMs, sha256)
        installs.push(written
          .then(async (st) => { await this.installTmp(tmp, rec, observed, st) })
          .then(() => {
            this.stats.filesInstalled++
            this.attempts.delete(rec.path)
          }, (err: Error) => { if (!(err instanceof CorruptContentError)) this.failed(rec.path, err) }))
        return written
      }
      const jobs: FetchJob[] = []
      await Promise.all(todo.map(async ({ rec, observed }) => {
        if (rec.blocks.length === 0) { install(rec, observed, new Uint8Array(0)).catch(() => {}); return }
        const local = await this.localBlock(rec, 0, rec.size).catch(() => null)
        if (local != null) { install(rec, observed, local).catch(() => {}); return }
        jobs.push({
          want: { hash: rec.blocks[0], size: rec.size, pathHint: rec.path, offsetHint: 0 },
          path: rec.path,
          tried: new Set(),
          lastErr: null,
          checksOwn: true,
          deliver: (data) => install(rec, observed, data, rec.blocks[0])
        })
      }))
      for (const [job, err] of await this.fetchJobs(jobs, 1)) this.failed(job.path, err)
      await Promise.all(installs)
    } finally {
      for (const { rec } of items) this.scanner.release(rec.path)
    }
  }

  /**
   * Fetch every job's block from the peers in batch requests (up to `parallel` at once),
   * each block verified against its hash before it is delivered: a block that is missing
   * or corrupt is asked of the next peer (a peer that lies too often is skipped for a
   * while). Returns the jobs no peer could serve, with the last reason.
   */
  private async fetchJobs (jobs: FetchJob[], parallel: number): Promise<Array<[FetchJob, Error]>> {
    const queue = [...jobs]
    const failed: Array<[FetchJob, Error]> = []
    const writes = new Set<Promise<unknown>>()
    let unwritten = 0
    let asking = 0
    // deliveries of jobs that check their own block (checksOwn), not settled yet
    let checking = 0
    let wake: Array<() => void> = []
    const notify = (): void => { const w = wake; wake = []; for (const fn of w) fn() }
    /** `peer` sent `j` a block that does not match its hash: ask again (hashed), or strike it. */
    const corrupt = (j: FetchJob, id: string): void => {
      if (j.verify !== true) {
        // asked unhashed: ask the same peer again, hashed, before counting it against it
        this.stats.blocksReasked++
        j.verify = true
        j.tried.delete(id)
      } else {
        this.strike(id, j.path)
        j.lastErr = new PullError(`peer ${id} sent a corrupt block`)
      }
      queue.push(j)
      notify()
    }
    const runner = async (): Promise<void> => {
      for (;;) {
        while (unwritten > MAX_UNWRITTEN && writes.size > 0) await Promise.race(writes)
        if (queue.length === 0) {
          // answers still coming, or blocks still being checked, may put jobs back (asked
          // of the next peer)
          if (asking === 0 && checking === 0) return
          await new Promise<void>((resolve) => wake.push(resolve))
          continue
        }
        if (!this.started) {
          for (const j of queue.splice(0)) failed.push([j, new PullError('node stopping')])
          continue
        }
        const first = queue[0]
        const now = Date.now()
        const candidates = this.peers().filter((p) => {
          const id = p.peer.toString()
          return !first.tried.has(id) && (this.banned.get(id) ?? 0) < now
        })
        if (candidates.length === 0) {
          queue.shift()
          failed.push([first, first.lastErr ?? (this.peers().length === 0 ? new NoPeerError('no peer connected') : new PullError('no connected peer has it'))])
          continue
        }
        // spread over the peers: the least loaded first
        candidates.sort((a, b) => a.load - b.load)
        const peer = candidates[0]
        const id = peer.peer.toString()
        const batch: FetchJob[] = []
        let bytes = 0
        const limit = Math.min(BATCH_BYTES, TRANSFER_LIMITS.maxBatchBytes, peer.window)
        for (let k = 0; k < queue.length && k < 2 * TRANSFER_LIMITS.maxWants && batch.length < TRANSFER_LIMITS.maxWants;) {
          const j = queue[k]
          if (j.tried.has(id)) { k++; continue }
          if (batch.length > 0 && bytes + j.want.size > limit) break
          queue.splice(k, 1)
          batch.push(j)
          bytes += j.want.size
        }
        for (const j of batch) j.tried.add(id)
        asking++
        await peer.requestMany(batch.map((j) => j.verify === true ? j.want : { ...j.want, unhashedOk: true }), (i, r) => {
          const j = batch[i]
          if (r.error != null) {
            j.lastErr = r.error instanceof BlockUnavailableError ? r.error : new PullError(`peer ${id}: ${r.error.message}`)
            queue.push(j)
            notify()
            return
          }
          if (r.data.byteLength !== j.want.size || (j.checksOwn !== true && sha256List(r.data) !== j.want.hash)) {
            corrupt(j, id)
            return
          }
          const size = j.want.size
          unwritten += size
          if (j.checksOwn === true) {
            let delivered: Promise<unknown>
            try {
              delivered = j.deliver(r.data) as Promise<unknown>
            } catch (err) {
              // not the deliverer's to handle: it never got going
              unwritten -= size
              failed.push([j, err as Error])
              return
            }
            // one reaction per block (thousands of small files a second go this way)
            checking++
            const settled = (): void => {
              unwritten -= size
              writes.delete(w)
              checking--
              notify()
            }
            const w: Promise<void> = delivered.then(() => {
              this.stats.blocksFetched++
              this.stats.bytesFetched += size
              settled()
            }, (err: Error) => {
              if (err instanceof CorruptContentError) corrupt(j, id)
              settled()
            })
            writes.add(w)
            return
          }
          this.stats.blocksFetched++
          this.stats.bytesFetched += size
          const w: Promise<unknown> = Promise.resolve().then(() => j.deliver(r.data)).catch((err: Error) => { failed.push([j, err]) }).finally(() => {
            unwritten -= size
            writes.delete(w)
          })
          writes.add(w)
        })
        asking--
        notify()
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, parallel) }, runner))
    while (writes.size > 0) await Promise.all(writes)
    return failed
  }

  /** A peer sent a block that does not match its hash: a strike, and a ban after too many. */
  private strike (id: string, path: string): void {
    this.stats.badBlocks++
    const s = (this.strikes.get(id) ?? 0) + 1
    this.strikes.set(id, s)
    this.log(`peer ${id} sent a block of ${path} that does not match its hash (strike ${s})`)
    if (s >= this.maxStrikes) {
      this.banned.set(id, Date.now() + this.banMs)
      this.strikes.delete(id)
      this.log(`peer ${id} skipped for ${Math.round(this.banMs / 1000)} s: too many bad blocks`)
    }
  }

  /** Block `i` of `rec` from a local file that holds it (verified), or null. */
  private async localBlock (rec: StoredRecord, i: number, len: number): Promise<Buffer | null> {
    const hash = rec.blocks[i]
    for (const src of await this.store.blockSources(hash, 4)) {
      const data = await readLocal(this.data.abs(src.path), src.offset, len).catch(() => null)
      if (data != null && sha256(data) === hash) {
        this.stats.blocksCopiedLocally++
        return data
      }
    }
    return null
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
            const now = this.data.observeSync(path)
            // made meanwhile, with the record's mode: what this step makes (the parent of
            // the files pulled into it, made for them a moment before), no local change
            // lost; failing here had the scanner walk the filling directory and record it
            // as a new local version
            if (observed == null && now?.type === 'dir' && now.mode === r.mode) return
            if (!sameObserved(now, observed)) throw new PullError('changed locally during the pull; recording it first')
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
    await this.data.ensureParent(rec.path).catch(async (err: Error) => { await rm(tmp, { force: true }); throw err })
    await this.installTmp(tmp, rec, observed)
  }

  /** Rename a finished temp file or link over `rec.path` (its parent is there), if the target is unchanged. */
  private async installTmp (tmp: string, rec: StoredRecord, observed: Observed | null, written?: Observed): Promise<void> {
    const installed = await this.store.install(rec, async () => written != null && this.scanner.writes == null
      ? await this.replaceByThread(tmp, rec, observed, written)
      : await this.atomically(rec.path, () => this.replaceNow(tmp, rec, observed, written)))
      .catch(async (err: Error) => { await rm(tmp, { force: true }); throw err })
    // superseded by a newer version meanwhile: that one is queued already
    if (!installed) await rm(tmp, { force: true })
  }

  /** The look at `rec.path` and the rename, as one synchronous step here. */
  private replaceNow (tmp: string, rec: StoredRecord, observed: Observed | null, written?: Observed): Observed | null {
    const now = this.data.observeSync(rec.path)
    // written locally meanwhile: the store records it first (conflict rule), then we retry
    if (!sameObserved(now, observed)) throw new PullError('changed locally during the pull; recording it first')
    // the temp file's own state: a rename keeps inode, size, mode and mtime
    const ready = written ?? observedFromStat(lstatSync(tmp))
    if (now?.type === 'dir') rmdirSync(this.data.abs(rec.path))
    renameSync(tmp, this.data.abs(rec.path))
    return ready
  }

  /**
   * The same step on the temp-file thread, for a temp file it wrote, without a mount to
   * order with (the store's install batch runs these at once: one message for all).
   */
  private async replaceByThread (tmp: string, rec: StoredRecord, observed: Observed | null, written: Observed): Promise<Observed> {
    try {
      await this.tempWriter.replace(tmp, this.data.abs(rec.path), observed)
    } catch (err) {
      throw err instanceof TargetChangedError ? new PullError('changed locally during the pull; recording it first') : err
    }
    return written
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
   * A file of at most one block (one that did not come in a group): fetched into memory
   * and written to its temp file in one go, by the temp-file thread.
   */
  private async fetchSmall (rec: StoredRecord): Promise<string> {
    const tmp = this.data.partialPath(rec.hash, rec.path)
    let data: Uint8Array | Uint8ArrayList = new Uint8Array(0)
    if (rec.blocks.length > 0) {
      const local = await this.localBlock(rec, 0, rec.size)
      if (local != null) {
        data = local
      } else {
        const got: { data: Uint8ArrayList | null } = { data: null }
        const job: FetchJob = {
          want: { hash: rec.blocks[0], size: rec.size, pathHint: rec.path, offsetHint: 0 },
          path: rec.path,
          tried: new Set(),
          lastErr: null,
          deliver: (d) => { got.data = d }
        }
        const [failure] = await this.fetchJobs([job], 1)
        if (failure != null) throw failure[1]
        if (got.data == null) throw new PullError('no connected peer has it')
        data = got.data
      }
    }
    await this.tempWriter.write(tmp, data, rec.mode, rec.mtimeMs)
    return tmp
  }

  /**
   * Fill the partial file of `rec` until every block is there and verified: blocks a local
   * file holds are copied, the rest come from the peers in batch requests of consecutive
   * blocks (several at once), each written where it belongs as soon as it is verified.
   */
  private async fetchContent (rec: StoredRecord): Promise<string> {
    const partial = this.data.partialPath(rec.hash, rec.path)
    const progress = this.active.get(rec.path)
    if (progress != null) progress.size = rec.size
    let fh: FileHandle
    let direct: DirectWrites | null = null
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
      // whole fetched blocks of a large file skip the page cache (see direct.ts); any
      // trouble opening it that way leaves the buffered handle to do it all
      if (rec.size >= DIRECT_MIN_BYTES && missing.length > 0) direct = await DirectWrites.open(partial).catch(() => null)
      const failures: Error[] = []
      // blocks a local file holds (a rename, a copy, an edit of a file we have)
      const jobs: FetchJob[] = []
      const local = await mapLimit(missing, 8, async (i) => await this.localBlock(rec, i, blockLength(rec.size, rec.blockSize, i)).catch(() => null))
      for (let k = 0; k < missing.length; k++) {
        const i = missing[k]
        const len = blockLength(rec.size, rec.blockSize, i)
        const off = i * rec.blockSize
        const data = local[k]
        if (data != null) {
          try {
            await writeAll(fh, data, off)
            if (progress != null) progress.done += len
          } catch (err) {
            failures.push(err as Error)
          }
          continue
        }
        jobs.push({
          want: { hash: rec.blocks[i], size: len, pathHint: rec.path, offsetHint: off },
          path: rec.path,
          tried: new Set(),
          lastErr: null,
          deliver: async (d) => {
            if (direct != null && direct.fits(off, len) && await direct.write(d, off)) this.stats.bytesWrittenDirect += len
            else await writevAll(fh, d, off)
            if (progress != null) progress.done += len
          }
        })
      }
      // batches of consecutive blocks, a few at once (the bytes in flight per peer bound them too)
      const parallel = Math.max(1, Math.min(4, Math.ceil(this.blocksPerFile * rec.blockSize / BATCH_BYTES)))
      for (const [, err] of await this.fetchJobs(jobs, parallel)) failures.push(err)
      if (failures.length > 0) {
        const full = failures.find((e) => isErrno(e, 'ENOSPC', 'EDQUOT'))
        if (full != null) {
          // a full disk: give the space of this partial back so other files can still
          // sync; the pull starts over when it is retried
          await fh.truncate(0).catch(() => {})
          throw new PullError(`no space left on the device for ${rec.path} (${rec.size} bytes); will retry`)
        }
        if (!this.started) throw new PullError('node stopping')
        if (failures.every((e): boolean => e instanceof NoPeerError)) throw new NoPeerError(`no peer connected for ${failures.length} of ${n} blocks`)
        throw new PullError(`${failures.length} of ${n} blocks unavailable (${failures[0].message})`)
      }
      await fh.chmod(rec.mode)
      await fh.utimes(rec.mtimeMs / 1000, rec.mtimeMs / 1000)
    } finally {
      await direct?.close().catch(() => {})
      await fh.close()
    }
    return partial
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

/** SHA-256 of a list of chunks, without joining them. */
function sha256List (data: Uint8ArrayList): string {
  const h = createHash('sha256')
  for (const chunk of data) h.update(chunk)
  return h.digest('hex')
}

function chunksOf (data: Uint8Array | Uint8ArrayList): Uint8Array[] {
  return data instanceof Uint8Array ? [data] : [...data]
}

/** Write chunks at `position` (gathered: one call for all, short writes continued). */
async function writevAll (fh: FileHandle, data: Uint8Array | Uint8ArrayList, position: number): Promise<void> {
  let bufs = chunksOf(data)
  let pos = position
  while (bufs.length > 0) {
    const { bytesWritten } = await fh.writev(bufs, pos)
    pos += bytesWritten
    bufs = skipBytes(bufs, bytesWritten)
  }
}

function skipBytes (bufs: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const b of bufs) {
    if (n >= b.byteLength) { n -= b.byteLength; continue }
    out.push(n > 0 ? b.subarray(n) : b)
    n = 0
  }
  return out
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
