import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'

export const MIN_BLOCK_SIZE = 128 * 1024
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024
/** A file is cut into at most about this many blocks (larger files get larger blocks). */
export const TARGET_MAX_BLOCKS = 2000

/** The block size for a file of `size` bytes: a power of two from 128 KiB to 16 MiB. */
export function chooseBlockSize (size: number): number {
  let bs = MIN_BLOCK_SIZE
  while (bs < MAX_BLOCK_SIZE && Math.ceil(size / bs) > TARGET_MAX_BLOCKS) bs *= 2
  return bs
}

export function blockCount (size: number, blockSize: number): number {
  return size === 0 ? 0 : Math.ceil(size / blockSize)
}

/** Length of block `i` of a file of `size` bytes. */
export function blockLength (size: number, blockSize: number, i: number): number {
  return Math.min(blockSize, size - i * blockSize)
}

export function sha256Hex (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Content id of a file: SHA-256 over its raw block hashes in order. */
export function contentId (blocks: readonly string[]): string {
  const h = createHash('sha256')
  for (const b of blocks) h.update(Buffer.from(b, 'hex'))
  return h.digest('hex')
}

export interface HashedContent {
  size: number
  blockSize: number
  blocks: string[]
  hash: string
}

/** Files from this size up are hashed by several threads at once (hashLargeFile). */
export const PARALLEL_HASH_MIN = 64 * 1024 * 1024

/**
 * The code of a hashing thread: blocks [first, first + count) of a file, each read whole
 * with synchronous calls and hashed; posts their hashes and the bytes read (fewer than
 * asked when the file shrank), or an error's code and message. Inline, so that it runs
 * from the compiled code and from the sources (tests) alike.
 */
const HASH_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { openSync, readSync, closeSync } = require('node:fs')
const { createHash } = require('node:crypto')
const { path, blockSize, first, count } = workerData
let fd = -1
try {
  fd = openSync(path, 'r')
  const buf = Buffer.allocUnsafe(blockSize)
  const blocks = []
  let bytes = 0
  for (let i = first; i < first + count; i++) {
    let filled = 0
    while (filled < blockSize) {
      const n = readSync(fd, buf, filled, blockSize - filled, i * blockSize + filled)
      if (n === 0) break
      filled += n
    }
    if (filled === 0) break
    blocks.push(createHash('sha256').update(buf.subarray(0, filled)).digest('hex'))
    bytes += filled
    if (filled < blockSize) break
  }
  parentPort.postMessage({ blocks, bytes })
} catch (err) {
  parentPort.postMessage({ error: { code: err.code, message: err.message } })
} finally {
  if (fd >= 0) closeSync(fd)
}
`

function hashRange (path: string, blockSize: number, first: number, count: number): Promise<{ blocks: string[], bytes: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(HASH_WORKER, { eval: true, workerData: { path, blockSize, first, count } })
    w.once('message', (m: { blocks: string[], bytes: number } | { error: { code?: string, message: string } }) => {
      if ('error' in m) reject(Object.assign(new Error(m.error.message), { code: m.error.code }))
      else resolve(m)
    })
    w.once('error', reject)
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`hashing thread exited with ${code}`)) })
  })
}

/**
 * Hash a large file (at least `minBytes`, PARALLEL_HASH_MIN) with `threads` threads, each
 * reading and hashing its own run of blocks, so that a new large file is announced sooner
 * (1 GiB in about half the time on two cores) and the event loop stays free meanwhile.
 * Gives what hashFile gives: when the file's size is no longer `size` (it changed while it
 * was read), hashFile reads it again.
 */
export async function hashLargeFile (path: string, size: number, opts: { threads?: number, minBytes?: number } = {}): Promise<HashedContent> {
  const threads = opts.threads ?? Math.min(4, Math.max(2, availableParallelism()))
  if (size < (opts.minBytes ?? PARALLEL_HASH_MIN) || threads < 2) return await hashFile(path, size)
  const blockSize = chooseBlockSize(size)
  const n = blockCount(size, blockSize)
  const per = Math.ceil(n / threads)
  const runs: Array<[number, number]> = []
  for (let first = 0; first < n; first += per) runs.push([first, Math.min(per, n - first)])
  const parts = await Promise.all(runs.map(async ([first, count]) => await hashRange(path, blockSize, first, count)))
  const blocks = parts.flatMap((p) => p.blocks)
  const bytes = parts.reduce((a, p) => a + p.bytes, 0)
  // a run cut short (the file shrank), or a size that no longer fits these blocks
  if (bytes !== size || blocks.length !== n) return await hashFile(path)
  return { size, blockSize, blocks, hash: contentId(blocks) }
}

/**
 * Hash a file block by block. The size is the number of bytes actually read, so a file
 * that grows or shrinks while it is read gives a consistent (if momentary) answer; the
 * scanner will see its new mtime and hash it again.
 */
export async function hashFile (path: string, expectedSize?: number, buffer?: Buffer): Promise<HashedContent> {
  const fh = await open(path, 'r')
  try {
    const size0 = expectedSize ?? (await fh.stat()).size
    const blockSize = chooseBlockSize(size0)
    const buf = buffer != null && buffer.byteLength >= blockSize ? buffer : Buffer.allocUnsafe(Math.min(blockSize, size0 + 1))
    if (buf.byteLength >= blockSize) {
      // whole blocks: the next block is read while this one is hashed
      const bufs = [buf.subarray(0, blockSize), Buffer.allocUnsafe(blockSize)]
      const blocks: string[] = []
      let size = 0
      let cur = 0
      let reading = readFull(fh, bufs[0], 0)
      for (;;) {
        const filled = await reading
        if (filled === 0) break
        const b = bufs[cur]
        if (filled === blockSize) {
          cur ^= 1
          reading = readFull(fh, bufs[cur], size + filled)
        }
        blocks.push(sha256Hex(b.subarray(0, filled)))
        size += filled
        if (filled < blockSize) break
      }
      if (chooseBlockSize(size) !== blockSize) return await hashFile(path, size)
      return { size, blockSize, blocks, hash: contentId(blocks) }
    }
    const blocks: string[] = []
    let size = 0
    for (;;) {
      // read one block (a short read is retried until the block is full or EOF)
      let filled = 0
      const want = Math.min(blockSize, buf.byteLength)
      while (filled < want) {
        const { bytesRead } = await fh.read(buf, filled, want - filled, size + filled)
        if (bytesRead === 0) break
        filled += bytesRead
      }
      if (filled === 0) break
      blocks.push(sha256Hex(buf.subarray(0, filled)))
      size += filled
      if (filled < want) break
      if (buf.byteLength < blockSize) {
        // the file grew past the size we sized the buffer for: finish with a full buffer
        return await hashFile(path, undefined, Buffer.allocUnsafe(blockSize))
      }
    }
    if (chooseBlockSize(size) !== blockSize) return await hashFile(path, size)
    return { size, blockSize, blocks, hash: contentId(blocks) }
  } finally {
    await fh.close()
  }
}

/** Fill `buf` from `position` (short reads continued); the bytes read (fewer at the end of the file). */
async function readFull (fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let filled = 0
  while (filled < buf.byteLength) {
    const { bytesRead } = await fh.read(buf, filled, buf.byteLength - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

/** Files up to this size are hashed with synchronous calls (one block, read in one go). */
export const SMALL_HASH = MIN_BLOCK_SIZE

let scratch: Buffer | null = null

/**
 * hashFile for a small file, with synchronous calls: open, read, close cost less than
 * three round trips through the thread pool, and a burst of new small files is bound by
 * those. Null when the file is (now) larger than SMALL_HASH: hash it with hashFile.
 * `read` gets the content, valid only until it returns (copy what you keep).
 */
export function hashSmallFileSync (path: string, expectedSize: number, read?: (hash: string, data: Buffer) => void): HashedContent | null {
  if (expectedSize > SMALL_HASH) return null
  const fd = openSync(path, 'r')
  try {
    // one byte more than expected: a file that grew is noticed. Read into one buffer for
    // every call (synchronous: no two calls overlap), so `read` sees bytes that are only
    // valid during its call: a buffer per file was a fresh allocation per file (4 KiB and
    // one byte is just over Node's pooled size)
    scratch ??= Buffer.allocUnsafeSlow(SMALL_HASH + 1)
    const buf = scratch.subarray(0, expectedSize + 1)
    let size = 0
    for (;;) {
      const n = readSync(fd, buf, size, buf.byteLength - size, size)
      if (n === 0) break
      size += n
      if (size === buf.byteLength) return null
    }
    const blocks = size === 0 ? [] : [sha256Hex(buf.subarray(0, size))]
    if (size > 0) read?.(blocks[0], buf.subarray(0, size))
    return { size, blockSize: chooseBlockSize(size), blocks, hash: contentId(blocks) }
  } finally {
    closeSync(fd)
  }
}

/** `size` bytes of an open file at `offset` (short reads retried); null at end of file. */
export async function readAt (fh: FileHandle, offset: number, size: number): Promise<Buffer | null> {
  const data = Buffer.allocUnsafe(size)
  let filled = 0
  while (filled < size) {
    const { bytesRead } = await fh.read(data, filled, size - filled, offset + filled)
    if (bytesRead === 0) return null
    filled += bytesRead
  }
  return data
}

/**
 * A Bloom filter of block hashes (hex SHA-256): `mayHave` is false only for a hash never
 * added, so a lookup it rules out needs no read of the block index. 2 Mi bits (256 KiB per
 * store: a hundred nodes in one simulation process add 25 MB) and 3 probes taken from the
 * hash itself (it is uniform already): under 1% false positives up to about 150,000
 * blocks, about 8% at 400,000, and more beyond (then more lookups read the index: still
 * right, only slower). Removals are not possible; a block removed from the index stays
 * "maybe".
 */
export class BlockFilter {
  private readonly bits = new Uint32Array((1 << 21) / 32)
  private static readonly MASK = (1 << 21) - 1

  add (hash: string): void {
    for (let i = 0; i < 3; i++) {
      const b = Number.parseInt(hash.slice(i * 8, i * 8 + 8), 16) & BlockFilter.MASK
      this.bits[b >>> 5] |= 1 << (b & 31)
    }
  }

  mayHave (hash: string): boolean {
    for (let i = 0; i < 3; i++) {
      const b = Number.parseInt(hash.slice(i * 8, i * 8 + 8), 16) & BlockFilter.MASK
      if ((this.bits[b >>> 5] & (1 << (b & 31))) === 0) return false
    }
    return true
  }
}
