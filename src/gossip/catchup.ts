import { lpStream } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { decodeIndexRequest, decodeIndexResponse, encodeIndexRequest, encodeIndexResponse, LIMITS } from './codec.js'
import { splitStored } from './outgoing.js'
import { deliveredKey, type Store } from '../store/store.js'
import type { BlockHost } from '../transfer/protocol.js'
import type { FileRecord, NodeId, StoredRecord } from '../store/types.js'
import { nodeIdOf } from '../node/nodeid.js'

export const INDEX_PROTOCOL = '/syncmesh/index/1.0.0'
/** Records left out of catch-up that are logged (once each), at most. */
const MAX_REPORTED = 1000
/** "I stored new records": the receiver runs catch-up with the sender (no payload). */
export const NUDGE_PROTOCOL = '/syncmesh/nudge/1.0.0'

export interface CatchUpInit {
  /**
   * Every connected peer is asked for what it stored since the last exchange this often.
   *
   * @default 10_000
   */
  intervalMs?: number
  /**
   * Records per response message.
   *
   * @default 2000
   */
  chunkRecords?: number
}

/**
 * Index catch-up: ask a peer for every record it stored after the last local sequence we
 * read from it. Gossip is the fast path; this is what makes delivery certain after
 * restarts, partitions and lost messages. A peer whose database was reset has a new
 * index id, which restarts the exchange from zero.
 */
export class CatchUp {
  private readonly store: Store
  private readonly host: BlockHost
  private readonly peers: () => PeerId[]
  private readonly log: (msg: string) => void
  private readonly onRecords: (records: FileRecord[], from: string) => void
  private readonly intervalMs: number
  private readonly chunkRecords: number
  private timer: NodeJS.Timeout | null = null
  private readonly running = new Map<string, Promise<number>>()
  readonly stats = { exchanges: 0, recordsReceived: 0, recordsApplied: 0, bytesReceived: 0, recordsSent: 0, recordsSkipped: 0, failures: 0 }

  constructor (components: { store: Store, host: BlockHost, peers: () => PeerId[], log?: (msg: string) => void, onRecords?: (records: FileRecord[], from: string) => void }, init: CatchUpInit = {}) {
    this.store = components.store
    this.host = components.host
    this.peers = components.peers
    this.log = components.log ?? (() => {})
    this.onRecords = components.onRecords ?? (() => {})
    this.intervalMs = init.intervalMs ?? 10_000
    this.chunkRecords = init.chunkRecords ?? 2000
  }

