/**
 * `npm run bench`: replication from node A to node B on 127.0.0.1, each node a child
 * process running the real CLI (`syncmesh start`), against rsync in daemon mode.
 *
 *   1. one large file (default 1 GiB, random, 1 MiB writes): MB/s from the end of the
 *      write (close) to the file being complete at B, split into "B starts receiving"
 *      (detection + hashing + announce) and transfer; content verified by hashing both.
 *   2. many small files (default 10,000 x 4 KiB) in a fresh subfolder, written one after
 *      the other as `cp -r` would (a thread of their own, synchronous calls): files/s from
 *      the first write to the last file installed at B, and per-file latency (close at A ->
 *      appearance at B) p50 / p99, measured with a watcher on B's folder.
 *   3. catch-up: B is stopped, A records another set of small files (same count and size)
 *      in a fresh subfolder, then B starts again: files/s from B listening to the last file
 *      at B. The files are on A's disk before B starts, as rsync's are: the pull pipeline
 *      alone, without the writer's pace of case 2.
 *   4. the large file and the small files pushed with `rsync -a SRC/ rsync://127.0.0.1:P/mod/DST/`.
 *
 * Options: --size-mb N (1024), --files N (10000), --skip-rsync, --json (last line: one JSON
 * object with every figure), --timeout S (per syncmesh case, 75: a case not done by then is
 * reported with what arrived), --cpu-prof DIR (write a V8 CPU profile of each node into DIR:
 * A.cpuprofile, B.cpuprofile), --keep (leave the temp folder).
 *
 * Every child (nodes, rsync daemon) is stopped and every temp folder removed at the end,
 * on error and on Ctrl-C.
 */
