import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { readFrames, writeFrame } from './frames.js'
import type { BlockCache } from '../store/blockcache.js'
import {
  TRANSFER_LIMITS, decodeBatchRequest, decodeBlockFrame, decodeBlockRequest, decodeBlockResponse, encodeBatchRequest, encodeBlockFrame,
  encodeBlockRequest, encodeBlockResponse, type BatchRequest, type BlockRequest, type BlockResponse, type BlockStatus, type Want
} from './codec.js'
import type { Store } from '../store/store.js'
import { RESERVED, observedFromStat, sameObserved, type DataFolder } from '../store/datafolder.js'
import { blockLength, readAt } from '../store/blocks.js'
import type { StoredRecord } from '../store/types.js'

/** One block per request, the block inside a protobuf response. */
export const BLOCK_PROTOCOL = '/syncmesh/blocks/1.0.0'
/**
 * Batches: one request asks for many blocks (a run of one file's blocks, or the blocks of
 * many small files); each block comes back as its own frame with the bytes outside the
 * protobuf header. Preferred; a peer that only speaks 1.0.0 is asked block by block.
 */
export const BLOCK_PROTOCOL_V2 = '/syncmesh/blocks/2.0.0'
const MAX_FRAME = 17 * 1024 * 1024
const MAX_BUFFER = 64 * 1024 * 1024
/** Batch requests of one stream answered at once (each reads one block ahead). */
const BATCHES_AT_ONCE = 4
/** Frames of one answer written together up to this many bytes. */
const COALESCE = 256 * 1024
/** Buffer size for the blocks an answer takes from the block cache (Arena). */
const ARENA_BYTES = 512 * 1024

/**
 * Space for the copies of small blocks one answer serves from the block cache: buffers of
 * `size` bytes filled in order, a new one once a block does not fit (a block larger than a
 * quarter of one gets a buffer of its own). What was handed out stays valid: a buffer is
 * never written again, only dropped when its frames are sent.
 */
class Arena {
  private buf: Uint8Array | null = null
  private at = 0

  constructor (private readonly size: number) {}

  /** A copy of `src` (a function of its own: handed to the cache). */
  readonly copy = (src: Uint8Array): Uint8Array => {
    const n = src.byteLength
    if (n > this.size / 4) return Buffer.from(src)
    if (this.buf == null || this.at + n > this.buf.byteLength) {
      this.buf = Buffer.allocUnsafeSlow(this.size)
      this.at = 0
    }
    this.buf.set(src, this.at)
    this.at += n
    return this.buf.subarray(this.at - n, this.at)
  }
}

/** Blocks up to this size are read with synchronous calls (no thread-pool round trips). */
const SMALL_READ = 256 * 1024

/** What the block protocol needs from the libp2p host (so tests can use any host). */
export interface BlockHost {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocol: string | string[], opts?: { signal?: AbortSignal }) => Promise<Stream>
}

export class BlockUnavailableError extends Error {
  override name = 'BlockUnavailableError'
}

export class PeerGoneError extends Error {
  override name = 'PeerGoneError'
}

/**
 * Block bytes received from and sent to each peer (content only, not framing), for
 * metrics. Totals are kept after a peer disconnects, so they only grow.
 */
export class PeerTraffic {
  readonly bytesIn = new Map<string, number>()
  readonly bytesOut = new Map<string, number>()

  received (peer: string, n: number): void {
    this.bytesIn.set(peer, (this.bytesIn.get(peer) ?? 0) + n)
  }

  sent (peer: string, n: number): void {
    this.bytesOut.set(peer, (this.bytesOut.get(peer) ?? 0) + n)
  }
}

/**
 * Serves blocks by hash from any local file that holds them. Requests on one stream are
 * pipelined; up to `concurrency` are read from disk at once and answered as they finish
 * (the stream is not read further meanwhile, which bounds what one peer can queue).
 * Each block is hashed before it is sent, so a file changed behind the index is never
 * served as the old block (the scanner is told instead). The exception: a requester that
 * hashes what it gets and asks again before it blames us (Want.unhashedOk) gets a block of
 * a file still as this node recorded it (size, mtime and inode, looked at after the read)
 * without a second hash; a change that leaves all three as they were is caught by the
 * requester, and its second request is hashed here.
 */
