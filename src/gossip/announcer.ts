import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import { createHash } from 'node:crypto'
import { decodeAnnouncement, encodeAnnouncement, LIMITS, WireError, type Announcement } from './codec.js'
import { splitStored } from './outgoing.js'
import { Batcher, type BatchProfile, type ClosedBatch } from './batcher.js'
import type { Store } from '../store/store.js'
import type { FileRecord, StoredRecord } from '../store/types.js'
import { nodeIdOf } from '../node/nodeid.js'

/** Foreign seqs the announcement chain keeps track of, at most (see Announcer.chain). */
const MAX_FOREIGN = 100_000

/** The mesh topic: derived from the mesh key, so it names nothing outside the mesh. */
export function meshTopic (meshKey: Uint8Array): string {
  return `/syncmesh/1/${createHash('sha256').update('syncmesh topic').update(meshKey).digest('hex').slice(0, 32)}`
}

export interface AnnouncerComponents {
  store: Store
  pubsub: GossipSub
  log?: (msg: string) => void
  /** Called with the records of a valid announcement and the peer that relayed it. */
  onRecords?: (records: FileRecord[], from: string) => void
  /** Called when an announcement reached no peer at all. */
  onUnheard?: () => void
}

export interface AnnouncerInit {
  topic: string
  profile: BatchProfile
  /**
   * Announcements are split to stay under this many bytes (gossipsub drops messages
   * near 4 MiB).
   *
   * @default 1 MiB
   */
  maxMessageBytes?: number
  /** Fault injection (simulations): drop this fraction of incoming announcements. */
  dropRate?: number
  /** Fault injection (simulations): apply incoming announcements this much later. */
  delayMs?: number
  /** A peer that sent this many invalid announcements is disconnected. @default 5 */
  maxInvalid?: number
  disconnect?: (peer: string) => void
}

/**
 * Change batches on the mesh topic: this node's changes go out as announcements (metadata
 * only), announcements from others are validated (invalid ones are rejected through
 * gossipsub, which lowers the sender's score) and merged into the store.
 */
