import { describe, expect, it } from 'vitest'
import { HEAP_FLOOR_FLAG, reexecWithHeapFloor, tuneGc } from './gc.js'

describe('tuneGc', () => {
  it('sets the flag only on V8s that have it (13.6 and later)', () => {
    expect(tuneGc('12.4.254.21-node.33')).toBe(false)
    expect(tuneGc('13.5.1')).toBe(false)
    expect(tuneGc('13.6.233.17-node.40')).toBe(true)
    expect(tuneGc('14.1.0')).toBe(true)
  })
})

describe('reexecWithHeapFloor', () => {
  const fake = (execArgv: string[], env: Record<string, string> = {}): { calls: string[][], proc: NonNullable<Parameters<typeof reexecWithHeapFloor>[1]> } => {
    const calls: string[][] = []
    return { calls, proc: { execArgv, execPath: '/n/node', argv: ['/n/node', '/s/syncmesh.js'], env, execve: (file: string, args: string[]) => { calls.push([file, ...args]) } } }
  }

  it('re-executes `start` with the floor, keeping node flags before the script and the arguments after it', () => {
    const f = fake(['--cpu-prof'])
    expect(reexecWithHeapFloor(['start', '--home', 'h'], f.proc)).toBe(true)
    expect(f.calls).toEqual([['/n/node', '/n/node', HEAP_FLOOR_FLAG, '--cpu-prof', '/s/syncmesh.js', 'start', '--home', 'h']])
  })

  it('leaves other commands, a process that has the floor (or a heap size of its own), and SYNCMESH_HEAP_FLOOR=0 alone', () => {
    for (const [argv, execArgv, env] of [
      [['status'], [], {}],
      [['start'], [HEAP_FLOOR_FLAG], {}],
      [['start'], ['--initial-heap-size=64'], {}],
      [['start'], [], { SYNCMESH_HEAP_FLOOR: '0' }]
    ] as Array<[string[], string[], Record<string, string>]>) {
      const f = fake(execArgv, env)
      expect(reexecWithHeapFloor(argv, f.proc)).toBe(false)
      expect(f.calls).toEqual([])
    }
  })

  it('runs on without the floor where execve fails', () => {
    const f = fake([])
    f.proc.execve = () => { throw new Error('EPERM') }
    expect(reexecWithHeapFloor(['start'], f.proc)).toBe(false)
  })
})