export class BlockServer {
  private readonly store: Store
  private readonly cache: BlockCache | null
  private readonly data: DataFolder
  private readonly host: BlockHost
  private readonly onStale: (path: string) => void
  /** Blocks held outside the data folder's files (pinned set content). */
  pinSource: ((hash: string) => { rel: string, offset: number } | null) | null = null
  private readonly traffic: PeerTraffic | null
  private readonly concurrency: number
  private readonly requestsPerSecond: number
  private readonly streams = new Set<Stream>()
  /** Counters for status and metrics. */
  readonly stats = { blocksServed: 0, bytesServed: 0, notFound: 0, blocksUnhashed: 0, blocksFromCache: 0 }
  /** Fault injection (simulations): alter every block before it is sent (a lying peer). */
  corrupt: ((data: Uint8Array) => Uint8Array) | null = null
  /** Fault injection (simulations): wait this long before answering each block (a slow peer). */
  delayMs = 0

  constructor (components: { store: Store, data: DataFolder, host: BlockHost, onStale?: (path: string) => void, traffic?: PeerTraffic, cache?: BlockCache }, init: { concurrency?: number, requestsPerSecond?: number } = {}) {
    this.store = components.store
    this.cache = components.cache ?? null
    this.data = components.data
    this.host = components.host
    this.onStale = components.onStale ?? (() => {})
    this.traffic = components.traffic ?? null
    /** @default 32 */
    this.concurrency = init.concurrency ?? 32
    /** @default 20_000 */
    this.requestsPerSecond = init.requestsPerSecond ?? 20_000
  }

  async start (): Promise<void> {
    await this.host.handle(BLOCK_PROTOCOL, (stream, connection) => { void this.serve(stream, connection.remotePeer.toString()) }, { maxInboundStreams: 64 })
    await this.host.handle(BLOCK_PROTOCOL_V2, (stream, connection) => { void this.serveBatches(stream, connection.remotePeer.toString()) }, { maxInboundStreams: 64 })
  }

  async stop (): Promise<void> {
    for (const rel of [...this.handles.keys()]) this.dropHandle(rel)
    if (this.sweeper != null) { clearInterval(this.sweeper); this.sweeper = null }
    await this.host.unhandle(BLOCK_PROTOCOL)
    await this.host.unhandle(BLOCK_PROTOCOL_V2)
    for (const s of this.streams) s.abort(new Error('node stopping'))
    this.streams.clear()
  }

