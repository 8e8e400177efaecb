/**
 * The `drive` backend: sets published into a Google Drive folder (Drive API v3 via `googleapis`).
 *
 * Layout under the configured root folder:
 *
 * ```
 *   ROOT/<set name>/…                              published set (appProperties syncmeshRole=set)
 *   ROOT/.syncmesh-staging/.syncmesh-staging-<id>/… a set being uploaded (syncmeshRole=staging)
 * ```
 *
 * Every file is created with `appProperties { syncmeshSet, syncmeshPath, syncmeshSha256 }` and
 * looked up by them (`files.list`, `appProperties has {…}`) before any upload, so a retried or
 * repeated upload never makes a second copy. `syncmeshPath` holds the path itself, or
 * `sha256:<hex of the path>` when key plus value would pass Drive's 124-byte limit for one property.
 *
 * Publish strategy: the manifest is uploaded into the staging folder, then ONE `files.update` on
 * the staging folder renames it to the set name, moves it from `.syncmesh-staging` to the root
 * (`addParents`/`removeParents`) and tags it `syncmeshRole=set`. Drive applies a metadata update
 * as a unit, so the set appears in the root whole, manifest included, or not at all; no child is
 * moved one by one. (The staging folders live in their own container so the root only ever shows
 * published sets.)
 *
 * Uploads: files up to `resumableThreshold` go in one `multipart/related` request
 * (`drive.files.create` with media). Larger files use the resumable protocol spoken directly
 * through the auth client: POST `…/upload/drive/v3/files?uploadType=resumable` → session URI
 * (persisted in the {@link SessionStore}), PUT chunks with `Content-Range: bytes a-b/total`,
 * `308` + `Range: bytes=0-n` → continue at n+1. After a failed chunk (dropped connection, 5xx)
 * the next attempt first asks the server (`Content-Range: bytes *\/total`) what it holds and
 * continues from there; `404`/`410` (expired session) starts a new session. A restarted relay
 * finds the session URI in the store and continues the same upload.
 *
 * Retries: every HTTP request goes through {@link DriveBackend.call} (one retry loop, one
 * classification, {@link classifyDriveError}); the built-in retries of gaxios are switched off on
 * the auth client's transporter so nothing retries behind its back.
 */
import { Readable } from 'node:stream'
import { google } from 'googleapis'
import type { Auth, drive_v3 } from 'googleapis'
import {
  BackendError, MANIFEST_NAME, asChunks, checkManifest, closeSource, encodeManifest, parseRetryAfter, readRange,
  resolveRetryPolicy, retrying, sha256Hex, validatePath, validateSet, validateSource
} from '../backend.js'
import type {
  BackendFeatures, CloudBackend, PutOptions, PutResult, ResolvedRetryPolicy, RetryPolicy, SetManifest, SetRef,
  UploadSource
} from '../backend.js'

/** Where resumable session URIs survive a restart (LevelDB in the node; a Map in tests). */
export interface SessionStore {
  get: (key: string) => Promise<string | undefined>
  put: (key: string, uri: string) => Promise<void>
  del: (key: string) => Promise<void>
}

export class MemorySessionStore implements SessionStore {
  readonly map = new Map<string, string>()
  async get (key: string): Promise<string | undefined> { return this.map.get(key) }
  async put (key: string, uri: string): Promise<void> { this.map.set(key, uri) }
  async del (key: string): Promise<void> { this.map.delete(key) }
}

