#!/usr/bin/env node
// Drives a running Cairn daemon's RPC API (`/api/v0`) with the official JavaScript client,
// `kubo-rpc-client`, to check that Cairn answers as that client expects.
//
//   node testnet/js/rpc_client.mjs <api-multiaddr> <scratch-dir> [peer-multiaddr]
//
// <api-multiaddr> is what the daemon writes to `<repo>/api`, e.g. /ip4/127.0.0.1/tcp/5001.
// <scratch-dir> receives the test files, written out so that `import.mjs` (js-ipfs-unixfs,
// Kubo's defaults) can compute the CIDs the daemon should return. With [peer-multiaddr] (a
// full /ip4/.../tcp/.../p2p/... address of another daemon), the script first connects to it,
// so that the swarm and routing steps have a peer to talk to.
//
// Prints one JSON line per step, {"step", "ok", "detail"}, and exits 1 if any step failed.
// Every step has its own deadline, so the script always ends.

import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { create } from 'kubo-rpc-client'

const HERE = dirname(fileURLToPath(import.meta.url))

function usage (msg) {
  if (msg) process.stderr.write(`rpc_client.mjs: ${msg}\n`)
  process.stderr.write('usage: rpc_client.mjs <api-multiaddr> <scratch-dir> [peer-multiaddr]\n')
  process.exit(2)
}

/** `http://host:port` from /ip4/H/tcp/P, /ip6/H/tcp/P or /dns{,4,6}/H/tcp/P. */
function apiUrl (ma) {
  const parts = ma.trim().split('/')
  if (parts.length < 5 || parts[0] !== '' || parts[3] !== 'tcp') usage(`${ma} is not /ip4|ip6|dns/HOST/tcp/PORT`)
  const [, proto, host, , port] = parts
  if (!/^\d+$/.test(port)) usage(`bad port in ${ma}`)
  if (proto === 'ip6') return `http://[${host}]:${port}`
  if (['ip4', 'dns', 'dns4', 'dns6'].includes(proto)) return `http://${host}:${port}`
  usage(`unsupported protocol ${proto} in ${ma}`)
}

/** `n` bytes that depend only on `n` and `seed`. */
function bytes (n, seed) {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (Math.imul(i + seed, 2654435761) >>> 13) & 0xff
  return out
}

const text = (s) => new TextEncoder().encode(s)

function equal (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function concat (chunks) {
  const n = chunks.reduce((s, c) => s + c.length, 0)
  const out = new Uint8Array(n)
  let at = 0
  for (const c of chunks) { out.set(c, at); at += c.length }
  return out
}

/** The CIDs Kubo's `ipfs add -r` would print for `path`, per the independent JS importer. */
function referenceCids (path) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(HERE, 'import.mjs'), path], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`import.mjs ${path}: ${stderr || err.message}`))
      const out = new Map()
      for (const line of stdout.split('\n').filter(Boolean)) {
        const e = JSON.parse(line)
        out.set(e.path, { cid: e.cid, size: e.size })
      }
      resolve(out)
    })
  })
}

class Fail extends Error {}
const check = (cond, msg) => { if (!cond) throw new Fail(msg) }

const results = []

/**
 * Runs `fn(signal)` with a deadline; the signal is passed on to the client so the request is
 * aborted when the deadline passes. `fn` returns the step's detail.
 */