  /**
   * Per-peer request budget (token bucket): `requestsPerSecond`, bursts up to twice that.
   * Past it a request is answered 'busy' without touching the disk.
   */
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  private admit (peer: string, blocks = 1): boolean {
    const now = Date.now()
    const b = this.buckets.get(peer) ?? { tokens: 2 * this.requestsPerSecond, at: now }
    b.tokens = Math.min(2 * this.requestsPerSecond, b.tokens + (now - b.at) * this.requestsPerSecond / 1000)
    b.at = now
    this.buckets.set(peer, b)
    if (b.tokens < blocks) return false
    b.tokens -= blocks
    return true
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: MAX_BUFFER })
    let writing: Promise<unknown> = Promise.resolve()
    await this.serveLoop(stream, lp, this.concurrency, decodeBlockRequest, async (req) => {
      const answer = this.admit(peer)
        ? this.answer(req)
        : Promise.resolve<BlockResponse>({ id: req.id, status: 'busy', data: new Uint8Array(0), message: 'request rate limit' })
      // an answer that fails (the store closing under a stop, a read error) is a miss,
      // never an unhandled rejection
      const res = await answer.catch((): BlockResponse => ({ id: req.id, status: 'error', data: new Uint8Array(0), message: 'unavailable' }))
      writing = writing.then(async () => {
        await lp.write(encodeBlockResponse(res))
        if (res.status === 'ok') this.traffic?.sent(peer, res.data.byteLength)
      }).catch(() => {})
    }, async () => { await writing })
  }

  /**
   * How both protocol versions serve a stream: read a request, wait for one of `limit`
   * slots (the stream is not read further meanwhile, which bounds what one peer can
   * queue), handle it without waiting for it; once the peer has closed its side, let every
   * answer finish (`flushed`) and close. A request that does not decode aborts the stream.
   */
  private async serveLoop<R> (stream: Stream, lp: LengthPrefixedStream<Stream>, limit: number, decode: (frame: Uint8ArrayList) => R, handle: (req: R) => Promise<void>, flushed: () => Promise<void>): Promise<void> {
    this.streams.add(stream)
    let active = 0
    let wake: (() => void) | null = null
    try {
      for (;;) {
        let frame
        try {
          frame = await lp.read()
        } catch {
          break
        }
        const req = decode(frame)
        while (active >= limit) await new Promise<void>((resolve) => { wake = resolve })
        active++
        void handle(req).catch(() => {}).finally(() => {
          active--
          const w = wake
          wake = null
          w?.()
        })
      }
      while (active > 0) await new Promise<void>((resolve) => { wake = resolve })
      await flushed()
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
    } finally {
      this.streams.delete(stream)
    }
  }

  private async answer (req: BlockRequest): Promise<BlockResponse> {
    const data = await this.find(req)
    if (data == null) return { id: req.id, status: 'not-found', data: new Uint8Array(0), message: '' }
    return { id: req.id, status: 'ok', data, message: '' }
  }

  /**
   * The block `w` asks for, read from a local file and verified against its hash (then
   * counted and, under fault injection, corrupted), or null when no local file holds it.
   */
  private async find (w: Want, arena?: Arena): Promise<Uint8Array | null> {
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs))
    // a small block read or received a moment ago (hashed then): no file read, no hash
    let data: Uint8Array | null = this.cache?.get(w.hash, w.size, arena?.copy) ?? null
    if (data != null) this.stats.blocksFromCache++
    // the requester's path and offset usually hold the block here too: try them before
    // the block index (every block is hashed before it is sent, so a wrong guess is safe)
    if (data == null && w.pathHint !== '' && !isReserved(w.pathHint)) {
      data = await this.readVerified(w.pathHint, w.offsetHint, w.size, w.hash, w.unhashedOk === true).catch(() => null)
    }
    if (data == null) {
      for (const src of await this.store.blockSources(w.hash, 8)) {
        if (src.path === w.pathHint && src.offset === w.offsetHint) continue
        data = await this.readVerified(src.path, src.offset, w.size, w.hash).catch(() => null)
        if (data != null) break
        // the index names a file that no longer holds this block: let the scanner look
        this.onStale(src.path)
      }
    }
    if (data == null) {
      const pinned = this.pinSource?.(w.hash)
      if (pinned != null) data = await this.readVerified(pinned.rel, pinned.offset, w.size, w.hash).catch(() => null)
    }
    if (data == null) {
      this.stats.notFound++
      return null
    }
    this.stats.blocksServed++
    this.stats.bytesServed += data.byteLength
    return this.corrupt != null ? this.corrupt(data) : data
  }

  /**
   * Protocol 2: batch requests, each answered block by block in its order (one frame per
   * block, written as soon as it is read; the next block is read meanwhile). Up to
   * BATCHES_AT_ONCE requests of a stream are answered at once (the stream is not read
   * further meanwhile, which bounds what one peer can queue).
   */
  private async serveBatches (stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: TRANSFER_LIMITS.maxBatchRequestBytes, maxBufferSize: MAX_BUFFER })
    let writing: Promise<unknown> = Promise.resolve()
    // frames of concurrent answers go out one after the other, whole; several frames
    // written together are one send (one muxer frame, one cipher call per layer)
    const send = async (frames: Uint8ArrayList[]): Promise<void> => {
      const p = writing.then(async () => { await lp.writeV(frames) })
      writing = p.catch(() => {})
      await p
    }
    await this.serveLoop(stream, lp, BATCHES_AT_ONCE, decodeBatchRequest, async (req) => { await this.answerBatch(req, peer, send) }, async () => { await writing })
  }

  private async answerBatch (req: BatchRequest, peer: string, send: (frames: Uint8ArrayList[]) => Promise<void>): Promise<void> {
    const admitted = this.admit(peer, req.wants.length)
    // blocks from the cache are copied into shared buffers (the frames keep them alive)
    const arena = new Arena(ARENA_BYTES)
    let sent: Promise<void> = Promise.resolve()
    // frames gathered until COALESCE bytes (small blocks: many per send), then written
    // while the next blocks are read (at most one send of this answer waits)
    let out: Uint8ArrayList[] = []
    let outBytes = 0
    let outData = 0
    const flush = async (): Promise<void> => {
      if (out.length === 0) return
      const frames = out
      const n = outData
      out = []
      outBytes = 0
      outData = 0
      await sent
      const p = send(frames).then(() => { if (n > 0) this.traffic?.sent(peer, n) })
      // awaited by the next flush or at the end; until then a closed stream's rejection
      // must not count as unhandled (it would end the process)
      p.catch(() => {})
      sent = p
    }
    for (let index = 0; index < req.wants.length; index++) {
      let data: Uint8Array | null = null
      let status: BlockStatus = 'busy'
      let message = 'request rate limit'
      if (admitted) {
        // a read that fails (the store closing under a stop, a read error) is a miss
        try {
          data = await this.find(req.wants[index], arena)
          status = data == null ? 'not-found' : 'ok'
          message = ''
        } catch {
          status = 'error'
          message = 'unavailable'
        }
      }
      const frame = encodeBlockFrame({ id: req.id, index, status, message }, data)
      out.push(frame)
      outBytes += frame.byteLength
      outData += data?.byteLength ?? 0
      if (outBytes >= COALESCE) await flush()
    }
    await flush()
    await sent
  }

  /**
   * `size` bytes of `rel` at `offset`, if they hash to `hash` (or, `unhashedOk`, if the
   * file is still as recorded and its record has that block there); else null.
   */
  private async readVerified (rel: string, offset: number, size: number, hash: string, unhashedOk = false): Promise<Buffer | null> {
    if (size <= SMALL_READ && offset === 0 && !this.handles.has(rel)) return readSmallVerified(this.data.abs(rel), size, hash)
    const cached = this.handles.get(rel)
    if (cached != null) {
      const data = await readAt(cached.fh, offset, size).catch(() => null)
      if (data != null && unhashedOk && await this.asRecorded(rel, cached, offset, size, hash)) {
        this.stats.blocksUnhashed++
        cached.used = Date.now()
        return data
      }
      if (data != null && sha256(data) === hash) { cached.used = Date.now(); return data }
      // replaced since it was opened (or it never held this block): look again below
      this.dropHandle(rel)
    }
    const fh = await open(this.data.abs(rel), 'r')
    const data = await readAt(fh, offset, size).catch(() => null)
    if (data == null || sha256(data) !== hash) {
      await fh.close()
      return null
    }
    this.keepHandle(rel, fh)
    return data
  }

  /**
   * Open files kept for the next blocks of the same file (a file is served block after
   * block): one read per block instead of open, read, close. Bounded, and closed after a
   * few idle seconds; a handle to a replaced file is noticed by the hash check.
   */
  private readonly handles = new Map<string, OpenFile>()

  /**
   * Whether the block of `rel` at `offset` (`size` bytes, hash `hash`) is, by this node's
   * record, what the open file holds now: the record (read once per open file) says the
   * disk holds its version, whose block there is `hash`, and the file's size, mtime and
   * inode, looked at now (after the read), are still those recorded.
   */
  private async asRecorded (rel: string, file: OpenFile, offset: number, size: number, hash: string): Promise<boolean> {
    if (file.record === undefined) {
      const r = await this.store.get(rel).catch(() => undefined)
      file.record = r != null && r.type === 'file' && !r.deleted && r.disk != null && r.disk.hash === r.hash ? r : null
    }
    const r = file.record
    if (r == null || r.blockSize <= 0 || offset % r.blockSize !== 0) return false
    const i = offset / r.blockSize
    if (r.blocks[i] !== hash || blockLength(r.size, r.blockSize, i) !== size) return false
    try {
      return sameObserved(observedFromStat(fstatSync(file.fh.fd)), r.disk)
    } catch {
      return false
    }
  }
  private sweeper: NodeJS.Timeout | null = null

  private keepHandle (rel: string, fh: FileHandle): void {
    if (this.handles.has(rel)) { void fh.close().catch(() => {}); return }
    if (this.handles.size >= MAX_OPEN_FILES) {
      const oldest = [...this.handles.entries()].sort((a, b) => a[1].used - b[1].used)[0]
      this.dropHandle(oldest[0])
    }
    this.handles.set(rel, { fh, used: Date.now(), record: undefined })
    if (this.sweeper == null) {
      this.sweeper = setInterval(() => {
        const now = Date.now()
        for (const [p, h] of this.handles) if (now - h.used > IDLE_CLOSE_MS) this.dropHandle(p)
        if (this.handles.size === 0 && this.sweeper != null) { clearInterval(this.sweeper); this.sweeper = null }
      }, IDLE_CLOSE_MS)
      this.sweeper.unref()
    }
  }

  private dropHandle (rel: string): void {
    const h = this.handles.get(rel)
    if (h == null) return
    this.handles.delete(rel)
    void h.fh.close().catch(() => {})
  }
}

