/**
 * Noise's ChaCha20-Poly1305 through node:crypto with the key made into a KeyObject once
 * per session key, instead of once per frame. @chainsafe/libp2p-noise's default passes the
 * raw key to createCipheriv for every frame (up to 64 KiB), and importing the key was a
 * third of the cost of a frame (measured: 990 -> 1442 MB/s per core for 64 KiB frames).
 * Everything else (handshake, small frames) stays with the library's default crypto.
 *
 * A frame given as a list of chunks (a frame that spans two socket reads, a yamux header
 * and its data) is ciphered chunk by chunk into a list: joining it first cost a copy and a
 * new buffer per 64 KiB frame, and large transfers are bound by garbage collection of
 * such buffers as much as by the ciphers.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { Uint8ArrayList } from 'uint8arraylist'

const ALGO = 'chacha20-poly1305'
/** Below this the library's WebAssembly implementation is faster (its own measurement). */
const SMALL = 1200

/** The KeyObject of each session key (keyed by the key's bytes array, checked by value). */
const keys = new WeakMap<Uint8Array, { bytes: Buffer, key: KeyObject }>()

function keyObject (k: Uint8Array): KeyObject {
  const hit = keys.get(k)
  if (hit != null && hit.bytes.equals(k)) return hit.key
  const bytes = Buffer.from(k)
  const key = createSecretKey(bytes)
  keys.set(k, { bytes, key })
  return key
}

/**
 * The library's lists come from its own copy of uint8arraylist: the same class at run time
 * (lists are told apart by a Symbol.for marker), a different type to the compiler.
 */
type NoiseList = Exclude<ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>, Uint8Array>
const asNoiseList = (l: Uint8ArrayList): NoiseList => l as unknown as NoiseList

/**
 * Chunks of a list smaller than this are joined before ciphering (a call costs more, and
 * each makes an output buffer the private-network cipher below then ciphers on its own).
 * A frame of small blocks is a frame header and 4 KiB of data per block: joined, a
 * 64 KiB Noise message is one call at each layer instead of about 30. Measured for 10,000
 * blocks of 4 KiB, Noise and then AES-CTR as the node runs them: 151-193 ms when only
 * chunks under 4 KiB were joined, 79-120 ms now. A large file's chunks (64 KiB and more)
 * are ciphered as they are.
 */
const JOIN_BELOW = 16 * 1024

/** The pieces to cipher, in order: a list's chunks as they are, runs of small chunks joined. */
function pieces (data: Uint8Array | Iterable<Uint8Array>): Uint8Array[] {
  if (data instanceof Uint8Array) return [data]
  const out: Uint8Array[] = []
  let small: Uint8Array[] = []
  const flush = (): void => {
    if (small.length === 1) out.push(small[0])
    else if (small.length > 1) out.push(Buffer.concat(small))
    small = []
  }
  for (const c of data) {
    if (c.byteLength === 0) continue
    if (c.byteLength < JOIN_BELOW) { small.push(c); continue }
    flush()
    out.push(c)
  }
  flush()
  return out
}

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    // a list is ciphered chunk by chunk and the result is a list too: no copy of the
    // frame into one buffer on either side of the cipher
    const cipher = createCipheriv(ALGO, keyObject(k), nonce, { authTagLength: 16 })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const out = new Uint8ArrayList()
    for (const p of pieces(plaintext)) out.append(cipher.update(p))
    const final = cipher.final()
    if (final.byteLength > 0) out.append(final)
    out.append(cipher.getAuthTag())
    return asNoiseList(out)
  },
  chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < SMALL) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    const textLength = ciphertext.byteLength - 16
    const decipher = createDecipheriv(ALGO, keyObject(k), nonce, { authTagLength: 16 })
    decipher.setAAD(ad, { plaintextLength: textLength })
    if (ciphertext instanceof Uint8Array) {
      decipher.setAuthTag(ciphertext.subarray(textLength))
      const out = decipher.update(ciphertext.subarray(0, textLength))
      const final = decipher.final()
      return final.byteLength > 0 ? Buffer.concat([out, final]) : out
    }
    // a list (a frame that came in several reads): deciphered chunk by chunk, not joined
    decipher.setAuthTag(ciphertext.subarray(textLength))
    const out = new Uint8ArrayList()
    for (const p of pieces(ciphertext.sublist(0, textLength))) out.append(decipher.update(p))
    const final = decipher.final()
    if (final.byteLength > 0) out.append(final)
    return asNoiseList(out)
  }
}
