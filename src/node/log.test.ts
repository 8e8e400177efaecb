import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger, loggerFn, RecentErrors } from './log.js'

function capture (): { stream: Writable, lines: () => Array<Record<string, unknown>> } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { text += chunk.toString(); cb() } })
  return { stream, lines: () => text.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) }
}

describe('logs', () => {
  it('one JSON line per event, level names, fields, and the level threshold', () => {
    const out = capture()
    const log = loggerFn(createLogger({ level: 'info', destination: out.stream }))
    log('debug', 'hidden')
    log('info', 'peer connected', { peer: '12D3KooWx' })
    log('warn', 'pull failed', { path: 'a/b.txt' })
    const lines = out.lines()
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'peer connected', peer: '12D3KooWx' })
    expect(lines[1]).toMatchObject({ level: 'warn', msg: 'pull failed', path: 'a/b.txt' })
    expect(typeof lines[0].time).toBe('string')
  })

  it('keeps the last warnings and errors only', () => {
    const r = new RecentErrors(3)
    r.add('info', 'not kept')
    for (let i = 0; i < 5; i++) r.add(i % 2 === 0 ? 'warn' : 'error', `e${i}`)
    r.add('warn', 'with fields', { peer: 'P', path: 'x.txt' })
    const l = r.list()
    expect(l.map((e) => e.msg)).toEqual(['e3', 'e4', 'with fields (P, x.txt)'])
    expect(l[0].level).toBe('error')
    expect(Number.isNaN(Date.parse(l[0].at))).toBe(false)
  })
})
