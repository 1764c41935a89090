#!/usr/bin/env node
// A real browser against Cairn's gateway: Debian's Chromium, headless, driven by playwright-core.
//
//   node testnet/js/browser.mjs --listing URL --file NAME --out DIR [--seek FRACTION] [--timeout MS]
//                               [--no-cache]
//
// Steps:
//   1. open URL (a gateway directory listing), check it has a link whose text is exactly NAME,
//      screenshot DIR/listing.png;
//   2. click that link (a real mouse click) and wait for the navigation to the file: Chromium
//      shows a video in its built-in media document (a page holding one <video>);
//   3. play it, muted, until currentTime > 1 s; screenshot DIR/playing.png;
//   4. seek to FRACTION of the duration (default 0.5, the middle), wait for `seeked` and for
//      playback to reach the seek point + 1 s; screenshot DIR/seeked.png;
//   5. print ONE JSON line on stdout:
//      {"listed": true, "clicked_url": URL, "duration": S, "time_before_seek": S,
//       "seek_to": S, "time_after_seek": S,
//       "requests": [{"url": URL, "range": "bytes=A-B" | null, "status": N | null,
//                     "type": "document" | "media" | ..., "phase": PHASE, "t_ms": MS,
//                     "content_range": HEADER | null, "received": BYTES | null,
//                     "error": TEXT | null}, ...]}
//      `requests` are all the browser's requests for the clicked URL, in the order they were
//      sent: `range` is the request's Range header, `status` the response's (null if none came),
//      `phase` the step it was sent in ("navigate", "play", "seek" or "after-seek"), `t_ms` when
//      (since the click), `received` the bytes Chromium's network stack actually took in for it
//      (from the DevTools protocol; null if unknown), `error` why it failed or was cancelled.
//
// --no-cache turns Chromium's HTTP cache off (DevTools' Network.setCacheDisabled). With the cache
// on (the default, as a person's browser has it) the cache layer rewrites a media request's
// `bytes=N-` into `bytes=N-LAST` plus If-Range once it knows the length, and may open a second,
// short-lived connection for the same range that this log does not show; with it off, the
// gateway sees exactly the requests listed here (plus Cache-Control: no-cache).
//
// Every wait times out after --timeout ms (default 30000): then a message on stderr naming the
// step, and exit status 1 (2 for bad usage). The browser is always closed.
//
// Chromium: /usr/bin/chromium, or $CAIRN_CHROMIUM; a fresh temporary profile each run.

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required'
]

function usage (msg) {
  if (msg) process.stderr.write(`browser.mjs: ${msg}\n`)
  process.stderr.write('usage: node browser.mjs --listing URL --file NAME --out DIR [--seek FRACTION] [--timeout MS] [--no-cache]\n')
  process.exit(2)
}

function parseArgs (argv) {
  const opts = { timeout: 30000, seek: 0.5 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--listing') opts.listing = val()
    else if (a === '--file') opts.file = val()
    else if (a === '--out') opts.out = val()
    else if (a === '--timeout') opts.timeout = Number(val())
    else if (a === '--seek') opts.seek = Number(val())
    else if (a === '--no-cache') opts.noCache = true
    else if (a === '-h' || a === '--help') usage()
    else usage(`unknown argument ${a}`)
  }
  if (!opts.listing || !opts.file || !opts.out) usage('--listing, --file and --out are required')
  if (!Number.isFinite(opts.timeout) || opts.timeout <= 0) usage('--timeout must be a positive number of ms')
  if (!(opts.seek > 0 && opts.seek < 1)) usage('--seek must be a fraction of the duration, between 0 and 1')
  return opts
}

// An error whose message is the whole story: printed as is.
class StepError extends Error {}

let step = 'start'

// Runs `fn` (a promise or a function returning one) under the step name `name`, turning a
// Playwright timeout (or any failure) into a StepError that says which step it was.
async function during (name, what, fn) {
  step = name
  try {
    return await (typeof fn === 'function' ? fn() : fn)
  } catch (e) {
    if (e instanceof StepError) throw e
    const timedOut = e && e.name === 'TimeoutError'
    throw new StepError(`${name}: ${timedOut ? 'timed out waiting for ' + what : what + ' failed'}: ${firstLine(e)}`)
  }
}