import { randomBytes, randomFillSync, createHash } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { link, copyFile, mkdir, mkdtemp, open, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { chooseBlockSize, contentId } from '../src/store/blocks.js'
import { DataFolder } from '../src/store/datafolder.js'
import {
  CLI, cleanupAll, cpuSeconds, installSignalHandlers, machine, now, onCleanup, percentile, run, runRsync, sha256File, sleep,
  startNode, startRsyncDaemon, status, trackTempDir, waitFor, waitIdle, which, writeFilesFast, type Machine, type NodeProc
} from './lib.js'

const MiB = 1024 * 1024
const SMALL_SIZE = 4096

interface Options {
  sizeMb: number
  files: number
  skipRsync: boolean
  json: boolean
  timeoutS: number
  cpuProfDir: string | null
  keep: boolean
}

function parseOptions (argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'size-mb': { type: 'string' },
      files: { type: 'string' },
      'skip-rsync': { type: 'boolean' },
      json: { type: 'boolean' },
      timeout: { type: 'string' },
      'cpu-prof': { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  })
  if (values.help === true) {
    process.stdout.write('usage: npm run bench -- [--size-mb N] [--files N] [--skip-rsync] [--json] [--timeout S] [--cpu-prof DIR] [--keep]\n')
    process.exit(0)
  }
  const num = (v: string | undefined, def: number, name: string): number => {
    if (v == null) return def
    const n = Number(v)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0`)
    return n
  }
  return {
    sizeMb: Math.floor(num(values['size-mb'], 1024, 'size-mb')),
    files: Math.floor(num(values.files, 10_000, 'files')),
    skipRsync: values['skip-rsync'] === true,
    json: values.json === true,
    timeoutS: num(values.timeout, 75, 'timeout'),
    cpuProfDir: values['cpu-prof'] ?? null,
    keep: values.keep === true
  }
}

const progress = (msg: string): void => { process.stderr.write(`[bench] ${msg}\n`) }
const r1 = (n: number): number => Math.round(n * 10) / 10
const r3 = (n: number): number => Math.round(n * 1000) / 1000

// ---------------------------------------------------------------------------------------
// Results

interface BigResult {
  bytes: number
  complete: boolean
  verified: boolean
  /** close at A -> B's file complete (full size at its path), seconds */
  seconds: number
  mbPerS: number
  /** close -> A recorded the final version (detection + hashing) */
  recordedAtA: number | null
  /** close -> B started pulling the final version (+ announce + queueing) */
  startAtB: number | null
  /** B started -> complete */
  transfer: number | null
  /** close -> B's status says nothing is pending */
  statusIdle: number | null
  /** versions of the file B began pulling (intermediate ones come from hashing mid-write) */
  versionsPulled: number
  /** mtime (ms) A's file had after the write, A's and B's now: all three should be equal */
  mtimes: { writtenA: number, nowA: number, nowB: number }
  writeSeconds: number
  /** CPU seconds (user + system, all threads) each node used from the end of the write to completion */
  cpu: { A: number | null, B: number | null }
  /** of cpu, the system (kernel) part */
  sys: { A: number | null, B: number | null }
  nodeStats: Record<string, unknown>
}

interface SmallResult {
  files: number
  arrived: number
  complete: boolean
  verified: boolean
  /** first write at A -> last file at B */
  seconds: number
  filesPerS: number
  writeSeconds: number
  latencyMs: { p50: number, p99: number, max: number }
  /** files the watcher did not report, found by the final sweep (their time is the sweep's) */
  foundBySweep: number
  /** CPU seconds (user + system, all threads) each node used from the first write to completion */
  cpu: { A: number | null, B: number | null }
  /** of cpu, the system (kernel) part */
  sys: { A: number | null, B: number | null }
  nodeStats: Record<string, unknown>
}

interface RsyncResult {
  big: { seconds: number, mbPerS: number, verified: boolean } | null
  small: { seconds: number, filesPerS: number, verified: boolean } | null
  skipped: string | null
}

// ---------------------------------------------------------------------------------------

interface CatchUpResult {
  files: number
  arrived: number
  complete: boolean
  verified: boolean
  /** B listening -> last file at B */
  seconds: number
  filesPerS: number
  /** A recording the files (write of the first -> all recorded), not timed in `seconds` */
  recordSeconds: number
  /** CPU seconds (user + system, all threads) each node used while B caught up (B from listening) */
  cpu: { A: number | null, B: number | null }
  /** of cpu, the system (kernel) part */
  sys: { A: number | null, B: number | null }
  /** CPU seconds the restarted B used before it listened (loading, its store, its start-up scan) */
  startCpuB: number | null
  nodeStats: Record<string, unknown>
}

/** Block hashes of a stream of chunks, as the scanner cuts them (for the content id). */
class BlockHasher {
  private readonly blockSize: number
  private h = createHash('sha256')
  private filled = 0
  readonly blocks: string[] = []
  constructor (blockSize: number) { this.blockSize = blockSize }
  update (buf: Buffer): void {
    let off = 0
    while (off < buf.byteLength) {
      const n = Math.min(this.blockSize - this.filled, buf.byteLength - off)
      this.h.update(buf.subarray(off, off + n))
      this.filled += n
      off += n
      if (this.filled === this.blockSize) this.cut()
    }
  }

  private cut (): void {
    this.blocks.push(this.h.digest('hex'))
    this.h = createHash('sha256')
    this.filled = 0
  }

  finish (): string[] {
    if (this.filled > 0) this.cut()
    return this.blocks
  }
}

function pickStats (s: Awaited<ReturnType<typeof status>> | null): Record<string, unknown> | null {
  if (s == null) return null
  return { puller: s.stats.puller, blocks: s.stats.blocks, gossip: s.stats.gossip, catchUp: s.stats.catchUp, lastError: s.lastError }
}

async function statOrNull (p: string): Promise<{ size: number, mtimeMs: number } | null> {
  try { return await stat(p) } catch { return null }
}

/** Write a small file at A and wait for it at B until one makes it quickly (gossip mesh formed). */
async function warmUp (a: NodeProc, b: NodeProc): Promise<void> {
  for (let i = 0; i < 6; i++) {
    const rel = `warmup-${i}.txt`
    const t0 = now()
    await writeFile(join(a.data, rel), `warm-up ${i} ${Date.now()}\n`)
    await waitFor(`warm-up file ${rel} at B`, async () => await statOrNull(join(b.data, rel)) != null, 30_000, 10)
    const ms = now() - t0
    progress(`warm-up ${i}: ${Math.round(ms)} ms`)
    if (ms < 1000) return
  }
}

async function benchBig (opts: Options, a: NodeProc, b: NodeProc): Promise<BigResult> {
  const size = opts.sizeMb * MiB
  const rel = 'big.bin'
  const srcPath = join(a.data, rel)
  const dstPath = join(b.data, rel)
  const bs = chooseBlockSize(size)
  const hasher = new BlockHasher(bs)
  const baseBytesA = (await status(a.home)).bytes
  const tmpB = new DataFolder(b.data).tmpDir

  progress(`case 1: writing ${opts.sizeMb} MiB into A (1 MiB writes)`)
  const tw = now()
  const fh = await open(srcPath, 'w')
  const buf = Buffer.allocUnsafe(MiB)
  for (let off = 0; off < size; off += MiB) {
    const n = Math.min(MiB, size - off)
    randomFillSync(buf, 0, n)
    hasher.update(buf.subarray(0, n))
    let w = 0
    while (w < n) w += (await fh.write(buf, w, n - w, off + w)).bytesWritten
  }
  await fh.close()
  const t0 = now()
  const cpu0 = cpuSnapshot(a, b)
  const writeSeconds = (t0 - tw) / 1000
  const st = await stat(srcPath)
  const partial = new DataFolder(b.data).partialPath(contentId(hasher.finish()), rel)
  const mtime = Math.floor(st.mtimeMs)
  progress(`case 1: written in ${writeSeconds.toFixed(1)} s; waiting for B`)

  let recordedAtA: number | null = null
  let startAtB: number | null = null
  let doneAt: number | null = null
  const partsSeen = new Set<string>()
  const deadline = t0 + opts.timeoutS * 1000

  // A: when its store holds the final version (its status bytes count the final size)
  const pollA = (async () => {
    while (recordedAtA == null && doneAt == null && now() < deadline) {
      try {
        const s = await status(a.home, 5000)
        if (s.bytes === baseBytesA + size) { recordedAtA = now(); break }
      } catch {}
      await sleep(25)
    }
  })()
  // B: the partial file of the final version appears (the pull began), then the file is
  // complete (full size at its path: the puller renames a finished file into place; a
  // version cut from a sequential write that has the full size has the final content),
  // then B's status says nothing is pending.
  let statusIdle: number | null = null
  let lastStatus = 0
  while (now() < deadline) {
    const t = now()
    if (startAtB == null) {
      if (await statOrNull(partial) != null) startAtB = t
    }
    try { for (const f of await readdir(tmpB)) if (f.endsWith('.part')) partsSeen.add(f) } catch {}
    if (doneAt == null) {
      const d = await statOrNull(dstPath)
      if (d != null && d.size === size) doneAt = t
    }
    if (doneAt != null && t - lastStatus >= 20) {
      lastStatus = t
      const s = await status(b.home).catch(() => null)
      if (s != null && s.pending.files === 0) { statusIdle = now(); break }
    }
    await sleep(5)
  }
  await pollA
  const { cpu, sys } = cpuUsed(cpu0, a, b)
  const sb = await status(b.home, 10_000).catch(() => null)
  const sa = await status(a.home, 10_000).catch(() => null)
  const complete = doneAt != null && statusIdle != null
  // the file's mtime at both ends now (the sync may have rewritten A's own mtime)
  const mtimes = { writtenA: mtime, nowA: Math.floor((await stat(srcPath)).mtimeMs), nowB: Math.floor((await statOrNull(dstPath))?.mtimeMs ?? NaN) }
  let verified = false
  if (complete) {
    progress('case 1: complete; verifying (sha256 of both files)')
    const [ha, hb] = await Promise.all([sha256File(srcPath), sha256File(dstPath)])
    verified = ha === hb
    if (!verified) progress(`case 1: CONTENT MISMATCH ${ha} != ${hb}`)
    // metadata: reported, not counted as a failed copy
    if (mtimes.nowA !== mtimes.nowB) progress(`case 1: mtime differs between A and B: ${JSON.stringify(mtimes)}`)
    if (mtimes.nowA !== mtimes.writtenA) progress(`case 1: A's own file got a different mtime from the sync: ${JSON.stringify(mtimes)}`)
  } else {
    progress(`case 1: NOT complete after ${opts.timeoutS} s (B pending ${sb?.pending.files ?? '?'}, last error ${sb?.lastError ?? 'none'})`)
  }
  const end = doneAt ?? now()
  const seconds = (end - t0) / 1000
  return {
    bytes: size,
    complete,
    verified,
    seconds: r3(seconds),
    mbPerS: complete ? r1(size / 1e6 / seconds) : 0,
    recordedAtA: recordedAtA != null ? r3((recordedAtA - t0) / 1000) : null,
    startAtB: startAtB != null ? r3((startAtB - t0) / 1000) : null,
    transfer: startAtB != null && doneAt != null ? r3((doneAt - startAtB) / 1000) : null,
    statusIdle: statusIdle != null ? r3((statusIdle - t0) / 1000) : null,
    versionsPulled: partsSeen.size,
    mtimes,
    writeSeconds: r3(writeSeconds),
    cpu,
    sys,
    nodeStats: { A: pickStats(sa), B: pickStats(sb) }
  }
}

