import { mkdir, readFile, stat, writeFile, readdir } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { join, resolve } from 'node:path'
import { tmpdir } from 'node:os'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { decodeMeshKeyFile, encodeMeshKeyFile, generateMeshKey, MeshKeyError } from './pnet.js'
import { PROFILES, type BatchProfile } from '../gossip/batcher.js'

/** A user mistake about a home folder: one clear line for the user, nothing changed. */
export class HomeError extends Error {
  override name = 'HomeError'
}

/** The node's configuration file (home/config.json). Every field has a default. */
export interface Config {
  /** @default ['/ip4/0.0.0.0/tcp/4100'] */
  listen: string[]
  /** Batch timing per network: 'lan' or 'wan', or explicit numbers. @default 'lan' */
  network: 'lan' | 'wan'
  batch?: Partial<BatchProfile>
  /** @default 60_000 */
  rescanIntervalMs: number
  /** @default 10_000 */
  catchUpIntervalMs: number
  /** Bytes requested from one peer and not yet received. @default 16 MiB */
  maxInFlightPerPeer: number
  /** Files pulled at once. @default 64 */
  pullConcurrency: number
  /** Most peers this node dials on its own (learned through peer exchange). @default 32 */
  maxPeers: number
  /** Peers dialed at every start, like --join (written by `init --invite`). @default [] */
  join: string[]
  /** Serve the HTTP upload API here (HOST:PORT), like --api. @default null */
  api: string | null
  /** Largest file the HTTP API accepts in one PUT, in bytes. @default 64 GiB */
  apiMaxFileBytes: number
  /** How long a relay's claim on a set lasts without renewal (ms). @default 30_000 */
  relayLeaseMs: number
  /**
   * The `drive` relay backend: {"auth": {"type": "oauth2", "clientId", "clientSecret",
   * "refreshToken"} or {"type": "serviceAccount", "keyFile": "sa.json"}, "rootFolderId",
   * "rootUrl"?}. @default null
   */
  drive: Record<string, unknown> | null
  /** Serve Prometheus metrics at HOST:PORT/metrics, like --metrics. @default null (off) */
  metrics: string | null
  /** `syncmesh doctor` warns when a peer's clock is further off than this. @default 60_000 */
  maxClockOffsetMs: number
}

export const DEFAULT_CONFIG: Config = {
  listen: ['/ip4/0.0.0.0/tcp/4100'],
  network: 'lan',
  rescanIntervalMs: 60_000,
  catchUpIntervalMs: 10_000,
  maxInFlightPerPeer: 16 * 1024 * 1024,
  pullConcurrency: 64,
  maxPeers: 32,
  join: [],
  api: null,
  apiMaxFileBytes: 64 * 1024 ** 3,
  relayLeaseMs: 30_000,
  drive: null,
  metrics: null,
  maxClockOffsetMs: 60_000
}

export interface Home {
  dir: string
  config: Config
  privateKey: PrivateKey
  meshKey: Uint8Array
  dataDir: string
  dbDir: string
  batchProfile: BatchProfile
}

export const homePaths = (dir: string): { config: string, identity: string, meshKey: string, data: string, db: string, apiToken: string } => ({
  config: join(dir, 'config.json'),
  apiToken: join(dir, 'api.token'),
  identity: join(dir, 'identity.key'),
  meshKey: join(dir, 'mesh.key'),
  data: join(dir, 'data'),
  db: join(dir, 'db')
})

/** The control socket of the node running in `home` (Unix socket paths are short). */
export function controlSocketPath (home: string): string {
  const p = join(resolve(home), 'control.sock')
  if (Buffer.byteLength(p) < 100) return p
  return join(tmpdir(), `syncmesh-${createHash('sha256').update(resolve(home)).digest('hex').slice(0, 16)}.sock`)
}

async function exists (p: string): Promise<boolean> {
  try { await stat(p); return true } catch { return false }
}

