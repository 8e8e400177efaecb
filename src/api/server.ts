/**
 * The node's HTTP API, for clients that are not nodes (SMSyncServer's upload API):
 *
 * ```
 *   POST /v1/sets                    {"name"}            201 {"id", "name"}
 *   PUT  /v1/sets/ID/files/PATH      body = the file     201 {"path", "size", "sha256"}
 *   POST /v1/sets/ID/commit          {"files"?: [PATH]}  202 the set
 *   POST /v1/sets/ID/retry                               202 a failed set is uploaded again
 *   GET  /v1/sets/ID                                     200 the set (state, files, progress)
 *   GET  /v1/sets                                        200 every set
 *   GET  /v1/status                                      200 the node's status
 *   GET  /v1/conflicts                                   200 live conflict copies, each beside its base's current version
 * ```
 *
 * Every /v1 request needs `Authorization: Bearer TOKEN` (the home's api.token, compared in
 * constant time); errors answer JSON `{"error": "one line"}` with a fitting status. File
 * bodies are streamed to a temp file in the data folder's reserved area, never held in
 * memory, and renamed into `sets/NAME/PATH` once whole; a body over `maxFileBytes` is
 * refused (413) and leaves nothing behind.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import type { DataFolder } from '../store/datafolder.js'
import { boundAddress, closeHttp, listenHttp, parseHostPort } from '../node/http.js'
import type { Scanner } from '../store/scanner.js'
import type { Store } from '../store/store.js'
import { checkSetPath, SetError, setFolder, type SetBook, type SetRecord } from '../relay/sets.js'
import type { PinKeeper } from '../relay/relay.js'
import { listConflicts } from './conflicts.js'

export interface ApiInit {
  /** HOST:PORT to listen on (port 0: any free port). */
  listen: string
  token: string
  /**
   * Largest file body accepted by PUT, in bytes.
   * @default 64 GiB
   */
  maxFileBytes?: number
  /**
   * Largest JSON body, in bytes.
   * @default 64 KiB
   */
  maxJsonBytes?: number
  /**
   * How long a commit waits for the files it names to replicate to this node (ms).
   * @default 30_000
   */
  commitWaitMs?: number
}

export interface ApiComponents {
  store: Store
  data: DataFolder
  scanner: Scanner
  book: SetBook
  keeper: PinKeeper
  status: () => Promise<unknown>
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void
  /** Extra routes (the dashboard); return true when handled. */
  extra?: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>
}

export class ApiError extends Error {
  override name = 'ApiError'
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

export class ApiServer {
  private readonly c: ApiComponents
  private readonly token: Buffer
  private readonly host: string
  private readonly port: number
  private readonly maxFileBytes: number
  private readonly maxJsonBytes: number
  private readonly commitWaitMs: number
  private server: Server | null = null
  /** content id -> SHA-256 of the whole file, for files uploaded here. */
  private readonly sha256s = new Map<string, string>()
  readonly stats = { requests: 0, unauthorized: 0, filesReceived: 0, bytesReceived: 0 }

  constructor (components: ApiComponents, init: ApiInit) {
    this.c = components
    this.token = digest(init.token)
    const { host, port } = parseApiAddress(init.listen)
    this.host = host
    this.port = port
    this.maxFileBytes = init.maxFileBytes ?? 64 * 1024 ** 3
    this.maxJsonBytes = init.maxJsonBytes ?? 64 * 1024
    this.commitWaitMs = init.commitWaitMs ?? 30_000
  }

  async start (): Promise<void> {
    const server = createServer((req, res) => { void this.handle(req, res) })
    // big uploads take long: no overall request timeout, but an idle socket is closed
    server.requestTimeout = 0
    server.headersTimeout = 30_000
    server.setTimeout(120_000)
    await listenHttp(server, { host: this.host, port: this.port }, 'the HTTP API', (msg) => new ApiError(0, msg))
    this.server = server
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = null
    await closeHttp(server)
  }

  /** The address actually listened on (port resolved when 0). */
  get address (): string {
    return (this.server != null ? boundAddress(this.server) : null) ?? `${this.host}:${this.port}`
  }

  get url (): string {
    return `http://${this.address}`
  }

  sha256Of (hash: string): string | null {
    return this.sha256s.get(hash) ?? this.c.keeper.pins.sha256(hash)
  }