/** How the backend authenticates. */
export type DriveAuthConfig =
  /** An OAuth2 user grant: client id/secret plus a refresh token. */
  | {
    type: 'oauth2'
    clientId: string
    clientSecret: string
    refreshToken: string
    /**
     * Token endpoint.
     * @default 'https://oauth2.googleapis.com/token'
     */
    tokenUrl?: string
  }
  /** A service account key (optionally impersonating `subject` with domain-wide delegation). */
  | {
    type: 'serviceAccount'
    clientEmail: string
    /** PEM private key of the service account. */
    privateKey: string
    subject?: string
    /** @default ['https://www.googleapis.com/auth/drive'] */
    scopes?: string[]
    /**
     * Token endpoint (google-auth-library's JWT client has it hard-coded; the backend redirects
     * its token request here).
     * @default 'https://oauth2.googleapis.com/token'
     */
    tokenUrl?: string
  }
  /** An auth client built elsewhere. */
  | { type: 'client', client: Auth.OAuth2Client, tokenUrl?: string }

export interface DriveBackendComponents {
  /** Persists resumable session URIs, keyed by set id + path + sha256. */
  sessions: SessionStore
}

export interface DriveBackendInit {
  auth: DriveAuthConfig
  /** Id of the Drive folder that receives the published sets. */
  rootFolderId: string
  /**
   * API root (the fake server's URL in tests), with a trailing slash.
   * @default 'https://www.googleapis.com/'
   */
  rootUrl?: string
  /**
   * Files larger than this many bytes use the resumable protocol; smaller ones one multipart request.
   * @default 8 MiB
   */
  resumableThreshold?: number
  /**
   * Bytes per resumable PUT; a multiple of 256 KiB. One chunk is held in memory per upload.
   * @default 8 MiB
   */
  chunkSize?: number
  /**
   * Timeout of one HTTP request, in ms (a chunk PUT included).
   * @default 300_000
   */
  requestTimeoutMs?: number
  /** Shared drive id, when the root folder is in a shared drive (lists then use `corpora=drive`). */
  driveId?: string
  retry?: RetryPolicy
}

export const DRIVE_SCOPE = 'https://www.googleapis.com/auth/drive'
const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token'
const FOLDER_MIME = 'application/vnd.google-apps.folder'
const CONTAINER_NAME = '.syncmesh-staging'
const QUANTUM = 256 * 1024
const MiB = 1024 * 1024
const FILE_FIELDS = 'id,name,mimeType,parents,size,appProperties,sha256Checksum'
/** Drive's limit for one app property: key plus value, in UTF-8 bytes. */
const PROPERTY_LIMIT = 124
/** Reasons of a 403 that mean "slow down", not "forbidden". */
const RATE_REASONS = new Set(['userRateLimitExceeded', 'rateLimitExceeded', 'sharingRateLimitExceeded'])

type DriveFile = drive_v3.Schema$File

interface GaxiosLike {
  name?: unknown
  code?: unknown
  message?: unknown
  config?: { url?: unknown }
  response?: { status?: number, data?: unknown, headers?: unknown }
}

function header (headers: unknown, name: string): string | undefined {
  // gaxios hands over node-fetch's Headers, which is not the global class: duck-type it
  const get = (headers as { get?: unknown } | null)?.get
  if (typeof get === 'function') return (get.call(headers, name) as string | null) ?? undefined
  if (typeof headers === 'object' && headers !== null) {
    const v = (headers as Record<string, unknown>)[name]
    return typeof v === 'string' ? v : undefined
  }
  return undefined
}

function parseBody (data: unknown): unknown {
  if (typeof data !== 'string') return data
  try { return JSON.parse(data) } catch { return data }
}

/**
 * The one retry decision of the Drive backend: maps anything a request can throw to a
 * {@link BackendError}. Fatal: 400, 401 (the caller refreshes the token once first), 403 other
 * than rate limits (storageQuotaExceeded, insufficientPermissions, …), 404, a failed token
 * refresh. Transient: 408, 429 and 403 rate limits (with Retry-After), 5xx, network errors and
 * timeouts, errors of the upload source.
 */
