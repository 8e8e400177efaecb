import { describe, expect, it } from 'vitest'
import { renderFrame } from './watch.js'
import type { StatusReport } from '../node/node.js'

function status (over: Partial<StatusReport> = {}): StatusReport {
  return {
    peerId: '12D3KooWpeer',
    nodeId: 'aaaaaaaaaaaaa',
    addrs: [],
    peers: [{ id: '12D3KooWother', addrs: ['/ip4/127.0.0.1/tcp/4100'], latencyMs: 3 }],
    files: 2,
    dirs: 1,
    bytes: 1024,
    pending: { files: 1, bytes: 4096, pulling: [{ path: 'big.bin', size: 4096, done: 1024 }] },
    conflicts: 0,
    lastError: null,
    recentErrors: [],
    mount: null,
    metrics: null,
    stats: { puller: { bytesFetched: 1024 }, blocks: { bytesServed: 0 } },
    sets: [
      { id: 's1', name: 'holiday', state: 'uploading', error: null, createdAt: 0, committedAt: 1, relay: 'aaaaaaaaaaaaa', bytesDone: 50, bytesTotal: 100, fileCount: 2, filesUploaded: 1, files: [] },
      { id: 's2', name: 'done', state: 'uploaded', error: null, createdAt: 0, committedAt: 1, relay: 'aaaaaaaaaaaaa', bytesDone: 10, bytesTotal: 10, fileCount: 1, filesUploaded: 1, files: [] }
    ],
    relay: { backend: 'folder', uploads: [{ setId: 's1', name: 'holiday', file: 'a.bin', fileBytes: 10, fileSize: 40, bytesDone: 50, bytesTotal: 100, startedAt: 0 }], lastError: null },
    api: 'http://127.0.0.1:8080',
    ...over
  } as StatusReport
}

describe('status --watch frames', () => {
  it('shows peers with latency, pulls and relay uploads with progress bars, and sets not uploaded yet', () => {
    const prev = { at: 1000, status: status({ relay: { backend: 'folder', uploads: [{ setId: 's1', name: 'holiday', file: 'a.bin', fileBytes: 0, fileSize: 40, bytesDone: 30, bytesTotal: 100, startedAt: 0 }], lastError: null } }) }
    const frame = renderFrame('/h', { at: 2000, status: status() }, prev, 120)
    expect(frame).toMatch(/12D3KooWother\s+3 ms/)
    expect(frame).toMatch(/big\.bin\s+\[#####\.+\]\s+25%/)
    expect(frame).toMatch(/relay\s+folder/)
    expect(frame).toMatch(/holiday\s+\[##########\.+\]\s+50%\s+50 B\/100 B 20 B\/s/)
    expect(frame).toMatch(/now a\.bin 10 B\/40 B/)
    expect(frame).toMatch(/sets\s+1 not uploaded yet/)
    expect(frame).toMatch(/holiday\s+uploading\s+\[/)
    expect(frame).not.toMatch(/\bdone\s+uploaded/)
  })
})
