/**
 * Passthrough's polling of the patched addon's notification queue (level 6), with a fake queue and fake
 * timers: no mount, no addon.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { NativeHelper } from './helper.js'
import type { NativeEvents } from './hygiene.js'
import { Passthrough } from './passthrough.js'
import type { ChangeSink } from './types.js'

const EV_CREATE = 1

/** One create notification (of /f<fd>), as syncmesh_take_events packs it; `fallbacks` notifications fell back to JS. */
function created (fd: number, fallbacks = 0): NativeEvents {
  return [fallbacks, new Int32Array([EV_CREATE, fd, 0]), `/f${fd}`, new Float64Array(0)]
}

function setup (queue: NativeEvents[], log: (msg: string) => void = () => {}): { pt: Passthrough, takes: () => number, reported: string[] } {
  const reported: string[] = []
  const sink: ChangeSink = {
    changed: (p, kind) => { reported.push(`${kind} ${p}`) },
    removed: () => {},
    renamed: () => {}
  }
  const pt = new Passthrough({ dataDir: '/nonexistent', reservedName: '.syncmesh', hiddenDir: '/nonexistent/.syncmesh/fuse-hidden', sink, log, helper: {} as unknown as NativeHelper })
  let takes = 0
  pt.useNativeEvents(() => { takes++; return queue.shift() }, () => Buffer.alloc(1))
  return { pt, takes: () => takes, reported }
}

describe('Passthrough: polling the addon\'s notification queue', () => {
  afterEach(() => { vi.useRealTimers() })

  it('a take that found notifications takes again shortly, even when handling them threw', () => {
    vi.useFakeTimers()
    const { pt, takes, reported } = setup([created(5, 1), created(6)], () => { throw new Error('log failed') })
    expect(() => pt.drainNative()).toThrow('log failed')
    expect(takes()).toBe(1)
    vi.advanceTimersByTime(50)
    // the addon leaves its wake-up off after a take that found notifications: only the poll takes the rest
    expect(takes()).toBeGreaterThanOrEqual(2)
    expect(reported).toContain('create f6')
  })

  it('closeAll stops the poll: nothing is taken or reported after it', async () => {
    vi.useFakeTimers()
    const { pt, takes, reported } = setup([created(5), created(6)])
    pt.drainNative()
    expect(reported).toEqual(['create f5'])
    await pt.closeAll(true)
    vi.advanceTimersByTime(1000)
    pt.drainNative()
    expect(takes()).toBe(1)
    expect(reported).toEqual(['create f5'])
  })
})
