/**
 * The content of small blocks this node read or received a moment ago, by hash, for
 * serving them to peers without reading and hashing the file again.
 *
 * A small file written locally is read and hashed by the scanner, and within a second
 * or so every peer asks for it: the block server opened, read, closed and hashed it a
 * second time (measured: 375 ms of a sender's event loop in open/read/close per 10,000
 * files of 4 KiB, the hashing besides). A file a node pulled is likewise asked for by the
 * peers that learn of it from that node.
 *
 * Entries are content-addressed: the bytes were hashed to their key when added (by the
 * scanner, or verified by the puller), so serving them is right whatever the file holds
 * now, as any block with that hash would be.
 *
 * The bytes are copied into slabs of 1 MiB, and the oldest slab goes first when the cache
 * is full (its entries with it): first in, first out, which is the order in which peers
 * ask for what was just written. A copy of its own per entry (one ArrayBuffer each) cost
 * more than the copying, and keeping the caller's buffer could pin a network read many
 * times the block's size.
 */
import type { Uint8ArrayList } from 'uint8arraylist'

const SLAB = 1024 * 1024

interface Slab { bytes: Uint8Array, used: number, hashes: string[] }

export class BlockCache {
  private readonly entries = new Map<string, { slab: Slab, data: Uint8Array }>()
  private readonly slabs: Slab[] = []
  readonly stats = { hits: 0, added: 0 }
  readonly maxBlock: number

  /**
   * @param maxBytes memory the slabs may take together (at least one slab)
   * @param maxBlock the largest block kept (at most a slab)
   */
  constructor (readonly maxBytes = 32 * SLAB, maxBlock = 128 * 1024) {
    this.maxBlock = Math.min(maxBlock, SLAB)
  }

  /** Keep `data`, whose SHA-256 is `hash` (the caller computed or verified it). */
  add (hash: string, data: Uint8Array | Uint8ArrayList): void {
    const n = data.byteLength
    if (n === 0 || n > this.maxBlock || this.entries.has(hash)) return
    let slab = this.slabs[this.slabs.length - 1]
    if (slab == null || slab.used + n > slab.bytes.byteLength) {
      // not zeroed: only what add() wrote is ever read
      slab = { bytes: Buffer.allocUnsafeSlow(SLAB), used: 0, hashes: [] }
      this.slabs.push(slab)
      while (this.slabs.length > 1 && this.slabs.length * SLAB > this.maxBytes) this.drop(this.slabs.shift()!)
    }
    const at = slab.used
    if (data instanceof Uint8Array) {
      slab.bytes.set(data, at)
    } else {
      let off = at
      for (const chunk of data) { slab.bytes.set(chunk, off); off += chunk.byteLength }
    }
    slab.used += n
    slab.hashes.push(hash)
    this.entries.set(hash, { slab, data: slab.bytes.subarray(at, at + n) })
    this.stats.added++
  }

  /** The block with this hash and length, if kept. */
  get (hash: string, byteLength: number): Uint8Array | null {
    const hit = this.entries.get(hash)
    if (hit == null || hit.data.byteLength !== byteLength) return null
    this.stats.hits++
    return hit.data
  }

  /** Bytes the slabs hold now (what they take is a slab per MiB of it, rounded up). */
  get bytes (): number {
    let n = 0
    for (const s of this.slabs) n += s.used
    return n
  }

  get count (): number {
    return this.entries.size
  }

  private drop (slab: Slab): void {
    for (const h of slab.hashes) {
      if (this.entries.get(h)?.slab === slab) this.entries.delete(h)
    }
  }
}
