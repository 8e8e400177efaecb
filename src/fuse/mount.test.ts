/**
 * Real-mount tests: every mount is served by a child process running the compiled dist/src/fuse/serve.js
 * (never by this process: its own fs calls would wait on itself). Run `npx tsc -p tsconfig.json` first
 * (`npm test` does). Needs root, /dev/fuse, libfuse2 + fuse, and the programs git, sqlite3, rsync, tar,
 * python3, chattr (Debian: git sqlite3 rsync tar python3 e2fsprogs).
 *
 * Everything here is async (fs promises, child processes): a synchronous call would block this process
 * from reading the server's event pipe.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { constants as C } from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '../..')
const DIST = path.join(ROOT, 'dist/src/fuse')
const SERVE = path.join(DIST, 'serve.js')
const NODE = process.execPath
const TIMEOUT = 30000

type Ev =
  | { op: 'ready', fusePatch: number, fuseAddon: string }
  | { op: 'error', name: string, message: string }
  | { op: 'changed', path: string, kind: string, ranges?: Array<[number, number]> }
  | { op: 'removed', path: string, isDir: boolean }
  | { op: 'renamed', from: string, to: string }
  | { op: 'stopped', openForWrite: number }
  | { op: 'blocking', path: string }

interface RunResult { code: number | null, stdout: string, stderr: string }

function run (cmd: string, args: string[], opts: { cwd?: string, timeout?: number, env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise(resolve => {
    execFile(cmd, args, { cwd: opts.cwd, timeout: opts.timeout ?? 20000, env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null)
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** Runs a shell script; throws with its output unless it exits 0. */
async function sh (script: string, cwd?: string): Promise<string> {
  const r = await run('sh', ['-c', script], { cwd, timeout: 60000 })
  if (r.code !== 0) throw new Error(`sh failed (${String(r.code)}): ${script}\n${r.stdout}${r.stderr}`)
  return r.stdout
}

let PYTHON = 'python3'
async function py (code: string, ...args: string[]): Promise<RunResult> {
  return await run(PYTHON, ['-c', code, ...args])
}

function delay (ms: number): Promise<void> {
  return new Promise(resolve => { setTimeout(resolve, ms).unref() })
}

async function mountedAt (dir: string): Promise<boolean> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').some(l => l.split(' ')[4] === dir)
}

class Server {
  readonly events: Ev[] = []
  stderr = ''
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  private readonly wake = new Set<() => void>()
  private buf = ''
  private done = false

  constructor (readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      this.buf += chunk
      let nl = this.buf.indexOf('\n')
      while (nl !== -1) {
        const line = this.buf.slice(0, nl)
        this.buf = this.buf.slice(nl + 1)
        nl = this.buf.indexOf('\n')
        if (line.trim() !== '') this.events.push(JSON.parse(line) as Ev)
      }
      this.notify()
    })
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => { this.stderr += chunk })
    this.exited = new Promise(resolve => {
      child.once('exit', (code, signal) => {
        this.done = true
        this.notify()
        resolve({ code, signal })
      })
    })
  }

  get alive (): boolean { return !this.done }

  mark (): number { return this.events.length }

  since (mark: number): Ev[] { return this.events.slice(mark) }

  private notify (): void {
    for (const f of [...this.wake]) f()
  }

  /** Waits until an event at index >= from matches; fails after timeoutMs with the events seen. */
  async waitFor (pred: (e: Ev) => boolean, what: string, from = 0, timeoutMs = 5000): Promise<Ev> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const hit = this.events.slice(from).find(pred)
      if (hit !== undefined) return hit
      if (this.done) throw new Error(`server exited while waiting for ${what}; stderr: ${this.stderr}`)
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new Error(`timed out waiting for ${what}; events since ${from}: ${JSON.stringify(this.events.slice(from))}; stderr: ${this.stderr}`)
      }
      let finish: () => void = () => {}
      await new Promise<void>(resolve => {
        const t = setTimeout(() => finish(), left)
        finish = () => { clearTimeout(t); resolve() }
        this.wake.add(finish)
      })
      this.wake.delete(finish)
    }
  }

  async stop (): Promise<void> {
    if (!this.alive) return
    this.child.kill('SIGTERM')
    await Promise.race([this.exited, delay(8000)])
    if (this.alive) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }
}

function startServer (data: string, mnt: string, env?: NodeJS.ProcessEnv, wrap?: string[]): Server {
  const args = [SERVE, data, mnt]
  const child = wrap === undefined
    ? spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
    : spawn(wrap[0], [...wrap.slice(1), NODE, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
  return new Server(child)
}

async function ready (s: Server): Promise<void> {
  const e = await s.waitFor(e => e.op === 'ready' || e.op === 'error', 'ready', 0, 20000)
  if (e.op === 'error') throw new Error(`mount failed: ${e.name}: ${e.message}`)
}

interface Fixture {
  root: string
  data: string
  mnt: string
  server: Server | undefined
  servers: Server[]
  /** extra mounts (inside data, or test mounts) to lazily unmount on teardown, innermost first */
  mounts: string[]
  /** run before removing the temp dir (e.g. chattr -i) */
  cleanups: Array<() => Promise<unknown>>
}

const fixtures: Fixture[] = []

async function fixture (opts: { serve?: boolean, env?: NodeJS.ProcessEnv } = {}): Promise<Fixture> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'syncmesh-fuse-test-'))
  const f: Fixture = { root, data: path.join(root, 'data'), mnt: path.join(root, 'mnt'), server: undefined, servers: [], mounts: [], cleanups: [] }
  fixtures.push(f)
  await fsp.mkdir(f.data)
  await fsp.mkdir(f.mnt)
  if (opts.serve !== false) {
    f.server = startServer(f.data, f.mnt, opts.env)
    f.servers.push(f.server)
    await ready(f.server)
  }
  return f
}

async function teardown (f: Fixture): Promise<void> {
  for (const s of f.servers) await s.stop().catch(() => {})
  for (const c of f.cleanups) await c().catch(() => {})
  for (const m of [...f.mounts, f.mnt]) {
    for (let i = 0; i < 4 && await mountedAt(m).catch(() => false); i++) await run('umount', ['-l', m])
  }
  await fsp.rm(f.root, { recursive: true, force: true }).catch(() => {})
}

afterEach(async () => {
  const all = fixtures.splice(0)
  for (const f of all) await teardown(f)
})

async function expectCode (p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code })
}

beforeAll(async () => {
  try {
    await fsp.access(SERVE)
  } catch {
    throw new Error(`${path.relative(ROOT, SERVE)} is missing: compile first with \`npx tsc -p tsconfig.json\` (npm test does this before vitest)`)
  }
  // a dist older than its sources would test stale code
  for (const name of await fsp.readdir(HERE)) {
    if (!name.endsWith('.ts') || name.endsWith('.test.ts') || name.endsWith('.d.ts')) continue
    const src = await fsp.stat(path.join(HERE, name))
    const out = await fsp.stat(path.join(DIST, name.replace(/\.ts$/, '.js'))).catch(() => undefined)
    if (out === undefined || out.mtimeMs + 1 < src.mtimeMs) {
      throw new Error(`dist/src/fuse/${name.replace(/\.ts$/, '.js')} is missing or older than src/fuse/${name}: run \`npx tsc -p tsconfig.json\``)
    }
  }
  try {
    await fsp.access('/usr/bin/python3', C.X_OK)
    PYTHON = '/usr/bin/python3'
  } catch {}
})

const changed = (p: string, kind: string) => (e: Ev): boolean => e.op === 'changed' && e.path === p && e.kind === kind
const removed = (p: string, isDir: boolean) => (e: Ev): boolean => e.op === 'removed' && e.path === p && e.isDir === isDir
const renamed = (from: string, to: string) => (e: Ev): boolean => e.op === 'renamed' && e.from === from && e.to === to

/** libfuse's fuse_loop_mt (the default) and the addon's request loop, for tests of both. */
const LOOPS = [
  { mode: 'libfuse\'s fuse_loop_mt', env: {} },
  { mode: 'the addon\'s request loop (SYNCMESH_FUSE_LOOP=lead)', env: { SYNCMESH_FUSE_LOOP: 'lead' } }
]

let clockTicks: number | undefined
/** CPU time (user + system, s) process `pid` has used, from /proc/PID/stat. */
async function cpuSeconds (pid: number): Promise<number> {
  if (clockTicks === undefined) {
    const r = await run('getconf', ['CLK_TCK'])
    clockTicks = Number(r.stdout.trim()) > 0 ? Number(r.stdout.trim()) : 100
  }
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // from field 3 (state) on
  return (Number(fields[11]) + Number(fields[12])) / clockTicks // utime, stime (fields 14, 15)
}

/** Polls `cond` until it holds; fails after timeoutMs. */
async function waitUntil (cond: () => Promise<boolean>, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await delay(20)
  }
}

/** System call numbers of the architectures the tests run on, for /proc/PID/syscall. */
const SYSCALLS: Record<string, Record<string, number>> = {
  x64: { pread64: 17, openat: 257 },
  arm64: { pread64: 67, openat: 56 }
}

function syscallName (line: string): string {
  const nr = Number(line.split(' ')[0])
  const table = SYSCALLS[process.arch] ?? {}
  return Object.keys(table).find(k => table[k] === nr) ?? line.split(' ')[0]
}

/** Whether process `pid` (its main thread) is inside system call `name`. */
async function inSyscall (pid: number, name: string): Promise<boolean> {
  return syscallName(await fsp.readFile(`/proc/${pid}/syscall`, 'utf8').catch(() => '')) === name
}

/** The system call each thread of process `pid` is in (its number when not one of SYSCALLS, or "running"). */
async function syscallsOfThreads (pid: number): Promise<string[]> {
  const tids = await fsp.readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  return await Promise.all(tids.map(async t => syscallName(await fsp.readFile(`/proc/${pid}/task/${t}/syscall`, 'utf8').catch(() => ''))))
}

/** A python3 child running `code` (stdin and stdout piped), whose output lines can be waited for. */
function spawnPython (code: string, ...args: string[]): { child: ChildProcess, waitLine: (line: string, timeoutMs?: number) => Promise<string> } {
  const child = spawn(PYTHON, ['-c', code, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  let exited = false
  const wake = new Set<() => void>()
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (chunk: string) => { out += chunk; for (const w of [...wake]) w() })
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (chunk: string) => { err += chunk })
  child.once('exit', () => { exited = true; for (const w of [...wake]) w() })
  const waitLine = async (line: string, timeoutMs = 20000): Promise<string> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (out.split('\n').includes(line)) return line
      if (exited) throw new Error(`python exited before printing ${JSON.stringify(line)}: ${out}${err}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${JSON.stringify(line)} from python: ${out}${err}`)
      await new Promise<void>(resolve => {
        const done = (): void => { clearTimeout(t); wake.delete(done); resolve() }
        const t = setTimeout(done, left)
        wake.add(done)
      })
    }
  }
  return { child, waitLine }
}

