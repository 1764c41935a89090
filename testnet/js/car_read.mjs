#!/usr/bin/env node
// An independent CAR reader for Cairn's interop tests: `@ipld/car` parses the CAR and
// `ipfs-unixfs-exporter` writes out what it holds.
//
//   node testnet/js/car_read.mjs CAR [OUT_DIR]
//
// 1. Reads every section and checks each block's bytes against its CID's multihash (sha2-256,
//    sha2-512 and identity; any other hash is reported as unverifiable, never trusted).
//    A block whose bytes do not match its CID is an error (exit 1).
// 2. Walks the DAG from every root, following dag-pb and dag-cbor links (raw blocks have none),
//    and reports the links whose blocks the CAR lacks, and the blocks no root reaches.
// 3. With OUT_DIR: exports each root whose DAG is complete with the UnixFS exporter into
//    OUT_DIR/<root CID>, as `ipfs get` would (directories, files, symlinks; a file root is
//    written as the file OUT_DIR/<root CID>).
//
// Prints one JSON object:
//   {"roots": [CID...], "blocks": N, "duplicates": N, "verified": N, "unverifiable": [CID...],
//    "missing": [CID...], "unreachable": N,
//    "entries": [{"root", "path", "parent", "name", "cid", "type", "size"}...]}
// where `path` is relative to the root ("" for the root itself), `parent` is the directory's path
// and `name` the link's name (both "" for the root; a name may itself hold `/`, so `path` alone
// cannot be split back), and `type` is `file`, `dir` or
// `symlink` (written), `unsafe` (a name such as `..` that would escape OUT_DIR; not written) or
// `object` (not UnixFS, e.g. dag-cbor; not written).

import { createReadStream } from 'node:fs'
import { mkdir, open, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { CarBlockIterator } from '@ipld/car'
import * as dagPb from '@ipld/dag-pb'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { identity } from 'multiformats/hashes/identity'
import { equals } from 'multiformats/bytes'
import { exporter } from 'ipfs-unixfs-exporter'

const HASHERS = new Map([[sha256.code, sha256], [sha512.code, sha512], [identity.code, identity]])
const RAW = 0x55

function usage (msg) {
  if (msg) process.stderr.write(`car_read.mjs: ${msg}\n`)
  process.stderr.write('usage: car_read.mjs CAR [OUT_DIR]\n')
  process.exit(2)
}

const key = (cid) => cid.multihash.bytes.join(',')

// The CIDs a block links to.
function links (cid, bytes) {
  if (cid.code === dagPb.code) return dagPb.decode(bytes).Links.map((l) => l.Hash)
  if (cid.code === dagCbor.code) {
    const out = []
    const walk = (v) => {
      const asCid = CID.asCID(v)
      if (asCid) {
        out.push(asCid)
      } else if (Array.isArray(v)) {
        v.forEach(walk)
      } else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
        Object.values(v).forEach(walk)
      }
    }
    walk(dagCbor.decode(bytes))
    return out
  }
  if (cid.code === RAW) return []
  throw new Error(`cannot follow links of codec 0x${cid.code.toString(16)} (${cid})`)
}

// A blockstore over the CAR's blocks, as ipfs-unixfs-exporter wants it (`get` yields bytes).
function blockstore (blocks) {
  return {
    * get (cid) {
      if (cid.multihash.code === identity.code) {
        yield cid.multihash.digest
        return
      }
      const b = blocks.get(key(cid))
      if (b === undefined) throw new Error(`block ${cid} is not in the CAR`)
      yield b.bytes
    }
  }
}

