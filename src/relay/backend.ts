/**
 * Cloud backends: the one small interface an upload relay writes committed sets through.
 *
 * A set lands in a backend as a folder named after the set, holding the set's files at their
 * relative paths plus `.syncmesh-set.json` (the manifest: set id, name, every file with size and
 * SHA-256). The manifest is written last and the folder is made visible in one step, so a reader
 * of the backend sees a set whole or not at all:
 *
 * ```
 *   beginSet ──> putFile × N (any order, retried, idempotent) ──> publishSet (manifest, then move)
 *      staging area (hidden)                                          visible set folder
 * ```
 *
 * Every operation is idempotent and safe to repeat after a crash or after the set was published
 * (then it does nothing): `putFile` answers `'exists'` for a file that is already stored for this
 * set id, path and content hash, wherever it is (staging or the published set), and never makes a
 * second copy.
 *
 * Errors: every method rejects with a {@link BackendError} (whose `fatal` says whether retrying
 * later can help) or, when its `signal` was aborted, with the signal's reason.
 */
import { createHash } from 'node:crypto'

/** A set as a backend sees it. */
export interface SetRef {
  /** Stable id of the set (the commit record's id); `[A-Za-z0-9][A-Za-z0-9._-]{0,99}` (fits a Drive appProperty). */
  readonly id: string
  /** Folder name of the published set: one path segment, not starting with a dot. */
  readonly name: string
}

/** One file of a set, as listed in the manifest. */
export interface ManifestEntry {
  /** Relative path inside the set, `/`-separated, no `.`/`..`/empty segments. */
  readonly path: string
  /** Size in bytes. */
  readonly size: number
  /** SHA-256 of the content, lower-case hex. */
  readonly sha256: string
}

/** The manifest written last into a published set (`.syncmesh-set.json`). */
export interface SetManifest {
  /** Format version. */
  readonly syncmesh: 1
  readonly id: string
  readonly name: string
  /** Every file of the set, sorted by path. */
  readonly files: readonly ManifestEntry[]
}

/** File name of the manifest at the top of a published set. */
export const MANIFEST_NAME = '.syncmesh-set.json'

/** The content of one file to upload. */
export interface UploadSource {
  /** Size in bytes; the stream must yield exactly this many bytes from offset 0. */
  readonly size: number
  /** SHA-256 of the content, lower-case hex. */
  readonly sha256: string
  /**
   * Opens the content from byte `offset` (0 ≤ offset ≤ size) to the end. Called again for each
   * attempt and for each resume, so it must be re-openable. The backend reads only what it needs
   * and destroys/returns the stream early otherwise.
   */
  open: (offset: number) => Promise<NodeJS.ReadableStream | AsyncIterable<Uint8Array>>
}

