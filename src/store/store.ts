import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Level } from 'level'
import { HybridClock } from './hlc.js'
import { BlockFilter, hashFile } from './blocks.js'
import { bumpVector, compareVectors, conflictBase, conflictPath, conflictRecord, isConflictPath, resolve } from './version.js'
import { DataFolder, sameObserved, type Observed } from './datafolder.js'
import type { DiskState, FileRecord, NodeId, StoredRecord, Version } from './types.js'
import { RecordCache } from './recordcache.js'
import { RawBatch } from './rawbatch.js'

/** What the scanner (or the FUSE layer) saw at a path: its content, or that it is gone. */
export type LocalObservation =
  | { path: string, present: false }
  | {
    path: string
    present: true
    observed: Observed
    /** Filled for files: block list and content id. */
    blockSize: number
    blocks: string[]
    hash: string
    /** Symlink target. */
    target: string
  }

export interface PeerCursor {
  indexId: string
  seq: number
}

export interface StoreEvents {
  /** Records this node wrote (its own changes), in sequence order: what gets announced. */
  local: [StoredRecord[]]
  /**
   * Sequence numbers just given to records that are not this node's own changes (not in
   * 'local'), ascending; emitted before that commit's 'local'. The announcer needs them to
   * say which of its announcements hold everything stored under their seqs.
   */
  foreign: [number[]]
  /** Paths whose winning version is not on the local disk yet. */
  need: [StoredRecord[]]
  /** Meta records (sets, leases) that changed here, local or remote. */
  meta: [StoredRecord[]]
}

interface Meta {
  indexId: string
  seq: number
  /**
   * The last version-vector counter this node issued, on any path: a counter is never
   * issued twice, even when the record at a path no longer carries the node's last one
   * (an unmerged winner, an expired tombstone, a rebuilt database).
   */
  counter?: number
  /** 1 once the `x` index of conflict copies has been built from the records. */
  copies?: number
  /**
   * What the records add up to, kept up to date in every batch (the batch that changes a
   * record writes the new totals with it), so status and metrics never read every record.
   * Counted once from the records for a database from before it.
   */
  counts?: StoreCounts
  /**
   * While the store is open: the boot of the machine it was opened in (cleared by a clean
   * close). See Store.open.
   */
  openIn?: string
}

/**
 * Counters this node skips when its index is renewed after the machine stopped under an
 * open store: more than it could have issued in the writes the system had not yet put on
 * the disk (seconds of them).
 */
const RENEWAL_COUNTER_GAP = 10_000_000

/** This machine's boot id (Linux), or null where there is none. */
export function machineBootId (): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null
  } catch {
    return null
  }
}

/** Totals over the records (meta records excluded). */
export interface StoreCounts {
  /** live files, directories and symlinks, and tombstones */
  files: number
  dirs: number
  symlinks: number
  deleted: number
  /** bytes of the live files */
  bytes: number
  /** records whose winning version is not on the local disk yet, and their bytes (live files) */
  pendingFiles: number
  pendingBytes: number
}

const zeroCounts = (): StoreCounts => ({ files: 0, dirs: 0, symlinks: 0, deleted: 0, bytes: 0, pendingFiles: 0, pendingBytes: 0 })

/** Add record `r`'s share to `c` (sign -1 takes it away). */
function tally (c: StoreCounts, r: StoredRecord | undefined, sign: 1 | -1): void {
  if (r == null || r.type === 'meta') return
  if (r.deleted) c.deleted += sign
  else if (r.type === 'file') { c.files += sign; c.bytes += sign * r.size } else if (r.type === 'dir') c.dirs += sign
  else c.symlinks += sign
  if (!r.have) {
    c.pendingFiles += sign
    if (!r.deleted) c.pendingBytes += sign * r.size
  }
}

const SEQ_WIDTH = 16
const seqKey = (seq: number): string => seq.toString(16).padStart(SEQ_WIDTH, '0')

export class StoreClosedError extends Error {
  override name = 'StoreClosedError'
}

/**
 * The node's metadata in LevelDB and the conflict rule applied to it.
 *
 * Layout (sublevels, JSON values):
 * - `r` path -> StoredRecord: the winning version of every path, plus local disk state
 * - `q` seq (hex, fixed width) -> path: the local sequence index (one entry per record)
 * - `n` path -> 1: paths whose winning version is not on disk yet (the pull queue)
 * - `k` "<hash>/<path>" -> offset: block index of the content on the local disk
 * - `d` path -> block hashes of the content on disk there (to drop its `k` entries), only
 *   where the record does not tell them: when the disk holds the record's own content (the
 *   usual case) its blocks are the record's. A store written before this kept an entry for
 *   every file: such an entry is overwritten or deleted before it could be read stale.
 * - `c` peer id -> PeerCursor: how far this node has read each peer's index
 * - `m` 'meta' -> {indexId, seq}; `p` peer id -> multiaddrs: remembered peers
 * - `s` upload key -> resumable session URI (the Drive relay backend)
 * - `x` "<base path>\0<copy path>" -> 1: the live conflict copies of each path (kept in
 *   memory too: the check for redundant copies costs nothing for paths without one)
 *
 * Every mutation runs under one lock, so the conflict rule sees a consistent store.
 */
export class Store extends EventEmitter<StoreEvents> {
  readonly nodeId: NodeId
  readonly clock: HybridClock
  readonly data: DataFolder
  private readonly db: Level<string, unknown>
  private readonly records
  private readonly seqIndex
  private readonly needs
  private readonly blockIndex
  private readonly diskBlocks
  private readonly cursors
  private readonly peers
  private readonly metaDb
  private readonly sessionsDb
  private readonly copyIndex
  /**
   * The hashes of the block index (`k`), as a Bloom filter, once built (in the background
   * after open): most blocks a puller asks about are new, and it spares each of them an
   * index read. Until `filled` every hash is "maybe" (blocks committed meanwhile go in too).
   */
  private readonly blockFilter = new BlockFilter()
  private filled = false
  private filling: Promise<void> = Promise.resolve()
  /** base path -> its live conflict copies (the `x` sublevel, in memory) */
  private readonly copies = new Map<string, Set<string>>()
  /** Records written or read last (get, getMany and after look here first). */
  private readonly cache = new RecordCache()
  private meta: Meta = { indexId: '', seq: 0 }
  private committed = 0
  private lock: Promise<unknown> = Promise.resolve()
  private closed = false

