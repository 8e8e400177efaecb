/**
 * `npm start`: a local demo mesh on embedded defaults. Three nodes on 127.0.0.1 in a
 * temporary folder (C joins only A), files written on one appear on the others, a
 * conflict is made and resolved; then the mesh keeps running so you can write into the
 * printed folders yourself, until Ctrl-C (or at once with --exit).
 */
import { mkdtemp, rm, writeFile, readFile, readdir, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { initHome } from '../node/home.js'
import { SyncNode, type LogFn } from '../node/node.js'

const say = (msg: string): void => { process.stdout.write(msg + '\n') }

async function until (cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const t0 = Date.now()
  while (!await cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('the demo mesh did not converge in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return Date.now() - t0
}

async function exists (p: string, content?: string): Promise<boolean> {
  try {
    const c = await readFile(p, 'utf8')
    return content == null || c === content
  } catch { return false }
}

export async function demo (opts: { exit: boolean, verbose: boolean }): Promise<void> {
  const t0 = Date.now()
  const log = (name: string): LogFn | undefined => opts.verbose ? (level, msg) => { process.stderr.write(`${Date.now() - t0} ${name} ${level} ${msg}\n`) } : undefined
  const root = await mkdtemp(join(tmpdir(), 'syncmesh-demo-'))
  const nodes: SyncNode[] = []
  const names = ['a', 'b', 'c']
  let stopping = false
  const shutdown = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    say('\nstopping the demo mesh')
    for (const n of nodes.reverse()) await n.stop().catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
  try {
    say(`demo mesh in ${root}`)
    for (const name of names) {
      await initHome(join(root, name), name === 'a' ? {} : { keyFile: join(root, 'a', 'mesh.key') })
    }
    for (const name of names) {
      const join0 = nodes.length === 0 ? [] : [nodes[0].libp2p.getMultiaddrs()[0].toString()]
      const node = await SyncNode.open({ home: join(root, name), listen: ['/ip4/127.0.0.1/tcp/0'], join: join0, log: log(name) })
      await node.start()
      nodes.push(node)
      say(`node ${name}: ${node.libp2p.getMultiaddrs()[0].toString()}${join0.length > 0 ? '  (joined a)' : ''}`)
    }
    const [a, b, c] = nodes
    const data = (n: SyncNode): string => n.home.dataDir
    await until(async () => c.libp2p.getPeers().length === 2)
    say('c learned of b through a and connected to it directly')

    await writeFile(join(data(a), 'hello.txt'), 'hello from a\n')
    let ms = await until(async () => await exists(join(data(b), 'hello.txt')) && await exists(join(data(c), 'hello.txt')))
    say(`a wrote hello.txt -> on b and c after ${ms} ms`)

    await mkdir(join(data(b), 'photos'), { recursive: true })
    const big = randomBytes(32 * 1024 * 1024)
    await writeFile(join(data(b), 'photos', 'big.raw'), big)
    ms = await until(async () => (await c.status()).pending.files === 0 && await exists(join(data(c), 'photos', 'big.raw')) && (await readFile(join(data(c), 'photos', 'big.raw'))).equals(big))
    say(`b wrote photos/big.raw (32 MiB) -> complete on c after ${ms} ms`)

    // a conflict: b goes away, a and b both edit, b comes back
    await b.stop()
    nodes.splice(1, 1)
    await writeFile(join(data(a), 'notes.txt'), 'edited on a\n')
    await writeFile(join(b.home.dataDir, 'notes.txt'), 'edited on b while offline\n')
    const b2 = await SyncNode.open({ home: b.home.dir, listen: ['/ip4/127.0.0.1/tcp/0'], log: log('b') })
    await b2.start()
    nodes.push(b2)
    ms = await until(async () => {
      for (const n of [a, b2, c]) {
        const names = await readdir(data(n))
        if (!names.some((x) => x.startsWith('notes.sync-conflict-'))) return false
        if ((await n.status()).pending.files > 0) return false
      }
      return true
    })
    const listing = (await readdir(data(a))).filter((x) => x.startsWith('notes')).sort()
    say(`a and b edited notes.txt concurrently -> resolved on every node after ${ms} ms: ${listing.join(', ')}`)
    say(`  notes.txt now says: ${(await readFile(join(data(a), 'notes.txt'), 'utf8')).trim()}`)

    for (const n of [a, b2, c]) {
      const s = await n.status()
      say(`  ${n.home.dir.slice(root.length + 1)}: ${s.files} files, ${s.peers.length} peers, ${s.conflicts} conflict copies`)
    }
    if (opts.exit) return
    say('\nthe mesh keeps running: write into any of these folders and watch the others')
    for (const n of [a, b2, c]) say(`  ${data(n)}`)
    say('Ctrl-C stops it and removes the folders')
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve())
      process.once('SIGTERM', () => resolve())
    })
  } finally {
    await shutdown()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  demo({ exit: process.argv.includes('--exit'), verbose: process.argv.includes('--verbose') }).catch((err: Error) => {
    process.stderr.write(`demo: ${err.message}\n`)
    process.exitCode = 1
  })
}
