import { readFileSync, watch, type Dirent, type FSWatcher } from 'node:fs'
import { readdir, readlink } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { blockCount, blockLength, chooseBlockSize, contentId, sha256Hex, hashLargeFile, hashSmallFileSync, SMALL_HASH, type HashedContent } from './blocks.js'
import { RESERVED, sameObserved, isErrno, type DataFolder, type Observed } from './datafolder.js'
import { isValidPath, quotePath } from './paths.js'
import type { BlockCache } from './blockcache.js'
import type { LocalObservation, Store } from './store.js'
import type { DiskState, StoredRecord } from './types.js'

/** Entries a walk looks at between turns of the event loop. */
const WALK_YIELD = 500

/**
 * While the watcher sees every directory, the next periodic full scan waits at least this
 * long per entry the last one looked at: the rescan is a safety net for what the watcher
 * missed, and on a large folder it is dear (every record read and every path looked at:
 * 1.3-1.5 s of the event loop for 100,000 entries on the project's machine, so 2-3% of a
 * core at the default interval, a third of one at a million). 1.5 ms an entry keeps it
 * near 1% of the time there; folders under 40,000 entries keep the default period. By
 * entries, not by how long the scan took: a busy event loop (a transfer, or a simulation
 * of ten nodes in one process) stretches a scan's time without making it dearer, and a
 * rescan put off for minutes then left a missed change unrecorded that long.
 */
const RESCAN_MS_PER_ENTRY = 1.5

/**
 * Events the kernel queues for the watcher at most (inotify's max_queued_events). Beyond
 * it the kernel drops events and queues an overflow notice, which libuv drops too (it
 * belongs to no watched directory): Node never learns that events were lost.
 */
function inotifyQueueLimit (): number {
  return readSysctl('/proc/sys/fs/inotify/max_queued_events') ?? 16384
}

/** A positive integer setting from /proc/sys, or null. */
function readSysctl (path: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(path, 'utf8'), 10)
    return Number.isInteger(n) && n > 0 ? n : null
  } catch {
    return null
  }
}

export interface ScannerInit {
  /**
   * Full rescan period (what a missed event or a change made while stopped left behind).
   * While the watcher sees every directory, the next scan waits at least 1.5 ms for each
   * entry the last one looked at (a folder of over 40,000 entries waits longer than 60 s).
   *
   * @default 60_000
   */
  rescanIntervalMs?: number
  /**
   * How long the watcher lets events for a path settle before recording it.
   *
   * @default 50
   */
  settleMs?: number
  /**
   * Files hashed at once.
   *
   * @default 8
   */
  hashConcurrency?: number
  /** Watch the folder for changes (off when a FUSE mount reports them). @default true */
  watch?: boolean
  /**
   * A file larger than one small block (SMALL_HASH, 128 KiB) modified less than this long
   * ago is looked at again later instead of being hashed while it is probably still being
   * written (watch mode only: a mount says when a file is closed). Smaller files are
   * hashed at once: one read, and a version recorded while a write was still coming is
   * superseded by the event of that write.
   *
   * @default 200
   */
  quietMs?: number
}

export interface ScannerComponents {
  store: Store
  data: DataFolder
  log?: (msg: string) => void
  /** Where the content of small files it hashes is kept a while, for serving them. */
  cache?: BlockCache
}

/** Something that knows a path is being written right now (the FUSE mount: open handles). */
export interface WriteTracker {
  isOpenForWrite: (rel: string) => boolean
  /**
   * Runs a synchronous step on the data folder with no change through the mount landing in between;
   * throws an error named MountBusyError (without running it) when one is in progress right now.
   */
  exclusive?: <T>(step: () => T) => T
}

/**
 * Notices changes made in the data folder by any program: a recursive watcher for the
 * paths it names, and a full rescan at start and periodically. A changed path is hashed
 * and handed to the store as a local observation.
 */
