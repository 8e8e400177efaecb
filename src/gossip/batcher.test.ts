import { afterEach, describe, expect, it } from 'vitest'
import { Batcher, PROFILES, type BatchProfile, type ClosedBatch } from './batcher.js'
import type { FileRecord } from '../store/types.js'

const A = 'aaaaaaaaaaaaa'

type Rec = FileRecord & { seq: number }

function rec (seq: number, path: string, size = 10, extra: Partial<FileRecord> = {}): Rec {
  return {
    path,
    type: 'file',
    mode: 0o644,
    size,
    mtimeMs: 1_700_000_000_000 + seq,
    blockSize: 128 * 1024,
    blocks: [`h${seq}`],
    hash: `c${seq}`,
    target: '',
    deleted: false,
    version: { vv: { [A]: seq }, hlc: { wall: 1_700_000_000_000 + seq, logical: 0 }, node: A },
    seq,
    ...extra
  }
}

function profile (p: Partial<BatchProfile>): BatchProfile {
  return { maxEntries: 1_000_000, maxBytes: Number.MAX_SAFE_INTEGER, maxAgeMs: 60_000, ...p }
}

/** A manually opened gate, to make `send` slow. */
function gate (): { promise: Promise<void>, open: () => void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => { open = resolve })
  return { promise, open }
}