export function classifyDriveError (err: unknown, tokenUrl = GOOGLE_TOKEN_URL): BackendError {
  if (err instanceof BackendError) return err
  const e = (typeof err === 'object' && err !== null ? err : {}) as GaxiosLike
  const status = e.response?.status
  const msg = typeof e.message === 'string' ? e.message : String(err)
  if (status !== undefined) {
    const data = parseBody(e.response?.data)
    const retryAfterMs = parseRetryAfter(header(e.response?.headers, 'retry-after'))
    const url = String(e.config?.url ?? '')
    const oauth = data as { error?: unknown, error_description?: unknown } | undefined
    if (url.startsWith(tokenUrl) || url.startsWith(GOOGLE_TOKEN_URL) || typeof oauth?.error === 'string') {
      const what = typeof oauth?.error === 'string' ? `${oauth.error}${typeof oauth.error_description === 'string' ? `: ${oauth.error_description}` : ''}` : msg
      if (status >= 500 || status === 429 || status === 408) {
        return new BackendError(`Drive token endpoint failed (${status} ${what})`, { fatal: false, reason: 'authServerError', status, retryAfterMs, cause: err })
      }
      return new BackendError(`Drive access token refresh failed (${status} ${what})`, { fatal: true, reason: 'authRefreshFailed', status, cause: err })
    }
    const apiError = (data as { error?: { message?: unknown, errors?: Array<{ reason?: unknown, message?: unknown }> } } | undefined)?.error
    const first = apiError?.errors?.[0]
    const reason = typeof first?.reason === 'string' ? first.reason : undefined
    const detail = typeof apiError?.message === 'string' ? apiError.message : msg
    const text = `Drive ${status}${reason === undefined ? '' : ` ${reason}`}: ${detail}`
    if (status === 429 || status === 408 || status >= 500 || (status === 403 && reason !== undefined && RATE_REASONS.has(reason))) {
      return new BackendError(text, { fatal: false, reason: reason ?? (status === 429 ? 'rateLimitExceeded' : 'serverError'), status, retryAfterMs, cause: err })
    }
    if (status === 401) return new BackendError(text, { fatal: true, reason: 'authError', status, cause: err })
    return new BackendError(text, { fatal: true, reason: reason ?? (status === 404 ? 'notFound' : status === 403 ? 'forbidden' : 'badRequest'), status, cause: err })
  }
  if (err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError) {
    return new BackendError(`Drive backend bug: ${msg}`, { fatal: true, reason: 'internal', cause: err })
  }
  const code = typeof e.code === 'string' ? e.code : undefined
  if (code === 'TimeoutError') return new BackendError(`Drive request timed out: ${msg}`, { fatal: false, reason: 'timeout', cause: err })
  return new BackendError(`Drive request failed: ${msg}`, { fatal: false, reason: code ?? 'networkError', cause: err })
}

/** Escapes a value for a single-quoted string in a Drive `q`. */
export function q (v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, '\\\'')}'`
}

function hasProp (key: string, value: string): string {
  return `appProperties has { key=${q(key)} and value=${q(value)} }`
}

/** The `syncmeshPath` property value for a path (the path, or its hash when too long). */
export function pathTag (path: string): string {
  return Buffer.byteLength('syncmeshPath' + path) <= PROPERTY_LIMIT ? path : `sha256:${sha256Hex(path)}`
}

function sessionKey (set: SetRef, path: string, sha256: string): string {
  return JSON.stringify(['drive', set.id, path, sha256])
}

type ChunkOutcome = { kind: 'done', file: DriveFile } | { kind: 'next', offset: number } | { kind: 'expired' }

interface RawResponse { status: number, headers: { get: (name: string) => string | null }, data: unknown }

export class DriveBackend implements CloudBackend {
  readonly name = 'drive'
  readonly features: BackendFeatures = { resumable: true, atomicSetPublish: true, serverSideMove: true }

