import { describe, expect, it } from 'vitest'
import { HEAP_FLOOR_FLAG, MALLOC_TUNABLES, reexecWithHeapFloor, tuneGc } from './gc.js'

describe('tuneGc', () => {
  it('sets the flag only on V8s that have it (13.6 and later)', () => {
    expect(tuneGc('12.4.254.21-node.33')).toBe(false)
    expect(tuneGc('13.5.1')).toBe(false)
    expect(tuneGc('13.6.233.17-node.40')).toBe(true)
    expect(tuneGc('14.1.0')).toBe(true)
  })
})

describe('reexecWithHeapFloor', () => {
  const fake = (execArgv: string[], env: Record<string, string> = {}): { calls: string[][], envs: NodeJS.ProcessEnv[], proc: NonNullable<Parameters<typeof reexecWithHeapFloor>[1]> } => {
    const calls: string[][] = []
    const envs: NodeJS.ProcessEnv[] = []
    return { calls, envs, proc: { execArgv, execPath: '/n/node', argv: ['/n/node', '/s/syncmesh.js'], env, execve: (file: string, args: string[], e: NodeJS.ProcessEnv) => { calls.push([file, ...args]); envs.push(e) } } }
  }

  it('re-executes `start` with the floor, keeping node flags before the script and the arguments after it', () => {
    const f = fake(['--cpu-prof'], { HOME: '/h' })
    expect(reexecWithHeapFloor(['start', '--home', 'h'], f.proc)).toBe(true)
    expect(f.calls).toEqual([['/n/node', '/n/node', HEAP_FLOOR_FLAG, '--cpu-prof', '/s/syncmesh.js', 'start', '--home', 'h']])
    // the environment kept, the allocator's settings added
    expect(f.envs).toEqual([{ HOME: '/h', GLIBC_TUNABLES: MALLOC_TUNABLES }])
  })

  it('keeps a GLIBC_TUNABLES of the user\'s own', () => {
    const f = fake([], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })
    expect(reexecWithHeapFloor(['start'], f.proc)).toBe(true)
    expect(f.envs).toEqual([{ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }])
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