export class Scanner {
  private readonly store: Store
  private readonly cache: BlockCache | null
  private readonly data: DataFolder
  private readonly log: (msg: string) => void
  private readonly rescanIntervalMs: number
  private readonly settleMs: number
  private readonly hashConcurrency: number
  private readonly useWatch: boolean
  private readonly quietMs: number
  /** File mtimes are wall-clock: compare them with the real clock, never a skewed one. */
  private readonly clockNow = Date.now
  private readonly watchers = new Map<string, FSWatcher>()
  /** Directories the watcher could not watch (or lost): changes there only a rescan finds. */
  private readonly unwatched = new Set<string>()
  /** The limit of inotify watches was logged (again once every directory is watched). */
  private watchLimitSaid = false
  /**
   * Watcher events delivered in this turn of the event loop: libuv reads the kernel's
   * queue until it is empty in one go, so a turn that brings nearly a full queue means the
   * queue may have overflowed, and events were lost (a full scan follows).
   */
  private burst = 0
  private burstCheck: NodeJS.Immediate | null = null
  private readonly queueLimit = inotifyQueueLimit()
  private readonly overflowAt = Math.floor(0.9 * this.queueLimit)
  private fullScanQueued = false
  /** Full scans run because the watcher's queue may have overflowed. */
  overflowScans = 0
  private timer: NodeJS.Timeout | null = null
  private settleTimer: NodeJS.Timeout | null = null
  private readonly dirty = new Set<string>()
  /** Byte ranges written per dirty path, or null when unknown (hash everything). */
  private readonly written = new Map<string, Array<[number, number]> | null>()
  private running: Promise<void> = Promise.resolve()
  private started = false
  /** Entries walked so far (the walk yields every WALK_YIELD). */
  private walked = 0
  /** Paths the node itself is writing: their events are ignored until released. */
  readonly busy = new Map<string, number>()
  /**
   * Set by the node when a mount reports writes: a file open for writing is recorded
   * when its last handle closes (the mount reports that), never half-written.
   */
  writes: WriteTracker | null = null
  /** The next full scan adopts what matches the store instead of versioning it (repair). */
  adoptNext = false
  /** The last error met while scanning, for status. */
  lastError: string | null = null
  /** Times a file written a moment ago was left to settle before being hashed (quietMs). */
  deferred = 0
  /** How long the last full scan took (ms; wall clock). */
  lastScanMs = 0
  /** Entries (files, directories, links) the last full scan looked at. */
  lastScanEntries = 0

  /** For status and metrics. */
  get stats (): { lastFullScanMs: number, unwatchedDirs: number, overflowScans: number, deferred: number } {
    return { lastFullScanMs: Math.round(this.lastScanMs * 1000) / 1000, unwatchedDirs: this.unwatched.size, overflowScans: this.overflowScans, deferred: this.deferred }
  }

  private readonly keep = (hash: string, data: Buffer): void => { this.cache?.add(hash, data) }

  constructor (components: ScannerComponents, init: ScannerInit = {}) {
    this.store = components.store
    this.cache = components.cache ?? null
    this.data = components.data
    this.log = components.log ?? (() => {})
    this.rescanIntervalMs = init.rescanIntervalMs ?? 60_000
    this.settleMs = init.settleMs ?? 50
    this.hashConcurrency = init.hashConcurrency ?? 8
    this.useWatch = init.watch ?? true
    this.quietMs = init.quietMs ?? 200
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    if (this.useWatch) {
      // one inotify watch per directory: Node's recursive fs.watch on Linux re-reads the
      // whole tree on every event (a burst of N new files costs O(N^2))
      await this.watchTree('')
    }
    await this.scanAll()
    this.scheduleRescan()
  }

  private scheduleRescan (): void {
    if (!this.started || this.timer != null) return
    this.timer = setTimeout(() => {
      this.timer = null
      void this.scanAll().catch((err: Error) => this.fail(err)).finally(() => { this.scheduleRescan() })
    }, this.rescanDelay())
    this.timer.unref()
  }

