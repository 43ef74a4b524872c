/**
 * The two Nuxt app shells, driven in Chromium against a stand-in gateway.
 *
 * Each app's production build (`.output/server/index.mjs`) is started on a free port with
 * NUXT_PUBLIC_GATEWAY_URL pointing at a tiny node:http gateway that answers `/healthz` and
 * rejects every login. Apps are built first only when `.output` is missing.
 * Nothing here needs a network beyond loopback: any request the browser makes elsewhere
 * fails the test.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = join(ROOT, 'node_modules/.bin')
// Node 24 from the `node` devDependency; the machine's own Node is too old for Nuxt 4.5.
const NODE = existsSync(join(BIN, 'node')) ? join(BIN, 'node') : process.execPath
const CHROMIUM = '/usr/bin/chromium'

const WEB_SECTIONS = ['Home', 'Chat', 'Workflows', 'Knowledge', 'Usage']
const ADMIN_SECTIONS = ['Overview', 'Users', 'Organizations', 'Projects', 'Models', 'Pricing', 'Billing', 'Audit', 'Policy']

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

const children: ChildProcess[] = []

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ''}`, NUXT_TELEMETRY_DISABLED: '1', ...extra }
}

/** `nuxt build` in `app/` unless its `.output` already exists. One app at a time. */
async function ensureBuilt(app: 'web' | 'admin'): Promise<void> {
  const cwd = join(ROOT, app)
  if (existsSync(join(cwd, '.output/server/index.mjs'))) return
  const child = spawn(NODE, [join(BIN, 'nuxt'), 'build'], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((done, fail) => {
    child.once('error', fail)
    child.once('exit', done)
  })
  if (code !== 0) throw new Error(`nuxt build of ${app} exited with ${code}:\n${output.slice(-4000)}`)
}

/** Start an app's production server on a free port and resolve with its base URL. */
async function startApp(app: 'web' | 'admin', gatewayUrl: string): Promise<string> {
  const child = spawn(NODE, [join(ROOT, app, '.output/server/index.mjs')], {
    cwd: join(ROOT, app),
    env: childEnv({ PORT: '0', HOST: '127.0.0.1', NUXT_PUBLIC_GATEWAY_URL: gatewayUrl }),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  children.push(child)
  let output = ''
  return await new Promise<string>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`${app} did not start:\n${output}`)), 30_000)
    child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /Listening on (http:\/\/\S+?)\/?\s/.exec(output)
      if (match?.[1]) {
        clearTimeout(timer)
        done(match[1])
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      fail(new Error(`${app} exited with ${code}:\n${output}`))
    })
  })
}

// ---------------------------------------------------------------------------------------
// Stand-in gateway
// ---------------------------------------------------------------------------------------

interface SeenRequest { method: string, path: string, body: string }

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

async function startFakeGateway(): Promise<{ server: Server, url: string, seen: SeenRequest[] }> {
  const seen: SeenRequest[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const origin = req.headers.origin
    if (origin) {
      res.setHeader('access-control-allow-origin', origin)
      res.setHeader('access-control-allow-credentials', 'true')
      res.setHeader('vary', 'origin')
    }
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString() })
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://gateway').pathname
      const method = req.method ?? 'GET'
      if (method === 'OPTIONS') {
        res.writeHead(204, {
          'access-control-allow-methods': 'GET, POST, OPTIONS',
          'access-control-allow-headers': req.headers['access-control-request-headers'] ?? 'content-type',
          'access-control-max-age': '600'
        })
        res.end()
        return
      }
      seen.push({ method, path, body })
      if (method === 'GET' && path === '/healthz') return json(res, 200, { status: 'ok' })
      if (method === 'POST' && path === '/api/v1/auth/login') {
        return json(res, 401, { error: { code: 'invalid_credentials', message: 'Email or password is wrong', trace_id: 't1' } })
      }
      json(res, 404, { error: { code: 'not_found', message: `No route ${method} ${path}`, trace_id: 't404' } })
    })
  })
  await new Promise<void>(done => server.listen(0, '127.0.0.1', done))
  const { port } = server.address() as AddressInfo
  return { server, url: `http://127.0.0.1:${port}`, seen }
}

/** A loopback port with nothing listening on it: the gateway is down. */
async function deadPort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>(done => probe.listen(0, '127.0.0.1', done))
  const { port } = probe.address() as AddressInfo
  await new Promise<void>(done => probe.close(() => done()))
  return port
}

// ---------------------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------------------

let browser: Browser

interface Watched { page: Page, consoleErrors: string[], offLoopback: string[] }

/** A fresh page that records console errors, page errors and any non-loopback request. */
async function openPage(): Promise<Watched> {
  const context = await browser.newContext()
  const page = await context.newPage()
  const consoleErrors: string[] = []
  const offLoopback: string[] = []
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(`${msg.text()} (${msg.location().url})`)
  })
  page.on('pageerror', error => consoleErrors.push(`pageerror: ${error.message}`))
  page.on('request', (request) => {
    const url = request.url()
    if (!/^(https?:\/\/127\.0\.0\.1[:/]|data:|blob:)/.test(url)) offLoopback.push(url)
  })
  return { page, consoleErrors, offLoopback }
}

