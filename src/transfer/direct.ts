/**
 * Whole blocks of a large pulled file written with O_DIRECT: past the page cache, from
 * buffers this module keeps.
 *
 * Why: a buffered write copies into page-cache pages the kernel must find first, and on
 * the project's virtual machines the first write to a page the guest has not used lately
 * costs about 10 µs (2.6 ms a MiB). A receiver writing 1 GiB that way spent about 3 CPU-s
 * in the kernel (`strace -c`: 1 MiB `pwritev` calls of 4.9 ms each), on a machine whose two
 * cores the transfer already keeps busy. Written with O_DIRECT, the same GiB took 1.0-1.2 s
 * and 0.2 s of kernel time (measured on that machine; buffered: 4.0 s and 3.65 s into such
 * pages, 0.65 s into pages freed a moment before). A file pulled whole is not read again
 * soon by this node, so skipping the cache costs it nothing.
 *
 * O_DIRECT needs the buffer's address, the offset and the length aligned to the device's
 * block (at most 4 KiB here). A Node.js Buffer's address is not (malloc's header), and no
 * API tells it; a WebAssembly memory starts on a page boundary, so the blocks are copied
 * into one of a few such memories (a copy costs far less than the page it saves). Blocks
 * that are not whole (a file's last one) go through the page cache as before, and so does
 * every block of a file on a file system that refuses O_DIRECT (EINVAL: at the open, or at
 * the first write), with no error.
 */
import { constants } from 'node:fs'
import { open, rm, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Uint8ArrayList } from 'uint8arraylist'

// Node's WebAssembly global, as far as this uses it (the compiler's libs here have no DOM)
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer, grow: (pages: number) => number }
}

/** Offsets and lengths written this way are multiples of this (every file system's block). */
export const DIRECT_ALIGN = 4096
/** Staging buffers in the process (one per write in flight; a write waits for one). */
const SLOTS = 4
const WASM_PAGE = 65536

class Slot {
  private readonly memory = new WebAssembly.Memory({ initial: 1 })

  /** A view of `size` bytes at the start of this slot's memory (grown as needed). */
  view (size: number): Uint8Array {
    const need = Math.ceil(size / WASM_PAGE) - this.memory.buffer.byteLength / WASM_PAGE
    if (need > 0) this.memory.grow(need)
    return new Uint8Array(this.memory.buffer, 0, size)
  }
}

/** Slots all idle this long are let go (a slot grows to the largest block it held, up to 16 MiB). */
const IDLE_MS = 30_000

const free: Slot[] = []
let made = 0
const waiting: Array<(s: Slot) => void> = []
let idle: NodeJS.Timeout | null = null

/** A free slot, a new one (which may throw: no address space for it), or the next one freed. */
async function takeSlot (): Promise<Slot> {
  const s = free.pop()
  if (s != null) return s
  if (made < SLOTS) {
    const slot = new Slot()
    made++
    return slot
  }
  return await new Promise<Slot>((resolve) => waiting.push(resolve))
}

function giveSlot (s: Slot): void {
  const next = waiting.shift()
  if (next != null) { next(s); return }
  free.push(s)
  if (free.length === made) {
    if (idle != null) clearTimeout(idle)
    idle = setTimeout(() => {
      made -= free.length
      free.length = 0
    }, IDLE_MS)
    idle.unref()
  }
}

/** The O_DIRECT side of one partial file (see the module's comment). */
export class DirectWrites {
  private fh: FileHandle | null
  /** Bytes written this way (tests, stats). */
  written = 0

  private constructor (fh: FileHandle) {
    this.fh = fh
  }

  /** A second handle on the existing file `path`, or null where O_DIRECT is refused. */
  static async open (path: string): Promise<DirectWrites | null> {
    const flag = constants.O_DIRECT
    if (flag == null) return null
    try {
      return new DirectWrites(await open(path, constants.O_WRONLY | flag))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') return null
      throw err
    }
  }

  /** Whether files in folder `dir` can be opened with O_DIRECT (a probe file made and removed). */
  static async worksIn (dir: string): Promise<boolean> {
    const probe = join(dir, `.direct-probe-${process.pid}-${Math.random().toString(36).slice(2)}`)
    await writeFile(probe, '')
    try {
      const d = await DirectWrites.open(probe)
      await d?.close()
      return d != null
    } finally {
      await rm(probe, { force: true })
    }
  }

  /** Whether a block of `len` bytes at `offset` can be written this way. */
  fits (offset: number, len: number): boolean {
    return this.fh != null && len > 0 && offset % DIRECT_ALIGN === 0 && len % DIRECT_ALIGN === 0
  }

  /**
   * Write `data` at `offset` (which fits). False when the file system refused it (EINVAL,
   * or a short write): the caller writes it, and the rest, through the page cache.
   */
  async write (data: Uint8Array | Uint8ArrayList, offset: number): Promise<boolean> {
    let slot: Slot
    try {
      slot = await takeSlot()
    } catch {
      // no memory for a buffer (each reserves address space: a limit on it, RLIMIT_AS, may
      // refuse it): this file goes through the page cache
      await this.close()
      return false
    }
    try {
      const fh = this.fh
      if (fh == null) return false
      let buf: Uint8Array
      try {
        buf = slot.view(data.byteLength)
      } catch {
        await this.close()
        return false
      }
      if (data instanceof Uint8Array) buf.set(data)
      else {
        let at = 0
        for (const chunk of data) { buf.set(chunk, at); at += chunk.byteLength }
      }
      for (let done = 0; done < buf.byteLength;) {
        let n: number
        try {
          n = (await fh.write(buf, done, buf.byteLength - done, offset + done)).bytesWritten
        } catch (err) {
          // refused; or closed under this write by another one that was refused
          if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && this.fh === fh) throw err
          n = 0
        }
        if (n === 0 || (buf.byteLength - done - n) % DIRECT_ALIGN !== 0) {
          // refused, or a short write that leaves an unaligned rest: the caller writes the
          // whole block through the page cache (over what this wrote), and the rest too
          await this.close()
          return false
        }
        done += n
      }
      this.written += buf.byteLength
      return true
    } finally {
      giveSlot(slot)
    }
  }

  async close (): Promise<void> {
    const fh = this.fh
    this.fh = null
    await fh?.close()
  }
}