/** A file kept open for the next blocks, and (once looked up) its record if the disk holds its version. */
interface OpenFile { fh: FileHandle, used: number, record: StoredRecord | null | undefined }

const MAX_OPEN_FILES = 64
const IDLE_CLOSE_MS = 5_000

function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * The first `size` bytes of a (small) file if they hash to `hash`, with synchronous
 * calls: open, read and close of a small file cost less than three round trips through
 * the thread pool (a burst of small files is served block after block).
 */
function readSmallVerified (abs: string, size: number, hash: string): Buffer | null {
  let fd: number
  try {
    fd = openSync(abs, 'r')
  } catch {
    return null
  }
  try {
    const data = Buffer.allocUnsafe(size)
    let filled = 0
    while (filled < size) {
      const n = readSync(fd, data, filled, size - filled, filled)
      if (n === 0) return null
      filled += n
    }
    return sha256(data) === hash ? data : null
  } catch {
    return null
  } finally {
    closeSync(fd)
  }
}


function isReserved (rel: string): boolean {
  const first = rel.split('/', 1)[0].toLowerCase()
  return first === RESERVED
}

interface Pending {
  resolve: (res: BlockResponse) => void
  reject: (err: Error) => void
  size: number
}

/** The answer to one wanted block of a batch: its bytes (not verified yet), or why not. */
export type BlockResult = { data: Uint8ArrayList, error?: undefined } | { data?: undefined, error: Error }

