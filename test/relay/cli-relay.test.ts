/**
 * The relay from the command line: `start --api --relay --backend folder:DIR`, then
 * `syncmesh commit` and `syncmesh status`, as real child processes.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { waitFor } from '../sim/harness.js'
import { cleanup, requireBuild, run, start, status, tempDir } from '../lib/proc.js'

beforeAll(requireBuild)
afterEach(cleanup)

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex')

describe('syncmesh commit and the relay from the CLI', () => {
  it('commits a directory of the data folder as a set and the relay puts it in the cloud folder', async () => {
    const d = await tempDir()
    const home = join(d, 'home')
    const cloud = join(d, 'cloud')
    expect((await run('init', '--home', home)).code).toBe(0)
    expect((await stat(join(home, 'api.token'))).mode & 0o777).toBe(0o600)
    const node = await start('--home', home, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--relay', '--backend', `folder:${cloud}`)
    const photo = randomBytes(500_000)
    await mkdir(join(home, 'data', 'photos', '2026'), { recursive: true })
    await writeFile(join(home, 'data', 'photos', '2026', 'beach.jpg'), photo)
    await writeFile(join(home, 'data', 'photos', 'index.txt'), 'beach\n')

    const c = await run('commit', '--home', home, '--set', 'summer', 'photos')
    expect(c.stderr).toBe('')
    expect(c.code).toBe(0)
    expect(c.stdout).toMatch(/^committed set summer \(\S+\): 2 files/)
    await waitFor(async () => ((await status(home)).sets as Array<{ state: string }>)[0]?.state === 'uploaded', 30_000, 'the set is uploaded', 500)
    expect(sha(await readFile(join(cloud, 'summer', 'photos', '2026', 'beach.jpg')))).toBe(sha(photo))
    const manifest = JSON.parse(await readFile(join(cloud, 'summer', '.syncmesh-set.json'), 'utf8'))
    expect(manifest.files.map((f: { path: string }) => f.path)).toEqual(['photos/2026/beach.jpg', 'photos/index.txt'])
    expect((await readdir(cloud)).filter((n) => !n.startsWith('.'))).toEqual(['summer'])
    const text = await run('status', '--home', home)
    expect(text.stdout).toMatch(/relay\s+folder/)
    expect(text.stdout).toMatch(/summer uploaded \(2 files/)

    // mistakes: one line each, nothing committed
    for (const args of [['--set', 'summer', 'photos/index.txt'], ['--set', 'other', 'no/such/file'], ['--set', 'other', '/etc/passwd'], ['photos'], ['--set', 'x']]) {
      const r = await run('commit', '--home', home, ...args)
      expect(r.code, args.join(' ')).not.toBe(0)
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1)
    }
    node.proc.kill('SIGTERM')
    expect(await node.exited).toBe(0)
  })

  it('refuses a relay without a usable backend in one line', async () => {
    const d = await tempDir()
    const home = join(d, 'home')
    expect((await run('init', '--home', home)).code).toBe(0)
    for (const args of [['--relay'], ['--backend', 'folder:/tmp/x'], ['--relay', '--backend', 'ftp://x'], ['--relay', '--backend', 'drive'], ['--api', 'nonsense']]) {
      const r = await run('start', '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0', ...args)
      expect(r.code, args.join(' ')).not.toBe(0)
      expect(r.stderr.trim().split('\n'), `${args.join(' ')}: ${r.stderr}`).toHaveLength(1)
    }
  })
})