// Writes the UnixFS entry `cid` to `dest` and records it (and, for directories, everything
// below it) in `entries`. Names that could escape `dest` are recorded as `unsafe` and not
// written; entries that are not UnixFS (dag-cbor inside a directory, say) as `object`.
async function exportEntry (store, cid, rootStr, parent, name, dest, entries) {
  const entry = await exporter(cid, store)
  const rel = parent === undefined ? '' : parent === '' ? name : `${parent}/${name}`
  const record = (type, size) => entries.push({ root: rootStr, path: rel, parent: parent ?? '', name: name ?? '', cid: cid.toString(), type, size })
  if (entry.type === 'directory') {
    await mkdir(dest)
    record('dir', 0)
    for await (const child of entry.entries()) {
      if (child.name === '' || child.name === '.' || child.name === '..' || child.name.includes('/') || child.name.includes('\0')) {
        const path = rel === '' ? child.name : `${rel}/${child.name}`
        entries.push({ root: rootStr, path, parent: rel, name: child.name, cid: child.cid.toString(), type: 'unsafe', size: 0 })
        continue
      }
      await exportEntry(store, child.cid, rootStr, rel, child.name, join(dest, child.name), entries)
    }
  } else if (entry.type === 'file' && entry.unixfs.type === 'symlink') {
    const target = new TextDecoder().decode(entry.unixfs.data ?? new Uint8Array())
    await symlink(target, dest)
    record('symlink', target.length)
  } else if (entry.type === 'file' || entry.type === 'raw' || entry.type === 'identity') {
    const fh = await open(dest, 'wx')
    let size = 0
    try {
      for await (const chunk of entry.content()) {
        await fh.write(chunk)
        size += chunk.length
      }
    } finally {
      await fh.close()
    }
    if (BigInt(size) !== BigInt(entry.size)) throw new Error(`${rootStr}/${rel}: exported ${size} bytes, entry says ${entry.size}`)
    record('file', size)
  } else {
    record('object', 0)
  }
}

async function main () {
  const args = process.argv.slice(2)
  if (args.length < 1 || args.length > 2) usage()
  const [carPath, outDir] = args

  const iter = await CarBlockIterator.fromIterable(createReadStream(carPath))
  const roots = await iter.getRoots()
  const blocks = new Map()
  let count = 0
  let duplicates = 0
  let verified = 0
  const unverifiable = []
  for await (const { cid, bytes } of iter) {
    count++
    const hasher = HASHERS.get(cid.multihash.code)
    if (hasher === undefined) {
      unverifiable.push(cid.toString())
    } else {
      const digest = await hasher.digest(bytes)
      if (!equals(digest.bytes, cid.multihash.bytes)) {
        throw new Error(`block ${cid}: its bytes hash to ${digest.bytes.length}-byte multihash that differs from the CID's`)
      }
      verified++
    }
    if (blocks.has(key(cid))) duplicates++
    blocks.set(key(cid), { cid, bytes })
  }

  // Reachability from the roots.
  const seen = new Set()
  const missing = new Map()
  const stack = [...roots]
  while (stack.length > 0) {
    const cid = stack.pop()
    if (cid.multihash.code === identity.code) continue
    const k = key(cid)
    if (seen.has(k)) continue
    seen.add(k)
    const b = blocks.get(k)
    if (b === undefined) {
      missing.set(k, cid.toString())
      continue
    }
    stack.push(...links(cid, b.bytes))
  }
  const unreachable = [...blocks.keys()].filter((k) => !seen.has(k)).length

  const entries = []
  if (outDir !== undefined) {
    await mkdir(outDir, { recursive: true })
    const store = blockstore(blocks)
    for (const root of roots) {
      // Export only roots whose DAG is whole: walk again from this root alone.
      const rootMissing = []
      const rseen = new Set()
      const rstack = [root]
      while (rstack.length > 0) {
        const cid = rstack.pop()
        if (cid.multihash.code === identity.code || rseen.has(key(cid))) continue
        rseen.add(key(cid))
        const b = blocks.get(key(cid))
        if (b === undefined) rootMissing.push(cid)
        else rstack.push(...links(cid, b.bytes))
      }
      if (rootMissing.length > 0) continue
      await exportEntry(store, root, root.toString(), undefined, undefined, join(outDir, root.toString()), entries)
    }
  }

  process.stdout.write(JSON.stringify({
    roots: roots.map((r) => r.toString()),
    blocks: count,
    duplicates,
    verified,
    unverifiable,
    missing: [...missing.values()],
    unreachable,
    entries
  }) + '\n')
}

main().catch((err) => {
  process.stderr.write(`car_read.mjs: ${err.stack ?? err}\n`)
  process.exit(1)
})