  private readonly bootId: string | null
  /** Open gave this index a new id: the machine restarted while it was open (see open). */
  indexRenewed = false

  /** `bootId`: the machine's boot id (tests; default machineBootId()). */
  constructor (init: { path: string, nodeId: NodeId, data: DataFolder, clock?: HybridClock, bootId?: string | null }) {
    super()
    this.bootId = init.bootId === undefined ? machineBootId() : init.bootId
    this.nodeId = init.nodeId
    this.clock = init.clock ?? new HybridClock()
    this.data = init.data
    this.db = new Level<string, unknown>(init.path, { valueEncoding: 'json' })
    this.records = this.db.sublevel<string, StoredRecord>('r', { valueEncoding: 'json' })
    this.seqIndex = this.db.sublevel<string, string>('q', { valueEncoding: 'utf8' })
    this.needs = this.db.sublevel<string, number>('n', { valueEncoding: 'json' })
    this.blockIndex = this.db.sublevel<string, number>('k', { valueEncoding: 'json' })
    this.diskBlocks = this.db.sublevel<string, string[]>('d', { valueEncoding: 'json' })
    this.cursors = this.db.sublevel<string, PeerCursor>('c', { valueEncoding: 'json' })
    this.peers = this.db.sublevel<string, string[]>('p', { valueEncoding: 'json' })
    this.metaDb = this.db.sublevel<string, Meta>('m', { valueEncoding: 'json' })
    this.sessionsDb = this.db.sublevel<string, string>('s', { valueEncoding: 'utf8' })
    this.copyIndex = this.db.sublevel<string, number>('x', { valueEncoding: 'json' })
  }

  /** Key-value storage of the relay's resumable upload sessions (`s` sublevel). */
  get sessions (): { get: (k: string) => Promise<string | undefined>, put: (k: string, v: string) => Promise<void>, del: (k: string) => Promise<void> } {
    const db = this.sessionsDb
    return {
      get: async (k) => await db.get(k),
      put: async (k, v) => { await db.put(k, v) },
      del: async (k) => { await db.del(k) }
    }
  }

  async open (): Promise<void> {
    await this.db.open()
    const meta = await this.metaDb.get('meta')
    if (meta == null) {
      this.meta = { indexId: randomBytes(8).toString('hex'), seq: 0 }
      await this.metaDb.put('meta', this.meta)
    } else {
      this.meta = meta
    }
    // LevelDB's writes are not synced: a machine that stopped (power loss, kernel crash)
    // while the store was open can come back without the last of them, and give their
    // seqs again to other records, which peers' cursors in this index already cover. A
    // new index id has every peer read this index from the start once. (A process that
    // was killed lost nothing: the system had its writes.)
    if (this.meta.openIn != null && this.bootId != null && this.meta.openIn !== this.bootId) {
      this.meta.indexId = randomBytes(8).toString('hex')
      // the lost writes may have issued counters of this node's (in versions peers hold):
      // issued again for other content they would make equal versions that differ
      this.meta.counter = (this.meta.counter ?? 0) + RENEWAL_COUNTER_GAP
      // and every peer is asked from the start, without a cursor, so it sends the records
      // this node delivered to it too (with one, they count as held here)
      await this.cursors.clear()
      this.indexRenewed = true
    }
    if (this.bootId != null) {
      this.meta.openIn = this.bootId
      await this.putMetaSynced()
    }
    if (this.meta.copies !== 1) {
      // a database from before the index: build it once from the records
      const batch = this.copyIndex.batch()
      for await (const r of this.records.values()) {
        if (isLiveCopy(r)) batch.put(copyKey(r.path), 1)
      }
      await batch.write()
      this.meta.copies = 1
      await this.metaDb.put('meta', this.meta)
    }
    if (this.meta.counts == null) {
      // a database from before the totals: count once (later batches keep them up to date)
      const c = zeroCounts()
      for await (const r of this.records.values()) tally(c, r, 1)
      this.meta.counts = c
      await this.metaDb.put('meta', this.meta)
    }
    for await (const key of this.copyIndex.keys()) {
      const [base, copy] = key.split('\0')
      this.trackCopy(base, copy, true)
    }
    this.committed = this.meta.seq
    this.filling = this.fillBlockFilter().catch(() => {})
  }

  /** Reads every block index key into the filter; blocks added meanwhile go in through noteBlock. */
  private async fillBlockFilter (): Promise<void> {
    const it = this.blockIndex.keys()
    try {
      for (;;) {
        // a thousand keys per step: one promise each cost more than the keys
        const keys = await it.nextv(1000)
        if (keys.length === 0 || this.closed) break
        for (const key of keys) this.blockFilter.add(key.slice(0, key.indexOf('/')))
      }
    } finally {
      await it.close()
    }
    this.filled = !this.closed
  }

  /** Whether the block filter is built (lookups of blocks not held then read nothing). */
  get blockFilterReady (): boolean {
    return this.filled
  }

  /** A block now in the block index (Tx, before its batch is written). */
  noteBlock (hash: string): void {
    this.blockFilter.add(hash)
  }

  /** Every live conflict copy this node knows (file records under a conflict name), in path order. */
  conflictCopies (): string[] {
    const out: string[] = []
    for (const set of this.copies.values()) out.push(...set)
    return out.sort()
  }

  /** Keep the in-memory mirror of the `x` index (used by Tx after its batch is written). */
  trackCopy (base: string, copy: string, live: boolean): void {
    let set = this.copies.get(base)
    if (live) {
      if (set == null) { set = new Set(); this.copies.set(base, set) }
      set.add(copy)
    } else if (set != null) {
      set.delete(copy)
      if (set.size === 0) this.copies.delete(base)
    }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.lock.catch(() => {})
    if (this.meta.openIn != null && this.db.status === 'open') {
      delete this.meta.openIn
      await this.putMetaSynced().catch(() => {})
    }
    await this.db.close()
    this.cache.clear()
  }