/** Chromium logs every non-2xx fetch as a console error; drop the one a test provoked. */
function unexpected(errors: string[], provoked: RegExp): string[] {
  return errors.filter(line => !provoked.test(line))
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

let gateway: Awaited<ReturnType<typeof startFakeGateway>>
let webUrl: string
let adminUrl: string

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`)
  await ensureBuilt('web')
  await ensureBuilt('admin')
  gateway = await startFakeGateway()
  ;[webUrl, adminUrl] = await Promise.all([startApp('web', gateway.url), startApp('admin', gateway.url)])
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
}, 600_000)

afterAll(async () => {
  await browser?.close()
  for (const child of children) child.kill('SIGTERM')
  await new Promise<void>(done => (gateway ? gateway.server.close(() => done()) : done()))
})

describe('web app shell', () => {
  it('shows every researcher section in the sidebar and reports the gateway online', async () => {
    const { page, consoleErrors, offLoopback } = await openPage()
    await page.goto(`${webUrl}/`)

    const sidebar = page.getByRole('navigation', { name: 'Sections' })
    for (const label of WEB_SECTIONS) {
      await expect.poll(() => sidebar.getByRole('link', { name: label, exact: true }).isVisible(), { timeout: 20_000 }).toBe(true)
    }
    await page.getByText('gateway online').waitFor()
    await page.getByText('Project home is not built yet').waitFor()
    expect(gateway.seen.some(r => r.method === 'GET' && r.path === '/healthz')).toBe(true)

    await sidebar.getByRole('link', { name: 'Chat', exact: true }).click()
    await page.waitForURL(`${webUrl}/chat`)
    await page.getByText('Chat is not built yet').waitFor()

    expect(consoleErrors).toEqual([])
    expect(offLoopback).toEqual([])
    await page.context().close()
  }, 60_000)

  it('a wrong password shows the gateway’s message and trace id, not a crash', async () => {
    const { page, consoleErrors, offLoopback } = await openPage()
    await page.goto(`${webUrl}/login`)

    await page.getByLabel('Email').fill('ada@lab.example')
    await page.getByLabel('Password').fill('not-her-password')
    await page.getByRole('button', { name: 'Sign in' }).click()

    await page.getByText('Email or password is wrong').waitFor()
    await page.getByText('Trace ID: t1').waitFor()
    expect(page.url()).toBe(`${webUrl}/login`)

    const login = gateway.seen.find(r => r.method === 'POST' && r.path === '/api/v1/auth/login')
    expect(JSON.parse(login?.body ?? '{}')).toEqual({ email: 'ada@lab.example', password: 'not-her-password' })

    expect(unexpected(consoleErrors, /status of 401 .*\/api\/v1\/auth\/login/)).toEqual([])
    expect(offLoopback).toEqual([])
    await page.context().close()
  }, 60_000)

  it('with the gateway down the badge says offline and sign-in explains it', async () => {
    const downUrl = await startApp('web', `http://127.0.0.1:${await deadPort()}`)
    const { page, consoleErrors } = await openPage()
    await page.goto(`${downUrl}/login`)
    await page.getByLabel('Email').fill('ada@lab.example')
    await page.getByLabel('Password').fill('whatever')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText('Cannot reach the gateway').waitFor()

    await page.goto(`${downUrl}/`)
    await page.getByText('gateway offline').waitFor()
    expect(unexpected(consoleErrors, /ERR_CONNECTION_REFUSED/)).toEqual([])
    await page.context().close()
  }, 60_000)
})

describe('admin app shell', () => {
  it('shows every operator section in the sidebar and reports the gateway online', async () => {
    const { page, consoleErrors, offLoopback } = await openPage()
    await page.goto(`${adminUrl}/`)

    const sidebar = page.getByRole('navigation', { name: 'Sections' })
    for (const label of ADMIN_SECTIONS) {
      await expect.poll(() => sidebar.getByRole('link', { name: label, exact: true }).isVisible(), { timeout: 20_000 }).toBe(true)
    }
    await page.getByText('gateway online').waitFor()

    await sidebar.getByRole('link', { name: 'Billing', exact: true }).click()
    await page.waitForURL(`${adminUrl}/billing`)
    await page.getByText('Billing is not built yet').waitFor()

    expect(consoleErrors).toEqual([])
    expect(offLoopback).toEqual([])
    await page.context().close()
  }, 60_000)

  it('a wrong password on the admin login shows the gateway’s message', async () => {
    const { page, consoleErrors } = await openPage()
    await page.goto(`${adminUrl}/login`)
    await page.getByLabel('Email').fill('ops@lab.example')
    await page.getByLabel('Password').fill('nope')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText('Email or password is wrong').waitFor()
    expect(unexpected(consoleErrors, /status of 401 .*\/api\/v1\/auth\/login/)).toEqual([])
    await page.context().close()
  }, 60_000)
})