/** `syncmesh init`: make a home. Refuses an initialized home and changes nothing in it. */
export async function initHome (dir: string, opts: { keyFile?: string, listen?: string[], invite?: string } = {}): Promise<{ peerId: string }> {
  const paths = homePaths(dir)
  if (await exists(paths.config) || await exists(paths.identity) || await exists(paths.meshKey)) {
    throw new HomeError(`${dir} is already a syncmesh home (remove it or choose another folder)`)
  }
  let meshKey: Uint8Array
  let join: string[] = []
  if (opts.invite != null) {
    if (opts.keyFile != null) throw new HomeError('give either --key or --invite, not both')
    const inv = decodeInvite(opts.invite)
    meshKey = inv.key
    join = inv.addrs
  } else if (opts.keyFile != null) {
    let text: string
    try {
      text = await readFile(opts.keyFile, 'utf8')
    } catch (err) {
      throw new HomeError(`cannot read mesh key ${opts.keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    try {
      meshKey = decodeMeshKeyFile(text)
    } catch (err) {
      throw new HomeError(`${opts.keyFile}: ${(err as MeshKeyError).message.replace(/^mesh\.key: /, '')}`)
    }
  } else {
    meshKey = generateMeshKey()
  }
  await mkdir(dir, { recursive: true })
  const key = await generateKeyPair('Ed25519')
  await writeFile(paths.identity, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  await writeFile(paths.meshKey, encodeMeshKeyFile(meshKey), { mode: 0o600, flag: 'wx' })
  await writeFile(paths.apiToken, newApiToken(), { mode: 0o600, flag: 'wx' })
  await mkdir(paths.data, { recursive: true })
  await mkdir(paths.db, { recursive: true })
  const config: Config = { ...DEFAULT_CONFIG, join, ...(opts.listen != null ? { listen: opts.listen } : {}) }
  await writeFile(paths.config, JSON.stringify(config, null, 2) + '\n', { mode: 0o644, flag: 'wx' })
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  return { peerId: peerIdFromPrivateKey(key).toString() }
}

function newApiToken (): string {
  return `${randomBytes(32).toString('base64url')}\n`
}

/**
 * The HTTP API's bearer token (home/api.token, mode 0600); made now for a home initialized
 * before the API existed. A token file other users can read is refused.
 */
export async function apiToken (dir: string): Promise<string> {
  const p = homePaths(dir).apiToken
  await writeFile(p, newApiToken(), { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err })
  const st = await stat(p)
  if ((st.mode & 0o077) !== 0) throw new HomeError(`${p} can be read by other users (mode ${(st.mode & 0o777).toString(8)}); run 'chmod 600 ${p}'`)
  const token = (await readFile(p, 'utf8')).trim()
  if (token.length < 16) throw new HomeError(`${p}: the token is too short (16 characters at least)`)
  return token
}

/** Read a home; every problem is a HomeError with one line that says what to do. */
export async function loadHome (dir: string): Promise<Home> {
  const paths = homePaths(dir)
  let st
  try {
    st = await stat(dir)
  } catch {
    throw new HomeError(`${dir}: no such home (run 'syncmesh init --home ${dir}' first)`)
  }
  if (!st.isDirectory()) throw new HomeError(`${dir}: not a directory`)
  if (!await exists(paths.config)) {
    const entries = await readdir(dir).catch(() => [])
    throw new HomeError(entries.length === 0
      ? `${dir}: not initialized (run 'syncmesh init --home ${dir}')`
      : `${dir}: not a syncmesh home (config.json missing)`)
  }
  const config = await readConfig(dir)
  for (const p of [paths.identity, paths.meshKey]) {
    let ks
    try { ks = await stat(p) } catch { throw new HomeError(`${p} is missing: the home is incomplete`) }
    if ((ks.mode & 0o077) !== 0) {
      throw new HomeError(`${p} can be read by other users (mode ${(ks.mode & 0o777).toString(8)}); run 'chmod 600 ${p}'`)
    }
  }
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(await readFile(paths.identity))
  } catch {
    throw new HomeError(`${paths.identity}: not a valid identity key`)
  }
  let meshKey: Uint8Array
  try {
    meshKey = decodeMeshKeyFile(await readFile(paths.meshKey, 'utf8'))
  } catch (err) {
    throw new HomeError(`${paths.meshKey}: ${(err as Error).message.replace(/^mesh\.key: /, '')}`)
  }
  await mkdir(paths.data, { recursive: true })
  const batchProfile: BatchProfile = { ...PROFILES[config.network], ...(config.batch ?? {}) }
  return { dir, config, privateKey, meshKey, dataDir: paths.data, dbDir: paths.db, batchProfile }
}

/** Read and check `config.json` alone (no keys): a HomeError says what is wrong. */
export async function readConfig (dir: string): Promise<Config> {
  const file = homePaths(dir).config
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new HomeError(`${file} is missing: not a syncmesh home`)
    throw new HomeError(`${file}: not valid JSON (${(err as Error).message.split('\n')[0]})`)
  }
  return parseConfig(raw, file)
}

function parseConfig (raw: unknown, file: string): Config {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw new HomeError(`${file}: expected a JSON object`)
  const c = { ...DEFAULT_CONFIG, ...(raw as Partial<Config>) }
  const bad = (what: string): never => { throw new HomeError(`${file}: ${what}`) }
  if (!Array.isArray(c.listen) || c.listen.some((a) => typeof a !== 'string')) bad('"listen" must be a list of multiaddr strings')
  if (!Array.isArray(c.join) || c.join.some((a) => typeof a !== 'string')) bad('"join" must be a list of multiaddr strings')
  if (c.network !== 'lan' && c.network !== 'wan') bad('"network" must be "lan" or "wan"')
  if (c.api != null && typeof c.api !== 'string') bad('"api" must be "HOST:PORT" or null')
  if (c.drive != null && (typeof c.drive !== 'object' || Array.isArray(c.drive))) bad('"drive" must be an object or null')
  if (c.metrics != null && (typeof c.metrics !== 'string' || !/:\d+$/.test(c.metrics))) bad('"metrics" must be "HOST:PORT" or null')
  for (const k of ['rescanIntervalMs', 'catchUpIntervalMs', 'maxInFlightPerPeer', 'pullConcurrency', 'maxPeers', 'apiMaxFileBytes', 'relayLeaseMs', 'maxClockOffsetMs'] as const) {
    if (typeof c[k] !== 'number' || !Number.isFinite(c[k]) || c[k] <= 0) bad(`"${k}" must be a positive number`)
  }
  if (c.batch != null) {
    for (const [k, v] of Object.entries(c.batch)) {
      if (!['maxEntries', 'maxBytes', 'maxAgeMs'].includes(k) || typeof v !== 'number' || v <= 0) bad(`"batch.${k}" is not a known positive setting`)
    }
  }
  return c
}


const INVITE_PREFIX = 'syncmesh-invite-1:'

/**
 * An invite: the mesh key and a member's addresses in one line. It is a secret (it holds
 * the mesh key): send it the way you would send the key file.
 */
export function encodeInvite (key: Uint8Array, addrs: string[]): string {
  const body = JSON.stringify({ key: Buffer.from(key).toString('hex'), addrs })
  return INVITE_PREFIX + Buffer.from(body).toString('base64url')
}

export function decodeInvite (token: string): { key: Uint8Array, addrs: string[] } {
  const bad = (): never => { throw new HomeError('not a syncmesh invite (expected the line printed by \'syncmesh invite\')') }
  const t = token.trim()
  if (!t.startsWith(INVITE_PREFIX)) bad()
  let raw: unknown
  try { raw = JSON.parse(Buffer.from(t.slice(INVITE_PREFIX.length), 'base64url').toString('utf8')) } catch { return bad() }
  const { key, addrs } = (raw ?? {}) as { key?: unknown, addrs?: unknown }
  if (typeof key !== 'string' || !/^[0-9a-f]{64}$/.test(key)) bad()
  if (!Array.isArray(addrs) || addrs.length === 0 || addrs.length > 32 || addrs.some((a) => typeof a !== 'string' || !a.startsWith('/'))) bad()
  return { key: new Uint8Array(Buffer.from(key as string, 'hex')), addrs: addrs as string[] }
}
