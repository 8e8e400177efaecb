import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { noiseCrypto } from './noise-crypto.js'

const flat = (x: Uint8Array | { subarray: () => Uint8Array }): Uint8Array => x instanceof Uint8Array ? x : x.subarray()

describe('noise crypto with cached key objects', () => {
  it('interoperates with the library default both ways, for small and large frames, and rejects tampering', () => {
    const k = randomBytes(32)
    const ad = randomBytes(32)
    for (const size of [0, 100, 1199, 1200, 65_519]) {
      for (let n = 0; n < 3; n++) {
        const nonce = randomBytes(12)
        const pt = randomBytes(size)
        const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k))
        expect(Buffer.from(ours)).toEqual(Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k))))
        expect(Buffer.from(flat(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k)))).toEqual(pt)
        expect(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k)))).toEqual(pt)
        const bad = Buffer.from(ours)
        bad[bad.length - 1] ^= 1
        expect(() => noiseCrypto.chaCha20Poly1305Decrypt(bad, nonce, ad, k)).toThrow()
      }
    }
  })

  it('uses the current bytes of a key array that changed in place', () => {
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const pt = randomBytes(5000)
    const first = Buffer.from(flat(noiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k)))
    k[0] ^= 0xff
    const second = Buffer.from(flat(noiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k)))
    expect(second.equals(first)).toBe(false)
    expect(second).toEqual(Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k))))
  })
})
