import { readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import { HomeError } from './home.js'

/**
 * Who may connect, on top of the mesh key: an optional allow-list (when it is not empty,
 * only the peers on it get in) and a deny-list (always refused). Kept in `acl.json` in
 * the home and enforced by the libp2p connection gater on every dial and every inbound
 * connection, once the remote peer id is known.
 */
export interface AclData {
  allow: string[]
  deny: string[]
}

export class Acl {
  private readonly file: string
  private data: AclData = { allow: [], deny: [] }

  constructor (home: string) {
    this.file = join(home, 'acl.json')
  }

  async load (): Promise<this> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch {
      return this
    }
    let raw: unknown
    try { raw = JSON.parse(text) } catch { throw new HomeError(`${this.file}: not valid JSON`) }
    const list = (k: 'allow' | 'deny'): string[] => {
      const v = (raw as Record<string, unknown> | null)?.[k] ?? []
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new HomeError(`${this.file}: "${k}" must be a list of peer ids`)
      return v as string[]
    }
    this.data = { allow: list('allow'), deny: list('deny') }
    return this
  }

  get snapshot (): AclData {
    return { allow: [...this.data.allow], deny: [...this.data.deny] }
  }

  permits (peer: PeerId | string): boolean {
    const id = peer.toString()
    if (this.data.deny.includes(id)) return false
    return this.data.allow.length === 0 || this.data.allow.includes(id)
  }

  async allow (peer: string): Promise<void> {
    checkPeerId(peer)
    this.data.deny = this.data.deny.filter((p) => p !== peer)
    if (!this.data.allow.includes(peer)) this.data.allow.push(peer)
    await this.save()
  }

  async deny (peer: string): Promise<void> {
    checkPeerId(peer)
    this.data.allow = this.data.allow.filter((p) => p !== peer)
    if (!this.data.deny.includes(peer)) this.data.deny.push(peer)
    await this.save()
  }

  private async save (): Promise<void> {
    const tmp = `${this.file}.tmp`
    await writeFile(tmp, JSON.stringify(this.data, null, 2) + '\n', { mode: 0o600 })
    await rename(tmp, this.file)
  }

  /** A connection gater enforcing this list (and `inner`, e.g. a simulated partition). */
  gater (inner?: ConnectionGater): ConnectionGater {
    const deny = async (peer: PeerId, fn?: (p: PeerId) => boolean | Promise<boolean>): Promise<boolean> =>
      !this.permits(peer) || (fn != null && await fn(peer))
    return {
      ...inner,
      denyDialPeer: async (peer) => await deny(peer, inner?.denyDialPeer?.bind(inner)),
      denyInboundEncryptedConnection: async (peer, conn) => await deny(peer, inner?.denyInboundEncryptedConnection != null ? (p) => inner.denyInboundEncryptedConnection!(p, conn) : undefined),
      denyOutboundEncryptedConnection: async (peer, conn) => await deny(peer, inner?.denyOutboundEncryptedConnection != null ? (p) => inner.denyOutboundEncryptedConnection!(p, conn) : undefined)
    }
  }
}

export function checkPeerId (peer: string): void {
  try {
    peerIdFromString(peer)
  } catch {
    throw new HomeError(`not a peer id: ${peer}`)
  }
}