export class Announcer {
  private readonly store: Store
  private readonly pubsub: GossipSub
  private readonly log: (msg: string) => void
  private readonly onRecords: (records: FileRecord[], from: string) => void
  private readonly onUnheard: () => void
  private readonly topic: string
  private readonly maxMessageBytes: number
  private readonly maxInvalid: number
  private readonly disconnect: (peer: string) => void
  readonly batcher: Batcher
  private readonly invalid = new Map<string, number>()
  /**
   * Announcements the topic validator decoded, by message data, for the message event
   * that follows (gossipsub passes the same message to both): decoding twice was 4-5% of
   * a receiving node's event loop while 10,000 new small files came in.
   */
  private readonly validated = new WeakMap<Uint8Array, Announcement>()
  private applying: Promise<unknown> = Promise.resolve()
  /**
   * Announcement chain (see Announcement.completeAfter): the seq the last announced record
   * of this run was stored under (at start: the store's seq, as nothing is announced
   * below it from here on), the seqs stored since for records this node does not announce
   * (store 'foreign', ascending), and a bound below which that list may be incomplete
   * (it is dropped when it grows past MAX_FOREIGN).
   */
  private chainEnd = 0
  private foreign: number[] = []
  private foreignUnknownThrough = 0
  private readonly onForeign = (seqs: number[]): void => {
    for (const s of seqs) if (s > this.chainEnd) this.foreign.push(s)
    if (this.foreign.length > MAX_FOREIGN) {
      this.foreignUnknownThrough = this.foreign[this.foreign.length - 1]
      this.foreign = []
    }
  }
  dropRate: number
  delayMs: number
  readonly stats = { announced: 0, messagesSent: 0, received: 0, bytesReceived: 0, rejected: 0, recordsReceived: 0, recordsApplied: 0, noRecipients: 0, complete: 0, cursorMoves: 0, alreadyHeld: 0 }
  private readonly onLocal = (recs: StoredRecord[]): void => { this.batcher.add(recs) }
  private readonly onMessage = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic) return
    const from = msg.type === 'signed' ? msg.from.toString() : ''
    // the publisher announced records of its own store (signed: the mesh's default)
    const publisher = msg.type === 'signed' ? nodeIdOf(msg.from) : undefined
    let ann = this.validated.get(msg.data)
    if (ann == null) {
      try {
        ann = decodeAnnouncement(msg.data)
      } catch {
        return
      }
    }
    this.validated.delete(msg.data)
    this.stats.received++
    this.stats.bytesReceived += msg.data.byteLength
    this.stats.recordsReceived += ann.records.length
    const records = ann.records
    const delay = this.delayMs
    this.applying = this.applying.then(async () => {
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
      const own = publisher === ann.origin
      // only from a node that sends completeAfter: its catch-up reports committed seqs
      // only (an older node's could name a commit still being written, this one)
      if (own && ann.completeAfter !== undefined && await this.holds(from, ann)) { this.stats.alreadyHeld++; return }
      this.stats.recordsApplied += (await this.store.applyRemote(records, publisher)).length
      if (own && ann.completeAfter !== undefined) await this.moveCursor(from, ann, ann.completeAfter)
      this.onRecords(records, from)
    }).catch((err: Error) => {
      if (err.name !== 'StoreClosedError') this.log(`applying announcement failed: ${err.message}`)
    })
  }

  constructor (components: AnnouncerComponents, init: AnnouncerInit) {
    this.store = components.store
    this.pubsub = components.pubsub
    this.log = components.log ?? (() => {})
    this.onRecords = components.onRecords ?? (() => {})
    this.onUnheard = components.onUnheard ?? (() => {})
    this.topic = init.topic
    this.maxMessageBytes = init.maxMessageBytes ?? 1024 * 1024
    this.maxInvalid = init.maxInvalid ?? 5
    this.dropRate = init.dropRate ?? 0
    this.delayMs = init.delayMs ?? 0
    this.disconnect = init.disconnect ?? (() => {})
    this.batcher = new Batcher(init.profile, async (b) => { await this.publish(b) })
  }

  /**
   * This node's index cursor for the origin (`peer`, who signed `ann`) is at or past the
   * announcement's last seq: catch-up (or earlier complete announcements) brought every
   * record the origin held up to there, or a later record of the same path. Applying it
   * again would change nothing: gossipsub delivers such copies to a node that comes back
   * within its message cache's window (IHAVE/IWANT), after catch-up brought the records.
   */
  private async holds (peer: string, ann: Announcement): Promise<boolean> {
    const cursor = await this.store.getCursor(peer)
    return cursor != null && cursor.indexId === ann.indexId && cursor.seq >= ann.lastSeq
  }

  /**
   * `ann` (applied here) holds every record its origin stored under completeAfter+1..
   * lastSeq: an index cursor for the origin within that range moves to lastSeq, so the
   * next catch-up with it does not send those records again (gossip delivered them).
   * Any cursor outside it stays: a lost announcement before this one still comes by
   * catch-up.
   */
  private async moveCursor (peer: string, ann: Announcement, completeAfter: number): Promise<void> {
    const cursor = await this.store.getCursor(peer)
    if (cursor == null || cursor.indexId !== ann.indexId) return
    if (cursor.seq < completeAfter || cursor.seq >= ann.lastSeq) return
    await this.store.setCursor(peer, { indexId: ann.indexId, seq: ann.lastSeq })
    this.stats.cursorMoves++
  }

  async start (): Promise<void> {
    this.pubsub.topicValidators.set(this.topic, (peer, msg) => {
      if (this.dropRate > 0 && Math.random() < this.dropRate) return TopicValidatorResult.Ignore
      try {
        this.validated.set(msg.data, decodeAnnouncement(msg.data))
        return TopicValidatorResult.Accept
      } catch (err) {
        this.stats.rejected++
        const id = peer.toString()
        const n = (this.invalid.get(id) ?? 0) + 1
        this.invalid.set(id, n)
        this.log(`rejected announcement from ${id}: ${(err as WireError).message}`)
        if (n >= this.maxInvalid) {
          this.invalid.delete(id)
          this.log(`disconnecting ${id}: ${n} invalid announcements`)
          this.disconnect(id)
        }
        return TopicValidatorResult.Reject
      }
    })
    this.pubsub.addEventListener('message', this.onMessage)
    this.pubsub.subscribe(this.topic)
    this.chainEnd = this.store.seq
    this.foreignUnknownThrough = this.store.seq
    this.store.on('foreign', this.onForeign)
    this.store.on('local', this.onLocal)
  }

  /** Resolves once the announcements received so far are applied (tests). */
  async idle (): Promise<void> {
    await this.applying
  }

  async stop (): Promise<void> {
    this.store.off('local', this.onLocal)
    this.store.off('foreign', this.onForeign)
    await this.batcher.stop()
    this.pubsub.removeEventListener('message', this.onMessage)
    this.pubsub.topicValidators.delete(this.topic)
    try { this.pubsub.unsubscribe(this.topic) } catch {}
    await this.applying
  }

  /**
   * completeAfter for records stored under `seqs` (a message's, in order), announced right
   * after the chain's end: set when they follow that end in ascending order and no record
   * this node does not announce was stored between. Moves the chain's end past them.
   */
  private chain (seqs: number[]): number | undefined {
    const after = this.chainEnd
    const last = seqs[seqs.length - 1]
    let complete = after >= this.foreignUnknownThrough && seqs[0] > after
    for (let i = 1; complete && i < seqs.length; i++) complete = seqs[i] > seqs[i - 1]
    if (complete) complete = !this.foreign.some((s) => s > after && s <= last)
    this.chainPast(Math.max(...seqs))
    return complete ? after : undefined
  }

  /** The chain's end moves past `seq`: no later announcement claims anything up to it. */
  private chainPast (seq: number): void {
    if (seq <= this.chainEnd) return
    this.chainEnd = seq
    this.foreign = this.foreign.filter((s) => s > seq)
  }

  /** Not all of `batch` is sent: no later announcement claims anything up to it. */
  private chainPastBatch (batch: ClosedBatch): void {
    let top = 0
    for (const r of batch.records) if (r.seq > top) top = r.seq
    this.chainPast(top)
  }

  private async publish (batch: ClosedBatch): Promise<void> {
    try {
      await this.publishGroups(batch)
    } catch (err) {
      // a message that could not be built, and those after it, were not sent: the next
      // announcement must not claim their records (catch-up brings them)
      this.chainPastBatch(batch)
      this.log(`announcing a batch failed: ${(err as Error).message}`)
      throw err
    }
  }

  private async publishGroups (batch: ClosedBatch): Promise<void> {
    const max = Math.min(this.maxMessageBytes, LIMITS.maxMessageBytes)
    // a record no message can carry is left out (logged) and the rest announced; the
    // chain makes no claim over this batch
    let left = false
    const groups = splitStored(batch.records, max, (line) => { left = true; this.log(line) })
    if (left) this.chainPastBatch(batch)
    for (const { records: group, seqs } of groups) {
      const completeAfter = left ? undefined : this.chain(seqs)
      if (completeAfter !== undefined) this.stats.complete++
      const data = encodeAnnouncement({
        origin: this.store.nodeId,
        indexId: this.store.indexId,
        firstSeq: Math.min(...seqs),
        lastSeq: Math.max(...seqs),
        ...(completeAfter !== undefined ? { completeAfter } : {}),
        records: group
      })
      try {
        const res = await this.pubsub.publish(this.topic, data)
        // nobody heard it (no peer yet, or just subscribed): index catch-up delivers it
        if (res.recipients.length === 0) { this.stats.noRecipients++; this.onUnheard() }
        this.stats.messagesSent++
      } catch (err) {
        // NoPeersSubscribedToTopic and friends: catch-up covers it
        this.stats.noRecipients++
        this.onUnheard()
        this.log(`publish: ${(err as Error).message}`)
      }
    }
    this.stats.announced++
  }
}
