/**
 * Real nodes for multi-node tests: each has its own home in a temp folder and runs the
 * real node code in this process over TCP on 127.0.0.1. Everything it creates is removed
 * by cleanup(), which tests call in afterEach (also when they fail).
 */
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, readlink, rm, lstat, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initHome } from '../../src/node/home.js'
import { SyncNode, type NodeOptions } from '../../src/node/node.js'
import { RESERVED } from '../../src/store/datafolder.js'

export interface SimNodeOptions extends Partial<NodeOptions> {
  /** Clock offset in ms (clock skew). */
  skewMs?: number
}

export class SimNode {
  readonly name: string
  readonly home: string
  node: SyncNode | null = null
  private readonly opts: SimNodeOptions

  constructor (name: string, home: string, opts: SimNodeOptions) {
    this.name = name
    this.home = home
    this.opts = opts
  }

  get dataDir (): string { return join(this.home, 'data') }

  get n (): SyncNode {
    if (this.node == null) throw new Error(`${this.name} is not running`)
    return this.node
  }

  get running (): boolean { return this.node != null }

  async start (extra: Partial<NodeOptions> = {}): Promise<void> {
    if (this.node != null) return
    const skew = this.opts.skewMs ?? 0
    const node = await SyncNode.open({
      home: this.home,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      now: skew === 0 ? undefined : () => Date.now() + skew,
      rescanIntervalMs: 5_000,
      catchUpIntervalMs: 1_000,
      ...this.opts,
      ...extra
    })
    await node.start()
    this.node = node
  }

  async stop (): Promise<void> {
    const node = this.node
    this.node = null
    await node?.stop()
  }

  addr (): string {
    return this.n.libp2p.getMultiaddrs()[0].toString()
  }

  path (rel: string): string { return join(this.dataDir, rel) }

  async write (rel: string, content: string | Uint8Array): Promise<void> {
    const p = this.path(rel)
    await mkdir(join(p, '..'), { recursive: true })
    await writeFile(p, content)
  }

  async read (rel: string): Promise<string | null> {
    try { return await readFile(this.path(rel), 'utf8') } catch { return null }
  }

  /** path -> content digest of what is on disk (files, dirs, symlinks). */
  async disk (): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    const walk = async (rel: string): Promise<void> => {
      for (const e of await readdir(rel === '' ? this.dataDir : this.path(rel), { withFileTypes: true })) {
        const p = rel === '' ? e.name : `${rel}/${e.name}`
        if (p === RESERVED) continue
        const st = await lstat(this.path(p))
        if (st.isDirectory()) { out.set(p, 'dir'); await walk(p) } else if (st.isSymbolicLink()) out.set(p, `link:${await readlink(this.path(p))}`)
        else out.set(p, `file:${(st.mode & 0o777).toString(8)}:${createHash('sha256').update(await readFile(this.path(p))).digest('hex')}`)
      }
    }
    await walk('')
    return out
  }

  /** path -> winning version of every record (with the tombstones). */
  async records (): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for await (const r of this.n.store.all()) {
      const vv = Object.entries(r.version.vv).sort().map(([k, v]) => `${k}=${v}`).join(',')
      out.set(r.path, `${r.deleted ? 'deleted' : r.type}:${r.hash}:${vv}:${r.version.node}`)
    }
    return out
  }
}

export class Mesh {
  readonly root: string
  readonly nodes: SimNode[] = []
  private keyFile = ''

  private constructor (root: string) {
    this.root = root
  }

  static async create (): Promise<Mesh> {
    return new Mesh(await mkdtemp(join(tmpdir(), 'syncmesh-sim-')))
  }

  /** Make a node home in the mesh (the first one creates the mesh key). */
  async add (name: string, opts: SimNodeOptions = {}): Promise<SimNode> {
    const home = join(this.root, name)
    await initHome(home, this.keyFile === '' ? {} : { keyFile: this.keyFile })
    if (this.keyFile === '') this.keyFile = join(home, 'mesh.key')
    const n = new SimNode(name, home, opts)
    this.nodes.push(n)
    return n
  }

  running (): SimNode[] {
    return this.nodes.filter((n) => n.running)
  }

  /** Every running node has the same records and the same disk, and nothing to pull. */
  async converged (nodes = this.running()): Promise<boolean> {
    if (nodes.length === 0) return true
    for (const n of nodes) {
      if ((await n.n.store.needCount()) > 0) return false
    }
    const first = await nodes[0].records()
    const firstDisk = await nodes[0].disk()
    for (const n of nodes.slice(1)) {
      if (!sameMap(first, await n.records())) return false
      if (!sameMap(firstDisk, await n.disk())) return false
    }
    return true
  }

  async waitConverged (timeoutMs = 20_000, nodes?: SimNode[]): Promise<void> {
    await waitFor(async () => await this.converged(nodes), timeoutMs, 'mesh did not converge')
  }

  async cleanup (): Promise<void> {
    await Promise.allSettled(this.nodes.map(async (n) => { await n.stop() }))
    await rm(this.root, { recursive: true, force: true })
  }
}

export function sameMap (a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false
  for (const [k, v] of a) if (b.get(k) !== v) return false
  return true
}

/** Poll `cond` until it holds; fail with `what` after `timeoutMs`. */
export async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