  /** The meta entry, written through to the disk (fsync). */
  private async putMetaSynced (): Promise<void> {
    await this.db.batch([{ type: 'put', sublevel: this.metaDb, key: 'meta', value: this.meta }], { sync: true })
  }

  get isClosed (): boolean { return this.closed }
  get indexId (): string { return this.meta.indexId }
  /**
   * The highest local sequence number given out. A commit takes its seqs before its batch
   * is written; until then they are not readable (see committedSeq).
   */
  get seq (): number { return this.meta.seq }

  /**
   * The highest local sequence number whose commit has finished: every record stored at
   * or below it can be read (after()). What index catch-up may report as reached; with
   * `seq`, a catch-up served while a commit was being written moved the peer's cursor
   * past records it had not been sent.
   */
  get committedSeq (): number { return this.committed }

  /** Run `fn` alone among all store mutations. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new StoreClosedError('store is closed'))
    const run = this.lock.then(fn, fn)
    this.lock = run.catch(() => {})
    return run
  }

  async get (path: string): Promise<StoredRecord | undefined> {
    const hit = this.cache.get(path)
    if (hit != null) return hit
    const since = this.cache.writes
    const rec = await this.records.get(path)
    this.cache.fill([rec], since)
    return rec
  }

  async getMany (paths: string[]): Promise<Array<StoredRecord | undefined>> {
    const out = new Array<StoredRecord | undefined>(paths.length)
    const missing: string[] = []
    const at: number[] = []
    for (let i = 0; i < paths.length; i++) {
      const hit = this.cache.get(paths[i])
      if (hit != null) out[i] = hit
      else { missing.push(paths[i]); at.push(i) }
    }
    if (missing.length === 0) return out
    const since = this.cache.writes
    const recs = await this.records.getMany(missing)
    this.cache.fill(recs, since)
    for (let k = 0; k < at.length; k++) out[at[k]] = recs[k]
    return out
  }

  async * all (): AsyncGenerator<StoredRecord> {
    for await (const v of this.records.values()) yield v
  }

  /** Every record strictly below directory `dir`. */
  async * under (dir: string): AsyncGenerator<StoredRecord> {
    for await (const v of this.records.values({ gt: `${dir}/`, lt: `${dir}0` })) yield v
  }

  /** Meta records whose path starts with `prefix` (e.g. '/set/'), in path order. */
  async * metaRecords (prefix: string): AsyncGenerator<StoredRecord> {
    for await (const v of this.records.values({ gte: prefix, lt: `${prefix}\uffff` })) yield v
  }

  /**
   * Write a meta record (replicated state that is not a file) as a local change: a new
   * version on top of the one stored, announced like any local write. `payload` null
   * deletes it. `check` runs under the store lock with the current record and may refuse
   * the write by returning false (then nothing is written and the result is null).
   */
  async putMeta (path: string, payload: unknown, check?: (cur: StoredRecord | undefined) => boolean): Promise<StoredRecord | null> {
    return await this.exclusive(async () => {
      const tx = new Tx(this)
      const cur = await tx.get(path)
      if (check != null && !check(cur)) return null
      this.stageMeta(tx, path, payload, cur)
      const [stored] = await tx.commit()
      return stored
    })
  }

  /** Several meta records in one transaction (a commit's file entries). */
  async putMetas (entries: Array<{ path: string, payload: unknown }>): Promise<void> {
    await this.exclusive(async () => {
      const tx = new Tx(this)
      for (const e of entries) this.stageMeta(tx, e.path, e.payload, await tx.get(e.path))
      await tx.commit()
    })
  }

  private stageMeta (tx: Tx, path: string, payload: unknown, cur: StoredRecord | undefined): void {
    const rec: FileRecord = {
      path,
      type: 'meta',
      mode: 0,
      size: 0,
      mtimeMs: 0,
      blockSize: 0,
      blocks: [],
      hash: '',
      target: payload == null ? '' : JSON.stringify(payload),
      deleted: payload == null,
      version: this.newVersion(cur?.version ?? null, cur)
    }
    tx.put({ ...rec, seq: 0, have: true, disk: null }, undefined)
    tx.local(path)
  }

  /** Records stored after local sequence `after`, oldest first, at most `limit`. */
  async after (after: number, limit: number): Promise<StoredRecord[]> {
    return (await this.afterPage(after, limit)).records
  }

  /**
   * Up to `limit` entries of the sequence index after `after`: their records as they are
   * now (a path stored again since the index was read has its new seq, or is left out if
   * that is not above `after`), how many entries were read, and the seq of the last one.
   * A page whose records are fewer than `limit` need not be the last one: `scanned` says.
   */
  async afterPage (after: number, limit: number): Promise<{ records: StoredRecord[], scanned: number, last: number }> {
    const paths: string[] = []
    let last = after
    for await (const [k, p] of this.seqIndex.iterator({ gt: seqKey(after), limit })) {
      paths.push(p)
      last = parseInt(k, 16)
    }
    const recs = await this.getMany(paths)
    return { records: recs.filter((r): r is StoredRecord => r != null && r.seq > after), scanned: paths.length, last }
  }

  async neededPaths (): Promise<string[]> {
    const out: string[] = []
    for await (const k of this.needs.keys()) out.push(k)
    return out
  }

  /** Paths whose winning version is not on the local disk yet (the pull queue's length). */
  needCount (): number {
    return this.meta.counts?.pendingFiles ?? 0
  }

  /** Where the local disk holds a block with this hash. */
  async blockSources (hash: string, limit = 4): Promise<Array<{ path: string, offset: number }>> {
    const out: Array<{ path: string, offset: number }> = []
    // while the filter fills (a moment after open) lookups wait for it: an index read per
    // lookup meanwhile cost more than the wait (a node catching up at start asks for each
    // small file it pulls)
    if (!this.filled) await this.filling
    if (this.filled && !this.blockFilter.mayHave(hash)) return out
    for await (const [k, offset] of this.blockIndex.iterator({ gt: `${hash}/`, lt: `${hash}0`, limit })) {
      out.push({ path: k.slice(hash.length + 1), offset })
    }
    return out
  }

