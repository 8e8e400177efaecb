/**
 * The content of small blocks this node hashed a moment ago, by hash, for serving them to
 * peers without reading and hashing the file again.
 *
 * A small file written locally is read and hashed by the scanner, and within a second
 * or so every peer asks for it: the block server opened, read, closed and hashed it a
 * second time (measured: 375 ms of a sender's event loop in open/read/close per 10,000
 * files of 4 KiB, the hashing besides).
 *
 * Entries are content-addressed: the bytes were hashed to their key when added, so
 * serving them is right whatever the file holds now, as any block with that hash would
 * be. (The puller could add what it verified, for the peers that ask the node next; the
 * copies cost the receiver more than they saved in the benchmark, where nobody asks.)
 *
 * The bytes are copied into a ring of slabs of 1 MiB, allocated once: when the ring is
 * full, the oldest slab is taken again (its entries dropped with it), first in, first
 * out, the order in which peers ask for what was just written. `get` hands out a copy, so
 * a slab can be taken again while a block read from it is still being sent. Memory
 * allocated afresh is dear on virtual machines (the host backs each new page on first
 * touch: about 10 µs per 4 KiB page here), and a slab per MiB added, or a buffer per
 * entry, cost more than the copies (0.1 s of a node's event loop per 10,000 files).
 */
import type { Uint8ArrayList } from 'uint8arraylist'

const SLAB = 1024 * 1024

interface Slab { bytes: Uint8Array, used: number, hashes: string[] }

export class BlockCache {
  private readonly entries = new Map<string, { slab: Slab, at: number, length: number }>()
  private readonly slabs: Slab[] = []
  /** The slab being filled (an index into slabs). */
  private current = -1
  readonly stats = { hits: 0, added: 0 }
  readonly maxBlock: number
  private readonly maxSlabs: number

  /**
   * @param maxBytes memory the slabs take together (at least one slab)
   * @param maxBlock the largest block kept (at most a slab)
   */
  constructor (readonly maxBytes = 32 * SLAB, maxBlock = 128 * 1024) {
    this.maxBlock = Math.min(maxBlock, SLAB)
    this.maxSlabs = Math.max(1, Math.floor(maxBytes / SLAB))
  }

  /** Keep `data`, whose SHA-256 is `hash` (the caller computed it). */
  add (hash: string, data: Uint8Array | Uint8ArrayList): void {
    const n = data.byteLength
    if (n === 0 || n > this.maxBlock || this.entries.has(hash)) return
    let slab = this.slabs[this.current]
    if (slab == null || slab.used + n > slab.bytes.byteLength) slab = this.next()
    const at = slab.used
    if (data instanceof Uint8Array) {
      slab.bytes.set(data, at)
    } else {
      let off = at
      for (const chunk of data) { slab.bytes.set(chunk, off); off += chunk.byteLength }
    }
    slab.used += n
    slab.hashes.push(hash)
    this.entries.set(hash, { slab, at, length: n })
    this.stats.added++
  }

  /**
   * A copy of the block with this hash and length, if kept: made by `copy` when given
   * (a server answering many small blocks copies them into shared buffers: a buffer per
   * 4 KiB block cost more than the copy itself, about 8 µs each in a sending node during a
   * burst), else in a buffer of its own.
   */
  get (hash: string, byteLength: number, copy?: (src: Uint8Array) => Uint8Array): Uint8Array | null {
    const hit = this.entries.get(hash)
    if (hit == null || hit.length !== byteLength) return null
    this.stats.hits++
    const src = hit.slab.bytes.subarray(hit.at, hit.at + hit.length)
    return copy != null ? copy(src) : Buffer.from(src)
  }

  /** The next slab of the ring, emptied: a new one until there are maxSlabs, then the oldest. */
  private next (): Slab {
    this.current = (this.current + 1) % this.maxSlabs
    let slab = this.slabs[this.current]
    if (slab == null) {
      // not zeroed: only what add() wrote is ever read
      slab = { bytes: Buffer.allocUnsafeSlow(SLAB), used: 0, hashes: [] }
      this.slabs[this.current] = slab
      return slab
    }
    for (const h of slab.hashes) {
      if (this.entries.get(h)?.slab === slab) this.entries.delete(h)
    }
    slab.hashes = []
    slab.used = 0
    return slab
  }

  /** Bytes the entries hold now (the slabs take a MiB each, at most maxBytes in all). */
  get bytes (): number {
    let n = 0
    for (const s of this.slabs) n += s.used
    return n
  }

  get count (): number {
    return this.entries.size
  }
}