  private authorized (req: IncomingMessage): boolean {
    const h = req.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h)
    if (m == null) return false
    // compare digests: constant time, whatever the lengths
    return timingSafeEqual(digest(m[1]), this.token)
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++
    try {
      const url = new URL(req.url ?? '/', 'http://localhost')
      if (!url.pathname.startsWith('/v1/') && this.c.extra != null && await this.c.extra(req, res, url)) return
      if (!url.pathname.startsWith('/v1/')) throw new ApiError(404, `no such endpoint: ${req.method ?? ''} ${url.pathname}`)
      if (!this.authorized(req)) {
        this.stats.unauthorized++
        res.setHeader('www-authenticate', 'Bearer realm="syncmesh"')
        throw new ApiError(401, 'missing or wrong bearer token (see api.token in the node\'s home)')
      }
      await this.route(req, res, url)
    } catch (err) {
      const status = err instanceof ApiError ? err.status : err instanceof SetError ? err.status : 500
      const message = (err as Error).message.split('\n')[0]
      if (status >= 500) this.c.log?.('error', `api: ${req.method ?? ''} ${req.url ?? ''}: ${message}`)
      if (!res.headersSent) {
        // a refused upload: do not read the rest of the body, close after answering
        if (!req.complete) res.setHeader('connection', 'close')
        sendJson(res, status, { error: message })
      } else {
        res.destroy()
      }
      if (!req.complete) req.resume()
    }
  }

  private async route (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // the raw path, not url.pathname: WHATWG URL parsing resolves '..' segments, and a
    // path that tries to leave the set must be refused, not quietly rewritten
    const raw = (req.url ?? '/').split('?')[0]
    const parts = raw.split('/').slice(2) // after '/v1/'
    const method = req.method ?? 'GET'
    if (parts[0] === 'status' && parts.length === 1 && method === 'GET') {
      sendJson(res, 200, await this.c.status())
      return
    }
    if (parts[0] === 'conflicts' && parts.length === 1 && method === 'GET') {
      sendJson(res, 200, await listConflicts(this.c.store))
      return
    }
    if (parts[0] !== 'sets') throw new ApiError(404, `no such endpoint: ${method} ${url.pathname}`)
    if (parts.length === 1) {
      if (method === 'POST') {
        const body = await this.json(req) as { name?: unknown }
        const set = await this.c.book.create(body.name)
        this.c.log?.('info', `api: set ${set.name} created (${set.id})`)
        sendJson(res, 201, { id: set.id, name: set.name })
        return
      }
      if (method === 'GET') {
        const sets = await this.c.book.list()
        sendJson(res, 200, { sets: await Promise.all(sets.map(async (s) => await this.c.book.view(s, (h) => this.sha256Of(h)))) })
        return
      }
      throw new ApiError(405, `${method} is not allowed on /v1/sets`)
    }
    const setId = decodePart(parts[1])
    const set = await this.c.book.get(setId)
    if (set == null) throw new ApiError(404, `no set ${JSON.stringify(setId)} is known here (created on another node? it may not have replicated yet)`)
    if (parts.length === 2 && method === 'GET') {
      sendJson(res, 200, await this.c.book.view(set, (h) => this.sha256Of(h)))
      return
    }
    if (parts.length === 3 && parts[2] === 'retry' && method === 'POST') {
      const again = await this.c.book.retry(set)
      this.c.log?.('info', `api: set ${set.name} is to be uploaded again`)
      sendJson(res, 202, await this.c.book.view(again, (h) => this.sha256Of(h)))
      return
    }
    if (parts.length === 3 && parts[2] === 'commit' && method === 'POST') {
      await this.commit(req, res, set)
      return
    }
    if (parts.length >= 4 && parts[2] === 'files' && method === 'PUT') {
      await this.putFile(req, res, set, checkSetPath(parts.slice(3).map(decodePart).join('/')))
      return
    }
    throw new ApiError(404, `no such endpoint: ${method} ${url.pathname}`)
  }