  async start (): Promise<void> {
    await this.host.handle(INDEX_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, { maxInboundStreams: 16 })
    await this.host.handle(NUDGE_PROTOCOL, (stream, connection) => {
      stream.abort(new Error('nudge received'))
      void this.sync(connection.remotePeer).catch(() => {})
    }, { maxInboundStreams: 4 })
    this.timer = setInterval(() => { this.syncAll() }, this.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    await this.host.unhandle(INDEX_PROTOCOL)
    await this.host.unhandle(NUDGE_PROTOCOL)
    await Promise.allSettled(this.running.values())
  }

  /**
   * Ask every connected peer to catch up with us now: used when an announcement reached
   * nobody (gossipsub meshes form a moment after a connection opens).
   */
  nudgeAll (): void {
    for (const p of this.peers()) {
      void this.host.dialProtocol(p, NUDGE_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
        .then((s) => { s.abort(new Error('nudge sent')) }, () => {})
    }
  }

  syncAll (): void {
    for (const p of this.peers()) void this.sync(p).catch(() => {})
  }

  /** Pull everything `peer` stored since last time; resolves with the record count. */
  async sync (peer: PeerId): Promise<number> {
    const id = peer.toString()
    const cur = this.running.get(id)
    if (cur != null) return await cur
    const run = this.exchange(peer).finally(() => this.running.delete(id))
    this.running.set(id, run)
    return await run
  }

  private async exchange (peer: PeerId): Promise<number> {
    const id = peer.toString()
    const from = nodeIdOf(peer)
    const cursor = await this.store.getCursor(id)
    let stream: Stream
    try {
      stream = await this.host.dialProtocol(peer, INDEX_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    } catch (err) {
      this.stats.failures++
      throw err
    }
    const lp = lpStream(stream, { maxDataLength: LIMITS.maxMessageBytes, maxBufferSize: 2 * LIMITS.maxMessageBytes })
    let received = 0
    try {
      await lp.write(encodeIndexRequest({ indexId: cursor?.indexId ?? '', after: cursor?.seq ?? 0 }))
      for (;;) {
        const frame = await lp.read({ signal: AbortSignal.timeout(30_000) })
        this.stats.bytesReceived += frame.byteLength
        const res = decodeIndexResponse(frame.subarray())
        if (res.records.length > 0) {
          this.stats.recordsApplied += (await this.store.applyRemote(res.records, from)).length
          this.onRecords(res.records, id)
          received += res.records.length
        }
        await this.store.setCursor(id, { indexId: res.indexId, seq: res.seq })
        if (res.done) break
      }
      await stream.close().catch(() => {})
      this.stats.exchanges++
      this.stats.recordsReceived += received
      return received
    } catch (err) {
      this.stats.failures++
      stream.abort(err as Error)
      throw err
    }
  }

  /**
   * Serve a peer what this node stored after its cursor, in sequence order. A peer that
   * continues an exchange (it names this index and a cursor in it) is not sent the
   * versions it sent this node itself (StoredRecord.deliveredBy): it has them, or later
   * versions of those paths. A node that comes back after a stop was otherwise sent back
   * everything it had announced while the other was away (10,000 records of a catch-up
   * encoded in the receiver's event loop while it pulled). A peer whose database was
   * reset or rebuilt has no cursor in this index (its request names none, or another
   * index) and gets everything. A cursor at zero in this index continues too: the peer
   * last asked while this node's store was empty (the benchmark's restarted receiver was
   * sending its sender back all 10,000 records it had been sent since).
   */
  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: LIMITS.maxMessageBytes, maxBufferSize: 2 * LIMITS.maxMessageBytes })
    try {
      const req = decodeIndexRequest((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
      const indexId = this.store.indexId
      // a cursor in this index continues, at zero too (the peer asked while it was empty)
      const continues = req.indexId === indexId
      let after = continues ? req.after : 0
      const own: NodeId | null = continues ? nodeIdOf(connection.remotePeer) : null
      // not store.seq: a commit being written has taken seqs it cannot be read under yet
      const upTo = this.store.committedSeq
      for (;;) {
        const page = after >= upTo ? { records: [], scanned: 0, last: after } : await this.store.afterPage(after, this.chunkRecords)
        const recs = page.records.filter((r) => r.seq <= upTo)
        // by the index entries read, not the records: a path stored again meanwhile (under
        // a seq past upTo, for the next exchange) leaves a page short of records that is
        // not the last (ending there skipped the rest up to upTo)
        const done = page.scanned < this.chunkRecords || page.last >= upTo
        // the seq a message reports: what the peer has seen once it has it (skipped too)
        const reached = done ? upTo : page.last
        const send = own == null ? recs : recs.filter((r) => r.deliveredBy == null || r.deliveredBy !== deliveredKey(own, r.version))
        this.stats.recordsSkipped += recs.length - send.length
        this.stats.recordsSent += await this.sendRecords(lp, indexId, send, reached, done)
        if (done) break
        after = page.last
      }
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /**
   * Records in sequence order, in messages well under the size limit: each message
   * reports the seq of its last record, the last one `reached` (and `done` if so).
   */
  private async sendRecords (lp: { write: (data: Uint8Array) => Promise<void> }, indexId: string, recs: StoredRecord[], reached: number, done: boolean): Promise<number> {
    const groups = splitStored(recs, 1024 * 1024, (line) => { this.unsendable(line) })
    if (groups.length === 0) groups.push({ records: { records: [], encoded: [] }, seqs: [] })
    let sent = 0
    for (const [g, group] of groups.entries()) {
      const last = g === groups.length - 1
      const seq = last ? reached : group.seqs[group.seqs.length - 1]
      await lp.write(encodeIndexResponse({ indexId, seq, records: group.records, done: done && last }))
      sent += group.seqs.length
    }
    return sent
  }

  /** Lines already logged about records left out (each exchange meets them again). */
  private readonly reported = new Set<string>()

  private unsendable (line: string): void {
    if (this.reported.has(line)) return
    if (this.reported.size === MAX_REPORTED) this.log('more records that will not replicate: not logged')
    if (this.reported.size >= MAX_REPORTED) return
    this.reported.add(line)
    this.log(line)
  }
}