function cpuSnapshot (a: NodeProc, b: NodeProc): Array<number | null> {
  return [cpuSeconds(a.proc.pid), cpuSeconds(b.proc.pid), cpuSeconds(a.proc.pid, 'sys'), cpuSeconds(b.proc.pid, 'sys')]
}

function cpuUsed (before: Array<number | null>, a: NodeProc, b: NodeProc): { cpu: { A: number | null, B: number | null }, sys: { A: number | null, B: number | null } } {
  const after = cpuSnapshot(a, b)
  const d = (i: number): number | null => before[i] == null || after[i] == null ? null : r1(after[i]! - before[i]!)
  return { cpu: { A: d(0), B: d(1) }, sys: { A: d(2), B: d(3) } }
}

async function benchSmall (opts: Options, a: NodeProc, b: NodeProc, dirRel: string): Promise<SmallResult> {
  const n = opts.files
  const srcDir = join(a.data, dirRel)
  const dstDir = join(b.data, dirRel)
  const names = Array.from({ length: n }, (_, i) => `f${String(i).padStart(6, '0')}.dat`)
  const contents = Array.from({ length: n }, () => randomBytes(SMALL_SIZE))

  // the fresh folder first, so the watcher below sees every file go into it
  await mkdir(srcDir)
  await waitFor(`folder ${dirRel} at B`, async () => await statOrNull(dstDir) != null, 30_000, 10)

  // Appearance at B: a watcher on B's folder, stat on each event, first full-size sighting.
  // It watches the one folder the files land in, without { recursive: true }: on Linux,
  // Node's recursive watcher re-reads a whole directory on every event in it (quadratic in
  // the number of files: ~65 s of CPU for 5,000 files), which would measure the watcher.
  const appeared = new Map<string, number>()
  const checking = new Set<string>()
  const check = (name: string, t: number): void => {
    if (appeared.has(name) || checking.has(name)) return
    checking.add(name)
    void stat(join(dstDir, name)).then((s) => {
      if (s.size === SMALL_SIZE && !appeared.has(name)) appeared.set(name, t)
    }, () => {}).finally(() => checking.delete(name))
  }
  const watcher: FSWatcher = watch(dstDir, (_ev, name) => {
    const t = now()
    if (name != null) check(name.toString(), t)
  })
  watcher.on('error', () => {})
  onCleanup(() => { watcher.close() })

  progress(`case 2: writing ${n} files of ${SMALL_SIZE} bytes into A/${dirRel}`)
  const cpu0 = cpuSnapshot(a, b)
  const tFirst = now()
  const closed = await writeFilesFast(srcDir, names, contents)
  const writeSeconds = (closed[n - 1] - tFirst) / 1000
  progress(`case 2: written in ${writeSeconds.toFixed(1)} s; waiting for B`)

  const deadline = tFirst + opts.timeoutS * 1000
  let lastReport = now()
  while (appeared.size < n && now() < deadline) {
    await sleep(50)
    if (now() - lastReport > 10_000) {
      lastReport = now()
      progress(`case 2: ${appeared.size}/${n} at B after ${((now() - tFirst) / 1000).toFixed(0)} s`)
    }
  }
  const tWaitEnd = now()
  // final sweep: anything the watcher did not report
  let foundBySweep = 0
  const tSweep = now()
  for (const name of await readdir(dstDir)) {
    if (appeared.has(name)) continue
    const s = await statOrNull(join(dstDir, name))
    if (s != null && s.size === SMALL_SIZE) { appeared.set(name, tSweep); foundBySweep++ }
  }
  watcher.close()
  const { cpu, sys } = cpuUsed(cpu0, a, b)
  const complete = appeared.size >= n
  if (complete) {
    await waitFor('B to report nothing pending', async () => (await status(b.home)).pending.files === 0, 60_000, 100)
  } else {
    progress(`case 2: NOT complete after ${opts.timeoutS} s: ${appeared.size}/${n} files at B`)
  }
  const sb = await status(b.home, 10_000).catch(() => null)
  const sa = await status(a.home, 10_000).catch(() => null)

  let verified = false
  if (complete) {
    progress('case 2: complete; verifying content')
    verified = true
    for (let i = 0; i < n; i++) {
      const got = await readFile(join(dstDir, names[i]))
      if (!got.equals(contents[i])) { verified = false; progress(`case 2: CONTENT MISMATCH ${names[i]}`); break }
    }
  }
  const lat: number[] = []
  let last = tFirst
  names.forEach((name, i) => {
    const t = appeared.get(name)
    if (t == null) return
    lat.push(Math.max(0, t - closed[i]))
    if (t > last) last = t
  })
  lat.sort((x, y) => x - y)
  const end = complete ? last : tWaitEnd
  const seconds = (end - tFirst) / 1000
  return {
    files: n,
    arrived: appeared.size,
    complete,
    verified,
    seconds: r3(seconds),
    filesPerS: r1(appeared.size / seconds),
    writeSeconds: r3(writeSeconds),
    latencyMs: { p50: r1(percentile(lat, 50)), p99: r1(percentile(lat, 99)), max: r1(lat[lat.length - 1] ?? NaN) },
    foundBySweep,
    cpu,
    sys,
    nodeStats: { A: pickStats(sa), B: pickStats(sb) }
  }
}