// ------------------------------------------------------------------------------------------------

describe('attributes, directories, reserved folder', { timeout: TIMEOUT }, () => {
  it('getattr matches the data folder; fgetattr follows the open file', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.data, 'a.txt'), 'hello')
    await fsp.utimes(path.join(f.data, 'a.txt'), 1000000.25, 2000000.5)
    const m = await fsp.stat(path.join(f.mnt, 'a.txt'))
    const d = await fsp.stat(path.join(f.data, 'a.txt'))
    expect(m.isFile()).toBe(true)
    expect(m.size).toBe(5)
    expect(m.mode).toBe(d.mode)
    expect(m.ino).toBe(d.ino) // use_ino
    expect(m.nlink).toBe(1)
    expect(m.mtimeMs).toBe(2000000500)
    expect(m.atimeMs).toBe(1000000250)
    expect((await fsp.stat(f.mnt)).isDirectory()).toBe(true)

    const fh = await fsp.open(path.join(f.mnt, 'a.txt'), 'r+')
    try {
      await fh.write('more bytes', 5)
      expect((await fh.stat()).size).toBe(15)
    } finally {
      await fh.close()
    }
    await expectCode(fsp.stat(path.join(f.mnt, 'nope')), 'ENOENT')
    await expectCode(fsp.stat(path.join(f.mnt, 'a.txt', 'x')), 'ENOTDIR')
    await expectCode(fsp.stat(path.join(f.mnt, 'x'.repeat(256))), 'ENAMETOOLONG')
  })

  it('readdir lists entries with types, . and .., and hides the reserved folder at the root only', async () => {
    const f = await fixture()
    await fsp.mkdir(path.join(f.data, 'dir/.syncmesh'), { recursive: true })
    await fsp.writeFile(path.join(f.data, 'file'), '')
    await fsp.symlink('file', path.join(f.data, 'link'))
    await sh(`mkfifo ${path.join(f.data, 'fifo')}`)
    await fsp.writeFile(path.join(f.data, '.syncmesh/internal.tmp'), 'x')
    const ents = await fsp.readdir(f.mnt, { withFileTypes: true })
    const types = Object.fromEntries(ents.map(e => [e.name, e.isFile() ? 'file' : e.isDirectory() ? 'dir' : e.isSymbolicLink() ? 'link' : e.isFIFO() ? 'fifo' : '?']))
    expect(types).toEqual({ dir: 'dir', file: 'file', link: 'link', fifo: 'fifo' })
    expect(await fsp.readdir(path.join(f.mnt, 'dir'))).toEqual(['.syncmesh'])
    expect((await sh('ls -a', f.mnt)).split('\n').filter(Boolean).sort()).toEqual(['.', '..', 'dir', 'fifo', 'file', 'link'])
    const dir = await fsp.opendir(path.join(f.mnt, 'dir'))
    const names: string[] = []
    for await (const e of dir) names.push(e.name)
    expect(names).toEqual(['.syncmesh'])
    await expectCode(fsp.readdir(path.join(f.mnt, 'nope')), 'ENOENT')
    await expectCode(fsp.readdir(path.join(f.mnt, 'file')), 'ENOTDIR')
  })

  it('the reserved folder does not exist through the mount and cannot be created', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.data, '.syncmesh/keep'), 'internal')
    const r = path.join(f.mnt, '.syncmesh')
    await expectCode(fsp.stat(r), 'ENOENT')
    await expectCode(fsp.readFile(path.join(r, 'keep')), 'ENOENT')
    await expectCode(fsp.readdir(r), 'ENOENT')
    await expectCode(fsp.mkdir(r), 'EPERM')
    await expectCode(fsp.writeFile(r, 'x'), 'EPERM')
    await expectCode(fsp.symlink('x', r), 'EPERM')
    await fsp.writeFile(path.join(f.mnt, 'f'), 'x')
    await expectCode(fsp.rename(path.join(f.mnt, 'f'), r), 'EPERM')
    await expectCode(fsp.link(path.join(f.mnt, 'f'), r), 'EPERM')
    await expectCode(fsp.rm(path.join(r, 'keep')), 'ENOENT')
    expect(await fsp.readFile(path.join(f.data, '.syncmesh/keep'), 'utf8')).toBe('internal')
    expect(f.server?.events.some(e => JSON.stringify(e).includes('.syncmesh'))).toBe(false)
  })

  it('statfs reports the data folder\'s file system', async () => {
    const f = await fixture()
    const m = await fsp.statfs(f.mnt)
    const d = await fsp.statfs(f.data)
    expect(m.bsize * m.blocks).toBe(d.bsize * d.blocks)
    expect(Math.abs(m.bsize * m.bavail - d.bsize * d.bavail)).toBeLessThan(1024 * 1024 * 1024)
    expect(m.files).toBe(d.files)
  })

  it('access: F_OK/R_OK/W_OK, EACCES for X_OK on a non-executable file, ENOENT', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.data, 'plain'), 'echo hi\n', { mode: 0o644 })
    await fsp.writeFile(path.join(f.data, 'script'), '#!/bin/sh\necho hi\n', { mode: 0o755 })
    await fsp.access(path.join(f.mnt, 'plain'), C.F_OK | C.R_OK | C.W_OK)
    await expectCode(fsp.access(path.join(f.mnt, 'plain'), C.X_OK), 'EACCES')
    await fsp.access(path.join(f.mnt, 'script'), C.X_OK)
    await expectCode(fsp.access(path.join(f.mnt, 'nope')), 'ENOENT')
    expect((await run(path.join(f.mnt, 'script'), [])).stdout).toBe('hi\n')
    const denied = await new Promise<NodeJS.ErrnoException>(resolve => {
      const c = spawn(path.join(f.mnt, 'plain'), [])
      c.on('error', resolve)
    })
    expect(denied.code).toBe('EACCES')
  })
})

