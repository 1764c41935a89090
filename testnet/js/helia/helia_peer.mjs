// A live Helia node for Cairn's interop tests, driven over JSON lines on stdin and stdout.
//
// Usage: node helia_peer.mjs
//
// It listens on 127.0.0.1 only (TCP, Noise, yamux: what Helia uses under Node.js), with no
// bootstrap peers, no peer discovery, no delegated routing and no HTTP gateways: blocks come
// from, and go to, the peers it is told to dial, over Bitswap. Run it inside a network
// namespace that has only loopback; it dials nothing it is not told to.
//
// Protocol: one ready line `{"ready": true, "id": PEER_ID, "addrs": [MULTIADDR...]}`, then one
// `{"ok": RESULT}` or `{"error": MESSAGE}` line per command line:
//   {"cmd": "dial", "addr": "/ip4/127.0.0.1/tcp/N/p2p/ID"}        -> {"ok": true}
//   {"cmd": "add", "path": P}                                       -> {"ok": CID}
//       P, a file or a directory tree, imported with Helia's defaults (CIDv1, raw leaves).
//   {"cmd": "get", "cid": CID, "out": P, "timeout_ms": N}           -> {"ok": BYTES}
//       The file or tree at CID, fetched over Bitswap and written at P; BYTES of file data.
//   {"cmd": "stop"}                                                 -> {"ok": true}, then exits.
import { createInterface } from 'node:readline'
import { createReadStream } from 'node:fs'
import { mkdir, readdir, stat, writeFile, open } from 'node:fs/promises'
import { join, basename } from 'node:path'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { unixfs } from '@helia/unixfs'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { CID } from 'multiformats/cid'

const helia = withBitswap(withLibp2pLight(createHeliaLight({
  blockstore: new MemoryBlockstore(),
  datastore: new MemoryDatastore()
}), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  services: { identify: identify() }
}))
await helia.start()
const fs = unixfs(helia)

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

// Import candidates for a file or a whole tree, paths relative to the tree's parent.
async function * candidates (path, rel) {
  const s = await stat(path)
  if (s.isDirectory()) {
    yield { path: rel }
    for (const name of (await readdir(path)).sort()) {
      yield * candidates(join(path, name), `${rel}/${name}`)
    }
  } else {
    yield { path: rel, content: createReadStream(path) }
  }
}

async function add (path) {
  const name = basename(path)
  let root
  for await (const entry of fs.addAll(candidates(path, name))) {
    if (entry.path === name) root = entry.cid
  }
  if (root == null) throw new Error(`nothing imported from ${path}`)
  return root.toString()
}

// Writes the file or tree at `cid` to `out`; returns the file bytes written.
async function get (cid, out, signal) {
  const st = await fs.stat(cid, { signal })
  if (st.type === 'directory') {
    await mkdir(out, { recursive: true })
    let total = 0
    for await (const entry of fs.ls(cid, { signal })) {
      total += await get(entry.cid, join(out, entry.name), signal)
    }
    return total
  }
  const fh = await open(out, 'w')
  let total = 0
  try {
    for await (const chunk of fs.cat(cid, { signal })) {
      await fh.write(chunk)
      total += chunk.byteLength
    }
  } finally {
    await fh.close()
  }
  return total
}

async function run (req) {
  switch (req.cmd) {
    case 'dial':
      await helia.libp2p.dial(multiaddr(req.addr), { signal: AbortSignal.timeout(req.timeout_ms ?? 30000) })
      return true
    case 'add':
      return await add(req.path)
    case 'get':
      return await get(CID.parse(req.cid), req.out, AbortSignal.timeout(req.timeout_ms ?? 60000))
    case 'stop':
      return true
    default:
      throw new Error(`unknown command ${JSON.stringify(req.cmd)}`)
  }
}

say({ ready: true, id: helia.libp2p.peerId.toString(), addrs: helia.libp2p.getMultiaddrs().map(String) })
for await (const line of createInterface({ input: process.stdin })) {
  let req
  try {
    req = JSON.parse(line)
    say({ ok: await run(req) })
  } catch (e) {
    say({ error: `${e.name ?? 'Error'}: ${e.message}` })
  }
  if (req?.cmd === 'stop') break
}
await helia.stop()
process.exit(0)
