/**
 * The upload relay and the pin keeper.
 *
 * Every node runs a PinKeeper: it keeps the committed content of sets still to upload
 * (src/relay/pins.ts). A node started with `--relay` also runs a Relay:
 *
 * ```
 *   committed set, no live lease ──> write lease (until now + leaseMs), wait, re-read:
 *     still ours ──> state uploading ──> per file: pin (local copy or verified blocks from
 *     peers) ──> backend.putFile (tagged: set id + path + SHA-256; 'exists' skips it) ──>
 *     mark the file uploaded ──> publishSet (manifest last) ──> state uploaded
 *   lease renewed every leaseMs/3; lost (another relay won) ──> abort; fatal backend
 *   error ──> state failed with the reason; transient ──> lease released, retried later
 * ```
 *
 * Leases compare against the relay's own clock: relays whose clocks differ by more than
 * the lease lets a set be worked on twice, which the backend's tags make harmless (no
 * duplicate is ever stored), only wasteful (`syncmesh doctor` warns of clock offsets).
 */
import { createReadStream } from 'node:fs'
import type { Store } from '../store/store.js'
import type { PeerBlockClient } from '../transfer/protocol.js'
import { BackendError, createManifest, type CloudBackend, type SetRef } from './backend.js'
import { PinStore, type PinContent } from './pins.js'
import { SetBook, type SetFile, type SetRecord } from './sets.js'

