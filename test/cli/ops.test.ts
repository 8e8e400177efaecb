/**
 * Operating a node from the command line: structured logs, --metrics, status --watch and
 * doctor, on real child processes (compiled code: `npm test` builds first).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { chmod, mkdir, writeFile, readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { waitFor } from '../sim/harness.js'
import { BIN, cleanup, onCleanup, requireBuild, run, start, startUnder, status, tempDir } from '../lib/proc.js'
import { HEAP_FLOOR_FLAG, MALLOC_TUNABLES } from '../../src/node/gc.js'

beforeAll(requireBuild)
afterEach(cleanup)

/** Two joined nodes on 127.0.0.1 in a fresh temp folder. */
async function twoNodes (...extraA: string[]): Promise<{ a: string, b: string, na: Awaited<ReturnType<typeof start>>, nb: Awaited<ReturnType<typeof start>> }> {
  const d = await tempDir()
  const a = join(d, 'a')
  const b = join(d, 'b')
  expect((await run('init', '--home', a)).code).toBe(0)
  expect((await run('init', '--home', b, '--key', join(a, 'mesh.key'))).code).toBe(0)
  const na = await start('--home', a, '--listen', '/ip4/127.0.0.1/tcp/0', ...extraA)
  const nb = await start('--home', b, '--listen', '/ip4/127.0.0.1/tcp/0', '--join', na.addrs[0])
  return { a, b, na, nb }
}

function peerIdOf (addr: string): string {
  return addr.slice(addr.lastIndexOf('/p2p/') + 5)
}

async function fuseHere (): Promise<boolean> {
  if (!existsSync('/dev/fuse')) return false
  try { await import('fuse-native'); return true } catch { return false }
}