interface PendingBatch {
  wants: Want[]
  answered: boolean[]
  remaining: number
  onBlock: (index: number, result: BlockResult) => void
  done: () => void
}

/**
 * One pipelined request stream to one peer, with a bound on the bytes requested but not
 * yet received (yamux grants window as data arrives, so the requester must bound it).
 * Speaks protocol 2 (batches) when the peer does, else 1.0.0 block by block.
 */
/** Where a client writes its requests. */
interface FrameWriter { write: (data: Uint8Array | Uint8ArrayList) => Promise<void> }

export class PeerBlockClient {
  readonly peer: PeerId
  private readonly host: BlockHost
  private readonly maxInFlight: number
  private lp: FrameWriter | null = null
  private raw: Stream | null = null
  private version: 1 | 2 = 2
  private opening: Promise<FrameWriter> | null = null
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly batches = new Map<number, PendingBatch>()
  private inFlight = 0
  private waiters: Array<() => void> = []
  private closed = false
  private readonly traffic: PeerTraffic | null
  bytesIn = 0

  constructor (host: BlockHost, peer: PeerId, maxInFlight: number, traffic?: PeerTraffic) {
    this.host = host
    this.peer = peer
    this.maxInFlight = maxInFlight
    this.traffic = traffic ?? null
  }