type Log = (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void

/**
 * Keeps the committed content of every set that is still to be uploaded (or failed, and
 * so may be retried), on every node that holds it, and drops it once the set is uploaded.
 */
export class PinKeeper {
  private readonly store: Store
  private readonly book: SetBook
  readonly pins: PinStore
  private readonly log: Log
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private again = false
  private readonly onMeta = (): void => { this.schedule() }

  constructor (components: { store: Store, book: SetBook, pins: PinStore, log?: Log }, private readonly init: { intervalMs?: number, minGapMs?: number } = {}) {
    this.store = components.store
    this.book = components.book
    this.pins = components.pins
    this.log = components.log ?? (() => {})
  }

  async start (): Promise<void> {
    await this.pins.start()
    this.store.on('meta', this.onMeta)
    /** @default 5_000 */
    this.timer = setInterval(() => { this.schedule() }, this.init.intervalMs ?? 5_000)
    this.timer.unref()
    await this.reconcile()
  }

  async stop (): Promise<void> {
    this.store.off('meta', this.onMeta)
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    if (this.waiting != null) clearTimeout(this.waiting)
    this.waiting = null
    await this.running?.catch(() => {})
  }

  /**
   * Reconcile soon: at most once per `minGapMs` (a relay writes a record per uploaded
   * file, and each reconcile reads every set; without the gap a set of thousands of files
   * would be read thousands of times).
   */
  private schedule (): void {
    if (this.timer == null) return
    if (this.running != null || this.waiting != null) { this.again = true; return }
    const gap = (this.init.minGapMs ?? 1_000) - (Date.now() - this.lastRun)
    if (gap > 0) {
      this.waiting = setTimeout(() => { this.waiting = null; this.schedule() }, gap)
      this.waiting.unref()
      return
    }
    this.lastRun = Date.now()
    this.running = this.reconcile().catch((err: Error) => this.log('warn', `pins: ${err.message}`)).finally(() => {
      this.running = null
      this.lastRun = Date.now()
      if (this.again) { this.again = false; this.schedule() }
    })
  }

  private waiting: NodeJS.Timeout | null = null
  private lastRun = 0

  /**
   * Pin what this node holds of every set still to upload; drop the rest. Runs one at a
   * time: a run that read the sets before a commit must not prune what a later run (the
   * committing request) pinned for it.
   */
  async reconcile (): Promise<void> {
    const run = this.serial.then(async () => { await this.reconcileOnce() })
    this.serial = run.catch(() => {})
    await run
  }

  private serial: Promise<void> = Promise.resolve()

  private async reconcileOnce (): Promise<void> {
    const keep = new Set<string>()
    const states: Record<string, number> = { open: 0, committed: 0, uploading: 0, uploaded: 0, failed: 0 }
    for (const set of await this.book.list()) {
      if (set.commit == null) { states.open++; continue }
      const state = (await this.book.uploadState(set.id))?.state
      states[state ?? 'committed']++
      // a failed set keeps its pins: it can be retried once the cause is fixed
      if (state === 'uploaded') continue
      for (const f of await this.book.files(set)) {
        keep.add(f.hash)
        if (this.pins.has(f.hash)) { this.pins.index(f); continue }
        if (await this.holds(f)) await this.pins.fromDisk(f, f.source)
      }
    }
    await this.pins.prune(keep)
    this.setStates = states
  }

  /** Sets by state, as of the last reconcile (for metrics). */
  setStates: Record<string, number> = {}

  /** Whether the data folder holds the committed content at the file's source path. */
  async holds (f: SetFile): Promise<boolean> {
    const r = await this.store.get(f.source)
    return r != null && r.have && !r.deleted && r.type === 'file' && r.hash === f.hash && r.disk?.hash === f.hash
  }

  /** Whether the data folder is about to receive the committed content (pull queued). */
  private async beingPulled (f: SetFile): Promise<boolean> {
    const r = await this.store.get(f.source)
    return r != null && !r.have && !r.deleted && r.hash === f.hash
  }

  /** The content of `f`, pinned here: from the local disk, else from peers. */
  async pin (f: SetFile, peers: () => PeerBlockClient[], opts: { signal?: AbortSignal, onBytes?: (n: number) => void } = {}): Promise<string> {
    const known = this.pins.sha256(f.hash)
    if (known != null) return known
    // the node's puller is fetching this very content into the data folder: wait for it
    // and copy it locally, rather than fetch the same blocks from the peers a second time
    let waited = 0
    while (!await this.holds(f) && await this.beingPulled(f) && waited < 120_000) {
      opts.signal?.throwIfAborted()
      await new Promise((resolve) => setTimeout(resolve, 100))
      waited += 100
    }
    if (await this.holds(f)) {
      const sha = await this.pins.fromDisk(f, f.source)
      if (sha != null) return sha
    }
    return await this.pins.fromPeers(f, peers, f.source, opts)
  }
}

export interface RelayProgress {
  setId: string
  name: string
  file: string | null
  fileBytes: number
  fileSize: number
  bytesDone: number
  bytesTotal: number
  startedAt: number
}

export interface RelayInit {
  /**
   * How long a lease lasts without renewal (ms); it is renewed every third of that.
   * @default 30_000
   */
  leaseMs?: number
  /**
   * How often committed sets are looked for (ms), besides on every set record change.
   * @default 2_000
   */
  pollMs?: number
  /**
   * Wait after a transient failure before the set is tried again (ms), doubled per failure.
   * @default 5_000
   */
  retryMs?: number
  /**
   * Wait between writing a lease and starting to work (ms): long enough for a concurrent
   * claim by another relay to arrive (gossip batches wait up to their maxAgeMs), so both
   * see both claims and the last-writer-wins rule leaves one of them working.
   * @default 500
   */
  settleMs?: number
  /**
   * Files of a set uploaded at once (each file is still uploaded once at a time).
   * @default 4
   */
  concurrency?: number
}

class LeaseLost extends Error {
  override name = 'LeaseLost'
}

export class Relay {
  private readonly store: Store
  private readonly book: SetBook
  private readonly keeper: PinKeeper
  readonly backend: CloudBackend
  private readonly peers: () => PeerBlockClient[]
  private readonly log: Log
  private readonly now: () => number
  private readonly onUploadedBytes: (n: number) => void
  private readonly leaseMs: number
  private readonly pollMs: number
  private readonly retryMs: number
  private readonly settleMs: number
  private readonly concurrency: number
  private readonly working = new Map<string, { ac: AbortController, done: Promise<void>, progress: RelayProgress }>()
  private readonly retryAt = new Map<string, { at: number, delay: number }>()
  private timer: NodeJS.Timeout | null = null
  private ticking = false
  private stopped = false
  readonly stats = { setsUploaded: 0, setsFailed: 0, filesUploaded: 0, filesSkipped: 0, bytesUploaded: 0 }
  lastError: string | null = null
  private readonly onMeta = (): void => { void this.tick() }

  constructor (components: { store: Store, book: SetBook, keeper: PinKeeper, backend: CloudBackend, peers: () => PeerBlockClient[], log?: Log, now?: () => number, onUploadedBytes?: (n: number) => void }, init: RelayInit = {}) {
    this.store = components.store
    this.book = components.book
    this.keeper = components.keeper
    this.backend = components.backend
    this.peers = components.peers
    this.log = components.log ?? (() => {})
    this.now = components.now ?? Date.now
    this.onUploadedBytes = components.onUploadedBytes ?? (() => {})
    this.leaseMs = init.leaseMs ?? 30_000
    this.pollMs = init.pollMs ?? 2_000
    this.retryMs = init.retryMs ?? 5_000
    this.settleMs = init.settleMs ?? 500
    this.concurrency = init.concurrency ?? 4
  }

  async start (): Promise<void> {
    this.store.on('meta', this.onMeta)
    this.timer = setInterval(() => { void this.tick() }, this.pollMs)
    this.timer.unref()
    void this.tick()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.store.off('meta', this.onMeta)
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    for (const w of this.working.values()) w.ac.abort(new Error('relay stopping'))
    await Promise.all([...this.working.values()].map(async (w) => await w.done.catch(() => {})))
  }

  progress (): RelayProgress[] {
    return [...this.working.values()].map((w) => ({ ...w.progress }))
  }

  private async tick (): Promise<void> {
    if (this.ticking || this.stopped) return
    this.ticking = true
    try {
      for (const set of await this.book.list()) {
        if (this.stopped) return
        if (set.commit == null || this.working.has(set.id)) continue
        const retry = this.retryAt.get(set.id)
        if (retry != null && retry.at > this.now()) continue
        const state = (await this.book.uploadState(set.id))?.state
        if (state === 'uploaded' || state === 'failed') continue
        await this.tryClaim(set)
      }
    } catch (err) {
      this.log('warn', `relay: ${(err as Error).message}`)
    } finally {
      this.ticking = false
    }
  }

  private async tryClaim (set: SetRecord): Promise<void> {
    const { lease, record } = await this.book.lease(set.id)
    const me = this.book.nodeId
    if (lease != null && lease.relay !== me && this.now() <= lease.until) return
    if (!await this.book.writeLease(set.id, this.now() + this.leaseMs, record)) return
    // a concurrent claim by another relay reaches us within the settle time; the
    // last-writer-wins rule picks the same winner on every node
    await new Promise((resolve) => setTimeout(resolve, this.settleMs))
    const after = await this.book.lease(set.id)
    if (after.lease?.relay !== me || this.stopped) return
    const ac = new AbortController()
    const progress: RelayProgress = { setId: set.id, name: set.name, file: null, fileBytes: 0, fileSize: 0, bytesDone: 0, bytesTotal: 0, startedAt: this.now() }
    const done = this.work(set, ac, progress).finally(() => { this.working.delete(set.id) })
    this.working.set(set.id, { ac, done, progress })
  }

  private async work (set: SetRecord, ac: AbortController, progress: RelayProgress): Promise<void> {
    const me = this.book.nodeId
    const renew = setInterval(() => {
      void (async () => {
        const { lease, record } = await this.book.lease(set.id)
        if (lease?.relay !== me) { ac.abort(new LeaseLost(`relay ${lease?.relay ?? '?'} took over set ${set.name}`)); return }
        await this.book.writeLease(set.id, this.now() + this.leaseMs, record)
      })().catch(() => {})
    }, Math.max(50, this.leaseMs / 3))
    try {
      await this.upload(set, ac.signal, progress)
      this.retryAt.delete(set.id)
    } catch (err) {
      const reason = ac.signal.aborted ? ac.signal.reason as Error : err as Error
      if (reason instanceof LeaseLost || this.stopped) {
        this.log('info', `relay: set ${set.name}: ${reason.message}`)
        return
      }
      const msg = reason instanceof BackendError ? `${reason.reason}: ${reason.message}` : reason.message
      this.lastError = `set ${set.name}: ${msg}`
      if (reason instanceof BackendError && reason.fatal) {
        this.stats.setsFailed++
        this.log('error', `relay: set ${set.name} failed: ${msg}`)
        await this.book.writeState(set.id, { state: 'failed', error: msg, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal }).catch(() => {})
        return
      }
      // transient: let this or another relay try again later
      const prev = this.retryAt.get(set.id)
      const delay = Math.min(prev == null ? this.retryMs : prev.delay * 2, 5 * 60_000)
      this.retryAt.set(set.id, { at: this.now() + delay, delay })
      this.log('warn', `relay: set ${set.name}: ${msg}; trying again in ${Math.round(delay / 1000)} s`)
      await this.book.writeState(set.id, { state: 'uploading', error: msg, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal }).catch(() => {})
      const { lease, record } = await this.book.lease(set.id)
      if (lease?.relay === me) await this.book.writeLease(set.id, 0, record).catch(() => {})
    } finally {
      clearInterval(renew)
    }
  }

  private async upload (set: SetRecord, signal: AbortSignal, progress: RelayProgress): Promise<void> {
    const commit = set.commit
    if (commit == null) return
    const files = (await this.book.files(set)).sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
    if (files.length < commit.files) throw new Error(`waiting for ${commit.files - files.length} of the commit's file records`)
    const ref: SetRef = { id: set.id, name: set.name }
    progress.bytesTotal = files.reduce((n, f) => n + f.size, 0)
    progress.bytesDone = files.reduce((n, f) => n + (f.uploaded && f.sha256 != null ? f.size : 0), 0)
    if (await this.backend.isPublished(ref, { signal })) {
      this.log('info', `relay: set ${set.name} is in the cloud already`)
      await this.book.writeState(set.id, { state: 'uploaded', error: null, bytesDone: progress.bytesTotal, bytesTotal: progress.bytesTotal })
      return
    }
    this.log('info', `relay: uploading set ${set.name} (${files.length} files, ${progress.bytesTotal} bytes) to ${this.backend.name}`)
    await this.book.writeState(set.id, { state: 'uploading', error: null, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal })
    await this.backend.beginSet(ref, { signal })
    let reported = this.now()
    const report = async (force: boolean): Promise<void> => {
      if (!force && this.now() - reported < 1_000) return
      reported = this.now()
      await this.book.writeState(set.id, { state: 'uploading', error: null, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal })
    }
    const entries: Array<{ path: string, size: number, sha256: string }> = []
    // the files being uploaded now: path -> bytes stored so far, and size
    const current = new Map<string, { bytes: number, size: number }>()
    const showCurrent = (): void => {
      const [file, now] = [...current][0] ?? [null, { bytes: 0, size: 0 }]
      progress.file = file
      progress.fileBytes = now.bytes
      progress.fileSize = now.size
    }
    const inFlight = (): number => { let n = 0; for (const c of current.values()) n += c.bytes; return n }
    let done = progress.bytesDone
    const one = async (f: SetFile): Promise<void> => {
      if (f.uploaded && f.sha256 != null) {
        this.stats.filesSkipped++
        entries.push({ path: f.path, size: f.size, sha256: f.sha256 })
        return
      }
      current.set(f.path, { bytes: 0, size: f.size })
      showCurrent()
      const sha256 = await this.keeper.pin(f, this.peers, { signal })
      const pinPath = this.keeper.pins.path(f.hash)
      const result = await this.backend.putFile(ref, f.path, {
        size: f.size,
        sha256,
        open: async (offset) => createReadStream(pinPath, { start: offset, highWaterMark: 1024 * 1024 })
      }, {
        signal,
        onProgress: (bytes) => {
          current.set(f.path, { bytes, size: f.size })
          showCurrent()
          progress.bytesDone = done + inFlight()
          void report(false).catch(() => {})
        }
      })
      current.delete(f.path)
      done += f.size
      progress.bytesDone = done + inFlight()
      showCurrent()
      if (result === 'uploaded') {
        this.stats.filesUploaded++
        this.stats.bytesUploaded += f.size
        this.onUploadedBytes(f.size)
      } else {
        this.stats.filesSkipped++
      }
      await this.book.markFile(f, { sha256, uploaded: true })
      entries.push({ path: f.path, size: f.size, sha256 })
    }
    // a failure stops the other workers after their current file (allSettled: none is
    // left running once this returns)
    let next = 0
    let failure: unknown = null
    await Promise.allSettled(Array.from({ length: Math.min(this.concurrency, files.length) }, async () => {
      while (next < files.length && failure == null) {
        try {
          signal.throwIfAborted()
          await one(files[next++])
        } catch (err) {
          failure ??= err
        }
      }
    }))
    if (failure != null) throw failure
    progress.file = null
    await this.backend.publishSet(ref, createManifest(ref, entries), { signal })
    this.stats.setsUploaded++
    await this.book.writeState(set.id, { state: 'uploaded', error: null, bytesDone: progress.bytesTotal, bytesTotal: progress.bytesTotal })
    this.log('info', `relay: set ${set.name} uploaded (${files.length} files)`)
  }
}

export type { PinContent }
