/**
 * Committed sets as replicated meta records (see "Relay and committed sets" in the design).
 *
 * A set lives in four kinds of meta record, each written by one role, so concurrent
 * writers rarely meet on one record (and when they do, last-writer-wins is the right rule):
 *
 * ```
 *   /set/<id>                 name, creation; then the commit (id, when, by whom, count)
 *   /setfile/<id>/<path>      one committed file: its data path and committed content
 *                             (size, block list, content id); the relay adds its SHA-256
 *                             and marks it uploaded
 *   /lease/<id>               the relay working on the set, and until when (its clock)
 *   /setstate/<id>            uploading | uploaded | failed, error, bytes done
 * ```
 *
 * A set's files uploaded through the HTTP API live in the data folder at `sets/<name>/...`
 * and replicate like any file; the commit freezes the versions it lists, and a relay
 * uploads exactly those contents (src/relay/pins.ts keeps them while the set waits).
 *
 * Every payload read here may come from a peer: it is checked before use, and a record
 * that does not have the expected shape is ignored (logged once by the caller).
 */
import { randomBytes } from 'node:crypto'
import type { Store } from '../store/store.js'
import type { StoredRecord } from '../store/types.js'
import { PathError, isValidPath, validatePath } from '../store/paths.js'
import { validateSet } from './backend.js'
import { LIMITS } from '../gossip/codec.js'

export type SetState = 'open' | 'committed' | 'uploading' | 'uploaded' | 'failed'
export type FileUploadState = 'pending' | 'uploaded'

export interface SetCommit {
  id: string
  /** Wall clock ms of the committing node. */
  at: number
  by: string
  files: number
}

export interface SetRecord {
  id: string
  name: string
  createdAt: number
  createdBy: string
  commit: SetCommit | null
}

/** A committed file: where it lives in the data folder and which content was committed. */
export interface SetFile {
  setId: string
  /** Path inside the set (and in the cloud folder). */
  path: string
  /** The commit this entry belongs to (a losing concurrent commit's entries are ignored). */
  commit: string
  /** Path in the data folder when committed. */
  source: string
  size: number
  mode: number
  mtimeMs: number
  blockSize: number
  blocks: string[]
  /** Content id (SHA-256 over the block hashes), as in file records. */
  hash: string
  /** SHA-256 of the whole content, once a relay (or the committer) computed it. */
  sha256: string | null
  uploaded: boolean
}

export interface Lease {
  relay: string
  /** Until when, on the relay's wall clock (ms). */
  until: number
}

export interface UploadState {
  state: 'uploading' | 'uploaded' | 'failed'
  relay: string
  error: string | null
  bytesDone: number
  bytesTotal: number
  at: number
}

export class SetError extends Error {
  override name = 'SetError'
  /** HTTP status that fits (400 bad input, 404 unknown, 409 state conflict). */
  readonly status: number
  constructor (message: string, status: number) {
    super(message)
    this.status = status
  }
}

const SET_PREFIX = '/set/'
const FILE_PREFIX = '/setfile/'
const LEASE_PREFIX = '/lease/'
const STATE_PREFIX = '/setstate/'

/** The data-folder directory of API-uploaded files of set `name`. */
export function setFolder (name: string): string {
  return `sets/${name}`
}

export function newSetId (): string {
  return randomBytes(9).toString('base64url').replace(/^[-_]/, 'S')
}

/** Throws SetError(400) unless `name` can name a set (one segment, no leading dot). */
export function checkSetName (name: unknown): string {
  if (typeof name !== 'string' || name === '') throw new SetError('set name must be a non-empty string', 400)
  try {
    validateSet({ id: 'x', name })
    validatePath(name)
  } catch (err) {
    throw new SetError(`bad set name: ${(err as Error).message}`, 400)
  }
  return name
}

/** Throws SetError(400) unless `path` is a clean relative path (inside the set). */
export function checkSetPath (path: string): string {
  try {
    validatePath(path)
  } catch (err) {
    if (err instanceof PathError) throw new SetError(`bad path: ${err.message}`, 400)
    throw err
  }
  if (path === '.syncmesh-set.json') throw new SetError('bad path: .syncmesh-set.json is the set manifest', 400)
  return path
}