  /** Bytes requested from this peer and not yet received. */
  get load (): number {
    return this.inFlight
  }

  /** Most bytes one batch should ask for (a batch waits until that much is free). */
  get window (): number {
    return this.maxInFlight
  }

  private async reserve (size: number): Promise<void> {
    while (this.inFlight > 0 && this.inFlight + size > this.maxInFlight) {
      await new Promise<void>((resolve) => this.waiters.push(resolve))
      if (this.closed) throw new PeerGoneError('peer disconnected')
    }
    if (this.closed) throw new PeerGoneError('peer disconnected')
    this.inFlight += size
  }

  private unreserve (size: number): void {
    this.inFlight -= size
    // everyone waiting looks again (in the order they came)
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }

  private nextRequestId (): number {
    const id = this.nextId++
    if (this.nextId > 0x7fffffff) this.nextId = 1
    return id
  }

  /** One block (not verified: the caller checks it against its hash). */
  async request (hash: string, size: number, pathHint: string, offsetHint: number): Promise<Uint8Array> {
    await this.stream().catch(() => {})
    if (this.version === 2) {
      const got: { result: BlockResult } = { result: { error: new PeerGoneError('no answer') } }
      await this.batch([{ hash, size, pathHint, offsetHint }], (_i, r) => { got.result = r })
      if (got.result.error != null) throw got.result.error
      return got.result.data.subarray()
    }
    await this.reserve(size)
    try {
      const lp = await this.stream()
      const id = this.nextRequestId()
      const res = await new Promise<BlockResponse>((resolve, reject) => {
        this.pending.set(id, { resolve, reject, size })
        lp.write(encodeBlockRequest({ id, hash, size, pathHint, offsetHint })).catch((err: Error) => {
          this.pending.delete(id)
          reject(err)
        })
      })
      if (res.status !== 'ok') throw new BlockUnavailableError(`peer has no block ${hash.slice(0, 12)} (${res.status})`)
      this.bytesIn += res.data.byteLength
      this.traffic?.received(this.peer.toString(), res.data.byteLength)
      return res.data
    } finally {
      this.unreserve(size)
    }
  }

  /**
   * Several blocks in one request (protocol 2; a 1.0.0 peer is asked block by block).
   * `onBlock` is called exactly once per want, as its answer arrives, with the bytes (not
   * verified: the caller checks them against the hash) or the reason there are none
   * (BlockUnavailableError, PeerGoneError). Resolves once every want is answered. The
   * wants must fit TRANSFER_LIMITS (at most maxWants, maxBatchBytes together).
   */
  async requestMany (wants: Want[], onBlock: (index: number, result: BlockResult) => void): Promise<void> {
    await this.batch(wants, onBlock)
  }

  private async batch (wants: Want[], onBlock: (index: number, result: BlockResult) => void): Promise<void> {
    if (wants.length === 0) return
    try {
      await this.stream()
    } catch (err) {
      const e = new PeerGoneError(`cannot open a block stream: ${(err as Error).message}`)
      wants.forEach((_w, i) => { onBlock(i, { error: e }) })
      return
    }
    if (this.version === 1) {
      await Promise.all(wants.map(async (w, i) => {
        try {
          const data = await this.request(w.hash, w.size, w.pathHint, w.offsetHint)
          onBlock(i, { data: new Uint8ArrayList(data) })
        } catch (err) {
          onBlock(i, { error: err as Error })
        }
      }))
      return
    }
    const total = wants.reduce((n, w) => n + w.size, 0)
    try {
      await this.reserve(total)
    } catch (err) {
      wants.forEach((_w, i) => { onBlock(i, { error: err as Error }) })
      return
    }
    const id = this.nextRequestId()
    await new Promise<void>((resolve) => {
      const batch: PendingBatch = { wants, answered: wants.map(() => false), remaining: wants.length, onBlock, done: resolve }
      this.batches.set(id, batch)
      const failAll = (err: Error): void => {
        if (this.batches.get(id) !== batch) return
        this.batches.delete(id)
        this.abandon(batch, err)
      }
      let frame: Uint8Array
      try {
        frame = encodeBatchRequest({ id, wants })
      } catch (err) {
        failAll(err as Error)
        return
      }
      this.stream().then(async (lp) => { await lp.write(frame) }).catch((err: Error) => { failAll(new PeerGoneError(`block stream to peer closed: ${err.message}`)) })
    })
  }