  private async putFile (req: IncomingMessage, res: ServerResponse, set: SetRecord, path: string): Promise<void> {
    if (set.commit != null) throw new ApiError(409, `set ${set.name} is committed: its files can no longer change`)
    const declared = req.headers['content-length']
    if (declared != null && Number(declared) > this.maxFileBytes) {
      throw new ApiError(413, `file is ${declared} bytes, more than the limit of ${this.maxFileBytes}`)
    }
    const rel = `${setFolder(set.name)}/${path}`
    checkSetPath(rel)
    const tmp = join(this.c.data.tmpDir, `upload-${process.pid}-${Math.random().toString(36).slice(2)}`)
    const whole = createHash('sha256')
    let size = 0
    const max = this.maxFileBytes
    const counter = new Transform({
      transform (chunk: Buffer, _enc, cb) {
        size += chunk.byteLength
        if (size > max) { cb(new ApiError(413, `file is more than the limit of ${max} bytes`)); return }
        whole.update(chunk)
        cb(null, chunk)
      }
    })
    try {
      await pipeline(req, counter, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }))
      if (declared != null && size !== Number(declared)) throw new ApiError(400, `body ended after ${size} of ${declared} bytes`)
      await this.c.data.ensureParent(rel)
      const existing = await stat(this.c.data.abs(rel)).catch(() => null)
      if (existing?.isDirectory() === true) throw new ApiError(409, `${path} is a directory in set ${set.name}`)
      await rename(tmp, this.c.data.abs(rel))
    } catch (err) {
      await rm(tmp, { force: true })
      if ((err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') throw new ApiError(400, 'the upload was cut off')
      throw err
    }
    const sha256 = whole.digest('hex')
    // recorded now, so a commit right after this answer includes the file
    await this.c.scanner.recordNow([rel])
    const rec = await this.c.store.get(rel)
    if (rec != null && rec.type === 'file' && !rec.deleted) this.sha256s.set(rec.hash, sha256)
    this.stats.filesReceived++
    this.stats.bytesReceived += size
    this.c.log?.('info', `api: ${rel} received (${size} bytes)`)
    sendJson(res, 201, { path, size, sha256 })
  }

  private async commit (req: IncomingMessage, res: ServerResponse, set: SetRecord): Promise<void> {
    if (set.commit != null) throw new ApiError(409, `set ${set.name} is committed already`)
    const body = await this.json(req, true) as { files?: unknown }
    let expected: string[] = []
    if (body.files != null) {
      if (!Array.isArray(body.files) || body.files.some((f) => typeof f !== 'string')) throw new ApiError(400, '"files" must be a list of paths')
      expected = (body.files as string[]).map((p) => checkSetPath(p))
    }
    // files uploaded to other nodes: wait (bounded) until their records reached this one
    const deadline = Date.now() + this.commitWaitMs
    const base = setFolder(set.name)
    for (;;) {
      const present = new Set((await this.c.book.openFiles(set)).map((r) => r.path.slice(base.length + 1)))
      const missing = expected.filter((p) => !present.has(p))
      if (missing.length === 0) break
      if (Date.now() > deadline) throw new ApiError(409, `not known on this node yet: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const entries = (await this.c.book.openFiles(set)).map((r) => ({ source: r.path, path: r.path.slice(base.length + 1) }))
    const committed = await this.c.book.commit(set, entries)
    // keep the committed contents this node holds before answering: a file changed right
    // after the commit still uploads at its committed version
    await this.c.keeper.reconcile()
    this.c.log?.('info', `api: set ${set.name} committed (${entries.length} files)`)
    sendJson(res, 202, await this.c.book.view(committed, (h) => this.sha256Of(h)))
  }

  private async json (req: IncomingMessage, emptyOk = false): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = []
    let n = 0
    for await (const chunk of req) {
      n += (chunk as Buffer).byteLength
      if (n > this.maxJsonBytes) throw new ApiError(413, `JSON body is more than ${this.maxJsonBytes} bytes`)
      chunks.push(chunk as Buffer)
    }
    const text = Buffer.concat(chunks).toString('utf8')
    if (text.trim() === '' && emptyOk) return {}
    let v: unknown
    try { v = JSON.parse(text) } catch { throw new ApiError(400, 'body is not JSON') }
    if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, 'body must be a JSON object')
    return v as Record<string, unknown>
  }
}

function decodePart (s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new ApiError(400, `bad path: ${JSON.stringify(s)} is not valid percent-encoding`)
  }
}

function digest (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

/** `--api` HOST:PORT -> host and port (ApiError with one line otherwise). */
export function parseApiAddress (s: string): { host: string, port: number } {
  return parseHostPort(s, (msg) => new ApiError(0, msg))
}
