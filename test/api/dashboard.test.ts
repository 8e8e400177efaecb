/**
 * The web dashboard in a real browser (Debian's Chromium through playwright-core) against
 * real nodes: log in with the token, then the page must show what the node knows.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'
import { Mesh, waitFor, type SimNode } from '../sim/harness.js'
import { apiToken } from '../../src/node/home.js'
import type { ConflictList } from '../../src/api/conflicts.js'

const CHROMIUM = '/usr/bin/chromium'

let mesh: Mesh | null = null
let browser: Browser | null = null
/** Checks made once the test is over (errors the page reported). */
const afterChecks: Array<() => void> = []
afterEach(async () => {
  const checks = afterChecks.splice(0)
  try {
    await browser?.close().catch(() => {})
    browser = null
  } finally {
    await mesh?.cleanup()
    mesh = null
  }
  for (const c of checks) c()
})

async function openPage (): Promise<Page> {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
  const page = await browser.newPage()
  // a script error or a CSP violation on the page fails the test
  const problems: string[] = []
  page.on('pageerror', (err) => { problems.push(err.message) })
  page.on('console', (msg) => { if (msg.type() === 'error' && !/401/.test(msg.text())) problems.push(msg.text()) })
  afterChecks.push(() => { expect(problems).toEqual([]) })
  return page
}

function apiUrl (n: SimNode): string {
  const api = n.n.api
  if (api == null) throw new Error(`${n.name} serves no API`)
  return api.url
}