async function benchRsync (opts: Options, rsync: string, tmp: string, bigSrc: string | null, smallSrc: string | null): Promise<RsyncResult> {
  const dir = join(tmp, 'rsyncd')
  const root = join(tmp, 'rsync-dst')
  await mkdir(dir)
  await mkdir(root)
  const daemon = await startRsyncDaemon(rsync, dir, root)
  onCleanup(async () => { await daemon.stop() })
  const out: RsyncResult = { big: null, small: null, skipped: null }
  try {
    if (bigSrc != null) {
      // the same file (a hard link: no copy, same page cache) alone in a source folder
      const src = join(tmp, 'rsync-src-big')
      await mkdir(src)
      await link(bigSrc, join(src, 'big.bin')).catch(async () => { await copyFile(bigSrc, join(src, 'big.bin')) })
      const size = (await stat(bigSrc)).size
      progress('rsync: 1 file')
      const t0 = now()
      await runRsync(rsync, ['-a', `${src}/`, daemon.url('big/')])
      const s = (now() - t0) / 1000
      const [ha, hb] = await Promise.all([sha256File(bigSrc), sha256File(join(root, 'big', 'big.bin'))])
      out.big = { seconds: r3(s), mbPerS: r1(size / 1e6 / s), verified: ha === hb }
    }
    if (smallSrc != null) {
      const n = (await readdir(smallSrc)).length
      progress(`rsync: ${n} small files`)
      const t0 = now()
      await runRsync(rsync, ['-a', `${smallSrc}/`, daemon.url('small/')])
      const s = (now() - t0) / 1000
      const got = await readdir(join(root, 'small'))
      out.small = { seconds: r3(s), filesPerS: r1(n / s), verified: got.length === n }
    }
  } finally {
    await daemon.stop()
  }
  return out
}

