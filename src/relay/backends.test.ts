import { mkdtemp, readFile, readdir, rm, stat, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BackendError, createManifest, parseRetryAfter, retrying, resolveRetryPolicy, sha256Hex, sleep } from './backend.js'
import type { RetryPolicy, SetRef } from './backend.js'
import { FolderBackend, classifyFolderError } from './backends/folder.js'
import { DriveBackend, MemorySessionStore, classifyDriveError, pathTag, q } from './backends/drive.js'
import type { DriveAuthConfig, DriveBackendInit } from './backends/drive.js'
import { FOLDER_MIME, FakeDrive, compileQuery, parseMultipart } from './fake-drive.js'
import type { FakeFile } from './fake-drive.js'
import { MemorySource, backendConformance } from './conformance.js'
import type { BackendHarness } from './conformance.js'

const KiB = 1024
const MiB = 1024 * 1024

/** Retries in tests: a few ms apart; records the delays asked for. */
function fastRetry (delays: number[] = []): RetryPolicy {
  return {
    attempts: 5,
    baseDelayMs: 1,
    maxDelayMs: 4,
    sleep: async (ms, signal) => {
      delays.push(ms)
      await sleep(Math.min(ms, 2), signal)
    }
  }
}

const OAUTH = { clientId: 'client-1.apps.googleusercontent.com', clientSecret: 'shh', refreshToken: '1//refresh-token' }

// ---------------------------------------------------------------------------------------------
// harnesses

async function folderHarness (): Promise<BackendHarness> {
  const root = await mkdtemp(join(tmpdir(), 'syncmesh-folder-'))
  const instances: FolderBackend[] = []
  const walk = async (dir: string, prefix: string): Promise<string[]> => {
    const out: string[] = []
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const rel = prefix === '' ? e.name : `${prefix}/${e.name}`
      if (e.isDirectory()) out.push(...await walk(join(dir, e.name), rel))
      else out.push(rel)
    }
    return out
  }
  return {
    open: () => {
      const b = new FolderBackend({ root, retry: fastRetry() })
      instances.push(b)
      return b
    },
    listVisible: async () => (await readdir(root)).filter(n => !n.startsWith('.')),
    listSet: async name => await walk(join(root, name), ''),
    read: async (name, path) => await readFile(join(root, name, ...path.split('/'))).catch(() => undefined),
    uploads: () => instances.reduce((n, b) => n + b.stats.filesWritten + b.stats.manifestsWritten, 0),
    close: async () => { await rm(root, { recursive: true, force: true }) }
  }
}

interface DriveEnv {
  fake: FakeDrive
  sessions: MemorySessionStore
  delays: number[]
  open: (over?: Partial<DriveBackendInit>) => DriveBackend
  close: () => Promise<void>
}

async function driveEnv (fakeInit: ConstructorParameters<typeof FakeDrive>[0] = { oauth: OAUTH }): Promise<DriveEnv> {
  const fake = await new FakeDrive(fakeInit).start()
  const sessions = new MemorySessionStore()
  const delays: number[] = []
  return {
    fake,
    sessions,
    delays,
    open: (over = {}) => new DriveBackend({ sessions }, {
      auth: { type: 'oauth2', ...OAUTH, tokenUrl: fake.tokenUrl },
      rootFolderId: fake.rootFolderId,
      rootUrl: fake.url,
      retry: fastRetry(delays),
      ...over
    }),
    close: async () => { await fake.stop() }
  }
}

function fakeWalk (fake: FakeDrive, folderId: string, prefix: string): string[] {
  const out: string[] = []
  for (const c of fake.children(folderId)) {
    const rel = prefix === '' ? c.name : `${prefix}/${c.name}`
    if (c.mimeType === FOLDER_MIME) out.push(...fakeWalk(fake, c.id, rel))
    else out.push(rel)
  }
  return out
}

async function driveHarness (): Promise<BackendHarness> {
  const env = await driveEnv()
  const { fake } = env
  const setFolder = (name: string): FakeFile | undefined => fake.children(fake.rootFolderId).find(f => f.name === name && f.mimeType === FOLDER_MIME)
  return {
    open: () => env.open(),
    listVisible: async () => fake.children(fake.rootFolderId).map(f => f.name).filter(n => !n.startsWith('.')),
    listSet: async name => fakeWalk(fake, setFolder(name)?.id ?? 'none', ''),
    read: async (name, path) => fake.resolve(setFolder(name)?.id ?? 'none', path)?.content,
    uploads: () => fake.filesUploaded,
    close: env.close
  }
}

