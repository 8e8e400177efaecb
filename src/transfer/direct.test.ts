import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DIRECT_ALIGN, DirectWrites } from './direct.js'

let tmp: string
const open: DirectWrites[] = []

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'syncmesh-direct-'))
})

afterEach(async () => {
  for (const d of open.splice(0)) await d.close()
  await rm(tmp, { recursive: true, force: true })
})

/** A file of `size` zero bytes and its direct handle. */
async function partial (size: number): Promise<{ path: string, d: DirectWrites }> {
  const path = join(tmp, 'f.part')
  await writeFile(path, '')
  await truncate(path, size)
  const d = await DirectWrites.open(path)
  if (d == null) throw new Error('O_DIRECT refused after all')
  open.push(d)
  return { path, d }
}

/** `data` cut into chunks of odd sizes, as blocks arrive from the network. */
function chunked (data: Buffer): Uint8ArrayList {
  const list = new Uint8ArrayList()
  for (let at = 0, n = 1; at < data.byteLength; at += n, n = n * 3 + 7) list.append(data.subarray(at, at + n))
  return list
}

// where the temp folder's file system refuses O_DIRECT the puller writes through the page cache
describe.skipIf(!await DirectWrites.worksIn(tmpdir()))('DirectWrites', () => {
  it('writes whole blocks where they belong, from one buffer or from chunks, also more at once than it has buffers', async () => {
    const size = 12 * 128 * 1024
    const { path, d } = await partial(size)
    const content = randomBytes(size)
    const block = 128 * 1024
    // twelve writes at once (four buffers), in no particular order, half of them in chunks
    const order = [5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]
    const ok = await Promise.all(order.map(async (i) => {
      const bytes = content.subarray(i * block, (i + 1) * block)
      return await d.write(i % 2 === 0 ? bytes : chunked(bytes), i * block)
    }))
    expect(ok).toEqual(order.map(() => true))
    expect(d.written).toBe(size)
    expect((await readFile(path)).equals(content)).toBe(true)
  })

  it('grows its buffers for larger blocks', async () => {
    const { path, d } = await partial(128 * 1024 + 4 * 1024 * 1024)
    const small = randomBytes(128 * 1024)
    const large = randomBytes(4 * 1024 * 1024)
    expect(await d.write(small, 0)).toBe(true)
    expect(await d.write(large, 128 * 1024)).toBe(true)
    const back = await readFile(path)
    expect(back.subarray(0, small.byteLength).equals(small)).toBe(true)
    expect(back.subarray(small.byteLength).equals(large)).toBe(true)
  })

  it('takes only aligned, non-empty blocks, and none once closed', async () => {
    const { d } = await partial(1024 * 1024)
    expect(d.fits(0, 128 * 1024)).toBe(true)
    expect(d.fits(DIRECT_ALIGN, DIRECT_ALIGN)).toBe(true)
    expect(d.fits(100, 128 * 1024)).toBe(false) // the offset
    expect(d.fits(0, 1000)).toBe(false) // a file's last, short block
    expect(d.fits(0, 0)).toBe(false)
    await d.close()
    expect(d.fits(0, 128 * 1024)).toBe(false)
    expect(await d.write(randomBytes(DIRECT_ALIGN), 0)).toBe(false)
  })
})
