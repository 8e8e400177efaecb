import { createHash, randomBytes } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { observedFromStat } from '../store/datafolder.js'
import { CorruptContentError, TargetChangedError, TempWriter, newReplaceLock, withReplacesHeld } from './tempwriter.js'

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

  it('batch after batch (the thread gives each buffer back for the next): every file exactly its own bytes', async () => {
    for (const [n, size] of [[40, 30_000], [3, 7], [200, 4096], [1, 0], [5, 300_000]]) {
      const files = Array.from({ length: n }, (_, i) => ({ path: join(dir, `b${size}-${i}.part`), data: randomBytes(size) }))
      await Promise.all(files.map(async (f) => await writer.write(f.path, f.data, 0o644, Date.now())))
      for (const f of files) expect((await readFile(f.path)).equals(f.data)).toBe(true)
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

  it('with a SHA-256, writes only content that matches it; a mismatch fails alone and leaves nothing', async () => {
    const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
    const good = randomBytes(4096)
    const split = new Uint8ArrayList(good.subarray(0, 100), good.subarray(100))
    const bad = Buffer.from(good)
    bad[4000] ^= 1
    const results = await Promise.allSettled([
      writer.write(join(dir, 'good.part'), good, 0o644, Date.now(), sha(good)),
      writer.write(join(dir, 'split.part'), split, 0o644, Date.now(), sha(good)),
      writer.write(join(dir, 'bad.part'), bad, 0o644, Date.now(), sha(good)),
      writer.write(join(dir, 'empty.part'), new Uint8Array(0), 0o644, Date.now(), sha(new Uint8Array(0))),
      writer.write(join(dir, 'unchecked.part'), bad, 0o644, Date.now())
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'])
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(CorruptContentError)
    expect((await readdir(dir)).sort()).toEqual(['empty.part', 'good.part', 'split.part', 'unchecked.part'])
    expect((await readFile(join(dir, 'split.part'))).equals(good)).toBe(true)
    await expect(writer.write(join(dir, 'x.part'), good, 0o644, Date.now(), 'ABC')).rejects.toThrow(/not a SHA-256/)
  })

  it('writes again after close (a new thread), and close fails what was not answered', async () => {
    const pending = writer.write(join(dir, 'a.part'), randomBytes(10), 0o644, Date.now())
    await writer.close()
    await expect(pending).rejects.toThrow(/closed/)
    const o = await writer.write(join(dir, 'b.part'), randomBytes(10), 0o644, Date.now())
    expect(o.size).toBe(10)
  })

  it('renames into place only a target that is as expected, in one step on the thread', async () => {
    const tmp = async (name: string, body: string): Promise<string> => {
      const p = join(dir, `${name}.part`)
      await writer.write(p, Buffer.from(body), 0o644, Date.now())
      return p
    }
    // absent, as expected
    await writer.replace(await tmp('a', 'one'), join(dir, 'a'), null)
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('one')
    // present, as expected: replaced
    const seen = observedFromStat(await lstat(join(dir, 'a')))
    await writer.replace(await tmp('a2', 'two'), join(dir, 'a'), seen)
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('two')
    // present though expected absent, or changed since it was looked at: nothing done
    const t3 = await tmp('a3', 'three')
    await expect(writer.replace(t3, join(dir, 'a'), null)).rejects.toBeInstanceOf(TargetChangedError)
    const before = observedFromStat(await lstat(join(dir, 'a')))
    await writeFile(join(dir, 'a'), 'local write')
    await utimes(join(dir, 'a'), 1_600_000_000, 1_600_000_000)
    await expect(writer.replace(t3, join(dir, 'a'), before)).rejects.toBeInstanceOf(TargetChangedError)
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('local write')
    expect(await readFile(t3, 'utf8')).toBe('three')
    // an empty directory where the file goes, as expected: removed first
    await mkdir(join(dir, 'd'))
    await writer.replace(t3, join(dir, 'd'), observedFromStat(await lstat(join(dir, 'd'))))
    expect(await readFile(join(dir, 'd'), 'utf8')).toBe('three')
    // under a file (ENOTDIR): not there as expected, and the rename's error comes back
    await expect(writer.replace(await tmp('b', 'x'), join(dir, 'a', 'b'), null)).rejects.toMatchObject({ code: 'ENOTDIR' })
  })

  it('with a replace lock (simulations), the look-and-rename waits while the lock is held', async () => {
    const lock = newReplaceLock()
    const locked = new TempWriter(lock)
    try {
      const t = join(dir, 'l.part')
      await locked.write(t, Buffer.from('pulled'), 0o644, Date.now())
      Atomics.store(lock, 0, 1) // held, as withReplacesHeld holds it
      const done = locked.replace(t, join(dir, 'l'), null)
      // nothing lands while it is held (a bounded look: the rename takes microseconds)
      for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10))
        expect(await lstat(join(dir, 'l')).catch(() => null)).toBeNull()
      }
      Atomics.store(lock, 0, 0)
      Atomics.notify(lock, 0)
      await done
      expect(await readFile(join(dir, 'l'), 'utf8')).toBe('pulled')
      // released by the thread too: the workload's side takes it at once
      expect(withReplacesHeld(lock, () => Atomics.load(lock, 0))).toBe(1)
      expect(Atomics.load(lock, 0)).toBe(0)
    } finally {
      await locked.close()
    }
  })

  it('replaces asked for together are each answered on their own', async () => {
    const names = Array.from({ length: 50 }, (_, i) => `r${i}`)
    await Promise.all(names.map(async (n) => await writer.write(join(dir, `${n}.part`), Buffer.from(n), 0o600, Date.now())))
    await writeFile(join(dir, 'r7'), 'already here')
    const results = await Promise.allSettled(names.map(async (n) => { await writer.replace(join(dir, `${n}.part`), join(dir, n), null) }))
    results.forEach((r, i) => { expect(r.status).toBe(i === 7 ? 'rejected' : 'fulfilled') })
    expect(await readFile(join(dir, 'r8'), 'utf8')).toBe('r8')
    expect(await readFile(join(dir, 'r7'), 'utf8')).toBe('already here')
  })
})