function firstLine (e) {
  return String((e && e.message) || e).split('\n')[0]
}

// A promise that rejects with a TimeoutError after `ms`, for waits Playwright does not time.
function withTimeout (promise, ms, what) {
  let timer
  const t = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      const e = new Error(`${what}: no answer in ${ms} ms`)
      e.name = 'TimeoutError'
      reject(e)
    }, ms)
  })
  return Promise.race([promise, t]).finally(() => clearTimeout(timer))
}

function rangeStart (range) {
  const m = /^bytes=(\d+)-/.exec(range || '')
  return m ? Number(m[1]) : null
}

function sameResource (a, b) {
  try {
    const ua = new URL(a)
    const ub = new URL(b)
    ua.hash = ''
    ub.hash = ''
    return ua.href === ub.href
  } catch {
    return false
  }
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const executablePath = process.env.CAIRN_CHROMIUM || '/usr/bin/chromium'
  await mkdir(opts.out, { recursive: true })

  let browser
  try {
    browser = await during('launch', `Chromium (${executablePath})`, () =>
      chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: opts.timeout }))
    return await run(browser, opts)
  } finally {
    if (browser) await browser.close().catch(() => {})
  }
}

async function run (browser, opts) {
  const T = opts.timeout
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } })
  context.setDefaultTimeout(T)
  context.setDefaultNavigationTimeout(T)
  const page = await context.newPage()

  // ---- request log --------------------------------------------------------------------------
  // Playwright's events give url, Range and status; a DevTools session on the same page adds
  // the bytes each request really received (a media request is often cut short).
  let target = null // the clicked URL, once known
  let phase = 'listing'
  let t0 = Date.now()
  const requests = [] // in send order: { entry, req }
  const byReq = new Map()
  const cdpReqs = [] // { url, range, received, used }
  const cdpById = new Map()

  page.on('request', (req) => {
    if (!target || !sameResource(req.url(), target)) return
    const entry = {
      url: req.url(),
      range: null,
      status: null,
      type: req.resourceType(),
      phase,
      t_ms: Date.now() - t0,
      content_range: null,
      received: null,
      error: null
    }
    const rec = { entry, req, range: req.headerValue('range').catch(() => null) }
    requests.push(rec)
    byReq.set(req, rec)
  })
  page.on('response', (res) => {
    const rec = byReq.get(res.request())
    if (!rec) return
    rec.entry.status = res.status()
    rec.contentRange = res.headerValue('content-range').catch(() => null)
  })
  page.on('requestfailed', (req) => {
    const rec = byReq.get(req)
    if (rec) rec.entry.error = (req.failure() && req.failure().errorText) || 'failed'
  })

  const cdp = await context.newCDPSession(page)
  cdp.on('Network.requestWillBeSent', (ev) => {
    if (!target || !sameResource(ev.request.url, target)) return
    const h = ev.request.headers || {}
    const key = Object.keys(h).find((k) => k.toLowerCase() === 'range')
    const r = { url: ev.request.url, range: key ? h[key] : null, received: 0, used: false }
    cdpReqs.push(r)
    cdpById.set(ev.requestId, r)
  })
  cdp.on('Network.dataReceived', (ev) => {
    const r = cdpById.get(ev.requestId)
    if (r) r.received += ev.dataLength
  })
  await cdp.send('Network.enable')
  if (opts.noCache) await cdp.send('Network.setCacheDisabled', { cacheDisabled: true })

  // ---- 1. the listing -----------------------------------------------------------------------
  await during('listing', `the listing page ${opts.listing}`, async () => {
    const res = await page.goto(opts.listing, { waitUntil: 'load' })
    if (!res) throw new Error('no response')
    if (res.status() !== 200) throw new StepError(`listing: ${opts.listing} answered ${res.status()}`)
  })
  const link = page.getByRole('link', { name: opts.file, exact: true })
  const n = await link.count()
  if (n < 1) throw new StepError(`listing: no link whose text is ${JSON.stringify(opts.file)} on ${opts.listing}`)
  if (n > 1) throw new StepError(`listing: ${n} links whose text is ${JSON.stringify(opts.file)} on ${opts.listing}`)
  await during('listing', 'the screenshot', () => page.screenshot({ path: join(opts.out, 'listing.png') }))

  // ---- 2. the click -------------------------------------------------------------------------
  const href = await link.evaluate((a) => a.href) // absolute, as the browser resolved it
  target = href
  phase = 'navigate'
  t0 = Date.now()
  await during('click', `the navigation to ${href}`, async () => {
    await Promise.all([
      page.waitForURL((u) => sameResource(u.href, href), { waitUntil: 'commit' }),
      link.click()
    ])
  })
  const video = page.locator('video')
  await during('click', `a <video> in the page at ${href}`, () => video.first().waitFor({ state: 'attached' }))
  if (await video.count() !== 1) throw new StepError(`click: the page at ${href} has ${await video.count()} <video> elements`)

  // ---- 3. play ------------------------------------------------------------------------------
  phase = 'play'
  await during('play', 'play()', () => withTimeout(video.evaluate(async (v) => {
    v.muted = true
    await v.play()
  }), T, 'video.play()'))
  await during('play', 'currentTime > 1 s', () =>
    page.waitForFunction(() => {
      const v = document.querySelector('video')
      if (v.error) throw new Error(`media error ${v.error.code}: ${v.error.message}`)
      return v.currentTime > 1
    }, null, { timeout: T, polling: 50 }))
  const duration = await video.evaluate((v) => v.duration)
  if (!Number.isFinite(duration) || duration <= 2) {
    throw new StepError(`play: the video's duration is ${duration}, not a finite time over 2 s`)
  }
  const timeBeforeSeek = await video.evaluate((v) => v.currentTime)
  await during('play', 'the screenshot', () => page.screenshot({ path: join(opts.out, 'playing.png') }))

  // ---- 4. seek -------------------------------------------------------------------------------
  const seekTo = duration * opts.seek
  phase = 'seek'
  await during('seek', `'seeked' after currentTime = ${seekTo}`, () => withTimeout(video.evaluate((v, to) =>
    new Promise((resolve, reject) => {
      v.addEventListener('seeked', () => resolve(), { once: true })
      v.addEventListener('error', () => reject(new Error(`media error ${v.error && v.error.code}`)), { once: true })
      v.currentTime = to
    }), seekTo), T, "the 'seeked' event"))
  phase = 'after-seek'
  await during('seek', `playback to reach ${seekTo + 1} s`, () =>
    page.waitForFunction((to) => {
      const v = document.querySelector('video')
      if (v.error) throw new Error(`media error ${v.error.code}: ${v.error.message}`)
      return v.currentTime >= to + 1 && !v.paused
    }, seekTo, { timeout: T, polling: 50 }))
  const timeAfterSeek = await video.evaluate((v) => v.currentTime)
  await during('seek', 'the screenshot', () => page.screenshot({ path: join(opts.out, 'seeked.png') }))

  // ---- 5. the report ------------------------------------------------------------------------
  step = 'report'
  for (const rec of requests) {
    rec.entry.range = (await rec.range) || null
    rec.entry.content_range = (rec.contentRange && (await rec.contentRange)) || null
    // The renderer asks for `bytes=N-`; the network stack may close the range (`bytes=N-M`)
    // once it knows the length, and Playwright reports the header as sent: match on N.
    const c = cdpReqs.find((r) => !r.used && r.url === rec.entry.url && rangeStart(r.range) === rangeStart(rec.entry.range))
    if (c) {
      c.used = true
      rec.entry.received = c.received
    }
  }
  const report = {
    listed: true,
    clicked_url: href,
    duration,
    time_before_seek: timeBeforeSeek,
    seek_to: seekTo,
    time_after_seek: timeAfterSeek,
    requests: requests.map((r) => r.entry)
  }
  process.stdout.write(JSON.stringify(report) + '\n')
}

main().then(
  () => process.exit(0),
  (e) => {
    const msg = e instanceof StepError ? e.message : `${step}: ${firstLine(e)}`
    process.stderr.write(`browser.mjs: error: ${msg}\n`)
    process.exit(1)
  }
)