  async getCursor (peer: string): Promise<PeerCursor | undefined> {
    return await this.cursors.get(peer)
  }

  async setCursor (peer: string, cursor: PeerCursor): Promise<void> {
    await this.cursors.put(peer, cursor)
  }

  async rememberPeer (peer: string, addrs: string[]): Promise<void> {
    await this.peers.put(peer, addrs)
  }

  async forgetPeer (peer: string): Promise<void> {
    await this.peers.del(peer)
  }

  async rememberedPeers (): Promise<Array<{ peer: string, addrs: string[] }>> {
    const out: Array<{ peer: string, addrs: string[] }> = []
    for await (const [peer, addrs] of this.peers.iterator()) out.push({ peer, addrs })
    return out
  }

  /** What the records add up to (kept in memory and in every batch: no record is read). */
  count (): StoreCounts {
    return { ...(this.meta.counts ?? zeroCounts()) }
  }

  /**
   * Record what is on the local disk. A path whose disk state differs from what the
   * store last saw gets a new version made by this node: on top of the winning version
   * when the disk held it, otherwise on top of the version the disk held (so a write
   * made before a remote version arrived is concurrent with it and goes through the
   * conflict rule instead of being overwritten).
   */
  async recordLocal (observations: LocalObservation[]): Promise<StoredRecord[]> {
    return await this.exclusive(async () => {
      const tx = new Tx(this)
      await tx.prefetch(observations.map((o) => o.path))
      for (const obs of observations) {
        const cur = await tx.get(obs.path)
        if (!obs.present) {
          if (cur == null || cur.disk == null) continue
          if (this.data.observeSync(obs.path) != null) continue
          const base = cur.have ? cur.version : cur.disk.version
          const version = this.newVersion(base, cur)
          const tomb: FileRecord = { ...toFileRecord(cur), size: 0, blockSize: 0, blocks: [], hash: '', target: '', mtimeMs: 0, deleted: true, version }
          if (cur.have) {
            tx.put({ ...tomb, seq: 0, have: true, disk: null }, null)
            tx.local(tomb.path)
          } else {
            await this.integrate(tx, cur, tomb, null, true)
          }
          continue
        }
        const o = obs.observed
        if (cur?.disk != null && sameObserved(o, cur.disk) && (o.type !== 'symlink' || cur.disk.target === obs.target)) {
          continue
        }
        // the observation was made before we got the lock: if the puller installed a
        // version there meanwhile, it is stale (the watcher reports the new state anyway)
        if (!sameObserved(this.data.observeSync(obs.path), o)) continue
        const hash = o.type === 'dir' ? '' : obs.hash
        const target = o.type === 'symlink' ? obs.target : ''
        if (cur != null && !cur.have && cur.disk == null) {
          // the disk already holds the version this node waits to install (typically the
          // directory the puller made for the files it pulls into it, seen before the
          // directory's own record was installed): that version, installed, not a new
          // version of this node's that would replace it on every node
          const held: DiskState = { ...o, hash, target, version: cur.version }
          if (diskHolds(held, cur)) {
            tx.put({ ...cur, have: true, disk: held }, diskContent(cur), false)
            continue
          }
        }
        const base = cur == null ? null : cur.have ? cur.version : cur.disk?.version ?? null
        const version = this.newVersion(base, cur)
        const rec: FileRecord = {
          path: obs.path,
          type: o.type,
          mode: o.mode,
          size: o.type === 'file' ? o.size : 0,
          mtimeMs: o.type === 'file' ? o.mtimeMs : 0,
          blockSize: o.type === 'file' ? obs.blockSize : 0,
          blocks: o.type === 'file' ? obs.blocks : [],
          hash,
          target,
          deleted: false,
          version
        }
        const disk: DiskState = { ...o, hash, target, version }
        if (cur == null || cur.have) {
          tx.put({ ...rec, seq: 0, have: true, disk }, diskContent(rec))
          tx.local(rec.path)
        } else {
          // the disk did not hold the winning version: this write is concurrent with it
          await this.integrate(tx, cur, rec, disk, true)
        }
      }
      const changed = await tx.commit()
      return [...changed, ...await this.dropRedundantCopies(changed)]
    })
  }

  /**
   * After a repair (a new, empty database that learned the mesh's records from peers):
   * take what the disk holds without making new versions where it matches the mesh.
   * A path whose content matches its record is adopted as is; a path whose content was
   * last written (mtime) before the mesh's version was made is left for the puller to
   * replace or delete, as the later write wins; anything else is recorded as a local
   * write, concurrent with the mesh's version, so the conflict rule keeps both.
   */
  async adopt (observations: LocalObservation[]): Promise<StoredRecord[]> {
    const rest: LocalObservation[] = []
    const adopted = await this.exclusive(async () => {
      const tx = new Tx(this)
      for (const obs of observations) {
        const cur = await tx.get(obs.path)
        if (!obs.present || cur == null || cur.disk != null) { rest.push(obs); continue }
        const o = obs.observed
        const disk: DiskState = { ...o, hash: obs.hash, target: obs.target, version: cur.version }
        const matches = !cur.deleted && cur.type === o.type && (o.type === 'dir' || (cur.hash === obs.hash && cur.target === obs.target))
        // content last written before the mesh's version was made: the mesh's version is
        // the later write, and the puller puts it in place (or deletes the path)
        const older = o.type !== 'dir' && o.mtimeMs < cur.version.hlc.wall
        if (!matches && !older) { rest.push(obs); continue }
        const have = matches && diskHolds(disk, cur)
        tx.put({ ...cur, have, disk }, diskContent({ ...toFileRecord(cur), type: o.type, blocks: obs.blocks, blockSize: obs.blockSize, deleted: false }), false)
      }
      return await tx.commit()
    })
    return [...adopted, ...await this.recordLocal(rest)]
  }