  /**
   * The wait before the next periodic full scan: rescanIntervalMs, or, while the watcher
   * sees every directory, RESCAN_MS_PER_ENTRY for each entry the last one looked at, if
   * that is longer.
   */
  rescanDelay (): number {
    if (!this.useWatch || this.unwatched.size > 0) return this.rescanIntervalMs
    return Math.max(this.rescanIntervalMs, Math.round(RESCAN_MS_PER_ENTRY * this.lastScanEntries))
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const w of this.watchers.values()) w.close()
    this.watchers.clear()
    if (this.timer != null) { clearTimeout(this.timer); this.timer = null }
    if (this.burstCheck != null) { clearImmediate(this.burstCheck); this.burstCheck = null; this.burst = 0 }
    if (this.settleTimer != null) clearTimeout(this.settleTimer)
    await this.running.catch(() => {})
  }

  /**
   * A path (relative to the data folder) may have changed: record it soon. `ranges`
   * (from the FUSE layer: the byte ranges written) lets the scanner hash only the blocks
   * they touch; without them the whole file is hashed.
   */
  touch (rel: string, ranges?: Array<[number, number]>): void {
    if (rel === '' || rel === RESERVED || rel.startsWith(RESERVED + '/')) return
    const prev = this.written.get(rel)
    if (ranges == null || prev === null || (prev === undefined && this.dirty.has(rel))) {
      // a change we know nothing about: the whole file must be hashed
      this.written.set(rel, null)
    } else if (prev === undefined) {
      this.written.set(rel, [...ranges])
    } else {
      prev.push(...ranges)
    }
    this.dirty.add(rel)
    if (this.settleTimer == null && this.started) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = null
        const paths = [...this.dirty]
        this.dirty.clear()
        this.enqueue(async () => { await this.scanPaths(paths) })
      }, this.settleMs)
    }
  }

  /** Watch directory `rel` and every directory below it (idempotent). */
  private async watchTree (rel: string): Promise<void> {
    if (!this.started || !this.useWatch || this.watchers.has(rel) || rel === RESERVED) return
    const abs = rel === '' ? this.data.root : this.data.abs(rel)
    let w: FSWatcher
    try {
      w = watch(abs, (_event, name) => {
        this.countEvent()
        if (name == null) { this.touchAll(); return }
        this.touch(rel === '' ? name.toString() : `${rel}/${name.toString()}`)
      })
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return
      // only the periodic rescan sees changes there (the watch is tried again at each)
      this.unwatched.add(rel)
      if (!isErrno(err, 'ENOSPC')) { this.fail(err as Error); return }
      // out of inotify watches: said once, not once per directory at every scan
      if (!this.watchLimitSaid) {
        this.watchLimitSaid = true
        const where = rel === '' ? 'the data folder' : quotePath(rel)
        this.fail(new Error(`the system's limit of inotify watches (fs.inotify.max_user_watches = ${readSysctl('/proc/sys/fs/inotify/max_user_watches') ?? '?'}) is reached at ${where}: changes in the directories left unwatched are found by the full rescan only (every rescanIntervalMs); raise the limit with sysctl -w fs.inotify.max_user_watches=N`))
      }
      return
    }
    w.on('error', () => { w.close(); this.watchers.delete(rel); this.unwatched.add(rel) })
    this.watchers.set(rel, w)
    this.unwatched.delete(rel)
    if (this.unwatched.size === 0) this.watchLimitSaid = false
    let entries: Dirent[] = []
    try { entries = await readdir(abs, { withFileTypes: true }) } catch {}
    for (const e of entries) {
      if (e.isDirectory()) await this.watchTree(rel === '' ? e.name : `${rel}/${e.name}`)
    }
  }

  /** Stop watching `rel` and everything below it (it is gone). */
  private unwatchTree (rel: string): void {
    for (const [p, w] of this.watchers) {
      if (p === rel || p.startsWith(rel + '/')) { w.close(); this.watchers.delete(p) }
    }
    for (const p of this.unwatched) {
      if (p === rel || p.startsWith(rel + '/')) this.unwatched.delete(p)
    }
  }

  private touchAll (): void {
    // one full scan waiting is enough: it looks at everything when it runs
    if (this.fullScanQueued) return
    this.fullScanQueued = true
    this.enqueue(async () => {
      this.fullScanQueued = false
      await this.runScanAll()
    })
  }

  private countEvent (): void {
    this.burst++
    this.burstCheck ??= setImmediate(() => {
      const n = this.burst
      this.burst = 0
      this.burstCheck = null
      if (n < this.overflowAt || !this.started) return
      this.overflowScans++
      this.log(`the file watcher delivered ${n} events at once (the kernel queues ${this.queueLimit} at most): it may have dropped some, so the whole folder is scanned once these are recorded`)
      this.touchAll()
    })
  }

  /** Record every path touched so far, now (before a stop). */
  async flush (): Promise<void> {
    if (this.settleTimer != null) { clearTimeout(this.settleTimer); this.settleTimer = null }
    const paths = [...this.dirty]
    this.dirty.clear()
    if (paths.length > 0) this.enqueue(async () => { await this.scanPaths(paths) })
    await this.running
  }

  /**
   * Record `paths` now, however recently they were written: the caller wrote them whole
   * (the HTTP API renames a finished upload into place), so no quiet time is needed.
   */
  async recordNow (paths: string[]): Promise<void> {
    // not queued behind the watcher's scans: the store's lock orders the writes, and it
    // checks each observation against the disk again before recording it
    const obs: LocalObservation[] = []
    for (const p of paths) {
      const observed = await this.data.observe(p)
      const o = observed == null ? { path: p, present: false as const } : await this.describe(p, observed, false)
      if (o != null) obs.push(o)
    }
    await this.store.recordLocal(obs)
  }

  /** The node is about to write `rel` itself (until `release`). */
  hold (rel: string): void {
    this.busy.set(rel, (this.busy.get(rel) ?? 0) + 1)
  }

  release (rel: string): void {
    const n = (this.busy.get(rel) ?? 1) - 1
    if (n <= 0) this.busy.delete(rel)
    else this.busy.set(rel, n)
  }

  private enqueue (fn: () => Promise<void>): void {
    this.running = this.running.then(fn).catch((err: Error) => this.fail(err))
  }

  private fail (err: Error): void {
    if (err.name === 'StoreClosedError') return
    this.lastError = `scan: ${err.message}`
    this.log(this.lastError)
  }

  /** Walk the whole data folder and record every difference from the store. */
  async scanAll (): Promise<number> {
    let changed = 0
    await new Promise<void>((resolve, reject) => {
      this.running = this.running.then(async () => {
        try {
          changed = await this.runScanAll()
          resolve()
        } catch (err) {
          reject(err as Error)
        }
      })
    })
    return changed
  }

  private async runScanAll (): Promise<number> {
    const t0 = performance.now()
    const walked0 = this.walked
    try {
      return await this.scanEverything()
    } finally {
      this.lastScanMs = performance.now() - t0
      this.lastScanEntries = this.walked - walked0
    }
  }

  private async scanEverything (): Promise<number> {
    // what each record saw on disk, in a few numbers: a scan holds one per file (the whole
    // records were about 960 bytes each, 96 MB for 100,000 files; these are about 150)
    const known = new Map<string, Observed>()
    for await (const r of this.store.all()) if (r.disk != null) known.set(r.path, seenDisk(r.disk))
    const candidates: Array<{ path: string, observed: Observed }> = []
    // the walk takes every path it finds out of `known`: what is left was not found
    await this.walk('', candidates, known)
    const gone: LocalObservation[] = []
    for (const [path] of known) {
      if (!this.busy.has(path)) gone.push({ path, present: false })
    }
    // the walk compared with the records as they were when it began: what the puller
    // installed meanwhile (a node catching up at start-up) is not a local change, and
    // hashing it again would be wasted
    const changed = await this.stillDiffering(candidates)
    try {
      return await this.record(changed, gone)
    } finally {
      this.adoptNext = false
    }
  }

  /** The candidates that still differ from their records as they are now (one read). */
  private async stillDiffering (candidates: Array<{ path: string, observed: Observed }>): Promise<Array<{ path: string, observed: Observed }>> {
    if (candidates.length === 0) return []
    const now = await this.store.getMany(candidates.map((c) => c.path))
    return candidates.filter((c, i) => differs(c.observed, now[i]?.disk))
  }

  /** Record the given paths (and, for directories, what is below them). */
  async scanPaths (paths: string[]): Promise<number> {
    const candidates: Array<{ path: string, observed: Observed }> = []
    const walked: Array<{ path: string, observed: Observed }> = []
    const gone: LocalObservation[] = []
    const retry: string[] = []
    const todo: string[] = []
    for (const path of paths) {
      if (!isValidPath(path)) continue
      if (this.busy.has(path)) { retry.push(path); continue }
      if (this.writes?.isOpenForWrite(path) === true) continue
      todo.push(path)
    }
    // the records in one read, and a look at every path (synchronous: a stat costs less
    // than a round trip through the thread pool, and a burst of thousands of new files is
    // bound by those), then work through what changed in order
    const records = await this.store.getMany(todo)
    const observations = todo.map((p) => this.data.observeSync(p))
    for (let i = 0; i < todo.length; i++) {
      const path = todo[i]
      const observed = observations[i]
      const rec = records[i]
      if (observed?.type === 'dir') await this.watchTree(path)
      if (observed == null) {
        this.unwatchTree(path)
        if (rec?.disk != null) gone.push({ path, present: false })
        // a removed or renamed directory takes its subtree with it
        if (rec == null || rec.type === 'dir') {
          for await (const r of this.store.under(path)) {
            if (r.disk != null && !this.busy.has(r.path) && await this.data.observe(r.path) == null) gone.push({ path: r.path, present: false })
          }
        }
        continue
      }
      if (!differs(observed, rec?.disk)) continue
      candidates.push({ path, observed })
      if (observed.type === 'dir') {
        // a directory that appears (mkdir -p, mv of a tree into place): walk it
        const known = new Map<string, Observed>()
        for await (const r of this.store.under(path)) if (r.disk != null) known.set(r.path, seenDisk(r.disk))
        await this.walk(path, walked, known)
      }
    }
    if (retry.length > 0) setTimeout(() => { for (const p of retry) this.touch(p) }, 20).unref()
    // the walks compared with the records as they were when each began: what the puller
    // installed meanwhile (a directory a peer made, filling up) is no local change
    candidates.push(...await this.stillDiffering(walked))
    // with something gone, one transaction: a renamed directory is one batch of new paths
    // and tombstones. Without, transactions of up to 1000 as they are hashed: the first
    // files of a burst go out while the rest are hashed (one transaction for every path
    // of a settle window held them all back until the last was hashed)
    return await this.record(candidates, gone, { atomic: gone.length > 0, fromEvent: true })
  }

  /**
   * Look at everything below `dir`: each path found is taken out of `known` (what the
   * records saw on disk) and, if it differs from what its record saw, added to `out`.
   */
  private async walk (dir: string, out: Array<{ path: string, observed: Observed }>, known: Map<string, Observed>): Promise<void> {
    let entries
    try {
      entries = await readdir(dir === '' ? this.data.root : this.data.abs(dir), { withFileTypes: true })
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return
      throw err
    }
    for (const e of entries) {
      const path = dir === '' ? e.name : `${dir}/${e.name}`
      if (path === RESERVED) continue
      if (!isValidPath(path)) {
        this.lastError = `skipped ${JSON.stringify(path)}: not a path the mesh can carry`
        continue
      }
      // a stat without the thread pool (as for hashing small files): a round trip through
      // it per entry made a scan of 20,000 files take 0.8 s, mostly waiting; the event
      // loop gets a turn every WALK_YIELD entries
      if (++this.walked % WALK_YIELD === 0) await new Promise((resolve) => setImmediate(resolve))
      if (this.busy.has(path)) {
        known.delete(path)
        // a held directory (the puller is updating it) still has contents: walk them
        const held = this.data.observeSync(path)
        if (held?.type === 'dir') await this.walk(path, out, known)
        continue
      }
      const observed = this.data.observeSync(path)
      if (observed == null) continue
      const before = known.get(path)
      known.delete(path)
      if (observed.type === 'dir') await this.watchTree(path)
      if (this.writes?.isOpenForWrite(path) === true) continue
      if (differs(observed, before)) out.push({ path, observed })
      if (observed.type === 'dir') await this.walk(path, out, known)
    }
  }

  /**
   * Hash what changed and hand it to the store: in one transaction when `atomic` (the
   * paths of one event with something gone), else in transactions of 1000. `fromEvent`:
   * the watcher named these paths (a file written a moment ago may still be written).
   */
  private async record (candidates: Array<{ path: string, observed: Observed }>, gone: LocalObservation[], { atomic = false, fromEvent = false } = {}): Promise<number> {
    const CHUNK = 1000
    const obs: LocalObservation[] = []
    let changed = 0
    const flush = async (): Promise<void> => {
      if (obs.length === 0) return
      const batch = obs.splice(0)
      changed += (this.adoptNext ? await this.store.adopt(batch) : await this.store.recordLocal(batch)).length
    }
    for (let i = 0; i < candidates.length; i += CHUNK) {
      const slice = candidates.slice(i, i + CHUNK)
      for (const o of await mapLimit(slice, this.hashConcurrency, async (c) => await this.describe(c.path, c.observed, fromEvent))) {
        if (o != null) obs.push(o)
      }
      if (!atomic) await flush()
    }
    // deepest first, so a directory's tombstone follows its children's
    gone.sort((a, b) => b.path.length - a.path.length)
    for (let i = 0; i < gone.length; i += CHUNK) {
      obs.push(...gone.slice(i, i + CHUNK))
      if (!atomic) await flush()
    }
    await flush()
    return changed
  }

  private async rehashRanges (path: string, observed: Observed, ranges: Array<[number, number]>): Promise<HashedContent | null> {
    const old = await this.store.get(path)
    if (old == null) return null
    return await rehashBlocks(this.data.abs(path), observed.size, old, ranges)
  }

  private async describe (path: string, observed: Observed, fromEvent = false): Promise<LocalObservation | null> {
    const ranges = this.written.get(path)
    this.written.delete(path)
    if (fromEvent && observed.type === 'file' && observed.size > SMALL_HASH && ranges == null && this.writes == null && this.useWatch) {
      // written a moment ago (probably still being written): look again when it settles
      // instead of hashing content that is about to change. Not for a small file: waiting
      // meant a timer and a second look at every new file (20,000 of each for 20,000
      // files written in a burst), more than hashing it again would ever cost, and 200 ms
      // more latency; the look after hashing still catches a write during the read
      const age = this.clockNow() - observed.mtimeMs
      if (age >= 0 && age < this.quietMs) {
        this.written.set(path, null)
        this.deferred++
        setTimeout(() => { this.touch(path) }, this.quietMs - age + 5).unref()
        return null
      }
    }
    try {
      if (observed.type === 'file') {
        const h = (ranges != null ? await this.rehashRanges(path, observed, ranges) : null) ??
          hashSmallFileSync(this.data.abs(path), observed.size, this.keep) ??
          await hashLargeFile(this.data.abs(path), observed.size)
        // still being written: record it once it settles (its next event, or a rescan)
        if (!sameObserved(this.data.observeSync(path), observed)) {
          this.written.set(path, null)
          this.touch(path)
          return null
        }
        // the file changed while we hashed it: take what we read, the watcher will follow
        return { path, present: true, observed: { ...observed, size: h.size }, blockSize: h.blockSize, blocks: h.blocks, hash: h.hash, target: '' }
      }
      if (observed.type === 'symlink') {
        const target = await readlink(this.data.abs(path))
        return { path, present: true, observed, blockSize: 0, blocks: [], hash: sha256Hex(Buffer.from(target)), target }
      }
      return { path, present: true, observed, blockSize: 0, blocks: [], hash: '', target: '' }
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null
      throw err
    }
  }
}