describe('operating a node', () => {
  it('out of inotify watches: says so once, not per directory at every scan, and the rescan finds the changes the watcher cannot', async () => {
    const d = await tempDir()
    const home = join(d, 'n')
    expect((await run('init', '--home', home)).code).toBe(0)
    const config = JSON.parse(await readFile(join(home, 'config.json'), 'utf8')) as Record<string, unknown>
    await writeFile(join(home, 'config.json'), JSON.stringify({ ...config, rescanIntervalMs: 300 }))
    const dirs = Array.from({ length: 10 }, (_, i) => `d${i}`)
    for (const dir of dirs) {
      await mkdir(join(home, 'data', dir))
      await writeFile(join(home, 'data', dir, 'old'), dir)
    }
    // a user namespace of its own, whose limit is 4 watches (the data folder and 3 of the 10 directories)
    const limited = ['unshare', '--user', '--map-root-user', 'sh', '-c', 'echo 4 > /proc/sys/user/max_inotify_watches && exec "$0" "$@"']
    const n = await startUnder(limited, '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0')
    await waitFor(async () => (await status(home)).files === 10, 10_000, 'the files of the 10 directories recorded')
    for (const dir of dirs) await writeFile(join(home, 'data', dir, 'new'), dir)
    await waitFor(async () => (await status(home)).files === 20, 10_000, 'a new file in each directory recorded, watched or not')
    // a few more rescans, each meeting the 7 directories it cannot watch
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const said = n.stderr().split('\n').filter((l) => l.includes('inotify')).map((l) => (JSON.parse(l) as { msg: string }).msg)
    expect(said).toHaveLength(1)
    expect(said[0]).toMatch(/limit of inotify watches \(fs\.inotify\.max_user_watches = \d+\) is reached at "d\d": .*sysctl -w fs\.inotify\.max_user_watches=N/)
    // the start-up scan says what it looked at (the 10 directories and their files)
    expect(n.stderr()).toMatch(/"msg":"start-up scan of the data folder: 20 entries in \d+\.\d s"/)
    const st = await status(home)
    expect(st.lastError).toMatch(/inotify watches/)
    expect(st.stats.scanner.unwatchedDirs).toBe(7)
    expect((await run('status', '--home', home)).stdout).toMatch(/^scan +last full scan \d+\.\d s; 7 directories not watched \(out of inotify watches\)$/m)
  })

  it('logs JSON lines on stderr (not a terminal), stdout has the addresses only; --metrics serves Prometheus text', async () => {
    const { na, nb, b } = await twoNodes('--log-level', 'debug', '--metrics', '127.0.0.1:0')
    expect(na.addrs.every((l) => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo/.test(l))).toBe(true)
    // the node re-executed itself with V8's heap floor: the same process, the flag now on its command line
    expect((await readFile(`/proc/${na.proc.pid!}/cmdline`, 'utf8')).split('\0')).toEqual(expect.arrayContaining([HEAP_FLOOR_FLAG, 'start', '--metrics']))
    // the allocator's settings: glibc rewrites the variable as it reads it (Debian's 2.36 leaves the first
    // setting in it, all three in effect: ld.so --list-tunables), so only its start is checked
    const tunables = (await readFile(`/proc/${na.proc.pid!}/environ`, 'utf8')).split('\0').find((v) => v.startsWith('GLIBC_TUNABLES='))
    expect(tunables).toMatch(/^GLIBC_TUNABLES=glibc\.malloc\.\w+=\d+/)
    expect(`GLIBC_TUNABLES=${MALLOC_TUNABLES}`.startsWith(tunables!)).toBe(true)
    await waitFor(() => na.stderr().includes('peer connected'), 10_000, 'a logged the connection')
    const lines = na.stderr().trim().split('\n')
    for (const l of lines) {
      const e = JSON.parse(l) as { level: string, msg: string, time: string }
      expect(['debug', 'info', 'warn', 'error']).toContain(e.level)
      expect(typeof e.msg).toBe('string')
    }
    const connected = lines.map((l) => JSON.parse(l) as { msg: string, peer?: string }).find((e) => e.msg === 'peer connected')
    expect(connected?.peer).toBe(peerIdOf(nb.addrs[0]))
    // info is the default level: no debug lines from b
    expect(nb.stderr()).not.toMatch(/"level":"debug"/)

    const started = lines.map((l) => JSON.parse(l) as { metrics?: string }).find((e) => e.metrics != null)
    expect(started?.metrics).toMatch(/^127\.0\.0\.1:\d+$/)
    const res = await fetch(`http://${started!.metrics!}/metrics`)
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toMatch(/^syncmesh_blocks_served_total \d+$/m)
    expect(text).toMatch(/^libp2p_/m)
    // the status names where metrics are served
    const st = JSON.parse((await run('status', '--home', b, '--json')).stdout) as { metrics: unknown, recentErrors: unknown[] }
    expect(st.metrics).toBeNull()
    expect(Array.isArray(st.recentErrors)).toBe(true)

    const bad = await run('start', '--home', b, '--metrics', 'nonsense')
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    const badLevel = await run('start', '--home', b, '--log-level', 'loud')
    expect(badLevel.code).toBe(2)
  })

  it('status --watch prints a frame per second with the peers (no clear codes when stdout is not a terminal) until SIGINT', async () => {
    const { a, b, na } = await twoNodes()
    await writeFile(join(a, 'data', 'w.txt'), 'watch me')
    await waitFor(() => existsSync(join(b, 'data', 'w.txt')), 15_000, 'file replicated')
    const p = spawn(process.execPath, [BIN, 'status', '--home', b, '--watch'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)))
    onCleanup(async () => { if (p.exitCode == null && p.signalCode == null) { p.kill('SIGKILL'); await exited } })
    let out = ''
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    const aPeer = peerIdOf(na.addrs[0])
    // two frames, the peer in them with its latency
    await waitFor(() => (out.match(/^syncmesh status /gm) ?? []).length >= 2 && out.includes(aPeer), 15_000, `two frames naming the peer (got: ${out})`)
    const frame = out.split(/\n(?=syncmesh status )/)[0]
    expect(frame).toMatch(new RegExp(`peers\\s+1 connected\\n\\s+${aPeer}\\s+(\\d+|\\?) ms`))
    expect(frame).toMatch(/files\s+1 files/)
    expect(frame).toMatch(/errors\s+none/)
    expect(out).not.toContain('\x1b[')
    p.kill('SIGINT')
    expect(await exited).toBe(0)

    // no node: one line, exit 1, as for status
    const none = await run('status', '--home', join(a, '..', 'nowhere'), '--watch')
    expect(none.code).toBe(1)
    expect(none.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('doctor reports a missing /dev/fuse and a key others can read as failures', async () => {
    const d = await tempDir()
    const home = join(d, 'h')
    await run('init', '--home', home)
    await chmod(join(home, 'mesh.key'), 0o644)
    const r = await new Promise<{ code: number | null, stdout: string }>((resolve, reject) => {
      const p = spawn(process.execPath, [BIN, 'doctor', '--home', home], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SYNCMESH_DEV_FUSE: join(d, 'no-such-fuse') } })
      let stdout = ''
      p.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
      p.on('error', reject)
      p.on('close', (code) => resolve({ code, stdout }))
    })
    expect(r.code).toBe(1)
    const lines = r.stdout.trim().split('\n')
    for (const l of lines) expect(l).toMatch(/^(ok|warn|fail)\s+\S+\s+\S/)
    expect(lines.find((l) => /^fail\s+fuse\s/.test(l))).toMatch(/no-such-fuse/)
    expect(lines.find((l) => /^fail\s+key\s/.test(l))).toMatch(/mesh\.key can be read by other users \(mode 644\)/)
    expect(lines.find((l) => /^\w+\s+key\s.*identity\.key/.test(l))).toMatch(/^ok/)
  })

  it('doctor reports ok on a healthy home, stopped and running (ports, mount, clocks)', async () => {
    const d = await tempDir()
    const home = join(d, 'h')
    await run('init', '--home', home)
    const cfg = JSON.parse(await readFile(join(home, 'config.json'), 'utf8')) as Record<string, unknown>
    await writeFile(join(home, 'config.json'), JSON.stringify({ ...cfg, listen: ['/ip4/127.0.0.1/tcp/0'] }))
    const fuse = await fuseHere()
    const check = (r: { code: number | null, stdout: string }): string[] => {
      const lines = r.stdout.trim().split('\n')
      for (const l of lines) expect(l).toMatch(/^(ok|warn|fail)\s+\S+\s+\S/)
      const failed = lines.filter((l) => l.startsWith('fail'))
      // without FUSE on this machine only the FUSE checks may fail
      if (fuse) expect(failed).toEqual([])
      else for (const l of failed) expect(l).toMatch(/^fail\s+(fuse|libfuse)\s/)
      expect(r.code).toBe(failed.length === 0 ? 0 : 1)
      return lines
    }
    const stopped = check(await run('doctor', '--home', home))
    expect(stopped.find((l) => /\snode\s/.test(l))).toMatch(/^ok\s+node\s+not running/)
    expect(stopped.find((l) => /\sport\s/.test(l))).toMatch(/^ok/)

    // running, with a peer: the node answers for its ports and the clock offsets
    const other = join(d, 'o')
    await run('init', '--home', other, '--key', join(home, 'mesh.key'))
    const no = await start('--home', other, '--listen', '/ip4/127.0.0.1/tcp/0')
    const nh = await start('--home', home, '--join', no.addrs[0])
    await waitFor(async () => {
      const r = await run('status', '--home', home, '--json')
      return r.code === 0 && (JSON.parse(r.stdout) as { peers: unknown[] }).peers.length === 1
    }, 15_000, 'connected')
    const running = check(await run('doctor', '--home', home))
    expect(running.find((l) => /\snode\s/.test(l))).toMatch(/^ok\s+node\s+running/)
    const port = nh.addrs[0].split('/')[4]
    expect(running.find((l) => /\sport\s/.test(l))).toMatch(new RegExp(`^ok\\s+port\\s+127\\.0\\.0\\.1 tcp ${port} listening`))
    expect(running.find((l) => /\sclock\s/.test(l))).toMatch(new RegExp(`^ok\\s+clock\\s+${peerIdOf(no.addrs[0])}: [+-]\\d+ ms`))
    expect(running.find((l) => /\sdisk\s/.test(l))).toMatch(/^(ok|warn)\s+disk/)
  })
})