// ---------------------------------------------------------------------------------------

/**
 * Case 3: B stopped, A records `opts.files` small files in a fresh folder, B starts again
 * and pulls them (index catch-up, then the puller). Returns the restarted B.
 */
async function benchCatchUp (opts: Options, a: NodeProc, b: NodeProc, logs: string, dirRel: string): Promise<{ result: CatchUpResult, b: NodeProc }> {
  const n = opts.files
  const srcDir = join(a.data, dirRel)
  const dstDir = join(b.data, dirRel)
  const names = Array.from({ length: n }, (_, i) => `c${String(i).padStart(6, '0')}.dat`)
  const contents = Array.from({ length: n }, () => randomBytes(SMALL_SIZE))
  progress('case 3: stopping B')
  await b.stop(10_000)
  const before = (await status(a.home)).files
  progress(`case 3: writing ${n} files of ${SMALL_SIZE} bytes into A/${dirRel} while B is down`)
  const t0 = now()
  await mkdir(srcDir)
  await writeFilesFast(srcDir, names, contents)
  await waitFor(`A to record ${n} files`, async () => (await status(a.home)).files >= before + n, opts.timeoutS * 1000, 100)
  const recordSeconds = (now() - t0) / 1000
  await waitIdle([a], 500, 30_000)
  progress(`case 3: recorded at A in ${recordSeconds.toFixed(1)} s; starting B`)
  const cpuA0 = cpuSeconds(a.proc.pid)
  const sysA0 = cpuSeconds(a.proc.pid, 'sys')
  const b2 = await startNode('B2', b.home, logs, { cpuProfDir: opts.cpuProfDir ?? undefined, join: a.addrs[0] })
  const tStart = now()
  // B's start-up (loading, opening its store, its scan of the data folder) is not part of
  // the case: its CPU is counted from here, and reported apart
  const cpuB0 = cpuSeconds(b2.proc.pid)
  const sysB0 = cpuSeconds(b2.proc.pid, 'sys')
  const deadline = tStart + opts.timeoutS * 1000
  let arrived = 0
  while (now() < deadline) {
    arrived = (await readdir(dstDir).catch(() => [])).length
    if (arrived >= n) break
    await sleep(20)
  }
  const seconds = (now() - tStart) / 1000
  const since = (t0: number | null, t: number | null): number | null => t0 == null || t == null ? null : r1(t - t0)
  const cpu = { A: since(cpuA0, cpuSeconds(a.proc.pid)), B: since(cpuB0, cpuSeconds(b2.proc.pid)) }
  const sys = { A: since(sysA0, cpuSeconds(a.proc.pid, 'sys')), B: since(sysB0, cpuSeconds(b2.proc.pid, 'sys')) }
  const startCpuB = cpuB0 == null ? null : r1(cpuB0)
  const complete = arrived >= n
  const sb = await status(b2.home, 10_000).catch(() => null)
  const sa = await status(a.home, 10_000).catch(() => null)
  let verified = false
  if (complete) {
    progress('case 3: complete; verifying content')
    verified = true
    for (let i = 0; i < n; i++) {
      const got = await readFile(join(dstDir, names[i]))
      if (!got.equals(contents[i])) { verified = false; progress(`case 3: CONTENT MISMATCH ${names[i]}`); break }
    }
  } else {
    progress(`case 3: NOT complete after ${opts.timeoutS} s: ${arrived}/${n} files at B`)
  }
  return { result: { files: n, arrived, complete, verified, seconds: r3(seconds), filesPerS: r1(arrived / seconds), recordSeconds: r3(recordSeconds), cpu, sys, startCpuB, nodeStats: { A: pickStats(sa), B: pickStats(sb) } }, b: b2 }
}