async function step (name, ms, fn) {
  const ctl = new AbortController()
  let timer
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      ctl.abort(new Error(`timed out after ${ms} ms`))
      reject(new Error(`timed out after ${ms} ms`))
    }, ms)
  })
  let line
  try {
    const detail = await Promise.race([fn(ctl.signal), deadline])
    line = { step: name, ok: true, detail: detail ?? null }
  } catch (e) {
    const detail = e instanceof Fail ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? e}${e?.cause ? ` (cause: ${e.cause?.message ?? e.cause})` : ''}`
    line = { step: name, ok: false, detail }
  } finally {
    clearTimeout(timer)
    ctl.abort()
  }
  results.push(line)
  process.stdout.write(JSON.stringify(line) + '\n')
  return line.ok
}

async function main () {
  const [ma, scratch, peerAddr] = process.argv.slice(2)
  if (!ma || !scratch) usage()
  const ipfs = create({ url: apiUrl(ma) })

  // The test data, also written out for the reference importer.
  const small = text('hello from kubo-rpc-client to cairn\n')
  const big = bytes((1 << 20) + 4321, 7)
  const a = text('file a in a directory\n')
  const b = bytes(300_000, 99)
  await mkdir(join(scratch, 'tree', 'dir', 'sub'), { recursive: true })
  await writeFile(join(scratch, 'small.txt'), small)
  await writeFile(join(scratch, 'big.bin'), big)
  await writeFile(join(scratch, 'tree', 'dir', 'a.txt'), a)
  await writeFile(join(scratch, 'tree', 'dir', 'sub', 'b.bin'), b)
  const [refSmall, refBig, refTree] = await Promise.all([
    referenceCids(join(scratch, 'small.txt')),
    referenceCids(join(scratch, 'big.bin')),
    referenceCids(join(scratch, 'tree', 'dir'))
  ])
  const expSmall = refSmall.get('small.txt').cid
  const expBig = refBig.get('big.bin').cid
  // Kubo's `add` reports as Size the DAG's cumulative size (the root's Tsize), not the bytes
  // of content; the reference importer reports the same. Checked together in one step.
  const sizes = []
  const noteSize = (what, got, want) => sizes.push({ what, got, want })

  let selfId
  let bigCid
  let dirCid
  let v1Cid

  await step('id', 10_000, async (signal) => {
    const r = await ipfs.id({ signal })
    check(r.id != null && typeof r.id.toString === 'function', `no peer id in ${JSON.stringify(r)}`)
    check(Array.isArray(r.addresses), 'addresses is not an array')
    selfId = r.id.toString()
    return { id: selfId, addresses: r.addresses.map(String), agentVersion: r.agentVersion, protocolVersion: r.protocolVersion, publicKey: typeof r.publicKey }
  })

  await step('version', 10_000, async (signal) => {
    const r = await ipfs.version({ signal })
    check(typeof r.version === 'string' && r.version.length > 0, `no version in ${JSON.stringify(r)}`)
    return r
  })

  if (peerAddr) {
    await step('swarm.connect', 20_000, async (signal) => {
      const r = await ipfs.swarm.connect(peerAddr, { signal })
      return r
    })
  }

  await step('add (small buffer)', 20_000, async (signal) => {
    const r = await ipfs.add(small, { signal })
    check(r.cid.toString() === expSmall, `cid ${r.cid} != reference ${expSmall}`)
    noteSize('small buffer', r.size, refSmall.get('small.txt').size)
    return { path: r.path, cid: r.cid.toString(), size: r.size }
  })

  await step('add (~1 MiB buffer)', 60_000, async (signal) => {
    const r = await ipfs.add(big, { signal })
    bigCid = r.cid
    check(r.cid.toString() === expBig, `cid ${r.cid} != reference ${expBig}`)
    check(r.path === r.cid.toString(), `path ${JSON.stringify(r.path)} is not the CID (as Kubo names a nameless upload)`)
    return { path: r.path, cid: r.cid.toString(), size: r.size }
  })

  // Kubo names a part without a file name after its CID; the same content under a name must
  // give the same CID. This also gives the later steps a CID when the nameless add fails.
  await step('add (~1 MiB, named part)', 60_000, async (signal) => {
    const r = await ipfs.add({ path: 'big.bin', content: big }, { signal })
    bigCid ??= r.cid
    check(r.cid.toString() === expBig, `cid ${r.cid} != reference ${expBig}`)
    check(r.path === 'big.bin', `path ${JSON.stringify(r.path)}`)
    noteSize('big.bin', r.size, refBig.get('big.bin').size)
    return { path: r.path, cid: r.cid.toString(), size: r.size }
  })

  await step('add (cidVersion 1, wrapWithDirectory, pin false)', 20_000, async (signal) => {
    const r = await ipfs.add({ path: 'hello.txt', content: small }, { cidVersion: 1, wrapWithDirectory: true, pin: false, signal })
    check(r.cid.version === 1, `root ${r.cid} is not CIDv1`)
    v1Cid = r.cid.toString()
    check(r.path === '', `root path ${JSON.stringify(r.path)} (Kubo names the wrapper "")`)
    return { path: r.path, cid: r.cid.toString(), size: r.size }
  })

  await step('addAll (directory tree)', 30_000, async (signal) => {
    const got = []
    for await (const e of ipfs.addAll([
      { path: 'dir/a.txt', content: a },
      { path: 'dir/sub/b.bin', content: b }
    ], { signal })) got.push({ path: e.path, cid: e.cid.toString(), size: e.size })
    const byPath = new Map(got.map((e) => [e.path, e]))
    for (const [p, ref] of refTree) {
      check(byPath.get(p)?.cid === ref.cid, `${p}: got ${byPath.get(p)?.cid}, reference ${ref.cid}; all: ${JSON.stringify(got)}`)
      noteSize(p, byPath.get(p).size, ref.size)
    }
    check(got.at(-1)?.path === 'dir', `last entry is ${JSON.stringify(got.at(-1))}, not the root "dir"`)
    dirCid = got.at(-1).cid
    return got
  })

  await step('add (Size field)', 1_000, async () => {
    check(sizes.length > 0, 'no add succeeded')
    const bad = sizes.filter((x) => x.got !== x.want)
    check(bad.length === 0, `Size is not the cumulative DAG size for ${JSON.stringify(bad)}`)
    return sizes
  })

  const catBytes = async (path, opts, signal) => {
    const chunks = []
    for await (const c of ipfs.cat(path, { ...opts, signal })) chunks.push(c)
    return concat(chunks)
  }

  await step('cat (whole file)', 30_000, async (signal) => {
    check(bigCid != null, 'nothing to cat (add failed)')
    const got = await catBytes(bigCid, {}, signal)
    check(equal(got, big), `got ${got.length} bytes, differing from the ${big.length} added`)
    return { bytes: got.length }
  })

  await step('cat (offset/length)', 30_000, async (signal) => {
    check(bigCid != null, 'nothing to cat (add failed)')
    const cases = [[0, 10], [262_140, 10], [1_000_000, 100_000], [big.length - 5, 1000], [12345, undefined]]
    for (const [offset, length] of cases) {
      const got = await catBytes(bigCid, { offset, length }, signal)
      const want = big.subarray(offset, length === undefined ? undefined : offset + length)
      check(equal(got, want), `offset ${offset} length ${length}: got ${got.length} bytes, want ${want.length}`)
    }
    return { cases: cases.length }
  })

  await step('cat (path inside a directory)', 20_000, async (signal) => {
    check(dirCid != null, 'no directory (addAll failed)')
    const got = await catBytes(`/ipfs/${dirCid}/sub/b.bin`, {}, signal)
    check(equal(got, b), `got ${got.length} bytes`)
    return { bytes: got.length }
  })

  await step('cat (a directory is an error)', 20_000, async (signal) => {
    check(dirCid != null, 'no directory (addAll failed)')
    try {
      const got = await catBytes(dirCid, {}, signal)
      throw new Fail(`cat of a directory gave ${got.length} bytes and no error`)
    } catch (e) {
      if (e instanceof Fail) throw e
      check(e.name === 'HTTPError', `rejected with ${e.name}: ${e.message} (not an HTTPError with the server's message)`)
      return { error: e.message, status: e.response?.status }
    }
  })

  await step('pin.add', 20_000, async (signal) => {
    check(dirCid != null, 'no directory (addAll failed)')
    const r = await ipfs.pin.add(dirCid, { signal })
    check(r.toString() === dirCid, `pinned ${r}, not ${dirCid}`)
    return { cid: r.toString() }
  })

  await step('pin.ls', 20_000, async (signal) => {
    const all = []
    for await (const p of ipfs.pin.ls({ signal })) all.push({ cid: p.cid.toString(), type: p.type, name: p.name })
    check(all.some((p) => p.cid === dirCid && p.type === 'recursive'), `${dirCid} is not listed as recursive: ${JSON.stringify(all)}`)
    check(all.some((p) => p.cid === bigCid?.toString()), `${bigCid} (added with pin) is not listed`)
    return { pins: all.length }
  })

  await step('pin.ls (paths filter)', 20_000, async (signal) => {
    const got = []
    for await (const p of ipfs.pin.ls({ paths: [dirCid], signal })) got.push({ cid: p.cid.toString(), type: p.type })
    check(got.length === 1 && got[0].cid === dirCid, `asked for ${dirCid} only, got ${got.length} pins: ${JSON.stringify(got)}`)
    return got
  })

  await step('pin.ls (paths filter, not pinned)', 20_000, async (signal) => {
    check(v1Cid != null, 'no unpinned CID (the pin:false add failed)')
    try {
      const got = []
      for await (const p of ipfs.pin.ls({ paths: [v1Cid], signal })) got.push({ cid: p.cid.toString(), type: p.type })
      throw new Fail(`${v1Cid} was added with pin:false, yet pin.ls of it gave no error but ${JSON.stringify(got)}`)
    } catch (e) {
      if (e instanceof Fail) throw e
      check(e.name === 'HTTPError', `rejected with ${e.name}: ${e.message}`)
      return { error: e.message }
    }
  })

  await step('pin.ls (type filter)', 20_000, async (signal) => {
    const got = []
    for await (const p of ipfs.pin.ls({ type: 'direct', signal })) got.push({ cid: p.cid.toString(), type: p.type })
    check(got.every((p) => p.type === 'direct'), `asked for direct pins, got ${JSON.stringify(got)}`)
    return got
  })

  await step('pin.rm', 20_000, async (signal) => {
    const r = await ipfs.pin.rm(dirCid, { signal })
    check(r.toString() === dirCid, `unpinned ${r}, not ${dirCid}`)
    for await (const p of ipfs.pin.ls({ signal })) check(p.cid.toString() !== dirCid, `${dirCid} still listed`)
    return { cid: r.toString() }
  })

  await step('swarm.peers', 10_000, async (signal) => {
    const r = await ipfs.swarm.peers({ signal })
    check(Array.isArray(r), 'not an array')
    if (peerAddr) check(r.length > 0, 'connected to a peer, but none listed')
    return r.map((p) => ({ addr: p.addr.toString(), peer: p.peer.toString() }))
  })

  if (typeof ipfs.swarm.localAddrs === 'function') {
    await step('swarm.localAddrs', 10_000, async (signal) => {
      const r = await ipfs.swarm.localAddrs({ signal })
      check(Array.isArray(r) && r.length > 0, `no addresses: ${JSON.stringify(r)}`)
      return r.map(String)
    })
  }

  await step('routing.findProvs', 30_000, async (signal) => {
    check(bigCid != null, 'no CID (add failed)')
    const events = []
    const providers = new Set()
    // Stop at the first provider, or when the stream ends; the step's deadline bounds the rest.
    for await (const ev of ipfs.routing.findProvs(bigCid, { numProviders: 5, signal })) {
      events.push(ev.name)
      if (ev.name === 'PROVIDER') for (const p of ev.providers) providers.add(p.id.toString())
      if (providers.size > 0) break
    }
    // Kubo's DHT also lists the node itself when it provides the CID; noted, not required.
    return { events, providers: [...providers], selfListed: selfId != null && providers.has(selfId) }
  })

  await step('routing.provide', 30_000, async (signal) => {
    check(bigCid != null, 'no CID (add failed)')
    const events = []
    for await (const ev of ipfs.routing.provide(bigCid, { signal })) events.push(ev.name)
    return { events }
  })

  await step('routing.provide (recursive)', 30_000, async (signal) => {
    check(bigCid != null, 'no CID (add failed)')
    const events = []
    for await (const ev of ipfs.routing.provide(bigCid, { recursive: true, signal })) events.push(ev.name)
    return { events }
  })

  const failed = results.filter((r) => !r.ok).map((r) => r.step)
  process.stdout.write(JSON.stringify({ step: 'summary', ok: failed.length === 0, detail: { passed: results.length - failed.length, failed } }) + '\n')
  process.exit(failed.length === 0 ? 0 : 1)
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ step: 'setup', ok: false, detail: `${e?.name}: ${e?.message}` }) + '\n')
  process.exit(1)
})