describe('files: open, create, read, write, truncate, fsync', { timeout: TIMEOUT }, () => {
  it('open honours O_CREAT|O_EXCL, O_TRUNC, O_APPEND and the access mode', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'f.txt')
    await fsp.writeFile(p, 'hello world')
    await expectCode(fsp.open(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY), 'EEXIST')
    await expectCode(fsp.open(path.join(f.mnt, 'missing'), C.O_RDONLY), 'ENOENT')
    await expectCode(fsp.open(path.join(f.mnt, 'f.txt', 'x'), C.O_RDONLY), 'ENOTDIR')
    await fsp.mkdir(path.join(f.mnt, 'dir'))
    await expectCode(fsp.open(path.join(f.mnt, 'dir'), C.O_WRONLY), 'EISDIR')
    await expectCode(fsp.open(path.join(f.mnt, 'y'.repeat(256)), C.O_CREAT | C.O_WRONLY), 'ENAMETOOLONG')

    // O_APPEND: data goes to the end whatever position is passed
    let fh = await fsp.open(p, C.O_WRONLY | C.O_APPEND)
    await fh.write('!!', 0)
    await fh.write('??')
    await fh.close()
    expect(await fsp.readFile(path.join(f.data, 'f.txt'), 'utf8')).toBe('hello world!!??')

    // access modes
    fh = await fsp.open(p, C.O_RDONLY)
    await expectCode(fh.write('x', 0), 'EBADF')
    await fh.close()
    fh = await fsp.open(p, C.O_WRONLY)
    await expectCode(fh.read(Buffer.alloc(4), 0, 4, 0), 'EBADF')
    await fh.close()
    fh = await fsp.open(p, C.O_RDWR)
    await fh.write('HE', 0)
    const b = Buffer.alloc(5)
    await fh.read(b, 0, 5, 0)
    expect(b.toString()).toBe('HEllo')
    await fh.close()

    // O_TRUNC
    const mark = f.server!.mark()
    fh = await fsp.open(p, C.O_WRONLY | C.O_TRUNC)
    await fh.close()
    expect((await fsp.stat(path.join(f.data, 'f.txt'))).size).toBe(0)
    await f.server!.waitFor(changed('f.txt', 'truncate'), 'truncate event for O_TRUNC', mark)

    // O_CREAT without O_EXCL on an existing file opens it
    fh = await fsp.open(p, C.O_CREAT | C.O_RDWR)
    await fh.close()
  })

  it('create applies the requested mode exactly (our own umask is undone)', async () => {
    const f = await fixture()
    const fh = await fsp.open(path.join(f.mnt, 'secret'), 'wx', 0o600)
    await fh.close()
    expect((await fsp.stat(path.join(f.data, 'secret'))).mode & 0o7777).toBe(0o600)
    await sh('umask 002 && touch shared && mkdir shareddir', f.mnt)
    expect((await fsp.stat(path.join(f.data, 'shared'))).mode & 0o7777).toBe(0o664)
    expect((await fsp.stat(path.join(f.data, 'shareddir'))).mode & 0o7777).toBe(0o775)
    await sh('umask 077 && touch private', f.mnt)
    expect((await fsp.stat(path.join(f.data, 'private'))).mode & 0o7777).toBe(0o600)
  })

  it('positional reads and writes, holes, large offsets', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'sparse')
    const fh = await fsp.open(p, 'w+')
    try {
      await fh.write('abc', 10)
      await fh.write('xyz', 5 * 1024 * 1024 * 1024) // beyond 4 GiB: 64-bit offsets
      const b = Buffer.alloc(13)
      const { bytesRead } = await fh.read(b, 0, 13, 0)
      expect(bytesRead).toBe(13)
      expect(b.subarray(0, 10).every(x => x === 0)).toBe(true)
      expect(b.subarray(10).toString()).toBe('abc')
      const c = Buffer.alloc(10)
      const r2 = await fh.read(c, 0, 10, 5 * 1024 * 1024 * 1024)
      expect(r2.bytesRead).toBe(3)
      expect(c.subarray(0, 3).toString()).toBe('xyz')
    } finally {
      await fh.close()
    }
    expect((await fsp.stat(path.join(f.data, 'sparse'))).size).toBe(5 * 1024 * 1024 * 1024 + 3)
    // a 3 MiB buffer round-trips byte for byte (several 128 KiB requests)
    const big = Buffer.alloc(3 * 1024 * 1024 + 17)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 9)) & 0xff
    await fsp.writeFile(path.join(f.mnt, 'big'), big)
    expect((await fsp.readFile(path.join(f.data, 'big'))).equals(big)).toBe(true)
    expect((await fsp.readFile(path.join(f.mnt, 'big'))).equals(big)).toBe(true)
  })

  it('truncate and ftruncate shrink and extend', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 't')
    await fsp.writeFile(p, '0123456789')
    let mark = f.server!.mark()
    await fsp.truncate(p, 4)
    expect(await fsp.readFile(path.join(f.data, 't'), 'utf8')).toBe('0123')
    await f.server!.waitFor(changed('t', 'truncate'), 'truncate event', mark)
    await fsp.truncate(p, 8)
    expect(await fsp.readFile(path.join(f.data, 't'))).toEqual(Buffer.from('0123\0\0\0\0'))
    mark = f.server!.mark()
    const fh = await fsp.open(p, 'r+')
    await fh.truncate(2)
    expect((await fh.stat()).size).toBe(2)
    await fh.close()
    expect(await fsp.readFile(path.join(f.data, 't'), 'utf8')).toBe('01')
    await f.server!.waitFor(changed('t', 'truncate'), 'ftruncate event', mark)
    await expectCode(fsp.truncate(path.join(f.mnt, 'missing'), 0), 'ENOENT')
  })

  it('fsync and fdatasync report the written ranges at once; release reports the rest', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 's')
    const s = f.server!
    const fh = await fsp.open(p, 'w')
    let mark = s.mark()
    try {
      await fh.write('hello', 0)
      await fh.sync()
      expect(await s.waitFor(changed('s', 'write'), 'write event on fsync', mark)).toMatchObject({ ranges: [[0, 5]] })
      await fh.write('world', 100)
      mark = s.mark()
      await fh.datasync()
      expect(await s.waitFor(changed('s', 'write'), 'write event on fdatasync', mark)).toMatchObject({ ranges: [[100, 105]] })
      await fh.write('!', 5)
      mark = s.mark()
    } finally {
      await fh.close()
    }
    expect(await s.waitFor(changed('s', 'write'), 'write event on release', mark)).toMatchObject({ ranges: [[5, 6]] })
    // fsync of a directory (fsyncdir)
    const dh = await fsp.open(f.mnt, 'r')
    await dh.sync()
    await dh.close()
  })

  it('files unlinked or replaced while open stay readable and leave no trace in the data folder', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'open.txt')
    await fsp.writeFile(p, 'still here')
    await f.server!.waitFor(changed('open.txt', 'write'), 'write event of the first version') // release is asynchronous
    const fh = await fsp.open(p, 'r+')
    const mark = f.server!.mark()
    await fsp.unlink(p)
    await expectCode(fsp.stat(p), 'ENOENT')
    await f.server!.waitFor(removed('open.txt', false), 'removed event', mark)
    const b = Buffer.alloc(10)
    await fh.read(b, 0, 10, 0)
    expect(b.toString()).toBe('still here')
    await fh.write('STILL', 0)
    expect((await fh.stat()).size).toBe(10)
    expect(await fsp.readdir(f.mnt)).toEqual([])
    expect(await fsp.readdir(f.data)).toEqual(['.syncmesh'])
    await fh.close()
    const hidden = path.join(f.data, '.syncmesh/fuse-hidden')
    for (let i = 0; i < 100 && (await fsp.readdir(hidden)).length > 0; i++) await delay(20)
    expect(await fsp.readdir(hidden)).toEqual([])
    expect(f.server!.since(mark).filter(e => e.op === 'changed' && e.kind === 'write')).toEqual([])
    expect(JSON.stringify(f.server!.events)).not.toContain('fuse_hidden')

    // rename over a file that is open: the reader keeps the old content
    await fsp.writeFile(path.join(f.mnt, 'target'), 'old')
    await fsp.writeFile(path.join(f.mnt, 'new'), 'new')
    const rh = await fsp.open(path.join(f.mnt, 'target'), 'r')
    await fsp.rename(path.join(f.mnt, 'new'), path.join(f.mnt, 'target'))
    expect((await rh.readFile()).toString()).toBe('old')
    await rh.close()
    expect(await fsp.readFile(path.join(f.data, 'target'), 'utf8')).toBe('new')
    expect((await fsp.readdir(f.data)).sort()).toEqual(['.syncmesh', 'target'])
  })
})

describe('names: mkdir, rmdir, unlink, rename, symlink, link, mknod', { timeout: TIMEOUT }, () => {
  it('mkdir and rmdir with their errors', async () => {
    const f = await fixture()
    const d = path.join(f.mnt, 'd')
    await fsp.mkdir(d, 0o750)
    expect((await fsp.stat(path.join(f.data, 'd'))).mode & 0o777).toBe(0o750)
    await expectCode(fsp.mkdir(d), 'EEXIST')
    await expectCode(fsp.mkdir(path.join(f.mnt, 'no/such')), 'ENOENT')
    await fsp.writeFile(path.join(d, 'x'), '')
    await expectCode(fsp.rmdir(d), 'ENOTEMPTY')
    await expectCode(fsp.rmdir(path.join(d, 'x')), 'ENOTDIR')
    await expectCode(fsp.rmdir(path.join(f.mnt, 'nope')), 'ENOENT')
    await expectCode(fsp.mkdir(path.join(f.mnt, 'z'.repeat(256))), 'ENAMETOOLONG')
    await fsp.unlink(path.join(d, 'x'))
    await fsp.rmdir(d)
    await expectCode(fsp.stat(path.join(f.data, 'd')), 'ENOENT')
  })

  it('unlink with its errors', async () => {
    const f = await fixture()
    await fsp.mkdir(path.join(f.mnt, 'dir'))
    await expectCode(fsp.unlink(path.join(f.mnt, 'dir')), 'EISDIR')
    await expectCode(fsp.unlink(path.join(f.mnt, 'nope')), 'ENOENT')
    await fsp.writeFile(path.join(f.mnt, 'f'), '')
    await fsp.unlink(path.join(f.mnt, 'f'))
    await expectCode(fsp.stat(path.join(f.data, 'f')), 'ENOENT')
  })

  it('rename files and directories, over existing targets, with the POSIX errors', async () => {
    const f = await fixture()
    const m = (p: string): string => path.join(f.mnt, p)
    await fsp.writeFile(m('a'), 'A')
    await fsp.writeFile(m('b'), 'B')
    await fsp.rename(m('a'), m('b')) // over an existing file
    expect(await fsp.readFile(path.join(f.data, 'b'), 'utf8')).toBe('A')
    await expectCode(fsp.stat(path.join(f.data, 'a')), 'ENOENT')
    await fsp.mkdir(m('d1'))
    await fsp.writeFile(m('d1/x'), 'x')
    await fsp.mkdir(m('empty'))
    await fsp.rename(m('d1'), m('empty')) // dir over an empty dir
    expect(await fsp.readFile(path.join(f.data, 'empty/x'), 'utf8')).toBe('x')
    await fsp.mkdir(m('full'))
    await fsp.writeFile(m('full/y'), '')
    await fsp.mkdir(m('d2'))
    await expectCode(fsp.rename(m('d2'), m('full')), 'ENOTEMPTY')
    await expectCode(fsp.rename(m('b'), m('full')), 'EISDIR')
    await expectCode(fsp.rename(m('d2'), m('b')), 'ENOTDIR')
    await expectCode(fsp.rename(m('nope'), m('x')), 'ENOENT')
    await expectCode(fsp.rename(m('b'), m('nodir/b')), 'ENOENT')
    await expectCode(fsp.rename(m('b'), m('w'.repeat(256))), 'ENAMETOOLONG')
    await expectCode(fsp.rename(m('full'), m('full/y/sub')), 'ENOTDIR')
    await expectCode(fsp.rename(m('full'), m('full/sub')), 'EINVAL') // into itself (kernel)
    await fsp.rename(m('full'), m('empty/full')) // dir into another dir
    expect(await fsp.readdir(path.join(f.data, 'empty/full'))).toEqual(['y'])
  })

  it('rename across file systems inside the data folder fails with EXDEV', async () => {
    const f = await fixture()
    const sub = path.join(f.data, 'other-fs')
    await fsp.mkdir(sub)
    await sh(`mount -t tmpfs -o size=4m tmpfs ${sub}`)
    f.mounts.unshift(sub)
    await fsp.writeFile(path.join(f.mnt, 'file'), 'x')
    await expectCode(fsp.rename(path.join(f.mnt, 'file'), path.join(f.mnt, 'other-fs/file')), 'EXDEV')
    await expectCode(fsp.link(path.join(f.mnt, 'file'), path.join(f.mnt, 'other-fs/file')), 'EXDEV')
    await sh(`mv ${path.join(f.mnt, 'file')} ${path.join(f.mnt, 'other-fs/file')}`) // mv copies instead
    expect(await fsp.readFile(path.join(sub, 'file'), 'utf8')).toBe('x')
  })

  it('symlink, readlink, lchown and utimes on links', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.mnt, 'target'), 'T')
    await fsp.symlink('target', path.join(f.mnt, 'link'))
    await fsp.symlink('../dangling/x', path.join(f.mnt, 'dangling'))
    expect(await fsp.readlink(path.join(f.mnt, 'link'))).toBe('target')
    expect(await fsp.readlink(path.join(f.data, 'dangling'))).toBe('../dangling/x')
    expect((await fsp.lstat(path.join(f.mnt, 'link'))).isSymbolicLink()).toBe(true)
    expect(await fsp.readFile(path.join(f.mnt, 'link'), 'utf8')).toBe('T')
    await expectCode(fsp.symlink('x', path.join(f.mnt, 'target')), 'EEXIST')
    await expectCode(fsp.readlink(path.join(f.mnt, 'target')), 'EINVAL')
    await expectCode(fsp.readlink(path.join(f.mnt, 'nope')), 'ENOENT')
    await fsp.lchown(path.join(f.mnt, 'link'), 4321, 8765)
    const l = await fsp.lstat(path.join(f.data, 'link'))
    expect([l.uid, l.gid]).toEqual([4321, 8765])
    const t = await fsp.stat(path.join(f.data, 'target'))
    expect([t.uid, t.gid]).toEqual([process.getuid?.(), process.getgid?.()])
    await fsp.lutimes(path.join(f.mnt, 'link'), 100, 200)
    expect((await fsp.lstat(path.join(f.data, 'link'))).mtimeMs).toBe(200000)
    expect((await fsp.stat(path.join(f.data, 'target'))).mtimeMs).not.toBe(200000)
  })

  it('hard links share the inode; linking a directory is EPERM, an existing name EEXIST', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.mnt, 'a'), 'same')
    await fsp.link(path.join(f.mnt, 'a'), path.join(f.mnt, 'b'))
    const a = await fsp.stat(path.join(f.data, 'a'))
    const b = await fsp.stat(path.join(f.data, 'b'))
    expect(b.ino).toBe(a.ino)
    expect(a.nlink).toBe(2)
    expect((await fsp.stat(path.join(f.mnt, 'b'))).ino).toBe(a.ino)
    await fsp.appendFile(path.join(f.mnt, 'b'), '!')
    expect(await fsp.readFile(path.join(f.mnt, 'a'), 'utf8')).toBe('same!')
    await fsp.mkdir(path.join(f.mnt, 'dir'))
    await expectCode(fsp.link(path.join(f.mnt, 'dir'), path.join(f.mnt, 'dir2')), 'EPERM')
    await expectCode(fsp.link(path.join(f.mnt, 'a'), path.join(f.mnt, 'b')), 'EEXIST')
    await expectCode(fsp.link(path.join(f.mnt, 'nope'), path.join(f.mnt, 'c')), 'ENOENT')
  })

  it('mknod makes fifos (mkfifo) and regular files; the fifo works through the mount', async () => {
    const f = await fixture()
    await sh('mkfifo -m 640 pipe', f.mnt)
    const st = await fsp.lstat(path.join(f.data, 'pipe'))
    expect(st.isFIFO()).toBe(true)
    expect(st.mode & 0o777).toBe(0o640)
    expect((await fsp.lstat(path.join(f.mnt, 'pipe'))).isFIFO()).toBe(true)
    expect((await py('import os,sys\ntry:\n  os.mkfifo(sys.argv[1])\nexcept OSError as e:\n  print(e.strerror)', path.join(f.mnt, 'pipe'))).stdout).toBe('File exists\n')
    const r = await py('import os,stat,sys; os.mknod(sys.argv[1], 0o644 | stat.S_IFREG); os.mknod(sys.argv[2], 0o600 | stat.S_IFSOCK)', path.join(f.mnt, 'plain'), path.join(f.mnt, 'sock'))
    expect(r.stderr).toBe('')
    expect((await fsp.lstat(path.join(f.data, 'plain'))).isFile()).toBe(true)
    expect((await fsp.lstat(path.join(f.data, 'sock'))).isSocket()).toBe(true)
    // the fifo carries data between two processes through the mount
    const out = await sh('(echo through-fifo > pipe &) ; cat pipe', f.mnt)
    expect(out).toBe('through-fifo\n')
  })
})

