import type { StoredRecord } from './types.js'

/**
 * The records the store wrote or read last, in memory, so that the reads that follow a
 * write (a pulled file's record is read by the puller, by the install batch and by the
 * scanner's look at the rename it sees) cost a map lookup instead of a LevelDB read and
 * a JSON parse each.
 *
 * Rules that keep it true to the database:
 * - Only the store's transaction writes records; it puts each record it wrote here after
 *   its batch is written (`wrote`), and a failed batch puts nothing.
 * - A read from the database that began before a write ended may hold what the write
 *   replaced: `fill` keeps what it read only if no write ended since it began (`writes`).
 * - Cached records are frozen: a caller that changed one would change what every later
 *   read sees; it gets a TypeError instead (the store copies a frozen record it stages).
 * - Bounded by weight, in units of about 100 bytes of heap (measured: a small file's record
 *   takes about 1 KB, each block hash about 100 bytes): a record counts 10 plus its block
 *   hashes, 320,000 in all (about 32 MB: some 30,000 small files' records, or 300 of 1 GiB
 *   files). A mesh of large files holds fewer records, not more memory. The oldest written
 *   or read go first.
 */
export class RecordCache {
  private readonly entries = new Map<string, StoredRecord>()
  private weight = 0
  private readonly maxWeight: number
  /** Batches written so far (a read notes it when it begins). */
  writes = 0

  constructor (maxWeight = 320_000) {
    this.maxWeight = maxWeight
  }

  get size (): number {
    return this.entries.size
  }

  get (path: string): StoredRecord | undefined {
    return this.entries.get(path)
  }

  /** Records a batch just wrote (it is on disk). */
  wrote (recs: Iterable<StoredRecord>): void {
    this.writes++
    for (const r of recs) this.put(r)
  }

  /** Records read from the database by a read that began when `writes` was `since`. */
  fill (recs: Array<StoredRecord | undefined>, since: number): void {
    if (since !== this.writes) return
    for (const r of recs) if (r != null && !this.entries.has(r.path)) this.put(r)
  }

  clear (): void {
    this.entries.clear()
    this.weight = 0
  }

  private put (rec: StoredRecord): void {
    const old = this.entries.get(rec.path)
    if (old != null) {
      this.entries.delete(rec.path)
      this.weight -= weightOf(old)
    }
    this.entries.set(rec.path, Object.freeze(rec))
    this.weight += weightOf(rec)
    while (this.weight > this.maxWeight) {
      const first = this.entries.entries().next()
      if (first.done === true) break
      this.entries.delete(first.value[0])
      this.weight -= weightOf(first.value[1])
    }
  }
}

function weightOf (r: StoredRecord): number {
  return 10 + r.blocks.length
}
