import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
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

  it('ciphers frames given as lists of chunks like the same bytes in one buffer', () => {
    const k = randomBytes(32)
    const ad = randomBytes(32)
    // the library types its lists with its own copy of uint8arraylist (the same class at run time)
    type Frame = Parameters<typeof noiseCrypto.chaCha20Poly1305Decrypt>[0]
    const split = (b: Uint8Array, cuts: number[]): Frame & Uint8ArrayList => {
      const l = new Uint8ArrayList()
      let at = 0
      for (const c of [...cuts, b.byteLength]) { l.append(b.subarray(at, c)); at = c }
      return l as unknown as Frame & Uint8ArrayList
    }
    // a frame of small blocks: a 24-byte header and 4 KiB of data each (joined before
    // ciphering), then one chunk of 20,000 bytes (ciphered as it is)
    const smallBlocks: number[] = []
    for (let at = 0; at + 4120 < 40_000; at += 4120) smallBlocks.push(at + 24, at + 4120)
    smallBlocks.push(smallBlocks[smallBlocks.length - 1] + 20_000)
    for (const cuts of [[12], [12, 30_000], [100, 101, 102, 5000], [65_000], smallBlocks]) {
      const nonce = randomBytes(12)
      const pt = randomBytes(65_519)
      const ct = flat(defaultCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k))
      expect(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Encrypt(split(pt, cuts), nonce, ad, k)))).toEqual(Buffer.from(ct))
      expect(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Decrypt(split(ct, cuts), nonce, ad, k)))).toEqual(pt)
      // the tag split over two chunks
      expect(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Decrypt(split(ct, [ct.byteLength - 7]), nonce, ad, k)))).toEqual(pt)
      const bad = split(Buffer.from(ct), cuts)
      const last = bad.get(bad.byteLength - 1)
      bad.set(bad.byteLength - 1, last ^ 1)
      expect(() => noiseCrypto.chaCha20Poly1305Decrypt(bad, nonce, ad, k)).toThrow()
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