describe('metadata: chmod, chown, utimens, xattr', { timeout: TIMEOUT }, () => {
  it('chmod including setuid/sticky bits; chown with -1 keeping a field', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'f')
    await fsp.writeFile(p, '')
    await fsp.chmod(p, 0o4751)
    expect((await fsp.stat(path.join(f.data, 'f'))).mode & 0o7777).toBe(0o4751)
    await fsp.mkdir(path.join(f.mnt, 'd'))
    await fsp.chmod(path.join(f.mnt, 'd'), 0o1777)
    expect((await fsp.stat(path.join(f.data, 'd'))).mode & 0o7777).toBe(0o1777)
    await fsp.chown(p, 1111, 2222)
    await fsp.chown(p, -1, 3333)
    const st = await fsp.stat(path.join(f.data, 'f'))
    expect([st.uid, st.gid]).toEqual([1111, 3333])
    await expectCode(fsp.chmod(path.join(f.mnt, 'nope'), 0o600), 'ENOENT')
    await expectCode(fsp.chown(path.join(f.mnt, 'nope'), 1, 1), 'ENOENT')
  })

  it('the patched fuse-native addon is loaded (scripts/build-fuse.mjs ran at install)', async () => {
    const f = await fixture()
    const ready = f.server!.events.find(e => e.op === 'ready')
    expect(ready).toMatchObject({ op: 'ready', fusePatch: 6 })
    expect((ready as { fuseAddon: string }).fuseAddon).toMatch(/\/fuse-native\/build\/Release\/fuse\.node$/)
    expect(f.server!.stderr).not.toMatch(/stock prebuild is loaded/)
  })

  it('utimens sets distinct atime and mtime, and UTIME_NOW for both (touch)', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'f')
    await fsp.writeFile(p, '')
    await fsp.utimes(p, 1111111111.125, 999999999.5) // binary fractions: exact in a double
    const st = await fsp.stat(path.join(f.data, 'f'))
    expect(st.atimeMs).toBe(1111111111125)
    expect(st.mtimeMs).toBe(999999999500)
    const m = await fsp.stat(p)
    expect([m.atimeMs, m.mtimeMs]).toEqual([1111111111125, 999999999500])
    // UTIME_NOW for both (touch): the current time arrives
    const before = Date.now()
    await sh('touch f', f.mnt)
    const now = await fsp.stat(path.join(f.data, 'f'))
    expect(now.mtimeMs).toBeGreaterThanOrEqual(before - 2000)
    expect(now.atimeMs).toBeGreaterThanOrEqual(before - 2000)
    await expectCode(fsp.utimes(path.join(f.mnt, 'nope'), 1, 1), 'ENOENT')
  })

  it('utimens with one time omitted (UTIME_OMIT): touch -m changes only mtime, touch -a only atime, each captured', async () => {
    const f = await fixture()
    const s = f.server!
    const p = path.join(f.mnt, 'f')
    const data = path.join(f.data, 'f')
    await fsp.writeFile(p, 'x')
    await fsp.utimes(p, 500000000, 600000000)
    let mark = s.mark()
    await sh('touch -m -d @700000000 f', f.mnt) // utimensat(atime UTIME_OMIT, mtime given)
    let st = await fsp.stat(data, { bigint: true })
    expect([st.atimeNs, st.mtimeNs]).toEqual([500000000000000000n, 700000000000000000n])
    await s.waitFor(changed('f', 'utimens'), 'utimens of touch -m', mark)
    mark = s.mark()
    await sh('touch -a -d @800000000 f', f.mnt) // utimensat(atime given, mtime UTIME_OMIT)
    st = await fsp.stat(data, { bigint: true })
    expect([st.atimeNs, st.mtimeNs]).toEqual([800000000000000000n, 700000000000000000n])
    await s.waitFor(changed('f', 'utimens'), 'utimens of touch -a', mark)
    // the same through the mount
    const m = await fsp.stat(p, { bigint: true })
    expect([m.atimeNs, m.mtimeNs]).toEqual([800000000000000000n, 700000000000000000n])
    // on a symlink itself (touch -h: lutimes semantics), its target untouched
    await fsp.symlink('f', path.join(f.mnt, 'link'))
    await sh('touch -h -m -d @100000000 link', f.mnt)
    expect((await fsp.lstat(path.join(f.data, 'link'), { bigint: true })).mtimeNs).toBe(100000000000000000n)
    expect((await fsp.stat(data, { bigint: true })).mtimeNs).toBe(700000000000000000n)
    await expectCode(fsp.utimes(path.join(f.mnt, 'nope'), 1, 1), 'ENOENT')
  })

  it('UTIME_NOW with the other time omitted: touch -m / touch -a set only that time to now', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'f')
    const data = path.join(f.data, 'f')
    await fsp.writeFile(p, 'x')
    await sh('touch -d @500000000.25 f', f.mnt)
    const before = BigInt(Date.now() - 2000) * 1000000n
    await sh('touch -m f', f.mnt)
    let st = await fsp.stat(data, { bigint: true })
    expect(st.atimeNs).toBe(500000000250000000n)
    expect(st.mtimeNs).toBeGreaterThanOrEqual(before)
    const mtime = st.mtimeNs
    await sh('touch -a f', f.mnt)
    st = await fsp.stat(data, { bigint: true })
    expect(st.atimeNs).toBeGreaterThanOrEqual(before)
    expect(st.mtimeNs).toBe(mtime)
  })

  it('times keep their nanoseconds: set through the mount, in the data folder and as the mount reports them', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'f')
    await fsp.writeFile(p, 'x')
    await sh("touch -d '@1500000000.123456789' f", f.mnt)
    const d = await fsp.stat(path.join(f.data, 'f'), { bigint: true })
    expect([d.atimeNs, d.mtimeNs]).toEqual([1500000000123456789n, 1500000000123456789n])
    const m = await fsp.stat(p, { bigint: true })
    expect([m.atimeNs, m.mtimeNs]).toEqual([1500000000123456789n, 1500000000123456789n])
    expect(m.ctimeNs).toBe(d.ctimeNs)
    expect((await sh('stat -c %.9Y f', f.mnt)).trim()).toBe('1500000000.123456789')
    // one time omitted keeps the other's nanoseconds exactly
    await sh("touch -m -d '@1600000000.987654321' f", f.mnt)
    const d2 = await fsp.stat(path.join(f.data, 'f'), { bigint: true })
    expect([d2.atimeNs, d2.mtimeNs]).toEqual([1500000000123456789n, 1600000000987654321n])
    // a written file's own (kernel) mtime is reported to the nanosecond too
    await fsp.writeFile(path.join(f.mnt, 'g'), 'y')
    expect((await fsp.stat(path.join(f.mnt, 'g'), { bigint: true })).mtimeNs).toBe((await fsp.stat(path.join(f.data, 'g'), { bigint: true })).mtimeNs)
    // times before 1970: set exactly, and reported exactly (getattr is answered in C from lstat(2))
    await sh("touch -m -d '@-1.5' f", f.mnt)
    expect((await fsp.stat(path.join(f.data, 'f'), { bigint: true })).mtimeNs).toBe(-1500000000n)
    expect((await fsp.stat(p, { bigint: true })).mtimeNs).toBe(-1500000000n)
  })

  it.each([
    { mode: 'notifications (level 5)', env: {}, create: undefined, open: undefined, release: undefined },
    { mode: 'SYNCMESH_FUSE_ASYNC=0: create, open for writing and release wait for JS (level 4)', env: { SYNCMESH_FUSE_ASYNC: '0' }, create: 2, open: 1, release: 3 }
  ])('getattr, fgetattr, getxattr, read and write are answered in C (writes still captured); the reserved folder and hidden files still go to JS; $mode', async ({ env, create, open, release }) => {
    const f = await fixture({ env: { ...process.env, SYNCMESH_FUSE_STATS: '1', ...env } })
    const p = path.join(f.mnt, 'f')
    await fsp.writeFile(p, 'abc') // lookup, create, fgetattr, getxattr(security.capability), write, release
    expect(await f.server!.waitFor(changed('f', 'write'), 'write')).toMatchObject({ ranges: [[0, 3]] })
    expect(await fsp.readFile(p, 'utf8')).toBe('abc')
    const fh = await fsp.open(p, 'r+')
    expect((await fh.stat()).size).toBe(3)
    await fh.write('d', 3)
    await fh.datasync() // reports the range written so far
    expect(await f.server!.waitFor(e => changed('f', 'write')(e) && JSON.stringify((e as { ranges: unknown }).ranges) === '[[3,4]]', 'fdatasync range')).toBeDefined()
    await fh.write('e', 4)
    await fsp.unlink(p) // open: libfuse hides it (.fuse_hidden*): getattr of that name goes to JS
    expect((await fh.stat()).size).toBe(5)
    await fh.close()
    // created read-only (O_RDONLY|O_CREAT): JS records a handle at create, so it must hear of the release
    expect((await py('import os,sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT, 0o644))', path.join(f.mnt, 'ro'))).stderr).toBe('')
    await f.server!.waitFor(changed('ro', 'create'), 'create of ro')
    await expectCode(fsp.stat(path.join(f.mnt, '.syncmesh')), 'ENOENT')
    await expectCode(fsp.stat(path.join(f.mnt, '.syncmesh/fuse-hidden')), 'ENOENT')
    await f.server!.stop()
    const counts = new Map((/requests: (.*)/.exec(f.server!.stderr)?.[1] ?? '').split(' ').map(kv => kv.split('=')).map(([k, v]) => [k, Number(v)]))
    // with notifications none of these reach JS as requests (JS hears of them from the addon's queue);
    // without: the opens for writing (JS records the handle; the read-only open never reached it) and
    // their releases, not the read-only open's
    expect(counts.get('create')).toBe(create)
    expect(counts.get('open')).toBe(open)
    expect(counts.get('release')).toBe(release)
    // and JS counted nothing left open
    expect(f.server!.events.find(e => e.op === 'stopped')).toEqual({ op: 'stopped', openForWrite: 0 })
    expect(counts.get('write')).toBeUndefined()
    expect(counts.get('read')).toBeUndefined()
    expect(counts.get('getxattr')).toBeUndefined()
    expect(counts.get('fgetattr')).toBeUndefined() // by the open file's descriptor, hidden or not
    // JS saw only the two lookups of the reserved folder and libfuse's look for a free hidden name
    expect(counts.get('getattr') ?? 0).toBeGreaterThanOrEqual(2)
    expect(counts.get('getattr') ?? 0).toBeLessThanOrEqual(4)
  })

  it('with fuse-native\'s stock prebuild (no compiler at install): explicit times still work in ms, UTIME_OMIT changes nothing, a warning is logged once', async () => {
    const f = await fixture({ env: { ...process.env, PREBUILDS_ONLY: '1' } }) // node-gyp-build then skips build/
    const ready = f.server!.events.find(e => e.op === 'ready')
    expect(ready).toMatchObject({ op: 'ready', fusePatch: 0 })
    expect((ready as { fuseAddon: string }).fuseAddon).toMatch(/\/prebuilds\//)
    expect(f.server!.stderr.match(/stock prebuild is loaded: utimens with one time omitted/g)).toHaveLength(1)
    const p = path.join(f.mnt, 'f')
    await fsp.writeFile(p, '')
    await fsp.utimes(p, 500000000.125, 600000000.5) // distinct times: the stock addon's atime-twice bug is worked around
    const st = await fsp.stat(path.join(f.data, 'f'))
    expect([st.atimeMs, st.mtimeMs]).toEqual([500000000125, 600000000500])
    const mark = f.server!.mark()
    await sh('touch -m -d @700000000 f && touch -a -d @800000000 f', f.mnt) // libfuse2 never calls utimens
    const after = await fsp.stat(path.join(f.data, 'f'))
    expect([after.atimeMs, after.mtimeMs]).toEqual([500000000125, 600000000500])
    expect(f.server!.since(mark).filter(changed('f', 'utimens'))).toEqual([])
  })

  it('extended attributes: set, get, list, remove with flags and errors', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'x')
    await fsp.writeFile(p, '')
    const script = String.raw`
import os, sys, ctypes, errno
p = sys.argv[1]
os.setxattr(p, 'user.a', b'\x00\x01binary\xff')
os.setxattr(p, 'user.b', b'')
def code(f):
    try:
        f(); return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
print(os.getxattr(p, 'user.a').hex())
print(os.getxattr(p, 'user.b').hex() or 'empty')
print(','.join(sorted(os.listxattr(p))))
print(code(lambda: os.getxattr(p, 'user.missing')))
print(code(lambda: os.setxattr(p, 'user.a', b'v', os.XATTR_CREATE)))
print(code(lambda: os.setxattr(p, 'user.new', b'v', os.XATTR_REPLACE)))
print(code(lambda: os.removexattr(p, 'user.missing')))
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(2)
r = libc.getxattr(p.encode(), b'user.a', buf, ctypes.c_size_t(2))
print(errno.errorcode[ctypes.get_errno()] if r < 0 else r)
r = libc.getxattr(p.encode(), b'user.a', None, ctypes.c_size_t(0))
print(r)
r = libc.listxattr(p.encode(), buf, ctypes.c_size_t(2))
print(errno.errorcode[ctypes.get_errno()] if r < 0 else r)
os.removexattr(p, 'user.b')
print(','.join(sorted(os.listxattr(p))))
print(code(lambda: os.getxattr(p + '.nope', 'user.a')))
`
    const r = await py(script, p)
    expect(r.stderr).toBe('')
    expect(r.stdout.split('\n')).toEqual([
      '000162696e617279ff', 'empty', 'user.a,user.b', 'ENODATA', 'EEXIST', 'ENODATA', 'ENODATA', 'ERANGE', '9', 'ERANGE', 'user.a', 'ENOENT', ''
    ])
    const direct = await py('import os,sys; print(os.getxattr(sys.argv[1], "user.a").hex())', path.join(f.data, 'x'))
    expect(direct.stdout.trim()).toBe('000162696e617279ff')
  })
})

