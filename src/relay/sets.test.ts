import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DataFolder } from '../store/datafolder.js'
import { Store } from '../store/store.js'
import type { FileRecord } from '../store/types.js'
import { SetBook, SetError } from './sets.js'

const WRITER = 'ccccccccccccc'
let tmp: string
let store: Store

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'syncmesh-sets-'))
  const data = new DataFolder(join(tmp, 'data'))
  await data.init()
  store = new Store({ path: join(tmp, 'db'), nodeId: 'aaaaaaaaaaaaa', data })
  await store.open()
})

afterEach(async () => {
  await store.close()
  await rm(tmp, { recursive: true, force: true })
})

function fileRecord (path: string, blocks: number): FileRecord {
  const blockSize = 16 * 1024 * 1024
  return {
    path,
    type: 'file',
    mode: 0o644,
    size: blocks * blockSize,
    mtimeMs: 1,
    blockSize,
    blocks: Array.from({ length: blocks }, (_, i) => i.toString(16).padStart(64, '0')),
    hash: 'f'.repeat(64),
    target: '',
    deleted: false,
    version: { vv: { [WRITER]: 1 }, hlc: { wall: 1, logical: 0 }, node: WRITER }
  }
}

describe('set commits', () => {
  it('refuses a file whose entry no message could carry, with a clear error, and writes nothing', async () => {
    await store.applyRemote([fileRecord('huge.bin', 7000), fileRecord('ok.bin', 2)])
    const book = new SetBook({ store })
    const set = await book.create('big')
    const err = await book.commit(set, [{ source: 'ok.bin', path: 'ok.bin' }, { source: 'huge.bin', path: 'huge.bin' }]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SetError)
    expect(err).toMatchObject({ status: 400, message: expect.stringMatching(/^huge\.bin is too large for a set: its 7000 blocks make an entry of \d+ bytes, over the 262144 bytes a set entry can hold$/) })
    expect((await book.get(set.id))?.commit).toBeNull()
    const entries = []
    for await (const r of store.metaRecords('/')) entries.push(r.path)
    expect(entries).toEqual([`/set/${set.id}`])
    // the same set commits without it
    expect((await book.commit(set, [{ source: 'ok.bin', path: 'ok.bin' }])).commit?.files).toBe(1)
  })
})
