import type { FileRecord } from '../store/types.js'

/** When an open change batch closes. */
export interface BatchProfile {
  /** Close after this many entries. */
  maxEntries: number
  /** Close after this many changed bytes (sum of the sizes of changed files). */
  maxBytes: number
  /** Close this long after the batch's first entry. */
  maxAgeMs: number
}

/**
 * Defaults per network. LAN: batches close fast (latency matters, bandwidth is cheap).
 * WAN: fewer, larger announcements (SFS kept separate timers per network for the same reason).
 */
export const PROFILES: Record<'lan' | 'wan', BatchProfile> = {
  lan: { maxEntries: 1000, maxBytes: 32 * 1024 * 1024, maxAgeMs: 100 },
  wan: { maxEntries: 5000, maxBytes: 256 * 1024 * 1024, maxAgeMs: 1000 }
}

export interface ClosedBatch {
  firstSeq: number
  lastSeq: number
  /** In the order they were stored (a bulk batch has a path stored twice once, at its newest). */
  records: Array<FileRecord & { seq: number }>
}

/**
 * Groups this node's own changes into batches. A batch closes on entry count, changed
 * bytes or age, whichever comes first; `send` is called with closed batches, one at a
 * time. A node that falls behind (batches closing while `send` still runs) hands all the
 * waiting batches to the next `send` as one bulk batch.
 */
export class Batcher {
  private readonly profile: BatchProfile
  private readonly send: (batch: ClosedBatch) => Promise<void>
  private open: Array<FileRecord & { seq: number }> = []
  private openBytes = 0
  private timer: NodeJS.Timeout | null = null
  private closed: ClosedBatch[] = []
  private sending: Promise<void> | null = null
  private stopped = false
  readonly stats = { batchesClosed: 0, batchesSent: 0, bulked: 0 }

  constructor (profile: BatchProfile, send: (batch: ClosedBatch) => Promise<void>) {
    this.profile = profile
    this.send = send
  }

  /**
   * Add the records of one store transaction. They are never split over two batches (a
   * directory rename reaches peers as one batch, with every new path and every tombstone):
   * a group that does not fit closes the open batch first and then goes out whole.
   */
  add (records: Array<FileRecord & { seq: number }>): void {
    if (this.stopped || records.length === 0) return
    const bytes = records.reduce((n, r) => n + (r.deleted ? 0 : r.size), 0)
    if (this.open.length > 0 && (this.open.length + records.length > this.profile.maxEntries || this.openBytes + bytes > this.profile.maxBytes)) {
      this.close()
    }
    for (const r of records) this.open.push(r)
    this.openBytes += bytes
    if (this.open.length >= this.profile.maxEntries || this.openBytes >= this.profile.maxBytes) this.close()
    if (this.open.length > 0 && this.timer == null) {
      this.timer = setTimeout(() => { this.timer = null; this.close() }, this.profile.maxAgeMs)
    }
  }

  /** Close the open batch now (if any) and wait until everything closed is sent. */
  async flush (): Promise<void> {
    this.close()
    while (this.sending != null) await this.sending
  }

  async stop (): Promise<void> {
    await this.flush().catch(() => {})
    this.stopped = true
    if (this.timer != null) clearTimeout(this.timer)
  }

  /** Drop everything not yet sent (a crash): index catch-up delivers it later. */
  discard (): void {
    this.stopped = true
    if (this.timer != null) clearTimeout(this.timer)
    this.open = []
    this.closed = []
  }

  private close (): void {
    if (this.timer != null) { clearTimeout(this.timer); this.timer = null }
    if (this.open.length === 0) return
    const recs = this.open
    this.open = []
    this.openBytes = 0
    this.closed.push({ firstSeq: recs[0].seq, lastSeq: recs[recs.length - 1].seq, records: recs })
    this.stats.batchesClosed++
    this.drain()
  }

  private drain (): void {
    if (this.sending != null || this.closed.length === 0) return
    const waiting = this.closed
    this.closed = []
    if (waiting.length > 1) this.stats.bulked += waiting.length
    // one bulk batch; a path changed twice is sent once, at its newest version
    const byPath = new Map<string, FileRecord & { seq: number }>()
    for (const b of waiting) for (const r of b.records) { byPath.delete(r.path); byPath.set(r.path, r) }
    const batch: ClosedBatch = { firstSeq: waiting[0].firstSeq, lastSeq: waiting[waiting.length - 1].lastSeq, records: [...byPath.values()] }
    this.sending = this.send(batch).catch(() => {}).finally(() => {
      this.stats.batchesSent++
      this.sending = null
      this.drain()
    })
  }
}
