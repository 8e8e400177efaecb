import { createHash } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import type { NodeId } from '../store/types.js'

/** The short node id used in version vectors and conflict names: 13 base32 chars. */
export function nodeIdOf (peerId: PeerId): NodeId {
  const digest = createHash('sha256').update(peerId.toMultihash().bytes).digest()
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of digest) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5 && out.length < 13) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
    if (out.length >= 13) break
  }
  return out
}