export interface PutOptions {
  /**
   * Progress: called with the number of bytes of this file the backend holds so far
   * (cumulative). It may go back to 0 when an expired resumable session forces a restart.
   */
  onProgress?: (bytes: number) => void
  /** Aborts the upload; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal
}

export type PutResult = 'uploaded' | 'exists'

/** Optional abilities of a backend (rclone's Features). */
export interface BackendFeatures {
  /** An interrupted file upload continues where it stopped (also across restarts). */
  readonly resumable: boolean
  /** `publishSet` makes the whole set visible in one atomic step. */
  readonly atomicSetPublish: boolean
  /** Files and folders can be moved/renamed without re-uploading their content. */
  readonly serverSideMove: boolean
}

export interface CloudBackend {
  /** Short backend kind, e.g. `'folder'`, `'drive'`. */
  readonly name: string
  readonly features: BackendFeatures
  /** Prepares the set's hidden staging area. Idempotent; does nothing once the set is published. */
  beginSet: (set: SetRef, opts?: { signal?: AbortSignal }) => Promise<void>
  /**
   * Uploads one file of the set at its relative `path`. Returns `'exists'` without uploading when
   * a file of this set id + path + sha256 is already stored (staging or published); otherwise
   * uploads (resuming when the backend can) and returns `'uploaded'`. Calls `beginSet` itself
   * if needed. Rejects with a fatal `BackendError` (reason `checksumMismatch`) when the bytes read
   * from `src` do not hash to `src.sha256` (where the backend can tell), and `alreadyPublished`
   * when the set is published without this file. Concurrent calls for the same path are not
   * deduplicated against each other: the caller uploads a given path once at a time.
   */
  putFile: (set: SetRef, path: string, src: UploadSource, opts?: PutOptions) => Promise<PutResult>
  /**
   * Checks that every file of `manifest` is stored, removes staged files that are not in it,
   * writes the manifest last, and makes the set visible whole. Idempotent: does nothing when the
   * set is already published. Rejects with a fatal `BackendError` with reason `incompleteSet`
   * when a file is missing, or `nameConflict` when another folder already has the set's name.
   */
  publishSet: (set: SetRef, manifest: SetManifest, opts?: { signal?: AbortSignal }) => Promise<void>
  /** Whether the set is published (its manifest is visible): a relay never uploads it again. */
  isPublished: (set: SetRef, opts?: { signal?: AbortSignal }) => Promise<boolean>
}

/**
 * Why a backend call failed. `fatal` errors (quota, auth, permissions, bad requests, a corrupt
 * source) will fail again if retried as is; transient ones (5xx, 429, network) have already been
 * retried up to the backend's {@link RetryPolicy} and may succeed later.
 */
export class BackendError extends Error {
  override readonly name = 'BackendError'
  readonly fatal: boolean
  /** Short machine-readable reason, e.g. `storageQuotaExceeded`, `authError`, `serverError`. */
  readonly reason: string
  /** HTTP status, when the failure was an HTTP answer. */
  readonly status: number | undefined
  /** Wait the server asked for (ms), when it sent Retry-After. */
  readonly retryAfterMs: number | undefined

  constructor (message: string, init: { fatal: boolean, reason: string, status?: number, retryAfterMs?: number, cause?: unknown }) {
    super(oneLine(message), init.cause === undefined ? undefined : { cause: init.cause })
    this.fatal = init.fatal
    this.reason = init.reason
    this.status = init.status
    this.retryAfterMs = init.retryAfterMs
  }
}

function oneLine (s: string): string {
  const line = s.replace(/\s+/g, ' ').trim()
  return line.length > 300 ? `${line.slice(0, 297)}...` : line
}

// ---------------------------------------------------------------------------------------------
// Retry

/** How a backend retries transient failures (exponential backoff with full jitter). */
export interface RetryPolicy {
  /**
   * Attempts in total, the first included.
   * @default 6
   */
  attempts?: number
  /**
   * Backoff before the second attempt, in ms; doubled for each further attempt, then jittered
   * (uniform in [delay/2, delay]).
   * @default 500
   */
  baseDelayMs?: number
  /**
   * Cap of one backoff delay, in ms.
   * @default 30_000
   */
  maxDelayMs?: number
  /**
   * Longest Retry-After honoured in place, in ms; a longer one ends the attempts with a transient
   * error carrying `retryAfterMs`, so the scheduler can come back later.
   * @default 300_000
   */
  maxRetryAfterMs?: number
  /**
   * How to wait; must reject with `signal.reason` when aborted.
   * @default an abortable setTimeout
   */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  /**
   * Random source in [0, 1) for the jitter.
   * @default Math.random
   */
  random?: () => number
  /** Called before each retry (for logs and tests). */
  onRetry?: (info: { what: string, attempt: number, delayMs: number, error: BackendError }) => void
}

export type ResolvedRetryPolicy = Required<Omit<RetryPolicy, 'onRetry'>> & Pick<RetryPolicy, 'onRetry'>

export function resolveRetryPolicy (p: RetryPolicy = {}): ResolvedRetryPolicy {
  return {
    attempts: p.attempts ?? 6,
    baseDelayMs: p.baseDelayMs ?? 500,
    maxDelayMs: p.maxDelayMs ?? 30_000,
    maxRetryAfterMs: p.maxRetryAfterMs ?? 300_000,
    sleep: p.sleep ?? sleep,
    random: p.random ?? Math.random,
    onRetry: p.onRetry
  }
}

/** Abortable sleep; rejects with `signal.reason` when aborted. */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Runs `op` until it succeeds, `classify` calls its failure fatal, the attempts run out or
 * `signal` aborts. `op` gets the attempt number (1-based) so a retried create can first look
 * whether the previous attempt landed after all. Rejects with the last {@link BackendError},
 * or with `signal.reason` when aborted.
 */
export async function retrying<T> (
  what: string,
  op: (attempt: number) => Promise<T>,
  classify: (err: unknown) => BackendError,
  policy: ResolvedRetryPolicy,
  signal?: AbortSignal
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted()
    let error: BackendError
    try {
      return await op(attempt)
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      error = err instanceof BackendError ? err : classify(err)
    }
    if (error.fatal || attempt >= policy.attempts) throw error
    const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
    let delayMs = backoff / 2 + policy.random() * backoff / 2
    if (error.retryAfterMs !== undefined) {
      if (error.retryAfterMs > policy.maxRetryAfterMs) throw error
      delayMs = Math.max(delayMs, error.retryAfterMs)
    }
    policy.onRetry?.({ what, attempt, delayMs, error })
    await policy.sleep(delayMs, signal)
  }
}

