/**
 * Protobuf's varints, written by hand: for the few messages a node encodes once per file
 * (records, block requests), written into one buffer sized first, with the same bytes as
 * protons' generated encoders (each encoder here is property-tested against protons).
 */

/** Bytes of `n` (a non-negative safe integer) as a varint. */
export function varintLength (n: number): number {
  if (n < 0x80) return 1
  if (n < 0x4000) return 2
  if (n < 0x200000) return 3
  if (n < 0x10000000) return 4
  let len = 4
  n = Math.floor(n / 0x10000000)
  while (n > 0) { len++; n = Math.floor(n / 128) }
  return len
}

export function writeVarint (buf: Uint8Array, at: number, n: number): number {
  while (n > 0x7fffffff) {
    buf[at++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80
    n >>>= 7
  }
  buf[at++] = n
  return at
}

/** Zig-zag of a safe integer (sint64), exact over the whole safe range. */
export function zigzag (n: number): number | bigint {
  if (n >= 0) return n <= Number.MAX_SAFE_INTEGER / 2 ? n * 2 : BigInt(n) * 2n
  return n >= -(Number.MAX_SAFE_INTEGER / 2) ? -n * 2 - 1 : -BigInt(n) * 2n - 1n
}

export function bigVarintLength (n: bigint): number {
  let len = 1
  while (n >= 128n) { n >>= 7n; len++ }
  return len
}

export function writeBigVarint (buf: Uint8Array, at: number, n: bigint): number {
  while (n >= 128n) {
    buf[at++] = Number(n & 0x7fn) | 0x80
    n >>= 7n
  }
  buf[at++] = Number(n)
  return at
}

/**
 * Bytes of a uint64 or int64 field's value, which protons writes as a plain varint when it
 * is not negative (the validation keeps these fields non-negative; a negative int64 is ten
 * bytes, its two's complement, written by a BigInt).
 */
export function numLength (n: number): number {
  return n >= 0 ? varintLength(n) : 10
}

export function writeNum (buf: Uint8Array, at: number, n: number): number {
  return n >= 0 ? writeVarint(buf, at, n) : writeBigVarint(buf, at, BigInt.asUintN(64, BigInt(n)))
}

const NIBBLE = new Int8Array(128).fill(-1)
for (let i = 0; i < 16; i++) NIBBLE['0123456789abcdef'.charCodeAt(i)] = i

/**
 * Write the 32 bytes that `hex` (64 lowercase hex digits) stands for at `at`; false, with
 * nothing meaningful written, when it is not such a string.
 */
export function writeHexHash (buf: Uint8Array, at: number, hex: string): boolean {
  if (hex.length !== 64) return false
  for (let i = 0; i < 32; i++) {
    const a = hex.charCodeAt(2 * i)
    const b = hex.charCodeAt(2 * i + 1)
    const hi = a < 128 ? NIBBLE[a] : -1
    const lo = b < 128 ? NIBBLE[b] : -1
    if (hi < 0 || lo < 0) return false
    buf[at + i] = (hi << 4) | lo
  }
  return true
}