backendConformance('folder', folderHarness)
backendConformance('drive (fake Drive server)', driveHarness)

// ---------------------------------------------------------------------------------------------
// Drive: faults

async function rejection (p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

function newSet (): SetRef {
  return { id: `s${randomBytes(6).toString('hex')}`, name: 'set' }
}

describe('drive backend against the fake Drive: faults', () => {
  let env: DriveEnv
  let set: SetRef
  beforeEach(async () => {
    env = await driveEnv()
    set = newSet()
  })
  afterEach(async () => { await env.close() })

  /** Files stored under the tags of (set, path), wherever they are. */
  const stored = (path: string): FakeFile[] => env.fake.findByAppProperties({ syncmeshSet: set.id, syncmeshPath: pathTag(path) })

  it('retries a 500 on a lookup and on an upload, and stores the file once', async () => {
    const b = env.open()
    await b.beginSet(set)
    env.fake.inject('files.list', { kind: 'status', status: 500 })
    env.fake.inject('upload.multipart', { kind: 'status', status: 503 }, 2)
    const src = new MemorySource(randomBytes(100 * KiB))
    expect(await b.putFile(set, 'a.bin', src)).toBe('uploaded')
    expect(env.fake.pendingFaults()).toBe(0)
    expect(env.fake.count('upload.multipart')).toBe(3)
    expect(stored('a.bin')).toHaveLength(1)
    expect(stored('a.bin')[0].content?.equals(src.data)).toBe(true)
  })

  it('a create whose answer was lost is looked up before it is sent again: no duplicate', async () => {
    const b = env.open()
    await b.beginSet(set)
    const creates = env.fake.count('files.create')
    env.fake.inject('upload.multipart', { kind: 'loseResponse' })
    env.fake.inject('files.create', { kind: 'loseResponse' }) // the folder 'sub'
    const src = new MemorySource(randomBytes(10 * KiB))
    expect(await b.putFile(set, 'sub/a.bin', src)).toBe('uploaded')
    expect(env.fake.pendingFaults()).toBe(0)
    expect(env.fake.count('upload.multipart')).toBe(1)
    expect(env.fake.count('files.create')).toBe(creates + 1)
    expect(stored('sub/a.bin')).toHaveLength(1)
    expect([...env.fake.files.values()].filter(f => f.name === 'sub')).toHaveLength(1)
  })

  it('honours Retry-After on a 429', async () => {
    const b = env.open()
    env.fake.inject('files.list', { kind: 'rateLimit', retryAfterSeconds: 2 })
    expect(await b.isPublished(set)).toBe(false)
    expect(env.delays).toHaveLength(1)
    expect(env.delays[0]).toBeGreaterThanOrEqual(2000)
  })

  it('a Retry-After longer than the policy allows ends with a transient error that carries it', async () => {
    const b = env.open({ retry: { ...fastRetry(env.delays), maxRetryAfterMs: 1000 } })
    env.fake.inject('files.list', { kind: 'rateLimit', retryAfterSeconds: 120 })
    const err = await rejection(b.isPublished(set)) as BackendError
    expect(err).toBeInstanceOf(BackendError)
    expect(err.fatal).toBe(false)
    expect(err.retryAfterMs).toBe(120_000)
    expect(env.delays).toHaveLength(0)
  })

  it('gives up on a persistent 5xx after the bounded attempts with a transient error', async () => {
    const b = env.open()
    env.fake.inject('files.list', { kind: 'status', status: 502 }, 100)
    const err = await rejection(b.isPublished(set)) as BackendError
    expect(err.name).toBe('BackendError')
    expect(err.fatal).toBe(false)
    expect(err.status).toBe(502)
    expect(env.fake.count('files.list')).toBe(5)
    expect(env.delays).toHaveLength(4)
    expect(err.message).not.toContain('\n')
  })

  it('a dropped connection mid-chunk resumes from the range the server holds, not from 0', async () => {
    const b = env.open({ resumableThreshold: 256 * KiB, chunkSize: 1 * MiB })
    const src = new MemorySource(randomBytes(3 * MiB + 1000))
    env.fake.inject('upload.resumable.chunk', { kind: 'drop', afterBytes: 600 * KiB }, 1,
      req => req.headers['content-range']?.startsWith(`bytes ${MiB}-`) === true)
    const progress: number[] = []
    expect(await b.putFile(set, 'big.bin', src, { onProgress: n => progress.push(n) })).toBe('uploaded')
    expect(env.fake.pendingFaults()).toBe(0)
    // the server kept 1 MiB + 512 KiB (what it had in 256 KiB units); the client asked and went on from there
    expect(env.fake.count('upload.resumable.status')).toBe(1)
    const chunks = env.fake.log.filter(e => e.route === 'upload.resumable.chunk').map(e => e.contentRange)
    expect(chunks).toEqual([
      `bytes 0-${MiB - 1}/${src.size}`,
      `bytes ${MiB}-${2 * MiB - 1}/${src.size}`, // dropped
      `bytes ${1.5 * MiB}-${2.5 * MiB - 1}/${src.size}`,
      `bytes ${2.5 * MiB}-${src.size - 1}/${src.size}`
    ])
    expect(env.fake.uploadBytes).toBe(src.size + (600 - 512) * KiB)
    expect(env.fake.count('upload.resumable.start')).toBe(1)
    expect(stored('big.bin')).toHaveLength(1)
    expect(stored('big.bin')[0].content?.equals(src.data)).toBe(true)
    expect(progress.at(-1)).toBe(src.size)
    expect(await env.sessions.get(JSON.stringify(['drive', set.id, 'big.bin', src.sha256]))).toBeUndefined()
  })

  it('a 5xx on a chunk asks the server for its range and continues', async () => {
    const b = env.open({ resumableThreshold: 256 * KiB, chunkSize: 256 * KiB })
    const src = new MemorySource(randomBytes(MiB))
    env.fake.inject('upload.resumable.chunk', { kind: 'status', status: 500 }, 1,
      req => req.headers['content-range']?.startsWith(`bytes ${512 * KiB}-`) === true)
    expect(await b.putFile(set, 'x.bin', src)).toBe('uploaded')
    expect(env.fake.count('upload.resumable.status')).toBe(1)
    expect(stored('x.bin')[0].content?.equals(src.data)).toBe(true)
    expect(env.fake.count('upload.resumable.start')).toBe(1)
  })

  it('an expired session (404) starts a new session', async () => {
    const b = env.open({ resumableThreshold: 256 * KiB, chunkSize: 512 * KiB })
    const src = new MemorySource(randomBytes(2 * MiB))
    env.fake.inject('upload.resumable.chunk', { kind: 'expireSession' }, 1,
      req => req.headers['content-range']?.startsWith(`bytes ${MiB}-`) === true)
    const progress: number[] = []
    expect(await b.putFile(set, 'e.bin', src, { onProgress: n => progress.push(n) })).toBe('uploaded')
    expect(env.fake.count('upload.resumable.start')).toBe(2)
    expect(stored('e.bin')).toHaveLength(1)
    expect(stored('e.bin')[0].content?.equals(src.data)).toBe(true)
    expect(progress).toContain(0)
    expect(env.sessions.map.size).toBe(0)
  })

  it('a restarted relay with the same session store continues the same resumable upload', async () => {
    const init = { resumableThreshold: 256 * KiB, chunkSize: 512 * KiB }
    const src = new MemorySource(randomBytes(2 * MiB + 7))
    const ac = new AbortController()
    const first = env.open(init)
    const err = await rejection(first.putFile(set, 'r.bin', src, {
      signal: ac.signal,
      onProgress: n => { if (n >= MiB) ac.abort(new Error('relay stopped')) }
    }))
    expect((err as Error).message).toBe('relay stopped')
    expect(stored('r.bin')).toHaveLength(0)
    expect(env.sessions.map.size).toBe(1)
    const sentBefore = env.fake.uploadBytes
    expect(sentBefore).toBe(MiB)

    const second = env.open(init) // a new process: nothing shared but the session store
    expect(await second.putFile(set, 'r.bin', src)).toBe('uploaded')
    expect(env.fake.count('upload.resumable.start')).toBe(1)
    expect(env.fake.count('upload.resumable.status')).toBe(1)
    expect(env.fake.uploadBytes).toBe(src.size) // not one byte sent twice
    expect(stored('r.bin')).toHaveLength(1)
    expect(stored('r.bin')[0].content?.equals(src.data)).toBe(true)
    expect(env.sessions.map.size).toBe(0)
  })

  it('storage quota exceeded is fatal, with the reason, and not retried', async () => {
    const b = env.open()
    await b.beginSet(set)
    env.fake.inject('upload.multipart', { kind: 'quota' })
    const err = await rejection(b.putFile(set, 'q.bin', new MemorySource(randomBytes(10)))) as BackendError
    expect(err).toBeInstanceOf(BackendError)
    expect(err.fatal).toBe(true)
    expect(err.reason).toBe('storageQuotaExceeded')
    expect(err.status).toBe(403)
    expect(err.message).toContain('storageQuotaExceeded')
    expect(env.fake.count('upload.multipart')).toBe(1)
  })

  it('a real quota on a resumable upload is fatal too', async () => {
    await env.close()
    env = await driveEnv({ oauth: OAUTH, quotaBytes: MiB })
    const b = env.open({ resumableThreshold: 256 * KiB, chunkSize: 256 * KiB })
    const err = await rejection(b.putFile(set, 'huge.bin', new MemorySource(randomBytes(2 * MiB)))) as BackendError
    expect(err.reason).toBe('storageQuotaExceeded')
    expect(err.fatal).toBe(true)
  })

  it('insufficientPermissions and 400 are fatal', async () => {
    const b = env.open()
    env.fake.inject('files.list', { kind: 'status', status: 403, reason: 'insufficientPermissions' })
    let err = await rejection(b.isPublished(set)) as BackendError
    expect([err.fatal, err.reason]).toEqual([true, 'insufficientPermissions'])
    env.fake.inject('files.list', { kind: 'status', status: 400, reason: 'invalid' })
    err = await rejection(b.isPublished(set)) as BackendError
    expect([err.fatal, err.status]).toEqual([true, 400])
    expect(env.fake.count('files.list')).toBe(2)
  })

  it('a 403 rate limit is retried', async () => {
    const b = env.open()
    env.fake.inject('files.list', { kind: 'status', status: 403, reason: 'userRateLimitExceeded' })
    expect(await b.isPublished(set)).toBe(false)
    expect(env.fake.count('files.list')).toBe(2)
  })

  it('refreshes the access token after a 401 (also for a streamed upload) and goes on', async () => {
    const b = env.open()
    await b.beginSet(set)
    expect(env.fake.count('token')).toBe(1)
    env.fake.revokeAccessTokens()
    expect(await b.putFile(set, 'a.txt', new MemorySource(Buffer.from('a')))).toBe('uploaded')
    expect(env.fake.count('token')).toBe(2)
    env.fake.inject('upload.multipart', { kind: 'unauthorized' })
    expect(await b.putFile(set, 'b.txt', new MemorySource(Buffer.from('b')))).toBe('uploaded')
    expect(env.fake.count('token')).toBe(3)
  })

  it('a 401 that persists after a token refresh is fatal (authError)', async () => {
    const b = env.open()
    expect(await b.isPublished(set)).toBe(false)
    const tokens = env.fake.count('token')
    const lists = env.fake.count('files.list')
    env.fake.inject('files.list', { kind: 'unauthorized' }, 5)
    const err = await rejection(b.isPublished(set)) as BackendError
    expect([err.fatal, err.reason, err.status]).toEqual([true, 'authError', 401])
    expect(env.fake.count('token')).toBe(tokens + 1)
    expect(env.fake.count('files.list')).toBe(lists + 2)
  })

  it('a refresh token the server rejects is fatal (authRefreshFailed)', async () => {
    const b = env.open({ auth: { type: 'oauth2', ...OAUTH, refreshToken: 'revoked', tokenUrl: env.fake.tokenUrl } })
    const err = await rejection(b.isPublished(set)) as BackendError
    expect(err.fatal).toBe(true)
    expect(err.reason).toBe('authRefreshFailed')
    expect(err.message).toContain('invalid_grant')
    expect(env.fake.count('token')).toBe(1)
    expect(env.fake.count('files.list')).toBe(0)
  })

  it('a 5xx from the token endpoint is retried', async () => {
    const b = env.open()
    env.fake.inject('token', { kind: 'status', status: 503 })
    expect(await b.isPublished(set)).toBe(false)
    expect(env.fake.count('token')).toBe(2)
  })

  it('aborting stops an upload at once, without retries', async () => {
    const b = env.open({ resumableThreshold: 256 * KiB, chunkSize: 256 * KiB })
    const ac = new AbortController()
    const err = await rejection(b.putFile(set, 'a.bin', new MemorySource(randomBytes(MiB)), {
      signal: ac.signal,
      onProgress: n => { if (n > 0) ac.abort(new Error('cancelled')) }
    }))
    expect((err as Error).message).toBe('cancelled')
    expect(env.delays).toHaveLength(0)
  })

  it('publishes with one metadata update, after the manifest, under the set name', async () => {
    const b = env.open()
    const src = new MemorySource(randomBytes(10))
    await b.putFile(set, 'a/b.txt', src)
    const manifest = createManifest(set, [{ path: 'a/b.txt', size: src.size, sha256: src.sha256 }])
    env.fake.inject('files.update', { kind: 'loseResponse' })
    await b.publishSet(set, manifest)
    expect(env.fake.count('files.update')).toBe(1)
    const updates = env.fake.log.filter(e => e.route === 'files.update')
    expect(updates[0].url).toContain(`addParents=${env.fake.rootFolderId}`)
    const manifestUpload = env.fake.log.findIndex(e => e.route === 'upload.multipart' && env.fake.log.indexOf(e) > 1 && e.status === 200)
    expect(manifestUpload).toBeLessThan(env.fake.log.indexOf(updates[0]))
    const folder = env.fake.children(env.fake.rootFolderId).find(f => f.name === 'set')
    expect(folder?.appProperties).toMatchObject({ syncmeshSet: set.id, syncmeshRole: 'set' })
    expect(env.fake.resolve(env.fake.rootFolderId, 'set/a/b.txt')?.content?.equals(src.data)).toBe(true)
    expect(await b.isPublished(set)).toBe(true)
  })

  it('authenticates as a service account (JWT bearer grant at the configured token URL)', async () => {
    await env.close()
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const email = 'relay@project.iam.gserviceaccount.com'
    env = await driveEnv({ serviceAccount: { email, publicKey } })
    const auth: DriveAuthConfig = {
      type: 'serviceAccount',
      clientEmail: email,
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      tokenUrl: env.fake.tokenUrl
    }
    const b = env.open({ auth })
    expect(await b.putFile(set, 'sa.txt', new MemorySource(Buffer.from('hello')))).toBe('uploaded')
    expect(env.fake.count('token')).toBe(1)
    expect(stored('sa.txt')).toHaveLength(1)
  })

  it('uses a hashed path tag when the path is too long for one app property', async () => {
    const b = env.open()
    const long = `${'deep/'.repeat(30)}file.txt`
    const src = new MemorySource(Buffer.from('long'))
    expect(await b.putFile(set, long, src)).toBe('uploaded')
    expect(pathTag(long)).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(stored(long)).toHaveLength(1)
    expect(await b.putFile(set, long, src)).toBe('exists')
  })
})

// ---------------------------------------------------------------------------------------------
// folder specifics

describe('folder backend specifics', () => {
  let root: string
  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'syncmesh-folder-')) })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('a crash between the rename and the marker is recovered by hashing the staged file', async () => {
    const set = newSet()
    const b = new FolderBackend({ root, retry: fastRetry() })
    const src = new MemorySource(randomBytes(50 * KiB))
    await b.putFile(set, 'x/y.bin', src)
    await unlink(join(root, '.staging', `${set.id}.meta`, `${sha256Hex('x/y.bin')}.json`))
    const again = new FolderBackend({ root, retry: fastRetry() })
    const before = src.bytesRead
    expect(await again.putFile(set, 'x/y.bin', src)).toBe('exists')
    expect(src.bytesRead).toBe(before)
    expect(again.stats.filesWritten).toBe(0)
  })

  it('publishing removes the staging area and the markers', async () => {
    const set = newSet()
    const b = new FolderBackend({ root, retry: fastRetry() })
    const src = new MemorySource(Buffer.from('a'))
    await b.putFile(set, 'a', src)
    await b.publishSet(set, createManifest(set, [{ path: 'a', size: 1, sha256: src.sha256 }]))
    expect(await readdir(join(root, '.staging'))).toEqual(['tmp'])
    expect((await stat(join(root, set.name, 'a'))).size).toBe(1)
  })

  it('a full disk is fatal, a busy one is retried', () => {
    const err = (code: string): BackendError => classifyFolderError(Object.assign(new Error(code), { code }))
    expect([err('ENOSPC').fatal, err('ENOSPC').reason]).toEqual([true, 'storageQuotaExceeded'])
    expect(err('EACCES').fatal).toBe(true)
    expect(err('EMFILE').fatal).toBe(false)
  })
})