describe('errors from the data folder: EPERM from an immutable file', { timeout: TIMEOUT }, () => {
  it('unlink, rename and writes of an immutable file fail with EPERM', async () => {
    const f = await fixture()
    const file = path.join(f.data, 'locked')
    await fsp.writeFile(file, 'x')
    await sh(`chattr +i ${file}`)
    f.cleanups.push(() => run('chattr', ['-i', file]))
    await expectCode(fsp.unlink(path.join(f.mnt, 'locked')), 'EPERM')
    await expectCode(fsp.rename(path.join(f.mnt, 'locked'), path.join(f.mnt, 'moved')), 'EPERM')
    await expectCode(fsp.appendFile(path.join(f.mnt, 'locked'), 'y'), 'EPERM')
    await expectCode(fsp.chmod(path.join(f.mnt, 'locked'), 0o600), 'EPERM')
    await sh(`chattr -i ${file}`)
    await fsp.unlink(path.join(f.mnt, 'locked'))
  })
})

describe('events reported for each mutating operation', { timeout: TIMEOUT }, () => {
  it('reports create, write ranges, mkdir, mknod, symlink, link, rename (both paths), truncate, chmod, chown, utimens, xattr, unlink, rmdir', async () => {
    const f = await fixture()
    const s = f.server!
    const m = (p: string): string => path.join(f.mnt, p)
    await fsp.mkdir(m('dir'))
    await s.waitFor(changed('dir', 'mkdir'), 'mkdir')
    await fsp.writeFile(m('dir/a.txt'), 'x'.repeat(100))
    await s.waitFor(changed('dir/a.txt', 'create'), 'create')
    expect(await s.waitFor(changed('dir/a.txt', 'write'), 'write')).toMatchObject({ ranges: [[0, 100]] })

    // partial overwrite: merged ranges
    let mark = s.mark()
    const fh = await fsp.open(m('dir/a.txt'), 'r+')
    await fh.write('AAAAAAAAAA', 20)
    await fh.write('BBBBBBBBBB', 25)
    await fh.write('CC', 60)
    await fh.write('D', 10)
    await fh.write('E', 11)
    await fh.close()
    expect(await s.waitFor(changed('dir/a.txt', 'write'), 'write ranges', mark)).toMatchObject({ ranges: [[10, 12], [20, 35], [60, 62]] })
    expect(s.since(mark).filter(e => e.op === 'changed' && e.path === 'dir/a.txt' && e.kind === 'write')).toHaveLength(1)

    // a read-only open reports nothing
    mark = s.mark()
    await fsp.readFile(m('dir/a.txt'))

    await sh('mkfifo dir/fifo', f.mnt)
    await s.waitFor(changed('dir/fifo', 'mknod'), 'mknod')
    await fsp.symlink('a.txt', m('dir/sym'))
    await s.waitFor(changed('dir/sym', 'symlink'), 'symlink')
    await fsp.link(m('dir/a.txt'), m('dir/hard'))
    await s.waitFor(changed('dir/hard', 'link'), 'link')
    await fsp.rename(m('dir/a.txt'), m('b.txt'))
    await s.waitFor(renamed('dir/a.txt', 'b.txt'), 'rename')
    await fsp.truncate(m('b.txt'), 3)
    await s.waitFor(changed('b.txt', 'truncate'), 'truncate')
    await fsp.chmod(m('b.txt'), 0o600)
    await s.waitFor(changed('b.txt', 'chmod'), 'chmod')
    await fsp.chown(m('b.txt'), 12, 34)
    await s.waitFor(changed('b.txt', 'chown'), 'chown')
    await fsp.utimes(m('b.txt'), 1, 2)
    await s.waitFor(changed('b.txt', 'utimens'), 'utimens')
    await py('import os,sys; os.setxattr(sys.argv[1], "user.k", b"v"); os.removexattr(sys.argv[1], "user.k")', m('b.txt'))
    await s.waitFor(e => s.events.filter(changed('b.txt', 'xattr')).length === 2, 'two xattr events')
    await fsp.rename(m('dir'), m('dir2'))
    await s.waitFor(renamed('dir', 'dir2'), 'rename dir')
    await fsp.unlink(m('dir2/hard'))
    await s.waitFor(removed('dir2/hard', false), 'unlink')
    await fsp.rm(m('dir2'), { recursive: true })
    await s.waitFor(removed('dir2', true), 'rmdir')
    // nothing for the read-only open above
    expect(s.events.filter(changed('dir/a.txt', 'write'))).toHaveLength(2)
    expect(s.events.filter(e => e.op === 'changed' && e.kind === 'write' && e.path === 'b.txt')).toHaveLength(0)
  })

  // Threads of libfuse creating, writing, renaming (files, and directories others create in) and unlinking
  // at once: replaying the events in the order reported must give the data folder's tree, and no path may
  // be left counted as open for writing. A create reported after a rename that moved it (or a release
  // after the create that got its descriptor back) breaks one or the other.
  it.each([
    { mode: 'notifications', env: {} },
    { mode: 'a queue of one (most notifications wait for JS instead)', env: { SYNCMESH_FUSE_QUEUE_MAX: '1' } },
    { mode: 'SYNCMESH_FUSE_ASYNC=0', env: { SYNCMESH_FUSE_ASYNC: '0' } },
    { mode: 'the addon\'s request loop (SYNCMESH_FUSE_LOOP=lead)', env: { SYNCMESH_FUSE_LOOP: 'lead' } }
  ])('events replayed in order give the data folder\'s tree after concurrent creates, renames and unlinks; $mode', { timeout: 120000 }, async ({ env }) => {
    const f = await fixture({ env: { ...process.env, ...env } })
    const s = f.server!
    const dirs = ['d0', 'd1', 'd2', 'd3']
    for (const d of dirs) await fsp.mkdir(path.join(f.mnt, d))
    const worker = `
import os, sys, random
root, wid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(wid * 7919 + 17)
dirs = ['d0', 'd1', 'd2', 'd3']
for i in range(n):
    r = rnd.random()
    d = rnd.choice(dirs)
    try:
        if r < 0.5:
            p = os.path.join(root, d, 'f%d_%d' % (wid, i))
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b'x' * rnd.randint(1, 3000))
                if rnd.random() < 0.3:  # renamed while open: the writes belong to the new name
                    os.rename(p, os.path.join(root, rnd.choice(dirs), 'g%d_%d' % (wid, i)))
                    os.write(fd, b'y' * 10)
            finally:
                os.close(fd)
        elif r < 0.7:
            names = os.listdir(os.path.join(root, d))
            if names:
                os.rename(os.path.join(root, d, rnd.choice(names)), os.path.join(root, rnd.choice(dirs), 'r%d_%d' % (wid, i)))
        elif r < 0.85:
            names = os.listdir(os.path.join(root, d))
            if names:
                os.unlink(os.path.join(root, d, rnd.choice(names)))
        else:  # a directory moved away and back while the others create in it
            tmp = os.path.join(root, 'tmp%d' % wid)
            os.rename(os.path.join(root, d), tmp)
            os.rename(tmp, os.path.join(root, d))
    except OSError:
        pass
`
    const results = await Promise.all([0, 1, 2, 3].map(w => run(PYTHON, ['-c', worker, f.mnt, String(w), '400'], { timeout: 100000 })))
    for (const r of results) expect(r.stderr).toBe('')
    await fsp.writeFile(path.join(f.mnt, 'last'), 'x') // the last event: everything before it was reported
    await s.waitFor(changed('last', 'write'), 'the last write', 0, 30000)
    await s.stop()
    expect(s.events.find(e => e.op === 'stopped')).toEqual({ op: 'stopped', openForWrite: 0 })
    // replay
    const tree = new Map<string, 'file' | 'dir'>()
    const under = (p: string, root: string): boolean => p === root || p.startsWith(root + '/')
    const drop = (root: string): void => { for (const k of [...tree.keys()]) if (under(k, root)) tree.delete(k) }
    for (const e of s.events) {
      if (e.op === 'changed' && (e.kind === 'create' || e.kind === 'mkdir')) tree.set(e.path, e.kind === 'mkdir' ? 'dir' : 'file')
      else if (e.op === 'removed') drop(e.path)
      else if (e.op === 'renamed') {
        const moved = [...tree].filter(([k]) => under(k, e.from))
        drop(e.from)
        drop(e.to)
        for (const [k, v] of moved) tree.set(e.to + k.slice(e.from.length), v)
      }
    }
    const disk = new Map<string, 'file' | 'dir'>()
    const walk = async (rel: string): Promise<void> => {
      for (const d of await fsp.readdir(path.join(f.data, rel), { withFileTypes: true })) {
        const p = rel === '' ? d.name : `${rel}/${d.name}`
        if (p === '.syncmesh') continue
        disk.set(p, d.isDirectory() ? 'dir' : 'file')
        if (d.isDirectory()) await walk(p)
      }
    }
    await walk('')
    const sorted = (m: Map<string, string>): string[] => [...m].map(([k, v]) => `${v} ${k}`).sort()
    expect(sorted(tree)).toEqual(sorted(disk))
    expect(disk.size).toBeGreaterThan(100)
  })

  // The addon's request loop (level 6) has one thread read and serve requests; before a request waits for
  // JS it hands the reading over to another thread. So while JS is busy inside one request (serve.js blocks
  // its event loop in the report of 'slow'), requests answered in C still are, by another thread.
  it('while a request waits for a busy JS, getattr, open and read (answered in C) go on; a read that must wait for the disk is whole', { timeout: 60000 }, async () => {
    const f = await fixture({ env: { ...process.env, SYNCMESH_SERVE_BLOCK_ON: 'slow', SYNCMESH_SERVE_BLOCK_MS: '4000' } })
    const s = f.server!
    const big = Buffer.alloc(3 * 1024 * 1024)
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i)
    await fsp.writeFile(path.join(f.mnt, 'a'), 'hello')
    await fsp.writeFile(path.join(f.mnt, 'big'), big)
    const mkdir = fsp.mkdir(path.join(f.mnt, 'slow'))
    let mkdirDone = false
    void mkdir.then(() => { mkdirDone = true }, () => { mkdirDone = true })
    await s.waitFor(e => e.op === 'blocking', 'JS blocked in the mkdir')
    for (let i = 0; i < 10; i++) {
      expect(await fsp.readFile(path.join(f.mnt, 'a'), 'utf8')).toBe('hello')
      expect((await fsp.stat(path.join(f.mnt, 'big'))).size).toBe(big.length)
    }
    // the pages of the data folder's file dropped: the loop's thread hands over before reading from disk
    const dropped = await py('import os,sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)', path.join(f.data, 'big'))
    expect(dropped.stderr).toBe('')
    expect((await fsp.readFile(path.join(f.mnt, 'big'))).equals(big)).toBe(true)
    expect(mkdirDone).toBe(false)
    await mkdir
    expect((await fsp.stat(path.join(f.data, 'slow'))).isDirectory()).toBe(true)
    await fsp.writeFile(path.join(f.mnt, 'after'), 'x')
    await s.waitFor(changed('after', 'write'), 'the write after')
  })

  // The order lock: a create that finds it held by a request waiting for JS sleeps until it is free (it once
  // retried in a loop, burning a CPU for as long as JS was busy). serve.js blocks its event loop in the
  // report of the mkdir of 'slow', which holds the order lock; the serving process's CPU time is measured
  // over a window while a create waits for the lock.
  it.each(LOOPS)('a create waiting for the order lock while JS is busy sleeps (no CPU burnt); $mode', { timeout: 60000 }, async ({ env }) => {
    const f = await fixture({ env: { ...process.env, ...env, SYNCMESH_SERVE_BLOCK_ON: 'slow', SYNCMESH_SERVE_BLOCK_MS: '4000' } })
    const s = f.server!
    const pid = s.child.pid!
    // the create is made in a folder of its own: the kernel holds the root folder's lock during the mkdir
    // there (and a lookup that is not cached needs it), so 'd' is looked up before
    await fsp.mkdir(path.join(f.data, 'd'))
    expect((await fsp.stat(path.join(f.mnt, 'd'))).isDirectory()).toBe(true)
    const mkdir = fsp.mkdir(path.join(f.mnt, 'slow'))
    await s.waitFor(e => e.op === 'blocking', 'JS blocked in the mkdir')
    const create = fsp.writeFile(path.join(f.mnt, 'd', 'new'), 'x')
    let createDone = false
    void create.then(() => { createDone = true }, () => { createDone = true })
    const start = Date.now()
    const cpu0 = await cpuSeconds(pid)
    // the measurement window (the event loop of the server stays blocked for 4 s)
    while (Date.now() - start < 1500) await delay(100)
    const used = (await cpuSeconds(pid)) - cpu0
    expect(createDone).toBe(false) // it did wait for the lock all along
    expect(used).toBeLessThan(0.3)
    await mkdir
    await create
    await s.waitFor(changed('d/new', 'create'), 'the create')
  })

  // libfuse write-locks the node a rename, unlink or rmdir works on until JS has served it, and makes
  // requests on paths under that node wait (in libfuse, before the file system sees them). The addon's loop
  // hands the reading over before such a request may wait, so requests on other paths go on: here JS is
  // busy in the report of a rename of the folder d (serve.js blocks in it), a read of a file under d waits,
  // and a stat of another file must still be answered at once.
  it.each(LOOPS)('while JS is busy in a rename, a read under the renamed folder waits and a stat of another path is answered at once; $mode', { timeout: 60000 }, async ({ env }) => {
    const f = await fixture({ env: { ...process.env, ...env, SYNCMESH_SERVE_BLOCK_ON: 'e', SYNCMESH_SERVE_BLOCK_MS: '4000' } })
    const s = f.server!
    await fsp.mkdir(path.join(f.data, 'd'))
    await fsp.writeFile(path.join(f.data, 'd', 'f'), 'under d')
    await fsp.writeFile(path.join(f.data, 'other'), 'other')
    const reader = spawnPython(`
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
sys.stdout.write('open\\n'); sys.stdout.flush()
sys.stdin.readline()
sys.stdout.write(os.pread(fd, 100, 0).decode() + '\\n'); sys.stdout.flush()
`, path.join(f.mnt, 'd', 'f'))
    f.cleanups.push(async () => { reader.child.kill('SIGKILL') })
    await reader.waitLine('open')
    expect((await fsp.stat(path.join(f.mnt, 'other'))).size).toBe(5)
    const rename = fsp.rename(path.join(f.mnt, 'd'), path.join(f.mnt, 'e'))
    let renameDone = false
    void rename.then(() => { renameDone = true }, () => { renameDone = true })
    await s.waitFor(e => e.op === 'blocking', 'JS blocked in the rename')
    reader.child.stdin!.write('\n')
    await waitUntil(async () => await inSyscall(reader.child.pid!, 'pread64'), 'the read under d to be waiting')
    const t0 = Date.now()
    expect((await fsp.stat(path.join(f.mnt, 'other'))).size).toBe(5)
    const took = Date.now() - t0
    expect(took).toBeLessThan(1000)
    expect(renameDone).toBe(false)
    await rename
    expect(await reader.waitLine('under d')).toBe('under d')
  })

  // More requests waiting at once than the loop once allowed threads (10): sixteen here (the mkdir of 'slow'
  // waiting for JS, fifteen creates in folders of their own waiting for the order lock it holds); a stat
  // must still be answered by another thread.
  it.each(LOOPS)('with sixteen requests waiting (for JS, for the order lock), a stat is still answered at once; $mode', { timeout: 60000 }, async ({ env }) => {
    const f = await fixture({ env: { ...process.env, SYNCMESH_SERVE_BLOCK_ON: 'slow', SYNCMESH_SERVE_BLOCK_MS: '4000', ...env } })
    const s = f.server!
    const N = 15
    for (let i = 0; i < N; i++) await fsp.mkdir(path.join(f.data, `d${i}`))
    await fsp.writeFile(path.join(f.data, 'other'), 'other')
    // looked up before the mkdir: the kernel holds the root folder's lock during it, which a lookup that is
    // not cached needs (and the creates are made in folders of their own, whose locks the kernel takes)
    for (let i = 0; i < N; i++) expect((await fsp.stat(path.join(f.mnt, `d${i}`))).isDirectory()).toBe(true)
    expect((await fsp.stat(path.join(f.mnt, 'other'))).size).toBe(5)
    const mkdir = fsp.mkdir(path.join(f.mnt, 'slow'))
    await s.waitFor(e => e.op === 'blocking', 'JS blocked in the mkdir')
    const creators = spawnPython(`
import os, sys, threading
root, n = sys.argv[1], int(sys.argv[2])
def create(i):
    os.close(os.open(os.path.join(root, 'd%d' % i, 'new'), os.O_WRONLY | os.O_CREAT, 0o644))
ts = [threading.Thread(target=create, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
sys.stdout.write('created\\n'); sys.stdout.flush()
`, f.mnt, String(N))
    f.cleanups.push(async () => { creators.child.kill('SIGKILL') })
    // every creating thread is inside its open(2) (in the kernel, or its request served and waiting for the lock)
    await waitUntil(async () => (await syscallsOfThreads(creators.child.pid!)).filter(n => n === 'openat').length === N, `${N} creates to be waiting`)
    const t0 = Date.now()
    expect((await fsp.stat(path.join(f.mnt, 'other'))).size).toBe(5)
    const took = Date.now() - t0
    expect(took).toBeLessThan(1000)
    await mkdir
    await creators.waitLine('created')
    for (let i = 0; i < N; i++) await s.waitFor(changed(`d${i}/new`, 'create'), `the create in d${i}`)
  })

  // Reads of small files in the page cache are served by the loop's leader itself: the kernel asks a whole
  // page (or more) of a 6-byte file, and the short count from the page cache is the end of the file, not
  // "the rest is on the disk" (the addon counts hand-overs of the lead, logged with SYNCMESH_FUSE_STATS=1).
  it('reads of small cached files do not hand the addon\'s request loop over', { timeout: 60000 }, async () => {
    const f = await fixture({ env: { ...process.env, SYNCMESH_FUSE_STATS: '1', SYNCMESH_FUSE_LOOP: 'lead' } })
    const s = f.server!
    const N = 100
    for (let i = 0; i < N; i++) await fsp.writeFile(path.join(f.data, `s${i}`), `small${i % 10}`)
    for (let i = 0; i < N; i++) await fsp.readFile(path.join(f.data, `s${i}`)) // in the page cache
    for (let i = 0; i < N; i++) expect(await fsp.readFile(path.join(f.mnt, `s${i}`), 'utf8')).toBe(`small${i % 10}`)
    await s.stop()
    const m = /request loop: (\d+) hand-overs/.exec(s.stderr)
    expect(m).not.toBeNull()
    expect(Number(m![1])).toBeLessThan(N / 4)
  })

  it('sequential writes of a large file report one merged range', async () => {
    const f = await fixture()
    const buf = Buffer.alloc(1024 * 1024, 1)
    const fh = await fsp.open(path.join(f.mnt, 'big'), 'w')
    for (let i = 0; i < 8; i++) await fh.write(buf, 0, buf.length, i * buf.length)
    await fh.close()
    expect(await f.server!.waitFor(changed('big', 'write'), 'write')).toMatchObject({ ranges: [[0, 8 * 1024 * 1024]] })
  })
})

