/**
 * Nodes with FUSE mounts (`syncmesh start --mount`), each served by its own child
 * process: everything written through one mount shows up in the other's mount. Needs
 * root, /dev/fuse and libfuse2 (CI installs them). Every test unmounts, also on failure:
 * the node processes are killed and any mount left behind is detached.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, lstat, mkdir, readdir, readFile, readlink, rename, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { waitFor } from '../sim/harness.js'
import { cleanup, onCleanup, requireBuild, run, start, status, tempDir, type Started } from '../lib/proc.js'

const sh = promisify(execFile)
const canMount = process.getuid?.() === 0 && existsSync('/dev/fuse')

beforeAll(requireBuild)
afterEach(cleanup)

async function unmountIfMounted (dir: string): Promise<void> {
  const mounts = await readFile('/proc/mounts', 'utf8')
  if (mounts.split('\n').some((l) => l.split(' ')[1] === dir)) await sh('umount', ['-l', dir]).catch(() => {})
}

interface MNode { home: string, mnt: string, node: Started }

async function mountedPair (): Promise<[MNode, MNode]> {
  const d = await tempDir('syncmesh-fuse-')
  const mk = async (name: string): Promise<{ home: string, mnt: string }> => {
    const home = join(d, name)
    const mnt = join(d, `${name}-mnt`)
    await mkdir(mnt)
    onCleanup(async () => { await unmountIfMounted(mnt) })
    return { home, mnt }
  }
  const a = await mk('a')
  const b = await mk('b')
  await run('init', '--home', a.home)
  await run('init', '--home', b.home, '--key', join(a.home, 'mesh.key'))
  const na = await start('--home', a.home, '--listen', '/ip4/127.0.0.1/tcp/0', '--mount', a.mnt)
  const nb = await start('--home', b.home, '--listen', '/ip4/127.0.0.1/tcp/0', '--mount', b.mnt, '--join', na.addrs[0])
  await waitFor(async () => ((await status(b.home)).peers as unknown[]).length === 1, 15_000, 'b connected to a')
  return [{ ...a, node: na }, { ...b, node: nb }]
}

/** path -> type, mode, mtime and content digest of a tree (read through a mount). */
async function tree (root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`
      const st = await lstat(join(root, p))
      if (st.isSymbolicLink()) out.set(p, `link ${await readlink(join(root, p))}`)
      else if (st.isDirectory()) { out.set(p, `dir ${(st.mode & 0o7777).toString(8)}`); await walk(p) } else {
        out.set(p, `file ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)} ${createHash('sha256').update(await readFile(join(root, p))).digest('hex')}`)
      }
    }
  }
  await walk('')
  return out
}

async function sameTrees (a: string, b: string): Promise<boolean> {
  let ta, tb
  try {
    [ta, tb] = [await tree(a), await tree(b)]
  } catch (err) {
    // a node renamed or removed something while we walked: not settled yet
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
  return ta.size === tb.size && [...ta].every(([k, v]) => tb.get(k) === v)
}

describe.skipIf(!canMount)('two nodes with mounts', () => {
  it('everything written in one mount shows up in the other with the same content, modes, symlinks and mtimes', async () => {
    const [a, b] = await mountedPair()
    await writeFile(join(a.mnt, 'hello.txt'), 'hello')
    await mkdir(join(a.mnt, 'dir/sub'), { recursive: true })
    await writeFile(join(a.mnt, 'dir/sub/data.bin'), randomBytes(3 * 1024 * 1024))
    await writeFile(join(a.mnt, 'script.sh'), '#!/bin/sh\necho hi\n')
    await chmod(join(a.mnt, 'script.sh'), 0o750)
    await symlink('hello.txt', join(a.mnt, 'link'))
    await utimes(join(a.mnt, 'hello.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'))
    await writeFile(join(a.mnt, 'stamped.txt'), 'stamped')
    await sh('touch', ['-m', '-d', '@1600000000.987654321', join(a.mnt, 'stamped.txt')]) // atime UTIME_OMIT, mtime to the ns
    // real programs through the mount
    await sh('cp', ['-a', join(import.meta.dirname, '..', '..', 'src', 'store'), join(a.mnt, 'copied')])
    await sh('git', ['init', '-q', join(a.mnt, 'repo')])
    await writeFile(join(a.mnt, 'repo', 'README'), 'repo in a mount\n')
    await sh('git', ['-C', join(a.mnt, 'repo'), 'add', 'README'])
    await sh('git', ['-C', join(a.mnt, 'repo'), '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'first'])
    await waitFor(async () => await sameTrees(a.mnt, b.mnt), 60_000, 'the mounts agree')
    // touch -m through the mount was captured; the mesh carries the mtime in whole milliseconds
    expect((await stat(join(a.home, 'data', 'stamped.txt'), { bigint: true })).mtimeNs).toBe(1600000000987654321n)
    expect(Math.abs((await stat(join(b.mnt, 'stamped.txt'))).mtimeMs - 1600000000987)).toBeLessThan(0.001)
    // and back: an editor-style save in b (temp file renamed over the original), a directory moved
    await writeFile(join(b.mnt, 'hello.txt.swp'), 'hello, edited in b')
    await rename(join(b.mnt, 'hello.txt.swp'), join(b.mnt, 'hello.txt'))
    await rename(join(b.mnt, 'dir'), join(b.mnt, 'moved'))
    await waitFor(async () => await sameTrees(a.mnt, b.mnt), 60_000, 'the mounts agree again')
    expect(await readFile(join(a.mnt, 'hello.txt'), 'utf8')).toBe('hello, edited in b')
    const { stdout } = await sh('git', ['-C', join(b.mnt, 'repo'), 'log', '--oneline'])
    expect(stdout).toMatch(/first/)
  })

  it('a renamed directory of 2000 files reaches the peer as one batch and transfers no content', async () => {
    const [a, b] = await mountedPair()
    await mkdir(join(a.mnt, 'many'))
    for (let i = 0; i < 2000; i++) await writeFile(join(a.mnt, 'many', `f${i}.txt`), `file number ${i} `.repeat(20))
    await waitFor(async () => (await status(b.home)).files === 2000 && (await status(b.home)).pending.files === 0, 60_000, 'b has the 2000 files')
    const before = await status(b.home)
    await rename(join(a.mnt, 'many'), join(a.mnt, 'renamed'))
    await waitFor(async () => existsSync(join(b.mnt, 'renamed', 'f1999.txt')) && !existsSync(join(b.mnt, 'many')) && (await status(b.home)).pending.files === 0, 60_000, 'b renamed too')
    const after = await status(b.home)
    expect(after.stats.puller.bytesFetched - before.stats.puller.bytesFetched).toBe(0)
    // one announcement: 2000 new paths, 2000 tombstones, the new directory and the old one's tombstone
    expect(after.stats.gossip.received - before.stats.gossip.received).toBe(1)
    expect(after.stats.gossip.recordsReceived - before.stats.gossip.recordsReceived).toBe(4002)
  })

  it('a reader never sees a partial file while a new version is pulled', async () => {
    const [a, b] = await mountedPair()
    const v1 = Buffer.alloc(24 * 1024 * 1024, 1)
    const v2 = Buffer.alloc(24 * 1024 * 1024, 2)
    await writeFile(join(a.mnt, 'big.bin'), v1)
    const digest = (x: Buffer): string => createHash('sha256').update(x).digest('hex')
    await waitFor(async () => existsSync(join(b.mnt, 'big.bin')) && digest(await readFile(join(b.mnt, 'big.bin'))) === digest(v1), 30_000, 'v1 on b')
    await writeFile(join(a.mnt, 'big.bin'), v2)
    const seen = new Set<string>()
    await waitFor(async () => {
      const d = digest(await readFile(join(b.mnt, 'big.bin')))
      seen.add(d)
      return d === digest(v2)
    }, 30_000, 'v2 on b')
    expect([...seen].every((d) => d === digest(v1) || d === digest(v2))).toBe(true)
  })

  it('concurrent writers in one mount all land, on both nodes', async () => {
    const [a, b] = await mountedPair()
    const writers = Array.from({ length: 4 }, (_, w) => sh('sh', ['-c', `for i in $(seq 1 100); do echo "writer ${w} line $i" >> ${join(a.mnt, `log-${w}.txt`)}; echo "$i" > ${join(a.mnt, `w${w}-$i`)}; done`]))
    await Promise.all(writers)
    await waitFor(async () => await sameTrees(a.mnt, b.mnt), 30_000, 'mounts agree')
    for (let w = 0; w < 4; w++) expect((await readFile(join(b.mnt, `log-${w}.txt`), 'utf8')).trim().split('\n')).toHaveLength(100)
  })

  it('a node killed with SIGKILL while a program writes restarts (clearing its stale mount) and the mesh agrees with nothing lost', async () => {
    const [a, b] = await mountedPair()
    const writer = spawn('sh', ['-c', `i=0; while [ $i -lt 3000 ]; do echo "line $i" > ${join(a.mnt, 'w')}-$((i % 300)); i=$((i+1)); done`], { stdio: 'ignore' })
    onCleanup(async () => { writer.kill('SIGKILL') })
    await waitFor(() => existsSync(join(a.home, 'data', 'w-299')), 20_000, 'writer under way')
    a.node.proc.kill('SIGKILL')
    await new Promise<void>((resolve) => writer.on('close', () => resolve()))
    // the mount is dead (ENOTCONN) until the node restarts and clears it
    const a2 = await start('--home', a.home, '--listen', '/ip4/127.0.0.1/tcp/0', '--mount', a.mnt, '--join', b.node.addrs[0])
    const onDisk = new Map<string, string>()
    for (const n of await readdir(join(a.home, 'data'))) if (n.startsWith('w-')) onDisk.set(n, await readFile(join(a.home, 'data', n), 'utf8'))
    expect(onDisk.size).toBeGreaterThan(0)
    await waitFor(async () => {
      for (const [n, c] of onDisk) if (!existsSync(join(b.mnt, n)) || await readFile(join(b.mnt, n), 'utf8') !== c) return false
      return await sameTrees(a.mnt, b.mnt)
    }, 30_000, 'the mesh agrees after the restart')
    a2.proc.kill('SIGTERM')
    expect(await a2.exited).toBe(0)
  })

  it('files created through a mount and still being written when a peer\'s versions of the same paths arrive keep the local write (and the peer\'s)', { timeout: 120_000 }, async () => {
    const [a, b] = await mountedPair()
    const N = 30
    // a: create every file through its mount (served in C, the creation queued for JS) and keep it open
    const holder = spawn('python3', ['-c', `
