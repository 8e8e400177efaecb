/**
 * A local HTTP server that speaks the parts of the Google Drive v3 API (and the OAuth2 token
 * endpoint) that the Drive backend uses, with the real wire protocol: JSON bodies and query
 * parameters, `multipart/related` uploads, resumable sessions (`308` + `Range`, status queries
 * with `Content-Range: bytes *\/N`), Drive-shaped errors. Files live in memory.
 *
 * Supported:
 * - `POST /token` (grant types `refresh_token` and JWT bearer, RS256 signature checked)
 * - `GET /drive/v3/files` with `q` clauses joined by `and`: `'<id>' in parents`,
 *   `name = '…'`, `name != '…'`, `mimeType = '…'`, `mimeType != '…'`, `trashed = true|false`,
 *   `appProperties has { key='…' and value='…' }`; `fields`, `pageSize`, `pageToken`
 * - `POST /drive/v3/files` (metadata only), `GET /drive/v3/files/<id>` (`alt=media` too),
 *   `PATCH /drive/v3/files/<id>` (`addParents`, `removeParents`, name, appProperties merge,
 *   one parent at most as Drive enforces), `DELETE /drive/v3/files/<id>` (recursive)
 * - `POST /upload/drive/v3/files?uploadType=multipart|media|resumable`, `PUT` on a session URI
 *
 * Faults are injected per route ({@link FakeDrive.inject}) and every request is counted per
 * route ({@link FakeDrive.count}), so tests can assert that nothing was uploaded twice.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import type { AddressInfo } from 'node:net'

export const FOLDER_MIME = 'application/vnd.google-apps.folder'
const QUANTUM = 256 * 1024

export type FakeRoute =
  | 'token'
  | 'files.list' | 'files.create' | 'files.get' | 'files.get.media' | 'files.update' | 'files.delete'
  | 'upload.multipart' | 'upload.media' | 'upload.resumable.start' | 'upload.resumable.chunk' | 'upload.resumable.status'
  | 'unknown'

export type Fault =
  /** Answer with this status and a Drive error body (`reason`), optionally with Retry-After. */
  | { kind: 'status', status: number, reason?: string, retryAfter?: string }
  /** 429 with `Retry-After: <seconds>`. */
  | { kind: 'rateLimit', retryAfterSeconds: number }
  /**
   * Read `afterBytes` of the request body, then destroy the socket. For a resumable chunk the
   * bytes received are kept as Drive would (rounded down to 256 KiB), so a status query reports them.
   */
  | { kind: 'drop', afterBytes: number }
  /** The resumable session of this request expires: it and every later request on it get 404. */
  | { kind: 'expireSession' }
  /** 403 `storageQuotaExceeded`. */
  | { kind: 'quota' }
  /** 401 as for an expired or revoked access token. */
  | { kind: 'unauthorized' }
  /** The request is carried out, but the connection drops before the answer (the response is lost). */
  | { kind: 'loseResponse' }

export interface FakeFile {
  id: string
  name: string
  mimeType: string
  parents: string[]
  appProperties: Record<string, string>
  trashed: boolean
  content?: Buffer
  createdTime: string
  modifiedTime: string
}

interface Session {
  id: string
  meta: FileInput
  total: number
  data: Buffer
  received: number
  fields: string | undefined
  fileId?: string
  expired: boolean
}

interface FileInput {
  name?: unknown
  mimeType?: unknown
  parents?: unknown
  appProperties?: unknown
}

export interface FakeDriveInit {
  /** OAuth2 client accepted by the token endpoint. */
  oauth?: { clientId: string, clientSecret: string, refreshToken: string }
  /** Service account accepted by the token endpoint (its public key checks the JWT signature). */
  serviceAccount?: { email: string, publicKey: string | KeyObject }
  /**
   * Storage quota in bytes (sum of stored content); uploads beyond it get 403 storageQuotaExceeded.
   * @default unlimited
   */
  quotaBytes?: number
  /**
   * Access token lifetime in seconds, as sent in `expires_in`.
   * @default 3599
   */
  tokenLifetimeSeconds?: number
}