  /** Every unanswered want of `batch` fails with `err`. */
  private abandon (batch: PendingBatch, err: Error): void {
    batch.wants.forEach((w, i) => {
      if (batch.answered[i]) return
      batch.answered[i] = true
      this.unreserve(w.size)
      try { batch.onBlock(i, { error: err }) } catch {}
    })
    batch.remaining = 0
    batch.done()
  }

  private async stream (): Promise<FrameWriter> {
    if (this.lp != null) return this.lp
    if (this.opening == null) {
      this.opening = (async () => {
        const stream = await this.host.dialProtocol(this.peer, [BLOCK_PROTOCOL_V2, BLOCK_PROTOCOL])
        this.raw = stream
        this.version = stream.protocol === BLOCK_PROTOCOL ? 1 : 2
        if (this.version === 2) {
          // one frame per block: taken as the data arrives (frames.ts)
          this.lp = { write: async (data) => { await writeFrame(stream, data) } }
          readFrames(stream, TRANSFER_LIMITS.maxFrameBytes, (frame) => { this.onFrame(frame) }).catch((err: Error) => { this.fail(err) })
        } else {
          const lp = lpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: MAX_BUFFER })
          this.lp = lp
          void this.readLoop(lp)
        }
        return this.lp
      })()
      this.opening.catch(() => { this.opening = null })
    }
    return await this.opening
  }

  private async readLoop (lp: LengthPrefixedStream<Stream>): Promise<void> {
    try {
      for (;;) {
        const frame = await lp.read()
        const res = decodeBlockResponse(frame)
        const p = this.pending.get(res.id)
        if (p == null) continue
        this.pending.delete(res.id)
        p.resolve(res)
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** One frame of protocol 2: a block (or why not) for a want of a batch; a bad frame ends the stream. */
  private onFrame (frame: Uint8ArrayList): void {
    const { header, data } = decodeBlockFrame(frame)
    const b = this.batches.get(header.id)
    // an answer to nothing asked (or asked and answered already) is ignored
    if (b == null || header.index >= b.wants.length || b.answered[header.index]) return
    b.answered[header.index] = true
    b.remaining--
    if (b.remaining === 0) this.batches.delete(header.id)
    this.unreserve(b.wants[header.index].size)
    if (header.status === 'ok') {
      this.bytesIn += data.byteLength
      this.traffic?.received(this.peer.toString(), data.byteLength)
    }
    const result: BlockResult = header.status === 'ok'
      ? { data }
      : { error: new BlockUnavailableError(`peer has no block ${b.wants[header.index].hash.slice(0, 12)} (${header.status})`) }
    // the caller's handler must not end the stream for everyone
    try { b.onBlock(header.index, result) } catch {}
    if (b.remaining === 0) b.done()
  }

  private fail (err: Error): void {
    this.lp = null
    this.opening = null
    for (const p of this.pending.values()) p.reject(new PeerGoneError(`block stream to peer closed: ${err.message}`))
    this.pending.clear()
    const batches = [...this.batches.values()]
    this.batches.clear()
    for (const b of batches) this.abandon(b, new PeerGoneError(`block stream to peer closed: ${err.message}`))
  }

  close (): void {
    this.closed = true
    this.fail(new Error('closed'))
    // abort the stream itself: unwrapping the length-prefixed reader of a stream that is
    // already closed throws (and this runs in a disconnect listener)
    try { this.raw?.abort(new Error('closed')) } catch {}
    this.raw = null
    for (const w of this.waiters.splice(0)) w()
  }
}