  private readonly sessions: SessionStore
  private readonly auth: Auth.OAuth2Client
  private readonly drive: drive_v3.Drive
  private readonly rootUrl: string
  private readonly rootFolderId: string
  private readonly tokenUrl: string
  private readonly threshold: number
  private readonly chunkSize: number
  private readonly timeoutMs: number
  private readonly driveId: string | undefined
  private readonly retry: ResolvedRetryPolicy
  /** Folder ids by `parentId/name`, so concurrent uploads never create the same folder twice. */
  private readonly folders = new Map<string, Promise<string>>()
  /** Sets this instance has seen unpublished (saves a lookup per file). */
  private readonly unpublished = new Set<string>()

  constructor (components: DriveBackendComponents, init: DriveBackendInit) {
    this.sessions = components.sessions
    this.rootUrl = init.rootUrl ?? 'https://www.googleapis.com/'
    if (!this.rootUrl.endsWith('/')) this.rootUrl += '/'
    this.rootFolderId = init.rootFolderId
    this.threshold = init.resumableThreshold ?? 8 * MiB
    this.chunkSize = init.chunkSize ?? 8 * MiB
    if (this.chunkSize <= 0 || this.chunkSize % QUANTUM !== 0) throw new RangeError(`chunkSize ${this.chunkSize} is not a positive multiple of 256 KiB`)
    this.timeoutMs = init.requestTimeoutMs ?? 300_000
    this.driveId = init.driveId
    this.retry = resolveRetryPolicy(init.retry)
    this.tokenUrl = init.auth.tokenUrl ?? GOOGLE_TOKEN_URL
    this.auth = makeAuthClient(init.auth)
    this.drive = google.drive({ version: 'v3', auth: this.auth, rootUrl: this.rootUrl })
  }

  // -------------------------------------------------------------------------------------------
  // the one retry loop

