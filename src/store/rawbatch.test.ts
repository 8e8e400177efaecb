import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RawBatch } from './rawbatch.js'

let tmp: string
beforeEach(async () => { tmp = await mkdtemp(join(tmpdir(), 'syncmesh-rawbatch-')) })
afterEach(async () => { await rm(tmp, { recursive: true, force: true }) })

/** Every entry of a database, raw (prefixed keys, values as stored). */
async function dump (db: Level<string, string>): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = []
  for await (const [k, v] of db.iterator({ keyEncoding: 'utf8', valueEncoding: 'utf8' })) out.push([k, v])
  return out
}

/** The same writes through abstract-level's public API, through RawBatch, and through RawBatch's fallback. */
async function write (how: 'public' | 'hooks' | 'fallback'): Promise<Array<[string, string]>> {
  const db = new Level<string, unknown>(join(tmp, how), { valueEncoding: 'json' })
  const recs = db.sublevel<string, unknown>('r', { valueEncoding: 'json' })
  const seqs = db.sublevel<string, string>('q', { valueEncoding: 'utf8' })
  const meta = db.sublevel<string, unknown>('m', { valueEncoding: 'json' })
  await db.open()
  const rec = { path: 'dir/é ü.txt', size: 3, blocks: ['ab'], nested: { a: 1 }, gone: undefined }
  // an entry put and deleted again in one batch, and one deleted that a first batch made
  await seqs.put('old', 'x')
  if (how === 'public') {
    const b = db.batch()
    b.put(rec.path, rec, { sublevel: recs as never })
    b.put('000000000001', rec.path, { sublevel: seqs as never })
    b.put('tmp', 1, { sublevel: recs as never })
    b.del('tmp', { sublevel: recs as never })
    b.del('old', { sublevel: seqs as never })
    b.put('meta', { seq: 1 }, { sublevel: meta as never })
    await b.write()
  } else {
    const b = new RawBatch(db, { public: how === 'fallback' })
    b.put(recs.prefix, rec.path, JSON.stringify(rec))
    b.put(seqs.prefix, '000000000001', rec.path)
    b.put(recs.prefix, 'tmp', '1')
    b.del(recs.prefix, 'tmp')
    b.del(seqs.prefix, 'old')
    await b.write({ prefix: meta.prefix, key: 'meta', value: JSON.stringify({ seq: 1 }) })
  }
  expect(await recs.get(rec.path)).toEqual({ path: rec.path, size: 3, blocks: ['ab'], nested: { a: 1 } })
  expect(await seqs.get('000000000001')).toBe(rec.path)
  expect(await meta.get('meta')).toEqual({ seq: 1 })
  const entries = await dump(db as unknown as Level<string, string>)
  await db.close()
  return entries
}

describe('RawBatch', () => {
  it('writes exactly what abstract-level\'s public batch writes, through the hooks and without them', async () => {
    const expected = await write('public')
    expect(expected.map(([k]) => k)).toEqual(['!m!meta', '!q!000000000001', '!r!dir/é ü.txt'])
    expect(await write('hooks')).toEqual(expected)
    expect(await write('fallback')).toEqual(expected)
  })
})
