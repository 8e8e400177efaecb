import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  BlockFilter,
  MAX_BLOCK_SIZE,
  MIN_BLOCK_SIZE,
  blockCount,
  blockLength,
  chooseBlockSize,
  contentId,
  hashFile,
  hashLargeFile,
  hashSmallFileSync,
  SMALL_HASH,
  sha256Hex
} from './blocks.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** What hashFile should return for `data`, computed independently. */
function expected (data: Buffer): { size: number, blockSize: number, blocks: string[], hash: string } {
  const blockSize = chooseBlockSize(data.length)
  const blocks: string[] = []
  for (let off = 0; off < data.length; off += blockSize) blocks.push(sha(data.subarray(off, off + blockSize)))
  const concat = Buffer.concat(blocks.map((h) => Buffer.from(h, 'hex')))
  return { size: data.length, blockSize, blocks, hash: sha(concat) }
}

describe('BlockFilter', () => {
  it('holds every hash added, and rules out most others', () => {
    const f = new BlockFilter()
    const hex = (s: string): string => createHash('sha256').update(s).digest('hex')
    const added = Array.from({ length: 20_000 }, (_, i) => hex(`in ${i}`))
    for (const h of added) f.add(h)
    expect(added.every((h) => f.mayHave(h))).toBe(true)
    const others = Array.from({ length: 20_000 }, (_, i) => hex(`out ${i}`))
    expect(others.filter((h) => f.mayHave(h)).length).toBeLessThan(20)
  })
})

describe('chooseBlockSize', () => {
  it('uses 128 KiB for small files', () => {
    expect(MIN_BLOCK_SIZE).toBe(128 * KiB)
    expect(chooseBlockSize(0)).toBe(128 * KiB)
    expect(chooseBlockSize(1)).toBe(128 * KiB)
    expect(chooseBlockSize(128 * KiB)).toBe(128 * KiB)
    // 2000 blocks of 128 KiB is the most a 128 KiB block size covers
    expect(chooseBlockSize(2000 * 128 * KiB)).toBe(128 * KiB)
    expect(chooseBlockSize(2000 * 128 * KiB + 1)).toBe(256 * KiB)
  })

  it('grows by powers of two so a file has at most ~2000 blocks', () => {
    expect(chooseBlockSize(300 * MiB)).toBe(256 * KiB)
    expect(chooseBlockSize(1 * GiB)).toBe(1 * MiB)
    for (const size of [1, 1000, 300 * MiB, 1 * GiB, 3 * GiB + 17, 20 * GiB]) {
      const bs = chooseBlockSize(size)
      expect(Math.log2(bs) % 1).toBe(0)
      expect(Math.ceil(size / bs)).toBeLessThanOrEqual(2000)
      // the next smaller power of two would give too many blocks (or is below the minimum)
      if (bs > MIN_BLOCK_SIZE) expect(Math.ceil(size / (bs / 2))).toBeGreaterThan(2000)
    }
  })

  it('is capped at 16 MiB', () => {
    expect(MAX_BLOCK_SIZE).toBe(16 * MiB)
    expect(chooseBlockSize(100 * GiB)).toBe(16 * MiB)
    expect(chooseBlockSize(10 * 1024 * GiB)).toBe(16 * MiB)
  })
})

describe('blockCount / blockLength', () => {
  it('counts and sizes blocks, including the short last one', () => {
    expect(blockCount(0, 128 * KiB)).toBe(0)
    expect(blockCount(1, 128 * KiB)).toBe(1)
    expect(blockCount(128 * KiB, 128 * KiB)).toBe(1)
    expect(blockCount(128 * KiB + 1, 128 * KiB)).toBe(2)
    expect(blockLength(300 * KiB, 128 * KiB, 0)).toBe(128 * KiB)
    expect(blockLength(300 * KiB, 128 * KiB, 2)).toBe(44 * KiB)
  })
})

