import { randomBytes } from 'node:crypto'
import { lstat, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { observedFromStat } from '../store/datafolder.js'
import { TempWriter } from './tempwriter.js'

let dir: string
let writer: TempWriter
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'syncmesh-tempwriter-'))
  writer = new TempWriter()
})
afterEach(async () => {
  await writer.close()
  await rm(dir, { recursive: true, force: true })
})

describe('temp files written on a thread of their own', () => {
  it('writes files asked for together (content, mode, mtime) and returns what a stat says', async () => {
    const files = Array.from({ length: 300 }, (_, i) => ({
      path: join(dir, `f${i}.part`),
      data: i % 3 === 0 ? new Uint8ArrayList(randomBytes(10), randomBytes(4086)) : randomBytes(i),
      mode: i % 2 === 0 ? 0o644 : 0o600,
      mtimeMs: 1_600_000_000_000 + i * 1000
    }))
    const got = await Promise.all(files.map(async (f) => await writer.write(f.path, f.data, f.mode, f.mtimeMs)))
    for (let i = 0; i < files.length; i++) {
      const f = files[i]
      const bytes = f.data instanceof Uint8ArrayList ? f.data.subarray() : f.data
      expect(Buffer.compare(await readFile(f.path), bytes)).toBe(0)
      const now = observedFromStat(await lstat(f.path))
      expect(got[i]).toEqual(now)
      expect(now).toMatchObject({ type: 'file', mode: f.mode, size: bytes.byteLength, mtimeMs: f.mtimeMs })
    }
  })

  it('replaces an existing temp file whole', async () => {
    const p = join(dir, 'x.part')
    await writer.write(p, randomBytes(5000), 0o644, Date.now())
    const small = randomBytes(10)
    const o = await writer.write(p, small, 0o644, 1_700_000_000_000)
    expect(o.size).toBe(10)
    expect((await readFile(p)).equals(small)).toBe(true)
  })

  it('a file that cannot be written fails alone, with the error code; nothing is left of it', async () => {
    const ok = join(dir, 'ok.part')
    const results = await Promise.allSettled([
      writer.write(join(dir, 'missing', 'a.part'), randomBytes(10), 0o644, Date.now()),
      writer.write(ok, randomBytes(10), 0o644, Date.now()),
      writer.write(dir, randomBytes(10), 0o644, Date.now()) // a directory
    ])
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { code: 'ENOENT' } })
    expect(results[1].status).toBe('fulfilled')
    expect(results[2]).toMatchObject({ status: 'rejected', reason: { code: 'EISDIR' } })
    expect(await readdir(dir)).toEqual(['ok.part'])
  })

  it('writes again after close (a new thread), and close fails what was not answered', async () => {
    const pending = writer.write(join(dir, 'a.part'), randomBytes(10), 0o644, Date.now())
    await writer.close()
    await expect(pending).rejects.toThrow(/closed/)
    const o = await writer.write(join(dir, 'b.part'), randomBytes(10), 0o644, Date.now())
    expect(o.size).toBe(10)
  })
})