import os, sys
fds = [os.open(os.path.join(sys.argv[1], 'race-%d' % i), os.O_WRONLY | os.O_CREAT, 0o644) for i in range(${N})]
for i, fd in enumerate(fds): os.write(fd, b'from a %d, first half' % i)
print('ready', flush=True)
sys.stdin.readline()
for i, fd in enumerate(fds): os.write(fd, b', second half')
for fd in fds: os.close(fd)
print('done', flush=True)
`, a.mnt], { stdio: ['pipe', 'pipe', 'inherit'] })
    onCleanup(async () => { holder.kill('SIGKILL') })
    let out = ''
    holder.stdout.setEncoding('utf8')
    holder.stdout.on('data', (c: string) => { out += c })
    await waitFor(() => out.includes('ready'), 20_000, 'a created its files')
    // b: the same paths, written whole, knowing nothing of a's (a has recorded nothing yet)
    const before = (await status(a.home)).stats.gossip.recordsReceived
    for (let i = 0; i < N; i++) await writeFile(join(b.mnt, `race-${i}`), `from b ${i}`)
    await waitFor(async () => (await status(a.home)).stats.gossip.recordsReceived - before >= N, 30_000, 'a heard of b\'s versions')
    // a's puller tries, and leaves them: a's files are open for writing, so nothing may replace them
    const refused = async (): Promise<boolean> => JSON.stringify((await status(a.home)).recentErrors).includes('pull failed: race-')
    await waitFor(refused, 30_000, 'a\'s puller to try the files')
    for (let i = 0; i < N; i++) expect(await readFile(join(a.home, 'data', `race-${i}`), 'utf8')).toBe(`from a ${i}, first half`)
    holder.stdin.write('go\n')
    await waitFor(() => out.includes('done'), 20_000, 'a closed its files')
    // names, contents and mtimes (to the ms: a conflict copy made on a node from its own file takes the
    // record's mtime, as a pulled one does)
    const contents = async (m: string): Promise<string> => {
      const out: string[] = []
      for (const n of (await readdir(m)).sort()) if (n.startsWith('race-')) out.push(`${n} ${Math.floor((await stat(join(m, n))).mtimeMs)} ${await readFile(join(m, n), 'utf8')}`)
      return out.join('\n')
    }
    await waitFor(async () => await contents(a.mnt).catch(() => 'a') === await contents(b.mnt).catch(() => 'b'), 60_000, 'the mounts agree')
    // both writes of every path are kept, on both nodes: one at the path, the other as a conflict copy
    for (const m of [a.mnt, b.mnt]) {
      const contents = new Set<string>()
      for (const n of await readdir(m)) if (n.startsWith('race-')) contents.add(await readFile(join(m, n), 'utf8'))
      for (let i = 0; i < N; i++) {
        expect(contents.has(`from a ${i}, first half, second half`)).toBe(true)
        expect(contents.has(`from b ${i}`)).toBe(true)
      }
    }
  })

  it('a file open for writing through a mount, its content still the recorded one, is not replaced by a peer\'s version until it is closed: both writes are kept', { timeout: 120_000 }, async () => {
    const [a, b] = await mountedPair()
    await writeFile(join(a.mnt, 'open.txt'), 'base')
    await waitFor(async () => existsSync(join(b.mnt, 'open.txt')) && await readFile(join(b.mnt, 'open.txt'), 'utf8') === 'base', 30_000, 'b has the base version')
    // a: open for appending, nothing written yet (the disk still matches a's record)
    const holder = spawn('python3', ['-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
print('ready', flush=True)
sys.stdin.readline()
os.write(fd, b', appended in a')
os.close(fd)
print('done', flush=True)
`, join(a.mnt, 'open.txt')], { stdio: ['pipe', 'pipe', 'inherit'] })
    onCleanup(async () => { holder.kill('SIGKILL') })
    let out = ''
    holder.stdout.setEncoding('utf8')
    holder.stdout.on('data', (c: string) => { out += c })
    await waitFor(() => out.includes('ready'), 20_000, 'a opened the file')
    const before = (await status(a.home)).stats.gossip.recordsReceived
    await writeFile(join(b.mnt, 'open.txt'), 'edited in b')
    await waitFor(async () => (await status(a.home)).stats.gossip.recordsReceived > before, 30_000, 'a heard of b\'s version')
    // a's puller tries, and leaves it: replaced now, the append would go to the old file and be lost
    await waitFor(async () => JSON.stringify((await status(a.home)).recentErrors).includes('pull failed: open.txt: open for writing'), 30_000, 'a\'s puller to find the file open')
    expect(await readFile(join(a.home, 'data', 'open.txt'), 'utf8')).toBe('base')
    holder.stdin.write('go\n')
    await waitFor(() => out.includes('done'), 20_000, 'a closed the file')
    const contents = async (m: string): Promise<string[]> => {
      const all: string[] = []
      for (const n of (await readdir(m)).sort()) if (n.startsWith('open')) all.push(await readFile(join(m, n), 'utf8'))
      return all.sort()
    }
    await waitFor(async () => JSON.stringify(await contents(a.mnt).catch(() => [])) === JSON.stringify(await contents(b.mnt).catch(() => [0])), 60_000, 'the mounts agree')
    expect(await contents(a.mnt)).toEqual(['base, appended in a', 'edited in b'])
  })

  it('refuses a missing, non-empty or already mounted mount point in one line', async () => {
    const d = await tempDir('syncmesh-fuse-')
    await run('init', '--home', join(d, 'h'))
    const missing = await run('start', '--home', join(d, 'h'), '--listen', '/ip4/127.0.0.1/tcp/0', '--mount', join(d, 'nope'))
    expect(missing.code).toBe(1)
    expect(missing.stderr.trim().split('\n')).toHaveLength(1)
    await mkdir(join(d, 'full'))
    await writeFile(join(d, 'full', 'x'), 'x')
    const full = await run('start', '--home', join(d, 'h'), '--listen', '/ip4/127.0.0.1/tcp/0', '--mount', join(d, 'full'))
    expect(full.code).toBe(1)
    expect(full.stderr).toMatch(/not empty/)
    expect((await stat(join(d, 'full', 'x'))).isFile()).toBe(true)
  })
})
