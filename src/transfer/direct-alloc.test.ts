// In a file of its own: the buffer pool is the module's, and the other direct tests leave
// buffers in it (a new buffer is made only when none is free).
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DirectWrites } from './direct.js'

const wasm = (globalThis as unknown as { WebAssembly: { Memory: unknown } }).WebAssembly
const RealMemory = wasm.Memory
let dir: string | null = null

afterEach(async () => {
  wasm.Memory = RealMemory
  if (dir != null) await rm(dir, { recursive: true, force: true })
  dir = null
})

async function partial (size: number): Promise<{ path: string, d: DirectWrites }> {
  dir = await mkdtemp(join(tmpdir(), 'syncmesh-direct-alloc-'))
  const path = join(dir, 'f.part')
  await writeFile(path, '')
  await truncate(path, size)
  const d = await DirectWrites.open(path)
  if (d == null) throw new Error('O_DIRECT refused after all')
  return { path, d }
}

// where the temp folder's file system refuses O_DIRECT the puller writes through the page cache
describe.skipIf(!await DirectWrites.worksIn(tmpdir()))('DirectWrites without memory for its buffers', () => {
  it('a buffer that cannot be made sends the file through the page cache, and takes no place in the pool', async () => {
    const { path, d } = await partial(8 * 4096)
    // as under an address-space limit (RLIMIT_AS): each buffer reserves much of it
    wasm.Memory = function () { throw new RangeError('WebAssembly.Memory(): could not allocate memory') }
    for (let i = 0; i < 5; i++) expect(await d.write(Buffer.alloc(4096, 1), i * 4096)).toBe(false)
    expect(d.fits(0, 4096)).toBe(false) // the rest of this file goes through the page cache
    wasm.Memory = RealMemory
    // memory again: another file gets its four buffers (a leaked count made it wait forever)
    await d.close()
    const again = await DirectWrites.open(path)
    if (again == null) throw new Error('O_DIRECT refused after all')
    const blocks = [0, 1, 2, 3, 4, 5].map((i) => Buffer.alloc(4096, i + 1))
    expect(await Promise.all(blocks.map(async (b, i) => await again.write(b, i * 4096)))).toEqual(blocks.map(() => true))
    await again.close()
    expect((await readFile(path)).subarray(0, 6 * 4096).equals(Buffer.concat(blocks))).toBe(true)
  })
})
