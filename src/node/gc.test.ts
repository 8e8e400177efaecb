import { describe, expect, it } from 'vitest'
import { tuneGc } from './gc.js'

describe('tuneGc', () => {
  it('sets the flag only on V8s that have it (13.6 and later)', () => {
    expect(tuneGc('12.4.254.21-node.33')).toBe(false)
    expect(tuneGc('13.5.1')).toBe(false)
    expect(tuneGc('13.6.233.17-node.40')).toBe(true)
    expect(tuneGc('14.1.0')).toBe(true)
  })
})