  /**
   * Merge records received from a peer; returns the records that changed here. `from`:
   * the peer's node id, when the records are its own store's (an announcement it
   * published, an index catch-up it served): a version stored as it came is marked as
   * delivered by it (StoredRecord.deliveredBy).
   */
  async applyRemote (incoming: FileRecord[], from?: NodeId): Promise<StoredRecord[]> {
    if (incoming.length === 0) return []
    return await this.exclusive(async () => {
      const tx = new Tx(this)
      await tx.prefetch(incoming.map((r) => r.path))
      for (const rec of incoming) {
        this.clock.observe(rec.version.hlc)
        const cur = await tx.get(rec.path)
        if (cur == null) {
          if (!(isConflictPath(rec.path) && await this.adoptConflictCopy(tx, rec))) tx.put({ ...rec, seq: 0, have: false, disk: null }, undefined)
        } else {
          await this.integrate(tx, cur, rec, null, false)
        }
        if (from != null) tx.delivered(rec, from)
      }
      const changed = await tx.commit()
      return [...changed, ...await this.dropRedundantCopies(changed)]
    })
  }

  /**
   * Drop conflict copies that preserve nothing:
   * - a copy whose content is the content its base path holds, when the base's version has
   *   seen the copy's. Conflicts settle two versions at a time, so the order versions arrive
   *   in can leave such a copy (an identical write on two nodes, with a third write between
   *   them), and a user who settles a conflict by copying the copy over the original makes
   *   one too;
   * - a copy with the same content as another copy of the same path that comes before it in
   *   path order and is held here (two identical versions from two nodes that both lost to
   *   a third write are kept by their holders under two names). The first of them in path
   *   order is never dropped this way, so the content stays.
   *
   * Every node that holds the content that stays drops such a copy itself, with the same
   * tombstone (redundantCopyTombstone is a function of the copy's version alone), so it
   * does not wait for any one node to be up, and the copies of the record that reach a node
   * merge as equal. Only the writer of the base or of the dropped copy announces it; the
   * others spread it through index catch-up. That keeps it about one gossip message.
   *
   * A copy that is a preserved loser (its name is the one conflictPath gives its version)
   * goes only once the base's version has seen it (vectors): a base that is the loser
   * itself, still in place before its winner arrives here, must keep its copy. A file
   * written under a conflict name (a directory holding such a pair renamed, a copy made
   * by hand) has a version of its own path's history, which says nothing about the
   * base's: with identical content, held here under the base's path, it preserves nothing.
   */
  private async dropRedundantCopies (changed: StoredRecord[]): Promise<StoredRecord[]> {
    const bases = new Set<string>()
    for (const r of changed) {
      if (r.type !== 'file') continue
      const base = isConflictPath(r.path) ? conflictBase(r.path) : r.path
      if (this.copies.has(base)) bases.add(base)
    }
    if (bases.size === 0) return []
    const tx = new Tx(this)
    await tx.prefetch([...bases])
    for (const path of bases) {
      const base = await tx.get(path)
      const baseHeld = base != null && !base.deleted && base.type === 'file' && base.have && base.disk != null && diskHolds(base.disk, base)
      // identical copies of one path: the first one this node holds (in path order) stays
      const kept = new Set<string>()
      for (const copyPath of [...this.copies.get(path) ?? []].sort()) {
        const copy = await tx.get(copyPath)
        if (copy == null || !isLiveCopy(copy)) continue
        const content = `${copy.hash}/${copy.size}`
        let drop = false
        if (baseHeld && copy.hash === base.hash && copy.size === base.size) {
          // a preserved loser (its name is its version's) goes once the base has seen it; a
          // file written under a conflict name has a vector of another path's history
          drop = conflictPath(path, copy.version) !== copy.path || compareVectors(base.version.vv, copy.version.vv) === 'after'
        } else if (kept.has(content)) {
          drop = true
        } else if (copy.have && copy.disk != null && diskHolds(copy.disk, copy)) {
          kept.add(content)
        }
        if (!drop) continue
        const tomb: FileRecord = { ...toFileRecord(copy), size: 0, blockSize: 0, blocks: [], hash: '', target: '', mtimeMs: 0, deleted: true, version: redundantCopyTombstone(copy.version) }
        // the disk still holds the copy: the puller removes it (have: false)
        tx.put({ ...tomb, seq: 0, have: copy.disk == null, disk: copy.disk }, undefined)
        if (base?.version.node === this.nodeId || copy.version.node === this.nodeId) tx.local(copy.path)
      }
    }
    return await tx.commit()
  }

  /**
   * Resolve `incoming` against the stored record `cur`. When `incoming` is a local write
   * (`isLocal`), `disk` is its disk state and the path's disk content is `incoming`.
   */
  private async integrate (tx: Tx, cur: StoredRecord, incoming: FileRecord, disk: DiskState | null, isLocal: boolean): Promise<void> {
    const r = resolve(toFileRecord(cur), incoming)
    const curDisk = isLocal ? disk : cur.disk
    // what the disk holds after this step, for the block index (undefined: unchanged)
    const onDisk = isLocal ? diskContent(incoming) : undefined
    switch (r.kind) {
      case 'equal':
      case 'current':
        // only a remote record can be equal to or older than the stored one
        if (isLocal) tx.put({ ...cur, have: false, disk }, onDisk)
        return
      case 'incoming': {
        const have = isLocal || (cur.disk != null && diskHolds(cur.disk, incoming))
        tx.put({ ...incoming, seq: 0, have, disk: curDisk }, onDisk)
        if (isLocal) tx.local(incoming.path)
        return
      }
      case 'concurrent': {
        if (r.conflictCopy && !(curDisk != null && diskHolds(curDisk, r.loser) && (isLocal || sameObserved(await this.data.observe(r.loser.path), curDisk)))) {
          // This node does not hold the losing content, so it cannot keep a copy of it:
          // it keeps the plain last-writer-wins winner, unmerged. The loser's holders (its
          // writer at least, unless it has superseded it: then no copy is due) make the
          // copy and announce the merged winner, which then dominates everywhere.
          if (r.winnerIs === 'current') {
            if (isLocal) tx.put({ ...cur, have: false, disk }, onDisk)
            return
          }
          const have = isLocal || (cur.disk != null && diskHolds(cur.disk, incoming))
          tx.put({ ...incoming, seq: 0, have, disk: curDisk }, onDisk)
          if (isLocal) tx.local(incoming.path)
          return
        }
        const winnerOnDisk = curDisk != null && diskHolds(curDisk, r.winner)
        if (r.conflictCopy) await this.keepConflictCopy(tx, r.loser, curDisk)
        tx.put({ ...r.winner, seq: 0, have: winnerOnDisk, disk: curDisk }, onDisk)
        // the merged winner is a new version for everyone: announce it when made here
        if (isLocal || r.winnerIs === 'current' || r.conflictCopy) tx.local(r.winner.path)
      }
    }
  }

