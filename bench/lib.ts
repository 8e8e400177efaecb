/**
 * Helpers for the benchmarks: child processes that are always cleaned up, node status over
 * the control socket, machine facts, percentiles, hashing, an rsync daemon.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream, readFileSync, rmSync, type WriteStream } from 'node:fs'
import { open, readFile, writeFile, access } from 'node:fs/promises'
import { constants as FS } from 'node:fs'
import { createServer, createConnection } from 'node:net'
import { cpus, totalmem, release, loadavg } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { control } from '../src/node/control.js'
import type { StatusReport } from '../src/node/node.js'

/** The repository root (dist/bench/lib.js -> ../..). */
export const REPO = resolve(fileURLToPath(import.meta.url), '..', '..', '..')
export const CLI = join(REPO, 'bin', 'syncmesh.js')

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
export const now = (): number => performance.now()

const WRITER = `
const { parentPort, workerData } = require('node:worker_threads')
const { writeFileSync } = require('node:fs')
const { join } = require('node:path')
const { dir, names, bytes, size } = workerData
const data = new Uint8Array(bytes)
const closed = new Float64Array(names.length)
try {
  for (let i = 0; i < names.length; i++) {
    writeFileSync(join(dir, names[i]), data.subarray(i * size, (i + 1) * size))
    closed[i] = performance.timeOrigin + performance.now()
  }
  parentPort.postMessage({ closed })
} catch (err) {
  parentPort.postMessage({ error: err.message })
}
`

/**
 * Write files into `dir` one after the other as a program copying them in would (`cp -r`,
 * `tar x`: create, write, close, next), on a thread of its own, so that neither the
 * writing waits for this process's event loop nor its watchers wait for the writing.
 * Resolves with each file's close time on the `now()` clock.
 */
export async function writeFilesFast (dir: string, names: string[], contents: Uint8Array[]): Promise<number[]> {
  const size = contents[0]?.byteLength ?? 0
  if (contents.some((c) => c.byteLength !== size)) throw new Error('writeFilesFast: files of one size only')
  const bytes = new SharedArrayBuffer(size * contents.length)
  const all = new Uint8Array(bytes)
  contents.forEach((c, i) => { all.set(c, i * size) })
  const { Worker } = await import('node:worker_threads')
  return await new Promise<number[]>((resolve, reject) => {
    const w = new Worker(WRITER, { eval: true, workerData: { dir, names, bytes, size } })
    w.once('message', (m: { closed: Float64Array } | { error: string }) => {
      if ('error' in m) reject(new Error(`writing into ${dir}: ${m.error}`))
      else resolve(Array.from(m.closed, (t) => t - performance.timeOrigin))
    })
    w.once('error', reject)
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`writer thread exited with ${code}`)) })
  })
}

// ---------------------------------------------------------------------------------------
// Cleanup: children are killed and temp folders removed on normal exit, on error, on
// Ctrl-C / SIGTERM, and (children only, synchronously) when the process exits anyway.

const children = new Set<ChildProcess>()
const cleanups: Array<() => Promise<void> | void> = []
const tempDirs: string[] = []
let cleaning: Promise<void> | null = null

export function trackChild (cp: ChildProcess): ChildProcess {
  children.add(cp)
  cp.once('exit', () => children.delete(cp))
  return cp
}

export function onCleanup (fn: () => Promise<void> | void): void {
  cleanups.push(fn)
}

export function trackTempDir (dir: string): void {
  tempDirs.push(dir)
}

/** SIGTERM every child still running, SIGKILL it after `graceMs`. */
export async function stopChild (cp: ChildProcess, graceMs = 5000): Promise<void> {
  if (cp.exitCode != null || cp.signalCode != null) return
  const exited = new Promise<void>((resolve) => cp.once('exit', () => resolve()))
  cp.kill('SIGTERM')
  const timer = setTimeout(() => { cp.kill('SIGKILL') }, graceMs)
  await exited
  clearTimeout(timer)
}

export async function cleanupAll (): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try { await fn() } catch {}
    }
    await Promise.all([...children].map(async (cp) => { await stopChild(cp, 3000) }))
    for (const d of tempDirs.splice(0)) {
      try { rmSync(d, { recursive: true, force: true, maxRetries: 3 }) } catch {}
    }
  })()
  await cleaning
}