describe('contentId / sha256Hex', () => {
  it('sha256Hex is plain SHA-256 in lowercase hex', () => {
    expect(sha256Hex(Buffer.from('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it('contentId hashes the raw block hashes in order', () => {
    const h1 = sha(Buffer.from('one'))
    const h2 = sha(Buffer.from('two'))
    expect(contentId([h1, h2])).toBe(sha(Buffer.concat([Buffer.from(h1, 'hex'), Buffer.from(h2, 'hex')])))
    expect(contentId([h1, h2])).not.toBe(contentId([h2, h1]))
    expect(contentId([])).toBe(sha(Buffer.alloc(0)))
    expect(contentId([h1])).toMatch(/^[0-9a-f]{64}$/)
  })
})

describe('hashFile', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'syncmesh-blocks-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function check (name: string, data: Buffer): Promise<void> {
    const p = join(dir, name)
    await writeFile(p, data)
    const want = expected(data)
    expect(await hashFile(p)).toEqual(want)
    // with the size given up front, and with a caller's buffer
    expect(await hashFile(p, data.length)).toEqual(want)
    expect(await hashFile(p, undefined, Buffer.alloc(MAX_BLOCK_SIZE))).toEqual(want)
  }

  it('hashSmallFileSync: one file after another (one read buffer for all), each as hashFile; a file grown since its size was taken is refused', async () => {
    const seen: Array<[string, Buffer]> = []
    for (const size of [4096, 10, SMALL_HASH, 0, 4097, 1]) {
      const data = randomBytes(size)
      const p = join(dir, `s${size}`)
      await writeFile(p, data)
      const got = hashSmallFileSync(p, size, (h, bytes) => { seen.push([h, Buffer.from(bytes)]) })
      expect(got).toEqual(expected(data))
      if (size > 0) expect(seen.pop()).toEqual([sha(data), data])
    }
    const p = join(dir, 'grown')
    await writeFile(p, randomBytes(200))
    expect(hashSmallFileSync(p, 100)).toBeNull()
    expect(hashSmallFileSync(p, SMALL_HASH + 1)).toBeNull()
    expect(seen).toEqual([])
  })

  it('an empty file has no blocks', async () => {
    await check('empty', Buffer.alloc(0))
    const r = await hashFile(join(dir, 'empty'))
    expect(r.blocks).toEqual([])
    expect(r.size).toBe(0)
    expect(r.blockSize).toBe(MIN_BLOCK_SIZE)
  })

  it('a small file is one block', async () => {
    await check('small', Buffer.from('hello world\n'))
    const r = await hashFile(join(dir, 'small'))
    expect(r.blocks).toEqual([sha(Buffer.from('hello world\n'))])
  })

  it('a file of exactly one block', async () => {
    await check('one', randomBytes(128 * KiB))
  })

  it('a multi-block file with a short last block', async () => {
    const data = randomBytes(300 * KiB + 7)
    await check('multi', data)
    expect((await hashFile(join(dir, 'multi'))).blocks).toHaveLength(3)
  })

  it('a file of exactly three blocks', async () => {
    const data = randomBytes(3 * 128 * KiB)
    await check('three', data)
    expect((await hashFile(join(dir, 'three'))).blocks).toHaveLength(3)
  })

  it('identical blocks get identical hashes', async () => {
    const data = Buffer.alloc(2 * 128 * KiB, 7)
    await check('zeros', data)
    const r = await hashFile(join(dir, 'zeros'))
    expect(r.blocks[0]).toBe(r.blocks[1])
  })

  it('takes the bytes actually read when the expected size is stale', async () => {
    const data = randomBytes(200 * KiB)
    const p = join(dir, 'grew')
    await writeFile(p, data)
    // the caller stat'ed it when it was 10 bytes long
    expect(await hashFile(p, 10)).toEqual(expected(data))
    // the caller stat'ed it when it was longer
    expect(await hashFile(p, 400 * KiB)).toEqual(expected(data))
  })

  it('fails on a missing file', async () => {
    await expect(hashFile(join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  // hashLargeFile: the same, several threads at once
  it('hashLargeFile gives what hashFile gives, with the blocks split over several threads (runs of unequal length too)', async () => {
    const data = randomBytes(MiB + 3 * KiB) // 9 blocks of 128 KiB, the last short
    const p = join(dir, 'f')
    await writeFile(p, data)
    for (const threads of [2, 3, 4]) {
      expect(await hashLargeFile(p, data.length, { threads, minBytes: 0 }), `${threads} threads`).toEqual(expected(data))
    }
  })

  it('hashLargeFile reads the file again when it is not the size it was seen at (it changed meanwhile)', async () => {
    const data = randomBytes(MiB)
    const p = join(dir, 'f')
    await writeFile(p, data)
    // seen larger than it is now (it shrank), and smaller (it grew)
    expect(await hashLargeFile(p, data.length + 200 * KiB, { threads: 2, minBytes: 0 })).toEqual(expected(data))
    expect(await hashLargeFile(p, data.length - 200 * KiB, { threads: 2, minBytes: 0 })).toEqual(expected(data))
  })

  it('hashLargeFile fails as a read would when the file is gone (the scanner treats ENOENT as a removal)', async () => {
    await expect(hashLargeFile(join(dir, 'gone'), 4 * MiB, { threads: 2, minBytes: 0 })).rejects.toMatchObject({ code: 'ENOENT' })
  })

})