function payload (r: StoredRecord | undefined): Record<string, unknown> | null {
  if (r == null || r.type !== 'meta' || r.deleted) return null
  try {
    const v: unknown = JSON.parse(r.target)
    return v != null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : null
  } catch {
    return null
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string'
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const HEX64 = /^[0-9a-f]{64}$/

function parseSet (id: string, r: StoredRecord | undefined): SetRecord | null {
  const p = payload(r)
  if (p == null || !isStr(p.name) || !isNum(p.createdAt) || !isStr(p.createdBy)) return null
  let commit: SetCommit | null = null
  const c = p.commit as Record<string, unknown> | null | undefined
  if (c != null) {
    if (typeof c !== 'object' || !isStr(c.id) || !isNum(c.at) || !isStr(c.by) || !isNum(c.files)) return null
    commit = { id: c.id, at: c.at, by: c.by, files: c.files }
  }
  return { id, name: p.name, createdAt: p.createdAt, createdBy: p.createdBy, commit }
}

function blocksToB64 (blocks: string[]): string {
  return Buffer.from(blocks.join(''), 'hex').toString('base64')
}

function blocksFromB64 (s: string): string[] | null {
  const raw = Buffer.from(s, 'base64')
  if (raw.byteLength % 32 !== 0) return null
  const out: string[] = []
  for (let i = 0; i < raw.byteLength; i += 32) out.push(raw.subarray(i, i + 32).toString('hex'))
  return out
}

function parseFile (setId: string, path: string, r: StoredRecord | undefined): SetFile | null {
  const p = payload(r)
  if (p == null || !isStr(p.commit) || !isStr(p.source) || !isNum(p.size) || !isNum(p.mode) ||
    typeof p.mtimeMs !== 'number' || !isNum(p.blockSize) || !isStr(p.blocks) || !isStr(p.hash)) return null
  // the source names a file of the data folder: never trust a peer's path unchecked
  if (!isValidPath(p.source)) return null
  const blocks = blocksFromB64(p.blocks)
  if (blocks == null) return null
  if (p.size > 0 && (p.blockSize === 0 || blocks.length !== Math.ceil(p.size / p.blockSize))) return null
  if (p.size > 0 && !HEX64.test(p.hash)) return null
  const sha = p.sha256
  if (sha != null && !(isStr(sha) && HEX64.test(sha))) return null
  return {
    setId,
    path,
    commit: p.commit,
    source: p.source,
    size: p.size,
    mode: p.mode,
    mtimeMs: p.mtimeMs,
    blockSize: p.blockSize,
    blocks,
    hash: p.hash,
    sha256: sha ?? null,
    uploaded: p.uploaded === true
  }
}

function parseLease (r: StoredRecord | undefined): Lease | null {
  const p = payload(r)
  if (p == null || !isStr(p.relay) || !isNum(p.until)) return null
  return { relay: p.relay, until: p.until }
}

function parseState (r: StoredRecord | undefined): UploadState | null {
  const p = payload(r)
  if (p == null || !isStr(p.relay) || !isNum(p.bytesDone) || !isNum(p.bytesTotal) || !isNum(p.at)) return null
  if (p.state !== 'uploading' && p.state !== 'uploaded' && p.state !== 'failed') return null
  return { state: p.state, relay: p.relay, error: isStr(p.error) ? p.error : null, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, at: p.at }
}

/** A set as the HTTP API and `status` show it. */
export interface SetView {
  id: string
  name: string
  state: SetState
  error: string | null
  createdAt: number
  committedAt: number | null
  relay: string | null
  bytesDone: number
  bytesTotal: number
  /** Files in the set (`files` may list fewer: status shows the first 100). */
  fileCount: number
  /** Files uploaded so far. */
  filesUploaded: number
  files: Array<{ path: string, size: number, sha256: string | null, state: FileUploadState }>
}

/**
 * Reads and writes the set records of one node's store. Writes are local changes of this
 * node (announced to the mesh like file writes).
 */
export class SetBook {
  private readonly store: Store
  private readonly now: () => number

  constructor (components: { store: Store, now?: () => number }) {
    this.store = components.store
    this.now = components.now ?? Date.now
  }

  get nodeId (): string {
    return this.store.nodeId
  }

  async get (id: string): Promise<SetRecord | null> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(id)) return null
    return parseSet(id, await this.store.get(SET_PREFIX + id))
  }

  async list (): Promise<SetRecord[]> {
    const out: SetRecord[] = []
    for await (const r of this.store.metaRecords(SET_PREFIX)) {
      const s = parseSet(r.path.slice(SET_PREFIX.length), r)
      if (s != null) out.push(s)
    }
    return out
  }

  async byName (name: string): Promise<SetRecord | null> {
    for (const s of await this.list()) if (s.name === name) return s
    return null
  }

  /** Create an open set. Names are unique in the mesh (they name the cloud folder). */
  async create (nameIn: unknown): Promise<SetRecord> {
    const name = checkSetName(nameIn)
    if (await this.byName(name) != null) throw new SetError(`a set named ${JSON.stringify(name)} exists already`, 409)
    const set: SetRecord = { id: newSetId(), name, createdAt: this.now(), createdBy: this.nodeId, commit: null }
    await this.store.putMeta(SET_PREFIX + set.id, { name, createdAt: set.createdAt, createdBy: set.createdBy, commit: null })
    return set
  }

  /** The committed files of a set (entries of a losing concurrent commit are left out). */
  async files (set: SetRecord): Promise<SetFile[]> {
    if (set.commit == null) return []
    const out: SetFile[] = []
    const prefix = `${FILE_PREFIX}${set.id}/`
    for await (const r of this.store.metaRecords(prefix)) {
      const f = parseFile(set.id, r.path.slice(prefix.length), r)
      if (f != null && f.commit === set.commit.id) out.push(f)
    }
    return out
  }

  /**
   * Commit `set` with the given data-folder paths (each with the path it gets inside the
   * set), at the versions this node's store holds now. Every path must be a live file.
   */
  async commit (set: SetRecord, entries: Array<{ source: string, path: string }>): Promise<SetRecord> {
    if (set.commit != null) throw new SetError(`set ${set.name} is committed already`, 409)
    if (entries.length === 0) throw new SetError(`set ${set.name} has no files to commit`, 409)
    const commitId = newSetId()
    const files: Array<{ path: string, value: Record<string, unknown> }> = []
    const seen = new Set<string>()
    for (const e of entries) {
      checkSetPath(e.path)
      if (seen.has(e.path)) throw new SetError(`path ${e.path} is listed twice`, 400)
      seen.add(e.path)
      const r = await this.store.get(e.source)
      if (r == null || r.deleted || r.type !== 'file') throw new SetError(`${e.source} is not a file this node knows`, 409)
      const value = { commit: commitId, source: e.source, size: r.size, mode: r.mode, mtimeMs: r.mtimeMs, blockSize: r.blockSize, blocks: blocksToB64(r.blocks), hash: r.hash, sha256: null, uploaded: false }
      // the entry travels as a meta record: one over the wire's limit would never reach
      // another node (about 6,100 blocks: 96 GiB at the largest block size). Measured as
      // it is once uploaded (with its SHA-256), its largest form
      const bytes = Buffer.byteLength(JSON.stringify({ ...value, sha256: '0'.repeat(64), uploaded: true }))
      if (bytes > LIMITS.maxMetaBytes) {
        throw new SetError(`${e.source} is too large for a set: its ${r.blocks.length} blocks make an entry of ${bytes} bytes, over the ${LIMITS.maxMetaBytes} bytes a set entry can hold`, 400)
      }
      files.push({ path: e.path, value })
    }
    // the file entries first: a node that sees the commit has (or will get in the same
    // batch) the entries it names
    await this.store.putMetas(files.map((f) => ({ path: `${FILE_PREFIX}${set.id}/${f.path}`, payload: f.value })))
    const commit: SetCommit = { id: commitId, at: this.now(), by: this.nodeId, files: files.length }
    const written = await this.store.putMeta(SET_PREFIX + set.id, { name: set.name, createdAt: set.createdAt, createdBy: set.createdBy, commit },
      (cur) => parseSet(set.id, cur)?.commit == null)
    if (written == null) throw new SetError(`set ${set.name} was committed meanwhile`, 409)
    return { ...set, commit }
  }

  async lease (id: string): Promise<{ lease: Lease | null, record: StoredRecord | undefined }> {
    const record = await this.store.get(LEASE_PREFIX + id)
    return { lease: parseLease(record), record }
  }

  /**
   * Take or renew the lease of set `id` until `until`, only if the lease record is still
   * `expected` (the version the caller decided on): a lease that arrived meanwhile wins.
   */
  async writeLease (id: string, until: number, expected: StoredRecord | undefined): Promise<boolean> {
    const written = await this.store.putMeta(LEASE_PREFIX + id, { relay: this.nodeId, until }, (cur) => sameRecordVersion(cur, expected))
    return written != null
  }

  async uploadState (id: string): Promise<UploadState | null> {
    return parseState(await this.store.get(STATE_PREFIX + id))
  }

  async writeState (id: string, s: Omit<UploadState, 'at' | 'relay'>): Promise<void> {
    await this.store.putMeta(STATE_PREFIX + id, { ...s, relay: this.nodeId, at: this.now() })
  }

  async markFile (f: SetFile, change: { sha256?: string, uploaded?: boolean }): Promise<void> {
    await this.store.putMeta(`${FILE_PREFIX}${f.setId}/${f.path}`, {
      commit: f.commit,
      source: f.source,
      size: f.size,
      mode: f.mode,
      mtimeMs: f.mtimeMs,
      blockSize: f.blockSize,
      blocks: blocksToB64(f.blocks),
      hash: f.hash,
      sha256: change.sha256 ?? f.sha256,
      uploaded: change.uploaded ?? f.uploaded
    })
  }

  /**
   * A failed set (a fatal backend error: quota, auth) is to be uploaded again once the
   * cause is fixed: its upload state is cleared, so it is `committed` again for every relay.
   */
  async retry (set: SetRecord): Promise<SetRecord> {
    const { state } = await this.state(set)
    if (state !== 'failed') throw new SetError(`set ${set.name} is ${state}: only a failed set can be retried`, 409)
    await this.store.putMeta(STATE_PREFIX + set.id, null)
    return set
  }

  async state (set: SetRecord): Promise<{ state: SetState, upload: UploadState | null }> {
    if (set.commit == null) return { state: 'open', upload: null }
    const upload = await this.uploadState(set.id)
    return { state: upload?.state ?? 'committed', upload }
  }

  /** The live files of an open set uploaded through the API (under sets/<name>/). */
  async openFiles (set: SetRecord): Promise<StoredRecord[]> {
    const out: StoredRecord[] = []
    for await (const r of this.store.under(setFolder(set.name))) {
      if (r.type === 'file' && !r.deleted) out.push(r)
    }
    return out
  }

  async view (set: SetRecord, sha256Of: (hash: string) => string | null = () => null): Promise<SetView> {
    const { state, upload } = await this.state(set)
    let files: SetView['files']
    if (set.commit == null) {
      const base = setFolder(set.name).length + 1
      files = (await this.openFiles(set)).map((r) => ({ path: r.path.slice(base), size: r.size, sha256: sha256Of(r.hash), state: 'pending' as const }))
    } else {
      files = (await this.files(set)).map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 ?? sha256Of(f.hash), state: f.uploaded ? 'uploaded' as const : 'pending' as const }))
    }
    files.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
    const total = files.reduce((n, f) => n + f.size, 0)
    return {
      id: set.id,
      name: set.name,
      state,
      error: upload?.error ?? null,
      createdAt: set.createdAt,
      committedAt: set.commit?.at ?? null,
      relay: upload?.relay ?? null,
      bytesDone: state === 'uploaded' ? total : upload?.bytesDone ?? 0,
      bytesTotal: total,
      fileCount: files.length,
      filesUploaded: files.filter((f) => f.state === 'uploaded').length,
      files
    }
  }
}

export function sameRecordVersion (a: StoredRecord | undefined, b: StoredRecord | undefined): boolean {
  if (a == null || b == null) return a == null && b == null
  return a.version.node === b.version.node && a.version.hlc.wall === b.version.hlc.wall && a.version.hlc.logical === b.version.hlc.logical
}

/** Which set (and kind) a meta path belongs to. */
export function metaSetId (path: string): string | null {
  const m = /^\/(?:set|setfile|lease|setstate)\/([^/]+)/.exec(path)
  return m?.[1] ?? null
}