  /**
   * Store the conflict copy of a losing version. When the loser is what the disk holds
   * at its path, the copy is made locally (a hard link) and nothing is transferred.
   */
  private async keepConflictCopy (tx: Tx, loser: FileRecord, disk: DiskState | null): Promise<void> {
    const copy = conflictRecord(loser)
    const existing = await tx.get(copy.path)
    if (existing != null && resolve(toFileRecord(existing), copy).kind !== 'incoming') return
    if (disk != null && diskHolds(disk, loser)) {
      try {
        // the file must still be the loser, not an edit the scanner has not recorded yet
        if (!sameObserved(await this.data.observe(loser.path), disk)) throw new Error('changed on disk')
        await this.preserveVerified(loser.path, copy)
        const observed = await this.data.observe(copy.path)
        if (observed != null) {
          tx.put({ ...copy, seq: 0, have: true, disk: { ...observed, hash: copy.hash, target: copy.target, version: copy.version } }, copy)
          // announced like a local change: nodes that only see the merged winner (which
          // dominates both versions) never run the conflict rule themselves
          tx.local(copy.path)
          return
        }
      } catch {
        // the file changed under us: the scanner records that change as a write of its own
      }
    }
    // No copy record without content: one nobody holds would stay in every pull queue.
  }

  /**
   * A peer's conflict copy of a version this disk still holds (typically at the copy's
   * original path, about to be overwritten by the winner): link it now, as the node that
   * made the copy would have, instead of pulling it later from a file that may be gone.
   */
  private async adoptConflictCopy (tx: Tx, rec: FileRecord): Promise<boolean> {
    if (rec.type !== 'file' || rec.deleted || rec.blocks.length === 0) return false
    for (const src of await this.blockSources(rec.blocks[0], 8)) {
      const holder = await tx.get(src.path)
      if (holder?.disk == null || !diskHolds(holder.disk, rec)) continue
      try {
        if (!sameObserved(await this.data.observe(src.path), holder.disk)) continue
        await this.preserveVerified(src.path, rec)
        const observed = await this.data.observe(rec.path)
        if (observed == null) continue
        tx.put({ ...rec, seq: 0, have: true, disk: { ...observed, hash: rec.hash, target: rec.target, version: rec.version } }, rec)
        return true
      } catch {
        // pulled like any other file
      }
    }
    return false
  }

  /** Copy `from` to the copy's path, and keep it only if it holds the copy's content. */
  private async preserveVerified (from: string, copy: FileRecord): Promise<void> {
    await this.data.preserve(from, copy.path, copy.mtimeMs)
    if ((await hashFile(this.data.abs(copy.path))).hash !== copy.hash) {
      await this.data.remove(copy.path)
      throw new Error('changed while it was copied')
    }
  }

  private newVersion (base: Version | null, cur: StoredRecord | undefined): Version {
    const seen = [base?.vv ?? {}, { [this.nodeId]: this.meta.counter ?? 0 }]
    if (cur != null) seen.push({ [this.nodeId]: cur.version.vv[this.nodeId] ?? 0 })
    const vv = bumpVector(this.nodeId, ...seen)
    this.meta.counter = vv[this.nodeId]
    return { vv, hlc: this.clock.tick(), node: this.nodeId }
  }

  /**
   * The materializer put the winning version of `path` on disk (or removed it). Ignored
   * when a newer version arrived meanwhile (that one stays needed).
   */
  async markInstalled (rec: FileRecord, observed: Observed | null): Promise<boolean> {
    return await this.install(rec, async () => observed)
  }

  /**
   * Install the winning version of a path: `put` (which does the rename into place and
   * returns what is on disk then) runs under the store lock, and only if `rec` is still
   * the winning version; otherwise nothing happens and the result is false (the caller
   * discards its temp file). Installs that arrive together are committed in one
   * LevelDB batch: thousands of small files do not queue for the lock one by one.
   */
  async install (rec: FileRecord, put: () => Promise<Observed | null>): Promise<boolean> {
    return await new Promise<boolean>((resolve, reject) => {
      this.installs.push({ rec, put, resolve, reject })
      if (this.installs.length === 1) {
        this.exclusive(async () => { await this.flushInstalls() }).catch((err: Error) => {
          for (const i of this.installs.splice(0)) i.reject(err)
        })
      }
    })
  }

  private readonly installs: Array<{ rec: FileRecord, put: () => Promise<Observed | null>, resolve: (ok: boolean) => void, reject: (err: Error) => void }> = []

  private async flushInstalls (): Promise<void> {
    const batch = this.installs.splice(0)
    const tx = new Tx(this)
    await tx.prefetch(batch.map((i) => i.rec.path))
    const done: Array<[typeof batch[number], boolean]> = []
    const current: Array<{ item: typeof batch[number], cur: StoredRecord }> = []
    for (const item of batch) {
      const cur = await tx.get(item.rec.path)
      if (cur == null || !sameVersion(cur.version, item.rec.version)) done.push([item, false])
      else current.push({ item, cur })
    }
    // the puts of the batch at once (each its own path): a put that hands its step to
    // another thread then goes there with the others in one message
    const puts = await Promise.allSettled(current.map(async ({ item }) => await item.put()))
    current.forEach(({ item, cur }, i) => {
      const r = puts[i]
      if (r.status === 'rejected') { item.reject(r.reason as Error); return }
      const observed = r.value
      const disk: DiskState | null = observed == null || cur.deleted
        ? null
        : { ...observed, hash: cur.hash, target: cur.target, version: cur.version }
      tx.put({ ...cur, have: true, disk }, cur.type === 'file' && !cur.deleted ? cur : null, false)
      done.push([item, true])
    })
    // an installed base or copy can make a copy redundant (dropRedundantCopies)
    await this.dropRedundantCopies(await tx.commit())
    for (const [item, ok] of done) item.resolve(ok)
  }