/** Parses a Retry-After header (seconds or an HTTP date) into ms; undefined when absent/bad. */
export function parseRetryAfter (value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null || value.trim() === '') return undefined
  const v = value.trim()
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000)
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

// ---------------------------------------------------------------------------------------------
// Validation and manifests

const SET_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/
const SHA256_HEX = /^[0-9a-f]{64}$/

function badRequest (message: string): BackendError {
  return new BackendError(message, { fatal: true, reason: 'badRequest' })
}

function checkSegment (seg: string, what: string): void {
  if (seg === '' || seg === '.' || seg === '..') throw badRequest(`${what}: empty, '.' or '..' segment`)
  if (seg.includes('\0')) throw badRequest(`${what}: contains NUL`)
  if (Buffer.byteLength(seg) > 255) throw badRequest(`${what}: segment longer than 255 bytes`)
}

/** Throws a fatal `badRequest` BackendError unless `set` has a valid id and name. */
export function validateSet (set: SetRef): void {
  if (!SET_ID.test(set.id)) throw badRequest(`invalid set id ${JSON.stringify(set.id)}`)
  if (set.name.includes('/')) throw badRequest(`set name ${JSON.stringify(set.name)} contains '/'`)
  checkSegment(set.name, `set name ${JSON.stringify(set.name)}`)
  if (set.name.startsWith('.')) throw badRequest(`set name ${JSON.stringify(set.name)} starts with '.'`)
}

/** Throws a fatal `badRequest` BackendError unless `path` is a valid relative file path of a set. */
export function validatePath (path: string): string[] {
  if (path.startsWith('/')) throw badRequest(`path ${JSON.stringify(path)} is absolute`)
  const segs = path.split('/')
  for (const seg of segs) checkSegment(seg, `path ${JSON.stringify(path)}`)
  if (path === MANIFEST_NAME) throw badRequest(`path ${MANIFEST_NAME} is reserved for the manifest`)
  return segs
}

export function validateSource (src: Pick<UploadSource, 'size' | 'sha256'>): void {
  if (!Number.isSafeInteger(src.size) || src.size < 0) throw badRequest(`invalid size ${src.size}`)
  if (!SHA256_HEX.test(src.sha256)) throw badRequest(`invalid sha256 ${JSON.stringify(src.sha256)}`)
}