  /**
   * Runs `op` (one or more requests) under the retry policy. A 401 from the API invalidates the
   * cached access token and is retried once (the auth client's own refresh-and-retry skips
   * streamed bodies); a second 401, or a failed refresh, is fatal.
   */
  private async call<T>(what: string, op: (attempt: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    let refreshed = false
    return await retrying(what, op, err => {
      const e = classifyDriveError(err, this.tokenUrl)
      if (e.reason === 'authError' && !refreshed) {
        refreshed = true
        this.auth.setCredentials({ ...this.auth.credentials, expiry_date: 1 })
        return new BackendError(e.message, { fatal: false, reason: 'authRetry', status: e.status, cause: err })
      }
      return e
    }, this.retry, signal)
  }

  /** Session store calls: a failing store is reported as a transient BackendError (local, not retried here). */
  private async store<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op()
    } catch (err) {
      throw new BackendError(`session store failed: ${err instanceof Error ? err.message : String(err)}`, { fatal: false, reason: 'sessionStoreError', cause: err })
    }
  }

  /** Per-request options for googleapis calls (rootUrl must be repeated: media uploads ignore the client's). */
  private opts (signal?: AbortSignal): { rootUrl: string, signal?: AbortSignal, timeout: number, retry: false } {
    return { rootUrl: this.rootUrl, signal, timeout: this.timeoutMs, retry: false }
  }

  private listScope (): Pick<drive_v3.Params$Resource$Files$List, 'corpora' | 'driveId' | 'includeItemsFromAllDrives' | 'supportsAllDrives' | 'spaces'> {
    return this.driveId === undefined
      ? { supportsAllDrives: true, includeItemsFromAllDrives: true, spaces: 'drive' }
      : { supportsAllDrives: true, includeItemsFromAllDrives: true, corpora: 'drive', driveId: this.driveId }
  }

  /** Every file matching `query` (all pages), each page one retried request. */
  private async list (query: string, fields: string, signal?: AbortSignal): Promise<DriveFile[]> {
    const out: DriveFile[] = []
    let pageToken: string | undefined
    do {
      const res = await this.call('files.list', async () => await this.drive.files.list({
        ...this.listScope(), q: query, fields: `nextPageToken,files(${fields})`, pageSize: 1000, pageToken
      }, this.opts(signal)), signal)
      out.push(...(res.data.files ?? []))
      pageToken = res.data.nextPageToken ?? undefined
    } while (pageToken !== undefined)
    return out
  }

  private async findTagged (props: Record<string, string>, signal?: AbortSignal): Promise<DriveFile | undefined> {
    const query = [...Object.entries(props).map(([k, v]) => hasProp(k, v)), 'trashed = false'].join(' and ')
    return (await this.list(query, FILE_FIELDS, signal))[0]
  }

  // -------------------------------------------------------------------------------------------
  // folders

  /** Finds or creates folder `name` in `parentId`; a retried create first looks again. */
  private async folder (parentId: string, name: string, props: Record<string, string>): Promise<string> {
    const key = `${parentId}/${name}`
    let p = this.folders.get(key)
    if (p === undefined) {
      p = this.call('folder', async () => {
        const found = await this.drive.files.list({
          ...this.listScope(),
          q: `${q(parentId)} in parents and name = ${q(name)} and mimeType = ${q(FOLDER_MIME)} and trashed = false`,
          fields: 'files(id)',
          pageSize: 10
        }, this.opts())
        const id = found.data.files?.[0]?.id
        if (id != null) return id
        const res = await this.drive.files.create({
          requestBody: { name, mimeType: FOLDER_MIME, parents: [parentId], appProperties: props },
          fields: 'id',
          supportsAllDrives: true
        }, this.opts())
        if (res.data.id == null) throw new BackendError('Drive created a folder without an id', { fatal: false, reason: 'serverError' })
        return res.data.id
      })
      this.folders.set(key, p)
      p.catch(() => this.folders.delete(key))
    }
    return await p
  }

  private async container (): Promise<string> {
    return await this.folder(this.rootFolderId, CONTAINER_NAME, { syncmeshRole: 'container' })
  }

  private stagingName (set: SetRef): string { return `.syncmesh-staging-${set.id}` }

  private async stagingFolder (set: SetRef): Promise<string> {
    return await this.folder(await this.container(), this.stagingName(set), { syncmeshSet: set.id, syncmeshRole: 'staging' })
  }

  // -------------------------------------------------------------------------------------------
  // CloudBackend

  async beginSet (set: SetRef, opts: { signal?: AbortSignal } = {}): Promise<void> {
    validateSet(set)
    if (await this.isPublished(set, opts)) return
    this.unpublished.add(set.id)
    await this.stagingFolder(set)
  }

  async isPublished (set: SetRef, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    validateSet(set)
    const sets = await this.list([
      `${q(this.rootFolderId)} in parents`, hasProp('syncmeshSet', set.id), hasProp('syncmeshRole', 'set'), 'trashed = false'
    ].join(' and '), 'id', opts.signal)
    for (const f of sets) {
      const m = await this.list(`${q(f.id ?? '')} in parents and name = ${q(MANIFEST_NAME)} and trashed = false`, 'id', opts.signal)
      if (m.length > 0) return true
    }
    return false
  }

  async putFile (set: SetRef, path: string, src: UploadSource, opts: PutOptions = {}): Promise<PutResult> {
    validateSet(set)
    const segs = validatePath(path)
    validateSource(src)
    const { signal } = opts
    const props = { syncmeshSet: set.id, syncmeshPath: pathTag(path), syncmeshSha256: src.sha256 }
    const key = sessionKey(set, path, src.sha256)
    if (await this.findTagged(props, signal) !== undefined) {
      await this.store(async () => await this.sessions.del(key))
      opts.onProgress?.(src.size)
      return 'exists'
    }
    if (!this.unpublished.has(set.id)) {
      if (await this.isPublished(set, { signal })) {
        throw new BackendError(`set ${set.id} is already published without ${path}@${src.sha256.slice(0, 12)}`, { fatal: true, reason: 'alreadyPublished' })
      }
      this.unpublished.add(set.id)
    }
    let parent = await this.stagingFolder(set)
    for (const seg of segs.slice(0, -1)) parent = await this.folder(parent, seg, { syncmeshSet: set.id, syncmeshRole: 'dir' })
    const meta: drive_v3.Schema$File = { name: segs[segs.length - 1], parents: [parent], appProperties: props, mimeType: 'application/octet-stream' }
    const file = src.size > this.threshold
      ? await this.resumable(key, meta, src, opts)
      : await this.multipart(meta, src, props, opts)
    await this.verify(file, src, path, signal)
    await this.store(async () => await this.sessions.del(key))
    opts.onProgress?.(src.size)
    return 'uploaded'
  }

  async publishSet (set: SetRef, manifest: SetManifest, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkManifest(set, manifest)
    const { signal } = opts
    if (await this.isPublished(set, opts)) return
    const clash = await this.list(`${q(this.rootFolderId)} in parents and name = ${q(set.name)} and trashed = false`, 'id,appProperties', signal)
    if (clash.some(f => f.appProperties?.syncmeshSet !== set.id)) {
      throw new BackendError(`cannot publish set ${set.id}: ${set.name} already exists in the Drive folder`, { fatal: true, reason: 'nameConflict' })
    }
    const container = await this.container()
    const staging = await this.stagingFolder(set)

    // every file of the manifest is stored; anything else tagged with the set goes
    const tagged = await this.list(`${hasProp('syncmeshSet', set.id)} and trashed = false`, FILE_FIELDS, signal)
    const stored = new Map<string, DriveFile[]>()
    const manifests: DriveFile[] = []
    for (const f of tagged) {
      const p = f.appProperties ?? {}
      if (p.syncmeshRole === 'manifest') manifests.push(f)
      else if (p.syncmeshPath !== undefined && p.syncmeshSha256 !== undefined) {
        const k = `${p.syncmeshPath}\n${p.syncmeshSha256}`
        stored.set(k, [...(stored.get(k) ?? []), f])
      }
    }
    const wanted = new Set<string>()
    for (const e of manifest.files) {
      const k = `${pathTag(e.path)}\n${e.sha256}`
      wanted.add(k)
      const f = stored.get(k)?.[0]
      if (f === undefined || Number(f.size ?? -1) !== e.size) {
        throw new BackendError(`cannot publish set ${set.id}: ${e.path} is not stored`, { fatal: true, reason: 'incompleteSet' })
      }
    }
    for (const [k, files] of stored) {
      for (const f of wanted.has(k) ? files.slice(1) : files) await this.deleteFile(f.id ?? '', signal)
    }

    // the manifest, last
    const bytes = encodeManifest(manifest)
    const props = { syncmeshSet: set.id, syncmeshRole: 'manifest', syncmeshSha256: sha256Hex(bytes) }
    let have = false
    for (const m of manifests) {
      if (!have && m.appProperties?.syncmeshSha256 === props.syncmeshSha256 && (m.parents ?? []).includes(staging)) have = true
      else await this.deleteFile(m.id ?? '', signal)
    }
    if (!have) {
      const src: UploadSource = { size: bytes.length, sha256: props.syncmeshSha256, open: async (offset) => Readable.from([bytes.subarray(offset)]) }
      const file = await this.multipart({ name: MANIFEST_NAME, parents: [staging], appProperties: props, mimeType: 'application/json' }, src, props, { signal })
      await this.verify(file, src, MANIFEST_NAME, signal)
    }

    // one metadata update makes the set visible whole
    await this.call('publish', async attempt => {
      if (attempt > 1) {
        const cur = await this.drive.files.get({ fileId: staging, fields: 'id,name,parents', supportsAllDrives: true }, this.opts(signal))
        if ((cur.data.parents ?? []).includes(this.rootFolderId) && cur.data.name === set.name) return
      }
      await this.drive.files.update({
        fileId: staging,
        addParents: this.rootFolderId,
        removeParents: container,
        requestBody: { name: set.name, appProperties: { syncmeshRole: 'set' } },
        fields: 'id,name,parents',
        supportsAllDrives: true
      }, this.opts(signal))
    }, signal)
    this.folders.delete(`${container}/${this.stagingName(set)}`)
    this.unpublished.delete(set.id)
  }

  // -------------------------------------------------------------------------------------------
  // uploads

  private async deleteFile (fileId: string, signal?: AbortSignal): Promise<void> {
    await this.call('files.delete', async attempt => {
      try {
        await this.drive.files.delete({ fileId, supportsAllDrives: true }, this.opts(signal))
      } catch (err) {
        // a retried delete whose first attempt landed
        if (attempt > 1 && (err as GaxiosLike).response?.status === 404) return
        throw err
      }
    }, signal)
  }

  /** Checks what Drive stored against the source; deletes it and fails fatally when it differs. */
  private async verify (file: DriveFile, src: UploadSource, path: string, signal?: AbortSignal): Promise<void> {
    const size = Number(file.size ?? -1)
    const shaOk = file.sha256Checksum == null || file.sha256Checksum === src.sha256
    if (size === src.size && shaOk) return
    if (file.id != null) await this.deleteFile(file.id, signal)
    throw new BackendError(`${path}: Drive stored ${size} bytes sha256 ${String(file.sha256Checksum).slice(0, 12)}, the source declared ${src.size} bytes ${src.sha256.slice(0, 12)}`, { fatal: true, reason: 'checksumMismatch' })
  }

  /** One multipart/related request; a retry first checks whether the previous attempt landed. */
  private async multipart (meta: drive_v3.Schema$File, src: UploadSource, props: Record<string, string>, opts: PutOptions): Promise<DriveFile> {
    const { signal } = opts
    return await this.call('upload.multipart', async attempt => {
      if (attempt > 1) {
        const found = await this.findTagged(props, signal)
        if (found !== undefined) return found
      }
      const stream = await src.open(0)
      const body = stream instanceof Readable ? stream : Readable.from(asChunks(stream))
      try {
        const res = await this.drive.files.create({
          requestBody: meta,
          media: { mimeType: meta.mimeType ?? 'application/octet-stream', body },
          fields: FILE_FIELDS,
          supportsAllDrives: true
        }, {
          ...this.opts(signal),
          onUploadProgress: (e: { bytesRead?: number }) => { if (typeof e.bytesRead === 'number') opts.onProgress?.(e.bytesRead) }
        })
        return res.data
      } finally {
        body.destroy()
        closeSource(stream)
      }
    }, signal)
  }

  /** A request on the resumable protocol, through the auth client (so it carries the token). */
  private async raw (url: string, method: 'POST' | 'PUT', headers: Record<string, string>, data: Buffer | object | undefined, okStatus: (s: number) => boolean, signal?: AbortSignal): Promise<RawResponse> {
    const res = await this.auth.request<unknown>({
      url, method, headers, data, signal, timeout: this.timeoutMs, retry: false, responseType: 'json', redirect: 'manual', validateStatus: okStatus
    })
    return { status: res.status, headers: res.headers, data: res.data }
  }

  private async startSession (meta: drive_v3.Schema$File, size: number, signal?: AbortSignal): Promise<string> {
    return await this.call('upload.resumable.start', async () => {
      const url = `${this.rootUrl}upload/drive/v3/files?uploadType=resumable&supportsAllDrives=true&fields=${encodeURIComponent(FILE_FIELDS)}`
      const res = await this.raw(url, 'POST', {
        'content-type': 'application/json; charset=UTF-8',
        'x-upload-content-type': meta.mimeType ?? 'application/octet-stream',
        'x-upload-content-length': String(size)
      }, meta, s => s >= 200 && s < 300, signal)
      const location = res.headers.get('location')
      if (location === null) throw new BackendError('Drive started a resumable session without a Location', { fatal: false, reason: 'serverError', status: res.status })
      return location
    }, signal)
  }

  /** Interprets an answer on a session URI. */
  private outcome (res: RawResponse): ChunkOutcome {
    if (res.status === 404 || res.status === 410) return { kind: 'expired' }
    if (res.status === 308) {
      const m = /^bytes=0-(\d+)$/.exec(res.headers.get('range') ?? '')
      return { kind: 'next', offset: m === null ? 0 : Number(m[1]) + 1 }
    }
    return { kind: 'done', file: parseBody(res.data) as DriveFile }
  }

  private async resumable (key: string, meta: drive_v3.Schema$File, src: UploadSource, opts: PutOptions): Promise<DriveFile> {
    const { signal } = opts
    const sessionStatus = (s: number): boolean => (s >= 200 && s < 300) || s === 308 || s === 404 || s === 410
    let uri = await this.store(async () => await this.sessions.get(key))
    /** Where the next chunk starts; undefined = ask the server first. */
    let offset: number | undefined
    for (;;) {
      if (uri === undefined) {
        const session = await this.startSession(meta, src.size, signal)
        await this.store(async () => await this.sessions.put(key, session))
        uri = session
        offset = 0
      }
      const session = uri
      const r = await this.call('upload.resumable.chunk', async attempt => {
        if (attempt > 1 || offset === undefined) {
          const st = this.outcome(await this.raw(session, 'PUT', { 'content-range': `bytes */${src.size}` }, undefined, sessionStatus, signal))
          if (st.kind !== 'next') return st
          offset = st.offset
          opts.onProgress?.(offset)
        }
        const start = offset
        if (start >= src.size) {
          throw new BackendError(`Drive holds all ${src.size} bytes but did not finish the upload`, { fatal: false, reason: 'serverError' })
        }
        const length = Math.min(this.chunkSize, src.size - start)
        const chunk = await readRange(src, start, length, signal)
        offset = undefined // unknown until the server answers
        const res = await this.raw(session, 'PUT', { 'content-range': `bytes ${start}-${start + length - 1}/${src.size}` }, chunk, sessionStatus, signal)
        return this.outcome(res)
      }, signal)
      if (r.kind === 'done') return r.file
      if (r.kind === 'expired') {
        await this.store(async () => await this.sessions.del(key))
        uri = undefined
        opts.onProgress?.(0)
        continue
      }
      offset = r.offset
      opts.onProgress?.(offset)
    }
  }
}

