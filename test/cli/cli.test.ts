/**
 * The command line as users drive it: real child processes of bin/syncmesh.js (compiled
 * code: `npm test` builds first), real homes in temp folders.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readFile, stat, writeFile, chmod, readdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { waitFor } from '../sim/harness.js'
import { cleanup, onCleanup, requireBuild, run, runEnv, start, tempDir } from '../lib/proc.js'

beforeAll(requireBuild)
afterEach(cleanup)

describe('syncmesh CLI', () => {
  it('init makes a home with private keys and refuses to init it twice', async () => {
    const home = join(await tempDir(), 'home')
    const r = await run('init', '--home', home)
    expect(r.code).toBe(0)
    for (const f of ['identity.key', 'mesh.key']) expect((await stat(join(home, f))).mode & 0o777).toBe(0o600)
    expect((await stat(join(home, 'data'))).isDirectory()).toBe(true)
    const before = await readFile(join(home, 'mesh.key'), 'utf8')
    const again = await run('init', '--home', home)
    expect(again.code).not.toBe(0)
    expect(again.stderr.trim().split('\n')).toHaveLength(1)
    expect(again.stderr).toMatch(/already a syncmesh home/)
    expect(await readFile(join(home, 'mesh.key'), 'utf8')).toBe(before)
  })

  it('init --key copies the mesh key; a bad key file is refused in one line', async () => {
    const d = await tempDir()
    expect((await run('init', '--home', join(d, 'a'))).code).toBe(0)
    expect((await run('init', '--home', join(d, 'b'), '--key', join(d, 'a', 'mesh.key'))).code).toBe(0)
    expect(await readFile(join(d, 'b', 'mesh.key'), 'utf8')).toBe(await readFile(join(d, 'a', 'mesh.key'), 'utf8'))
    await writeFile(join(d, 'bad.key'), 'not a key\n')
    const bad = await run('init', '--home', join(d, 'c'), '--key', join(d, 'bad.key'))
    expect(bad.code).toBe(1)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    expect(existsSync(join(d, 'c'))).toBe(false)
  })

  it('keeps its compile cache in the user\'s cache folder; a folder that cannot be made means no cache, not a hang', async () => {
    const d = await tempDir()
    const home = join(d, 'home')
    expect((await run('init', '--home', home)).code).toBe(0)
    const ok = await runEnv({ XDG_CACHE_HOME: join(d, 'cache') }, 'status', '--home', home)
    expect(ok.stderr).toMatch(/no node is running/)
    expect(await readdir(join(d, 'cache', 'syncmesh', 'compile-cache'))).not.toHaveLength(0)
    // Node's own recursive mkdir spins forever under /proc
    const none = await runEnv({ XDG_CACHE_HOME: '/proc/syncmesh-no-such-folder' }, 'status', '--home', home)
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/no node is running/)
    const homeless = await runEnv({ HOME: undefined, XDG_CACHE_HOME: undefined }, 'status', '--home', home)
    expect(homeless.stderr).toMatch(/no node is running/)
  })

  it('user mistakes get one line and a non-zero exit, never a stack trace', async () => {
    const d = await tempDir()
    const cases: string[][] = [
      ['start', '--bogus'],
      ['frobnicate'],
      ['status', '--home', join(d, 'missing')],
      ['start', '--home', join(d, 'missing')],
      ['join', '--home', d]
    ]
    for (const args of cases) {
      const r = await run(...args)
      expect(r.code, args.join(' ')).not.toBe(0)
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    }
    // a corrupt home
    const home = join(d, 'corrupt')
    await run('init', '--home', home)
    await writeFile(join(home, 'config.json'), '{ nope')
    const r = await run('start', '--home', home)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/config.json: not valid JSON/)
    // a key file other users can read
    const home2 = join(d, 'open')
    await run('init', '--home', home2)
    await chmod(join(home2, 'mesh.key'), 0o644)
    const r2 = await run('start', '--home', home2, '--listen', '/ip4/127.0.0.1/tcp/0')
    expect(r2.code).toBe(1)
    expect(r2.stderr).toMatch(/can be read by other users/)
  })

  it('start, status, join; unreachable peers and busy ports are reported', async () => {
    const d = await tempDir()
    const a = join(d, 'a')
    const b = join(d, 'b')
    await run('init', '--home', a)
    await run('init', '--home', b, '--key', join(a, 'mesh.key'))
    // an unreachable --join does not keep the node from starting
    const na = await start('--home', a, '--listen', '/ip4/127.0.0.1/tcp/0', '--join', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEZ93GnarWgcEESxJkdotVJ4PKZA8CJVqiCD3VRWRD1QF')
    expect(na.addrs[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo/)
    const nb = await start('--home', b, '--listen', '/ip4/127.0.0.1/tcp/0')

    const st = await run('status', '--home', a, '--json')
    expect(st.code).toBe(0)
    const s = JSON.parse(st.stdout) as Record<string, unknown>
    for (const k of ['peerId', 'addrs', 'peers', 'files', 'pending', 'conflicts']) expect(s).toHaveProperty(k)
    expect((await stat(join(a, 'control.sock'))).mode & 0o777).toBe(0o600)

    const j = await run('join', '--home', b, na.addrs[0])
    expect(j.code).toBe(0)
    await writeFile(join(a, 'data', 'hello.txt'), 'hello')
    await waitFor(async () => existsSync(join(b, 'data', 'hello.txt')), 10_000, 'file replicated')
    const human = await run('status', '--home', b)
    expect(human.stdout).toMatch(/peers\s+12D3Koo/)
    expect(human.stdout).toMatch(/files\s+1 files/)

    const bad = await run('join', '--home', b, '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEZ93GnarWgcEESxJkdotVJ4PKZA8CJVqiCD3VRWRD1QF')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/cannot reach/)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)

    // port in use
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()))
    onCleanup(async () => { blocker.close() })
    const port = (blocker.address() as { port: number }).port
    const c = join(d, 'c')
    await run('init', '--home', c, '--key', join(a, 'mesh.key'))
    const busy = await run('start', '--home', c, '--listen', `/ip4/127.0.0.1/tcp/${port}`)
    expect(busy.code).toBe(1)
    expect(busy.stderr).toMatch(/address already in use/)

    // SIGTERM stops cleanly with exit 0, and the node remembers its peer after a restart
    nb.proc.kill('SIGTERM')
    expect(await nb.exited).toBe(0)
    expect((await readdir(b)).includes('control.sock')).toBe(false)
    const nb2 = await start('--home', b, '--listen', '/ip4/127.0.0.1/tcp/0')
    await waitFor(async () => {
      const r = await run('status', '--home', b, '--json')
      return r.code === 0 && (JSON.parse(r.stdout) as { peers: unknown[] }).peers.length === 1
    }, 15_000, 'restarted node redialed its remembered peer')
    nb2.proc.kill('SIGINT')
    expect(await nb2.exited).toBe(0)
    na.proc.kill('SIGTERM')
    expect(await na.exited).toBe(0)
  })
})
