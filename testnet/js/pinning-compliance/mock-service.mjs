#!/usr/bin/env node
// A minimal in-memory IPFS Pinning Service API (spec v1.0.0) on loopback, with no
// dependencies. It exists to self-test the compliance harness (check.mjs) without
// Cairn, and documents the behaviour the checker expects:
//   - 401 + {"error":{"reason":..}} without a valid "Authorization: Bearer <token>"
//   - POST /pins and POST /pins/{id} answer 202 at once with status "queued"
//     (nothing is fetched; the checker's CIDs name content that exists nowhere)
//   - DELETE answers 202; an unknown requestid answers 404
//   - GET /pins: newest first, default limit 10, "count" is the total before the
//     limit, "before"/"after" are strict, unique millisecond "created" stamps,
//     and the implicit status=pinned applies only when no filter at all is given
//   - "delegates" always holds 1..20 multiaddrs; no field outside the spec
//
// Usage: node mock-service.mjs [port] [token]   (binds 127.0.0.1 only)
import http from 'node:http'
import { randomUUID } from 'node:crypto'

const port = Number(process.argv[2] ?? 8787)
const token = process.argv[3] ?? 'secret'
const STATUSES = ['queued', 'pinning', 'pinned', 'failed']
const DELEGATES = ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5']

/** @type {Map<string, any>} */
const pins = new Map()
let lastCreated = 0

const failure = (res, code, reason, details) => {
  res.writeHead(code, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ error: { reason, details } }))
}
const json = (res, code, body) => {
  res.writeHead(code, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}
const readBody = async (req) => {
  const chunks = []
  for await (const c of req) chunks.push(c)
  return Buffer.concat(chunks).toString('utf8')
}
const parsePin = (text) => {
  const p = JSON.parse(text)
  if (typeof p?.cid !== 'string' || p.cid === '') throw new Error('cid is required')
  const pin = { cid: p.cid }
  if (typeof p.name === 'string') pin.name = p.name
  if (Array.isArray(p.origins)) pin.origins = p.origins
  if (p.meta != null && typeof p.meta === 'object') pin.meta = p.meta
  return pin
}
const create = (pin) => {
  // unique, strictly increasing millisecond timestamps make `before` pagination exact
  lastCreated = Math.max(Date.now(), lastCreated + 1)
  const ps = { requestid: randomUUID(), status: 'queued', created: new Date(lastCreated).toISOString(), pin, delegates: DELEGATES }
  pins.set(ps.requestid, ps)
  return ps
}
const textMatch = (value, want, match) => {
  if (typeof value !== 'string') return false
  switch (match) {
    case 'iexact': return value.toLowerCase() === want.toLowerCase()
    case 'partial': return value.includes(want)
    case 'ipartial': return value.toLowerCase().includes(want.toLowerCase())
    default: return value === want
  }
}

const list = (q) => {
  const filters = ['cid', 'name', 'status', 'before', 'after', 'meta'].filter((k) => q.has(k))
  const cids = q.has('cid') ? q.get('cid').split(',') : null
  const statuses = q.has('status') ? q.get('status').split(',') : (filters.length === 0 ? ['pinned'] : null)
  if (statuses?.some((s) => !STATUSES.includes(s))) throw new Error('bad status')
  const before = q.has('before') ? Date.parse(q.get('before')) : null
  const after = q.has('after') ? Date.parse(q.get('after')) : null
  if (Number.isNaN(before) || Number.isNaN(after)) throw new Error('bad date')
  const limit = q.has('limit') ? Number(q.get('limit')) : 10
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new Error('bad limit')
  const meta = q.has('meta') ? JSON.parse(q.get('meta')) : null
  const match = q.get('match') ?? 'exact'
  const all = [...pins.values()].filter((p) => {
    const t = Date.parse(p.created)
    if (cids && !cids.includes(p.pin.cid)) return false
    if (statuses && !statuses.includes(p.status)) return false
    if (q.has('name') && !textMatch(p.pin.name, q.get('name'), match)) return false
    if (before != null && !(t < before)) return false
    if (after != null && !(t > after)) return false
    if (meta && !Object.entries(meta).every(([k, v]) => p.pin.meta?.[k] === v)) return false
    return true
  }).sort((a, b) => Date.parse(b.created) - Date.parse(a.created))
  return { count: all.length, results: all.slice(0, limit) }
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://x')
    if (req.headers.authorization !== `Bearer ${token}`) return failure(res, 401, 'UNAUTHORIZED', 'Access token is missing or invalid')
    const m = url.pathname.match(/^\/pins(?:\/([^/]+))?$/)
    if (m == null) return failure(res, 404, 'NOT_FOUND', 'no such route')
    const id = m[1] != null ? decodeURIComponent(m[1]) : null
    if (id == null && req.method === 'GET') return json(res, 200, list(url.searchParams))
    if (id == null && req.method === 'POST') return json(res, 202, create(parsePin(await readBody(req))))
    if (id != null && !pins.has(id)) return failure(res, 404, 'NOT_FOUND', 'The specified resource was not found')
    if (req.method === 'GET') return json(res, 200, pins.get(id))
    if (req.method === 'DELETE') { pins.delete(id); res.writeHead(202); return res.end() }
    if (req.method === 'POST') {
      const pin = parsePin(await readBody(req))
      pins.delete(id)
      return json(res, 202, create(pin))
    }
    return failure(res, 405, 'METHOD_NOT_ALLOWED', req.method)
  } catch (err) {
    return failure(res, 400, 'BAD_REQUEST', String(err?.message ?? err))
  }
})
server.listen(port, '127.0.0.1', () => { console.error(`mock pinning service on http://127.0.0.1:${server.address().port} token=${token}`) })