async function call (n: SimNode, method: string, path: string, body?: unknown): Promise<{ status: number, json: unknown }> {
  const res = await fetch(`${apiUrl(n)}${path}`, {
    method,
    headers: { authorization: `Bearer ${await apiToken(n.home)}`, ...(body != null ? { 'content-type': 'application/json' } : {}) },
    body: body == null ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  return { status: res.status, json: await res.json() }
}

async function logIn (page: Page, token: string): Promise<void> {
  await page.fill('#token', token)
  await page.click('#login-button')
}

describe.skipIf(!existsSync(CHROMIUM))('web dashboard', () => {
  it('serves the page without the token, and keeps every /v1 route behind it', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    await a.start({ api: '127.0.0.1:0' })
    const res = await fetch(`${apiUrl(a)}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/)
    const html = await res.text()
    expect(html).not.toContain(a.n.nodeId)
    expect(html).not.toMatch(/(src|href)="https?:/)
    expect((await fetch(`${apiUrl(a)}/index.html`)).status).toBe(200)
    expect((await fetch(`${apiUrl(a)}/`, { method: 'POST' })).status).toBe(405)
    expect((await fetch(`${apiUrl(a)}/v1/conflicts`)).status).toBe(401)
    expect((await call(a, 'GET', '/v1/conflicts')).json).toEqual({ conflicts: [], total: 0 })
  })

  it('a wrong token shows the error and the login form again', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    await a.start({ api: '127.0.0.1:0' })
    const page = await openPage()
    await page.goto(apiUrl(a))
    await logIn(page, 'not-the-token-at-all')
    await page.waitForSelector('#login-error:visible')
    expect(await page.textContent('#login-error')).toMatch(/refused this token.*api\.token/)
    expect(await page.isVisible('#login-form')).toBe(true)
    expect(await page.isHidden('#app')).toBe(true)
    // the right one gets in
    await logIn(page, await apiToken(a.home))
    await page.waitForSelector('#app:visible')
    await expect.poll(async () => await page.textContent('#node-id')).toBe(a.n.nodeId)
    expect(await page.isHidden('#login')).toBe(true)
    // the token stays for the tab: a reload goes straight to the data
    await page.reload()
    await page.waitForSelector('#app:visible')
    expect(await page.textContent('#node-id')).toBe(a.n.nodeId)
  })

  it('shows what peers say as text, and a peer\'s latency when the status has it', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    await a.start({ api: '127.0.0.1:0' })
    const page = await openPage()
    const hostile = '<img src=x onerror="document.title=1">'
    // the status as a node with latencies and a peer with a hostile id would report it
    await page.route('**/v1/status', async (route) => {
      const res = await route.fetch()
      const status = await res.json() as { peers: unknown[] }
      status.peers = [{ id: 'peer-one', addrs: ['/ip4/192.0.2.1/tcp/4001'], latencyMs: 12.4 }, { id: hostile, addrs: [] }]
      await route.fulfill({ response: res, json: status })
    })
    await page.goto(apiUrl(a))
    await logIn(page, await apiToken(a.home))
    await expect.poll(async () => await page.locator('#peers li[data-peer="peer-one"] .latency').textContent()).toBe(' 12 ms')
    const odd = page.locator('#peers > li').nth(1)
    expect(await odd.getAttribute('data-peer')).toBe(hostile)
    expect(await odd.locator('.peer-id').textContent()).toBe(hostile)
    expect(await odd.locator('.latency').count()).toBe(0)
    expect(await page.locator('#peers img').count()).toBe(0)
  })

  it('shows the peer, a conflict with both versions, a set, and a pull in progress', async () => {
    mesh = await Mesh.create()
    const m = mesh
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    await a.start({ api: '127.0.0.1:0' })
    await b.start({ join: [a.addr()] })

    // a conflict: B is cut off while both write the same file
    await a.write('doc.txt', 'base')
    await m.waitConverged()
    await b.stop()
    await a.write('doc.txt', 'version from a')
    await b.write('doc.txt', 'version from b, longer')
    await b.start({ join: [a.addr()] })
    await m.waitConverged()
    const listed = (await call(a, 'GET', '/v1/conflicts')).json as ConflictList
    expect(listed.total).toBe(1)
    const [conflict] = listed.conflicts
    expect(conflict.base).toBe('doc.txt')
    expect(conflict.current).not.toBeNull()
    expect(new Set([conflict.copy.node, conflict.current?.node])).toEqual(new Set([a.n.nodeId, b.n.nodeId]))
    expect(new Set([conflict.copy.size, conflict.current?.size])).toEqual(new Set([14, 22]))

    // a set with a file
    const created = await call(a, 'POST', '/v1/sets', { name: 'holiday' })
    expect(created.status).toBe(201)
    const setId = (created.json as { id: string }).id
    expect((await call(a, 'PUT', `/v1/sets/${setId}/files/beach.jpg`, 'sand and sea')).status).toBe(201)

    const page = await openPage()
    await page.goto(apiUrl(a))
    await logIn(page, await apiToken(a.home))
    await page.waitForSelector('#app:visible')

    // this node and its peer
    expect(await page.textContent('#node-peer-id')).toBe(a.n.peerId.toString())
    expect(await page.textContent('#node-api')).toBe(a.n.api?.url)
    const peer = page.locator(`#peers li[data-peer="${b.n.peerId.toString()}"]`)
    await peer.waitFor()
    expect(await peer.locator('.addrs li').count()).toBeGreaterThan(0)

    // the conflict, both versions
    const row = page.locator(`#conflicts tr[data-base="doc.txt"][data-path="${conflict.path}"]`)
    await row.waitFor()
    expect(await row.locator('.copy .node').textContent()).toBe(conflict.copy.node)
    expect(await row.locator('.current .node').textContent()).toBe(conflict.current?.node)
    expect(await row.locator('.copy .size').textContent()).toBe(`${conflict.copy.size} B`)
    expect(await row.locator('.current .size').textContent()).toBe(`${conflict.current?.size ?? -1} B`)
    expect(await page.textContent('#sync-conflicts')).toBe('1')

    // the set, open, with its file
    const set = page.locator(`#sets li[data-set="${setId}"]`)
    await set.waitFor()
    expect(await set.getAttribute('data-state')).toBe('open')
    expect(await set.locator('.name').textContent()).toBe('holiday')
    await set.locator('li[data-file="beach.jpg"][data-state="pending"]').waitFor()
    // ... and once committed (no relay here), its progress bar
    expect((await call(a, 'POST', `/v1/sets/${setId}/commit`)).status).toBe(202)
    await page.locator(`#sets li[data-set="${setId}"][data-state="committed"] progress`).waitFor()
    expect(await page.isVisible('#relay-none')).toBe(true)

    // a pull made slow: B answers each block after a delay
    b.n.blockServer.delayMs = 500
    await b.write('big.bin', randomBytes(8 * 1024 * 1024))
    const bar = page.locator('#pulls li[data-path="big.bin"] progress')
    await bar.waitFor({ timeout: 15_000 })
    await expect.poll(async () => await bar.getAttribute('max'), { timeout: 5_000 }).toBe(String(8 * 1024 * 1024))
    const value = Number(await bar.getAttribute('value'))
    expect(value).toBeGreaterThanOrEqual(0)
    expect(value).toBeLessThanOrEqual(8 * 1024 * 1024)
    b.n.blockServer.delayMs = 0
    await waitFor(async () => (await a.n.store.needCount()) === 0, 15_000, 'A pulled big.bin')
    await page.locator('#pulls li[data-path="big.bin"]').waitFor({ state: 'detached' })
  })
})