async function waitFor (cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met')
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

const seqs = (b: ClosedBatch): number[] => b.records.map((r) => (r as Rec).seq)

let batchers: Batcher[] = []

function make (p: BatchProfile, send: (b: ClosedBatch) => Promise<void>): Batcher {
  const b = new Batcher(p, send)
  batchers.push(b)
  return b
}

afterEach(async () => {
  for (const b of batchers) await b.stop()
  batchers = []
})

describe('Batcher', () => {
  it('has LAN and WAN profiles', () => {
    expect(PROFILES.lan.maxAgeMs).toBeLessThan(PROFILES.wan.maxAgeMs)
    expect(PROFILES.lan.maxEntries).toBeGreaterThan(0)
    expect(PROFILES.wan.maxBytes).toBeGreaterThan(PROFILES.lan.maxBytes)
  })

  it('closes a batch when it reaches maxEntries', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({ maxEntries: 3 }), async (batch) => { sent.push(batch) })
    b.add([rec(1, 'a')])
    b.add([rec(2, 'b')])
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(sent).toEqual([])
    b.add([rec(3, 'c')])
    await waitFor(() => sent.length === 1)
    expect(sent[0]).toMatchObject({ firstSeq: 1, lastSeq: 3 })
    expect(seqs(sent[0])).toEqual([1, 2, 3])
    b.add([rec(4, 'd'), rec(5, 'e')])
    b.add([rec(6, 'f')])
    await waitFor(() => sent.length === 2)
    expect(seqs(sent[1])).toEqual([4, 5, 6])
    expect(b.stats.batchesClosed).toBe(2)
  })

  it('never splits the records of one add(): a group that does not fit closes the open batch first', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({ maxEntries: 3 }), async (batch) => { sent.push(batch) })
    b.add([rec(1, 'a'), rec(2, 'b')])
    b.add([rec(3, 'c'), rec(4, 'd')]) // 2 + 2 > 3: [1, 2] closes, [3, 4] stays open
    await waitFor(() => b.stats.batchesSent === 1) // (else the next two would be bulked)
    expect(seqs(sent[0])).toEqual([1, 2])
    b.add([5, 6, 7, 8, 9].map((i) => rec(i, `p${i}`))) // [3, 4] closes, then the 5 go out whole
    await waitFor(() => sent.length === 3)
    expect(seqs(sent[1])).toEqual([3, 4])
    expect(seqs(sent[2])).toEqual([5, 6, 7, 8, 9])
    expect(sent[2]).toMatchObject({ firstSeq: 5, lastSeq: 9 })
    expect(b.stats.batchesClosed).toBe(3)
  })

  it('a group over maxBytes is not split either', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({ maxBytes: 100 }), async (batch) => { sent.push(batch) })
    b.add([rec(1, 'a', 60)])
    b.add([rec(2, 'b', 60), rec(3, 'c', 60)])
    await waitFor(() => sent.length === 2)
    expect(sent.map(seqs)).toEqual([[1], [2, 3]])
  })

  it('closes a batch when its changed bytes reach maxBytes (deletes count nothing)', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({ maxBytes: 1000 }), async (batch) => { sent.push(batch) })
    b.add([rec(1, 'a', 400), rec(2, 'b', 400)])
    b.add([rec(3, 'gone', 5000, { deleted: true })])
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(sent).toEqual([])
    b.add([rec(4, 'c', 200)])
    await waitFor(() => sent.length === 1)
    expect(seqs(sent[0])).toEqual([1, 2, 3, 4])
    // the byte count starts over for the next batch
    b.add([rec(5, 'd', 999)])
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(sent).toHaveLength(1)
    b.add([rec(6, 'e', 1)])
    await waitFor(() => sent.length === 2)
    expect(seqs(sent[1])).toEqual([5, 6])
  })

  it('a single record larger than maxBytes makes its own batch', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({ maxBytes: 100 }), async (batch) => { sent.push(batch) })
    b.add([rec(1, 'huge', 10_000)])
    await waitFor(() => sent.length === 1)
    expect(seqs(sent[0])).toEqual([1])
  })

  it('closes a batch maxAgeMs after its first entry', async () => {
    const sent: Array<{ at: number, batch: ClosedBatch }> = []
    const b = make(profile({ maxAgeMs: 80 }), async (batch) => { sent.push({ at: Date.now(), batch }) })
    const t0 = Date.now()
    b.add([rec(1, 'a')])
    await new Promise((resolve) => setTimeout(resolve, 40))
    expect(sent).toEqual([])
    b.add([rec(2, 'b')]) // does not restart the timer
    await waitFor(() => sent.length === 1)
    expect(sent[0].at - t0).toBeGreaterThanOrEqual(75)
    expect(sent[0].at - t0).toBeLessThan(80 + 40 + 500) // not reset to 40 + 80
    expect(seqs(sent[0].batch)).toEqual([1, 2])
    // the next batch gets its own timer
    const t1 = Date.now()
    b.add([rec(3, 'c')])
    await waitFor(() => sent.length === 2)
    expect(sent[1].at - t1).toBeGreaterThanOrEqual(75)
    expect(seqs(sent[1].batch)).toEqual([3])
  })

  it('sends nothing for an empty add, and has no timer running', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({ maxAgeMs: 10 }), async (batch) => { sent.push(batch) })
    b.add([])
    await b.flush()
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(sent).toEqual([])
    expect(b.stats.batchesClosed).toBe(0)
  })

  it('when send is slow, the batches waiting are bulked into one send with each path once, at its newest version', async () => {
    const sent: ClosedBatch[] = []
    const gates: Array<ReturnType<typeof gate>> = []
    const b = make(profile({ maxEntries: 2 }), async (batch) => {
      sent.push(batch)
      const g = gate()
      gates.push(g)
      await g.promise
    })
    b.add([rec(1, 'x'), rec(2, 'y')]) // closes, send #1 starts and hangs
    expect(sent).toHaveLength(1)
    b.add([rec(3, 'x'), rec(4, 'z')]) // closes, waits
    b.add([rec(5, 'w'), rec(6, 'x')]) // closes, waits
    b.add([rec(7, 'z'), rec(8, 'v')]) // closes, waits
    expect(sent).toHaveLength(1)
    expect(b.stats.batchesClosed).toBe(4)

    gates[0].open()
    await waitFor(() => sent.length === 2)
    const bulk = sent[1]
    expect(bulk.firstSeq).toBe(3)
    expect(bulk.lastSeq).toBe(8)
    // x changed at 3 and 6, z at 4 and 7: each appears once, at its newest version, in the
    // order of their last change
    expect(bulk.records.map((r) => [r.path, (r as Rec).seq])).toEqual([['w', 5], ['x', 6], ['z', 7], ['v', 8]])
    expect(b.stats.bulked).toBe(3)
    gates[1].open()
    await b.flush()
    expect(sent).toHaveLength(2)
    expect(b.stats.batchesSent).toBe(2)
  })

  it('a path changed twice within one batch is sent once', async () => {
    const sent: ClosedBatch[] = []
    const b = make(profile({}), async (batch) => { sent.push(batch) })
    b.add([rec(1, 'x'), rec(2, 'y'), rec(3, 'x')])
    await b.flush()
    expect(sent).toHaveLength(1)
    expect(sent[0]).toMatchObject({ firstSeq: 1, lastSeq: 3 })
    expect(sent[0].records.map((r) => [r.path, (r as Rec).seq])).toEqual([['y', 2], ['x', 3]])
  })

  it('flush() closes the open batch and waits until everything is sent', async () => {
    const done: number[][] = []
    const g = gate()
    let calls = 0
    const b = make(profile({ maxEntries: 2 }), async (batch) => {
      calls++
      if (calls === 1) await g.promise
      done.push(seqs(batch))
    })
    b.add([rec(1, 'a'), rec(2, 'b')]) // [1,2] sending (hangs)
    b.add([rec(3, 'c')]) // [3] open
    let flushed = false
    const f = b.flush().then(() => { flushed = true })
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(flushed).toBe(false)
    expect(done).toEqual([])
    g.open()
    await f
    expect(done).toEqual([[1, 2], [3]])
  })

  it('flush() with nothing to send returns at once', async () => {
    const b = make(profile({}), async () => { throw new Error('not called') })
    await b.flush()
    expect(b.stats.batchesSent).toBe(0)
  })

  it('a failing send does not stop later batches', async () => {
    const sent: number[][] = []
    let calls = 0
    const b = make(profile({ maxEntries: 1 }), async (batch) => {
      calls++
      if (calls === 1) throw new Error('network down')
      sent.push(seqs(batch))
    })
    b.add([rec(1, 'a')])
    await b.flush()
    b.add([rec(2, 'b')])
    await b.flush()
    expect(sent).toEqual([[2]])
    expect(b.stats.batchesSent).toBe(2)
  })

  it('stop() sends what is open, then ignores new records', async () => {
    const sent: number[][] = []
    const b = make(profile({ maxAgeMs: 10 }), async (batch) => { sent.push(seqs(batch)) })
    b.add([rec(1, 'a')])
    await b.stop()
    expect(sent).toEqual([[1]])
    b.add([rec(2, 'b')])
    await new Promise((resolve) => setTimeout(resolve, 40))
    expect(sent).toEqual([[1]])
  })
})
