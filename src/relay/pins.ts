/**
 * Pinned content: committed versions kept until their set is uploaded.
 *
 * A set is committed at given versions, but its files may change (or be deleted) right
 * after. Every node that holds a committed content when it learns of the commit keeps a
 * copy of it here (a reflink where the file system has them, otherwise a real copy), and
 * a relay that lacks it fetches it from peers into here, block by verified block. Pins
 * are served to peers like any block (BlockServer asks `blockSource`) and dropped once no
 * set that is still to be uploaded names them.
 *
 * Layout: `<data>/.syncmesh/pins/<content id>` (the file) and `<content id>.sha256` (its
 * whole-content SHA-256, computed while the copy was verified).
 */
import { createHash } from 'node:crypto'
import { constants as FS } from 'node:fs'
import { copyFile, mkdir, open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { blockLength } from '../store/blocks.js'
import { RESERVED } from '../store/datafolder.js'
import type { DataFolder } from '../store/datafolder.js'
import type { PeerBlockClient } from '../transfer/protocol.js'

/** The content a pin must hold. */
export interface PinContent {
  hash: string
  size: number
  blockSize: number
  blocks: string[]
}

export class PinError extends Error {
  override name = 'PinError'
}

const READ_CHUNK = 1024 * 1024

export class PinStore {
  private readonly data: DataFolder
  readonly dir: string
  /** content id -> whole-content SHA-256 of the pins on disk. */
  private readonly pins = new Map<string, string>()
  /** block hash -> where a pin holds it (data-relative path, offset). */
  private readonly blockIndex = new Map<string, { rel: string, offset: number }>()
  private readonly busy = new Map<string, Promise<string | null>>()

  constructor (components: { data: DataFolder }) {
    this.data = components.data
    this.dir = join(this.data.root, RESERVED, 'pins')
  }

  async start (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    for (const name of await readdir(this.dir)) {
      if (!/^[0-9a-f]{64}$/.test(name)) {
        // a copy or fetch that a crash interrupted
        if (name.endsWith('.tmp')) await rm(join(this.dir, name), { force: true })
        continue
      }
      const sha = (await readFile(join(this.dir, `${name}.sha256`), 'utf8').catch(() => '')).trim()
      if (/^[0-9a-f]{64}$/.test(sha)) this.pins.set(name, sha)
      else await rm(join(this.dir, name), { force: true })
    }
  }

  has (hash: string): boolean {
    return this.pins.has(hash)
  }

  sha256 (hash: string): string | null {
    return this.pins.get(hash) ?? null
  }

  /** Absolute path of a pin. */
  path (hash: string): string {
    return join(this.dir, hash)
  }

  get size (): number {
    return this.pins.size
  }

  /** Where a pinned content holds block `blockHash` (for the block server). */
  blockSource (blockHash: string): { rel: string, offset: number } | null {
    return this.blockIndex.get(blockHash) ?? null
  }

  /** Index the blocks of a pin (its block list comes from the set records). */
  index (c: PinContent): void {
    if (!this.pins.has(c.hash)) return
    const rel = `${RESERVED}/pins/${c.hash}`
    c.blocks.forEach((b, i) => { if (!this.blockIndex.has(b)) this.blockIndex.set(b, { rel, offset: i * c.blockSize }) })
  }

  /**
   * Pin `c` from a file in the data folder that should hold it. Returns the SHA-256, or
   * null when the file does not hold that content (any more).
   */
  async fromDisk (c: PinContent, rel: string): Promise<string | null> {
    return await this.once(c, async (tmp) => {
      try {
        await copyFile(this.data.abs(rel), tmp, FS.COPYFILE_FICLONE)
      } catch {
        return false
      }
      return true
    })
  }

  /**
   * Fetch `c` from peers, block by block (each verified against its hash), into a pin.
   * Returns its SHA-256; throws PinError when no peer has some block.
   */
  async fromPeers (c: PinContent, peers: () => PeerBlockClient[], hint: string, opts: { signal?: AbortSignal, onBytes?: (n: number) => void, window?: number } = {}): Promise<string> {
    const sha = await this.once(c, async (tmp) => {
      const fh = await open(tmp, 'w')
      try {
        let next = 0
        let failure: Error | null = null
        const worker = async (): Promise<void> => {
          while (failure == null) {
            const i = next++
            if (i >= c.blocks.length) return
            opts.signal?.throwIfAborted()
            const len = blockLength(c.size, c.blockSize, i)
            const data = await fetchBlock(peers(), c.blocks[i], len, hint, i * c.blockSize)
            if (data == null) { failure = new PinError(`no connected peer has block ${i} of ${hint} (${c.hash.slice(0, 12)})`); return }
            await fh.write(data, 0, data.byteLength, i * c.blockSize)
            opts.onBytes?.(data.byteLength)
          }
        }
        await Promise.all(Array.from({ length: Math.min(opts.window ?? 8, Math.max(1, c.blocks.length)) }, worker))
        if (failure != null) throw failure
        await fh.truncate(c.size)
      } finally {
        await fh.close()
      }
      return true
    })
    if (sha == null) throw new PinError(`the content fetched for ${hint} did not verify`)
    return sha
  }

  /** Drop every pin not in `keep`. */
  async prune (keep: Set<string>): Promise<number> {
    let n = 0
    for (const hash of [...this.pins.keys()]) {
      if (keep.has(hash) || this.busy.has(hash)) continue
      this.pins.delete(hash)
      await rm(this.path(hash), { force: true })
      await rm(`${this.path(hash)}.sha256`, { force: true })
      n++
    }
    if (n > 0) {
      for (const [b, at] of this.blockIndex) if (!this.pins.has(at.rel.slice(at.rel.lastIndexOf('/') + 1))) this.blockIndex.delete(b)
    }
    return n
  }

  /** Run one pinning of `c` at a time; `fill` writes the temp file. */
  private async once (c: PinContent, fill: (tmp: string) => Promise<boolean>): Promise<string | null> {
    const known = this.pins.get(c.hash)
    if (known != null) return known
    const running = this.busy.get(c.hash)
    if (running != null) {
      const sha = await running
      if (sha != null) return sha
    }
    const job = (async () => {
      const tmp = join(this.dir, `${c.hash}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`)
      try {
        if (!await fill(tmp)) return null
        const sha = await verify(tmp, c)
        if (sha == null) return null
        await writeFile(`${this.path(c.hash)}.sha256`, `${sha}\n`)
        await rename(tmp, this.path(c.hash))
        this.pins.set(c.hash, sha)
        this.index(c)
        return sha
      } finally {
        await rm(tmp, { force: true })
      }
    })()
    this.busy.set(c.hash, job)
    try {
      return await job
    } finally {
      this.busy.delete(c.hash)
    }
  }
}

/** Check a file against its block list; its whole-content SHA-256 if it matches. */
async function verify (file: string, c: PinContent): Promise<string | null> {
  const fh = await open(file, 'r')
  try {
    if ((await fh.stat()).size !== c.size) return null
    const whole = createHash('sha256')
    const buf = Buffer.allocUnsafe(Math.max(READ_CHUNK, c.blockSize))
    for (let i = 0; i < c.blocks.length; i++) {
      const len = blockLength(c.size, c.blockSize, i)
      let filled = 0
      while (filled < len) {
        const { bytesRead } = await fh.read(buf, filled, len - filled, i * c.blockSize + filled)
        if (bytesRead === 0) return null
        filled += bytesRead
      }
      const block = buf.subarray(0, len)
      if (createHash('sha256').update(block).digest('hex') !== c.blocks[i]) return null
      whole.update(block)
    }
    return whole.digest('hex')
  } finally {
    await fh.close()
  }
}

/** One block from the least loaded peer that has it (verified), or null. */
async function fetchBlock (clients: PeerBlockClient[], hash: string, size: number, hint: string, offset: number): Promise<Buffer | null> {
  const order = [...clients].sort((a, b) => a.load - b.load)
  for (const c of order) {
    try {
      const data = await c.request(hash, size, hint, offset)
      if (data.byteLength === size && createHash('sha256').update(data).digest('hex') === hash) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    } catch {
      // next peer
    }
  }
  return null
}