let handlersInstalled = false
export function installSignalHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up\n`)
      void cleanupAll().finally(() => process.exit(130))
    })
  }
  // last resort (an uncaught throw, process.exit): never leave a node running
  process.on('exit', () => {
    for (const cp of children) { try { cp.kill('SIGKILL') } catch {} }
    for (const d of tempDirs) { try { rmSync(d, { recursive: true, force: true }) } catch {} }
  })
}

// ---------------------------------------------------------------------------------------
// Syncmesh nodes as child processes

export async function run (args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`${args.slice(0, 2).join(' ')} failed: ${stderr.trim() || err.message}`))
      else resolve(stdout)
    })
  })
}

export interface NodeProc {
  name: string
  home: string
  data: string
  proc: ChildProcess
  addrs: string[]
  logFile: string
  stop: (graceMs?: number) => Promise<void>
}

export interface StartOptions {
  join?: string
  /** Write a V8 CPU profile of the node into this folder (on a clean stop). */
  cpuProfDir?: string
  logLevel?: string
  /** More `syncmesh start` options (e.g. --api, --relay). */
  extraArgs?: string[]
}

/** `syncmesh start` in its own process; resolves once it printed its listen addresses. */
export async function startNode (name: string, home: string, logDir: string, opts: StartOptions = {}): Promise<NodeProc> {
  const nodeArgs: string[] = []
  if (opts.cpuProfDir != null) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, `--cpu-prof-name=${name}.cpuprofile`)
  const args = [...nodeArgs, CLI, 'start', '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', opts.logLevel ?? 'info']
  if (opts.join != null) args.push('--join', opts.join)
  args.push(...(opts.extraArgs ?? []))
  const logFile = join(logDir, `${name}.log`)
  const log: WriteStream = createWriteStream(logFile)
  const proc = trackChild(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }))
  proc.stderr!.pipe(log)
  const addrs = await new Promise<string[]>((resolve, reject) => {
    let buf = ''
    let timer: NodeJS.Timeout | null = null
    const done = (err: Error | null, v?: string[]): void => {
      if (timer != null) clearTimeout(timer)
      proc.stdout!.removeAllListeners('data')
      proc.removeListener('exit', onExit)
      if (err != null) reject(err)
      else resolve(v!)
    }
    const onExit = (code: number | null): void => {
      done(new Error(`node ${name} exited (${code}) before listening: ${tail(logFile)}`))
    }
    proc.once('exit', onExit)
    proc.stdout!.setEncoding('utf8')
    proc.stdout!.on('data', (chunk: string) => {
      buf += chunk
      // the addresses are printed together; give the rest of the lines a moment
      if (buf.includes('/p2p/') && buf.endsWith('\n') && timer == null) {
        timer = setTimeout(() => { done(null, buf.split('\n').filter((l) => l.includes('/p2p/'))) }, 50)
      }
    })
    setTimeout(() => { if (timer == null) done(new Error(`node ${name} did not print its address in 30 s: ${tail(logFile)}`)) }, 30_000).unref()
  })
  proc.stdout!.resume()
  return {
    name,
    home,
    data: join(home, 'data'),
    proc,
    addrs,
    logFile,
    stop: async (graceMs = 5000) => { await stopChild(proc, graceMs) }
  }
}

/** The last lines of a log file (for error messages). */
export function tail (file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ')
  } catch {
    return '(no log)'
  }
}

/** What `syncmesh status --home H --json` prints, straight from the control socket. */
export async function status (home: string, timeoutMs = 30_000): Promise<StatusReport> {
  return await control(home, 'status', {}, timeoutMs) as StatusReport
}

/** Poll `cond` every `everyMs` until it returns a value (not null/false) or the deadline passes. */
export async function waitFor<T> (what: string, cond: () => Promise<T | null | false> | T | null | false, timeoutMs: number, everyMs = 50): Promise<T> {
  const end = now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v !== null && v !== false) return v
    if (now() > end) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`)
    await sleep(everyMs)
  }
}

/**
 * CPU seconds a process has used so far (Linux /proc), null elsewhere: user + system, or
 * system (the kernel's part: file creates and renames, socket calls) alone.
 */
export function cpuSeconds (pid: number | undefined, part: 'all' | 'sys' = 'all'): number | null {
  if (pid == null) return null
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return ((part === 'all' ? Number(fields[11]) : 0) + Number(fields[12])) / 100
  } catch {
    return null
  }
}

/**
 * Wait until the nodes are done with earlier work (nothing pending, next to no CPU used for
 * `quietMs`), so one case does not pay for the previous one. Gives up after `timeoutMs`.
 */