function table (opts: Options, m: Machine, big: BigResult | null, small: SmallResult | null, catchUp: CatchUpResult | null, rs: RsyncResult): string {
  const fmt = (v: number | null | undefined, d = 1): string => v == null || Number.isNaN(v) ? '-' : v.toFixed(d)
  const ratio = (a: number | null | undefined, b: number | null | undefined): string => a == null || b == null || b === 0 ? '-' : (a / b).toFixed(2)
  const rows: string[][] = [['', 'syncmesh', 'rsync', 'syncmesh/rsync']]
  if (big != null) {
    const label = `${opts.sizeMb} MiB file`
    rows.push([`${label}: MB/s`, big.complete ? fmt(big.mbPerS) : `incomplete`, fmt(rs.big?.mbPerS), ratio(big.complete ? big.mbPerS : null, rs.big?.mbPerS)])
    rows.push([`${label}: seconds`, fmt(big.seconds, 2), fmt(rs.big?.seconds, 2), ratio(big.seconds, rs.big?.seconds)])
    rows.push(['  close -> recorded at A (s)', fmt(big.recordedAtA, 2), '', ''])
    rows.push(['  close -> B starts (s)', fmt(big.startAtB, 2), '', ''])
    rows.push(['  B start -> complete (s)', fmt(big.transfer, 2), '', ''])
    rows.push(['  CPU s, A / B (kernel part)', `${fmt(big.cpu.A)} / ${fmt(big.cpu.B)} (${fmt(big.sys.A)} / ${fmt(big.sys.B)})`, '', ''])
  }
  if (small != null) {
    const label = `${opts.files} x 4 KiB`
    rows.push([`${label}: files/s`, `${fmt(small.filesPerS)}${small.complete ? '' : ` (${small.arrived}/${small.files}, incomplete)`}`, fmt(rs.small?.filesPerS), ratio(small.filesPerS, rs.small?.filesPerS)])
    rows.push([`${label}: seconds`, fmt(small.seconds, 2), fmt(rs.small?.seconds, 2), small.complete ? ratio(small.seconds, rs.small?.seconds) : '-'])
    rows.push(['  latency p50 (ms)', fmt(small.latencyMs.p50), '', ''])
    rows.push(['  latency p99 (ms)', fmt(small.latencyMs.p99), '', ''])
    rows.push(['  CPU s, A / B (kernel part)', `${fmt(small.cpu.A)} / ${fmt(small.cpu.B)} (${fmt(small.sys.A)} / ${fmt(small.sys.B)})`, '', ''])
  }
  if (catchUp != null) {
    const label = `catch-up, ${opts.files} x 4 KiB`
    rows.push([`${label}: files/s`, `${fmt(catchUp.filesPerS)}${catchUp.complete ? '' : ` (${catchUp.arrived}/${catchUp.files}, incomplete)`}`, fmt(rs.small?.filesPerS), ratio(catchUp.filesPerS, rs.small?.filesPerS)])
    rows.push([`${label}: seconds`, fmt(catchUp.seconds, 2), fmt(rs.small?.seconds, 2), catchUp.complete ? ratio(catchUp.seconds, rs.small?.seconds) : '-'])
    rows.push(['  CPU s, A / B (kernel part)', `${fmt(catchUp.cpu.A)} / ${fmt(catchUp.cpu.B)} (${fmt(catchUp.sys.A)} / ${fmt(catchUp.sys.B)})`, '', ''])
    rows.push(['  B start-up before it listens, CPU s', fmt(catchUp.startCpuB), '', ''])
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  const lines = rows.map((r) => r.map((cell, c) => c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c])).join('   '))
  lines.splice(1, 0, w.map((n) => '-'.repeat(n)).join('   '))
  const head = [
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, node ${m.node}, linux ${m.kernel}, rsync ${m.rsync ?? 'not installed'}`,
    `load:    ${m.load} (1-min average at start)${m.load > m.cores / 2 ? ': other work is running on this machine, the figures are noisy' : ''}`,
    'syncmesh: A -> B, two child processes on 127.0.0.1; big file timed from close at A to complete at B,',
    '          small files from the first write at A to the last file at B (writes included);',
    '          catch-up: the same count of small files recorded at A while B was down, from B listening',
    '          again to the last file at B.',
    'rsync:    rsync -a SRC/ rsync://127.0.0.1:PORT/mod/DST/ (daemon), push only, files already on disk.'
  ]
  if (rs.skipped != null) head.push(`rsync baseline skipped: ${rs.skipped}`)
  return [...head, '', ...lines, ''].join('\n')
}

async function main (): Promise<void> {
  installSignalHandlers()
  const opts = parseOptions(process.argv.slice(2))
  const rsync = opts.skipRsync ? null : await which('rsync')
  const m = await machine(rsync ?? await which('rsync'))
  const tmp = await mkdtemp(join(tmpdir(), 'syncmesh-bench-'))
  if (!opts.keep) trackTempDir(tmp)
  const t00 = now()
  progress(`temp folder ${tmp}`)

  const homeA = join(tmp, 'A')
  const homeB = join(tmp, 'B')
  await run([CLI, 'init', '--home', homeA])
  await run([CLI, 'init', '--home', homeB, '--key', join(homeA, 'mesh.key')])
  const logs = join(tmp, 'logs')
  await mkdir(logs)
  if (opts.cpuProfDir != null) await mkdir(opts.cpuProfDir, { recursive: true })
  const a = await startNode('A', homeA, logs, { cpuProfDir: opts.cpuProfDir ?? undefined })
  let b = await startNode('B', homeB, logs, { cpuProfDir: opts.cpuProfDir ?? undefined, join: a.addrs[0] })
  const grace = opts.cpuProfDir != null ? 120_000 : 10_000
  onCleanup(async () => { await b.stop(grace); await a.stop(grace) })
  progress(`A ${a.addrs[0]}`)
  await waitFor('B to connect to A', async () => (await status(b.home)).peers.length > 0 && (await status(a.home)).peers.length > 0, 30_000)
  await warmUp(a, b)

  let big: BigResult | null = null
  let small: SmallResult | null = null
  let catchUp: CatchUpResult | null = null
  const smallRel = `small-${Date.now().toString(36)}`
  try {
    if (opts.sizeMb > 0) {
      big = await benchBig(opts, a, b)
      progress(`case 1: ${JSON.stringify({ ...big, nodeStats: undefined })}`)
    }
    if (opts.files > 0) {
      if (big != null && !await waitIdle([a, b], 1000, 30_000)) progress('the nodes are still busy after 30 s; going on')
      small = await benchSmall(opts, a, b, smallRel)
      progress(`case 2: ${JSON.stringify({ ...small, nodeStats: undefined })}`)
      if (!await waitIdle([a, b], 1000, 30_000)) progress('the nodes are still busy after 30 s; going on')
      const c = await benchCatchUp(opts, a, b, logs, `catchup-${Date.now().toString(36)}`)
      b = c.b
      catchUp = c.result
      progress(`case 3: ${JSON.stringify({ ...catchUp, nodeStats: undefined })}`)
    }
  } finally {
    progress('stopping the nodes')
    await Promise.all([b.stop(grace), a.stop(grace)])
  }

  let rs: RsyncResult = { big: null, small: null, skipped: null }
  if (opts.skipRsync) {
    rs.skipped = '--skip-rsync'
  } else if (rsync == null) {
    rs.skipped = 'rsync is not installed (apt-get install -y rsync)'
    progress(`skipped the rsync baseline: ${rs.skipped}`)
  } else {
    rs = await benchRsync(opts, rsync, tmp, big != null ? join(a.data, 'big.bin') : null, small != null ? join(a.data, smallRel) : null)
  }
  if (rs.skipped != null) progress(`rsync baseline skipped: ${rs.skipped}`)

  process.stdout.write(table(opts, m, big, small, catchUp, rs))
  const ratios = {
    bigMbPerS: big?.complete === true && rs.big != null ? r3(big.mbPerS / rs.big.mbPerS) : null,
    smallFilesPerS: small != null && rs.small != null ? r3(small.filesPerS / rs.small.filesPerS) : null,
    catchUpFilesPerS: catchUp != null && rs.small != null ? r3(catchUp.filesPerS / rs.small.filesPerS) : null
  }
  progress(`total ${((now() - t00) / 1000).toFixed(1)} s; cleaning up`)
  await cleanupAll()
  if (opts.json) {
    process.stdout.write(JSON.stringify({ machine: m, options: opts, syncmesh: { big, small, catchUp }, rsync: rs, ratios }) + '\n')
  }
  // a case cut short by --timeout is a (bad) figure, not a failure; wrong content is
  const bad = (big?.complete === true && !big.verified) || (small?.complete === true && !small.verified) ||
    (catchUp?.complete === true && !catchUp.verified) || (rs.big != null && !rs.big.verified) || (rs.small != null && !rs.small.verified)
  if (bad) process.exitCode = 1
}

main().catch(async (err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`)
  await cleanupAll()
  process.exit(1)
})