  /** A commit's batch was written: its seqs are readable. */
  seqsCommitted (): void {
    this.committed = this.meta.seq
  }

  /**
   * A commit's batch failed: give its seqs back (commits run one at a time). Reported as
   * reached, or skipped, they would have been used again after a restart (the stored
   * seq is the last written one) for other records, which a peer's cursor then covered.
   */
  seqsFailed (before: number): void {
    this.meta.seq = before
  }

  /** The next local sequence number (Tx; written with its batch). */
  nextSeq (): number {
    this.meta.seq++
    return this.meta.seq
  }

  /** @internal */
  get internals () {
    return { db: this.db, records: this.records, seqIndex: this.seqIndex, needs: this.needs, blockIndex: this.blockIndex, diskBlocks: this.diskBlocks, metaDb: this.metaDb, meta: this.meta, copyIndex: this.copyIndex, cache: this.cache }
  }
}

export function toFileRecord (r: StoredRecord | FileRecord): FileRecord {
  return {
    path: r.path,
    type: r.type,
    mode: r.mode,
    size: r.size,
    mtimeMs: r.mtimeMs,
    blockSize: r.blockSize,
    blocks: r.blocks,
    hash: r.hash,
    target: r.target,
    deleted: r.deleted,
    version: r.version
  }
}

/**
 * The node id in the version of every redundant conflict copy's tombstone. It is no
 * real node's (those are hashes of peer ids), so no real write ever carries it in its
 * vector without having seen such a tombstone: the tombstone cannot collide with one.
 */
export const REDUNDANT_COPY_NODE = 'syncmeshdedup'

/**
 * The version of the tombstone that drops a redundant conflict copy: a function of the
 * copy's version only, so every node that drops it makes the very same record.
 */
export function redundantCopyTombstone (copy: Version): Version {
  return {
    vv: bumpVector(REDUNDANT_COPY_NODE, copy.vv),
    hlc: { wall: copy.hlc.wall, logical: copy.hlc.logical + 1 },
    node: REDUNDANT_COPY_NODE
  }
}

function isLiveCopy (r: FileRecord): boolean {
  return r.type === 'file' && !r.deleted && isConflictPath(r.path)
}

function copyKey (copyPath: string): string {
  return `${conflictBase(copyPath)}\0${copyPath}`
}

/**
 * The mark of version `v` as sent by peer `from` (StoredRecord.deliveredBy). A version is
 * named by its writer, clock and the sum of its vector: the versions that share a writer
 * and clock are that write and its merges with concurrent ones (a merged winner keeps the
 * winner's writer and clock), and a merge that changed the vector raised its sum.
 */
export function deliveredKey (from: NodeId, v: Version): string {
  let sum = 0
  for (const n in v.vv) sum += v.vv[n]
  return `${from}/${v.node}/${v.hlc.wall}/${v.hlc.logical}/${sum}`
}

export function sameVersion (a: Version, b: Version): boolean {
  return a.node === b.node && a.hlc.wall === b.hlc.wall && a.hlc.logical === b.hlc.logical
}

/** The content a local record puts on disk, for the block index. */
function diskContent (rec: FileRecord): FileRecord | null {
  return rec.type === 'file' && !rec.deleted ? rec : null
}

/**
 * Whether the disk at `r`'s path holds the content of `r` itself: then the blocks on disk
 * are `r.blocks` (a content id names its block list), and no `d` entry is kept for them.
 */
function diskIsRecord (r: StoredRecord | undefined): boolean {
  return r != null && r.type === 'file' && !r.deleted && r.disk != null && r.disk.type === 'file' && r.disk.hash === r.hash
}

/** Whether the disk content (what the disk holds) is that of record `r`. */
function diskHolds (disk: DiskState, r: FileRecord): boolean {
  if (r.deleted) return false
  if (disk.type !== r.type) return false
  // a directory's mode replicates too: a dir that exists with another mode (made by an
  // earlier version, or as a parent by the puller) does not hold this version
  if (r.type === 'dir') return disk.mode === r.mode
  if (r.type === 'symlink') return disk.target === r.target
  return disk.hash === r.hash && disk.mode === r.mode && Math.abs(disk.mtimeMs - r.mtimeMs) < 1
}

/**
 * One atomic LevelDB batch: records, their sequence numbers, the pull queue and the
 * block index change together, so a crash never leaves them disagreeing.
 */
class Tx {
  private readonly store: Store
  private readonly pending = new Map<string, { rec: StoredRecord, blocks: FileRecord | null | undefined, bumpSeq: boolean }>()
  private readonly localPaths = new Set<string>()
  private readonly originals = new Map<string, StoredRecord | undefined>()

  constructor (store: Store) {
    this.store = store
  }

  async get (path: string): Promise<StoredRecord | undefined> {
    const p = this.pending.get(path)
    if (p != null) return p.rec
    if (this.originals.has(path)) return this.originals.get(path)
    const r = await this.store.get(path)
    this.originals.set(path, r)
    return r
  }

  /** Read the records of `paths` in one go (what get() would read one by one). */
  async prefetch (paths: string[]): Promise<void> {
    const todo = [...new Set(paths)].filter((p) => !this.pending.has(p) && !this.originals.has(p))
    if (todo.length < 2) return
    const recs = await this.store.getMany(todo)
    todo.forEach((p, i) => { if (!this.pending.has(p) && !this.originals.has(p)) this.originals.set(p, recs[i]) })
  }

  /**
   * Stage a record. `diskBlocks`: the content now on disk at this path, for the block
   * index (a FileRecord), null when the disk no longer holds indexed content, undefined
   * when the disk did not change.
   */
  put (rec: StoredRecord, diskBlocks: FileRecord | null | undefined, bumpSeq = true): void {
    // a meta record is complete in itself: nothing to pull, nothing on disk
    if (rec.type === 'meta') { rec = { ...rec, have: true, disk: null }; diskBlocks = undefined }
    // a record read from the cache is frozen (shared with every reader); commit sets seq
    else if (Object.isFrozen(rec)) rec = { ...rec }
    // a record that sees nothing on disk has no blocks indexed there: commit reads no `d`
    // entry for it (an install that found nothing at its path once indexed the record's)
    if (rec.disk == null && diskBlocks != null) diskBlocks = null
    const prev = this.pending.get(rec.path)
    const blocks = diskBlocks === undefined ? prev?.blocks : diskBlocks
    this.pending.set(rec.path, { rec, blocks, bumpSeq: bumpSeq || (prev?.bumpSeq ?? false) })
  }

