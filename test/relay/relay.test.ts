/**
 * Upload relay end to end: real nodes over TCP on 127.0.0.1, the HTTP API over real
 * sockets, the folder backend (real I/O) and the Drive backend against the local Drive
 * server (src/relay/fake-drive.ts) that the real googleapis client talks to.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Mesh, waitFor, type SimNode } from '../sim/harness.js'
import { FolderBackend } from '../../src/relay/backends/folder.js'
import { MANIFEST_NAME, type CloudBackend, type PutOptions, type PutResult, type SetRef, type UploadSource } from '../../src/relay/backend.js'
import { apiToken } from '../../src/node/home.js'

let mesh: Mesh | null = null
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await mesh?.cleanup()
  mesh = null
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
})

async function tempDir (prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  cleanups.push(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex')

/** A backend that counts what it really uploads, and can be slowed down per file. */
class CountingBackend implements CloudBackend {
  readonly name: string
  readonly features
  uploads: string[] = []
  delayMs = 0
  constructor (readonly inner: CloudBackend) {
    this.name = inner.name
    this.features = inner.features
  }

  async beginSet (set: SetRef, opts?: { signal?: AbortSignal }): Promise<void> { await this.inner.beginSet(set, opts) }
  async putFile (set: SetRef, path: string, src: UploadSource, opts?: PutOptions): Promise<PutResult> {
    if (this.delayMs > 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, this.delayMs)
        opts?.signal?.addEventListener('abort', () => { clearTimeout(t); reject(opts.signal?.reason) }, { once: true })
      })
    }
    const r = await this.inner.putFile(set, path, src, opts)
    if (r === 'uploaded') this.uploads.push(path)
    return r
  }

  async publishSet (...a: Parameters<CloudBackend['publishSet']>): Promise<void> { await this.inner.publishSet(...a) }
  async isPublished (...a: Parameters<CloudBackend['isPublished']>): Promise<boolean> { return await this.inner.isPublished(...a) }
}

interface Api { url: string, token: string }

async function apiOf (n: SimNode): Promise<Api> {
  const api = n.n.api
  if (api == null) throw new Error(`${n.name} serves no API`)
  return { url: api.url, token: await apiToken(n.home) }
}

async function call (api: Api, method: string, path: string, body?: unknown, token = api.token): Promise<{ status: number, json: any }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body != null && !(body instanceof Uint8Array) ? { 'content-type': 'application/json' } : {}) },
    body: body == null ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body)
  })
  const text = await res.text()
  let json: any = null
  try { json = JSON.parse(text) } catch { json = text }
  return { status: res.status, json }
}

async function setOn (api: Api, id: string): Promise<any> {
  const r = await call(api, 'GET', `/v1/sets/${id}`)
  return r.status === 200 ? r.json : null
}

const quick = { leaseMs: 1_500, pollMs: 200, retryMs: 300 }

describe('upload relay', () => {
  it('SMSyncServer end to end: files uploaded to A and B, committed on C, relay R uploads the whole set exactly once', async () => {
    mesh = await Mesh.create()
    const cloud = await tempDir('syncmesh-cloud-')
    const backend = new CountingBackend(new FolderBackend({ root: cloud }))
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    const c = await mesh.add('c')
    const r = await mesh.add('r')
    await a.start({ api: '127.0.0.1:0' })
    await b.start({ api: '127.0.0.1:0', join: [a.addr()] })
    await c.start({ api: '127.0.0.1:0', join: [a.addr()] })
    await r.start({ relay: backend, relayInit: quick, join: [a.addr()] })
    const [apiA, apiB, apiC] = await Promise.all([apiOf(a), apiOf(b), apiOf(c)])

    const created = await call(apiA, 'POST', '/v1/sets', { name: 'holiday' })
    expect(created.status).toBe(201)
    const id: string = created.json.id
    expect(created.json.name).toBe('holiday')
    // the set id is valid on every node once its record replicated
    await waitFor(async () => (await setOn(apiB, id)) != null, 10_000, 'B knows the set')

    const f1 = randomBytes(700_000)
    const f2 = randomBytes(3 * 1024 * 1024 + 5)
    const up1 = await call(apiA, 'PUT', `/v1/sets/${id}/files/one.bin`, f1)
    expect(up1.status).toBe(201)
    expect(up1.json).toEqual({ path: 'one.bin', size: f1.byteLength, sha256: sha(f1) })
    expect((await call(apiB, 'PUT', `/v1/sets/${id}/files/sub/dir/two.bin`, f2)).status).toBe(201)
    // the files live in the data folder under sets/NAME/ and replicate like any file
    expect(sha(await readFile(join(a.dataDir, 'sets/holiday/one.bin')))).toBe(sha(f1))

    // not committed: never uploaded
    expect((await setOn(apiA, id)).state).toBe('open')
    const commit = await call(apiC, 'POST', `/v1/sets/${id}/commit`, { files: ['one.bin', 'sub/dir/two.bin'] })
    expect(commit.status).toBe(202)
    expect(commit.json.state).toBe('committed')

    await waitFor(async () => (await setOn(apiA, id))?.state === 'uploaded', 30_000, 'the set is uploaded (seen from A)')
    const view = await setOn(apiC, id)
    expect(view.files).toEqual([
      { path: 'one.bin', size: f1.byteLength, sha256: sha(f1), state: 'uploaded' },
      { path: 'sub/dir/two.bin', size: f2.byteLength, sha256: sha(f2), state: 'uploaded' }
    ])
    expect(backend.uploads.sort()).toEqual(['one.bin', 'sub/dir/two.bin'])
    const manifest = JSON.parse(await readFile(join(cloud, 'holiday', MANIFEST_NAME), 'utf8'))
    expect(manifest).toMatchObject({ id, name: 'holiday', files: [{ path: 'one.bin', size: f1.byteLength, sha256: sha(f1) }, { path: 'sub/dir/two.bin', size: f2.byteLength, sha256: sha(f2) }] })
    expect(sha(await readFile(join(cloud, 'holiday', 'sub/dir/two.bin')))).toBe(sha(f2))
    // committed again: refused; status of every node shows the set
    expect((await call(apiC, 'POST', `/v1/sets/${id}/commit`)).status).toBe(409)
    expect((await r.n.status()).sets.find((s) => s.id === id)?.state).toBe('uploaded')
  })
})