/** Builds the auth client and switches off gaxios' own retries (the backend's policy owns them all). */
export function makeAuthClient (cfg: DriveAuthConfig): Auth.OAuth2Client {
  let client: Auth.OAuth2Client
  let tokenRewrite: string | undefined
  if (cfg.type === 'oauth2') {
    client = new google.auth.OAuth2({
      clientId: cfg.clientId,
      clientSecret: cfg.clientSecret,
      endpoints: cfg.tokenUrl === undefined ? undefined : { oauth2TokenUrl: cfg.tokenUrl }
    })
    client.setCredentials({ refresh_token: cfg.refreshToken })
  } else if (cfg.type === 'serviceAccount') {
    client = new google.auth.JWT({ email: cfg.clientEmail, key: cfg.privateKey, subject: cfg.subject, scopes: cfg.scopes ?? [DRIVE_SCOPE] })
    tokenRewrite = cfg.tokenUrl
  } else {
    client = cfg.client
    tokenRewrite = cfg.tokenUrl
  }
  client.transporter.interceptors.request.add({
    resolved: async (config) => {
      config.retry = false
      config.retryConfig = { ...config.retryConfig, retry: 0, noResponseRetries: 0 }
      if (tokenRewrite !== undefined && config.url.href === GOOGLE_TOKEN_URL) config.url = new URL(tokenRewrite)
      return config
    }
  })
  return client
}

/** Compile-time check that the class fits the interface. */
export const driveBackendFactory = ((components: DriveBackendComponents, init: DriveBackendInit) => new DriveBackend(components, init)) satisfies (c: DriveBackendComponents, i: DriveBackendInit) => CloudBackend
