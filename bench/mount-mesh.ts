/**
 * Mount to mount: two nodes (`syncmesh start --mount`, each its own process) on 127.0.0.1;
 * this process writes small files into A's mount and times, for each, its close to the
 * moment the file reads back whole, with its content, in B's mount. Part of
 * `node dist/bench/fuse-bench.js` (target `mesh`).
 *
 *   1. paced: `paced` files of 4 KiB, one every `gapMs` (a person or a program saving now
 *      and then: every file is alone in its batch);
 *   2. burst: `burst` files of 4 KiB written one after the other as fast as possible.
 *
 * B's mount is polled (readdir every POLL_MS, then a read of each new name): a remote change
 * makes no inotify event on a FUSE mount. A name that reads back with other content than
 * its own is counted as `torn` (a reader saw a partial file: must stay 0). Both nodes are
 * stopped (unmounting) at the end, and any mount left by a failure is cleared with
 * `umount -l`.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, isMounted, now, onCleanup, percentile, run, sleep, startNode, status, waitFor } from './lib.js'

const POLL_MS = 10

export interface MeshCase {
  files: number
  arrived: number
  torn: number
  /** close in A's mount -> readable whole in B's mount, in ms */
  p50: number
  p99: number
  max: number
  seconds: number
}

export interface MeshResult {
  paced: MeshCase
  burst: MeshCase
  gapMs: number
}

function contentOf (tag: string, i: number): Buffer {
  const buf = Buffer.alloc(4096, 0x2e)
  buf.write(`${tag} file ${i}\n`)
  return buf
}

/** Write `n` files into `dirA` (one every `gapMs`, 0: back to back) and time each to B's `dirB`. */
async function timeCase (tag: string, dirA: string, dirB: string, n: number, gapMs: number, timeoutMs: number): Promise<MeshCase> {
  const closed = new Array<number>(n).fill(NaN)
  const seen = new Array<number>(n).fill(NaN)
  const expected = Array.from({ length: n }, (_, i) => contentOf(tag, i))
  let torn = 0
  let arrived = 0
  let writing = true
  const t0 = now()
  const watcher = (async () => {
    while (arrived < n && now() - t0 < timeoutMs) {
      let names: string[] = []
      try { names = await readdir(dirB) } catch {}
      for (const name of names) {
        const m = /^f(\d+)\.dat$/.exec(name)
        if (m == null) continue
        const i = Number(m[1])
        if (i >= n || !Number.isNaN(seen[i])) continue
        let data: Buffer
        try { data = await readFile(join(dirB, name)) } catch { continue }
        if (data.equals(expected[i])) { seen[i] = now(); arrived++ } else torn++
      }
      if (arrived < n) await sleep(writing ? POLL_MS : POLL_MS / 2)
    }
  })()
  for (let i = 0; i < n; i++) {
    await writeFile(join(dirA, `f${i}.dat`), expected[i])
    closed[i] = now()
    if (gapMs > 0) await sleep(gapMs)
  }
  writing = false
  await watcher
  const lat = seen.map((s, i) => s - closed[i]).filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  const last = Math.max(...seen.filter((s) => Number.isFinite(s)), t0)
  return {
    files: n,
    arrived,
    torn,
    p50: lat.length > 0 ? percentile(lat, 50) : NaN,
    p99: lat.length > 0 ? percentile(lat, 99) : NaN,
    max: lat.length > 0 ? lat[lat.length - 1] : NaN,
    seconds: (last - t0) / 1000
  }
}

export async function benchMountMesh (opts: { paced: number, gapMs: number, burst: number, timeoutS: number, log: (msg: string) => void }): Promise<MeshResult> {
  const tmp = await mkdtemp(join(tmpdir(), 'syncmesh-mount-mesh-'))
  const homeA = join(tmp, 'A')
  const homeB = join(tmp, 'B')
  const mntA = join(tmp, 'mntA')
  const mntB = join(tmp, 'mntB')
  await mkdir(mntA)
  await mkdir(mntB)
  // registered first, so it runs last: after the nodes stopped (unmounting), clear a mount a failure
  // left (a folder under a mount whose server is gone cannot be removed), then the temp folder
  onCleanup(async () => {
    for (const m of [mntA, mntB]) {
      if (await isMounted(m)) await new Promise<void>((resolve) => execFile('umount', ['-l', m], () => resolve()))
    }
    await rm(tmp, { recursive: true, force: true, maxRetries: 5 })
  })
  await run([CLI, 'init', '--home', homeA])
  await run([CLI, 'init', '--home', homeB, '--key', join(homeA, 'mesh.key')])
  const logs = join(tmp, 'logs')
  await mkdir(logs)
  const a = await startNode('A', homeA, logs, { extraArgs: ['--mount', mntA] })
  onCleanup(async () => { await a.stop() })
  const b = await startNode('B', homeB, logs, { join: a.addrs[0], extraArgs: ['--mount', mntB] })
  onCleanup(async () => { await b.stop() })
  await waitFor('B to connect to A', async () => (await status(b.home)).peers.length > 0 && (await status(a.home)).peers.length > 0, 30_000)
  try {
    const result: Partial<MeshResult> = { gapMs: opts.gapMs }
    for (const [key, n, gap] of [['paced', opts.paced, opts.gapMs], ['burst', opts.burst, 0]] as const) {
      if (n === 0) continue
      const rel = `${key}-${Date.now().toString(36)}`
      await mkdir(join(mntA, rel))
      await waitFor(`${rel} in B's mount`, async () => (await readdir(mntB)).includes(rel), 30_000, POLL_MS)
      opts.log(`mesh: ${n} files into A's mount${gap > 0 ? `, one every ${gap} ms` : ', back to back'}`)
      result[key] = await timeCase(key, join(mntA, rel), join(mntB, rel), n, gap, opts.timeoutS * 1000)
    }
    return result as MeshResult
  } finally {
    await b.stop()
    await a.stop()
  }
}

export function printMesh (r: MeshResult): void {
  console.log('')
  console.log('mount to mount (two nodes with --mount on 127.0.0.1): close of a 4 KiB file in A\'s mount -> its content read back in B\'s mount')
  console.log('case                            files   arrived   torn   p50 ms   p99 ms   max ms   seconds')
  for (const [name, c] of [[`paced, one every ${r.gapMs} ms`, r.paced], ['burst, back to back', r.burst]] as const) {
    if (c == null) continue
    console.log(`${name.padEnd(30)} ${String(c.files).padStart(6)} ${String(c.arrived).padStart(9)} ${String(c.torn).padStart(6)} ${c.p50.toFixed(0).padStart(8)} ${c.p99.toFixed(0).padStart(8)} ${c.max.toFixed(0).padStart(8)} ${c.seconds.toFixed(2).padStart(9)}`)
  }
}
