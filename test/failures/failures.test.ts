/**
 * Failures under the node: a damaged database, a full disk, a SIGKILL during writes.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Mesh, waitFor } from '../sim/harness.js'
import { SyncNode } from '../../src/node/node.js'

const run = promisify(execFile)
const BIN = resolve(import.meta.dirname, '../../bin/syncmesh.js')
const isRoot = process.getuid?.() === 0
const cleanups: Array<() => Promise<void>> = []
let mesh: Mesh | null = null

afterEach(async () => {
  // nodes first (they hold files on the test's mounts), then mounts, then folders
  for (const n of mesh?.nodes ?? []) await n.stop().catch(() => {})
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  await mesh?.cleanup()
  mesh = null
})

describe('a damaged database', () => {
  it('is reported clearly, and repair rebuilds it from the data folder and the mesh without re-fetching or conflicts', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    await a.start()
    await b.start({ join: [a.addr()] })
    for (let i = 0; i < 20; i++) await a.write(`docs/f${i}.txt`, `content ${i}`)
    await a.write('big.bin', randomBytes(4 * 1024 * 1024))
    await mesh.waitConverged()
    await b.stop()
    // damage every table file of b's database
    const db = join(b.home, 'db')
    for (const f of await readdir(db)) if (f.startsWith('MANIFEST')) await writeFile(join(db, f), randomBytes(200))
    await expect(SyncNode.open({ home: b.home, listen: ['/ip4/127.0.0.1/tcp/0'] }).then(async (n) => { await n.start() }))
      .rejects.toThrow(/damaged .*syncmesh repair --home/)
    // meanwhile the mesh moves on
    await a.write('docs/f3.txt', 'changed while b was down')
    const { stdout } = await run(process.execPath, [BIN, 'repair', '--home', b.home])
    expect(stdout).toMatch(/moved the old database/)
    await b.start({ join: [a.addr()] })
    await mesh.waitConverged(30_000)
    expect(await b.read('docs/f3.txt')).toBe('changed while b was down')
    expect((await readdir(b.path('docs'))).filter((n) => n.includes('sync-conflict'))).toEqual([])
    // what b had was adopted, not fetched again
    expect(b.n.puller.stats.bytesFetched).toBeLessThan(1024 * 1024)
  })
})

describe.skipIf(!isRoot)('a full disk (tmpfs, needs root)', () => {
  it('keeps the node serving, shows the error, and finishes the pull once space returns', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const small = join(mesh.root, 'small')
    await mkdir(small)
    await run('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', small])
    cleanups.push(async () => { await run('umount', ['-l', small]) })
    const { initHome } = await import('../../src/node/home.js')
    const { SimNode } = await import('../sim/harness.js')
    await initHome(join(small, 'b'), { keyFile: join(a.home, 'mesh.key') })
    const b = new SimNode('b', join(small, 'b'), { maxRetryDelayMs: 1000 })
    mesh.nodes.push(b)
    await a.start()
    await b.start({ join: [a.addr()] })
    await b.write('local.txt', 'b can still write and serve')
    await waitFor(async () => (await a.read('local.txt')) !== null, 10_000, 'a got b\'s file')
    const big = randomBytes(12 * 1024 * 1024)
    await a.write('big.bin', big)
    await waitFor(async () => /ENOSPC|no space/i.test((await b.n.status()).lastError ?? ''), 20_000, 'b reports the full disk')
    // still serving and syncing small things
    await a.write('small.txt', 'tiny')
    await waitFor(async () => (await b.read('small.txt')) === 'tiny', 10_000, 'small file still syncs')
    await run('mount', ['-o', 'remount,size=64m', small])
    await waitFor(async () => (await b.n.store.needCount()) === 0, 30_000, 'pull finished after space returned')
    expect(createHash('sha256').update(await readFile(b.path('big.bin'))).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'))
  })
})

describe('SIGKILL during heavy writes', () => {
  it('loses no write that reached the data folder: after a restart the mesh agrees', async () => {
    const d = await mkdtemp(join(tmpdir(), 'syncmesh-kill-'))
    cleanups.push(async () => { await rm(d, { recursive: true, force: true }) })
    const a = join(d, 'a')
    const b = join(d, 'b')
    await run(process.execPath, [BIN, 'init', '--home', a])
    await run(process.execPath, [BIN, 'init', '--home', b, '--key', join(a, 'mesh.key')])
    const start = async (home: string, ...args: string[]): Promise<{ proc: ChildProcess, addr: string }> => {
      const proc = spawn(process.execPath, [BIN, 'start', '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      cleanups.push(async () => { if (proc.exitCode == null && proc.signalCode == null) proc.kill('SIGKILL') })
      let out = ''
      proc.stdout!.on('data', (x: Buffer) => { out += x.toString() })
      proc.stderr!.resume()
      await waitFor(() => out.includes('/p2p/'), 20_000, 'node started')
      return { proc, addr: out.split('\n')[0] }
    }
    const na = await start(a)
    const nb = await start(b, '--join', na.addr)
    // write steadily, kill a in the middle of it
    const written = new Map<string, string>()
    let i = 0
    const writer = (async () => {
      for (; i < 400; i++) {
        const content = `file ${i} ${randomBytes(8).toString('hex')}`.repeat(1 + (i % 7) * 50)
        await mkdir(join(a, 'data', `d${i % 10}`), { recursive: true })
        await writeFile(join(a, 'data', `d${i % 10}`, `f${i}.txt`), content)
        written.set(`d${i % 10}/f${i}.txt`, content)
      }
    })()
    await waitFor(() => i >= 150, 20_000, 'writes under way')
    na.proc.kill('SIGKILL')
    await writer
    const na2 = await start(a)
    await run(process.execPath, [BIN, 'join', '--home', b, na2.addr])
    await waitFor(async () => {
      for (const [p, content] of written) {
        try { if (await readFile(join(b, 'data', p), 'utf8') !== content) return false } catch { return false }
      }
      return true
    }, 60_000, 'every write reached the other node')
    nb.proc.kill('SIGTERM')
    na2.proc.kill('SIGTERM')
  })
})
