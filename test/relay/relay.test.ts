/**
 * Upload relay end to end: real nodes over TCP on 127.0.0.1, the HTTP API over real
 * sockets, the folder backend (real I/O) and the Drive backend against the local Drive
 * server (src/relay/fake-drive.ts) that the real googleapis client talks to.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Mesh, waitFor, type SimNode } from '../sim/harness.js'
import { FolderBackend } from '../../src/relay/backends/folder.js'
import { MANIFEST_NAME, type CloudBackend, type PutOptions, type PutResult, type SetRef, type UploadSource } from '../../src/relay/backend.js'
import { apiToken } from '../../src/node/home.js'
import { FakeDrive } from '../../src/relay/fake-drive.js'

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

/** A PUT with the path sent exactly as given (fetch would resolve '..' segments itself). */
async function rawPut (api: Api, rawPath: string, body: Buffer): Promise<{ status: number, json: any }> {
  return await new Promise((resolve, reject) => {
    const req = request(`${api.url}${rawPath}`, { method: 'PUT', headers: { authorization: `Bearer ${api.token}`, 'content-length': body.byteLength } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }) })
    })
    req.on('error', reject)
    // the URL parser would normalise the path: put the raw one back
    req.path = rawPath
    req.end(body)
  })
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

  it('a relay killed mid-upload loses its lease; another relay completes the set, with no duplicate upload', async () => {
    mesh = await Mesh.create()
    const cloud = await tempDir('syncmesh-cloud-')
    const b1 = new CountingBackend(new FolderBackend({ root: cloud }))
    const b2 = new CountingBackend(new FolderBackend({ root: cloud }))
    b1.delayMs = b2.delayMs = 400
    const a = await mesh.add('a')
    const r1 = await mesh.add('r1')
    const r2 = await mesh.add('r2')
    await a.start({ api: '127.0.0.1:0' })
    await r1.start({ relay: b1, relayInit: quick, join: [a.addr()] })
    await r2.start({ relay: b2, relayInit: quick, join: [a.addr()] })
    const api = await apiOf(a)
    const id: string = (await call(api, 'POST', '/v1/sets', { name: 'failover' })).json.id
    const files = Array.from({ length: 6 }, (_, i) => ({ path: `f${i}.bin`, data: randomBytes(100_000 + i) }))
    for (const f of files) expect((await call(api, 'PUT', `/v1/sets/${id}/files/${f.path}`, f.data)).status).toBe(201)
    const commit = await call(api, 'POST', `/v1/sets/${id}/commit`)
    expect(commit.status, JSON.stringify(commit.json)).toBe(202)

    // whichever relay won the lease: kill it once it has uploaded a file
    await waitFor(() => b1.uploads.length + b2.uploads.length >= 1, 20_000, 'a relay started uploading')
    const [dead, deadBackend, live, liveBackend] = b1.uploads.length > 0 ? [r1, b1, r2, b2] : [r2, b2, r1, b1]
    await dead.crash()
    const beforeCrash = [...deadBackend.uploads]
    await waitFor(async () => (await setOn(api, id))?.state === 'uploaded', 30_000, 'the other relay finished the set')
    expect((await setOn(api, id)).relay).toBe(live.n.nodeId)
    // every file stored exactly once: the survivor skipped what the dead relay had stored
    const all = [...beforeCrash, ...liveBackend.uploads].sort()
    expect(all).toEqual(files.map((f) => f.path).sort())
    for (const f of files) expect(sha(await readFile(join(cloud, 'failover', f.path)))).toBe(sha(f.data))
    expect((await readdir(join(cloud, 'failover'))).sort()).toEqual([MANIFEST_NAME, ...files.map((f) => f.path)].sort())
  })

  it('never uploads an uncommitted set; a file changed after the commit uploads at its committed version', async () => {
    mesh = await Mesh.create()
    const cloud = await tempDir('syncmesh-cloud-')
    const backend = new CountingBackend(new FolderBackend({ root: cloud }))
    const a = await mesh.add('a')
    const r = await mesh.add('r')
    await a.start({ api: '127.0.0.1:0' })
    const api = await apiOf(a)
    const open = (await call(api, 'POST', '/v1/sets', { name: 'drafts' })).json.id as string
    expect((await call(api, 'PUT', `/v1/sets/${open}/files/draft.txt`, Buffer.from('not yet'))).status).toBe(201)
    const id = (await call(api, 'POST', '/v1/sets', { name: 'final' })).json.id as string
    const committed = randomBytes(2 * 1024 * 1024)
    expect((await call(api, 'PUT', `/v1/sets/${id}/files/report.bin`, committed)).status).toBe(201)
    expect((await call(api, 'POST', `/v1/sets/${id}/commit`)).status).toBe(202)
    // changed right after the commit, before any relay saw the set
    await writeFile(join(a.dataDir, 'sets/final/report.bin'), 'changed after the commit')
    await a.n.scanner.flush()
    expect((await call(api, 'PUT', `/v1/sets/${id}/files/late.txt`, Buffer.from('late'))).status).toBe(409)

    // the relay joins later: its data folder gets the new content, the cloud the committed one
    await r.start({ relay: backend, relayInit: quick, join: [a.addr()] })
    await waitFor(async () => (await setOn(api, id))?.state === 'uploaded', 30_000, 'the committed set is uploaded')
    expect(sha(await readFile(join(cloud, 'final', 'report.bin')))).toBe(sha(committed))
    await waitFor(async () => (await readFile(join(r.dataDir, 'sets/final/report.bin'), 'utf8').catch(() => '')) === 'changed after the commit', 10_000, 'the relay has the new version in its folder')
    // the open set: still open, never in the cloud
    expect((await setOn(api, open)).state).toBe('open')
    expect(backend.uploads).toEqual(['report.bin'])
    expect((await readdir(cloud)).filter((n) => !n.startsWith('.'))).toEqual(['final'])
    // once uploaded, the pinned committed content is dropped everywhere
    await waitFor(() => a.n.keeper.pins.size === 0 && r.n.keeper.pins.size === 0, 10_000, 'pins dropped')
  })

  it('refuses requests without the token, paths that escape the set, and bodies over the limit', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const cfgPath = join(a.home, 'config.json')
    await writeFile(cfgPath, JSON.stringify({ ...JSON.parse(await readFile(cfgPath, 'utf8')), apiMaxFileBytes: 1000 }))
    await a.start({ api: '127.0.0.1:0' })
    const api = await apiOf(a)
    expect((await call(api, 'POST', '/v1/sets', { name: 'x' }, '')).status).toBe(401)
    expect((await call(api, 'POST', '/v1/sets', { name: 'x' }, `${api.token}x`)).status).toBe(401)
    expect((await fetch(`${api.url}/v1/sets`)).status).toBe(401)
    const id = (await call(api, 'POST', '/v1/sets', { name: 'safe' })).json.id as string
    for (const bad of ['../escape.txt', '%2e%2e/escape.txt', 'a/../../escape.txt', 'a//b', '.syncmesh-set.json', 'a%00b']) {
      const r = await rawPut(api, `/v1/sets/${id}/files/${bad}`, Buffer.from('x'))
      expect(r.status, bad).toBe(400)
      expect(typeof r.json.error).toBe('string')
    }
    expect((await readdir(a.dataDir)).sort()).toEqual(['.syncmesh'])
    const big = await call(api, 'PUT', `/v1/sets/${id}/files/big.bin`, randomBytes(1001))
    expect(big.status).toBe(413)
    expect((await call(api, 'PUT', `/v1/sets/${id}/files/ok.bin`, randomBytes(1000))).status).toBe(201)
    for (const bad of [{ name: '../up' }, { name: '.hidden' }, { name: 'a/b' }, { name: '' }, { nope: 1 }]) {
      expect((await call(api, 'POST', '/v1/sets', bad)).status).toBe(400)
    }
    expect((await call(api, 'POST', '/v1/sets', { name: 'safe' })).status).toBe(409)
    expect((await call(api, 'GET', '/v1/sets/unknown')).status).toBe(404)
    // nothing escaped: only the set's folder and the reserved area exist
    expect((await readdir(join(a.dataDir, 'sets'))).sort()).toEqual(['safe'])
    expect((await readdir(join(a.dataDir, 'sets/safe'))).sort()).toEqual(['ok.bin'])
  })

  it('uploads to Google Drive (local Drive server): recovers from 500, 429, a dropped chunk and an expired session; a quota error fails the set with its reason', async () => {
    const OAUTH = { clientId: 'cid', clientSecret: 'secret', refreshToken: 'refresh' }
    const fake = await new FakeDrive({ oauth: OAUTH }).start()
    cleanups.push(async () => { await fake.stop() })
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const r = await mesh.add('r')
    const cfgPath = join(r.home, 'config.json')
    await writeFile(cfgPath, JSON.stringify({
      ...JSON.parse(await readFile(cfgPath, 'utf8')),
      drive: { auth: { type: 'oauth2', ...OAUTH, tokenUrl: fake.tokenUrl }, rootFolderId: fake.rootFolderId, rootUrl: fake.url }
    }))
    await a.start({ api: '127.0.0.1:0' })
    await r.start({ relay: 'drive', relayInit: quick, join: [a.addr()] })
    const api = await apiOf(a)

    fake.inject('upload.multipart', { kind: 'status', status: 500 })
    fake.inject('files.list', { kind: 'rateLimit', retryAfterSeconds: 1 })
    fake.inject('upload.resumable.chunk', { kind: 'drop', afterBytes: 3 * 256 * 1024 })
    fake.inject('upload.resumable.chunk', { kind: 'expireSession' })
    const small = randomBytes(300_000)
    const large = randomBytes(17 * 1024 * 1024 + 3)
    const id = (await call(api, 'POST', '/v1/sets', { name: 'to-drive' })).json.id as string
    expect((await call(api, 'PUT', `/v1/sets/${id}/files/small.bin`, small)).status).toBe(201)
    expect((await call(api, 'PUT', `/v1/sets/${id}/files/deep/large.bin`, large)).status).toBe(201)
    expect((await call(api, 'POST', `/v1/sets/${id}/commit`)).status).toBe(202)
    await waitFor(async () => (await setOn(api, id))?.state === 'uploaded', 60_000, 'the set is in Drive')
    expect(fake.pendingFaults()).toBe(0)
    expect(fake.resolve(fake.rootFolderId, 'to-drive/small.bin')?.content?.equals(small)).toBe(true)
    expect(fake.resolve(fake.rootFolderId, 'to-drive/deep/large.bin')?.content?.equals(large)).toBe(true)
    const manifest = JSON.parse(fake.resolve(fake.rootFolderId, `to-drive/${MANIFEST_NAME}`)?.content?.toString('utf8') ?? 'null')
    expect(manifest.files.map((f: { sha256: string }) => f.sha256)).toEqual([sha(large), sha(small)])
    expect(fake.filesUploaded).toBe(3)

    // a fatal error (quota): the set ends as failed, with the reason, on every node
    fake.inject('upload.multipart', { kind: 'quota' })
    const id2 = (await call(api, 'POST', '/v1/sets', { name: 'too-big' })).json.id as string
    expect((await call(api, 'PUT', `/v1/sets/${id2}/files/x.bin`, randomBytes(1000))).status).toBe(201)
    expect((await call(api, 'POST', `/v1/sets/${id2}/commit`)).status).toBe(202)
    await waitFor(async () => (await setOn(api, id2))?.state === 'failed', 30_000, 'the set failed')
    expect((await setOn(api, id2)).error).toMatch(/storageQuotaExceeded/)
    expect((await r.n.status()).relay?.lastError).toMatch(/too-big/)
    // the quota was raised: a retry uploads it (the committed content was kept)
    expect((await call(api, 'POST', `/v1/sets/${id}/retry`)).status).toBe(409)
    const retried = await call(api, 'POST', `/v1/sets/${id2}/retry`)
    expect(retried.status).toBe(202)
    expect(retried.json.state).toBe('committed')
    await waitFor(async () => (await setOn(api, id2))?.state === 'uploaded', 30_000, 'the retried set is uploaded')
    expect(fake.resolve(fake.rootFolderId, 'too-big/x.bin')?.content?.byteLength).toBe(1000)
  })
})