/**
 * Hash only the blocks that `ranges` touch (and any past the old end), reusing the hashes
 * of the rest from the record of what was on disk. Null when that record cannot be used.
 */
async function rehashBlocks (abs: string, size: number, old: StoredRecord, ranges: Array<[number, number]>): Promise<HashedContent | null> {
  const blockSize = chooseBlockSize(size)
  if (old.disk == null || old.disk.hash !== old.hash || old.type !== 'file' || old.blockSize !== blockSize) return null
  const n = blockCount(size, blockSize)
  const dirty = new Set<number>()
  for (let i = 0; i < n; i++) {
    const start = i * blockSize
    const end = start + blockLength(size, blockSize, i)
    // a block that changed length (the last one) or is new must be hashed again
    if (i >= old.blocks.length || end > old.size || (i === n - 1 && blockLength(old.size, blockSize, i) !== end - start)) dirty.add(i)
  }
  for (const [a, b] of ranges) {
    for (let i = Math.floor(a / blockSize); i * blockSize < b && i < n; i++) dirty.add(i)
  }
  const blocks = old.blocks.slice(0, n)
  const fh = await open(abs, 'r')
  try {
    const buf = Buffer.allocUnsafe(blockSize)
    for (const i of dirty) {
      const len = blockLength(size, blockSize, i)
      let filled = 0
      while (filled < len) {
        const { bytesRead } = await fh.read(buf, filled, len - filled, i * blockSize + filled)
        if (bytesRead === 0) return null
        filled += bytesRead
      }
      blocks[i] = sha256Hex(buf.subarray(0, len))
    }
  } finally {
    await fh.close()
  }
  return { size, blockSize, blocks, hash: contentId(blocks) }
}

/** What a record saw on disk, as far as a look at the path can tell (what a scan keeps of it). */
function seenDisk (d: DiskState): Observed {
  return { type: d.type, mode: d.mode, size: d.size, mtimeMs: d.mtimeMs, ino: d.ino }
}

/** Whether a look at a path differs from what its record saw there (`disk`). */
function differs (observed: Observed, disk: Observed | DiskState | null | undefined): boolean {
  if (disk == null) return true
  // a symlink replaced within the same millisecond can get the same inode back: its
  // target is read every time (the store skips it when the target is the same)
  if (observed.type === 'symlink') return true
  return !sameObserved(observed, disk)
}

export async function mapLimit<T, R> (items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}