export async function waitIdle (nodes: NodeProc[], quietMs = 1000, timeoutMs = 30_000): Promise<boolean> {
  const end = now() + timeoutMs
  let since: number | null = null
  let last = nodes.map((n) => cpuSeconds(n.proc.pid))
  while (now() < end) {
    await sleep(250)
    const cur = nodes.map((n) => cpuSeconds(n.proc.pid))
    const busy = cur.some((c, i) => c != null && last[i] != null && c - last[i]! > 0.02)
    last = cur
    let pending = 0
    for (const n of nodes) pending += (await status(n.home).catch(() => null))?.pending.files ?? 1
    if (busy || pending > 0) { since = null; continue }
    since ??= now()
    if (now() - since >= quietMs) return true
  }
  return false
}

// ---------------------------------------------------------------------------------------
// Figures

/** Nearest-rank percentile of sorted values (p in 0..100). */
/** Whether `mnt` is a mount point now (Linux /proc/self/mountinfo). */
export async function isMounted (mnt: string): Promise<boolean> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === mnt)
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

export async function sha256File (path: string): Promise<string> {
  const h = createHash('sha256')
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024)
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, null)
      if (bytesRead === 0) break
      h.update(buf.subarray(0, bytesRead))
    }
  } finally {
    await fh.close()
  }
  return h.digest('hex')
}

export interface Machine {
  cpu: string
  cores: number
  memoryGiB: number
  node: string
  kernel: string
  rsync: string | null
  /** 1-minute load average when the bench started (other work on the machine skews the figures) */
  load: number
}

export async function machine (rsyncPath: string | null): Promise<Machine> {
  let cpu = cpus()[0]?.model ?? 'unknown'
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m != null) cpu = m[1].trim()
  } catch {}
  let rsync: string | null = null
  if (rsyncPath != null) {
    rsync = await new Promise((resolve) => {
      execFile(rsyncPath, ['--version'], (err, out) => { resolve(err != null ? null : (/version\s+(\S+)/.exec(out)?.[1] ?? 'unknown')) })
    })
  }
  return { cpu, cores: cpus().length, memoryGiB: Math.round(totalmem() / 1024 ** 3 * 10) / 10, node: process.version, kernel: release(), rsync, load: Math.round(loadavg()[0] * 100) / 100 }
}

// ---------------------------------------------------------------------------------------
// rsync daemon

export async function which (cmd: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/usr/local/bin', '/bin'])) {
    if (dir === '') continue
    const p = join(dir, cmd)
    try { await access(p, FS.X_OK); return p } catch {}
  }
  return null
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a != null ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

async function canConnect (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

export interface RsyncDaemon {
  port: number
  url: (sub: string) => string
  stop: () => Promise<void>
}

/** `rsync --daemon --no-detach` on 127.0.0.1 serving module `mod` at `root` (writable). */
export async function startRsyncDaemon (rsync: string, dir: string, root: string): Promise<RsyncDaemon> {
  const port = await freePort()
  const conf = join(dir, 'rsyncd.conf')
  await writeFile(conf, [
    `pid file = ${join(dir, 'rsyncd.pid')}`,
    `log file = ${join(dir, 'rsyncd.log')}`,
    'address = 127.0.0.1',
    'use chroot = no',
    'uid = 0',
    'gid = 0',
    '',
    '[mod]',
    `  path = ${root}`,
    '  read only = no',
    ''
  ].join('\n'))
  const proc = trackChild(spawn(rsync, ['--daemon', '--no-detach', `--port=${port}`, `--config=${conf}`], { stdio: ['ignore', 'ignore', 'pipe'] }))
  let err = ''
  proc.stderr!.setEncoding('utf8')
  proc.stderr!.on('data', (c: string) => { err += c })
  await waitFor('the rsync daemon to listen', async () => {
    if (proc.exitCode != null) throw new Error(`rsync daemon exited (${proc.exitCode}): ${err.trim()}`)
    return await canConnect(port)
  }, 10_000, 20)
  return {
    port,
    url: (sub) => `rsync://127.0.0.1:${port}/mod/${sub}`,
    stop: async () => { await stopChild(proc, 3000) }
  }
}

/** Run rsync to completion; rejects with its stderr. */
export async function runRsync (rsync: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const cp = trackChild(spawn(rsync, args, { stdio: ['ignore', 'ignore', 'pipe'] }))
    let err = ''
    cp.stderr!.setEncoding('utf8')
    cp.stderr!.on('data', (c: string) => { err += c })
    cp.once('exit', (code) => { if (code === 0) resolve(); else reject(new Error(`rsync ${args.join(' ')} exited ${code}: ${err.trim()}`)) })
  })
}
