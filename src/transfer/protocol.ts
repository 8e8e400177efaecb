import { createHash } from 'node:crypto'
import { open, type FileHandle } from 'node:fs/promises'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { decodeBlockRequest, decodeBlockResponse, encodeBlockRequest, encodeBlockResponse, type BlockRequest, type BlockResponse } from './codec.js'
import type { Store } from '../store/store.js'
import { RESERVED, type DataFolder } from '../store/datafolder.js'
import { readAt } from '../store/blocks.js'

export const BLOCK_PROTOCOL = '/syncmesh/blocks/1.0.0'
const MAX_FRAME = 17 * 1024 * 1024
const MAX_BUFFER = 64 * 1024 * 1024

/** What the block protocol needs from the libp2p host (so tests can use any host). */
export interface BlockHost {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocol: string, opts?: { signal?: AbortSignal }) => Promise<Stream>
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
 * served as the old block (the scanner is told instead).
 */
export class BlockServer {
  private readonly store: Store
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
  readonly stats = { blocksServed: 0, bytesServed: 0, notFound: 0 }
  /** Fault injection (simulations): alter every block before it is sent (a lying peer). */
  corrupt: ((data: Uint8Array) => Uint8Array) | null = null
  /** Fault injection (simulations): wait this long before answering each block (a slow peer). */
  delayMs = 0

  constructor (components: { store: Store, data: DataFolder, host: BlockHost, onStale?: (path: string) => void, traffic?: PeerTraffic }, init: { concurrency?: number, requestsPerSecond?: number } = {}) {
    this.store = components.store
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
  }

  async stop (): Promise<void> {
    for (const rel of [...this.handles.keys()]) this.dropHandle(rel)
    if (this.sweeper != null) { clearInterval(this.sweeper); this.sweeper = null }
    await this.host.unhandle(BLOCK_PROTOCOL)
    for (const s of this.streams) s.abort(new Error('node stopping'))
    this.streams.clear()
  }