describe('real programs in the mount', { timeout: 120000 }, () => {
  /** A source tree outside the mount: files, nested dirs, symlinks, a hard link, an executable, old mtimes (one with nanoseconds). */
  async function makeTree (dir: string): Promise<void> {
    await fsp.mkdir(path.join(dir, 'sub/deeper'), { recursive: true })
    await fsp.writeFile(path.join(dir, 'readme.txt'), 'hello tree\n')
    await fsp.writeFile(path.join(dir, 'sub/data.bin'), Buffer.alloc(300000, 7))
    await fsp.writeFile(path.join(dir, 'sub/deeper/run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 })
    await fsp.writeFile(path.join(dir, 'sub/empty'), '')
    await fsp.chmod(path.join(dir, 'sub/empty'), 0o600)
    await fsp.symlink('../readme.txt', path.join(dir, 'sub/link'))
    await fsp.link(path.join(dir, 'readme.txt'), path.join(dir, 'hardlink.txt'))
    for (const p of ['readme.txt', 'sub/data.bin', 'sub/deeper/run.sh', 'sub/empty']) await fsp.utimes(path.join(dir, p), 1500000000, 1500000000 + p.length)
    await fsp.writeFile(path.join(dir, 'sub/ns.txt'), 'nanoseconds\n')
    await sh("touch -d '@1450000000.123456789' sub/ns.txt", dir)
    await fsp.utimes(path.join(dir, 'sub/deeper'), 1400000000, 1400000000)
    await fsp.utimes(path.join(dir, 'sub'), 1300000000, 1300000000)
  }

  /** Compares two trees: names, types, contents, modes, link targets, and (when asked) the mtimes of files and directories to the ns. */
  async function expectSameTree (a: string, b: string, opts: { mtimes: boolean }): Promise<void> {
    const walk = async (dir: string, rel = ''): Promise<string[]> => {
      const out: string[] = []
      for (const e of (await fsp.readdir(path.join(dir, rel), { withFileTypes: true })).sort((x, y) => x.name.localeCompare(y.name))) {
        const r = path.join(rel, e.name)
        out.push(r)
        if (e.isDirectory()) out.push(...await walk(dir, r))
      }
      return out
    }
    const la = await walk(a)
    expect(await walk(b)).toEqual(la)
    for (const r of la) {
      const sa = await fsp.lstat(path.join(a, r))
      const sb = await fsp.lstat(path.join(b, r))
      expect(sb.mode, r).toBe(sa.mode)
      if (sa.isFile()) expect((await fsp.readFile(path.join(b, r))).equals(await fsp.readFile(path.join(a, r))), r).toBe(true)
      if (sa.isSymbolicLink()) expect(await fsp.readlink(path.join(b, r)), r).toBe(await fsp.readlink(path.join(a, r)))
      if (opts.mtimes && !sa.isSymbolicLink()) {
        const [na, nb] = [await fsp.lstat(path.join(a, r), { bigint: true }), await fsp.lstat(path.join(b, r), { bigint: true })]
        expect(nb.mtimeNs, r).toBe(na.mtimeNs)
      }
    }
  }

  it('cp -a of a tree keeps contents, modes, links, hard links and mtimes', async () => {
    const f = await fixture()
    const src = path.join(f.root, 'src')
    await makeTree(src)
    await sh(`cp -a ${src} ${path.join(f.mnt, 'copy')}`)
    await expectSameTree(src, path.join(f.data, 'copy'), { mtimes: true })
    await expectSameTree(src, path.join(f.mnt, 'copy'), { mtimes: true })
    const h1 = await fsp.stat(path.join(f.data, 'copy/readme.txt'))
    const h2 = await fsp.stat(path.join(f.data, 'copy/hardlink.txt'))
    expect(h2.ino).toBe(h1.ino)
    await f.server!.waitFor(changed('copy/sub/data.bin', 'write'), 'write of data.bin')
  })

  it('rsync -a into the mount (temp file + rename) keeps the tree', async () => {
    const f = await fixture()
    const src = path.join(f.root, 'src')
    await makeTree(src)
    const r = await run('rsync', ['-aH', `${src}/`, `${path.join(f.mnt, 'synced')}/`])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    await expectSameTree(src, path.join(f.data, 'synced'), { mtimes: true })
    await f.server!.waitFor(e => e.op === 'renamed' && e.to === 'synced/sub/data.bin', 'rename of rsync temp file onto data.bin')
    // a second run finds nothing to do
    const again = await run('rsync', ['-aHi', `${src}/`, `${path.join(f.mnt, 'synced')}/`])
    expect(again.stdout).toBe('')
  })

  it('tar x extracts contents, modes and mtimes (tar sets mtime with atime omitted; pax keeps nanoseconds)', async () => {
    const f = await fixture()
    const src = path.join(f.root, 'src')
    await makeTree(src)
    await sh(`tar --format=posix -cf ${path.join(f.root, 't.tar')} -C ${src} .`)
    await fsp.mkdir(path.join(f.mnt, 'x'))
    await sh(`tar xf ${path.join(f.root, 't.tar')} -C ${path.join(f.mnt, 'x')}`)
    await expectSameTree(src, path.join(f.data, 'x'), { mtimes: true })
    await expectSameTree(src, path.join(f.mnt, 'x'), { mtimes: true })
  })

  it('git init, add, commit, status and fsck inside the mount', async () => {
    const f = await fixture()
    const repo = path.join(f.mnt, 'repo')
    await fsp.mkdir(repo)
    await sh([
      'git init -q -b main .',
      'git config user.email t@example.com && git config user.name Tester',
      'printf "one\\n" > a.txt && mkdir -p src && printf "x = 1\\n" > src/x.py',
      'git add -A && git commit -q -m first',
      'printf "two\\n" >> a.txt && git commit -q -am second',
      'git mv src/x.py src/y.py && git commit -q -m rename',
      'git gc -q'
    ].join(' && '), repo)
    expect(await sh('git status --porcelain', repo)).toBe('')
    expect((await sh('git log --oneline', repo)).trim().split('\n')).toHaveLength(3)
    await sh('git fsck --strict --no-progress', repo)
    expect(await sh('git show HEAD~1:a.txt', repo)).toBe('one\ntwo\n')
    // the same repository is intact in the data folder
    expect(await sh('git status --porcelain && git rev-parse HEAD', path.join(f.data, 'repo'))).toBe(await sh('git rev-parse HEAD', repo))
  })

  it('sqlite3: rollback journal and WAL databases in the mount', async () => {
    const f = await fixture()
    const db = path.join(f.mnt, 'test.db')
    const sql = 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); BEGIN; ' +
      Array.from({ length: 500 }, (_, i) => `INSERT INTO t(v) VALUES ('row ${i} ${'x'.repeat(i % 50)}');`).join(' ') +
      ' COMMIT; UPDATE t SET v = v || \'!\' WHERE id % 3 = 0; DELETE FROM t WHERE id % 7 = 0;'
    await run('sqlite3', [db, sql])
    expect((await run('sqlite3', [db, 'SELECT count(*) FROM t; PRAGMA integrity_check;'])).stdout).toBe('429\nok\n')
    const wal = path.join(f.mnt, 'wal.db')
    expect((await run('sqlite3', [wal, 'PRAGMA journal_mode=WAL;'])).stdout).toBe('wal\n')
    await run('sqlite3', [wal, sql])
    expect((await run('sqlite3', [wal, 'SELECT count(*) FROM t; PRAGMA integrity_check;'])).stdout).toBe('429\nok\n')
    expect((await run('sqlite3', [path.join(f.data, 'test.db'), 'SELECT count(*) FROM t;'])).stdout).toBe('429\n')
  })

  it('editor-style save: write a temp file, then rename it over the original', async () => {
    const f = await fixture()
    const p = path.join(f.mnt, 'notes.txt')
    await fsp.writeFile(p, 'version 1\n')
    const reader = await fsp.open(p, 'r')
    const mark = f.server!.mark()
    await fsp.writeFile(path.join(f.mnt, '.notes.txt.swp'), 'version 2\n')
    const fh = await fsp.open(path.join(f.mnt, '.notes.txt.swp'), 'r+')
    await fh.sync()
    await fh.close()
    await fsp.rename(path.join(f.mnt, '.notes.txt.swp'), p)
    await f.server!.waitFor(renamed('.notes.txt.swp', 'notes.txt'), 'rename over original', mark)
    expect(await fsp.readFile(p, 'utf8')).toBe('version 2\n')
    expect(await fsp.readFile(path.join(f.data, 'notes.txt'), 'utf8')).toBe('version 2\n')
    expect((await reader.readFile()).toString()).toBe('version 1\n')
    await reader.close()
    expect((await fsp.readdir(f.data)).sort()).toEqual(['.syncmesh', 'notes.txt'])
  })

  it('mv of a directory (rename within the mount, and out of and into it)', async () => {
    const f = await fixture()
    await fsp.mkdir(path.join(f.mnt, 'proj/src'), { recursive: true })
    await fsp.writeFile(path.join(f.mnt, 'proj/src/main.c'), 'int main(){}\n')
    const mark = f.server!.mark()
    await sh('mv proj project && mkdir archive && mv project archive/', f.mnt)
    await f.server!.waitFor(renamed('proj', 'project'), 'mv rename', mark)
    await f.server!.waitFor(renamed('project', 'archive/project'), 'mv into dir', mark)
    expect(await fsp.readFile(path.join(f.data, 'archive/project/src/main.c'), 'utf8')).toBe('int main(){}\n')
    // across the mount boundary mv copies and deletes
    const outside = path.join(f.root, 'outside')
    await sh(`mv ${path.join(f.mnt, 'archive')} ${outside} && mv ${outside} ${path.join(f.mnt, 'back')}`)
    expect(await fsp.readFile(path.join(f.data, 'back/project/src/main.c'), 'utf8')).toBe('int main(){}\n')
    await f.server!.waitFor(removed('archive', true), 'removal of the moved-out dir', mark)
  })
})

describe('mount hygiene and lifecycle', { timeout: 60000 }, () => {
  async function startError (data: string, mnt: string, wrap?: string[]): Promise<Ev> {
    const s = startServer(data, mnt, undefined, wrap)
    const f = fixtures.at(-1)
    f?.servers.push(s)
    const e = await s.waitFor(e => e.op === 'ready' || e.op === 'error', 'ready or error', 0, 20000)
    const exit = await s.exited
    expect(exit.code).toBe(e.op === 'error' ? 1 : 0)
    return e
  }

  it('refuses a missing, non-directory or non-empty mount point with a one-line MountError', async () => {
    const f = await fixture({ serve: false })
    const missing = await startError(f.data, path.join(f.root, 'missing'))
    expect(missing).toMatchObject({ op: 'error', name: 'MountError' })
    expect((missing as { message: string }).message).toMatch(/does not exist/)
    await fsp.writeFile(path.join(f.root, 'file'), '')
    expect(await startError(f.data, path.join(f.root, 'file'))).toMatchObject({ name: 'MountError', message: expect.stringMatching(/not a directory/) })
    await fsp.writeFile(path.join(f.mnt, 'x'), '')
    expect(await startError(f.data, f.mnt)).toMatchObject({ name: 'MountError', message: expect.stringMatching(/not empty/) })
    await fsp.rm(path.join(f.mnt, 'x'))
    expect(await startError(path.join(f.root, 'nodata'), f.mnt)).toMatchObject({ name: 'MountError', message: expect.stringMatching(/data folder/) })
    expect(await startError(f.data, path.join(f.data, 'inside'))).toMatchObject({ name: 'MountError' })
    for (const s of f.servers) expect((s.events.find(e => e.op === 'error') as { message: string }).message).not.toMatch(/\n/)
  })

  it('refuses a mount point that a live file system is mounted on (tmpfs, or another live server)', async () => {
    const f = await fixture()
    const e = await startError(f.data, f.mnt)
    expect(e).toMatchObject({ name: 'MountError', message: expect.stringMatching(/already mounted by a live file system/) })
    const t = path.join(f.root, 'tmpfs')
    await fsp.mkdir(t)
    await sh(`mount -t tmpfs tmpfs ${t}`)
    f.mounts.push(t)
    expect(await startError(f.data, t)).toMatchObject({ name: 'MountError', message: expect.stringMatching(/already mounted.*tmpfs/) })
    // the first server is unaffected
    await fsp.writeFile(path.join(f.mnt, 'ok'), 'ok')
    expect(await fsp.readFile(path.join(f.data, 'ok'), 'utf8')).toBe('ok')
  })

  it('clears a stale mount left by a killed server and mounts again', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.mnt, 'before'), '1')
    f.server!.child.kill('SIGKILL')
    await f.server!.exited
    expect(await mountedAt(f.mnt)).toBe(true)
    await expectCode(fsp.stat(f.mnt), 'ENOTCONN')
    const s2 = startServer(f.data, f.mnt)
    f.servers.push(s2)
    await ready(s2)
    expect(s2.stderr).toMatch(/clearing stale mount/)
    expect(await fsp.readFile(path.join(f.mnt, 'before'), 'utf8')).toBe('1')
    const mountsHere = (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter(l => l.split(' ')[4] === f.mnt)
    expect(mountsHere).toHaveLength(1)
  })

  it('SIGTERM unmounts and exits 0; start/stop are idempotent and restartable in one process', async () => {
    const f = await fixture()
    await fsp.writeFile(path.join(f.mnt, 'x'), 'x')
    f.server!.child.kill('SIGTERM')
    expect(await f.server!.exited).toEqual({ code: 0, signal: null })
    expect(await mountedAt(f.mnt)).toBe(false)
    expect(await fsp.readdir(f.mnt)).toEqual([])

    const script = `
      import { SyncMount } from ${JSON.stringify(path.join(DIST, 'mount.js'))}
      import fs from 'node:fs/promises'
      const events = []
      const sink = { changed: (p, k) => events.push(k + ':' + p), removed: () => {}, renamed: () => {} }
      const m = new SyncMount({ sink }, { dataDir: process.argv[1], mountPoint: process.argv[2] })
      await Promise.all([m.start(), m.start()])
      await m.start()
      const info1 = await fs.readFile('/proc/self/mountinfo', 'utf8')
      await Promise.all([m.stop(), m.stop()])
      await m.stop()
      const info2 = await fs.readFile('/proc/self/mountinfo', 'utf8')
      await m.start()
      await m.stop()
      const count = (info) => info.split('\\n').filter(l => l.split(' ')[4] === process.argv[2]).length
      console.log(JSON.stringify({ mounted: count(info1), after: count(info2), mountedFlag: m.mounted }))
      process.exit(0)
    `
    const r = await run(NODE, ['--input-type=module', '-e', script, f.data, f.mnt])
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toEqual({ mounted: 1, after: 0, mountedFlag: false })
    expect(await mountedAt(f.mnt)).toBe(false)
  })

  it('reports missing /dev/fuse and missing libfuse.so.2 as MountError with the fix', async () => {
    const f = await fixture({ serve: false })
    const noDev = await startError(f.data, f.mnt, ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && exec "$@"', 'sh'])
    expect(noDev).toMatchObject({ name: 'MountError', message: expect.stringMatching(/no \/dev\/fuse/) })
    let lib: string | undefined
    for (const c of ['/lib/x86_64-linux-gnu/libfuse.so.2', '/usr/lib/x86_64-linux-gnu/libfuse.so.2', '/lib64/libfuse.so.2', '/usr/lib/libfuse.so.2']) {
      lib = await fsp.realpath(c).catch(() => undefined)
      if (lib !== undefined) break
    }
    expect(lib).toBeDefined()
    const noLib = await startError(f.data, f.mnt, ['unshare', '-m', 'sh', '-c', `mount --bind /dev/null ${lib ?? ''} && exec "$@"`, 'sh'])
    expect(noLib).toMatchObject({ name: 'MountError', message: 'libfuse.so.2 is missing: apt-get install -y libfuse2 fuse' })
  })
})