  local (path: string): void {
    this.localPaths.add(path)
  }

  /**
   * `from` sent `rec`: if the staged record of its path is that very version, say so. A
   * version stored as it came is staged with the incoming record's own version object; a
   * merge made here is a new one. (A version left unmarked is only sent back, as before.)
   */
  delivered (rec: FileRecord, from: NodeId): void {
    const p = this.pending.get(rec.path)
    if (p != null && p.rec.version === rec.version) p.rec = { ...p.rec, deliveredBy: deliveredKey(from, rec.version) }
  }

  async commit (): Promise<StoredRecord[]> {
    if (this.pending.size === 0) return []
    const { db, records, seqIndex, needs, blockIndex, diskBlocks, metaDb, meta, copyIndex, cache } = this.store.internals
    const batch = new RawBatch(db)
    const [R, Q, N, K, D, X] = [records, seqIndex, needs, blockIndex, diskBlocks, copyIndex].map((l) => l.prefix)
    const changed: StoredRecord[] = []
    const needed: StoredRecord[] = []
    const localRecs: StoredRecord[] = []
    const metaRecs: StoredRecord[] = []
    // seqs given to records this node does not announce (see the 'foreign' event)
    const foreign: number[] = []
    const seqBefore = this.store.seq
    // the totals: every staged path's record before the batch (read now if no get did)
    const unread = [...this.pending.keys()].filter((p) => !this.originals.has(p))
    if (unread.length > 0) {
      const recs = await this.store.getMany(unread)
      unread.forEach((p, i) => this.originals.set(p, recs[i]))
    }
    const counts = { ...(meta.counts ?? zeroCounts()) }
    // The block list of what the disk held before, for the paths whose disk content
    // changes: the record's own when the disk held its content (diskIsRecord), nothing
    // when its record saw nothing on disk, else the `d` entry (read in one go).
    const oldBlocks = new Map<string, string[] | undefined>()
    const listed: string[] = []
    for (const [path, p] of this.pending) {
      if (p.blocks === undefined) continue
      const orig = this.originals.get(path)
      if (orig != null && diskIsRecord(orig)) oldBlocks.set(path, orig.blocks)
      else if (orig?.disk != null) listed.push(path)
    }
    if (listed.length > 0) {
      const lists = await diskBlocks.getMany(listed)
      listed.forEach((p, i) => oldBlocks.set(p, lists[i]))
    }
    for (const [path, { rec, blocks, bumpSeq }] of this.pending) {
      const orig = this.originals.get(path)
      if (bumpSeq) {
        if (orig != null && orig.seq > 0) batch.del(Q, seqKey(orig.seq))
        rec.seq = this.store.nextSeq()
        batch.put(Q, seqKey(rec.seq), path)
        if (!this.localPaths.has(path)) foreign.push(rec.seq)
      } else {
        rec.seq = orig?.seq ?? rec.seq
      }
      batch.put(R, path, JSON.stringify(rec))
      tally(counts, orig, -1)
      tally(counts, rec, 1)
      // the pull queue holds exactly the paths whose record is not had (same batch)
      if (!rec.have) { batch.put(N, path, '1'); needed.push(rec) } else if (orig != null && !orig.have) batch.del(N, path)
      if (blocks !== undefined) {
        // the disk content changed: drop the old block locations, add the new ones
        const old = oldBlocks.get(path)
        for (const h of new Set(old ?? [])) batch.del(K, `${h}/${path}`)
        if (blocks != null) {
          const seen = new Set<string>()
          blocks.blocks.forEach((h, i) => {
            if (seen.has(h)) return
            seen.add(h)
            batch.put(K, `${h}/${path}`, String(i * blocks.blockSize))
            this.store.noteBlock(h)
          })
        }
      }
      // `d`: the block list of the disk content where the record does not tell it
      if (diskIsRecord(rec)) {
        if (orig != null && !diskIsRecord(orig) && (blocks === undefined ? orig.disk != null : oldBlocks.get(path) != null)) batch.del(D, path)
      } else if (blocks !== undefined) {
        if (blocks != null) batch.put(D, path, JSON.stringify(blocks.blocks))
        else if (oldBlocks.get(path) != null) batch.del(D, path)
      } else if (orig != null && diskIsRecord(orig)) {
        // the disk keeps the content of the record before, which no longer tells it
        batch.put(D, path, JSON.stringify(orig.blocks))
      }
      if (rec.type === 'file' && isConflictPath(path)) {
        if (isLiveCopy(rec)) batch.put(X, copyKey(path), '1')
        else batch.del(X, copyKey(path))
      }
      changed.push(rec)
      if (rec.type === 'meta') metaRecs.push(rec)
      if (this.localPaths.has(path)) localRecs.push(rec)
    }
    try {
      await batch.write({ prefix: metaDb.prefix, key: 'meta', value: JSON.stringify({ ...meta, counts }) })
    } catch (err) {
      this.store.seqsFailed(seqBefore)
      throw err
    }
    this.store.seqsCommitted()
    cache.wrote(changed)
    meta.counts = counts
    for (const rec of changed) {
      if (rec.type === 'file' && isConflictPath(rec.path)) this.store.trackCopy(conflictBase(rec.path), rec.path, isLiveCopy(rec))
    }
    // before 'local': a batch the announcer closes on 'local' must know them
    if (foreign.length > 0) this.store.emit('foreign', foreign)
    if (localRecs.length > 0) this.store.emit('local', localRecs.sort((a, b) => a.seq - b.seq))
    if (needed.length > 0) this.store.emit('need', needed)
    if (metaRecs.length > 0) this.store.emit('meta', metaRecs)
    return changed
  }
}
