/**
 * `npm start`: a local demo mesh on embedded defaults. Three nodes on 127.0.0.1 in a
 * temporary folder (C joins only A), files written on one appear on the others, a
 * conflict is made and resolved; then the SMSyncServer scenario: a client uploads the
 * files of one set through the HTTP API of two different nodes, commits it on the third,
 * and a fourth node, a relay with the folder backend, puts the set whole into a local
 * "cloud" folder, with progress. Then the mesh keeps running so you can write into the
 * printed folders yourself, until Ctrl-C (or at once with --exit).
 */
import { mkdtemp, rm, writeFile, readFile, readdir, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { apiToken, initHome } from '../node/home.js'
import type { SetView } from '../relay/sets.js'
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
  const names = ['a', 'b', 'c', 'relay']
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
    for (const name of names.slice(0, 3)) {
      const join0 = nodes.length === 0 ? [] : [nodes[0].libp2p.getMultiaddrs()[0].toString()]
      const node = await SyncNode.open({ home: join(root, name), listen: ['/ip4/127.0.0.1/tcp/0'], join: join0, api: '127.0.0.1:0', log: log(name) })
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
    const b2 = await SyncNode.open({ home: b.home.dir, listen: ['/ip4/127.0.0.1/tcp/0'], api: '127.0.0.1:0', log: log('b') })
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
    // the upload relay: SMSyncServer's scenario, with the mesh as the staging store
    const cloud = join(root, 'cloud')
    const relay = await SyncNode.open({ home: join(root, 'relay'), listen: ['/ip4/127.0.0.1/tcp/0'], join: [a.libp2p.getMultiaddrs()[0].toString()], relay: `folder:${cloud}`, log: log('relay') })
    await relay.start()
    nodes.push(relay)
    say(`\nnode relay: uploads committed sets to the folder backend ${cloud}`)
    const client = async (n: SyncNode, method: string, path: string, body?: Uint8Array | object): Promise<any> => {
      const res = await fetch(`${n.api?.url ?? ''}${path}`, {
        method,
        headers: { authorization: `Bearer ${await apiToken(n.home.dir)}` },
        body: body == null ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body)
      })
      const json = await res.json() as { error?: string }
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${json.error ?? ''}`)
      return json
    }
    const set = await client(a, 'POST', '/v1/sets', { name: 'holiday-2026' }) as { id: string, name: string }
    say(`a client made set ${set.name} (${set.id}) through a's HTTP API`)
    const files: Array<[SyncNode, string, Uint8Array]> = [
      [a, 'itinerary.txt', Buffer.from('day 1: the coast\nday 2: the hills\n')],
      [a, 'photos/sunrise.raw', randomBytes(24 * 1024 * 1024)],
      [b2, 'photos/sunset.raw', randomBytes(16 * 1024 * 1024)]
    ]
    await until(async () => (await b2.book.get(set.id)) != null)
    for (const [n, path, body] of files) {
      const r = await client(n, 'PUT', `/v1/sets/${set.id}/files/${path}`, body) as { size: number, sha256: string }
      say(`  PUT ${path} (${r.size} bytes) to ${n === a ? 'a' : 'b'}: sha256 ${r.sha256.slice(0, 16)}...`)
    }
    await client(c, 'POST', `/v1/sets/${set.id}/commit`, { files: files.map(([, p]) => p) })
    say('  committed on c')
    let last = ''
    ms = await until(async () => {
      const v = await client(c, 'GET', `/v1/sets/${set.id}`) as SetView
      const line = `  ${v.state}${v.state === 'uploading' && v.bytesTotal > 0 ? ` ${Math.floor(100 * v.bytesDone / v.bytesTotal)}%` : ''}`
      if (line !== last) { say(line); last = line }
      if (v.state === 'failed') throw new Error(`the relay failed: ${v.error ?? ''}`)
      return v.state === 'uploaded'
    })
    say(`the set is in the cloud folder, whole, ${ms} ms after the commit:`)
    const walk = async (dir: string, pre = ''): Promise<string[]> => {
      const out: string[] = []
      for (const e of (await readdir(dir, { withFileTypes: true })).sort((x, y) => x.name.localeCompare(y.name))) {
        if (e.isDirectory()) out.push(...await walk(join(dir, e.name), `${pre}${e.name}/`))
        else out.push(`${pre}${e.name}`)
      }
      return out
    }
    for (const f of await walk(join(cloud, set.name))) say(`  ${join(cloud, set.name, f)}`)

    if (opts.exit) return
    say('\nthe mesh keeps running: write into any of these folders and watch the others')
    for (const n of [a, b2, c]) say(`  ${data(n)}`)
    say(`HTTP upload API of a: ${a.api?.url ?? ''} (bearer token in ${join(a.home.dir, 'api.token')})`)
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
