/**
 * `--backend SPEC` -> a CloudBackend: `folder:DIR` (a local folder, the embedded default)
 * or `drive` (Google Drive, configured in the home's config.json under "drive").
 */
import { readFile } from 'node:fs/promises'
import { isAbsolute, resolve } from 'node:path'
import type { CloudBackend } from '../backend.js'
import { FolderBackend } from './folder.js'
// googleapis is big: loaded only when a node really uploads to Drive
import type { DriveAuthConfig, SessionStore } from './drive.js'

export class BackendSpecError extends Error {
  override name = 'BackendSpecError'
}

export async function openBackend (spec: string, ctx: { homeDir: string, drive: Record<string, unknown> | null, sessions: SessionStore }): Promise<CloudBackend> {
  if (spec.startsWith('folder:')) {
    const dir = spec.slice('folder:'.length)
    if (dir === '') throw new BackendSpecError('--backend folder:DIR needs a folder')
    return new FolderBackend({ root: resolve(dir) })
  }
  if (spec === 'drive') {
    const d = ctx.drive
    if (d == null) throw new BackendSpecError(`--backend drive needs a "drive" section in ${ctx.homeDir}/config.json (auth and rootFolderId; see README)`)
    const auth = d.auth as Record<string, unknown> | undefined
    if (typeof d.rootFolderId !== 'string' || d.rootFolderId === '') throw new BackendSpecError('config "drive.rootFolderId" must be the id of the Drive folder that receives the sets')
    if (d.rootUrl != null && typeof d.rootUrl !== 'string') throw new BackendSpecError('config "drive.rootUrl" must be a URL')
    const { DriveBackend } = await import('./drive.js')
    return new DriveBackend({ sessions: ctx.sessions }, {
      auth: await driveAuth(auth, ctx.homeDir),
      rootFolderId: d.rootFolderId,
      rootUrl: d.rootUrl as string | undefined
    })
  }
  throw new BackendSpecError(`unknown backend ${JSON.stringify(spec)}: use folder:DIR or drive`)
}

async function driveAuth (a: Record<string, unknown> | undefined, homeDir: string): Promise<DriveAuthConfig> {
  const str = (v: unknown): v is string => typeof v === 'string' && v !== ''
  if (a?.type === 'oauth2') {
    if (!str(a.clientId) || !str(a.clientSecret) || !str(a.refreshToken)) throw new BackendSpecError('config "drive.auth" (oauth2) needs clientId, clientSecret and refreshToken')
    return { type: 'oauth2', clientId: a.clientId, clientSecret: a.clientSecret, refreshToken: a.refreshToken, tokenUrl: str(a.tokenUrl) ? a.tokenUrl : undefined }
  }
  if (a?.type === 'serviceAccount') {
    if (!str(a.keyFile)) throw new BackendSpecError('config "drive.auth" (serviceAccount) needs keyFile, the service account\'s JSON key')
    const file = isAbsolute(a.keyFile) ? a.keyFile : resolve(homeDir, a.keyFile)
    let key: { client_email?: unknown, private_key?: unknown }
    try {
      key = JSON.parse(await readFile(file, 'utf8')) as typeof key
    } catch (err) {
      throw new BackendSpecError(`cannot read the service account key ${file}: ${(err as Error).message.split('\n')[0]}`)
    }
    if (!str(key.client_email) || !str(key.private_key)) throw new BackendSpecError(`${file} is not a service account key (client_email and private_key missing)`)
    return { type: 'serviceAccount', clientEmail: key.client_email, privateKey: key.private_key, subject: str(a.subject) ? a.subject : undefined, tokenUrl: str(a.tokenUrl) ? a.tokenUrl : undefined }
  }
  throw new BackendSpecError('config "drive.auth.type" must be "oauth2" or "serviceAccount"')
}