class HttpError extends Error {
  constructor (readonly status: number, readonly reason: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export class FakeDrive {
  /** Base URL with a trailing slash, e.g. `http://127.0.0.1:40123/`; give it as `rootUrl`. */
  url = ''
  /** Token endpoint URL (`<url>token`). */
  tokenUrl = ''
  /** A folder created at start (`Syncmesh`, in `root`); use it as the backend's root folder. */
  readonly rootFolderId: string
  readonly files = new Map<string, FakeFile>()
  readonly sessions = new Map<string, Session>()
  /** Media bytes received by upload requests (multipart media parts and resumable chunk bodies). */
  uploadBytes = 0
  /** Files created by an upload (multipart, media, or a completed resumable session). */
  filesUploaded = 0
  /** Every request, in order (route, method, path+query, status). */
  readonly log: Array<{ route: FakeRoute, method: string, url: string, status: number, contentRange?: string }> = []

  private readonly server: Server
  private readonly counts = new Map<FakeRoute, number>()
  private readonly faults: Array<{ route: FakeRoute, fault: Fault, times: number, match?: (req: IncomingMessage) => boolean }> = []
  private readonly tokens = new Set<string>()
  private readonly init: FakeDriveInit
  private readonly saKey: KeyObject | undefined
  private nextId = 1

  constructor (init: FakeDriveInit = {}) {
    this.init = init
    this.saKey = init.serviceAccount === undefined
      ? undefined
      : typeof init.serviceAccount.publicKey === 'string' ? createPublicKey(init.serviceAccount.publicKey) : init.serviceAccount.publicKey
    const rootDrive = this.addFile({ id: 'root', name: 'My Drive', mimeType: FOLDER_MIME, parents: [] })
    this.rootFolderId = this.addFile({ name: 'Syncmesh', mimeType: FOLDER_MIME, parents: [rootDrive.id] }).id
    this.server = createServer((req, res) => { void this.handle(req, res) })
    this.server.keepAliveTimeout = 5000
  }

  async start (): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => { this.server.off('error', reject); resolve() })
    })
    const { port } = this.server.address() as AddressInfo
    this.url = `http://127.0.0.1:${port}/`
    this.tokenUrl = `${this.url}token`
    return this
  }

  /** Closes the server and every open connection. Idempotent. */
  async stop (): Promise<void> {
    if (!this.server.listening) return
    const closed = new Promise<void>(resolve => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await closed
  }

  /**
   * Makes the next `times` requests of `route` (that `match`, when given) fail with `fault`.
   * Faults on a route apply in the order they were injected.
   */
  inject (route: FakeRoute, fault: Fault, times = 1, match?: (req: IncomingMessage) => boolean): void {
    this.faults.push({ route, fault, times, match })
  }

  /** Faults injected but not used yet. */
  pendingFaults (): number {
    return this.faults.reduce((n, f) => n + f.times, 0)
  }

  /** Requests received on `route` (faulted ones included). */
  count (route: FakeRoute): number {
    return this.counts.get(route) ?? 0
  }

  /** Invalidates every access token handed out so far (next API call gets 401). */
  revokeAccessTokens (): void {
    this.tokens.clear()
  }

  /** Children of a folder (not trashed), in creation order. */
  children (folderId: string): FakeFile[] {
    return [...this.files.values()].filter(f => !f.trashed && f.parents.includes(folderId))
  }

  /** Resolves `a/b/c` under `folderId` by names; undefined when absent (or ambiguous: throws). */
  resolve (folderId: string, path: string): FakeFile | undefined {
    let cur: FakeFile | undefined = this.files.get(folderId)
    for (const seg of path.split('/')) {
      if (cur === undefined) return undefined
      const matches = this.children(cur.id).filter(f => f.name === seg)
      if (matches.length > 1) throw new Error(`duplicate name ${seg} in ${cur.name}`)
      cur = matches[0]
    }
    return cur
  }

  /** Stored files (not folders) whose appProperties include `props`. */
  findByAppProperties (props: Record<string, string>): FakeFile[] {
    return [...this.files.values()].filter(f => !f.trashed && Object.entries(props).every(([k, v]) => f.appProperties[k] === v))
  }

  private storedBytes (): number {
    let n = 0
    for (const f of this.files.values()) n += f.content?.length ?? 0
    return n
  }

  private addFile (f: { id?: string, name: string, mimeType: string, parents: string[], appProperties?: Record<string, string>, content?: Buffer }): FakeFile {
    const now = new Date().toISOString()
    const file: FakeFile = {
      id: f.id ?? `f${(this.nextId++).toString().padStart(6, '0')}${randomBytes(3).toString('hex')}`,
      name: f.name,
      mimeType: f.mimeType,
      parents: f.parents,
      appProperties: f.appProperties ?? {},
      trashed: false,
      content: f.content,
      createdTime: now,
      modifiedTime: now
    }
    this.files.set(file.id, file)
    return file
  }

  // -------------------------------------------------------------------------------------------
  // dispatch

  private route (method: string, url: URL, req: IncomingMessage): { route: FakeRoute, id?: string } {
    const p = url.pathname
    if (p === '/token' && method === 'POST') return { route: 'token' }
    if (p === '/drive/v3/files') {
      if (method === 'GET') return { route: 'files.list' }
      if (method === 'POST') return { route: 'files.create' }
    }
    const m = /^\/drive\/v3\/files\/([^/]+)$/.exec(p)
    if (m !== null) {
      const id = decodeURIComponent(m[1])
      if (method === 'GET') return { route: url.searchParams.get('alt') === 'media' ? 'files.get.media' : 'files.get', id }
      if (method === 'PATCH') return { route: 'files.update', id }
      if (method === 'DELETE') return { route: 'files.delete', id }
    }
    if (p === '/upload/drive/v3/files') {
      const type = url.searchParams.get('uploadType')
      if (method === 'POST' && type === 'multipart') return { route: 'upload.multipart' }
      if (method === 'POST' && type === 'media') return { route: 'upload.media' }
      if (method === 'POST' && type === 'resumable') return { route: 'upload.resumable.start' }
      if (method === 'PUT' && url.searchParams.has('upload_id')) {
        const cr = req.headers['content-range'] ?? ''
        const status = /^bytes \*\/\d+$/.test(cr) || (cr === '' && req.headers['content-length'] === '0')
        return { route: status ? 'upload.resumable.status' : 'upload.resumable.chunk', id: url.searchParams.get('upload_id') ?? '' }
      }
    }
    return { route: 'unknown' }
  }

  private takeFault (route: FakeRoute, req: IncomingMessage): Fault | undefined {
    const i = this.faults.findIndex(f => f.route === route && (f.match === undefined || f.match(req)))
    if (i < 0) return undefined
    const f = this.faults[i]
    f.times--
    if (f.times <= 0) this.faults.splice(i, 1)
    return f.fault
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    const url = new URL(req.url ?? '/', this.url)
    const { route, id } = this.route(method, url, req)
    this.counts.set(route, (this.counts.get(route) ?? 0) + 1)
    const entry = { route, method, url: `${url.pathname}${url.search}`, status: 0, contentRange: req.headers['content-range'] }
    this.log.push(entry)
    res.on('finish', () => { entry.status = res.statusCode })
    try {
      const fault = this.takeFault(route, req)
      if (fault !== undefined) {
        if (await this.applyFault(fault, route, id, req, res)) return
      }
      if (route !== 'token' && route !== 'upload.resumable.chunk' && route !== 'upload.resumable.status') this.checkAuth(req)
      switch (route) {
        case 'token': return await this.token(req, res)
        case 'files.list': return this.list(url, res)
        case 'files.create': return await this.createMeta(url, req, res)
        case 'files.get': return this.get(id ?? '', url, res)
        case 'files.get.media': return this.media(id ?? '', res)
        case 'files.update': return await this.update(id ?? '', url, req, res)
        case 'files.delete': return this.delete(id ?? '', res)
        case 'upload.multipart': return await this.multipart(url, req, res)
        case 'upload.media': return await this.simpleMedia(url, req, res)
        case 'upload.resumable.start': return await this.startSession(url, req, res)
        case 'upload.resumable.chunk': return await this.chunk(id ?? '', req, res)
        case 'upload.resumable.status': return await this.status(id ?? '', req, res)
        case 'unknown': throw new HttpError(404, 'notFound', `no route for ${method} ${url.pathname}`)
      }
    } catch (err) {
      if (res.headersSent || req.socket.destroyed) return
      if (!req.complete) await drain(req).catch(() => {})
      if (err instanceof HttpError) return sendError(res, err)
      sendError(res, new HttpError(500, 'backendError', err instanceof Error ? err.message : String(err)))
    }
  }

  /** Returns true when the fault answered (or dropped) the request. */
  private async applyFault (fault: Fault, route: FakeRoute, id: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    switch (fault.kind) {
      case 'status':
        await drain(req)
        sendError(res, new HttpError(fault.status, fault.reason ?? (fault.status >= 500 ? 'backendError' : 'badRequest'),
          `injected ${fault.status}`, fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter }))
        return true
      case 'rateLimit':
        await drain(req)
        sendError(res, new HttpError(429, 'rateLimitExceeded', 'Rate Limit Exceeded', { 'retry-after': String(fault.retryAfterSeconds) }))
        return true
      case 'quota':
        await drain(req)
        sendError(res, new HttpError(403, 'storageQuotaExceeded', 'The user\'s Drive storage quota has been exceeded.'))
        return true
      case 'unauthorized':
        await drain(req)
        sendError(res, unauthorized())
        return true
      case 'loseResponse':
        res.writeHead = ((..._args: unknown[]) => res) as typeof res.writeHead
        res.end = ((..._args: unknown[]) => { req.socket.destroy(); return res }) as typeof res.end
        return false
      case 'expireSession': {
        const s = this.sessions.get(id ?? '')
        if (s !== undefined) s.expired = true
        return false // the handler answers 404 for the expired session
      }
      case 'drop': {
        if (route === 'upload.resumable.chunk') {
          const s = this.sessions.get(id ?? '')
          const range = parseContentRange(req.headers['content-range'])
          const got = await readSome(req, fault.afterBytes)
          this.uploadBytes += got.length
          if (s !== undefined && !s.expired && range !== undefined && range.start <= s.received) {
            const end = range.start + got.length
            const keep = Math.max(s.received, Math.min(end, s.total, Math.floor(end / QUANTUM) * QUANTUM))
            if (keep > s.received) {
              got.copy(s.data, s.received, s.received - range.start, keep - range.start)
              s.received = keep
            }
          }
        } else {
          await readSome(req, fault.afterBytes)
        }
        req.socket.destroy()
        return true
      }
    }
  }

  private checkAuth (req: IncomingMessage): void {
    const h = req.headers.authorization ?? ''
    const m = /^Bearer (.+)$/.exec(h)
    if (m === null || !this.tokens.has(m[1])) throw unauthorized()
  }

  // -------------------------------------------------------------------------------------------
  // token endpoint

  private async token (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = new URLSearchParams((await readBody(req)).toString('utf8'))
    const grant = body.get('grant_type')
    const oauthError = (status: number, error: string, description: string): void => {
      sendJson(res, status, { error, error_description: description })
    }
    if (grant === 'refresh_token') {
      const o = this.init.oauth
      if (o === undefined || body.get('client_id') !== o.clientId || body.get('client_secret') !== o.clientSecret) {
        return oauthError(401, 'invalid_client', 'The OAuth client was not found.')
      }
      if (body.get('refresh_token') !== o.refreshToken) return oauthError(400, 'invalid_grant', 'Token has been expired or revoked.')
    } else if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      const sa = this.init.serviceAccount
      const parts = (body.get('assertion') ?? '').split('.')
      if (sa === undefined || this.saKey === undefined || parts.length !== 3) return oauthError(400, 'invalid_grant', 'Invalid JWT.')
      const ok = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), this.saKey, Buffer.from(parts[2], 'base64url'))
      const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as { iss?: string, exp?: number }
      if (!ok || claims.iss !== sa.email) return oauthError(400, 'invalid_grant', 'Invalid JWT Signature.')
      if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return oauthError(400, 'invalid_grant', 'Invalid JWT: Token must be a short-lived token.')
    } else {
      return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grant ?? ''}`)
    }
    const token = `ya29.fake-${randomBytes(12).toString('hex')}`
    this.tokens.add(token)
    sendJson(res, 200, { access_token: token, expires_in: this.init.tokenLifetimeSeconds ?? 3599, token_type: 'Bearer', scope: 'https://www.googleapis.com/auth/drive' })
  }

  // -------------------------------------------------------------------------------------------
  // files

  private list (url: URL, res: ServerResponse): void {
    const q = url.searchParams.get('q')
    const pred = q === null ? () => true : compileQuery(q)
    const all = [...this.files.values()].filter(f => f.id !== 'root' && pred(f))
    const pageSize = Math.min(1000, Math.max(1, Number(url.searchParams.get('pageSize') ?? '100')))
    const start = Number(url.searchParams.get('pageToken') ?? '0')
    if (!Number.isInteger(start) || start < 0) throw new HttpError(400, 'invalid', 'Invalid pageToken')
    const page = all.slice(start, start + pageSize)
    const out: Record<string, unknown> = {
      kind: 'drive#fileList',
      incompleteSearch: false,
      files: page.map(f => this.json(f))
    }
    if (start + pageSize < all.length) out.nextPageToken = String(start + pageSize)
    sendJson(res, 200, selectFields(out, url.searchParams.get('fields') ?? 'kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)'))
  }

  private checkParents (meta: FileInput): string[] {
    const parents = meta.parents === undefined ? ['root'] : meta.parents
    if (!Array.isArray(parents) || parents.some(p => typeof p !== 'string')) throw new HttpError(400, 'invalid', 'Invalid parents')
    if (parents.length > 1) throw new HttpError(403, 'cannotAddParent', 'A shared drive item must have exactly one parent.')
    for (const p of parents as string[]) {
      const f = this.files.get(p)
      if (f === undefined || f.trashed) throw new HttpError(404, 'notFound', `File not found: ${p}.`)
      if (f.mimeType !== FOLDER_MIME) throw new HttpError(400, 'invalidParent', `Parent ${p} is not a folder.`)
    }
    return parents as string[]
  }

  private newFile (meta: FileInput, content: Buffer | undefined): FakeFile {
    if (meta.name !== undefined && typeof meta.name !== 'string') throw new HttpError(400, 'invalid', 'Invalid name')
    const props = meta.appProperties ?? {}
    if (typeof props !== 'object' || props === null) throw new HttpError(400, 'invalid', 'Invalid appProperties')
    const appProperties: Record<string, string> = {}
    for (const [k, v] of Object.entries(props as Record<string, unknown>)) {
      if (typeof v !== 'string') throw new HttpError(400, 'invalid', `Invalid appProperties value for ${k}`)
      if (Buffer.byteLength(k) + Buffer.byteLength(v) > 124) throw new HttpError(400, 'invalid', `appProperties ${k}: key plus value exceed 124 bytes`)
      appProperties[k] = v
    }
    const mimeType = typeof meta.mimeType === 'string' ? meta.mimeType : (content === undefined ? 'application/octet-stream' : 'application/octet-stream')
    return this.addFile({
      name: typeof meta.name === 'string' ? meta.name : 'Untitled',
      mimeType,
      parents: this.checkParents(meta),
      appProperties,
      content: mimeType === FOLDER_MIME ? undefined : (content ?? Buffer.alloc(0))
    })
  }

  private checkQuota (adding: number): void {
    if (this.init.quotaBytes !== undefined && this.storedBytes() + adding > this.init.quotaBytes) {
      throw new HttpError(403, 'storageQuotaExceeded', 'The user\'s Drive storage quota has been exceeded.')
    }
  }

  private async createMeta (url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const meta = parseJson(await readBody(req)) as FileInput
    const f = this.newFile(meta, undefined)
    sendJson(res, 200, selectFields(this.json(f), url.searchParams.get('fields') ?? 'kind,id,name,mimeType'))
  }

  private file (id: string): FakeFile {
    const f = this.files.get(id)
    if (f === undefined) throw new HttpError(404, 'notFound', `File not found: ${id}.`)
    return f
  }

  private get (id: string, url: URL, res: ServerResponse): void {
    sendJson(res, 200, selectFields(this.json(this.file(id)), url.searchParams.get('fields') ?? 'kind,id,name,mimeType'))
  }

  private media (id: string, res: ServerResponse): void {
    const f = this.file(id)
    if (f.content === undefined) throw new HttpError(403, 'fileNotDownloadable', 'Only files with binary content can be downloaded.')
    res.writeHead(200, { 'content-type': f.mimeType, 'content-length': f.content.length })
    res.end(f.content)
  }

  private async update (id: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const f = this.file(id)
    const body = await readBody(req)
    const meta = (body.length === 0 ? {} : parseJson(body)) as FileInput & { trashed?: unknown }
    const add = (url.searchParams.get('addParents') ?? '').split(',').filter(s => s !== '')
    const remove = (url.searchParams.get('removeParents') ?? '').split(',').filter(s => s !== '')
    let parents = f.parents.filter(p => !remove.includes(p))
    for (const p of add) {
      if (!parents.includes(p)) parents.push(p)
    }
    if (parents.length > 1) throw new HttpError(403, 'cannotAddParent', 'Increasing the number of parents is not allowed.')
    parents = this.checkParents({ parents })
    for (let p: string | undefined = parents[0]; p !== undefined; p = this.files.get(p)?.parents[0]) {
      if (p === f.id) throw new HttpError(400, 'invalidParent', 'A folder cannot be moved into itself.')
    }
    if (meta.name !== undefined) {
      if (typeof meta.name !== 'string') throw new HttpError(400, 'invalid', 'Invalid name')
      f.name = meta.name
    }
    if (meta.appProperties !== undefined) {
      for (const [k, v] of Object.entries(meta.appProperties as Record<string, unknown>)) {
        if (v === null) delete f.appProperties[k]
        else if (typeof v === 'string') f.appProperties[k] = v
        else throw new HttpError(400, 'invalid', `Invalid appProperties value for ${k}`)
      }
    }
    if (typeof meta.trashed === 'boolean') f.trashed = meta.trashed
    f.parents = parents
    f.modifiedTime = new Date().toISOString()
    sendJson(res, 200, selectFields(this.json(f), url.searchParams.get('fields') ?? 'kind,id,name,mimeType'))
  }

  private delete (id: string, res: ServerResponse): void {
    const f = this.file(id)
    const rm = (x: FakeFile): void => {
      for (const c of [...this.files.values()].filter(c => c.parents.includes(x.id))) rm(c)
      this.files.delete(x.id)
    }
    rm(f)
    res.writeHead(204)
    res.end()
  }

  // -------------------------------------------------------------------------------------------
  // uploads

  private async multipart (url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const type = req.headers['content-type'] ?? ''
    const m = /^multipart\/related;\s*boundary=("?)([^";]+)\1/i.exec(type)
    if (m === null) throw new HttpError(400, 'badContent', `Bad content type for a multipart upload: ${type}`)
    const parts = parseMultipart(await readBody(req), m[2])
    if (parts.length !== 2) throw new HttpError(400, 'badContent', `Multipart upload needs 2 parts, got ${parts.length}`)
    const meta = parseJson(parts[0].body) as FileInput
    const content = parts[1].body
    this.uploadBytes += content.length
    this.checkQuota(content.length)
    if (meta.mimeType === undefined) meta.mimeType = parts[1].headers['content-type']
    const f = this.newFile(meta, content)
    this.filesUploaded++
    sendJson(res, 200, selectFields(this.json(f), url.searchParams.get('fields') ?? 'kind,id,name,mimeType'))
  }

  private async simpleMedia (url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const content = await readBody(req)
    this.uploadBytes += content.length
    this.checkQuota(content.length)
    const f = this.newFile({ mimeType: req.headers['content-type'] }, content)
    this.filesUploaded++
    sendJson(res, 200, selectFields(this.json(f), url.searchParams.get('fields') ?? 'kind,id,name,mimeType'))
  }

  private async startSession (url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req)
    const meta = (body.length === 0 ? {} : parseJson(body)) as FileInput
    const lenHeader = req.headers['x-upload-content-length']
    const total = Number(lenHeader)
    if (typeof lenHeader !== 'string' || !Number.isSafeInteger(total) || total < 0) {
      throw new HttpError(400, 'badRequest', 'X-Upload-Content-Length is required for this fake')
    }
    this.checkQuota(total)
    this.checkParents(meta)
    const id = randomBytes(16).toString('base64url')
    this.sessions.set(id, { id, meta, total, data: Buffer.alloc(total), received: 0, fields: url.searchParams.get('fields') ?? undefined, expired: false })
    res.writeHead(200, { location: `${this.url}upload/drive/v3/files?uploadType=resumable&upload_id=${id}`, 'content-length': 0 })
    res.end()
  }

  private session (id: string): Session {
    const s = this.sessions.get(id)
    if (s === undefined || s.expired) throw new HttpError(404, 'notFound', 'Upload session not found or expired.')
    return s
  }

  private async chunk (id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req)
    this.uploadBytes += body.length
    const s = this.session(id)
    const range = parseContentRange(req.headers['content-range'])
    if (s.fileId !== undefined) return this.sendSessionFile(s, res)
    if (range === undefined || range.total !== s.total) throw new HttpError(400, 'badRequest', `Invalid Content-Range ${req.headers['content-range'] ?? ''}`)
    if (range.end - range.start + 1 !== body.length) throw new HttpError(400, 'badRequest', `Content-Range ${range.start}-${range.end} does not match ${body.length} body bytes`)
    if (range.end + 1 < s.total && body.length % QUANTUM !== 0) throw new HttpError(400, 'badRequest', 'Chunk size must be a multiple of 256 KiB')
    if (range.start > s.received) throw new HttpError(400, 'badRequest', `Chunk starts at ${range.start}, server has ${s.received} bytes`)
    if (range.end + 1 > s.received) {
      body.copy(s.data, s.received, s.received - range.start)
      s.received = range.end + 1
    }
    if (s.received === s.total) return this.finish(s, res)
    sendResume(res, s.received)
  }

  private async status (id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    await drain(req)
    const s = this.session(id)
    if (s.fileId !== undefined) return this.sendSessionFile(s, res)
    if (s.received === s.total) return this.finish(s, res)
    sendResume(res, s.received)
  }

  private finish (s: Session, res: ServerResponse): void {
    this.checkQuota(s.total)
    const f = this.newFile(s.meta, s.data)
    this.filesUploaded++
    s.fileId = f.id
    s.data = Buffer.alloc(0)
    this.sendSessionFile(s, res)
  }

  private sendSessionFile (s: Session, res: ServerResponse): void {
    sendJson(res, 200, selectFields(this.json(this.file(s.fileId ?? '')), s.fields ?? 'kind,id,name,mimeType'))
  }

  private json (f: FakeFile): Record<string, unknown> {
    const out: Record<string, unknown> = {
      kind: 'drive#file',
      id: f.id,
      name: f.name,
      mimeType: f.mimeType,
      parents: f.parents,
      appProperties: f.appProperties,
      trashed: f.trashed,
      createdTime: f.createdTime,
      modifiedTime: f.modifiedTime
    }
    if (f.content !== undefined) {
      out.size = String(f.content.length)
      out.md5Checksum = createHash('md5').update(f.content).digest('hex')
      out.sha256Checksum = createHash('sha256').update(f.content).digest('hex')
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

function unauthorized (): HttpError {
  return new HttpError(401, 'authError', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.')
}

function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': data.length, ...headers })
  res.end(data)
}

function sendError (res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, {
    error: {
      code: err.status,
      message: err.message,
      errors: [{ domain: err.status === 403 && err.reason.includes('Quota') ? 'usageLimits' : 'global', reason: err.reason, message: err.message }]
    }
  }, err.headers)
}

function sendResume (res: ServerResponse, received: number): void {
  const headers: Record<string, string | number> = { 'content-length': 0 }
  if (received > 0) headers.range = `bytes=0-${received - 1}`
  res.writeHead(308, headers)
  res.end()
}

function parseContentRange (h: string | undefined): { start: number, end: number, total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(h ?? '')
  if (m === null) return undefined
  return { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) }
}

async function readBody (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

async function drain (req: IncomingMessage): Promise<void> {
  for await (const _ of req) { /* discard */ }
}

/** Reads up to `n` bytes of the body (less if it ends), then stops reading. */
async function readSome (req: IncomingMessage, n: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let got = 0
  if (n <= 0) return Buffer.alloc(0)
  return await new Promise<Buffer>(resolve => {
    const done = (): void => {
      req.off('data', onData)
      req.off('end', done)
      req.pause()
      resolve(Buffer.concat(chunks).subarray(0, n))
    }
    const onData = (c: Buffer): void => {
      chunks.push(c)
      got += c.length
      if (got >= n) done()
    }
    req.on('data', onData)
    req.on('end', done)
  })
}

function parseJson (b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'))
  } catch {
    throw new HttpError(400, 'parseError', 'Parse Error')
  }
}

/** Splits a multipart/related body into parts (headers lower-cased). */
export function parseMultipart (body: Buffer, boundary: string): Array<{ headers: Record<string, string>, body: Buffer }> {
  const first = Buffer.from(`--${boundary}`)
  const delim = Buffer.from(`\r\n--${boundary}`)
  if (body.indexOf(first) !== 0) throw new HttpError(400, 'badContent', 'Multipart body does not start with the boundary')
  const parts: Array<{ headers: Record<string, string>, body: Buffer }> = []
  let pos = first.length
  for (;;) {
    if (body.subarray(pos, pos + 2).toString() === '--') break // close delimiter
    if (body.subarray(pos, pos + 2).toString() !== '\r\n') throw new HttpError(400, 'badContent', 'Malformed multipart delimiter')
    pos += 2
    const headerEnd = body.indexOf('\r\n\r\n', pos)
    if (headerEnd < 0) throw new HttpError(400, 'badContent', 'Multipart part without headers end')
    const headers: Record<string, string> = {}
    for (const line of body.subarray(pos, headerEnd).toString('utf8').split('\r\n')) {
      const i = line.indexOf(':')
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
    }
    const next = body.indexOf(delim, headerEnd + 4)
    if (next < 0) throw new HttpError(400, 'badContent', 'Multipart part not terminated')
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) })
    pos = next + delim.length
  }
  return parts
}

// ---------------------------------------------------------------------------------------------
// `fields` selection: `a,b,files(c,d)`

type FieldSpec = Map<string, FieldSpec | true>

function parseFields (s: string): FieldSpec {
  let i = 0
  const parseList = (): FieldSpec => {
    const spec: FieldSpec = new Map()
    for (;;) {
      let name = ''
      while (i < s.length && !',()'.includes(s[i])) name += s[i++]
      name = name.trim()
      if (s[i] === '(') {
        i++
        const sub = parseList()
        if (s[i] !== ')') throw new HttpError(400, 'invalidParameter', `Invalid field selection ${s}`)
        i++
        spec.set(name, sub)
      } else if (name !== '') {
        spec.set(name, true)
      }
      if (s[i] === ',') { i++; continue }
      return spec
    }
  }
  const spec = parseList()
  if (i !== s.length) throw new HttpError(400, 'invalidParameter', `Invalid field selection ${s}`)
  return spec
}

function applyFields (v: unknown, spec: FieldSpec): unknown {
  if (Array.isArray(v)) return v.map(x => applyFields(x, spec))
  if (typeof v !== 'object' || v === null) return v
  if (spec.has('*')) return v
  const out: Record<string, unknown> = {}
  for (const [k, sub] of spec) {
    const val = (v as Record<string, unknown>)[k]
    if (val === undefined) continue
    out[k] = sub === true ? val : applyFields(val, sub)
  }
  return out
}

function selectFields (v: Record<string, unknown>, fields: string): unknown {
  return applyFields(v, parseFields(fields))
}

// ---------------------------------------------------------------------------------------------
// the `q` query language (the subset the backend uses)

type Token = { t: 'str', v: string } | { t: 'word', v: string } | { t: 'sym', v: string }

function tokenize (q: string): Token[] {
  const out: Token[] = []
  let i = 0
  while (i < q.length) {
    const c = q[i]
    if (/\s/.test(c)) { i++; continue }
    if (c === '\'') {
      let v = ''
      i++
      while (i < q.length && q[i] !== '\'') {
        if (q[i] === '\\' && i + 1 < q.length) i++
        v += q[i++]
      }
      if (q[i] !== '\'') throw new HttpError(400, 'invalid', 'Invalid Value: unterminated string in q')
      i++
      out.push({ t: 'str', v })
    } else if (c === '!' && q[i + 1] === '=') {
      out.push({ t: 'sym', v: '!=' })
      i += 2
    } else if ('={}()'.includes(c)) {
      out.push({ t: 'sym', v: c })
      i++
    } else {
      let v = ''
      while (i < q.length && /[A-Za-z0-9_.]/.test(q[i])) v += q[i++]
      if (v === '') throw new HttpError(400, 'invalid', `Invalid Value: unexpected ${c} in q`)
      out.push({ t: 'word', v })
    }
  }
  return out
}

/** Compiles a `q` string into a predicate; unsupported syntax is a 400, as Drive answers. */
export function compileQuery (q: string): (f: FakeFile) => boolean {
  const toks = tokenize(q)
  let i = 0
  const fail = (): never => { throw new HttpError(400, 'invalid', `Invalid Value: unsupported q ${q}`) }
  const next = (): Token => toks[i++] ?? fail()
  const expectSym = (v: string): void => { const t = next(); if (t.t !== 'sym' || t.v !== v) fail() }
  const expectWord = (v: string): void => { const t = next(); if (t.t !== 'word' || t.v !== v) fail() }
  const str = (): string => { const t = next(); return t.t === 'str' ? t.v : fail() }
  const clause = (): ((f: FakeFile) => boolean) => {
    const t = next()
    if (t.t === 'str') {
      expectWord('in')
      expectWord('parents')
      return f => f.parents.includes(t.v)
    }
    if (t.t !== 'word') return fail()
    if (t.v === 'appProperties') {
      expectWord('has')
      expectSym('{')
      expectWord('key')
      expectSym('=')
      const key = str()
      expectWord('and')
      expectWord('value')
      expectSym('=')
      const value = str()
      expectSym('}')
      return f => f.appProperties[key] === value
    }
    if (t.v === 'name' || t.v === 'mimeType') {
      const op = next()
      if (op.t !== 'sym' || (op.v !== '=' && op.v !== '!=')) return fail()
      const v = str()
      const field = t.v
      return op.v === '=' ? f => f[field] === v : f => f[field] !== v
    }
    if (t.v === 'trashed') {
      expectSym('=')
      const v = next()
      if (v.t !== 'word' || (v.v !== 'true' && v.v !== 'false')) return fail()
      return f => f.trashed === (v.v === 'true')
    }
    return fail()
  }
  const preds = [clause()]
  while (i < toks.length) {
    expectWord('and')
    preds.push(clause())
  }
  return f => preds.every(p => p(f))
}