  /**
   * Per-peer request budget (token bucket): `requestsPerSecond`, bursts up to twice that.
   * Past it a request is answered 'busy' without touching the disk.
   */
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  private admit (peer: string): boolean {
    const now = Date.now()
    const b = this.buckets.get(peer) ?? { tokens: 2 * this.requestsPerSecond, at: now }
    b.tokens = Math.min(2 * this.requestsPerSecond, b.tokens + (now - b.at) * this.requestsPerSecond / 1000)
    b.at = now
    this.buckets.set(peer, b)
    if (b.tokens < 1) return false
    b.tokens--
    return true
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    this.streams.add(stream)
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: MAX_BUFFER })
    let active = 0
    let wake: (() => void) | null = null
    let writing: Promise<unknown> = Promise.resolve()
    try {
      for (;;) {
        let frame
        try {
          frame = await lp.read()
        } catch {
          break
        }
        const req = decodeBlockRequest(frame)
        while (active >= this.concurrency) await new Promise<void>((resolve) => { wake = resolve })
        active++
        const answer = this.admit(peer)
          ? this.answer(req)
          : Promise.resolve<BlockResponse>({ id: req.id, status: 'busy', data: new Uint8Array(0), message: 'request rate limit' })
        // an answer that fails (the store closing under a stop, a read error) is a miss,
        // never an unhandled rejection
        void answer.catch((): BlockResponse => ({ id: req.id, status: 'error', data: new Uint8Array(0), message: 'unavailable' })).then((res) => {
          writing = writing.then(async () => {
            await lp.write(encodeBlockResponse(res))
            if (res.status === 'ok') this.traffic?.sent(peer, res.data.byteLength)
          }).catch(() => {})
        }).finally(() => {
          active--
          const w = wake
          wake = null
          w?.()
        })
      }
      while (active > 0) await new Promise<void>((resolve) => { wake = resolve })
      await writing
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
    } finally {
      this.streams.delete(stream)
    }
  }

  private async answer (req: BlockRequest): Promise<BlockResponse> {
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs))
    // the requester's path and offset usually hold the block here too: try them before
    // the block index (every block is hashed before it is sent, so a wrong guess is safe)
    if (req.pathHint !== '' && !isReserved(req.pathHint)) {
      const data = await this.readVerified(req.pathHint, req.offsetHint, req.size, req.hash).catch(() => null)
      if (data != null) return this.ok(req, data)
    }
    for (const src of await this.store.blockSources(req.hash, 8)) {
      if (src.path === req.pathHint && src.offset === req.offsetHint) continue
      const data = await this.readVerified(src.path, src.offset, req.size, req.hash).catch(() => null)
      if (data != null) return this.ok(req, data)
      // the index names a file that no longer holds this block: let the scanner look
      this.onStale(src.path)
    }
    const pinned = this.pinSource?.(req.hash)
    if (pinned != null) {
      const data = await this.readVerified(pinned.rel, pinned.offset, req.size, req.hash).catch(() => null)
      if (data != null) return this.ok(req, data)
    }
    this.stats.notFound++
    return { id: req.id, status: 'not-found', data: new Uint8Array(0), message: '' }
  }

  private ok (req: BlockRequest, data: Buffer): BlockResponse {
    this.stats.blocksServed++
    this.stats.bytesServed += data.byteLength
    return { id: req.id, status: 'ok', data: this.corrupt != null ? this.corrupt(data) : data, message: '' }
  }

  /** `size` bytes of `rel` at `offset`, if they hash to `hash`; else null. */
  private async readVerified (rel: string, offset: number, size: number, hash: string): Promise<Buffer | null> {
    const cached = this.handles.get(rel)
    if (cached != null) {
      const data = await readAt(cached.fh, offset, size).catch(() => null)
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
  private readonly handles = new Map<string, { fh: FileHandle, used: number }>()
  private sweeper: NodeJS.Timeout | null = null

  private keepHandle (rel: string, fh: FileHandle): void {
    if (this.handles.has(rel)) { void fh.close().catch(() => {}); return }
    if (this.handles.size >= MAX_OPEN_FILES) {
      const oldest = [...this.handles.entries()].sort((a, b) => a[1].used - b[1].used)[0]
      this.dropHandle(oldest[0])
    }
    this.handles.set(rel, { fh, used: Date.now() })
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

const MAX_OPEN_FILES = 64
const IDLE_CLOSE_MS = 5_000

function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
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

/**
 * One pipelined request stream to one peer, with a bound on the bytes requested but not
 * yet received (yamux grants window as data arrives, so the requester must bound it).
 */
export class PeerBlockClient {
  readonly peer: PeerId
  private readonly host: BlockHost
  private readonly maxInFlight: number
  private lp: LengthPrefixedStream<Stream> | null = null
  private raw: Stream | null = null
  private opening: Promise<LengthPrefixedStream<Stream>> | null = null
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private inFlight = 0
  private readonly waiters: Array<() => void> = []
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

  async request (hash: string, size: number, pathHint: string, offsetHint: number): Promise<Uint8Array> {
    while (this.inFlight > 0 && this.inFlight + size > this.maxInFlight) {
      await new Promise<void>((resolve) => this.waiters.push(resolve))
      if (this.closed) throw new PeerGoneError('peer disconnected')
    }
    if (this.closed) throw new PeerGoneError('peer disconnected')
    this.inFlight += size
    try {
      const lp = await this.stream()
      const id = this.nextId++
      if (this.nextId > 0x7fffffff) this.nextId = 1
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
      this.inFlight -= size
      this.waiters.shift()?.()
    }
  }

  private async stream (): Promise<LengthPrefixedStream<Stream>> {
    if (this.lp != null) return this.lp
    if (this.opening == null) {
      this.opening = (async () => {
        const stream = await this.host.dialProtocol(this.peer, BLOCK_PROTOCOL)
        this.raw = stream
        const lp = lpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: MAX_BUFFER })
        this.lp = lp
        void this.readLoop(lp)
        return lp
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

  private fail (err: Error): void {
    this.lp = null
    this.opening = null
    for (const p of this.pending.values()) p.reject(new PeerGoneError(`block stream to peer closed: ${err.message}`))
    this.pending.clear()
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
