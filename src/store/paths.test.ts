import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { PathError, fullPathProblem, isPlainValidPath, isValidPath, joinInside, validatePath } from './paths.js'

describe('validatePath', () => {
  it('accepts ordinary relative paths', () => {
    for (const p of ['a', 'a/b.txt', 'dir/sub/file', '.hidden', 'a/.syncmesh', '.syncmeshx', 'x/..y', '...', 'ünï/cødé 🎉', 'a b/c-d_e']) {
      expect(validatePath(p)).toBe(p)
      expect(isValidPath(p)).toBe(true)
    }
  })

  it('accepts a path of exactly 4096 bytes and segments of exactly 255 bytes', () => {
    const p = Array.from({ length: 17 }, () => 'x'.repeat(240)).join('/') // 17 * 240 + 16 = 4096
    expect(Buffer.byteLength(p)).toBe(4096)
    expect(validatePath(p)).toBe(p)
    expect(isValidPath(p + 'y')).toBe(false)
    expect(isValidPath('x'.repeat(255))).toBe(true)
    expect(isValidPath('é'.repeat(127) + 'x')).toBe(true) // 255 bytes
  })

  const bad: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['absolute', '/etc/passwd', /starts with '\/'/],
    ['backslash', 'a\\b', /'\\'/],
    ['NUL', 'a\0b', /control/],
    ['newline', 'a\nb', /control/],
    ['DEL', 'a\x7fb', /control/],
    ['tab', 'a\tb', /control/],
    ['trailing slash', 'a/', /empty segment/],
    ['double slash', 'a//b', /empty segment/],
    ['dot segment', './a', /'\.' segment/],
    ['inner dot', 'a/./b', /'\.' segment/],
    ['dot only', '.', /'\.' segment/],
    ['dotdot', '..', /'\.\.' segment/],
    ['dotdot inside', 'a/../b', /'\.\.' segment/],
    ['dotdot at end', 'a/..', /'\.\.' segment/],
    ['long segment', 'x'.repeat(256), /segment longer than 255/],
    ['long multibyte segment', 'é'.repeat(128), /segment longer than 255/],
    ['long path', Array.from({ length: 17 }, () => 'x'.repeat(250)).join('/'), /longer than 4096/],
    ['reserved', '.syncmesh', /reserved/],
    ['inside reserved', '.syncmesh/tmp/x', /reserved/],
    ['reserved other case', '.SyncMesh/x', /reserved/],
    ['lone high surrogate', 'a\uD800b', /Unicode/],
    ['lone low surrogate', '\uDC00', /Unicode/]
  ]

  for (const [name, p, why] of bad) {
    it(`rejects ${name}`, () => {
      expect(isValidPath(p)).toBe(false)
      let err: unknown
      try {
        validatePath(p)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(PathError)
      const e = err as PathError
      expect(e.name).toBe('PathError')
      expect(e.message).toMatch(why)
      expect(e.message).not.toMatch(/\n/)
    })
  }

  it('quotes the path with JSON.stringify, cut to 200 characters', () => {
    expect(() => validatePath('a/../b')).toThrow('invalid path "a/../b"')
    expect(() => validatePath('a\nb')).toThrow('"a\\nb"')
    const long = '/' + 'z'.repeat(1000)
    try {
      validatePath(long)
      expect.unreachable()
    } catch (e) {
      expect((e as Error).message).toContain(JSON.stringify(long.slice(0, 200)) + '…')
      expect((e as Error).message.length).toBeLessThan(300)
    }
  })

  it('rejects non-strings without a TypeError', () => {
    expect(() => validatePath(42 as unknown as string)).toThrow(PathError)
    expect(isValidPath(undefined as unknown as string)).toBe(false)
  })
})

describe('the one-pass check of plain paths', () => {
  it('takes the common paths, and never one the full check refuses (20,000 random paths)', () => {
    for (const p of ['a', 'a/b.txt', 'dir/sub/file-1.txt', '.hidden', 'a/.syncmesh', 'x/..y', '...', 'x'.repeat(255)]) {
      expect(isPlainValidPath(p), p).toBe(true)
    }
    // pieces that make every rule fire: separators, dots, the reserved name in any case,
    // control characters, DEL, '\\', non-ASCII and lone surrogates, long segments
    const pieces = ['a', 'Z', ' ', '~', '.', '..', '/', '//', '\\', '\u0000', '\u001f', '\u007f', 'é', '🎉', '\uD800', '\uDC00',
      '.syncmesh', '.SyncMesh', 'syncmesh', 'x'.repeat(200), 'y'.repeat(60), 'é'.repeat(120)]
    let seed = 12345
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
    let plain = 0
    for (let i = 0; i < 20_000; i++) {
      let p = ''
      for (let k = rand(8); k >= 0; k--) p += pieces[rand(pieces.length)]
      if (rand(50) === 0) p = Array.from({ length: 17 }, () => 'x'.repeat(240)).join('/') + (rand(2) === 0 ? '' : 'y')
      const full = fullPathProblem(p)
      if (isPlainValidPath(p)) { plain++; expect(full, JSON.stringify(p)).toBeUndefined() }
      expect(isValidPath(p), JSON.stringify(p)).toBe(full === undefined)
    }
    expect(plain).toBeGreaterThan(1000)
  })
})

describe('joinInside', () => {
  it('joins a valid path under the root', () => {
    expect(joinInside('/data', 'a/b')).toBe(path.join('/data', 'a/b'))
    expect(joinInside('/data/', 'a')).toBe(path.join('/data/', 'a'))
    expect(joinInside('rel/root', 'x')).toBe(path.join('rel/root', 'x'))
    expect(joinInside('/', 'x')).toBe('/x')
  })

  it('rejects invalid paths', () => {
    expect(() => joinInside('/data', '../etc')).toThrow(PathError)
    expect(() => joinInside('/data', '/etc')).toThrow(PathError)
    expect(() => joinInside('/data', '.syncmesh/x')).toThrow(PathError)
    expect(() => joinInside('/data', '')).toThrow(PathError)
  })
})