// ---------------------------------------------------------------------------------------------
// small pieces

describe('retry, errors and protocol helpers', () => {
  it('retrying backs off exponentially with jitter, bounded, and stops on fatal errors', async () => {
    const delays: number[] = []
    const policy = resolveRetryPolicy({ attempts: 4, baseDelayMs: 100, maxDelayMs: 250, random: () => 1, sleep: async ms => { delays.push(ms) } })
    let n = 0
    const transient = (): never => { throw new BackendError('boom', { fatal: false, reason: 'x' }) }
    await expect(retrying('t', async () => { n++; transient() }, e => e as BackendError, policy)).rejects.toThrow('boom')
    expect(n).toBe(4)
    expect(delays).toEqual([100, 200, 250])
    n = 0
    await expect(retrying('t', async () => { n++; throw new BackendError('no', { fatal: true, reason: 'y' }) }, e => e as BackendError, policy)).rejects.toThrow('no')
    expect(n).toBe(1)
  })

  it('parses Retry-After as seconds or a date', () => {
    expect(parseRetryAfter('3')).toBe(3000)
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000)
    expect(parseRetryAfter(undefined)).toBeUndefined()
    expect(parseRetryAfter('soon')).toBeUndefined()
  })

  it('classifies Drive answers', () => {
    const res = (status: number, reason?: string, headers: Record<string, string> = {}): unknown => ({
      message: 'x', config: { url: 'https://www.googleapis.com/drive/v3/files' },
      response: { status, headers: new Headers(headers), data: { error: { code: status, message: 'm', errors: reason === undefined ? [] : [{ reason }] } } }
    })
    expect(classifyDriveError(res(500)).fatal).toBe(false)
    expect(classifyDriveError(res(429, undefined, { 'retry-after': '7' })).retryAfterMs).toBe(7000)
    expect(classifyDriveError(res(403, 'storageQuotaExceeded')).reason).toBe('storageQuotaExceeded')
    expect(classifyDriveError(res(403, 'storageQuotaExceeded')).fatal).toBe(true)
    expect(classifyDriveError(res(403, 'rateLimitExceeded')).fatal).toBe(false)
    expect(classifyDriveError(res(400)).fatal).toBe(true)
    expect(classifyDriveError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })).fatal).toBe(false)
    expect(classifyDriveError(new TypeError('bug')).fatal).toBe(true)
  })

  it('escapes q strings and the fake parses them back', () => {
    const name = 'it\'s a \\ name'
    const pred = compileQuery(`name = ${q(name)} and trashed = false and 'p' in parents`)
    const f: FakeFile = { id: '1', name, mimeType: 'x', parents: ['p'], appProperties: {}, trashed: false, createdTime: '', modifiedTime: '' }
    expect(pred(f)).toBe(true)
    expect(pred({ ...f, name: 'other' })).toBe(false)
  })

  it('parses multipart/related bodies', () => {
    const body = Buffer.from('--b\r\ncontent-type: application/json\r\n\r\n{"a":1}\r\n--b\r\ncontent-type: application/octet-stream\r\n\r\n\r\nxy\r\n\r\n--b--')
    const parts = parseMultipart(body, 'b')
    expect(parts.map(p => p.body.toString())).toEqual(['{"a":1}', '\r\nxy\r\n'])
    expect(parts[1].headers['content-type']).toBe('application/octet-stream')
  })
})