/** Builds a manifest (files sorted by path), validating every entry. */
export function createManifest (set: SetRef, files: readonly ManifestEntry[]): SetManifest {
  validateSet(set)
  const seen = new Set<string>()
  for (const f of files) {
    validatePath(f.path)
    validateSource(f)
    if (seen.has(f.path)) throw badRequest(`duplicate path ${JSON.stringify(f.path)} in manifest`)
    seen.add(f.path)
  }
  const sorted = [...files].map(f => ({ path: f.path, size: f.size, sha256: f.sha256 }))
    .sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
  return { syncmesh: 1, id: set.id, name: set.name, files: sorted }
}

/** Checks that `manifest` describes `set` (same id and name, valid entries). */
export function checkManifest (set: SetRef, manifest: SetManifest): void {
  validateSet(set)
  if (manifest.id !== set.id || manifest.name !== set.name) {
    throw badRequest(`manifest is for ${manifest.id}/${manifest.name}, not ${set.id}/${set.name}`)
  }
  createManifest(set, manifest.files)
}

/** The manifest's bytes as stored (stable JSON, one trailing newline). */
export function encodeManifest (m: SetManifest): Buffer {
  const plain = { syncmesh: m.syncmesh, id: m.id, name: m.name, files: m.files.map(f => ({ path: f.path, size: f.size, sha256: f.sha256 })) }
  return Buffer.from(JSON.stringify(plain, null, 2) + '\n')
}

/** Parses stored manifest bytes; throws a fatal BackendError (`badManifest`) when malformed. */
export function decodeManifest (bytes: Uint8Array): SetManifest {
  let v: unknown
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch (err) {
    throw new BackendError('manifest is not JSON', { fatal: true, reason: 'badManifest', cause: err })
  }
  const o = v as Partial<Record<keyof SetManifest, unknown>>
  if (typeof v !== 'object' || v === null || o.syncmesh !== 1 || typeof o.id !== 'string' || typeof o.name !== 'string' || !Array.isArray(o.files)) {
    throw new BackendError('manifest has an unknown shape', { fatal: true, reason: 'badManifest' })
  }
  const files: ManifestEntry[] = []
  for (const f of o.files as unknown[]) {
    const e = f as Partial<Record<keyof ManifestEntry, unknown>>
    if (typeof f !== 'object' || f === null || typeof e.path !== 'string' || typeof e.size !== 'number' || typeof e.sha256 !== 'string') {
      throw new BackendError('manifest has a malformed file entry', { fatal: true, reason: 'badManifest' })
    }
    files.push({ path: e.path, size: e.size, sha256: e.sha256 })
  }
  return { syncmesh: 1, id: o.id, name: o.name, files }
}

export function sha256Hex (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Turns what `UploadSource.open` returns into an async iterable of byte chunks. */
export function asChunks (s: NodeJS.ReadableStream | AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  return s as AsyncIterable<Uint8Array>
}

/** Closes a stream returned by `UploadSource.open` that was not read to its end. */
export function closeSource (s: NodeJS.ReadableStream | AsyncIterable<Uint8Array>): void {
  const d = (s as { destroy?: () => void }).destroy
  if (typeof d === 'function') d.call(s)
}

/** Reads exactly `length` bytes from `src` starting at `offset` (one buffer). */
export async function readRange (src: UploadSource, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length)
  let got = 0
  if (length === 0) return out
  const stream = await src.open(offset)
  try {
    for await (const chunk of asChunks(stream)) {
      signal?.throwIfAborted()
      const take = Math.min(chunk.byteLength, length - got)
      out.set(chunk.subarray(0, take), got)
      got += take
      if (got === length) break
    }
  } finally {
    closeSource(stream)
  }
  if (got !== length) {
    throw new BackendError(`source ended at ${offset + got} of ${offset + length} bytes`, { fatal: true, reason: 'sourceTooShort' })
  }
  return out
}
